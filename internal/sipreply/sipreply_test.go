package sipreply

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// requests are REGISTERs and INVITEs as phones write them, and odd ones.
var requests = map[string]string{
	"plain": "REGISTER sip:127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-1;rport\r\n" +
		"From: <sip:1001@127.0.0.1>;tag=abc\r\nTo: <sip:1001@127.0.0.1>\r\n" +
		"Call-ID: c1@127.0.0.1\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:1001@127.0.0.1:5062>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
	"vias": "REGISTER sip:example.org SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a;rport;received=1.2.3.4\r\n" +
		"Via: SIP/2.0/TCP proxy.example.org;branch=z9hG4bK-b, SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK-c\r\n" +
		"Via: SIP/2.0/UDP 2001:db8::2;branch=z9hG4bK-d;rport=7\r\n" +
		"From: \"Alice A\" <sip:alice@example.org>;tag=1\r\nTo: \"Alice A\" <sip:alice@example.org;transport=udp>;x=y\r\n" +
		"Call-ID: many-vias\r\nCSeq: 2147483647 REGISTER\r\nContent-Length: 0\r\n\r\n",
	"compact": "REGISTER sip:127.0.0.1 SIP/2.0\r\n" +
		"v: SIP/2.0/UDP 127.0.0.1:5062;rport;branch=z9hG4bK-2\r\n" +
		"v: SIP/2.0/UDP 127.0.0.9;branch=z9hG4bK-3\r\n" +
		"f: sip:1001@127.0.0.1;tag=abc\r\nt: sip:1001@127.0.0.1\r\n" +
		"i: compact@127.0.0.1\r\nCSeq: 2 REGISTER\r\nm: <sip:1001@127.0.0.1:5062>\r\nl: 0\r\n\r\n",
	"to tag": "INVITE sip:2002@127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-4;rport\r\n" +
		"From: <sip:1001@127.0.0.1>;tag=abc\r\nTo: <sip:2002@127.0.0.1>;tag=already\r\n" +
		"Call-ID: tagged\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n",
	"odd spacing": "REGISTER sip:127.0.0.1 SIP/2.0\r\n" +
		"via:SIP/2.0/UDP   127.0.0.1:5062 ;branch=z9hG4bK-5 ; rport\r\n" +
		"FROM:   <sip:1001@127.0.0.1> ; tag=abc\r\nTO:<sip:1001@127.0.0.1>  \r\n" +
		"call-id:   spaced \r\ncseq:  3   REGISTER\r\nContent-Length: 0\r\n\r\n",
}

// sipgo builds the answer the way the registrar did before this package:
// NewResponseFromRequest, the To tag set to tag when it has none (sipgo's
// is random), extra headers appended, StringWrite.
func sipgoAnswer(req *sip.Request, status int, reason, tag string, extra [][2]string) []byte {
	res := sip.NewResponseFromRequest(req, status, reason, nil)
	if to := res.To(); to != nil && tag != "" && (req.To() == nil || !req.To().Params.Has("tag")) {
		to.Params.Add("tag", tag)
	}
	for _, h := range extra {
		res.AppendHeader(sip.NewHeader(h[0], h[1]))
	}
	var b bytes.Buffer
	res.StringWrite(&b)
	return b.Bytes()
}

func ours(w *Writer, req *sip.Request, status int, reason, tag string, extra [][2]string) []byte {
	return begin(w, req, status, reason, tag, extra).Bytes()
}

// oursResponse is the answer as a server transaction gets it.
func oursResponse(w *Writer, req *sip.Request, status int, reason, tag string, extra [][2]string) []byte {
	var b bytes.Buffer
	begin(w, req, status, reason, tag, extra).Response().StringWrite(&b)
	return b.Bytes()
}

func begin(w *Writer, req *sip.Request, status int, reason, tag string, extra [][2]string) *Answer {
	a := w.Begin(req, status, reason, tag)
	for _, h := range extra {
		a.Header(h[0], h[1])
	}
	return a
}

func parse(t testing.TB, raw string, source string) *sip.Request {
	t.Helper()
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	req := msg.(*sip.Request)
	req.SetSource(source)
	req.SetTransport("UDP")
	return req
}

// TestSameAsSipgo: the answer is the one sipgo would have written, byte
// for byte, for each request, status and source.
func TestSameAsSipgo(t *testing.T) {
	var w Writer
	extra := [][2]string{{"WWW-Authenticate", `Digest realm="127.0.0.1", nonce="n", algorithm=MD5`},
		{"Server", "switchboard"}}
	for name, raw := range requests {
		for _, source := range []string{"127.0.0.1:5062", "[2001:db8::9]:6000", "192.0.2.1"} {
			for _, st := range []struct {
				code   int
				reason string
			}{{401, "Unauthorized"}, {200, "OK"}, {407, "Proxy Authentication Required"}, {503, "Service Unavailable"}} {
				req := parse(t, raw, source)
				want := sipgoAnswer(req, st.code, st.reason, "fixed-tag", extra)
				// sipgo's answer was built from the same request: both
				// must not change it.
				for range 2 {
					got := ours(&w, req, st.code, st.reason, "fixed-tag", extra)
					if !bytes.Equal(got, want) {
						t.Errorf("%s from %s, %d:\ngot:\n%s\nwant:\n%s", name, source, st.code, got, want)
					}
					if got := oursResponse(&w, req, st.code, st.reason, "fixed-tag", extra); !bytes.Equal(got, want) {
						t.Errorf("%s from %s, %d, Response:\ngot:\n%s\nwant:\n%s", name, source, st.code, got, want)
					}
				}
			}
		}
	}
}

// TestTag: without a tag of its own the To gets a random UUID, a new one
// each time (as sipgo's); a To with a tag keeps it.
func TestTag(t *testing.T) {
	var w Writer
	uuidTag := regexp.MustCompile(`(?m)^To: <sip:1001@127.0.0.1>;tag=([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})\r$`)
	req := parse(t, requests["plain"], "127.0.0.1:5062")
	first := uuidTag.FindSubmatch(w.Begin(req, 200, "OK", "").Bytes())
	second := uuidTag.FindSubmatch(w.Begin(req, 200, "OK", "").Bytes())
	if first == nil || second == nil || bytes.Equal(first[1], second[1]) {
		t.Errorf("tags %q and %q: want two different UUIDs", first, second)
	}
	// A server transaction's answer too (sipgo's own UUID).
	a := w.Begin(req, 200, "OK", "")
	a.HeaderInt("X-N", 1)
	var res bytes.Buffer
	a.Response().StringWrite(&res)
	if uuidTag.FindSubmatch(res.Bytes()) == nil || !strings.Contains(res.String(), "\r\nX-N: 1\r\n") {
		t.Errorf("Response:\n%s\nwant a UUID tag and X-N", res.String())
	}
	tagged := parse(t, requests["to tag"], "127.0.0.1:5062")
	if got := string(w.Begin(tagged, 407, "Proxy Authentication Required", "mine").Bytes()); !strings.Contains(got,
		"\r\nTo: <sip:2002@127.0.0.1>;tag=already\r\n") {
		t.Errorf("the request's To tag was not kept:\n%s", got)
	}
}

// TestBytesOwnCopy: the bytes returned are the caller's: writing the next
// answer (from the same pool) does not change them.
func TestBytesOwnCopy(t *testing.T) {
	var w Writer
	req := parse(t, requests["plain"], "127.0.0.1:5062")
	a := w.Begin(req, 401, "Unauthorized", "t1")
	a.HeaderInt("Min-Expires", 60)
	a.Contact("sip:1001@127.0.0.1:5062", 3600)
	first := a.Bytes()
	keep := bytes.Clone(first)
	if len(first) != cap(first) {
		t.Errorf("len %d, cap %d: want an answer of its size", len(first), cap(first))
	}
	for range 3 {
		w.Begin(req, 200, "OK", "t2").Bytes()
	}
	if !bytes.Equal(first, keep) {
		t.Errorf("an answer changed after the next ones:\n%s", first)
	}
	if !bytes.Contains(first, []byte("\r\nMin-Expires: 60\r\nContact: <sip:1001@127.0.0.1:5062>;expires=3600\r\n\r\n")) {
		t.Errorf("headers missing:\n%s", first)
	}
}

// FuzzSameAsSipgo: for any request sipgo parses, the answer is sipgo's,
// byte for byte, and sipgo parses it back as a response of that status.
func FuzzSameAsSipgo(f *testing.F) {
	for _, raw := range requests {
		f.Add([]byte(raw), "127.0.0.1:5062")
	}
	f.Add([]byte("OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;rport;rport\r\n\r\n"), "1.2.3.4:5")
	var w Writer
	f.Fuzz(func(t *testing.T, data []byte, source string) {
		msg, err := sip.ParseMessage(data)
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		req.SetSource(source)
		want := sipgoAnswer(req, 401, "Unauthorized", "fuzz", nil)
		got := ours(&w, req, 401, "Unauthorized", "fuzz", nil)
		if !bytes.Equal(got, want) {
			t.Fatalf("got:\n%q\nwant:\n%q", got, want)
		}
		if tx := oursResponse(&w, req, 401, "Unauthorized", "fuzz", nil); !bytes.Equal(tx, want) {
			t.Fatalf("Response:\n%q\nwant:\n%q", tx, want)
		}
		back, err := sip.ParseMessage(got)
		if err != nil {
			// sipgo cannot always read back what it wrote itself (its
			// answer is the same bytes); only a well-formed request's
			// answer must parse.
			if req.Via() != nil && req.From() != nil && req.To() != nil && req.CallID() != nil && req.CSeq() != nil &&
				!strings.ContainsAny(source, "\r\n") {
				t.Logf("answer does not parse (%v):\n%q", err, got)
			}
			return
		}
		if res, ok := back.(*sip.Response); !ok || res.StatusCode != 401 {
			t.Fatalf("parsed back as %T", back)
		}
	})
}

// BenchmarkAnswer compares a registrar's 200 (one contact and a Date)
// written by sipgo (NewResponseFromRequest, headers appended, StringWrite
// into a buffer, copied out at its size, as the stateless path did) and
// by a Writer.
func BenchmarkAnswer(b *testing.B) {
	req := parse(b, requests["plain"], "127.0.0.1:5062")
	date := "Thu, 03 Dec 2026 14:00:00 GMT"
	b.Run("sipgo", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		for range b.N {
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			res.AppendHeader(sip.NewHeader("Contact", "<"+"sip:1001@127.0.0.1:5062"+">;expires="+strconv.Itoa(3600)))
			res.AppendHeader(sip.NewHeader("Date", date))
			res.AppendHeader(sip.NewHeader("Server", "switchboard"))
			buf.Reset()
			res.StringWrite(&buf)
			_ = bytes.Clone(buf.Bytes())
		}
	})
	b.Run("writer", func(b *testing.B) {
		b.ReportAllocs()
		var w Writer
		for range b.N {
			a := w.Begin(req, 200, "OK", "")
			a.Contact("sip:1001@127.0.0.1:5062", 3600)
			a.Header("Date", date)
			a.Header("Server", "switchboard")
			_ = a.Bytes()
		}
	})
}
