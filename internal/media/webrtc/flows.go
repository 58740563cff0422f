package wrtc

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"
)

// fromBrowser starts a bridge for a call the browser offered: it parses the offer, takes
// the leg's socket and applies the offer. It returns the passable codecs of the offer in
// the browser's numbering (for the plain offer to the phone). Nothing is taken from leg
// when it fails.
func (g *Gateway) fromBrowser(leg phoneLeg, offer []byte) (*Bridge, []codec, error) {
	all, isWebRTC, err := audioCodecs(offer)
	if err != nil {
		return nil, nil, fmt.Errorf("wrtc: browser offer: %w", err)
	}
	if !isWebRTC {
		return nil, nil, errors.New("wrtc: browser offer has no DTLS fingerprint or ICE credentials")
	}
	pass, ok := filterPassable(all)
	if !ok {
		return nil, nil, fmt.Errorf("%w: the browser offered %s", ErrNoCommonCodec, names(all))
	}
	b := g.newBridge(leg)
	b.browser = pass
	if err := b.setup(leg.external(b), pass); err != nil {
		_ = b.Close()
		return nil, nil, err
	}
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		_ = b.Close()
		return nil, nil, fmt.Errorf("wrtc: apply browser offer: %w", err)
	}
	return b, pass, nil
}

// answerBrowser builds the SDP answer for the browser once the phone answered with
// chosen (the phone's codecs, its numbering). The answer carries the codecs both share,
// in the phone's order, with the browser's payload types.
func (b *Bridge) answerBrowser(chosen []codec) ([]byte, error) {
	if l := b.LocalSDP(); l != nil {
		return l, nil // already answered (a 18x and then the 2xx, or a retransmission)
	}
	phone, _ := filterPassable(chosen)
	sel := inOrderOfKeys(phone, b.browser)
	if !hasAudio(sel) {
		return nil, fmt.Errorf("%w: the browser offered %s, the phone answered %s", ErrNoCommonCodec, names(b.browser), names(chosen))
	}
	tr := b.audioTransceiver()
	if tr == nil {
		return nil, errors.New("wrtc: the browser offer has no audio transceiver")
	}
	params := make([]webrtc.RTPCodecParameters, 0, len(sel))
	for _, c := range sel {
		params = append(params, codecParams(c))
	}
	if err := tr.SetCodecPreferences(params); err != nil {
		return nil, fmt.Errorf("wrtc: codecs for the browser: %w", err)
	}
	if _, err := b.pc.AddTrack(b.track); err != nil {
		return nil, fmt.Errorf("wrtc: add phone track: %w", err)
	}
	ans, err := b.pc.CreateAnswer(nil)
	if err != nil {
		return nil, fmt.Errorf("wrtc: create answer: %w", err)
	}
	sdp, err := b.gather(ans)
	if err != nil {
		return nil, err
	}
	b.phone = phone
	b.pts.Store(newPTMap(phone, sel))
	b.mu.Lock()
	b.local = []byte(sdp)
	b.mu.Unlock()
	b.startRTCP(tr)
	b.startHandshakeTimer()
	return []byte(sdp), nil
}

// toBrowser starts a bridge for a call a phone offered to a browser: phoneCodecs is the
// phone's offer (its numbering); the returned SDP is the offer for the browser, with the
// passable codecs under the phone's payload types.
func (g *Gateway) toBrowser(leg phoneLeg, phoneCodecs []codec) (*Bridge, []byte, error) {
	pass, ok := filterPassable(phoneCodecs)
	if !ok {
		return nil, nil, fmt.Errorf("%w: the phone offered %s, a browser can be offered PCMU/8000 PCMA/8000", ErrNoCommonCodec, names(phoneCodecs))
	}
	b := g.newBridge(leg)
	b.phone = pass
	fail := func(err error) (*Bridge, []byte, error) {
		_ = b.Close()
		return nil, nil, err
	}
	if err := b.setup(leg.external(b), pass); err != nil {
		return fail(err)
	}
	if _, err := b.pc.AddTransceiverFromTrack(b.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
		return fail(fmt.Errorf("wrtc: add phone track: %w", err))
	}
	offer, err := b.pc.CreateOffer(nil)
	if err != nil {
		return fail(fmt.Errorf("wrtc: create offer: %w", err))
	}
	sdp, err := b.gather(offer)
	if err != nil {
		return fail(err)
	}
	b.mu.Lock()
	b.local = []byte(sdp)
	b.mu.Unlock()
	return b, []byte(sdp), nil
}

// browserAnswered applies the browser's answer and returns the codecs it accepted in the
// phone's numbering and the browser's order (for the answer to the phone).
func (b *Bridge) browserAnswered(answer []byte) ([]codec, error) {
	all, _, err := audioCodecs(answer)
	if err != nil {
		return nil, fmt.Errorf("wrtc: browser answer: %w", err)
	}
	pass, _ := filterPassable(all)
	browser := common(pass, b.phone)    // browser numbering and order, offered codecs only
	sel := inOrderOfKeys(pass, b.phone) // the same codecs in the phone's numbering
	if !hasAudio(sel) {
		return nil, fmt.Errorf("%w: the phone offered %s, the browser answered %s", ErrNoCommonCodec, names(b.phone), names(all))
	}
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		return nil, fmt.Errorf("wrtc: apply browser answer: %w", err)
	}
	b.browser = browser
	b.pts.Store(newPTMap(sel, browser))
	if tr := b.audioTransceiver(); tr != nil {
		b.startRTCP(tr)
	}
	b.startHandshakeTimer()
	return sel, nil
}

// inOrderOfKeys returns the codecs of from whose key is in order, in order's order and
// with from's numbering.
func inOrderOfKeys(order, from []codec) []codec {
	var out []codec
	seen := map[string]bool{}
	for _, o := range order {
		k := o.key()
		if seen[k] {
			continue
		}
		for _, f := range from {
			if f.key() == k {
				out = append(out, f)
				seen[k] = true
				break
			}
		}
	}
	return out
}

func hasAudio(cs []codec) bool {
	for _, c := range cs {
		if !strings.EqualFold(c.Name, "telephone-event") {
			return true
		}
	}
	return false
}

func codecParams(c codec) webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/" + c.Name, ClockRate: uint32(c.Rate), SDPFmtpLine: c.Fmtp},
		PayloadType:        webrtc.PayloadType(c.PT),
	}
}
