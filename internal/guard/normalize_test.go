package guard

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/sipreply"
)

func normalizeString(t *testing.T, msg string) string {
	t.Helper()
	var m message
	if res, err := scan([]byte(msg), false, &m); res != scanOK {
		t.Fatalf("scan: %v %v", res, err)
	}
	return string(normalize([]byte(msg)[:m.size], m.bodyStart))
}

func TestNormalize(t *testing.T) {
	const tail = "Call-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 4\r\n\r\na\r\n "
	for _, tc := range []struct{ name, in, want string }{
		{"already canonical",
			"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=x\r\nFrom: <sip:c@d>;tag=1\r\nTo: sip:a@b\r\n" + tail, ""},
		{"folded and spaced parameters",
			"INVITE sip:a@b SIP/2.0\r\nVia : SIP / 2.0\r\n /UDP   h : 5060 ;\r\n branch = x\r\nfrom: J  Doe <sip:c@d> ; tag = 1\r\nTo: sip:a@b ;tag=2\r\n" + tail,
			"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h:5060;branch=x\r\nfrom: J Doe <sip:c@d>;tag=1\r\nTo: sip:a@b;tag=2\r\n" + tail},
		{"quoted strings and brackets kept",
			"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=x\r\nFrom: \"a ; b = \\\" , c\"  <sip:c@d;x = y> ;tag=1\r\nTo: <sip:a@b>\r\n" + tail,
			"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=x\r\nFrom: \"a ; b = \\\" , c\" <sip:c@d;x = y>;tag=1\r\nTo: <sip:a@b>\r\n" + tail},
		{"other fields only unfolded",
			"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=x\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nSubject: a ;  b\r\n  c = d\r\n" + tail,
			"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=x\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nSubject: a ; b c = d\r\n" + tail},
		{"Via hops on folded lines",
			"INVITE sip:a@b SIP/2.0\r\nv: SIP/2.0/TCP h1 ;\r\n  branch = z9hG4bK1 ,\r\n SIP/2.0/UDP h2\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\n" + tail,
			"INVITE sip:a@b SIP/2.0\r\nv: SIP/2.0/TCP h1;branch=z9hG4bK1,SIP/2.0/UDP h2\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\n" + tail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := normalizeString(t, tc.in)
			if got != tc.want {
				t.Fatalf("normalize:\n%q\nwant\n%q", got, tc.want)
			}
			if got != "" && !strings.HasSuffix(got, "\r\n\r\na\r\n ") {
				t.Fatal("body changed")
			}
			if got != "" && normalizeString(t, got) != "" {
				t.Fatal("normalizing twice changes the message again")
			}
		})
	}
}

// TestNormalizeWsinv: RFC 4475's wsinv, which sipgo parses with a From
// tag " tag " = " 98asjd8" (so no tag, so no transaction key), is read
// correctly in its normalized form.
func TestNormalizeWsinv(t *testing.T) {
	data := torture(t)["wsinv"]
	if err := parsesInSipgo(sip.NewParser(), data); err != errNoTxKey {
		t.Fatalf("as sent: %v, want %v", err, errNoTxKey)
	}
	var m message
	if res, _ := scan(data, false, &m); res != scanOK {
		t.Fatal("scan")
	}
	n := normalize(data[:m.size], m.bodyStart)
	if err := parsesInSipgo(sip.NewParser(), n); err != nil {
		t.Fatalf("normalized: %v\n%s", err, n)
	}
	msg, _ := sip.ParseMessage(n)
	req := msg.(*sip.Request)
	for _, c := range []struct{ what, got, want string }{
		{"From tag", param(req.From().Params, "tag"), "98asjd8"},
		{"To tag", param(req.To().Params, "tag"), "1918181833n"},
		{"To host", req.To().Address.Host, "chair-dnrc.example.com"},
		{"Contact q", param(req.Contact().Params, "q"), "0.33"},
		{"top Via", req.Via().Transport + " " + req.Via().Host + " " + param(req.Via().Params, "branch"), "UDP 192.0.2.2 390skdjuw"},
		{"Vias", strings.Join(headerValues(req, "Via"), " | "),
			"SIP/2.0/UDP 192.0.2.2;branch=390skdjuw | SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8 | SIP/2.0/UDP 192.168.255.111;branch=z9hG4bK30239"},
		{"CSeq", req.CSeq().Value(), "9 INVITE"},
		{"NewFangledHeader", req.GetHeader("NewFangledHeader").Value(), "newfangled value continued newfangled value"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.what, c.got, c.want)
		}
	}
	if !bytes.Equal(req.Body(), data[m.bodyStart:m.size]) {
		t.Error("body changed")
	}
}

func param(p sip.HeaderParams, k string) string {
	v, _ := p.Get(k)
	return v
}

func headerValues(req *sip.Request, name string) []string {
	var out []string
	for _, h := range req.GetHeaders(name) {
		out = append(out, h.Value())
	}
	return out
}

// testCalls is a Calls that takes (or declines) every INVITE offered and
// keeps them (a fake: this tests the guard's hand-off, not the proxy).
type testCalls struct {
	take bool
	mu   sync.Mutex
	seen []*sip.Request
	sent int
}

func (c *testCalls) Stateless(req *sip.Request) bool {
	c.mu.Lock()
	c.seen = append(c.seen, req)
	c.mu.Unlock()
	return c.take
}

func (c *testCalls) ChallengeStateless(_ *sip.Request, _ func(*sipreply.Answer) error) {
	c.mu.Lock()
	c.sent++
	c.mu.Unlock()
}

// TestFilterRFC2543Stateless: a request sipgo cannot key (RFC 4475's
// inv2543: no branch, no From tag) is offered to the stateless path;
// taken, the filter neither answers nor passes it (the proxy answers);
// declined, or with no proxy yet, 400.
func TestFilterRFC2543Stateless(t *testing.T) {
	data := torture(t)["inv2543"]
	for _, take := range []bool{true, false} {
		s, rec := newTestGuard(t, Config{})
		calls := &testCalls{take: take}
		s.SetCalls(calls)
		got, _, _ := runFilter(t, s, rec, "UDP", data)
		s.Wait()
		want := outcome{}
		if !take {
			want = outcome{status: 400}
		}
		if got != want || len(calls.seen) != 1 || calls.seen[0].CallID().Value() != "inv2543.1717@ift.client.example.com" {
			t.Fatalf("take=%v: got %v, offered %d, want %v", take, got, len(calls.seen), want)
		}
		if n := map[bool]int{true: 1, false: 0}[take]; calls.sent != n {
			t.Fatalf("take=%v: %d challenges, want %d", take, calls.sent, n)
		}
	}
	s, rec := newTestGuard(t, Config{})
	if got, _, _ := runFilter(t, s, rec, "UDP", data); got != (outcome{status: 400}) {
		t.Fatalf("without a proxy: %v", got)
	}
	// A request sipgo can key that the proxy declines goes on to sipgo;
	// over TCP nothing is offered.
	s, rec = newTestGuard(t, Config{})
	calls := &testCalls{}
	s.SetCalls(calls)
	if got, _, _ := runFilter(t, s, rec, "UDP", torture(t)["wsinv"]); got.pass == 0 || len(calls.seen) != 1 {
		t.Fatalf("wsinv: %v, offered %d", got, len(calls.seen))
	}
	if got, _, _ := runFilter(t, s, rec, "TCP", torture(t)["wsinv"]); got.pass == 0 || len(calls.seen) != 1 {
		t.Fatalf("wsinv over TCP: %v, offered %d", got, len(calls.seen))
	}
}

// TestFilterNormalizedStream: on TCP a normalized message replaces its
// bytes in the stream handed on, between unchanged ones.
func TestFilterNormalizedStream(t *testing.T) {
	wsinv := torture(t)["wsinv"]
	plain := []byte("OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:b@example.com>;tag=1\r\n" +
		"To: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
	var m message
	scan(wsinv, false, &m)
	norm := normalize(wsinv, m.bodyStart)
	in := append(append(append([]byte(nil), plain...), wsinv...), plain...)
	s, rec := newTestGuard(t, Config{})
	got, out, _ := runFilter(t, s, rec, "TCP", in)
	want := append(append(append([]byte(nil), plain...), norm...), plain...)
	if got.status != 0 || got.closed || !bytes.Equal(out, want) {
		t.Fatalf("got %v\n%q\nwant\n%q", got, out, want)
	}
	n := 0
	if err := sip.NewParser().NewSIPStream().ParseSIPStream(out, func(sip.Message) { n++ }); err != nil || n != 3 {
		t.Fatalf("sipgo reads %d messages: %v", n, err)
	}
}

// FuzzNormalize: on any message that scans, normalize does not panic,
// keeps the start line and the body, and a second pass changes nothing.
//
//	go test -run '^$' -fuzz '^FuzzNormalize$' -fuzztime 20s ./internal/guard/
func FuzzNormalize(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var m message
		if res, _ := scan(data, false, &m); res != scanOK {
			return
		}
		msg := data[:m.size]
		n := normalize(msg, m.bodyStart)
		if n == nil {
			return
		}
		eol := bytes.Index(msg, []byte("\r\n"))
		if !bytes.HasPrefix(n, msg[:eol+2]) || !bytes.HasSuffix(n, msg[m.bodyStart-4:]) {
			t.Fatalf("start line or body changed:\n%q\n%q", msg, n)
		}
		var m2 message
		if res, err := scan(n, false, &m2); res != scanOK {
			t.Fatalf("the normalized message does not scan (%v):\n%q\n%q", err, msg, n)
		}
		if again := normalize(n, m2.bodyStart); again != nil {
			t.Fatalf("normalizing twice changes it again:\n%q\n%q", n, again)
		}
	})
}

// BenchmarkNormalizeWsinv is the slow path's extra cost for a message
// sipgo misreads (the fast path never calls normalize).
func BenchmarkNormalizeWsinv(b *testing.B) {
	data := torture(b)["wsinv"]
	var m message
	scan(data, false, &m)
	b.ReportAllocs()
	for b.Loop() {
		if normalize(data[:m.size], m.bodyStart) == nil {
			b.Fatal("nothing normalized")
		}
	}
}
