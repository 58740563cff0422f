package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/router"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// browserSDP is a WebRTC offer (DTLS-SRTP, ICE) as Chromium sends it.
const browserSDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\n" +
	"a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\n" +
	"a=fingerprint:sha-256 3B:0A:61:8C\r\na=setup:actpass\r\na=rtcp-mux\r\n"

// phoneSDP is a plain RTP offer (a desk phone, baresip, SIPp).
const phoneSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 6000 RTP/AVP 0 8\r\n"

// registerWS adds a binding of ext reached over WSS at addr, as a JsSIP
// browser phone registers (a .invalid contact).
func (e *env) registerWS(ext, addr string) {
	e.t.Helper()
	now := time.Now()
	b := store.Binding{Domain: testDomain, Extension: ext, Contact: "sip:x7k2@df7jal23ls0d.invalid;transport=ws",
		Source: addr, Transport: "WSS", UserAgent: "JsSIP 3.13.8", CallID: "reg-ws-" + addr,
		RegisteredAt: now, ExpiresAt: now.Add(time.Hour)}
	if _, err := e.loc.Update(e.ctx, testDomain, ext, func(cur []store.Binding) ([]store.Binding, error) {
		return append(cur, b), nil
	}); err != nil {
		e.t.Fatal(err)
	}
}

// callWithSDP is phone.call with sdp as the INVITE's body ("": none).
func (ph *phone) callWithSDP(from, to, callID, sdp string) *sip.Request {
	ph.t.Helper()
	setBody := func(r *sip.Request) {
		r.RemoveHeader("Content-Type")
		r.SetBody(nil)
		if sdp != "" {
			r.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			r.SetBody([]byte(sdp))
		}
	}
	inv := ph.invite(from, to, callID, 1)
	setBody(inv)
	ph.send(inv)
	ch := ph.response(sip.INVITE, 407)
	ph.send(ackFor(inv, ch))
	params := map[string]string{}
	for _, m := range challengeParam.FindAllStringSubmatch(ch.GetHeader("Proxy-Authenticate").Value(), -1) {
		params[m[1]] = m[2]
	}
	uri := inv.Recipient.String()
	ha1 := md5hex(from + ":" + params["realm"] + ":" + testPassword)
	resp := md5hex(ha1 + ":" + params["nonce"] + ":00000001:cn:auth:" + md5hex("INVITE:"+uri))
	inv = ph.invite(from, to, callID, 2)
	setBody(inv)
	inv.AppendHeader(sip.NewHeader("Proxy-Authorization", fmt.Sprintf(
		`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="cn", opaque="%s"`,
		from, params["realm"], params["nonce"], uri, resp, params["opaque"])))
	ph.send(inv)
	return inv
}

// TestMediaRelayRefusal: a WebRTC offer to a plain-RTP phone, and a plain
// offer to a browser registered over WSS, are refused with 488, a Q.850
// Reason naming webrtc_needs_media_relay and a Warning in words, journaled
// and recorded; a callee with both kinds of phones rings the one that
// fits; an INVITE without SDP (late offer) between two plain phones is
// forwarded (TestMediaRelayLateOffer covers late offers to browsers).
func TestMediaRelayRefusal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.registerWS("2002", "127.0.0.9:40000")
	e.register("2003", b)

	check488 := func(inv *sip.Request, callID, to string) {
		t.Helper()
		res := a.response(sip.INVITE, 488)
		a.send(ackFor(inv, res))
		if h := res.GetHeader("Reason"); h == nil || h.Value() != `Q.850;cause=88;text="webrtc_needs_media_relay"` {
			t.Fatalf("%s: Reason = %v", callID, h)
		}
		if h := res.GetHeader("Warning"); h == nil || !strings.HasPrefix(h.Value(), "305 ") || !strings.Contains(h.Value(), "media relay") {
			t.Fatalf("%s: Warning = %v", callID, h)
		}
		r := e.record(callID, func(r calls.Record) bool { return !r.Active() })
		if r.SIPStatus != 488 || r.Cause != cause.WebRTCNeedsMediaRelay || !strings.Contains(r.Detail, "media relay") {
			t.Fatalf("%s: record = %+v", callID, r)
		}
		e.event(journal.Filter{Kind: journal.KindInvite, Extension: to}, func(ev journal.Event) bool {
			return ev.Cause == cause.WebRTCNeedsMediaRelay && ev.Status == 488 && ev.CallID == callID
		})
	}

	// A desk phone calls a browser.
	inv := a.callWithSDP("2001", "2002", "call-plain-to-ws", phoneSDP)
	check488(inv, "call-plain-to-ws", "2002")

	// A browser's offer to a UDP phone.
	inv = a.callWithSDP("2001", "2003", "call-ws-to-plain", browserSDP)
	check488(inv, "call-ws-to-plain", "2003")
	if n := b.count(isReq(sip.INVITE)); n != 0 {
		t.Fatalf("the UDP phone got %d INVITEs for a refused call", n)
	}

	// A late offer is forwarded.
	a.callWithSDP("2001", "2003", "call-late-offer", "")
	in := b.request(sip.INVITE)
	if in.CallID().Value() != "call-late-offer" {
		t.Fatalf("forwarded %s", in.CallID().Value())
	}
	b.send(b.reply(in, 486, "busy"))
	a.response(sip.INVITE, 486)

	// 2003 also on a browser: a plain offer rings only the desk phone.
	e.registerWS("2003", "127.0.0.9:40001")
	a.callWithSDP("2001", "2003", "call-plain-mixed", phoneSDP)
	in = b.request(sip.INVITE)
	if in.CallID().Value() != "call-plain-mixed" {
		t.Fatalf("forwarded %s", in.CallID().Value())
	}
	b.send(b.reply(in, 486, "busy"))
	a.response(sip.INVITE, 486)
	r := e.record("call-plain-mixed", func(r calls.Record) bool { return !r.Active() })
	if len(r.Branches) != 1 {
		t.Fatalf("branches %+v, want only the desk phone", r.Branches)
	}
}

// TestMediaRelayLateOffer: an INVITE without SDP (late offer) from a UDP
// phone to a callee registered only over WSS (a browser: it would offer
// DTLS-SRTP and ICE in its 200, which the phone cannot answer) is refused like an early
// offer: 488, the Q.850 Reason, a Warning in words, and a journal event
// and call record saying it was a late offer; to a callee with a desk
// phone and a browser, only the desk phone rings.
func TestMediaRelayLateOffer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.registerWS("2002", "127.0.0.9:40000")
	e.register("2003", b)
	e.registerWS("2003", "127.0.0.9:40001")

	inv := a.callWithSDP("2001", "2002", "late-plain-to-ws", "")
	res := a.response(sip.INVITE, 488)
	a.send(ackFor(inv, res))
	if h := res.GetHeader("Reason"); h == nil || h.Value() != `Q.850;cause=88;text="webrtc_needs_media_relay"` {
		t.Fatalf("Reason = %v", h)
	}
	if h := res.GetHeader("Warning"); h == nil || !strings.HasPrefix(h.Value(), "305 ") || !strings.Contains(h.Value(), "media relay") {
		t.Fatalf("Warning = %v", h)
	}
	r := e.record("late-plain-to-ws", func(r calls.Record) bool { return !r.Active() })
	if r.SIPStatus != 488 || r.Cause != cause.WebRTCNeedsMediaRelay || !strings.Contains(r.Detail, "late offer") ||
		!strings.Contains(r.Detail, "WSS 127.0.0.9:40000") {
		t.Fatalf("record = %+v", r)
	}
	e.event(journal.Filter{Kind: journal.KindInvite, Extension: "2002"}, func(ev journal.Event) bool {
		return ev.Cause == cause.WebRTCNeedsMediaRelay && ev.Status == 488 && ev.CallID == "late-plain-to-ws" &&
			strings.Contains(ev.Detail, "late offer")
	})

	// A callee with both kinds: the late offer rings the desk phone only.
	a.callWithSDP("2001", "2003", "late-plain-mixed", "")
	in := b.request(sip.INVITE)
	if in.CallID().Value() != "late-plain-mixed" {
		t.Fatalf("forwarded %s", in.CallID().Value())
	}
	b.send(b.reply(in, 486, "busy"))
	a.response(sip.INVITE, 486)
	r = e.record("late-plain-mixed", func(r calls.Record) bool { return !r.Active() })
	if len(r.Branches) != 1 {
		t.Fatalf("branches %+v, want only the desk phone", r.Branches)
	}
}

// TestMediaCheckCaller: mediaCheck judges the caller by its SDP offer
// when there is one and by its transport otherwise (WS/WSS: a browser),
// and a plain-RTP offer never reaches a callee registered over WS/WSS,
// even from a caller that came over a WebSocket itself.
func TestMediaCheckCaller(t *testing.T) {
	udp := store.Binding{Extension: "2002", Transport: "UDP", Source: "127.0.0.1:5062"}
	wss := store.Binding{Extension: "2002", Transport: "WSS", Source: "127.0.0.1:40000"}
	for _, tc := range []struct {
		name, transport, sdp string
		target               store.Binding
		refused              bool
		detail               string
	}{
		{"late offer, WSS caller to UDP phone", "WSS", "", udp, true, "late offer (no SDP in the INVITE) from a WebRTC caller over WSS"},
		{"late offer, WS caller to UDP phone", "WS", "", udp, true, "late offer"},
		{"late offer, UDP caller to WSS browser", "UDP", "", wss, true, "late offer (no SDP in the INVITE) from a plain RTP caller over UDP"},
		{"late offer, TLS caller to WSS browser", "TLS", "", wss, true, "late offer"},
		{"late offer, WSS caller to WSS browser", "WSS", "", wss, false, ""},
		{"late offer, UDP caller to UDP phone", "UDP", "", udp, false, ""},
		{"plain offer over WSS to UDP phone", "WSS", phoneSDP, udp, false, ""},
		{"plain offer over WSS to WSS callee", "WSS", phoneSDP, wss, true, "plain RTP offer to 2002"},
		{"WebRTC offer over UDP to WSS browser", "UDP", browserSDP, wss, false, ""},
		{"WebRTC offer over WSS to UDP phone", "WSS", browserSDP, udp, true, "WebRTC offer to 2002"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "2002", Host: testDomain})
			req.SetTransport(tc.transport)
			if tc.sdp != "" {
				req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
				req.SetBody([]byte(tc.sdp))
			}
			d := mediaCheck(req, router.Decision{Targets: []store.Binding{tc.target}})
			if tc.refused {
				if d.Cause != cause.WebRTCNeedsMediaRelay || len(d.Targets) != 0 || !strings.Contains(d.Detail, tc.detail) ||
					!strings.Contains(d.Detail, "media relay") {
					t.Fatalf("decision %+v, want refused with detail containing %q", d, tc.detail)
				}
				return
			}
			if d.Cause != "" || len(d.Targets) != 1 {
				t.Fatalf("decision %+v, want the target kept", d)
			}
		})
	}
}
