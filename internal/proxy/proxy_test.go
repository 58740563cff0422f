package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func testProxy() *Proxy {
	return New(Config{Host: "0.0.0.0", AdvertiseHost: "192.0.2.10", Port: 5070, UDPLocal: "0.0.0.0:5070",
		OwnHosts: []string{"pbx.example", "127.0.0.1"}, Key: []byte("k")}, Deps{})
}

func TestAdvertisedHost(t *testing.T) {
	p := testProxy()
	if p.Host() != "192.0.2.10" {
		t.Fatalf("unspecified listen address must advertise %q, got %q", "192.0.2.10", p.Host())
	}
	q := New(Config{Host: "127.0.0.1", Port: 5060}, Deps{})
	if q.Host() != "127.0.0.1" {
		t.Fatalf("host = %q", q.Host())
	}
}

func TestOwnURI(t *testing.T) {
	p := testProxy()
	for _, tc := range []struct {
		uri  string
		want bool
	}{
		{"sip:192.0.2.10:5070;lr", true},
		{"sip:PBX.example:5070;lr", true},
		{"sip:127.0.0.1:5070", true},
		{"sip:127.0.0.1:5060", false},
		{"sip:127.0.0.1", false}, // default port 5060
		{"sip:198.51.100.1:5070", false},
	} {
		var u sip.Uri
		if err := sip.ParseUri(tc.uri, &u); err != nil {
			t.Fatal(err)
		}
		if got := p.isOwnURI(&u); got != tc.want {
			t.Errorf("isOwnURI(%s) = %v, want %v", tc.uri, got, tc.want)
		}
	}
}

func TestTokenBindsCallID(t *testing.T) {
	p := testProxy()
	a, b := p.token("call-1"), p.token("call-2")
	if a == b || a != p.token("call-1") || len(a) != 12 {
		t.Fatalf("tokens %q %q", a, b)
	}
	other := New(Config{Host: "127.0.0.1", Port: 5070, Key: []byte("other")}, Deps{})
	if other.token("call-1") == a {
		t.Fatal("a different key makes the same token")
	}
}

func newReq(t *testing.T, raw string) *sip.Request {
	t.Helper()
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return msg.(*sip.Request)
}

const bye = "BYE sip:2002@10.0.0.2:5062 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport\r\n" +
	"Route: <sip:192.0.2.10:5070;lr;sb=TOKEN>\r\n" +
	"Route: <sip:192.0.2.10:5070;transport=tcp;lr;sb=TOKEN>\r\n" +
	"Route: <sip:198.51.100.7;lr>\r\n" +
	"From: <sip:2001@pbx.example>;tag=a\r\n" +
	"To: <sip:2002@pbx.example>;tag=b\r\n" +
	"Call-ID: call-1\r\nCSeq: 3 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"

func TestPopOwnRoutes(t *testing.T) {
	p := testProxy()
	tok := p.token("call-1")
	req := newReq(t, replace(bye, "TOKEN", tok))
	n, ok := p.popOwnRoutes(req, "call-1")
	if n != 2 || !ok {
		t.Fatalf("popped %d (token ok %v), want both of our entries with a valid token", n, ok)
	}
	if r := req.Route(); r == nil || r.Address.Host != "198.51.100.7" {
		t.Fatalf("next route = %v", r)
	}
	req = newReq(t, replace(bye, "TOKEN", "forged"))
	if _, ok := p.popOwnRoutes(req, "call-1"); ok {
		t.Fatal("a forged token was accepted")
	}
}

func TestNextHopRefusesUnknownDialogs(t *testing.T) {
	p := testProxy()
	// Our Route with a bad token and no dialog we know: 403, no relay.
	if _, st, _ := p.nextHop(newReq(t, replace(bye, "TOKEN", "forged"))); st != 403 {
		t.Fatalf("forged token: status %d, want 403", st)
	}
	// Valid token: forwarded to the next Route.
	h, st, _ := p.nextHop(newReq(t, replace(bye, "TOKEN", p.token("call-1"))))
	if st != 0 || h.dest != "198.51.100.7:5060" || h.transport != "UDP" {
		t.Fatalf("valid token: %+v %d", h, st)
	}
	// No Route to us and no dialog: 481.
	noRoute := "BYE sip:2002@10.0.0.2:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK2\r\n" +
		"From: <sip:2001@pbx.example>;tag=a\r\nTo: <sip:2002@pbx.example>;tag=b\r\nCall-ID: call-9\r\n" +
		"CSeq: 3 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	if _, st, _ := p.nextHop(newReq(t, noRoute)); st != 481 {
		t.Fatalf("unknown dialog without route: status %d, want 481", st)
	}
	// A known dialog routes each side to where it is reached (NAT).
	d := &dialog{callID: "call-9", callerTag: "a", calleeTag: "b", callerDest: "203.0.113.1:40001",
		callerTransport: "UDP", calleeDest: "203.0.113.2:40002", calleeTransport: "TCP", last: time.Now()}
	if !p.dialogs.add(d) {
		t.Fatal("add dialog")
	}
	h, st, _ = p.nextHop(newReq(t, noRoute))
	if st != 0 || h.dest != "203.0.113.2:40002" || h.transport != "TCP" || !h.fromCaller {
		t.Fatalf("caller's BYE: %+v %d", h, st)
	}
	back := replace(replace(replace(noRoute, "tag=a", "tag=X"), "tag=b", "tag=a"), "tag=X", "tag=b")
	h, st, _ = p.nextHop(newReq(t, back))
	if st != 0 || h.dest != "203.0.113.1:40001" || h.fromCaller {
		t.Fatalf("callee's BYE: %+v %d", h, st)
	}
}

func TestDialogTable(t *testing.T) {
	tb := newDialogTable(2)
	now := time.Now()
	d1 := &dialog{callID: "c1", callerTag: "a", calleeTag: "b", last: now.Add(-time.Hour)}
	d2 := &dialog{callID: "c2", callerTag: "a", calleeTag: "b", last: now}
	if !tb.add(d1) || !tb.add(d2) {
		t.Fatal("add")
	}
	if tb.add(&dialog{callID: "c3", callerTag: "a", calleeTag: "b"}) {
		t.Fatal("table above its bound")
	}
	if tb.add(&dialog{callID: "c1", callerTag: "a", calleeTag: "b"}) {
		t.Fatal("duplicate accepted")
	}
	if d, fromCaller := tb.find("c1", "a", "b"); d != d1 || !fromCaller {
		t.Fatal("find from caller")
	}
	if d, fromCaller := tb.find("c1", "b", "a"); d != d1 || fromCaller {
		t.Fatal("find from callee")
	}
	if d, _ := tb.find("c1", "a", "zz"); d != nil {
		t.Fatal("found a dialog with the wrong tag")
	}
	if gone := tb.expire(now.Add(-time.Minute)); len(gone) != 1 || gone[0] != d1 {
		t.Fatalf("expire: %v", gone)
	}
	if !tb.remove(d2) || tb.remove(d2) || tb.len() != 0 {
		t.Fatal("remove")
	}
}

func TestRankPicksBestResponse(t *testing.T) {
	mk := func(status int, synthetic bool) *branch { return &branch{final: status, synthetic: synthetic} }
	best := func(brs ...*branch) *branch {
		var b *branch
		for _, br := range brs {
			if b == nil || rank(br) < rank(b) {
				b = br
			}
		}
		return b
	}
	tests := []struct {
		name string
		brs  []*branch
		want int
	}{
		{"6xx wins over everything", []*branch{mk(486, false), mk(603, false), mk(408, true)}, 1},
		{"lowest class", []*branch{mk(503, false), mk(404, false)}, 1},
		{"a real answer beats our made-up 408", []*branch{mk(408, true), mk(480, false)}, 1},
		{"busy first among the 4xx", []*branch{mk(480, false), mk(486, false), mk(404, false)}, 1},
		{"first of equals", []*branch{mk(480, false), mk(404, false)}, 0},
	}
	for _, tc := range tests {
		if got := best(tc.brs...); got != tc.brs[tc.want] {
			t.Errorf("%s: picked %d, want %d", tc.name, got.final, tc.brs[tc.want].final)
		}
	}
}

func TestViaHandling(t *testing.T) {
	req := newReq(t, bye)
	req.SetSource("203.0.113.9:41000")
	stampVia(req)
	v := req.Via()
	if r, _ := v.Params.Get("received"); r != "203.0.113.9" {
		t.Fatalf("received = %q", r)
	}
	if r, _ := v.Params.Get("rport"); r != "41000" {
		t.Fatalf("rport = %q", r)
	}
	if dest, tp := viaTarget(v); dest != "203.0.113.9:41000" || tp != "UDP" {
		t.Fatalf("viaTarget = %s %s", dest, tp)
	}
	p := testProxy()
	if !p.isOwnVia(p.newVia("UDP")) || p.isOwnVia(v) {
		t.Fatal("isOwnVia")
	}
	if !p.prepareForward(req, "10.0.0.2:5062", "tcp") || req.Via().Transport != "TCP" || req.MaxForwards().Val() != 69 {
		t.Fatalf("prepareForward: via %v, max-forwards %v", req.Via(), req.MaxForwards())
	}
	zero := newReq(t, replace(bye, "Max-Forwards: 70", "Max-Forwards: 0"))
	if p.prepareForward(zero, "10.0.0.2:5062", "UDP") {
		t.Fatal("forwarded with Max-Forwards 0")
	}
}

func replace(s, old, new string) string { return strings.ReplaceAll(s, old, new) }
