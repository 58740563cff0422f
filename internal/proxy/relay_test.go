package proxy

import (
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/media"
	"github.com/switchboard-pbx/switchboard/internal/router"
	"github.com/switchboard-pbx/switchboard/internal/sdp"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// relayPorts hands each test its own port range (tests run in parallel).
var relayPorts atomic.Int32

// newRelay returns a media relay on 127.0.0.1 with a range of 40 ports of
// its own.
func newRelay(t *testing.T) *media.Relay {
	t.Helper()
	low := 43000 + 40*int(relayPorts.Add(1))
	r, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), AdvertiseIP: netip.MustParseAddr("127.0.0.1"),
		PortMin: low, PortMax: low + 39})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// sdpAt is a phone's plain offer or answer with its audio at port.
func sdpAt(port int) string {
	return "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(port) + " RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
}

// audioOf returns the audio address of a message's SDP (invalid: none).
func audioOf(t *testing.T, m sip.Message) netip.AddrPort {
	t.Helper()
	s, err := sdp.Parse(m.Body())
	if err != nil {
		t.Fatalf("SDP: %v\n%s", err, m)
	}
	a := s.Audio()
	if a == nil {
		t.Fatalf("no audio in:\n%s", m)
	}
	return a.Addr()
}

// withSDP sets body as m's SDP.
func withSDP(m sip.Message, body string) {
	m.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	m.SetBody([]byte(body))
}

// replySDP answers req with code and SDP body (as phone.reply).
func (ph *phone) replySDP(req *sip.Request, code int, toTag, body string) *sip.Response {
	ph.t.Helper()
	res := sip.NewResponseFromRequest(req, code, reasonOf(code), nil)
	if toTag != "" {
		res.To().Params.Add("tag", toTag)
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "callee", Host: host(ph.addr), Port: port(ph.addr)}})
	}
	withSDP(res, body)
	ph.send(res)
	return res
}

// TestRelayRewritesEverySDP: with --media-relay always, every SDP of a call
// is pointed at the relay: the INVITE the callee gets names the
// callee-facing leg, the 183 and 200 the caller gets name the
// caller-facing leg, and so do both directions of a re-INVITE and their
// answers; each leg learns the party's own address (SetPeer). At the BYE
// the session is closed, its ports released, and the call record has both
// media legs.
func TestRelayRewritesEverySDP(t *testing.T) {
	t.Parallel()
	mr := newRelay(t)
	e := newEnvMedia(t, Config{NoResponseTimeout: fastConfig().NoResponseTimeout, MediaRelay: RelayAlways}, mr)
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	const id = "call-relay-sdp"
	inv := a.callWithSDP("2001", "2002", id, sdpAt(6000))
	a.response(sip.INVITE, 100)
	binv := b.request(sip.INVITE)
	m := e.p.mediaOf(id)
	if m == nil {
		t.Fatal("the call is not relayed")
	}
	callerLegAddr, calleeLegAddr := m.sess.Leg(media.Caller).Addr(), m.sess.Leg(media.Callee).Addr()
	if got := audioOf(t, binv); got != calleeLegAddr {
		t.Fatalf("the callee's INVITE names %s, want the relay's callee leg %s", got, calleeLegAddr)
	}
	b.replySDP(binv, 183, "tag-b", sdpAt(7000))
	if got := audioOf(t, a.response(sip.INVITE, 183)); got != callerLegAddr {
		t.Fatalf("183 names %s, want the relay's caller leg %s", got, callerLegAddr)
	}
	b.replySDP(binv, 200, "tag-b", sdpAt(7000))
	ok := a.response(sip.INVITE, 200)
	if got := audioOf(t, ok); got != callerLegAddr {
		t.Fatalf("200 names %s, want the relay's caller leg %s", got, callerLegAddr)
	}
	aLeg, bLeg := callerLeg(inv, ok), calleeLeg(binv, "tag-b", b)
	a.send(aLeg.request(a, sip.ACK))
	b.request(sip.ACK)
	st := m.sess.Stats()
	if st[0].Signalled.Port() != 6000 || st[1].Signalled.Port() != 7000 {
		t.Fatalf("legs signalled at %v and %v, want the parties' ports 6000 and 7000", st[0].Signalled, st[1].Signalled)
	}

	// The callee re-INVITEs with a new port; the caller answers with one.
	re := bLeg.request(b, sip.INVITE)
	withSDP(re, sdpAt(7002))
	b.send(re)
	got := a.request(sip.INVITE)
	if ap := audioOf(t, got); ap != callerLegAddr {
		t.Fatalf("re-INVITE to the caller names %s, want %s", ap, callerLegAddr)
	}
	a.replySDP(got, 200, "", sdpAt(6002))
	if ap := audioOf(t, b.response(sip.INVITE, 200)); ap != calleeLegAddr {
		t.Fatalf("200 to the callee's re-INVITE names %s, want %s", ap, calleeLegAddr)
	}
	b.send(bLeg.request(b, sip.ACK))
	a.request(sip.ACK)
	// And the caller re-INVITEs.
	re2 := aLeg.request(a, sip.INVITE)
	withSDP(re2, sdpAt(6004))
	a.send(re2)
	got2 := b.request(sip.INVITE)
	if ap := audioOf(t, got2); ap != calleeLegAddr {
		t.Fatalf("re-INVITE to the callee names %s, want %s", ap, calleeLegAddr)
	}
	b.replySDP(got2, 200, "", sdpAt(7004))
	if ap := audioOf(t, a.response(sip.INVITE, 200)); ap != callerLegAddr {
		t.Fatalf("200 to the caller's re-INVITE names %s, want %s", ap, callerLegAddr)
	}
	a.send(aLeg.request(a, sip.ACK))
	b.request(sip.ACK)
	st = m.sess.Stats()
	if st[0].Signalled.Port() != 6004 || st[1].Signalled.Port() != 7004 {
		t.Fatalf("after the re-INVITEs the legs are signalled at %v and %v, want 6004 and 7004", st[0].Signalled, st[1].Signalled)
	}

	a.send(aLeg.request(a, sip.BYE))
	b.reply(b.request(sip.BYE), 200, "")
	a.response(sip.BYE, 200)
	r := e.record(id, func(r calls.Record) bool { return !r.Active() })
	if len(r.Media) != 2 || r.Media[0].Side != "caller" || r.Media[1].SignalledAddr != "127.0.0.1:7004" || r.Media[0].Codec != "PCMU/8000" {
		t.Fatalf("call record media: %+v", r.Media)
	}
	if n := mr.PortsInUse(); n != 0 {
		t.Fatalf("%d relay ports still in use after the BYE", n)
	}
	if e.p.mediaOf(id) != nil {
		t.Fatal("the call's media are still followed after the BYE")
	}
}

// TestRelayLateOffer: an INVITE without SDP, relayed: the offer in the
// callee's 200 reaches the caller pointed at the caller leg, the answer in
// the caller's ACK reaches the callee pointed at the callee leg (the ACK
// is not taken by the fast path, which forwards ACKs unchanged).
func TestRelayLateOffer(t *testing.T) {
	t.Parallel()
	mr := newRelay(t)
	e := newEnvMedia(t, Config{NoResponseTimeout: fastConfig().NoResponseTimeout, MediaRelay: RelayAlways}, mr)
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	const id = "call-relay-late"
	inv := a.callWithSDP("2001", "2002", id, "")
	a.response(sip.INVITE, 100)
	binv := b.request(sip.INVITE)
	if len(binv.Body()) != 0 {
		t.Fatalf("late offer got a body: %s", binv.Body())
	}
	m := e.p.mediaOf(id)
	if m == nil {
		t.Fatal("the late-offer call is not relayed")
	}
	b.replySDP(binv, 200, "tag-b", sdpAt(7000))
	ok := a.response(sip.INVITE, 200)
	if got := audioOf(t, ok); got != m.sess.Leg(media.Caller).Addr() {
		t.Fatalf("the offer in the 200 names %s, want the caller leg", got)
	}
	ack := callerLeg(inv, ok).request(a, sip.ACK)
	withSDP(ack, sdpAt(6000))
	a.send(ack)
	gotAck := b.request(sip.ACK)
	if got := audioOf(t, gotAck); got != m.sess.Leg(media.Callee).Addr() {
		t.Fatalf("the answer in the ACK names %s, want the callee leg", got)
	}
	if st := m.sess.Stats(); st[0].Signalled.Port() != 6000 || st[1].Signalled.Port() != 7000 {
		t.Fatalf("legs signalled at %v, %v", st[0].Signalled, st[1].Signalled)
	}
}

// TestRelayPortsExhausted: with every port pair taken, a call that needs
// the relay gets 503 media_ports_exhausted with a Warning, journaled and
// recorded; nothing reaches the callee.
func TestRelayPortsExhausted(t *testing.T) {
	t.Parallel()
	mr, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), AdvertiseIP: netip.MustParseAddr("127.0.0.1"),
		PortMin: 42900, PortMax: 42903})
	if err != nil {
		t.Fatal(err)
	}
	defer mr.Close()
	if _, err := mr.Open("hog"); err != nil {
		t.Fatal(err)
	}
	e := newEnvMedia(t, Config{NoResponseTimeout: fastConfig().NoResponseTimeout, MediaRelay: RelayAlways}, mr)
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	a.callWithSDP("2001", "2002", "call-no-ports", sdpAt(6000))
	res := a.response(sip.INVITE, 503)
	if h := res.GetHeader("Reason"); h == nil || !strings.Contains(h.Value(), "media_ports_exhausted") {
		t.Fatalf("503 Reason %v", h)
	}
	if h := res.GetHeader("Warning"); h == nil || !strings.Contains(h.Value(), "--rtp-ports") {
		t.Fatalf("503 Warning %v", h)
	}
	r := e.record("call-no-ports", func(r calls.Record) bool { return !r.Active() })
	if r.Cause != cause.MediaPortsExhausted || r.SIPStatus != 503 {
		t.Fatalf("record %+v", r)
	}
	if n := b.count(isReq(sip.INVITE)); n != 0 {
		t.Fatalf("the callee got %d INVITEs", n)
	}
}

// TestRelayReason: when auto relays a call, and the cheap checks it runs
// on every call.
func TestRelayReason(t *testing.T) {
	mr := newRelay(t)
	p := &Proxy{cfg: Config{MediaRelay: RelayAuto}, d: Deps{Media: mr}}
	mk := func(src, body, contact string) *sip.Request {
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "2002", Host: "pbx.test"})
		req.SetSource(src)
		if contact != "" {
			req.AppendHeader(sip.NewHeader("Contact", "<sip:2001@"+contact+">"))
		}
		if body != "" {
			withSDP(req, body)
		}
		m, err := sip.ParseMessage([]byte(req.String()))
		if err != nil {
			t.Fatal(err)
		}
		r := m.(*sip.Request)
		r.SetSource(src)
		return r
	}
	direct := router.Decision{Targets: []store.Binding{{Contact: "sip:2002@127.0.0.2:5060", Source: "127.0.0.2:5060"}}}
	natted := router.Decision{Targets: []store.Binding{{Contact: "sip:2002@192.168.1.5:5060", Source: "203.0.113.9:40000"}}}
	private := strings.Replace(sdpAt(4000), "127.0.0.1", "192.168.1.20", 1)
	for _, tc := range []struct {
		name string
		req  *sip.Request
		d    router.Decision
		want string // "" = not relayed; else a word of the reason
	}{
		{"both direct", mk("127.0.0.1:5060", sdpAt(4000), "127.0.0.1:5060"), direct, ""},
		{"caller SDP private, SIP public", mk("203.0.113.4:5060", private, "203.0.113.4:5060"), direct, "caller's SDP"},
		{"callee behind NAT", mk("127.0.0.1:5060", sdpAt(4000), "127.0.0.1:5060"), natted, "callee's phone"},
		{"late offer behind NAT", mk("203.0.113.4:5060", "", "192.168.1.20:5060"), direct, "late offer"},
		{"late offer direct", mk("127.0.0.1:5060", "", "127.0.0.1:5060"), direct, ""},
		{"browser", mk("203.0.113.4:5060", private+"a=fingerprint:sha-256 AA\r\n", ""), direct, ""},
	} {
		got := p.relayReason(tc.req, tc.d, bodyKind(tc.req))
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: relayReason = %q, want %q", tc.name, got, tc.want)
		}
	}
	p.cfg.MediaRelay = RelayNever
	if got := p.relayReason(mk("203.0.113.4:5060", private, ""), direct, sdpPlain); got != "" {
		t.Errorf("never: %q", got)
	}
	p.cfg.MediaRelay = RelayAlways
	if got := p.relayReason(mk("127.0.0.1:5060", sdpAt(4000), ""), direct, sdpPlain); got == "" {
		t.Error("always did not relay")
	}
}
