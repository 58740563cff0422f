package proxy

// Media relay wiring (serve --media-relay; package media anchors the RTP).
//
// Two functions hold the decisions, so that the WebRTC bridge (package
// wrtc) plugs in at two places:
//
//   - planMedia decides, once per new call, whether its media go through
//     the relay, and opens the relay session (Relay.Open);
//   - relaySDP rewrites every SDP body of a relayed call, whichever message
//     carries it (INVITE, 18x, 2xx, re-INVITE and its answer, UPDATE, PRACK,
//     ACK of a late offer): the sender's leg learns the party's media
//     address (Leg.SetPeer with the SIP source), and the body is pointed at
//     the other leg, the one facing the receiver.
//
// Everything else (which messages go through relaySDP, closing the session
// when the call ends, the media timeout) is plumbing around them.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/media"
	wrtc "github.com/switchboard-pbx/switchboard/internal/media/webrtc"
	"github.com/switchboard-pbx/switchboard/internal/registrar"
	"github.com/switchboard-pbx/switchboard/internal/router"
	"github.com/switchboard-pbx/switchboard/internal/sdp"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Media relay modes (Config.MediaRelay).
const (
	RelayAuto   = "auto"
	RelayAlways = "always"
	RelayNever  = "never"
)

// callMedia is the relayed media of one call: its relay session and the
// state of its SDP rewriting. Safe for concurrent use.
type callMedia struct {
	sess      *media.Session
	callID    string
	callerTag string
	why       string // why the call is relayed (for the call record)

	mu     sync.Mutex
	last   [2]rewritten   // the last body from each side and its rewrite
	codecs [2][]sdp.Codec // the codecs each side last sent
	webrtc [2]bool        // the side's SDP was a browser's
	closed bool           // the session is closed; final holds its stats
	final  [2]media.LegStats

	// The WebRTC bridge of a browser <-> phone call (nil otherwise, see bridge.go):
	// browser is the browser's side, plain the last plain SDP sent to the phone, sdpID
	// its o= id.
	bridge  *wrtc.Bridge
	browser media.Side
	plain   []byte
	sdpID   uint64
}

// rewritten is a body as a party sent it and as the relay forwards it: a
// retransmission gets the same rewrite without resetting latching.
type rewritten struct{ in, out []byte }

// other returns the side facing the other party.
func other(s media.Side) media.Side {
	if s == media.Caller {
		return media.Callee
	}
	return media.Caller
}

// mediaOf returns the relayed media of the call callID, nil when its media
// are not relayed.
func (p *Proxy) mediaOf(callID string) *callMedia {
	if p.d.Media == nil {
		return nil
	}
	if v, ok := p.relayed.Load(callID); ok {
		return v.(*callMedia)
	}
	return nil
}

// relayMode is the effective mode: never without a relay.
func (p *Proxy) relayMode() string {
	if p.d.Media == nil {
		return RelayNever
	}
	switch p.cfg.MediaRelay {
	case RelayAlways, RelayNever:
		return p.cfg.MediaRelay
	}
	return RelayAuto
}

// relayReason says why a new call's media must go through the relay, ""
// when they need not. It is on every call's path: in auto mode it reads
// only the caller's audio connection address (sdp.AudioConn), no full
// parse.
//
//   - always: every call whose INVITE carries SDP or none (a late offer);
//   - auto: the caller's SDP address is not the address its SIP came from
//     (NAT, or a SIP ALG), or, for a late offer, its Contact is not; or a
//     callee's binding was registered from another address than its
//     Contact names (the callee is behind NAT). A WebRTC offer is never
//     relayed here: browsers reach each other with ICE, and a browser and
//     a plain phone need the bridge (mediaCheck).
func (p *Proxy) relayReason(req *sip.Request, d router.Decision, caller sdpKind) string {
	return p.relayReasonAt(req, d, caller, offerAddr(req, caller))
}

// offerAddr is the audio address:port of a new call's SDP offer (invalid
// when it has none, or no active audio stream): read once per call with
// sdp.AudioAddr, no full parse, for relayReasonAt and for the record of a
// call that is not relayed (unrelayedLegs).
func offerAddr(req *sip.Request, kind sdpKind) netip.AddrPort {
	if kind != sdpPlain && kind != sdpWebRTC {
		return netip.AddrPort{}
	}
	a, _ := sdp.AudioAddr(req.Body())
	return a
}

// relayReasonAt is relayReason with the offer's audio address already
// read (offerAddr).
func (p *Proxy) relayReasonAt(req *sip.Request, d router.Decision, caller sdpKind, sig netip.AddrPort) string {
	mode := p.relayMode()
	if mode == RelayNever || caller == sdpOther || caller == sdpWebRTC {
		return ""
	}
	if mode == RelayAlways {
		return "serve --media-relay always"
	}
	src := registrar.SourceAddr(req.Source())
	if caller == sdpPlain {
		if ip := sig.Addr(); sig.IsValid() && !ip.IsUnspecified() && ip != src {
			return "the caller's SDP address " + ip.String() + " is not its SIP source " + src.String() + " (NAT)"
		}
	} else if c := req.Contact(); c != nil {
		if ip, err := netip.ParseAddr(strings.Trim(c.Address.Host, "[]")); err == nil && ip.Unmap() != src {
			return "the caller's Contact " + ip.String() + " is not its SIP source " + src.String() + " (NAT; late offer)"
		}
	}
	for _, b := range d.Targets {
		if ip, from, ok := bindingNAT(b); ok {
			return "the callee's phone registered from " + from.String() + " with a Contact at " + ip.String() + " (NAT)"
		}
	}
	return ""
}

// bindingNAT reports whether binding b's Contact names an IP other than
// the one its REGISTER came from.
func bindingNAT(b store.Binding) (contact, source netip.Addr, nat bool) {
	source = registrar.SourceAddr(b.Source)
	var u sip.Uri
	if !source.IsValid() || sip.ParseUri(b.Contact, &u) != nil {
		return contact, source, false
	}
	ip, err := netip.ParseAddr(strings.Trim(u.Host, "[]"))
	if err != nil {
		return contact, source, false
	}
	return ip.Unmap(), source, ip.Unmap() != source
}

// sdpKind is what an INVITE body is, for the relay.
type sdpKind int

const (
	sdpNone   sdpKind = iota // no body: a late offer
	sdpPlain                 // an SDP offer (not a browser's)
	sdpWebRTC                // a browser's SDP offer
	sdpOther                 // a body that is no SDP (not relayed)
)

// bodyKind classifies an INVITE's body.
func bodyKind(req *sip.Request) sdpKind {
	body := req.Body()
	if len(body) == 0 {
		return sdpNone
	}
	if h := req.ContentType(); h != nil && !strings.EqualFold(strings.TrimSpace(strings.SplitN(h.Value(), ";", 2)[0]), "application/sdp") {
		return sdpOther
	}
	if !bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("v=")) {
		return sdpOther
	}
	if bytes.Contains(body, []byte("a=fingerprint:")) || bytes.Contains(body, []byte("UDP/TLS/RTP/SAVPF")) {
		return sdpWebRTC
	}
	return sdpPlain
}

// planMedia decides whether a new call's media go through the relay
// (relayReason) and, when they do, opens its relay session and rewrites
// the caller's offer for the callee(s): every branch of a fork gets the
// same body, pointing at the callee-facing leg. It returns the call's
// media (nil: not relayed) and the offer to forward (nil: the INVITE's
// own). A refusal is a cause and detail for the caller: the port range
// exhausted (media_ports_exhausted, 503) or an SDP offer the relay cannot
// read (400, bad_request).
//
// The WebRTC bridge decides here too: today a browser and a plain phone
// are refused by mediaCheck before (488 webrtc_needs_media_relay).
//
// kind and sig are the INVITE's bodyKind and offerAddr.
func (p *Proxy) planMedia(req *sip.Request, d router.Decision, kind sdpKind, sig netip.AddrPort) (m *callMedia, offer []byte, c cause.Code, detail string) {
	why := p.relayReasonAt(req, d, kind, sig)
	if why == "" {
		return nil, nil, "", ""
	}
	callID := req.CallID().Value()
	sess, c, detail := p.openSession(callID, why)
	if sess == nil {
		return nil, nil, c, detail
	}
	m = &callMedia{sess: sess, callID: callID, callerTag: tagOf(req.From().Params), why: why}
	p.relayed.Store(callID, m)
	if kind == sdpPlain {
		msg := req.Clone()
		if err := p.relaySDP(m, media.Caller, msg, registrar.SourceAddr(req.Source())); err != nil {
			p.closeMedia(m)
			return nil, nil, cause.BadRequest, "SDP offer refused by the media relay: " + err.Error()
		}
		offer = msg.Body()
	}
	return m, offer, "", ""
}

// relaySDP rewrites the SDP body of msg (a copy the proxy sends on), which
// party from sent from SIP source src: from's leg gets the party's media
// address (SetPeer), and the body gets the address of the other leg, the
// one the receiver must send to. A body that is no SDP, or has no active
// audio stream (audio disabled, e.g. a video-only re-INVITE), is left as
// it is. The same body again (a retransmission) gets the same rewrite
// without touching latching. Errors: an SDP the relay cannot read.
//
// The WebRTC bridge plugs in here: a side whose SDP is a browser's gets
// the bridge's SDP instead of a rewrite.
func (p *Proxy) relaySDP(m *callMedia, from media.Side, msg sip.Message, src netip.Addr) error {
	body := msg.Body()
	if len(body) == 0 {
		return nil
	}
	if hs := msg.GetHeaders("Content-Type"); len(hs) > 0 && !strings.EqualFold(strings.TrimSpace(strings.SplitN(hs[0].Value(), ";", 2)[0]), "application/sdp") {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	if l := m.last[from]; l.in != nil && bytes.Equal(l.in, body) {
		msg.SetBody(l.out)
		return nil
	}
	s, err := sdp.Parse(body)
	if err != nil {
		return err
	}
	a := s.Audio()
	if a == nil {
		return nil
	}
	if m.bridge != nil {
		return p.bridgeSDP(m, from, msg, a, src)
	}
	peer := media.Peer{RTP: a.Addr(), RTCPMux: a.RTCPMux, SIPSource: src}
	if a.RTCPPort != 0 {
		peer.RTCP = a.RTCP()
	}
	leg := m.sess.Leg(from)
	leg.SetPeer(peer)
	for _, c := range a.Codecs {
		if c.Rate != 8000 {
			leg.SetClockRate(c.PT, c.Rate)
		}
	}
	to := m.sess.Leg(other(from))
	out, err := sdp.Rewrite(body, to.Addr(), to.RTCPPort())
	if err != nil {
		return err
	}
	m.codecs[from], m.webrtc[from] = a.Codecs, a.WebRTC()
	m.last[from] = rewritten{in: bytes.Clone(body), out: out}
	msg.SetBody(out)
	m.sess.Touch()
	return nil
}

// relayBody rewrites the SDP of msg, a copy about to be sent on for the
// call callID, when the call's media are relayed; fromCaller says which
// party sent it. A body the relay cannot read is sent on as it is (the
// receiver answers it) and logged.
func (p *Proxy) relayBody(callID string, fromCaller bool, msg sip.Message, src netip.Addr) {
	m := p.mediaOf(callID)
	if m == nil || len(msg.Body()) == 0 {
		return
	}
	side := media.Callee
	if fromCaller {
		side = media.Caller
	}
	if err := p.relaySDP(m, side, msg, src); err != nil {
		p.log.Info("proxy: media relay: SDP not rewritten", "call_id", callID, "from", side.String(), "error", err)
	}
}

// responseFromCaller reports whether the response res (to a request of
// the call m) was sent by the caller: the request's From tag is not the
// caller's.
func responseFromCaller(m *callMedia, res *sip.Response) bool {
	return res.From() != nil && tagOf(res.From().Params) != m.callerTag
}

// relayResponse rewrites the SDP of res, a copy of a response about to be
// relayed, when its call's media are relayed.
func (p *Proxy) relayResponse(res *sip.Response) {
	if p.d.Media == nil || res.CallID() == nil || len(res.Body()) == 0 {
		return
	}
	m := p.mediaOf(res.CallID().Value())
	if m == nil {
		return
	}
	p.relayBody(m.callID, responseFromCaller(m, res), res, registrar.SourceAddr(res.Source()))
}

// closeMedia closes the relay session of a call (idempotent) and returns
// its final stats as call record legs.
func (p *Proxy) closeMedia(m *callMedia) []store.MediaLeg {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		m.final = m.sess.Close()
	}
	final := m.final
	m.mu.Unlock()
	p.relayed.CompareAndDelete(m.callID, m)
	return m.legs(final)
}

// legs converts the relay's final stats into call record legs.
func (m *callMedia) legs(st [2]media.LegStats) []store.MediaLeg {
	m.mu.Lock()
	codec := voiceCodec(m.codecs[media.Callee])
	if codec == "" {
		codec = voiceCodec(m.codecs[media.Caller])
	}
	webrtc := m.webrtc
	m.mu.Unlock()
	out := make([]store.MediaLeg, 2)
	for i, s := range st {
		dtls := ""
		if m.bridge != nil && media.Side(i) == m.browser {
			dtls = m.bridge.Reached()
		}
		out[i] = store.MediaLeg{DTLS: dtls, Side: media.Side(i).String(), Relayed: true, WebRTC: webrtc[i], Codec: codec,
			SignalledAddr: addrPort(s.Signalled), SIPSource: addr(s.SIPSource), LatchedAddr: addrPort(s.Latched),
			PacketsIn: s.PacketsIn, BytesIn: s.BytesIn, PacketsOut: s.PacketsOut, BytesOut: s.BytesOut,
			FirstPacketIn: s.FirstIn, LastPacketIn: s.LastIn, Lost: s.Lost, JitterMS: s.JitterMS, MOS: s.MOS,
			Stray: s.Stray, StraySource: addrPort(s.StraySource), Malformed: s.Malformed}
	}
	return out
}

// unrelayedLegs are the call record legs of an answered call whose media
// are not relayed: one per side, Relayed false and no counters, with the
// audio address each party's SDP names and the address its SIP came from,
// so that the doctor can tell a party behind NAT (its SDP address is not
// its SIP source, the rule relayReason applies in auto mode). callerSig is
// the offer's address (offerAddr; invalid for a late offer, whose answer
// comes in the ACK), answer the body of the callee's 2xx (its answer, or
// its offer for a late offer). It reads the answer with sdp.AudioAddr
// only: no full SDP parse, so no codec. A call with no audio address on
// either side (no SDP yet) records no legs.
func unrelayedLegs(callerSig netip.AddrPort, callerSrc netip.Addr, callerWebRTC bool, answer []byte, calleeSrc netip.Addr) []store.MediaLeg {
	var calleeSig netip.AddrPort
	if len(answer) > 0 {
		calleeSig, _ = sdp.AudioAddr(answer)
	}
	if !callerSig.IsValid() && !calleeSig.IsValid() {
		return nil // no SDP with audio on either side: nothing to tell
	}
	return []store.MediaLeg{
		{Side: media.Caller.String(), WebRTC: callerWebRTC, SignalledAddr: addrPort(callerSig), SIPSource: addr(callerSrc)},
		{Side: media.Callee.String(), SignalledAddr: addrPort(calleeSig), SIPSource: addr(calleeSrc)},
	}
}

func voiceCodec(cs []sdp.Codec) string {
	for _, c := range cs {
		if sdp.Voice([]sdp.Codec{c}) {
			return c.String()
		}
	}
	return ""
}

func addrPort(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func addr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// codecMismatch is the cause, detail and Warning header of a call refused
// because its two sides share no voice codec: 488 media_codec_mismatch,
// naming what each side offered (for the WebRTC bridge, and any check
// that finds no common codec before the call is answered).
func (p *Proxy) codecMismatch(caller, callee []sdp.Codec) (cause.Code, string, sip.Header) {
	names := func(cs []sdp.Codec) string {
		if len(cs) == 0 {
			return "none"
		}
		out := make([]string, len(cs))
		for i, c := range cs {
			out[i] = c.String()
		}
		return strings.Join(out, " ")
	}
	detail := "no common audio codec: the caller offered " + names(caller) + ", the callee " + names(callee)
	return cause.MediaCodecMismatch, detail, sip.NewHeader("Warning", `305 `+p.host+` "`+detail+`"`)
}

// MediaTimeout ends the call whose relay session s timed out (no media
// from either party for serve --media-timeout; its ports are already
// released): a BYE to each party with Reason media_timeout, and the call
// record ends with cause media_timeout, hung up by the server. Install it
// as media.Config.OnTimeout.
func (p *Proxy) MediaTimeout(s *media.Session) {
	m := p.mediaOf(s.CallID())
	if m == nil || m.sess != s {
		return
	}
	d := p.dialogs.findAnswered(s.CallID())
	if d == nil {
		// Not answered (still ringing): the fork ends it and closes the
		// session's record; nothing to hang up yet.
		p.log.Info("proxy: media timeout of a call not answered", "call_id", s.CallID())
		return
	}
	if !p.dialogs.remove(d, p.now()) {
		return
	}
	p.endDialog(d, cause.MediaTimeout, calls.ByServer, "no media from either party for "+p.timeoutText()+"; hung up by the server")
	reason := cause.ReasonHeader(cause.MediaTimeout)
	d.mu.Lock()
	toCallee := p.byeFor(d, &d.caller, &d.callee, reason)
	toCaller := p.byeFor(d, &d.callee, &d.caller, reason)
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, b := range []*sip.Request{toCallee, toCaller} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.sendBye(context.Background(), b)
		}()
	}
	wg.Wait()
}

func (p *Proxy) timeoutText() string {
	if p.cfg.MediaTimeout > 0 {
		return p.cfg.MediaTimeout.String()
	}
	return "--media-timeout"
}

// causeWarning returns the Warning header (RFC 3261 §20.43) that explains
// a media relay refusal in words a softphone's log shows; nil for other
// causes.
func (p *Proxy) causeWarning(c cause.Code, detail string) []sip.Header {
	code := "399"
	switch c {
	case cause.MediaCodecMismatch:
		code = "305"
	case cause.MediaPortsExhausted:
	case cause.BadRequest:
		if !strings.HasPrefix(detail, "SDP offer refused") {
			return nil
		}
	default:
		return nil
	}
	detail = strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < ' ' {
			return '\''
		}
		return r
	}, detail)
	if len(detail) > 300 {
		detail = detail[:300] + "..."
	}
	return []sip.Header{sip.NewHeader("Warning", code+" "+p.host+` "`+detail+`"`)}
}

// codecRefusal explains a callee's 488 to a relayed call: the callee took
// none of the caller's codecs. res (the 488 for the caller) gets a Warning
// naming the codecs of the caller's offer and those of the SDP in the
// callee's 488 (RFC 3261 §21.4.26: it should describe what the callee
// supports; "none" when it has none). It returns media_codec_mismatch.
func (p *Proxy) codecRefusal(m *callMedia, calleeRes, res *sip.Response) cause.Code {
	var callee []sdp.Codec
	if s, err := sdp.Parse(calleeRes.Body()); err == nil {
		if a := s.Audio(); a != nil {
			callee = a.Codecs
		}
	}
	m.mu.Lock()
	caller := m.codecs[media.Caller]
	m.mu.Unlock()
	c, _, warn := p.codecMismatch(caller, callee)
	if res.GetHeader("Warning") == nil {
		res.AppendHeader(warn)
	}
	return c
}

// openSession opens the relay session of call callID, relayed because why.
// On failure it returns nil with the cause and detail to refuse the call
// with: MediaPortsExhausted (503) when the port range is full, else
// TemporaryFailure.
func (p *Proxy) openSession(callID, why string) (*media.Session, cause.Code, string) {
	sess, err := p.d.Media.Open(callID)
	if err == nil {
		return sess, "", ""
	}
	if errors.Is(err, media.ErrPortsExhausted) {
		return nil, cause.MediaPortsExhausted, fmt.Sprintf("the media relay has no free port pair left in --rtp-ports "+
			"(%d ports in use; relayed because %s): raise --rtp-ports or lower the concurrent calls", p.d.Media.PortsInUse(), why)
	}
	return nil, cause.TemporaryFailure, "media relay: " + err.Error()
}
