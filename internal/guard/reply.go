package guard

import (
	"bytes"
	"hash/fnv"
	"strconv"
)

// buildReply returns a stateless answer to the request whose header
// section is head (start line through the empty line), as RFC 3261 §8.2.6
// asks: every Via, and the first From, To (with a tag), Call-ID and CSeq
// copied verbatim from the request, then extra header lines and a Warning
// with detail. It returns nil when the request has no Via to route the
// answer by. head need not be well formed: whatever can be salvaged is.
func buildReply(head []byte, status int, reason, detail, extra string) []byte {
	var via, from, to, callID, cseq [][]byte
	eachRawHeader(head, func(h hdr, value, raw []byte) {
		switch h {
		case hVia:
			via = append(via, raw)
		case hFrom:
			from = append(from, raw)
		case hTo:
			to = append(to, raw)
		case hCallID:
			callID = append(callID, raw)
		case hCSeq:
			cseq = append(cseq, raw)
		}
	})
	if len(via) == 0 {
		return nil
	}
	b := make([]byte, 0, 512)
	b = append(b, "SIP/2.0 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = appendUnfolded(b, []byte(reason))
	b = append(b, "\r\n"...)
	for _, v := range via {
		b = appendLine(b, v)
	}
	if len(from) > 0 {
		b = appendLine(b, from[0])
	}
	if len(to) > 0 {
		t := to[0]
		b = appendUnfolded(b, t)
		if needsTag(t) {
			b = append(b, ";tag=sb"...)
			b = strconv.AppendUint(b, replyTag(head), 36)
		}
		b = append(b, "\r\n"...)
	}
	if len(callID) > 0 {
		b = appendLine(b, callID[0])
	}
	if len(cseq) > 0 {
		b = appendLine(b, cseq[0])
	}
	b = append(b, extra...)
	b = append(b, "Server: switchboard\r\n"...)
	if detail != "" {
		b = append(b, "Warning: 399 switchboard \""...)
		b = append(b, printableN([]byte(detail), 200)...)
		b = append(b, "\"\r\n"...)
	}
	b = append(b, "Content-Length: 0\r\n\r\n"...)
	return b
}

// appendLine appends a copied header line, unfolded (line breaks become
// spaces, which SIP treats alike), so nothing in it can end a line early.
func appendLine(b, line []byte) []byte {
	return append(appendUnfolded(b, line), "\r\n"...)
}

func appendUnfolded(b, line []byte) []byte {
	for _, c := range line {
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return b
}

// needsTag reports whether a raw To header line lacks a tag parameter (and
// is well formed enough to take one: its quotes balance).
func needsTag(raw []byte) bool {
	colon := bytes.IndexByte(raw, ':')
	if colon < 0 || bytes.Count(raw, []byte(`"`))%2 != 0 {
		return false
	}
	v := bytes.ToLower(raw[colon+1:])
	if gt := bytes.LastIndexByte(v, '>'); gt >= 0 {
		v = v[gt:]
	}
	v = bytes.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, v)
	return !bytes.Contains(v, []byte(";tag="))
}

// replyTag derives the To tag from the request, so retransmissions of a
// request get the same answer (a stateless UAS has nowhere to keep it).
func replyTag(head []byte) uint64 {
	h := fnv.New64a()
	eachRawHeader(head, func(k hdr, _, raw []byte) {
		if k == hVia || k == hFrom || k == hCallID || k == hCSeq {
			h.Write(raw)
		}
	})
	return h.Sum64()
}

// eachRawHeader is a tolerant version of eachHeader for salvaging fields
// of a message that failed the scan: lines may end in CRLF or bare LF, and
// it stops at the first empty line or the end of head.
func eachRawHeader(head []byte, fn func(h hdr, value, raw []byte)) {
	nl := bytes.IndexByte(head, '\n')
	if nl < 0 {
		return
	}
	pos := nl + 1
	for pos < len(head) {
		start := pos
		end, next := rawLine(head, pos)
		if end == start {
			return // empty line
		}
		pos = next
		for pos < len(head) && (head[pos] == ' ' || head[pos] == '\t') {
			end, pos = rawLine(head, pos)
		}
		line := head[start:end]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || bytes.IndexByte(line[:colon], '\n') >= 0 {
			continue
		}
		h, _ := classify(trimWSP(line[:colon]))
		if h != hOther {
			fn(h, trimLWS(line[colon+1:]), line)
		}
	}
}

// rawLine returns the end of the line starting at pos (before CRLF or LF)
// and the start of the next line.
func rawLine(b []byte, pos int) (end, next int) {
	i := bytes.IndexByte(b[pos:], '\n')
	if i < 0 {
		return len(b), len(b)
	}
	end = pos + i
	next = end + 1
	if end > pos && b[end-1] == '\r' {
		end--
	}
	return end, next
}
