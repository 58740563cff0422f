package proxy

import (
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/webrtc/v4"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/media"
)

// pionOffer returns a real WebRTC offer (pion, as a browser makes it) with the given
// audio codecs ("opus", "PCMU", "telephone-event" at 126).
func pionOffer(t *testing.T, codecs ...string) string {
	t.Helper()
	me := &webrtc.MediaEngine{}
	for _, c := range codecs {
		p := webrtc.RTPCodecParameters{}
		switch c {
		case "opus":
			p = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111}
		case "PCMU":
			p = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0}
		case "telephone-event":
			p = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000, SDPFmtpLine: "0-15"}, PayloadType: 126}
		}
		if err := me.RegisterCodec(p, webrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
	}
	var se webrtc.SettingEngine
	se.SetInterfaceFilter(func(string) bool { return false }) // no candidates: SDP only
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

// TestBridgeBrowserCallsPhone: with the relay on (auto), a browser's WebRTC offer to a
// plain phone goes through the WebRTC bridge: the phone gets a plain RTP/AVP offer at the
// callee leg with the browser's G.711 and telephone-event (no opus), the browser gets the
// bridge's ICE-lite DTLS answer at the caller leg; the call record marks the browser's
// leg WebRTC with its DTLS state, and the BYE releases every port.
func TestBridgeBrowserCallsPhone(t *testing.T) {
	t.Parallel()
	mr := newRelay(t)
	e := newEnvMedia(t, Config{NoResponseTimeout: fastConfig().NoResponseTimeout, MediaRelay: RelayAuto}, mr)
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	const id = "call-bridge"
	inv := a.callWithSDP("2001", "2002", id, pionOffer(t, "opus", "PCMU", "telephone-event"))
	a.response(sip.INVITE, 100)
	binv := b.request(sip.INVITE)
	m := e.p.mediaOf(id)
	if m == nil || m.bridge == nil {
		t.Fatal("the call is not bridged")
	}
	callerAddr, calleeAddr := m.sess.Leg(media.Caller).Addr(), m.sess.Leg(media.Callee).Addr()
	body := string(binv.Body())
	if got := audioOf(t, binv); got != calleeAddr || !strings.Contains(body, " RTP/AVP 0 126") ||
		!strings.Contains(body, "a=rtpmap:126 telephone-event/8000") || strings.Contains(body, "opus") || strings.Contains(body, "fingerprint") {
		t.Fatalf("the phone's INVITE (want a plain offer at %s):\n%s", calleeAddr, body)
	}
	b.replySDP(binv, 200, "tag-b", sdpAt(7000))
	ok := a.response(sip.INVITE, 200)
	ans := string(ok.Body())
	if got := audioOf(t, ok); got != callerAddr || !strings.Contains(ans, "a=ice-lite") || !strings.Contains(ans, "UDP/TLS/RTP/SAVPF 0 126") ||
		!strings.Contains(ans, "a=fingerprint:") || !strings.Contains(ans, "127.0.0.1 "+strconv.Itoa(int(callerAddr.Port()))+" typ host") {
		t.Fatalf("the browser's 200 (want the bridge's answer at %s):\n%s", callerAddr, ans)
	}
	aLeg := callerLeg(inv, ok)
	a.send(aLeg.request(a, sip.ACK))
	b.request(sip.ACK)
	a.send(aLeg.request(a, sip.BYE))
	b.reply(b.request(sip.BYE), 200, "")
	a.response(sip.BYE, 200)
	r := e.record(id, func(r calls.Record) bool { return !r.Active() })
	if len(r.Media) != 2 || !r.Media[0].WebRTC || r.Media[0].DTLS != "new" || r.Media[1].WebRTC || r.Media[1].SignalledAddr != "127.0.0.1:7000" {
		t.Fatalf("call record media: %+v", r.Media)
	}
	eventually(t, "the relay's ports released", func() bool { return mr.PortsInUse() == 0 })
}

// TestBridgeNoCommonCodec: a browser offering only opus to a plain phone gets 488
// media_codec_mismatch with a Warning naming its codecs and the bridge's; the phone never
// rings and no port stays taken. With --media-relay never it stays 488
// webrtc_needs_media_relay (TestMediaRelayRefusal).
func TestBridgeNoCommonCodec(t *testing.T) {
	t.Parallel()
	mr := newRelay(t)
	e := newEnvMedia(t, Config{NoResponseTimeout: fastConfig().NoResponseTimeout, MediaRelay: RelayAuto}, mr)
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	a.callWithSDP("2001", "2002", "call-bridge-opus", pionOffer(t, "opus"))
	res := a.response(sip.INVITE, 488)
	if h := res.GetHeader("Reason"); h == nil || !strings.Contains(h.Value(), "media_codec_mismatch") {
		t.Fatalf("488 Reason %v", h)
	}
	if w := res.GetHeader("Warning"); w == nil || !strings.Contains(w.Value(), "opus/48000/2") || !strings.Contains(w.Value(), "PCMU/8000 PCMA/8000") {
		t.Fatalf("488 Warning %v", w)
	}
	r := e.record("call-bridge-opus", func(r calls.Record) bool { return !r.Active() })
	if r.Cause != cause.MediaCodecMismatch || r.SIPStatus != 488 {
		t.Fatalf("record %+v", r)
	}
	if n := b.count(isReq(sip.INVITE)); n != 0 {
		t.Fatalf("the phone got %d INVITEs", n)
	}
	eventually(t, "the relay's ports released", func() bool { return mr.PortsInUse() == 0 })
}
