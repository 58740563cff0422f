// Package wrtc bridges a WebRTC browser (ICE-lite, DTLS-SRTP, rtcp-mux) to a plain RTP
// phone through the media relay (internal/media), without transcoding.
//
// The browser-facing UDP socket is the one the relay leg hands over (media.Leg.External),
// so its port comes from the relay's --rtp-ports range and is released with the session.
// One socket carries STUN, DTLS, SRTP and SRTCP (RFC 7983 demultiplexing, rtcp-mux); the
// bridge is an ICE-lite agent whose only candidate is the relay's advertised address.
//
// Codecs: PCMU, PCMA and RFC 4733 telephone-event at 8 kHz pass through; payload type
// numbers are mapped between the two sides by codec name (the browser's telephone-event
// is typically 126, a phone's 101). The SSRC of the phone's stream is rewritten to the one
// signalled to the browser; the browser's SSRC reaches the phone unchanged.
//
// RTCP is forwarded, not terminated: sender and receiver reports, SDES and BYE cross in
// both directions with the SSRCs translated the same way as RTP (report blocks about the
// rewritten stream name the phone's SSRC again); feedback messages (NACK, PLI, REMB,
// transport-cc) are dropped, since audio without retransmission has no use for them and a
// phone would not understand them. Nothing is generated locally, so the reports each end
// sees describe the other end's reception (loss and jitter across the whole path).
package wrtc

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/switchboard-pbx/switchboard/internal/sdp"
)

// Config of a Gateway; zero values get defaults.
type Config struct {
	// AdvertiseIP is the address written into the browser's SDP as the only ICE candidate
	// (serve --media-ip). When zero, the address the relay leg advertises is used.
	AdvertiseIP netip.Addr
	// HandshakeTimeout is how long after the SDP exchange ICE and DTLS may take before the
	// bridge reports "failed" (default 10s). The doctor reads that as "no DTLS handshake:
	// browser blocked".
	HandshakeTimeout time.Duration
	// GatherTimeout bounds the local candidate gathering of one offer/answer (default 5s;
	// with the one muxed socket it completes at once).
	GatherTimeout time.Duration
	Log           *slog.Logger
}

// Gateway creates Bridges; it holds no sockets and is safe for concurrent use.
type Gateway struct {
	cfg Config
}

// NewGateway checks cfg and applies defaults.
func NewGateway(cfg Config) (*Gateway, error) {
	if cfg.AdvertiseIP.IsValid() && cfg.AdvertiseIP.IsUnspecified() {
		return nil, errors.New("wrtc: AdvertiseIP must be a specific address (serve --media-ip)")
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.GatherTimeout <= 0 {
		cfg.GatherTimeout = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Gateway{cfg: cfg}, nil
}

// Bridge states, as State returns them.
const (
	StateNew           = "new"
	StateICEConnected  = "ice-connected"
	StateDTLSConnected = "dtls-connected"
	StateFailed        = "failed"
	StateClosed        = "closed"
)

// Stats counts what crossed a Bridge. "FromBrowser" packets are decrypted and passed to
// the phone side; "ToBrowser" packets came from the phone and were encrypted.
type Stats struct {
	RTPFromBrowser, RTCPFromBrowser uint64
	RTPToBrowser, RTCPToBrowser     uint64
	// Dropped: datagrams on the browser socket that were not STUN/DTLS/SRTP by their first
	// byte (RFC 7983), that no ICE session claimed (wrong or missing ICE credentials, an
	// unknown source), packets with a payload type neither side negotiated, RTCP that did
	// not parse, and phone packets sent before DTLS completed.
	Dropped uint64
}

// Bridge is one browser <-> phone media path. Close it with the call (the relay session's
// Close does, through the Endpoint interface).
type Bridge struct {
	g         *Gateway
	sock      *countingConn
	mux       *ice.UDPMuxDefault
	pc        *webrtc.PeerConnection
	track     *phoneTrack
	toPhone   func(pkt []byte, rtcp bool)
	advertise netip.Addr
	browser   []codec // the browser's SDP codecs (passable ones), its numbering
	phone     []codec // the phone's SDP codecs, its numbering
	pts       atomic.Pointer[ptMap]
	phoneSSR  atomic.Uint32 // last SSRC seen from the phone
	hasPhone  atomic.Bool

	rtpFromB, rtcpFromB, rtpToB, rtcpToB, dropped atomic.Uint64

	mu      sync.Mutex
	state   string
	reached string // state before Close
	reason  string
	closed  bool
	local   []byte      // our SDP for the browser (offer or answer), once made
	answer  []sdp.Codec // BrowserAnswered's result, once the browser answered
	timer   *time.Timer
	wg      sync.WaitGroup
}

// State is the ICE/DTLS state for the doctor: "new" (SDP exchanged, no connectivity
// check yet), "ice-connected", "dtls-connected" (media can flow), "failed" (the
// handshake did not complete within HandshakeTimeout, or ICE/DTLS failed; see Reason),
// "closed".
func (b *Bridge) State() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// Reached is how far the handshake got, for the call record and the doctor: "new",
// "ice-connected" (the browser's ICE checks reached the relay, DTLS did not complete; it
// stays so when the bridge then failed or timed out), "dtls-connected" or "failed" (no
// ICE check ever came, or ICE failed first). Close does not change it.
func (b *Bridge) Reached() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reached
}

// LocalSDP is the SDP the bridge made for the browser (its offer, or its answer once
// AnswerBrowser ran); nil before. A re-negotiation is not bridged: the browser keeps it.
func (b *Bridge) LocalSDP() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.local
}

// Reason says why State is "failed" ("" otherwise).
func (b *Bridge) Reason() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reason
}

// Stats is a live snapshot of the bridge's counters.
func (b *Bridge) Stats() Stats {
	return Stats{
		RTPFromBrowser:  b.rtpFromB.Load(),
		RTCPFromBrowser: b.rtcpFromB.Load(),
		RTPToBrowser:    b.rtpToB.Load(),
		RTCPToBrowser:   b.rtcpToB.Load(),
		Dropped:         b.dropped.Load() + b.sock.droppedCount(),
	}
}

// phoneLeg is the relay leg facing the browser: it hands its socket over and takes what
// the browser sent (decrypted) towards the phone. *media.Leg is one (see leg.go).
type phoneLeg interface {
	external(b *Bridge) net.PacketConn
	receive(pkt []byte, rtcp bool)
	advertised() netip.Addr // the relay's address for this leg
}

// newBridge makes an empty bridge: packets written to it are dropped until setup is done.
func (g *Gateway) newBridge(leg phoneLeg) *Bridge {
	adv := g.cfg.AdvertiseIP
	if !adv.IsValid() {
		adv = leg.advertised()
	}
	return &Bridge{g: g, toPhone: leg.receive, advertise: adv.Unmap(), state: StateNew, reached: StateNew, track: &phoneTrack{}}
}

// setup wraps the browser-facing socket and builds a PeerConnection whose media engine
// knows exactly the given codecs (with their payload types). conn stays the relay's: the
// session closes it (media.Leg.External).
func (b *Bridge) setup(conn net.PacketConn, engineCodecs []codec) error {
	b.sock = &countingConn{PacketConn: conn}
	b.mux = ice.NewUDPMuxDefault(ice.UDPMuxParams{
		UDPConn:           b.sock,
		Logger:            quietLogger{},
		OnUnhandledPacket: func([]byte, netip.AddrPort) { b.dropped.Add(1) },
	})
	me := &webrtc.MediaEngine{}
	for _, c := range engineCodecs {
		err := me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: "audio/" + c.Name, ClockRate: uint32(c.Rate), SDPFmtpLine: c.Fmtp,
			},
			PayloadType: webrtc.PayloadType(c.PT),
		}, webrtc.RTPCodecTypeAudio)
		if err != nil {
			return fmt.Errorf("wrtc: register codec %s: %w", c, err)
		}
	}
	var se webrtc.SettingEngine
	se.SetLite(true)
	se.SetICEUDPMux(b.mux)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.LoggerFactory = quietLoggerFactory{}
	if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
		External:        []string{b.advertise.String()},
		AsCandidateType: webrtc.ICECandidateTypeHost,
		Mode:            webrtc.ICEAddressRewriteReplace,
	}); err != nil {
		return fmt.Errorf("wrtc: advertise %s: %w", b.advertise, err)
	}
	// An empty interceptor registry: no NACK, no TWCC, no locally generated reports (RTCP
	// is forwarded end to end, see the package comment).
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	pc, err := api.NewPeerConnection(webrtc.Configuration{
		BundlePolicy:  webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
	})
	if err != nil {
		return fmt.Errorf("wrtc: new peer connection: %w", err)
	}
	b.mu.Lock()
	b.pc = pc
	b.mu.Unlock()
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		switch s {
		case webrtc.ICEConnectionStateConnected:
			b.setState(StateICEConnected, "", false)
		case webrtc.ICEConnectionStateFailed:
			b.setState(StateFailed, "ICE failed: the browser's connectivity checks stopped", true)
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			b.setState(StateDTLSConnected, "", true)
		case webrtc.PeerConnectionStateFailed:
			b.setState(StateFailed, "DTLS or ICE failed", true)
		}
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		if !b.own() {
			return
		}
		defer b.wg.Done()
		b.readBrowserRTP(t)
	})
	return nil
}

// setState moves the state forward; "closed" and "failed" are final (a late "connected"
// after a timeout does not clear a failure the doctor may already have read... unless media
// then flows: dtls-connected after failed is taken, the handshake did complete).
func (b *Bridge) setState(s, reason string, stopTimer bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == StateClosed {
		return
	}
	if b.state == StateDTLSConnected && s == StateICEConnected {
		return
	}
	if b.state == StateFailed && s != StateDTLSConnected {
		return
	}
	b.state, b.reason = s, reason
	if s != StateFailed || b.reached != StateICEConnected {
		// A failure after ICE connected keeps "ice-connected" as the furthest the
		// handshake got: the doctor tells "UDP reached the relay" from "nothing came".
		b.reached = s
	}
	if stopTimer && b.timer != nil {
		b.timer.Stop()
	}
	if s == StateFailed {
		b.g.cfg.Log.Info("webrtc bridge failed", "reason", reason)
	}
}

// startHandshakeTimer arms the "no DTLS handshake" timeout once the SDP exchange is done.
func (b *Bridge) startHandshakeTimer() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.timer != nil || b.state == StateDTLSConnected {
		return
	}
	d := b.g.cfg.HandshakeTimeout
	b.timer = time.AfterFunc(d, func() {
		b.mu.Lock()
		st := b.state
		b.mu.Unlock()
		if st == StateNew || st == StateICEConnected {
			what := "no ICE connectivity check from the browser"
			if st == StateICEConnected {
				what = "ICE connected but no DTLS handshake"
			}
			b.setState(StateFailed, fmt.Sprintf("%s within %s: the browser's UDP to %s is blocked or the browser gave up", what, d, b.sock.LocalAddr()), false)
		}
	})
}

// own registers a goroutine of the bridge; false once the bridge is closed.
func (b *Bridge) own() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	return true
}

// gather sets the local description and waits for the (single, muxed) candidate.
func (b *Bridge) gather(desc webrtc.SessionDescription) (string, error) {
	done := webrtc.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(desc); err != nil {
		return "", fmt.Errorf("wrtc: set local description: %w", err)
	}
	select {
	case <-done:
	case <-time.After(b.g.cfg.GatherTimeout):
		return "", fmt.Errorf("wrtc: ICE gathering did not complete within %s", b.g.cfg.GatherTimeout)
	}
	ld := b.pc.LocalDescription()
	if ld == nil {
		return "", errors.New("wrtc: no local description")
	}
	return b.fillAddress(ld.SDP), nil
}

// fillAddress writes the relay's address into the m= port and c= line that pion leaves at
// "9" and "0.0.0.0" (ICE finds the address in the candidate anyway): SIP parties and the
// proxy read the media address from there, and a browser accepts it.
func (b *Bridge) fillAddress(s string) string {
	ua, ok := b.sock.LocalAddr().(*net.UDPAddr)
	if !ok {
		return s
	}
	ip := b.advertise
	fam := "IP4"
	if ip.Is6() && !ip.Is4In6() {
		fam = "IP6"
	}
	lines := strings.SplitAfter(s, "\n")
	inAudio := false
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "m="):
			inAudio = strings.HasPrefix(l, "m=audio 9 ")
			if inAudio {
				lines[i] = "m=audio " + strconv.Itoa(ua.Port) + l[len("m=audio 9"):]
			}
		case inAudio && strings.HasPrefix(l, "c=IN IP4 0.0.0.0"):
			lines[i] = "c=IN " + fam + " " + ip.Unmap().String() + l[len("c=IN IP4 0.0.0.0"):]
		}
	}
	return strings.Join(lines, "")
}

// startRTCP starts the readers of the browser's RTCP (see the package comment for what is
// forwarded).
func (b *Bridge) startRTCP(tr *webrtc.RTPTransceiver) {
	if r := tr.Receiver(); r != nil && b.own() {
		go func() {
			defer b.wg.Done()
			b.readBrowserRTCP(r.Read, false)
		}()
	}
	if s := tr.Sender(); s != nil && b.own() {
		go func() {
			defer b.wg.Done()
			b.readBrowserRTCP(s.Read, true)
		}()
	}
}

func (b *Bridge) audioTransceiver() *webrtc.RTPTransceiver {
	for _, t := range b.pc.GetTransceivers() {
		if t.Kind() == webrtc.RTPCodecTypeAudio {
			return t
		}
	}
	return nil
}

// readBrowserRTP passes the browser's decrypted RTP to the phone side with the payload
// type mapped; it returns when the PeerConnection closes.
func (b *Bridge) readBrowserRTP(t *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	for {
		n, _, err := t.Read(buf)
		if err != nil && (n == 0 || errors.Is(err, io.EOF) || b.isClosed()) {
			return // the PeerConnection ended
		}
		if err != nil || n < 12 { // err with n > 0: a payload type pion does not know
			b.dropped.Add(1)
			continue
		}
		m := b.pts.Load()
		if m == nil {
			b.dropped.Add(1)
			continue
		}
		pt, ok := m.forPhone(buf[1] & 0x7f)
		if !ok {
			b.dropped.Add(1)
			continue
		}
		buf[1] = buf[1]&0x80 | pt
		b.rtpFromB.Add(1)
		b.toPhone(buf[:n], false)
	}
}

func (b *Bridge) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// readBrowserRTCP forwards the browser's RTCP to the phone. pion hands a compound packet
// to every stream it names: one with a sender report reaches the receiver's reader (the
// browser's own SSRC) and the sender's (report blocks about our stream), so the sender's
// reader forwards only compounds without a sender report (a browser that only receives).
func (b *Bridge) readBrowserRTCP(read func([]byte) (int, interceptor.Attributes, error), senderSide bool) {
	buf := make([]byte, 1500)
	for {
		n, _, err := read(buf)
		if err != nil {
			return // closed (io.EOF, io.ErrClosedPipe): the PeerConnection ended
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			b.dropped.Add(1)
			continue
		}
		if senderSide && hasSR(pkts) {
			continue
		}
		_, ours := b.track.writer()
		phone, known := b.phoneSSR.Load(), b.hasPhone.Load()
		fix := func(rs []rtcp.ReceptionReport) {
			for i := range rs {
				if known && rs[i].SSRC == ours {
					rs[i].SSRC = phone
				}
			}
		}
		out := pkts[:0]
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.SenderReport:
				fix(p.Reports)
				out = append(out, p)
			case *rtcp.ReceiverReport:
				fix(p.Reports)
				out = append(out, p)
			case *rtcp.SourceDescription, *rtcp.Goodbye:
				out = append(out, p)
			}
		}
		if len(out) == 0 {
			continue
		}
		raw, err := rtcp.Marshal(out)
		if err != nil {
			b.dropped.Add(1)
			continue
		}
		b.rtcpFromB.Add(1)
		b.toPhone(raw, true)
	}
}

func hasSR(pkts []rtcp.Packet) bool {
	for _, p := range pkts {
		if _, ok := p.(*rtcp.SenderReport); ok {
			return true
		}
	}
	return false
}

// WriteRTP sends one plain RTP packet from the phone to the browser (the relay's Endpoint
// side): payload type mapped to the browser's numbering, SSRC rewritten to the one
// signalled to the browser. Before DTLS completes, packets are dropped.
func (b *Bridge) WriteRTP(pkt []byte) error {
	var h rtp.Header
	off, err := h.Unmarshal(pkt)
	if err != nil {
		b.dropped.Add(1)
		return nil
	}
	m := b.pts.Load()
	if m == nil {
		b.dropped.Add(1)
		return nil
	}
	pt, ok := m.forBrowser(h.PayloadType)
	if !ok {
		b.dropped.Add(1)
		return nil
	}
	b.phoneSSR.Store(h.SSRC)
	b.hasPhone.Store(true)
	w, ssrc := b.track.writer()
	if w == nil {
		b.dropped.Add(1)
		return nil
	}
	h.PayloadType = pt
	h.SSRC = ssrc
	if _, err := w.WriteRTP(&h, pkt[off:]); err != nil {
		b.dropped.Add(1)
		return nil
	}
	b.rtpToB.Add(1)
	return nil
}

// WriteRTCP forwards the phone's RTCP to the browser (SR, RR, SDES, BYE with the phone's
// SSRC rewritten; anything else dropped).
func (b *Bridge) WriteRTCP(pkt []byte) error {
	pkts, err := rtcp.Unmarshal(pkt)
	if err != nil {
		b.dropped.Add(1)
		return nil
	}
	_, ssrc := b.track.writer()
	out := pkts[:0]
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.SenderReport:
			p.SSRC = ssrc
			out = append(out, p)
		case *rtcp.ReceiverReport:
			p.SSRC = ssrc
			out = append(out, p)
		case *rtcp.SourceDescription:
			for i := range p.Chunks {
				p.Chunks[i].Source = ssrc
			}
			out = append(out, p)
		case *rtcp.Goodbye:
			for i := range p.Sources {
				p.Sources[i] = ssrc
			}
			out = append(out, p)
		}
	}
	if len(out) == 0 || ssrc == 0 {
		b.dropped.Add(1)
		return nil
	}
	if b.pts.Load() == nil {
		b.dropped.Add(1)
		return nil
	}
	if err := b.pc.WriteRTCP(out); err != nil {
		b.dropped.Add(1)
		return nil
	}
	b.rtcpToB.Add(1)
	return nil
}

// Close ends the PeerConnection, releases the browser socket (through the ICE mux) and
// waits for every goroutine of the bridge. Idempotent.
func (b *Bridge) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.state = StateClosed
	if b.timer != nil {
		b.timer.Stop()
	}
	pc := b.pc
	b.mu.Unlock()
	var err error
	if pc != nil {
		err = pc.GracefulClose()
	}
	if b.mux != nil {
		if merr := b.mux.Close(); err == nil {
			err = merr
		}
	}
	b.wg.Wait()
	if err != nil {
		return fmt.Errorf("wrtc: close: %w", err)
	}
	return nil
}

// phoneTrack is the TrackLocal that carries the phone's RTP to the browser. Unlike
// pion's TrackLocalStaticRTP it keeps each packet's payload type (mapped by the bridge),
// which telephone-event needs.
type phoneTrack struct {
	mu   sync.Mutex
	w    webrtc.TrackLocalWriter
	ssrc uint32
}

func (t *phoneTrack) writer() (webrtc.TrackLocalWriter, uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.w, t.ssrc
}

// Bind implements webrtc.TrackLocal.
func (t *phoneTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	cs := ctx.CodecParameters()
	if len(cs) == 0 {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	chosen := cs[0]
	for _, c := range cs {
		if !strings.EqualFold(c.MimeType, "audio/telephone-event") {
			chosen = c
			break
		}
	}
	t.mu.Lock()
	t.w, t.ssrc = ctx.WriteStream(), uint32(ctx.SSRC())
	t.mu.Unlock()
	return chosen, nil
}

// Unbind implements webrtc.TrackLocal.
func (t *phoneTrack) Unbind(webrtc.TrackLocalContext) error {
	t.mu.Lock()
	t.w = nil
	t.mu.Unlock()
	return nil
}

// ID implements webrtc.TrackLocal.
func (t *phoneTrack) ID() string { return "audio" }

// RID implements webrtc.TrackLocal.
func (t *phoneTrack) RID() string { return "" }

// StreamID implements webrtc.TrackLocal.
func (t *phoneTrack) StreamID() string { return "switchboard" }

// Kind implements webrtc.TrackLocal.
func (t *phoneTrack) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeAudio }

// countingConn drops datagrams that cannot be STUN, DTLS or (S)RTP/(S)RTCP by their first
// byte (RFC 7983) before the ICE mux sees them, and counts them. Its Close only stops
// reading (the ICE mux closes its conn): the socket belongs to the relay session, which
// closes it (media.Leg.External).
type countingConn struct {
	net.PacketConn
	dropped atomic.Uint64
	closed  atomic.Bool
}

// Close stops ReadFrom (it returns net.ErrClosed) without closing the relay's socket.
func (c *countingConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		_ = c.PacketConn.SetReadDeadline(time.Unix(1, 0))
	}
	return nil
}

func (c *countingConn) droppedCount() uint64 {
	if c == nil {
		return 0
	}
	return c.dropped.Load()
}

// ReadFrom implements net.PacketConn.
func (c *countingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if c.closed.Load() {
			return 0, nil, net.ErrClosed
		}
		if err != nil || n == 0 {
			if err == nil {
				c.dropped.Add(1)
				continue
			}
			return n, addr, err
		}
		switch b := p[0]; {
		case b <= 3, b >= 20 && b <= 63, b >= 128 && b <= 191:
			return n, addr, nil
		}
		c.dropped.Add(1)
	}
}

// quietLoggerFactory silences pion's own logging (it logs every dropped packet; the bridge
// counts them instead).
type quietLoggerFactory struct{}

func (quietLoggerFactory) NewLogger(string) logging.LeveledLogger { return quietLogger{} }

type quietLogger struct{}

func (quietLogger) Trace(string)          {}
func (quietLogger) Tracef(string, ...any) {}
func (quietLogger) Debug(string)          {}
func (quietLogger) Debugf(string, ...any) {}
func (quietLogger) Info(string)           {}
func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Warn(string)           {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Error(string)          {}
func (quietLogger) Errorf(string, ...any) {}
