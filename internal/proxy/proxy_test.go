package proxy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/cause"
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

func TestRouteToken(t *testing.T) {
	p := testProxy()
	a, b := p.newToken("call-1", "a"), p.newToken("call-1", "a")
	if a == b || len(a) != 24 {
		t.Fatalf("tokens %q %q: want a fresh 24-character token per dialog", a, b)
	}
	if !p.tokenSigned(a, "call-1", "a") || !p.tokenSigned(b, "call-1", "a") {
		t.Fatal("own token not recognised")
	}
	// The last character changed (to one it is not: 1 time in 64 it was
	// already "A").
	flipped := a[:23] + "A"
	if a[23] == 'A' {
		flipped = a[:23] + "B"
	}
	for _, tc := range []struct{ tok, callID, tag string }{
		{a, "call-2", "a"}, {a, "call-1", "b"}, {"forged", "call-1", "a"}, {"", "call-1", "a"},
		{flipped, "call-1", "a"}, {a + "AAAA", "call-1", "a"},
	} {
		if p.tokenSigned(tc.tok, tc.callID, tc.tag) {
			t.Errorf("token %q accepted for %s/%s", tc.tok, tc.callID, tc.tag)
		}
	}
	other := New(Config{Host: "127.0.0.1", Port: 5070, Key: []byte("other")}, Deps{})
	if other.tokenSigned(a, "call-1", "a") {
		t.Fatal("a token signed with another key was accepted")
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
	req := newReq(t, replace(bye, "TOKEN", "tok"))
	n, toks := p.popOwnRoutes(req)
	if n != 2 || len(toks) != 2 || toks[0] != "tok" {
		t.Fatalf("popped %d (tokens %q), want both of our entries", n, toks)
	}
	if r := req.Route(); r == nil || r.Address.Host != "198.51.100.7" {
		t.Fatalf("next route = %v", r)
	}
}

// denyList is a Policy whose inbound ACL denies the listed addresses.
type denyList []string

func (l denyList) AllowInvite(src netip.Addr) (bool, string) {
	for _, a := range l {
		if src.String() == a {
			return false, "inbound acl test"
		}
	}
	return true, ""
}
func (denyList) AuthFailed(netip.Addr, string, string, string) {}
func (denyList) AuthSucceeded(netip.Addr, string, string)      {}

// dialogFixture is a proxy following one answered call: caller 2001 at
// 203.0.113.1:40001 (UDP), callee 2002 reached at 203.0.113.2:40002 (TCP)
// with Contact 10.0.0.2:5062.
func dialogFixture(t *testing.T, deny ...string) (*Proxy, *dialog, *time.Time) {
	t.Helper()
	p := New(Config{Host: "192.0.2.10", Port: 5070, Key: []byte("k")}, Deps{Policy: denyList(deny)})
	clock := time.Date(2026, 12, 3, 4, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return clock }
	d := &dialog{callID: "call-1", callerTag: "a", calleeTag: "b", token: p.newToken("call-1", "a"),
		caller: side{dest: "203.0.113.1:40001", transport: "UDP", ips: []netip.Addr{netip.MustParseAddr("203.0.113.1")},
			contact: "203.0.113.1:40001"},
		callee: side{dest: "203.0.113.2:40002", transport: "TCP", ips: []netip.Addr{netip.MustParseAddr("203.0.113.2")},
			contact: "10.0.0.2:5062"},
		confirmed: true, last: clock}
	if !p.dialogs.add(d) {
		t.Fatal("add dialog")
	}
	return p, d, &clock
}

// inDialog builds an in-dialog request of call-1 from src.
func inDialog(t *testing.T, method, ruri, fromTag, toTag, routes, src string) *sip.Request {
	t.Helper()
	req := newReq(t, method+" "+ruri+" SIP/2.0\r\nVia: SIP/2.0/UDP "+src+";branch=z9hG4bK1;rport\r\n"+routes+
		"From: <sip:x@pbx.example>;tag="+fromTag+"\r\nTo: <sip:y@pbx.example>;tag="+toTag+"\r\n"+
		"Call-ID: call-1\r\nCSeq: 3 "+method+"\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
	req.SetSource(src)
	return req
}

// TestNextHop: an in-dialog request is routed only from one of the
// dialog's parties, with its token, its route set and the other party's
// target, and always to the address recorded at setup.
func TestNextHop(t *testing.T) {
	p, d, _ := dialogFixture(t)
	our := "Route: <sip:192.0.2.10:5070;lr;sb=" + d.token + ">\r\n"
	other := "Route: <sip:192.0.2.10:5070;lr;sb=" + p.newToken("call-1", "a") + ">\r\n"
	forged := "Route: <sip:192.0.2.10:5070;lr;sb=forgedtoken0>\r\n"
	sink := "Route: <sip:127.0.0.29:5099;lr>\r\n"
	for _, tc := range []struct {
		name                   string
		method, ruri, from, to string
		routes, src            string
		status                 int
		dest, transport        string
	}{
		{"caller's BYE", "BYE", "sip:2002@10.0.0.2:5062", "a", "b", our, "203.0.113.1:40001", 0, "203.0.113.2:40002", "TCP"},
		{"caller from another port (TCP reconnect)", "INFO", "sip:10.0.0.2:5062;transport=tcp", "a", "b", our, "203.0.113.1:5999", 0, "203.0.113.2:40002", "TCP"},
		{"callee's BYE", "BYE", "sip:2001@203.0.113.1:40001", "b", "a", our, "203.0.113.2:40002", 0, "203.0.113.1:40001", "UDP"},
		{"ACK", "ACK", "sip:2002@10.0.0.2:5062", "a", "b", our, "203.0.113.1:40001", 0, "203.0.113.2:40002", "TCP"},
		{"third address with the dialog's token", "BYE", "sip:2002@10.0.0.2:5062", "a", "b", our, "198.51.100.9:5060", 403, "", ""},
		{"third address posing as the callee", "MESSAGE", "sip:2001@203.0.113.1:40001", "b", "a", our, "198.51.100.9:5060", 403, "", ""},
		{"caller as the callee (tags swapped)", "BYE", "sip:2001@203.0.113.1:40001", "b", "a", our, "203.0.113.1:40001", 403, "", ""},
		{"another dialog's token", "BYE", "sip:2002@10.0.0.2:5062", "a", "b", other, "203.0.113.1:40001", 403, "", ""},
		{"forged token", "BYE", "sip:2002@10.0.0.2:5062", "a", "b", forged, "203.0.113.1:40001", 403, "", ""},
		{"no Route", "BYE", "sip:2002@10.0.0.2:5062", "a", "b", "", "203.0.113.1:40001", 403, "", ""},
		{"a second Route to a sink", "INFO", "sip:2002@10.0.0.2:5062", "a", "b", our + sink, "203.0.113.1:40001", 403, "", ""},
		{"Request-URI elsewhere", "INVITE", "sip:0044123456789@127.0.0.29:5099", "a", "b", our, "203.0.113.1:40001", 403, "", ""},
		{"unknown dialog", "BYE", "sip:2002@10.0.0.2:5062", "a", "zz", our, "203.0.113.1:40001", 481, "", ""},
		{"unknown dialog, forged token", "BYE", "sip:2002@10.0.0.2:5062", "a", "zz", forged, "203.0.113.1:40001", 403, "", ""},
	} {
		h, r := p.nextHop(inDialog(t, tc.method, tc.ruri, tc.from, tc.to, tc.routes, tc.src))
		switch {
		case tc.status == 0 && r != nil:
			t.Errorf("%s: refused %+v", tc.name, r)
		case tc.status == 0 && (h.dest != tc.dest || h.transport != tc.transport || h.dlg != d):
			t.Errorf("%s: routed to %s %s, want %s %s", tc.name, h.dest, h.transport, tc.dest, tc.transport)
		case tc.status != 0 && (r == nil || r.status != tc.status || r.cause != cause.RouteTokenRefused):
			t.Errorf("%s: %+v (hop %+v), want %d route_token_refused", tc.name, r, h, tc.status)
		}
	}
}

// TestNextHopTargetRefresh: after a re-INVITE's 2xx the callee's new
// Contact is a valid Request-URI; where it is reached does not change.
func TestNextHopTargetRefresh(t *testing.T) {
	p, d, _ := dialogFixture(t)
	our := "Route: <sip:192.0.2.10:5070;lr;sb=" + d.token + ">\r\n"
	reinv := inDialog(t, "INVITE", "sip:2002@10.0.0.2:5062", "a", "b", our, "203.0.113.1:40001")
	h, r := p.nextHop(reinv.Clone())
	if r != nil {
		t.Fatal(r)
	}
	res := sip.NewResponseFromRequest(reinv, 200, "OK", nil)
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: "10.0.0.99", Port: 5064}})
	p.targetRefresh(reinv, res, h)
	if _, r := p.nextHop(inDialog(t, "BYE", "sip:2002@10.0.0.2:5062", "a", "b", our, "203.0.113.1:40001")); r == nil {
		t.Fatal("the old Contact is still a valid target after a target refresh")
	}
	h, r = p.nextHop(inDialog(t, "BYE", "sip:10.0.0.99:5064", "a", "b", our, "203.0.113.1:40001"))
	if r != nil || h.dest != "203.0.113.2:40002" {
		t.Fatalf("BYE to the refreshed Contact: %+v %+v", h, r)
	}
}

// TestNextHopAfterEnd: once the BYE ended the dialog, only a late ACK or
// BYE is routed, and only for DialogLinger; then 481.
func TestNextHopAfterEnd(t *testing.T) {
	p, d, clock := dialogFixture(t)
	our := "Route: <sip:192.0.2.10:5070;lr;sb=" + d.token + ">\r\n"
	if !p.dialogs.remove(d, *clock) || p.dialogs.remove(d, *clock) {
		t.Fatal("remove")
	}
	*clock = clock.Add(DialogLinger - time.Second)
	for _, m := range []string{"ACK", "BYE"} {
		if _, r := p.nextHop(inDialog(t, m, "sip:2002@10.0.0.2:5062", "a", "b", our, "203.0.113.1:40001")); r != nil {
			t.Errorf("late %s refused: %+v", m, r)
		}
	}
	if _, r := p.nextHop(inDialog(t, "INFO", "sip:2002@10.0.0.2:5062", "a", "b", our, "203.0.113.1:40001")); r == nil || r.status != 481 {
		t.Errorf("INFO after the BYE: %+v, want 481", r)
	}
	if _, r := p.nextHop(inDialog(t, "BYE", "sip:2002@10.0.0.2:5062", "a", "b", our, "198.51.100.9:5060")); r == nil || r.status != 403 {
		t.Errorf("late BYE from a third address: %+v, want 403", r)
	}
	*clock = clock.Add(2 * time.Second)
	if _, r := p.nextHop(inDialog(t, "BYE", "sip:2002@10.0.0.2:5062", "a", "b", our, "203.0.113.1:40001")); r == nil || r.status != 481 {
		t.Errorf("BYE after the linger: %+v, want 481", r)
	}
	p.dialogs.sweep(*clock)
	if d, _, _ := p.dialogs.find("call-1", "a", "b", clock.Add(-time.Hour)); d != nil {
		t.Error("sweep kept an ended dialog past its linger")
	}
}

// TestNextHopInboundACL: the inbound ACL refuses in-dialog requests from
// denied addresses (acl_denied), except the callee party's.
func TestNextHopInboundACL(t *testing.T) {
	p, d, _ := dialogFixture(t, "203.0.113.1", "203.0.113.2", "198.51.100.9")
	our := "Route: <sip:192.0.2.10:5070;lr;sb=" + d.token + ">\r\n"
	for _, tc := range []struct {
		name, from, to, ruri, src string
		ok                        bool
	}{
		{"denied caller", "a", "b", "sip:2002@10.0.0.2:5062", "203.0.113.1:40001", false},
		{"denied third address", "a", "b", "sip:2002@10.0.0.2:5062", "198.51.100.9:5060", false},
		{"denied third address posing as the callee", "b", "a", "sip:2001@203.0.113.1:40001", "198.51.100.9:5060", false},
		{"callee", "b", "a", "sip:2001@203.0.113.1:40001", "203.0.113.2:40002", true},
	} {
		_, r := p.nextHop(inDialog(t, "BYE", tc.ruri, tc.from, tc.to, our, tc.src))
		if tc.ok && r != nil {
			t.Errorf("%s: refused %+v", tc.name, r)
		}
		if !tc.ok && (r == nil || r.status != 403 || r.cause != cause.ACLDenied) {
			t.Errorf("%s: %+v, want 403 acl_denied", tc.name, r)
		}
	}
}

// TestResponseHop: a 2xx retransmission outside a transaction is relayed
// only for a known dialog, from the party that answered, to the other
// party's recorded address (never to the Via it names).
func TestResponseHop(t *testing.T) {
	p, _, _ := dialogFixture(t)
	mk := func(fromTag, toTag, src string, ourVia bool) *sip.Response {
		req := inDialog(t, "INVITE", "sip:2002@10.0.0.2:5062", fromTag, toTag, "", "127.0.0.29:5099")
		if ourVia {
			req.PrependHeader(p.newVia("TCP"))
		}
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		res.SetSource(src)
		return res
	}
	if dest, tp, r := p.responseHop(mk("a", "b", "203.0.113.2:40002", true)); r != nil || dest != "203.0.113.1:40001" || tp != "UDP" {
		t.Fatalf("callee's 2xx: %s %s %+v, want the caller's recorded address", dest, tp, r)
	}
	if dest, _, r := p.responseHop(mk("b", "a", "203.0.113.1:40001", true)); r != nil || dest != "203.0.113.2:40002" {
		t.Fatalf("caller's 2xx to the callee's re-INVITE: %s %+v", dest, r)
	}
	for name, res := range map[string]*sip.Response{
		"third address":    mk("a", "b", "198.51.100.9:5060", true),
		"caller as callee": mk("a", "b", "203.0.113.1:40001", true),
		"unknown dialog":   mk("a", "zz", "203.0.113.2:40002", true),
		"not our Via":      mk("a", "b", "203.0.113.2:40002", false),
	} {
		if _, _, r := p.responseHop(res); r == nil || r.cause != cause.RouteTokenRefused {
			t.Errorf("%s: relayed", name)
		}
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
	if d, fromCaller, _ := tb.find("c1", "a", "b", now); d != d1 || !fromCaller {
		t.Fatal("find from caller")
	}
	if d, fromCaller, _ := tb.find("c1", "b", "a", now); d != d1 || fromCaller {
		t.Fatal("find from callee")
	}
	if d, _, _ := tb.find("c1", "a", "zz", now); d != nil {
		t.Fatal("found a dialog with the wrong tag")
	}
	if gone := tb.expire(now.Add(-time.Minute)); len(gone) != 1 || gone[0] != d1 {
		t.Fatalf("expire: %v", gone)
	}
	if !tb.remove(d2, now) || tb.remove(d2, now) || tb.len() != 0 {
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
