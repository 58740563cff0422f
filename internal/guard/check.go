package guard

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/emiago/sipgo/sip"
)

// verdict is the filter's decision on one scanned message.
type verdict struct {
	status int    // 0: pass the message on
	reason string // reason phrase of the answer
	detail string // why, for the Warning header and the journal
	extra  string // extra header lines of the answer, each ending in CRLF
	drop   bool   // refuse without answering (responses, ACK, no Via)
	close  bool   // stream framing is lost: close the connection
}

func (v verdict) pass() bool { return v.status == 0 && !v.drop }

// knownMethods are the methods switchboard recognises; other methods get
// 501 Not Implemented (RFC 3261 §8.2.1). Methods are case-sensitive.
var knownMethods = [...]string{"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "UPDATE", "INFO",
	"REFER", "NOTIFY", "MESSAGE", "PRACK", "SUBSCRIBE", "PUBLISH"}

// supportedRequire are the option tags accepted in Require of requests
// switchboard answers itself (REGISTER, OPTIONS): the Supported list of its
// OPTIONS answer.
var supportedRequire = [...]string{"path", "replaces"}

func isKnownMethod(m []byte) bool {
	for _, k := range knownMethods {
		if string(m) == k {
			return true
		}
	}
	return false
}

// check applies the request and response rules that need no full parse:
// version, Request-URI scheme, method, mandatory and single-valued header
// fields, CSeq, and extensions. allow is the Allow header value for 501.
func check(m *message, data []byte, allow string) verdict {
	if !m.request {
		return checkResponse(m)
	}
	ack := string(m.method) == "ACK"
	v := checkRequest(m, data, allow)
	if !v.pass() && ack {
		// An ACK is never answered (RFC 3261 §17.2.1).
		v.drop = true
	}
	return v
}

func checkRequest(m *message, data []byte, allow string) verdict {
	if string(m.version) != "SIP/2.0" {
		if !eqFold(m.version, "sip/2.0") {
			if validVersion(m.version) {
				return verdict{status: 505, reason: "Version Not Supported", detail: "SIP version " + printable(m.version) + " is not supported"}
			}
			return verdict{status: 400, reason: "Bad Request", detail: "malformed SIP version"}
		}
	}
	if m.f[hVia].n == 0 {
		return verdict{drop: true, detail: "no Via header: nowhere to send an answer"}
	}
	// Request-URI scheme.
	colon := bytes.IndexByte(m.uri, ':')
	if colon <= 0 || !validScheme(m.uri[:colon]) {
		return verdict{status: 400, reason: "Bad Request", detail: "malformed Request-URI"}
	}
	if s := m.uri[:colon]; !eqFold(s, "sip") && !eqFold(s, "sips") && !eqFold(s, "tel") {
		return verdict{status: 416, reason: "Unsupported URI Scheme", detail: "Request-URI scheme " + printable(s) + " is not supported"}
	}
	if hostport := m.uri[colon+1:]; bytes.IndexByte(hostport[bytes.IndexByte(hostport, '@')+1:], '?') >= 0 {
		// RFC 3261 §19.1.1: no headers component in a Request-URI (RFC 4475
		// §3.1.2.11); a proxy must never turn them into header fields.
		return verdict{status: 400, reason: "Bad Request", detail: "header fields escaped in the Request-URI"}
	}
	if !isKnownMethod(m.method) {
		return verdict{status: 501, reason: "Not Implemented", detail: "method " + printable(m.method) + " is not implemented",
			extra: "Allow: " + allow + "\r\n"}
	}
	// Mandatory header fields (RFC 3261 §8.1.1) and single-valued ones.
	for _, h := range [...]hdr{hFrom, hTo, hCallID, hCSeq} {
		switch m.f[h].n {
		case 0:
			return verdict{status: 400, reason: "Bad Request", detail: "missing " + hdrName[h] + " header"}
		case 1:
		default:
			return verdict{status: 400, reason: "Bad Request", detail: "more than one " + hdrName[h] + " header"}
		}
	}
	if m.f[hMaxForwards].n > 1 {
		return verdict{status: 400, reason: "Bad Request", detail: "more than one Max-Forwards header"}
	}
	seq, method, ok := splitCSeq(m.f[hCSeq].value)
	if !ok {
		return verdict{status: 400, reason: "Bad Request", detail: "malformed CSeq"}
	}
	if n, ok := parseUint(seq); !ok || n > 1<<31-1 {
		return verdict{status: 400, reason: "Bad Request", detail: "CSeq number out of range (0 to 2^31-1)"}
	}
	if !bytes.Equal(method, m.method) {
		return verdict{status: 400, reason: "Bad Request", detail: "CSeq method " + printable(method) + " does not match the request method"}
	}
	if mf := m.f[hMaxForwards]; mf.n == 1 {
		if _, ok := parseUint(mf.value); !ok {
			return verdict{status: 400, reason: "Bad Request", detail: "malformed Max-Forwards"}
		}
	}
	if string(m.method) == "ACK" || string(m.method) == "CANCEL" {
		return verdict{} // Require and Proxy-Require do not apply (RFC 3261 §8.2.2.3)
	}
	// Extensions: switchboard supports no proxy extensions, and as a UAS
	// (REGISTER, OPTIONS) only its Supported list.
	uas := string(m.method) == "REGISTER" || string(m.method) == "OPTIONS"
	if m.f[hProxyRequire].n > 0 || (uas && m.f[hRequire].n > 0 && !allSupported(data[:m.bodyStart])) {
		if tags := unsupportedTags(data[:m.bodyStart], uas); tags != "" {
			return verdict{status: 420, reason: "Bad Extension", detail: "unsupported extensions " + tags,
				extra: "Unsupported: " + tags + "\r\n"}
		}
	}
	return verdict{}
}

func checkResponse(m *message) verdict {
	if string(m.version) != "SIP/2.0" && !eqFold(m.version, "sip/2.0") {
		return verdict{drop: true, detail: "response with SIP version " + printable(m.version)}
	}
	if len(m.status) != 3 || !allDigits(m.status) || m.status[0] < '1' || m.status[0] > '6' {
		return verdict{drop: true, detail: "response status code out of range"}
	}
	for _, h := range [...]hdr{hVia, hCSeq, hCallID} {
		if m.f[h].n != 1 && !(h == hVia && m.f[h].n > 1) {
			return verdict{drop: true, detail: "response without exactly one " + hdrName[h]}
		}
	}
	seq, _, ok := splitCSeq(m.f[hCSeq].value)
	if !ok {
		return verdict{drop: true, detail: "response with a malformed CSeq"}
	}
	if n, ok := parseUint(seq); !ok || n > 1<<31-1 {
		return verdict{drop: true, detail: "response CSeq out of range"}
	}
	return verdict{}
}

var hdrName = [numHdr]string{hOther: "?", hVia: "Via", hFrom: "From", hTo: "To", hCallID: "Call-ID", hCSeq: "CSeq",
	hMaxForwards: "Max-Forwards", hContentLength: "Content-Length", hContact: "Contact", hRoute: "Route",
	hRecordRoute: "Record-Route", hReferTo: "Refer-To", hReferredBy: "Referred-By", hContentType: "Content-Type",
	hRequire: "Require", hProxyRequire: "Proxy-Require", hUserAgent: "User-Agent"}

// splitCSeq splits "1*DIGIT LWS Method" (line folds count as white space).
func splitCSeq(v []byte) (seq, method []byte, ok bool) {
	i := 0
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	if i == 0 {
		return nil, nil, false
	}
	seq = v[:i]
	j := i
	for j < len(v) && isLWS(v[j]) {
		j++
	}
	if j == i || j == len(v) {
		return nil, nil, false
	}
	method = v[j:]
	if !isToken(method) {
		return nil, nil, false
	}
	return seq, method, true
}

// validVersion reports whether v is "SIP/" 1*DIGIT "." 1*DIGIT.
func validVersion(v []byte) bool {
	if len(v) < 7 || !eqFold(v[:4], "sip/") {
		return false
	}
	dot := bytes.IndexByte(v[4:], '.')
	if dot <= 0 {
		return false
	}
	a, b := v[4:4+dot], v[4+dot+1:]
	return len(a) > 0 && len(b) > 0 && allDigits(a) && allDigits(b)
}

// validScheme reports whether s is ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func validScheme(s []byte) bool {
	for i, c := range s {
		lc := c | 0x20
		switch {
		case 'a' <= lc && lc <= 'z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return len(s) > 0
}

// eachHeader calls fn for each header field of the header section head
// (start line first, ending with the empty line) that the scanner
// classifies, with its trimmed value and its raw lines (continuations
// included, without the final CRLF). It stops when fn returns false. head
// must have passed scan.
func eachHeader(head []byte, fn func(h hdr, value, raw []byte) bool) {
	pos := bytes.Index(head, []byte("\r\n")) + 2
	for pos < len(head) {
		start := pos
		end := bytes.Index(head[pos:], []byte("\r\n"))
		if end <= 0 {
			return // the empty line
		}
		end += pos
		pos = end + 2
		for pos < len(head) && (head[pos] == ' ' || head[pos] == '\t') {
			e := bytes.Index(head[pos:], []byte("\r\n"))
			if e < 0 {
				return
			}
			end = pos + e
			pos = end + 2
		}
		line := head[start:end]
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		h, _ := classify(trimWSP(line[:colon]))
		if !fn(h, trimLWS(line[colon+1:]), line) {
			return
		}
	}
}

// eachTag calls fn for each comma-separated option tag of value.
func eachTag(value []byte, fn func(tag []byte)) {
	for len(value) > 0 {
		i := bytes.IndexByte(value, ',')
		var t []byte
		if i < 0 {
			t, value = value, nil
		} else {
			t, value = value[:i], value[i+1:]
		}
		if t = trimLWS(t); len(t) > 0 {
			fn(t)
		}
	}
}

func isSupported(tag []byte) bool {
	for _, s := range supportedRequire {
		if eqFold(tag, s) {
			return true
		}
	}
	return false
}

// allSupported reports whether every Require tag is supported.
func allSupported(head []byte) bool {
	ok := true
	eachHeader(head, func(h hdr, value, _ []byte) bool {
		if h == hRequire {
			eachTag(value, func(t []byte) {
				if !isSupported(t) {
					ok = false
				}
			})
		}
		return ok
	})
	return ok
}

// unsupportedTags lists, comma-separated, the Proxy-Require tags and (when
// uas) the unsupported Require tags.
func unsupportedTags(head []byte, uas bool) string {
	var b []byte
	eachHeader(head, func(h hdr, value, _ []byte) bool {
		if h == hProxyRequire || (uas && h == hRequire) {
			eachTag(value, func(t []byte) {
				if h == hRequire && isSupported(t) {
					return
				}
				if !isToken(t) {
					return
				}
				if len(b) > 0 {
					b = append(b, ", "...)
				}
				b = append(b, t...)
			})
		}
		return len(b) < 1024
	})
	return string(b)
}

// printable returns b for a journal detail or Warning header: at most 64
// bytes, with anything outside printable ASCII (and the double quote)
// replaced by '?', so nothing a client sent can inject lines or quotes.
func printable(b []byte) string { return printableN(b, 64) }

// printableN is printable with at most n bytes.
func printableN(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}

// parsesInSipgo runs sipgo's own parser on a message the fast path could
// not vouch for, and for a request also sipgo's transaction key. It
// returns why sipgo would refuse the message (as a journal detail).
func parsesInSipgo(p *sip.Parser, msg []byte) error {
	parsed, err := p.ParseSIP(msg)
	if err != nil {
		return fmt.Errorf("unparsable: %s", clip(err.Error()))
	}
	if req, ok := parsed.(*sip.Request); ok {
		if _, err := sip.ServerTxKeyMake(req); err != nil {
			return errNoTxKey
		}
	}
	return nil
}

// errNoTxKey: sipgo's transaction layer cannot key the request.
var errNoTxKey = errors.New("no RFC 3261 branch in Via and no From tag: the request cannot be matched to a transaction")

// fastBranch reports whether a Via value surely gives sipgo an RFC 3261
// branch ("z9hG4bK" and more) in its first hop, as its parser reads it.
func fastBranch(v []byte) bool {
	if indexIn(v, &quoteCommaSet) >= 0 {
		return false
	}
	i := bytes.IndexByte(v, '/')
	if i < 0 {
		return false
	}
	j := bytes.IndexByte(v[i+1:], '/')
	if j < 0 {
		return false
	}
	rest := v[i+1+j+1:]
	ws := indexIn(rest, &wspSet)
	if ws < 0 {
		return false
	}
	rest = rest[ws:]
	const key = ";branch=z9hG4bK"
	k := bytes.Index(rest, []byte(key))
	return k >= 0 && k+len(key) < len(rest) && rest[k+len(key)] != ';'
}

var quoteCommaSet = setOf("\",")
