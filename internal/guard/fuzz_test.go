package guard

import (
	"bytes"
	"net"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// Run a short pass with, e.g.:
//
//	go test -run '^$' -fuzz '^FuzzFilter$' -fuzztime 20s ./internal/guard/
//	go test -run '^$' -fuzz '^FuzzFastPath$' -fuzztime 20s ./internal/guard/

func addSeeds(f *testing.F) {
	for _, name := range sortedKeys(torture(f)) {
		f.Add(torture(f)[name])
	}
	f.Add(benchRegister)
	f.Add(benchAnswer)
	f.Add([]byte("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1, SIP/2.0/TCP h\r\n" +
		"From: \"A \\\"B\\\"\" <sip:a@[::1]:5060;x=y>;tag=1\r\nTo: sip:b@h;tag=2\r\nContact: *\r\nRoute: <sip:p;lr>, <sip:q;lr>\r\n" +
		"Call-ID: c\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\n" +
		"Call-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 3\r\n\r\nabc"))
}

// crlfClean reports whether every CR in b is followed by LF and every LF
// preceded by CR: no line can be injected into an answer.
func crlfClean(b []byte) bool {
	for i, c := range b {
		switch c {
		case '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				return false
			}
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				return false
			}
		}
	}
	return true
}

var answerStatuses = map[string]bool{"400": true, "416": true, "420": true, "501": true, "505": true, "513": true}

// FuzzFilter feeds arbitrary bytes to the filter over UDP and TCP (whole,
// and split in two reads) and checks its promises: no panic; what passes
// is a prefix (UDP; or its message normalized) or the messages (TCP)
// sipgo's parser accepts; every
// answer is a well-formed error response whose lines cannot be injected.
func FuzzFilter(f *testing.F) {
	addSeeds(f)
	p := sip.NewParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		s, rec := newTestGuard(t, Config{})
		out := s.Filter("UDP", udpFrom, data)
		if out != nil {
			if !bytes.HasPrefix(data, out) {
				// Or the message normalized (see normalize), body unchanged.
				var m message
				if res, _ := scan(data, false, &m); res != scanOK || !bytes.Equal(out, normalize(data[:m.size], m.bodyStart)) ||
					!bytes.HasSuffix(out, data[m.bodyStart:m.size]) {
					t.Fatalf("UDP: passed bytes that are neither a prefix of the datagram nor its message normalized")
				}
			}
			if _, err := p.ParseSIP(out); err != nil {
				t.Fatalf("UDP: passed a message sipgo refuses: %v", err)
			}
		}
		checkReplies(t, rec)

		for _, cut := range []int{len(data), len(data) / 2} {
			s, rec := newTestGuard(t, Config{})
			var got []byte
			got = append(got, s.Filter("TCP", tcpFrom, data[:cut])...)
			if cut < len(data) {
				got = append(got, s.Filter("TCP", tcpFrom, data[cut:])...)
			}
			if len(got) > 0 {
				if err := p.NewSIPStream().ParseSIPStream(got, func(sip.Message) {}); err != nil && !isKeepalive(got) {
					t.Fatalf("TCP (cut %d): passed a stream sipgo refuses: %v\n%q", cut, err, got)
				}
			}
			checkReplies(t, rec)
		}
	})
}

func checkReplies(t *testing.T, rec *recorder) {
	t.Helper()
	replies, _ := rec.Take()
	for _, r := range replies {
		if !crlfClean(r) {
			t.Fatalf("answer with a bare CR or LF:\n%q", r)
		}
		if !bytes.HasSuffix(r, []byte("\r\nContent-Length: 0\r\n\r\n")) || !bytes.HasPrefix(r, []byte("SIP/2.0 ")) || len(r) < 12 {
			t.Fatalf("malformed answer:\n%q", r)
		}
		if !answerStatuses[string(r[8:11])] {
			t.Fatalf("unexpected answer status %q", r[8:11])
		}
		if bytes.Count(r, []byte("\r\n\r\n")) != 1 {
			t.Fatalf("answer with an empty line inside:\n%q", r)
		}
	}
}

// FuzzFastPath checks the allocation-free fast path against sipgo's
// parser: whatever the scanner vouches for (scanOK, not unsure) must parse.
func FuzzFastPath(f *testing.F) {
	addSeeds(f)
	p := sip.NewParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		var m message
		res, _ := scan(data, false, &m)
		if res != scanOK || m.unsure {
			return
		}
		if _, err := p.ParseSIP(data[:m.size]); err != nil {
			t.Fatalf("fast path vouched for a message sipgo refuses: %v\n%q", err, data[:m.size])
		}
	})
}

// FuzzReply builds answers from arbitrary header sections.
func FuzzReply(f *testing.F) {
	addSeeds(f)
	f.Add([]byte("INVITE x SIP/2.0\nVia: a\r\n b\nTo: \"x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, head []byte) {
		r := buildReply(head, 400, "Bad Request", "d", "")
		if r == nil {
			return
		}
		if !crlfClean(r) {
			t.Fatalf("answer with a bare CR or LF:\n%q", r)
		}
		if bytes.Count(r, []byte("\r\n\r\n")) != 1 {
			t.Fatalf("answer with an empty line inside:\n%q", r)
		}
	})
}

var _ net.Addr = udpFrom
