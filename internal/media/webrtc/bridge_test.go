package wrtc

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-pbx/switchboard/internal/media"
	"github.com/switchboard-pbx/switchboard/internal/sdp"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// goroutineCheck returns a function that fails the test unless the goroutine count falls
// back to what it was (polled: pion's goroutines end shortly after Close returns).
func goroutineCheck(t *testing.T) func() {
	t.Helper()
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("goroutines: %d before, %d after closing everything:\n%s", before, n, buf)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// newRelay returns a relay advertising 127.0.0.1, its sockets bound to bind (zero: all
// addresses, as serve does by default).
func newRelay(t *testing.T, bind netip.Addr) *media.Relay {
	t.Helper()
	r, err := media.New(media.Config{BindIP: bind, AdvertiseIP: loopback, PortMin: 31000, PortMax: 31999, Timeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newGateway(t *testing.T, hs time.Duration) *Gateway {
	t.Helper()
	g, err := NewGateway(Config{AdvertiseIP: loopback, HandshakeTimeout: hs})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// phone is a plain RTP party: one socket for RTP, one for RTCP.
type phone struct {
	rtp, rtcp *net.UDPConn
}

func newPhone(t *testing.T) *phone {
	t.Helper()
	a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return &phone{rtp: a, rtcp: b}
}

func (p *phone) peer() media.Peer {
	return media.Peer{
		RTP:       p.rtp.LocalAddr().(*net.UDPAddr).AddrPort(),
		RTCP:      p.rtcp.LocalAddr().(*net.UDPAddr).AddrPort(),
		SIPSource: loopback,
	}
}

func (p *phone) close() { p.rtp.Close(); p.rtcp.Close() }

// read returns the next RTP packet the phone received, or fails after d.
func (p *phone) read(t *testing.T, d time.Duration) (rtp.Packet, bool) {
	t.Helper()
	buf := make([]byte, 1500)
	p.rtp.SetReadDeadline(time.Now().Add(d))
	n, err := p.rtp.Read(buf)
	if err != nil {
		return rtp.Packet{}, false
	}
	var pkt rtp.Packet
	if err := pkt.Unmarshal(buf[:n]); err != nil {
		t.Fatalf("phone got a packet that is not RTP: %v", err)
	}
	return pkt, true
}

// browser is a real WebRTC implementation (pion, not lite) on 127.0.0.1 playing the
// browser; its local track keeps payload types as written (telephone-event).
type browser struct {
	pc    *webrtc.PeerConnection
	track *phoneTrack
	got   chan rtp.Packet
	rtcp  chan rtcp.Packet
}

func newBrowser(t *testing.T, codecs []codec) *browser {
	t.Helper()
	me := &webrtc.MediaEngine{}
	for _, c := range codecs {
		p := codecParams(c)
		p.Channels = uint16(c.Channels)
		if err := me.RegisterCodec(p, webrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
	}
	var se webrtc.SettingEngine
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.LoggerFactory = quietLoggerFactory{}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{pc: pc, track: &phoneTrack{}, got: make(chan rtp.Packet, 1024), rtcp: make(chan rtcp.Packet, 1024)}
	pc.OnTrack(func(tr *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		go func() {
			for {
				pkts, _, err := r.ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					select {
					case b.rtcp <- p:
					default:
					}
				}
			}
		}()
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Read(buf)
			if err != nil && n == 0 {
				return
			}
			var pkt rtp.Packet
			if pkt.Unmarshal(append([]byte(nil), buf[:n]...)) == nil {
				select {
				case b.got <- pkt:
				default:
				}
			}
		}
	})
	if _, err := pc.AddTransceiverFromTrack(b.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *browser) local(t *testing.T, d webrtc.SessionDescription) []byte {
	t.Helper()
	done := webrtc.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(d); err != nil {
		t.Fatal(err)
	}
	<-done
	return []byte(b.pc.LocalDescription().SDP)
}

func (b *browser) offer(t *testing.T) []byte {
	t.Helper()
	o, err := b.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.local(t, o)
}

func (b *browser) send(t *testing.T, pt uint8, seq uint16, payload []byte) {
	t.Helper()
	w, ssrc := b.track.writer()
	if w == nil {
		return
	}
	_, _ = w.WriteRTP(&rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: ssrc}, payload)
}

func rtpPacket(pt uint8, seq uint16, ssrc uint32, payload []byte) []byte {
	raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: ssrc}, Payload: payload}).Marshal()
	return raw
}

func waitState(t *testing.T, b *Bridge, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for b.State() != want {
		if time.Now().After(deadline) {
			t.Fatalf("bridge state %q (%s), want %q", b.State(), b.Reason(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var (
	pcmu     = codec{PT: 0, Name: "PCMU", Rate: 8000}
	pcma     = codec{PT: 8, Name: "PCMA", Rate: 8000}
	opus     = codec{PT: 111, Name: "opus", Rate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"}
	te48     = codec{PT: 110, Name: "telephone-event", Rate: 48000}
	teChrome = codec{PT: 126, Name: "telephone-event", Rate: 8000, Fmtp: "0-15"}
	tePhone  = codec{PT: 101, Name: "telephone-event", Rate: 8000, Fmtp: "0-16"}
)

// phoneToBrowser sends phone packets (PT ptIn) until the browser receives one with a
// payload that starts with tag; returns it.
func phoneToBrowser(t *testing.T, ph *phone, to netip.AddrPort, br *browser, ptIn uint8, tag string) rtp.Packet {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for seq := uint16(1); ; seq++ {
		if time.Now().After(deadline) {
			t.Fatalf("browser never received the phone's PT %d packets", ptIn)
		}
		if _, err := ph.rtp.WriteToUDPAddrPort(rtpPacket(ptIn, seq, 0xabcdef01, []byte(tag+"-payload")), to); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-br.got:
			if bytes.HasPrefix(p.Payload, []byte(tag)) {
				return p
			}
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// browserToPhone sends browser packets until the phone receives one tagged so.
func browserToPhone(t *testing.T, br *browser, ph *phone, ptIn uint8, tag string) rtp.Packet {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for seq := uint16(1); ; seq++ {
		if time.Now().After(deadline) {
			t.Fatalf("phone never received the browser's PT %d packets", ptIn)
		}
		br.send(t, ptIn, seq, []byte(tag+"-payload"))
		if p, ok := ph.read(t, 20*time.Millisecond); ok && bytes.HasPrefix(p.Payload, []byte(tag)) {
			return p
		}
	}
}

// TestBrowserOffers: a browser (real pion PeerConnection) offers opus, PCMU and two
// telephone-events; the phone answers PCMU and telephone-event/101. RTP crosses both ways
// through the relay and the bridge with telephone-event mapped 126 <-> 101, the phone's
// SSRC rewritten to the signalled one, and RTCP forwarded; everything closes without
// leaking goroutines.
func TestBrowserOffers(t *testing.T) {
	check := goroutineCheck(t)
	relay := newRelay(t, loopback)
	gw := newGateway(t, 0)
	ph := newPhone(t)
	defer ph.close()
	br := newBrowser(t, []codec{opus, pcmu, te48, teChrome})

	sess, err := relay.Open("call-1")
	if err != nil {
		t.Fatal(err)
	}
	bl, pl := sess.Leg(media.Caller), sess.Leg(media.Callee)
	pl.SetPeer(ph.peer())

	bridge, codecs, err := gw.FromBrowser(bl, br.offer(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := names(fromSDP(codecs)); got != "PCMU/8000 telephone-event/8000" || codecs[1].PT != 126 {
		t.Fatalf("codecs for the phone: %s %+v", got, codecs)
	}
	answer, err := bridge.AnswerBrowser([]sdp.Codec{{PT: 0, Name: "PCMU", Rate: 8000}, {PT: 101, Name: "telephone-event", Rate: 8000, Fmtp: "0-16"}})
	if err != nil {
		t.Fatal(err)
	}
	s := string(answer)
	for _, want := range []string{"a=ice-lite", "127.0.0.1 " + itoa(int(bl.Addr().Port())) + " typ host", "a=fingerprint:", "a=rtpmap:126 telephone-event/8000", "a=rtcp-mux"} {
		if !strings.Contains(s, want) {
			t.Errorf("answer lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "opus/") || strings.Contains(s, "/48000") {
		t.Errorf("answer offers a codec the phone did not accept:\n%s", s)
	}
	if err := br.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: s}); err != nil {
		t.Fatal(err)
	}
	waitState(t, bridge, StateDTLSConnected, 10*time.Second)

	// Browser -> phone: PCMU keeps PT 0, telephone-event 126 becomes the phone's 101.
	if p := browserToPhone(t, br, ph, 0, "voice"); p.PayloadType != 0 {
		t.Errorf("PCMU reached the phone as PT %d", p.PayloadType)
	}
	if p := browserToPhone(t, br, ph, 126, "dtmf"); p.PayloadType != 101 {
		t.Errorf("telephone-event reached the phone as PT %d, want 101", p.PayloadType)
	}
	// Phone -> browser: 101 becomes the browser's 126, SSRC the one signalled to it.
	to := pl.Addr()
	_, ours := bridge.track.writer()
	if p := phoneToBrowser(t, ph, to, br, 0, "voice"); p.PayloadType != 0 || p.SSRC != ours {
		t.Errorf("PCMU reached the browser as PT %d SSRC %x, want 0 %x", p.PayloadType, p.SSRC, ours)
	}
	if p := phoneToBrowser(t, ph, to, br, 101, "dtmf"); p.PayloadType != 126 {
		t.Errorf("telephone-event reached the browser as PT %d, want 126", p.PayloadType)
	}
	// A PT neither side negotiated is dropped and counted.
	dropped := bridge.Stats().Dropped
	ph.rtp.WriteToUDPAddrPort(rtpPacket(18, 999, 0xabcdef01, []byte("g729")), to)
	pollUntil(t, func() bool { return bridge.Stats().Dropped > dropped }, "PT 18 from the phone was not counted as dropped")

	// RTCP phone -> browser: the sender report arrives with the SSRC rewritten.
	sr, _ := (&rtcp.SenderReport{SSRC: 0xabcdef01, NTPTime: 1, RTPTime: 2, PacketCount: 3, OctetCount: 4}).Marshal()
	rtcpTo := netip.AddrPortFrom(loopback, pl.RTCPPort())
	deadline := time.Now().Add(10 * time.Second)
	for gotSR := false; !gotSR; {
		if time.Now().After(deadline) {
			t.Fatal("the phone's sender report never reached the browser")
		}
		ph.rtcp.WriteToUDPAddrPort(sr, rtcpTo)
		select {
		case p := <-br.rtcp:
			if r, ok := p.(*rtcp.SenderReport); ok {
				gotSR = true
				if r.SSRC != ours || r.PacketCount != 3 {
					t.Errorf("sender report at the browser: %+v, want SSRC %x", r, ours)
				}
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
	// RTCP browser -> phone: a receiver report about the stream it got names the phone's SSRC.
	deadline = time.Now().Add(10 * time.Second)
	buf := make([]byte, 1500)
	for gotRR := false; !gotRR; {
		if time.Now().After(deadline) {
			t.Fatal("the browser's receiver report never reached the phone")
		}
		br.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 7, Reports: []rtcp.ReceptionReport{{SSRC: ours, FractionLost: 5}}}})
		ph.rtcp.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := ph.rtcp.Read(buf)
		if err != nil {
			continue
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			t.Fatalf("phone got bad RTCP: %v", err)
		}
		for _, p := range pkts {
			if rr, ok := p.(*rtcp.ReceiverReport); ok {
				gotRR = true
				if len(rr.Reports) != 1 || rr.Reports[0].SSRC != 0xabcdef01 {
					t.Errorf("receiver report at the phone: %+v, want a block about SSRC abcdef01", rr)
				}
			}
		}
	}

	// The counters are bumped after each write returns: poll.
	pollUntil(t, func() bool {
		st := bridge.Stats()
		return st.RTPFromBrowser > 0 && st.RTPToBrowser > 0 && st.RTCPFromBrowser > 0 && st.RTCPToBrowser > 0
	}, "the bridge's counters miss a direction")
	legs := sess.Close()
	if !legs[media.Caller].External || legs[media.Caller].PacketsIn == 0 || legs[media.Caller].PacketsOut == 0 {
		t.Errorf("browser leg stats: %+v", legs[media.Caller])
	}
	if bridge.State() != StateClosed {
		t.Errorf("state after the session closed: %q", bridge.State())
	}
	br.pc.Close()
	relay.Close()
	if n := relay.PortsInUse(); n != 0 {
		t.Errorf("ports in use after close: %d", n)
	}
	check()
}

// TestPhoneOffers: a phone offers PCMA, PCMU, G.729 and telephone-event/101 to a browser;
// the bridge's offer carries only what passes through; the browser answers; audio and DTMF
// cross both ways. The relay's sockets are bound to all addresses (serve's default).
func TestPhoneOffers(t *testing.T) {
	check := goroutineCheck(t)
	relay := newRelay(t, netip.Addr{})
	gw, err := NewGateway(Config{}) // the relay leg's advertised address
	if err != nil {
		t.Fatal(err)
	}
	ph := newPhone(t)
	defer ph.close()
	br := newBrowser(t, []codec{opus, pcmu, pcma, teChrome})

	sess, err := relay.Open("call-2")
	if err != nil {
		t.Fatal(err)
	}
	pl, bl := sess.Leg(media.Caller), sess.Leg(media.Callee)
	pl.SetPeer(ph.peer())
	bridge, offer, err := gw.ToBrowser(bl, []sdp.Codec{{PT: 8, Name: "PCMA", Rate: 8000}, {PT: 0, Name: "PCMU", Rate: 8000}, {PT: 18, Name: "G729", Rate: 8000}, {PT: 101, Name: "telephone-event", Rate: 8000, Fmtp: "0-16"}})
	if err != nil {
		t.Fatal(err)
	}
	s := string(offer)
	for _, want := range []string{"a=ice-lite", "a=setup:actpass", "m=audio " + itoa(int(bl.Addr().Port())) + " UDP/TLS/RTP/SAVPF 8 0 101",
		"c=IN IP4 127.0.0.1", "127.0.0.1 " + itoa(int(bl.Addr().Port())) + " typ host", "a=rtpmap:101 telephone-event/8000"} {
		if !strings.Contains(s, want) {
			t.Errorf("offer lacks %q:\n%s", want, s)
		}
	}
	if err := br.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: s}); err != nil {
		t.Fatal(err)
	}
	ans, err := br.pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	chosen, err := bridge.BrowserAnswered(br.local(t, ans))
	if err != nil {
		t.Fatal(err)
	}
	if got := names(fromSDP(chosen)); !strings.Contains(got, "PCMA/8000") || !strings.Contains(got, "telephone-event/8000") || strings.Contains(got, "G729") {
		t.Errorf("codecs for the phone's answer: %s", got)
	}
	waitState(t, bridge, StateDTLSConnected, 10*time.Second)
	if p := browserToPhone(t, br, ph, 8, "voice"); p.PayloadType != 8 {
		t.Errorf("PCMA reached the phone as PT %d", p.PayloadType)
	}
	if p := browserToPhone(t, br, ph, 101, "dtmf"); p.PayloadType != 101 {
		t.Errorf("telephone-event reached the phone as PT %d", p.PayloadType)
	}
	if p := phoneToBrowser(t, ph, pl.Addr(), br, 8, "voice"); p.PayloadType != 8 {
		t.Errorf("PCMA reached the browser as PT %d", p.PayloadType)
	}
	if p := phoneToBrowser(t, ph, pl.Addr(), br, 101, "dtmf"); p.PayloadType != 101 {
		t.Errorf("telephone-event reached the browser as PT %d", p.PayloadType)
	}
	sess.Close()
	br.pc.Close()
	relay.Close()
	check()
}

// TestGarbageToBridgePort: datagrams that are not, or pretend to be, STUN, DTLS and SRTP
// sent to the browser's port from a third address, and malformed RTP/RTCP handed to the
// bridge by the relay, are dropped and counted; the call goes on.
func TestGarbageToBridgePort(t *testing.T) {
	check := goroutineCheck(t)
	relay := newRelay(t, loopback)
	gw := newGateway(t, 0)
	ph := newPhone(t)
	defer ph.close()
	br := newBrowser(t, []codec{pcmu, teChrome})
	sess, err := relay.Open("call-3")
	if err != nil {
		t.Fatal(err)
	}
	bl, pl := sess.Leg(media.Caller), sess.Leg(media.Callee)
	pl.SetPeer(ph.peer())
	bridge, _, err := gw.FromBrowser(bl, br.offer(t))
	if err != nil {
		t.Fatal(err)
	}
	answer, err := bridge.AnswerBrowser([]sdp.Codec{{PT: 0, Name: "PCMU", Rate: 8000}})
	if err != nil {
		t.Fatal(err)
	}
	if err := br.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		t.Fatal(err)
	}
	waitState(t, bridge, StateDTLSConnected, 10*time.Second)

	attacker, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	stunHdr := []byte{0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x00, 0x06, 0x00, 0x04, 'x', ':', 'y', 0}
	garbage := [][]byte{
		{},
		{0xff},
		bytes.Repeat([]byte{0xee}, 1400),
		stunHdr,
		stunHdr[:20],
		{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 40, 1, 2, 3},
		rtpPacket(0, 1, 1, bytes.Repeat([]byte{1}, 160)), // "SRTP" without authentication
		{0x80, 0xc8, 0, 1}, // truncated SRTCP
	}
	before := bridge.Stats().Dropped
	for i := 0; i < 20; i++ {
		for _, g := range garbage {
			attacker.WriteToUDPAddrPort(g, bl.Addr())
		}
	}
	pollUntil(t, func() bool { return bridge.Stats().Dropped >= before+20*uint64(len(garbage)-1) }, "garbage was not all counted as dropped")

	// The relay hands the bridge malformed packets too (it checks, but the bridge does not
	// rely on it).
	for _, g := range [][]byte{nil, {0x80}, {0x80, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0}, {0x81, 0xc9, 0, 7}, {0x80, 0xcc, 0, 0}} {
		if err := bridge.WriteRTP(g); err != nil {
			t.Errorf("WriteRTP(%x): %v", g, err)
		}
		if err := bridge.WriteRTCP(g); err != nil {
			t.Errorf("WriteRTCP(%x): %v", g, err)
		}
	}
	// The call still works.
	browserToPhone(t, br, ph, 0, "after")
	phoneToBrowser(t, ph, pl.Addr(), br, 0, "after")
	sess.Close()
	br.pc.Close()
	relay.Close()
	check()
}

// TestHandshakeTimeout: a browser that never connects (its traffic blocked) leaves the
// bridge "failed" with a reason the doctor can show; Close still frees everything.
func TestHandshakeTimeout(t *testing.T) {
	check := goroutineCheck(t)
	relay := newRelay(t, loopback)
	gw := newGateway(t, 300*time.Millisecond)
	br := newBrowser(t, []codec{pcmu})
	sess, err := relay.Open("call-4")
	if err != nil {
		t.Fatal(err)
	}
	bridge, _, err := gw.FromBrowser(sess.Leg(media.Caller), br.offer(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bridge.AnswerBrowser([]sdp.Codec{{PT: 0, Name: "PCMU", Rate: 8000}}); err != nil {
		t.Fatal(err)
	}
	if s := bridge.State(); s != StateNew {
		t.Fatalf("state before any check: %q", s)
	}
	// The answer never reaches the browser: no connectivity check, no DTLS.
	waitState(t, bridge, StateFailed, 5*time.Second)
	if r := bridge.Reason(); !strings.Contains(r, "no ICE connectivity check") || !strings.Contains(r, "blocked") {
		t.Errorf("reason: %q", r)
	}
	sess.Close()
	br.pc.Close()
	relay.Close()
	check()
}

// TestICEWithoutDTLS: a browser whose ICE checks reach the relay but whose DTLS handshake
// never follows (a path that drops the large handshake packets): after the handshake
// timeout the bridge is "failed", and Reached, which the call record keeps, still says
// "ice-connected", so the doctor can tell "UDP got through" from "nothing arrived".
func TestICEWithoutDTLS(t *testing.T) {
	check := goroutineCheck(t)
	relay := newRelay(t, loopback)
	gw := newGateway(t, 500*time.Millisecond)
	br := newBrowser(t, []codec{pcmu})
	sess, err := relay.Open("call-5")
	if err != nil {
		t.Fatal(err)
	}
	offer := br.offer(t)
	bridge, _, err := gw.FromBrowser(sess.Leg(media.Caller), offer)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := bridge.AnswerBrowser([]sdp.Codec{{PT: 0, Name: "PCMU", Rate: 8000}})
	if err != nil {
		t.Fatal(err)
	}
	attr := func(desc []byte, name string) []string {
		var out []string
		for _, l := range strings.Split(string(desc), "\r\n") {
			if v, ok := strings.CutPrefix(l, "a="+name+":"); ok {
				out = append(out, v)
			}
		}
		if len(out) == 0 {
			t.Fatalf("no a=%s in\n%s", name, desc)
		}
		return out
	}
	// An ICE agent with the browser's credentials does the connectivity checks, and no
	// DTLS follows.
	agent, err := ice.NewAgent(&ice.AgentConfig{LocalUfrag: attr(offer, "ice-ufrag")[0], LocalPwd: attr(offer, "ice-pwd")[0],
		NetworkTypes: []ice.NetworkType{ice.NetworkTypeUDP4}, CandidateTypes: []ice.CandidateType{ice.CandidateTypeHost},
		IncludeLoopback: true, InterfaceFilter: func(name string) bool { return name == "lo" },
		MulticastDNSMode: ice.MulticastDNSModeDisabled, LoggerFactory: quietLoggerFactory{}})
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	if err := agent.OnCandidate(func(ice.Candidate) {}); err != nil {
		t.Fatal(err)
	}
	if err := agent.GatherCandidates(); err != nil {
		t.Fatal(err)
	}
	for _, c := range attr(answer, "candidate") {
		cand, err := ice.UnmarshalCandidate(c)
		if err != nil {
			t.Fatalf("candidate %q: %v", c, err)
		}
		if err := agent.AddRemoteCandidate(cand); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := agent.Dial(ctx, attr(answer, "ice-ufrag")[0], attr(answer, "ice-pwd")[0])
	if err != nil {
		t.Fatalf("ICE towards the bridge: %v", err)
	}
	waitState(t, bridge, StateICEConnected, 5*time.Second)
	waitState(t, bridge, StateFailed, 5*time.Second)
	if r := bridge.Reason(); !strings.Contains(r, "ICE connected but no DTLS handshake") {
		t.Errorf("reason: %q", r)
	}
	if r := bridge.Reached(); r != StateICEConnected {
		t.Errorf("Reached after the timeout: %q, want %q (ICE did get through)", r, StateICEConnected)
	}
	conn.Close()
	sess.Close()
	if r := bridge.Reached(); r != StateICEConnected {
		t.Errorf("Reached after Close: %q, want %q", r, StateICEConnected)
	}
	br.pc.Close()
	relay.Close()
	check()
}

// TestNoCommonCodec: opus-only browsers and G.729-only phones get ErrNoCommonCodec naming
// what each side offered, and the leg is not taken from the relay.
func TestNoCommonCodec(t *testing.T) {
	check := goroutineCheck(t)
	relay := newRelay(t, loopback)
	gw := newGateway(t, 0)
	sess, err := relay.Open("call-5")
	if err != nil {
		t.Fatal(err)
	}
	br := newBrowser(t, []codec{opus, te48})
	_, _, err = gw.FromBrowser(sess.Leg(media.Caller), br.offer(t))
	if !errors.Is(err, ErrNoCommonCodec) || !strings.Contains(err.Error(), "opus/48000/2") {
		t.Errorf("opus-only browser: %v", err)
	}
	if sess.Stats()[media.Caller].External {
		t.Error("the leg was handed over although the bridge failed")
	}
	_, _, err = gw.ToBrowser(sess.Leg(media.Callee), []sdp.Codec{{PT: 18, Name: "G729", Rate: 8000}, {PT: 101, Name: "telephone-event", Rate: 8000}})
	if !errors.Is(err, ErrNoCommonCodec) || !strings.Contains(err.Error(), "G729/8000") {
		t.Errorf("G.729-only phone: %v", err)
	}
	br.pc.Close()

	// The browser offers PCMU, the phone answers PCMA only.
	br2 := newBrowser(t, []codec{pcmu, teChrome})
	bridge, _, err := gw.FromBrowser(sess.Leg(media.Caller), br2.offer(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = bridge.AnswerBrowser([]sdp.Codec{{PT: 8, Name: "PCMA", Rate: 8000}})
	if !errors.Is(err, ErrNoCommonCodec) || !strings.Contains(err.Error(), "PCMU/8000") || !strings.Contains(err.Error(), "PCMA/8000") {
		t.Errorf("PCMU browser, PCMA phone: %v", err)
	}
	sess.Close()
	br2.pc.Close()
	relay.Close()
	check()
}

// TestPTMap: payload types are translated by codec name and rate; a packet numbered by
// its receiver's table is still understood; unknown PTs are dropped.
func TestPTMap(t *testing.T) {
	m := newPTMap([]codec{pcmu, tePhone}, []codec{pcmu, teChrome})
	cases := []struct {
		toBrowser bool
		in, out   uint8
		ok        bool
	}{
		{true, 0, 0, true}, {true, 101, 126, true}, {true, 126, 126, true}, {true, 8, 0, false}, {true, 13, 0, false},
		{false, 0, 0, true}, {false, 126, 101, true}, {false, 101, 101, true}, {false, 111, 0, false}, {false, 0xff, 0, false},
	}
	for _, c := range cases {
		var got uint8
		var ok bool
		if c.toBrowser {
			got, ok = m.forBrowser(c.in)
		} else {
			got, ok = m.forPhone(c.in)
		}
		if ok != c.ok || (ok && got != c.out) {
			t.Errorf("toBrowser=%v PT %d -> %d %v, want %d %v", c.toBrowser, c.in, got, ok, c.out, c.ok)
		}
	}
}

func pollUntil(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
