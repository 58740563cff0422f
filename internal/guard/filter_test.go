package guard

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// outcome is what the filter did with one message.
type outcome struct {
	pass    int  // bytes handed to sipgo (0 = none)
	status  int  // status of the filter's own answer (0 = none)
	closed  bool // the TCP connection was closed
	pending bool // an incomplete message waits for more bytes
}

func (o outcome) String() string {
	return fmt.Sprintf("pass=%d status=%d closed=%v pending=%v", o.pass, o.status, o.closed, o.pending)
}

// tortureWant is the filter's behaviour on each RFC 4475 message. What
// passes is then answered by switchboard's handlers (see the e2e test);
// the filter answers or drops the rest itself. -1 in pass means "all".
var tortureWant = map[string]struct{ udp, tcp outcome }{
	"badaspec":   {outcome{status: 400}, outcome{status: 400}},
	"badbranch":  {outcome{pass: -1}, outcome{pass: -1}},
	"baddate":    {outcome{pass: -1}, outcome{pass: -1}},
	"baddn":      {outcome{status: 400}, outcome{pending: true}}, // no empty line: on a stream the message never ends
	"badinv01":   {outcome{status: 400}, outcome{status: 400}},
	"badvers":    {outcome{status: 505}, outcome{status: 505}},
	"bcast":      {outcome{pass: -1}, outcome{pass: -1}}, // a response; the proxy drops it (Via not ours)
	"bext01":     {outcome{status: 420}, outcome{status: 420}},
	"bigcode":    {outcome{}, outcome{}},
	"clerr":      {outcome{status: 400}, outcome{pending: true}},
	"cparam01":   {outcome{pass: -1}, outcome{pass: -1}},
	"cparam02":   {outcome{pass: -1}, outcome{pass: -1}},
	"dblreq":     {outcome{pass: 300}, outcome{pass: 745, closed: true}}, // UDP: trailing octets ignored; TCP: they are garbage
	"esc01":      {outcome{pass: -1}, outcome{pass: -1}},
	"esc02":      {outcome{status: 501}, outcome{status: 501}},
	"escnull":    {outcome{pass: -1}, outcome{pass: -1}},
	"escruri":    {outcome{status: 400}, outcome{status: 400}},
	"insuf":      {outcome{status: 400}, outcome{status: 400}},
	"intmeth":    {outcome{status: 501}, outcome{status: 501}},
	"inv2543":    {outcome{status: 400}, outcome{status: 400, closed: true}}, // no branch, no From tag: sipgo cannot key it (TestFilterRFC2543Stateless); no Content-Length on TCP
	"invut":      {outcome{pass: -1}, outcome{pass: -1}},
	"longreq":    {outcome{pass: -1}, outcome{pass: -1}},
	"ltgtruri":   {outcome{status: 400}, outcome{status: 400}},
	"lwsdisp":    {outcome{pass: -1}, outcome{pass: -1}},
	"lwsruri":    {outcome{status: 400}, outcome{status: 400, closed: true}},
	"lwsstart":   {outcome{status: 400}, outcome{status: 400, closed: true}},
	"mcl01":      {outcome{status: 400}, outcome{status: 400, closed: true}},
	"mismatch01": {outcome{status: 400}, outcome{status: 400}},
	"mismatch02": {outcome{status: 501}, outcome{status: 501}},
	"mpart01":    {outcome{pass: -1}, outcome{pass: -1}},
	"multi01":    {outcome{status: 400}, outcome{status: 400}},
	"ncl":        {outcome{status: 400}, outcome{status: 400, closed: true}},
	"noreason":   {outcome{pass: -1}, outcome{pass: -1}},
	"novelsc":    {outcome{status: 416}, outcome{status: 416}},
	"quotbal":    {outcome{status: 400}, outcome{status: 400}},
	"regaut01":   {outcome{pass: -1}, outcome{pass: -1}},
	"regbadct":   {outcome{pass: -1}, outcome{pass: -1}},
	"regescrt":   {outcome{pass: -1}, outcome{pass: -1}},
	"scalar02":   {outcome{status: 400}, outcome{status: 400}},
	"scalarlg":   {outcome{}, outcome{}},
	"sdp01":      {outcome{pass: -1}, outcome{pass: -1}},
	"semiuri":    {outcome{pass: -1}, outcome{pass: -1}},
	"test":       {outcome{}, outcome{closed: true}}, // no Via: nowhere to answer
	"transports": {outcome{pass: -1}, outcome{pass: -1}},
	"trws":       {outcome{status: 400}, outcome{status: 400, closed: true}},
	"unkscm":     {outcome{status: 416}, outcome{status: 416}},
	"unksm2":     {outcome{pass: -1}, outcome{pass: -1}},
	"unreason":   {outcome{pass: -1}, outcome{pass: -1}},
	"wsinv":      {outcome{pass: 878}, outcome{pass: 878}}, // normalized (TestNormalizeWsinv): sipgo reads the From tag "tag = x" only then
	"zeromf":     {outcome{pass: -1}, outcome{pass: -1}},
}

func runFilter(t *testing.T, s *Guard, rec *recorder, transport string, data []byte) (outcome, []byte, [][]byte) {
	t.Helper()
	from := net.Addr(udpFrom)
	if transport == "TCP" {
		from = tcpFrom
	}
	out := s.Filter(transport, from, data)
	replies, closed := rec.Take()
	o := outcome{pass: len(out), closed: len(closed) > 0, pending: s.streams.n.Load() > 0}
	if len(replies) > 1 {
		t.Errorf("%d answers, want at most 1", len(replies))
	}
	if len(replies) == 1 {
		o.status = answerStatus(t, data, replies[0])
	}
	return o, out, replies
}

func TestFilterTorture(t *testing.T) {
	corpus := torture(t)
	if len(corpus) != len(tortureWant) {
		t.Fatalf("corpus has %d messages, table %d", len(corpus), len(tortureWant))
	}
	p := sip.NewParser()
	for _, name := range sortedKeys(corpus) {
		data := corpus[name]
		for _, tr := range []string{"UDP", "TCP"} {
			t.Run(name+"/"+tr, func(t *testing.T) {
				s, rec := newTestGuard(t, Config{})
				want := tortureWant[name].udp
				if tr == "TCP" {
					want = tortureWant[name].tcp
				}
				if want.pass == -1 {
					want.pass = len(data)
				}
				got, out, replies := runFilter(t, s, rec, tr, data)
				if got != want {
					t.Fatalf("got %v, want %v", got, want)
				}
				if len(out) > 0 {
					// Whatever passes, sipgo's parser accepts.
					if tr == "UDP" {
						if _, err := p.ParseSIP(out); err != nil {
							t.Errorf("passed a message sipgo cannot parse: %v", err)
						}
					} else if err := p.NewSIPStream().ParseSIPStream(out, func(sip.Message) {}); err != nil {
						t.Errorf("passed a stream sipgo cannot parse: %v", err)
					}
				}
				if len(replies) == 1 {
					checkAnswer(t, data, replies[0])
				}
			})
		}
	}
}

// answerStatus returns the status of the filter's answer to req. The
// answer must parse in sipgo whenever the request's copied header fields
// do (an out-of-range CSeq is echoed as received).
func answerStatus(t *testing.T, req, reply []byte) int {
	t.Helper()
	line := statusOf(reply)
	var code int
	if _, err := fmt.Sscanf(line, "SIP/2.0 %d ", &code); err != nil || code < 400 || code > 699 {
		t.Fatalf("bad status line %q", line)
	}
	res, err := sip.ParseMessage(reply)
	if err != nil {
		if _, rerr := sip.ParseMessage(req); rerr == nil {
			t.Fatalf("the answer does not parse though the request does: %v\n%s", err, reply)
		}
		return code
	}
	if r, ok := res.(*sip.Response); !ok || r.StatusCode != code {
		t.Fatalf("answer is not a %d response:\n%s", code, reply)
	}
	return code
}

// checkAnswer verifies a stateless answer carries the request's Call-ID,
// CSeq and top Via, and a To tag.
func checkAnswer(t *testing.T, req, reply []byte) {
	t.Helper()
	res, err := sip.ParseMessage(reply)
	if err != nil {
		return // echoes a header sipgo refuses (see answerStatus)
	}
	var want []string
	seen := map[hdr]bool{}
	eachRawHeader(req, func(h hdr, value, _ []byte) {
		if (h == hCallID || h == hCSeq) && !seen[h] {
			seen[h] = true
			want = append(want, strings.NewReplacer("\r", " ", "\n", " ").Replace(string(value)))
		}
	})
	for _, w := range want {
		if !bytes.Contains(reply, []byte(w)) {
			t.Errorf("answer lacks %q:\n%s", w, reply)
		}
	}
	if res.Via() == nil {
		t.Errorf("answer has no Via:\n%s", reply)
	}
	reqNeedsTag := false
	eachRawHeader(req, func(h hdr, _, raw []byte) {
		if h == hTo && !seen[hTo] {
			seen[hTo] = true
			reqNeedsTag = needsTag(raw)
		}
	})
	if to := res.(*sip.Response).To(); reqNeedsTag && to != nil && !to.Params.Has("tag") {
		t.Errorf("answer's To has no tag:\n%s", reply)
	}
}

func TestFilterTCPByteByByte(t *testing.T) {
	// Every valid message, fed one byte per read (NATS-style), comes out
	// whole and once.
	corpus := torture(t)
	p := sip.NewParser()
	for _, name := range sortedKeys(corpus) {
		want := tortureWant[name].tcp
		if want.pass != -1 {
			continue
		}
		data := corpus[name]
		t.Run(name, func(t *testing.T) {
			s, rec := newTestGuard(t, Config{})
			var got []byte
			for i := range data {
				got = append(got, s.Filter("TCP", tcpFrom, data[i:i+1])...)
			}
			replies, closed := rec.Take()
			if len(replies) > 0 || len(closed) > 0 {
				t.Fatalf("replies %d, closed %v", len(replies), closed)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("got %d bytes, want %d", len(got), len(data))
			}
			if s.streams.n.Load() != 0 {
				t.Errorf("stream state left behind")
			}
			if err := p.NewSIPStream().ParseSIPStream(got, func(sip.Message) {}); err != nil {
				t.Errorf("sipgo: %v", err)
			}
		})
	}
}

func TestFilterTCPPipelined(t *testing.T) {
	// Several messages in one read, a bad one in the middle (framing
	// intact): the good ones pass in order, the bad one is answered.
	corpus := torture(t)
	stream := append(append(append(append([]byte("\r\n"), corpus["lwsdisp"]...), corpus["esc02"]...), corpus["semiuri"]...), "\r\n\r\n"...)
	s, rec := newTestGuard(t, Config{})
	out := s.Filter("TCP", tcpFrom, stream)
	want := append(append([]byte("\r\n"), corpus["lwsdisp"]...), corpus["semiuri"]...)
	if !bytes.Equal(out, want) {
		t.Fatalf("passed %q\nwant %q", out, want)
	}
	replies, closed := rec.Take()
	if len(replies) != 1 || statusOf(replies[0]) != "SIP/2.0 501 Not Implemented" || len(closed) != 0 {
		t.Fatalf("replies %q closed %v", replies, closed)
	}
	if s.streams.n.Load() != 0 {
		t.Error("trailing keepalive CRLFs left pending")
	}
	// Split in the middle of the second message.
	s, rec = newTestGuard(t, Config{})
	two := append(append([]byte(nil), corpus["lwsdisp"]...), corpus["semiuri"]...)
	cut := len(corpus["lwsdisp"]) + 40
	a := s.Filter("TCP", tcpFrom, two[:cut])
	b := s.Filter("TCP", tcpFrom, two[cut:])
	if string(a) != string(corpus["lwsdisp"]) || string(b) != string(corpus["semiuri"]) {
		t.Fatalf("got %q then %q", a, b)
	}
	// A keepalive ping alone passes (sipgo answers the pong).
	if out := s.Filter("TCP", tcpFrom, []byte("\r\n\r\n")); string(out) != "\r\n\r\n" {
		t.Fatalf("keepalive: %q", out)
	}
}

func TestFilterStalledStreamClosed(t *testing.T) {
	corpus := torture(t)
	clock := &fakeClock{}
	s := New(Config{StreamTimeout: 5_000_000_000}, Deps{Policy: &testPolicy{}, Now: clock.Now})
	rec := &recorder{}
	s.SetTransport(rec)
	if out := s.Filter("TCP", tcpFrom, corpus["clerr"]); out != nil {
		t.Fatalf("passed %q", out)
	}
	s.expireStreams()
	if _, closed := rec.Take(); len(closed) != 0 {
		t.Fatal("closed too early")
	}
	clock.advance(6_000_000_000)
	s.expireStreams()
	if _, closed := rec.Take(); len(closed) != 1 || closed[0] != tcpFrom.String() {
		t.Fatalf("closed %v", closed)
	}
	if s.streams.n.Load() != 0 {
		t.Error("state kept after close")
	}
}

func TestFilterLimits(t *testing.T) {
	base := "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:b@example.com>;tag=1\r\n" +
		"To: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n"
	many := base + strings.Repeat("X-A: b\r\n", MaxHeaders) + "Content-Length: 0\r\n\r\n"
	huge := base + "Content-Length: 70000\r\n\r\n"
	bareLF := base + "X-Evil: a\nVia: SIP/2.0/UDP evil\r\nContent-Length: 0\r\n\r\n"
	lower := strings.Replace(base, "OPTIONS sip:", "options sip:", 1) + "Content-Length: 0\r\n\r\n"
	for _, tc := range []struct {
		name, msg string
		status    int
	}{
		{"too many headers", many, 400},
		{"too large", huge, 513},
		{"bare LF", bareLF, 400},
		{"lower-case method", lower, 501},
		{"proxy-require", base + "Proxy-Require: foo\r\nContent-Length: 0\r\n\r\n", 420},
		{"require on OPTIONS", base + "Require: 100rel\r\nContent-Length: 0\r\n\r\n", 420},
		{"supported require", base + "Require: path\r\nContent-Length: 0\r\n\r\n", 0},
		{"cseq 2^31", strings.Replace(base, "CSeq: 1 ", "CSeq: 2147483648 ", 1) + "\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, rec := newTestGuard(t, Config{})
			got, _, _ := runFilter(t, s, rec, "UDP", []byte(tc.msg))
			if got.status != tc.status || (tc.status == 0) != (got.pass > 0) {
				t.Fatalf("got %v, want status %d", got, tc.status)
			}
		})
	}
	// A datagram that filled sipgo's read buffer was cut by the kernel.
	if MaxDatagram != int(sip.TransportBufferReadSize) {
		t.Fatalf("MaxDatagram %d is not sipgo's UDP read buffer %d", MaxDatagram, sip.TransportBufferReadSize)
	}
	s, rec := newTestGuard(t, Config{})
	full := []byte(base + "Content-Length: 0\r\n\r\n")
	full = append(full, make([]byte, MaxDatagram-len(full))...)
	if got, _, _ := runFilter(t, s, rec, "UDP", full); got.status != 513 {
		t.Fatalf("full datagram: %v", got)
	}
	// The usual case: a 40 KiB message whose body the kernel cut at the
	// buffer's end (its Content-Length says more) is too large, not short.
	cut := []byte(base + "Content-Length: 40000\r\n\r\n" + strings.Repeat("a", 40000))[:MaxDatagram]
	if got, _, _ := runFilter(t, s, rec, "UDP", cut); got.status != 513 {
		t.Fatalf("cut datagram: %v", got)
	}
	// One byte less is a datagram that arrived whole.
	whole := []byte(base + "Content-Length: 0\r\n\r\n")
	whole = append(whole, make([]byte, MaxDatagram-1-len(whole))...)
	if got, _, _ := runFilter(t, s, rec, "UDP", whole); got.status != 0 || got.pass == 0 {
		t.Fatalf("datagram under the limit: %v", got)
	}
}

// TestFilterScanner: a message whose user agent the policy calls a
// scanner's is dropped unanswered (the policy bans; see package security).
func TestFilterScanner(t *testing.T) {
	msg := []byte("OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1\r\n" +
		"From: \"sipvicious\"<sip:100@1.1.1.1>;tag=1\r\nTo: \"sipvicious\"<sip:100@1.1.1.1>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\n" +
		"User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n")
	s, rec := newTestGuard(t, Config{})
	if out := s.Filter("UDP", udpFrom, msg); out != nil {
		t.Fatal("scanner passed")
	}
	if replies, _ := rec.Take(); len(replies) != 0 {
		t.Fatalf("answered a scanner: %q", replies)
	}
	if p := s.policy.(*testPolicy); p.scanners != 1 {
		t.Fatalf("policy told of %d scanners, want 1", p.scanners)
	}
	ok := []byte(strings.Replace(string(msg), "friendly-scanner", "Yealink SIP-T46S", 1))
	if out := s.Filter("UDP", udpFrom, ok); out == nil {
		t.Fatal("a phone's message was dropped")
	}
}
