package proxy

// WebRTC <-> plain RTP bridging (package wrtc) for calls between a browser and a SIP phone
// while the media relay is on (serve --media-relay auto or always; with never, mediaCheck's
// 488 webrtc_needs_media_relay stands).
//
// The browser's leg of the relay session is handed to a wrtc.Bridge (ICE-lite, DTLS-SRTP,
// rtcp-mux on the leg's own port); the phone's leg stays plain RTP. SDP:
//
//   - browser calls phone: the browser's offer goes to the phone as a plain RTP/AVP offer
//     (its PCMU/PCMA/telephone-event, pointing at the phone's leg); the phone's answer goes
//     back as the bridge's WebRTC answer;
//   - phone calls browser: the phone's offer goes to the browser as the bridge's WebRTC
//     offer; the browser's answer goes back to the phone as a plain answer.
//
// The browser always gets the bridge's one SDP and the phone the last plain one: a
// re-negotiation (re-INVITE, UPDATE) keeps the media as first negotiated (the phone's new
// address is learnt; a browser's new offer is answered with the first one).

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/media"
	wrtc "github.com/switchboard-pbx/switchboard/internal/media/webrtc"
	"github.com/switchboard-pbx/switchboard/internal/registrar"
	"github.com/switchboard-pbx/switchboard/internal/router"
	"github.com/switchboard-pbx/switchboard/internal/sdp"
)

// bridgeable reports whether a call mediaCheck refused (browser <-> plain phone) can go
// through the WebRTC bridge instead: the relay is on and the INVITE carries an SDP offer
// (a late offer is not bridged).
func (p *Proxy) bridgeable(req *sip.Request) bool {
	if p.bridge == nil || p.relayMode() == RelayNever {
		return false
	}
	k := bodyKind(req)
	return k == sdpWebRTC || k == sdpPlain
}

// bridgeCodecs are what the bridge carries, for messages.
var bridgeCodecs = []sdp.Codec{{PT: 0, Name: "PCMU", Rate: 8000}, {PT: 8, Name: "PCMA", Rate: 8000}}

// planBridge opens the relay session of a browser <-> phone call, starts its bridge and
// returns the offer for the callee(s): a plain offer for phones when the browser calls,
// the bridge's WebRTC offer for browsers when a phone calls. Refusals: 503
// media_ports_exhausted, 488 media_codec_mismatch (no PCMU/PCMA on the offering side),
// 400 for an offer the relay cannot read.
func (p *Proxy) planBridge(req *sip.Request, d router.Decision) (m *callMedia, offer []byte, c cause.Code, detail string) {
	body := req.Body()
	s, err := sdp.Parse(body)
	if err != nil {
		return nil, nil, cause.BadRequest, "SDP offer refused by the media relay: " + err.Error()
	}
	a := s.Audio()
	if a == nil {
		return nil, nil, cause.BadRequest, "SDP offer refused by the media relay: " + sdp.ErrNoAudio.Error()
	}
	browserCalls := bodyKind(req) == sdpWebRTC
	why := "a WebRTC browser and a plain-RTP phone: bridged (DTLS-SRTP to the browser, RTP to the phone)"
	callID := req.CallID().Value()
	sess, c, detail := p.openSession(callID, why)
	if sess == nil {
		return nil, nil, c, detail
	}
	m = &callMedia{sess: sess, callID: callID, callerTag: tagOf(req.From().Params), why: why, sdpID: sdpSessionID(callID)}
	src := registrar.SourceAddr(req.Source())
	caller := sess.Leg(media.Caller)
	caller.SetPeer(peerOf(a, src))
	fail := func(err error, offered []sdp.Codec) (*callMedia, []byte, cause.Code, string) {
		sess.Close()
		if errors.Is(err, wrtc.ErrNoCommonCodec) {
			d := "no common audio codec: the caller offered " + codecList(offered) + "; the WebRTC bridge carries " +
				codecList(bridgeCodecs) + " without transcoding"
			return nil, nil, cause.MediaCodecMismatch, d
		}
		return nil, nil, cause.BadRequest, "SDP offer refused by the WebRTC bridge: " + err.Error()
	}
	if browserCalls {
		b, codecs, err := p.bridge.FromBrowser(caller, body)
		if err != nil {
			return fail(err, a.Codecs)
		}
		m.bridge, m.browser = b, media.Caller
		offer = sdp.Plain(sess.Leg(media.Callee).Addr(), codecs, a.Dir, m.sdpID)
		m.plain = offer
	} else {
		setClockRates(caller, a.Codecs)
		b, o, err := p.bridge.ToBrowser(sess.Leg(media.Callee), a.Codecs)
		if err != nil {
			return fail(err, a.Codecs)
		}
		m.bridge, m.browser = b, media.Callee
		offer = o
	}
	m.codecs[media.Caller], m.webrtc[media.Caller] = a.Codecs, browserCalls
	m.webrtc[media.Callee] = !browserCalls
	m.last[media.Caller] = rewritten{in: append([]byte(nil), body...), out: offer}
	p.relayed.Store(callID, m)
	return m, offer, "", ""
}

// bridgeSDP is relaySDP for a bridged call (m.mu held): the SDP a party sent becomes the
// SDP the other party needs (see the comment at the top of this file).
func (p *Proxy) bridgeSDP(m *callMedia, from media.Side, msg sip.Message, a *sdp.Media, src netip.Addr) error {
	body := msg.Body()
	leg := m.sess.Leg(from)
	var out []byte
	if from == m.browser {
		leg.SetPeer(peerOf(a, src)) // for the call record (the bridge ignores it)
		if from == media.Callee {
			codecs, err := m.bridge.BrowserAnswered(body)
			if err != nil {
				return fmt.Errorf("WebRTC bridge: %w", err)
			}
			m.plain = sdp.Plain(m.sess.Leg(media.Caller).Addr(), codecs, a.Dir, m.sdpID)
		}
		out = m.plain
	} else {
		leg.SetPeer(peerOf(a, src))
		setClockRates(leg, a.Codecs)
		if from == media.Callee {
			if _, err := m.bridge.AnswerBrowser(a.Codecs); err != nil {
				return fmt.Errorf("WebRTC bridge: %w", err)
			}
		}
		out = m.bridge.LocalSDP()
	}
	if out == nil {
		return errors.New("WebRTC bridge: no SDP for the other party yet")
	}
	m.codecs[from] = a.Codecs
	m.last[from] = rewritten{in: append([]byte(nil), body...), out: out}
	msg.SetBody(out)
	m.sess.Touch()
	return nil
}

func peerOf(a *sdp.Media, src netip.Addr) media.Peer {
	peer := media.Peer{RTP: a.Addr(), RTCPMux: a.RTCPMux, SIPSource: src}
	if a.RTCPPort != 0 {
		peer.RTCP = a.RTCP()
	}
	return peer
}

func setClockRates(l *media.Leg, cs []sdp.Codec) {
	for _, c := range cs {
		if c.Rate != 8000 {
			l.SetClockRate(c.PT, c.Rate)
		}
	}
}

func codecList(cs []sdp.Codec) string {
	if len(cs) == 0 {
		return "none"
	}
	out := ""
	for i, c := range cs {
		if i > 0 {
			out += " "
		}
		out += c.String()
	}
	return out
}

// sdpSessionID is the o= id and version of the plain SDP the bridge sends a phone: fixed
// for the call, so that a repeated body reads as unchanged.
func sdpSessionID(callID string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(callID))
	return h.Sum64() >> 2
}
