package wrtc

import (
	"net"
	"net/netip"

	"github.com/switchboard-pbx/switchboard/internal/media"
	"github.com/switchboard-pbx/switchboard/internal/sdp"
)

// The bridge is the relay's Endpoint for the browser's leg.
var _ media.Endpoint = (*Bridge)(nil)

// relayLeg adapts *media.Leg: its RTP socket becomes the browser's ICE/DTLS/SRTP socket.
type relayLeg struct{ l *media.Leg }

func (r relayLeg) external(b *Bridge) net.PacketConn { return r.l.External(b) }
func (r relayLeg) receive(pkt []byte, rtcp bool)     { r.l.Receive(pkt, rtcp) }
func (r relayLeg) advertised() netip.Addr            { return r.l.Addr().Addr() }

// FromBrowser starts the bridge of a call a browser offered (offer: the SDP of its
// INVITE); leg is the relay leg facing the browser, which the bridge takes over. It
// returns the codecs for the plain offer to the phone: the PCMU, PCMA and telephone-event
// entries of the browser's offer, in its order and numbering. When the browser offered
// none of PCMU/PCMA the error wraps ErrNoCommonCodec and names its codecs; on any error
// the leg is left as it was (or, after it was taken, released with the session).
func (g *Gateway) FromBrowser(leg *media.Leg, offer []byte) (*Bridge, []sdp.Codec, error) {
	b, cs, err := g.fromBrowser(relayLeg{leg}, offer)
	return b, toSDP(cs), err
}

// AnswerBrowser returns the SDP answer for the browser (for the 2xx to its INVITE) once the
// phone answered with chosen (the codecs of its answer, its numbering). The DTLS handshake
// timer starts here. No shared voice codec: an error wrapping ErrNoCommonCodec that names
// both sides' codecs.
func (b *Bridge) AnswerBrowser(chosen []sdp.Codec) ([]byte, error) {
	return b.answerBrowser(fromSDP(chosen))
}

// ToBrowser starts the bridge of a call a phone offered to a browser: codecs are the
// phone's offer (its numbering); the returned SDP is the WebRTC offer for the browser
// (ICE-lite, DTLS actpass, rtcp-mux, the phone's PCMU/PCMA/telephone-event under the
// phone's payload types). No PCMU/PCMA in codecs: an error wrapping ErrNoCommonCodec.
func (g *Gateway) ToBrowser(leg *media.Leg, codecs []sdp.Codec) (*Bridge, []byte, error) {
	return g.toBrowser(relayLeg{leg}, fromSDP(codecs))
}

// BrowserAnswered applies the browser's SDP answer and returns the codecs it accepted, in
// the phone's numbering, for the answer to the phone. The DTLS handshake timer starts
// here.
func (b *Bridge) BrowserAnswered(answer []byte) ([]sdp.Codec, error) {
	b.mu.Lock()
	done := b.answer
	b.mu.Unlock()
	if done != nil {
		return done, nil // already applied (a 18x and then the 2xx, or a retransmission)
	}
	cs, err := b.browserAnswered(answer)
	if err != nil {
		return nil, err
	}
	out := toSDP(cs)
	b.mu.Lock()
	b.answer = out
	b.mu.Unlock()
	return out, nil
}

func toSDP(cs []codec) []sdp.Codec {
	if cs == nil {
		return nil
	}
	out := make([]sdp.Codec, len(cs))
	for i, c := range cs {
		out[i] = sdp.Codec{PT: c.PT, Name: c.Name, Rate: c.Rate, Channels: c.Channels, Fmtp: c.Fmtp}
	}
	return out
}

func fromSDP(cs []sdp.Codec) []codec {
	out := make([]codec, len(cs))
	for i, c := range cs {
		out[i] = codec{PT: c.PT, Name: c.Name, Rate: c.Rate, Channels: c.Channels, Fmtp: c.Fmtp}
	}
	return out
}
