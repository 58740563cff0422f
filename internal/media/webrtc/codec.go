package wrtc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	psdp "github.com/pion/sdp/v3"
)

// ErrNoCommonCodec is returned (wrapped, with the codecs each side offered) when the two
// sides share no codec the bridge can pass through (PCMU, PCMA; the bridge never
// transcodes). The proxy answers 488 media_codec_mismatch.
var ErrNoCommonCodec = errors.New("no common codec (the WebRTC bridge passes PCMU and PCMA through, it does not transcode)")

// codec is one RTP payload format as an SDP rtpmap line describes it. Its fields match
// sdp.Codec (internal/sdp); wrtc converts at its API edge.
type codec struct {
	PT       uint8
	Name     string
	Rate     int
	Channels int
	Fmtp     string
}

// key is the identity of a codec across the two sides' numbering: name (case folded) and
// clock rate. Payload type numbers differ between sides, names do not.
func (c codec) key() string { return strings.ToLower(c.Name) + "/" + strconv.Itoa(c.Rate) }

func (c codec) String() string {
	s := c.Name + "/" + strconv.Itoa(c.Rate)
	if c.Channels > 1 {
		s += "/" + strconv.Itoa(c.Channels)
	}
	return s
}

// passable reports whether the bridge can carry c without transcoding: G.711 at 8 kHz
// mono and RFC 4733 telephone-event at 8 kHz.
func passable(c codec) bool {
	if c.Rate != 8000 || c.Channels > 1 {
		return false
	}
	switch strings.ToLower(c.Name) {
	case "pcmu", "pcma", "telephone-event":
		return true
	}
	return false
}

// filterPassable keeps the passable codecs in order; ok is false when no audio codec (as
// opposed to telephone-event alone) remains.
func filterPassable(in []codec) (out []codec, ok bool) {
	for _, c := range in {
		if !passable(c) {
			continue
		}
		out = append(out, c)
		if !strings.EqualFold(c.Name, "telephone-event") {
			ok = true
		}
	}
	return out, ok
}

// names lists codecs as "PCMU/8000 opus/48000/2" for error messages (the Reason of a 488).
func names(cs []codec) string {
	if len(cs) == 0 {
		return "(none)"
	}
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		parts = append(parts, c.String())
	}
	return strings.Join(parts, " ")
}

// staticCodecs are the static payload types of RFC 3551 an offer may use without rtpmap.
var staticCodecs = map[uint8]codec{
	0: {PT: 0, Name: "PCMU", Rate: 8000},
	8: {PT: 8, Name: "PCMA", Rate: 8000},
}

// audioCodecs returns the codecs of the first active audio m= line of an SDP body, in
// order, and whether that line is WebRTC (DTLS fingerprint and ICE credentials present).
func audioCodecs(body []byte) ([]codec, bool, error) {
	var sd psdp.SessionDescription
	if err := sd.Unmarshal(body); err != nil {
		return nil, false, fmt.Errorf("parse SDP: %w", err)
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "audio" || md.MediaName.Port.Value == 0 {
			continue
		}
		rtpmap := map[uint8]codec{}
		fmtp := map[uint8]string{}
		for _, a := range md.Attributes {
			switch a.Key {
			case "rtpmap":
				if c, ok := parseRtpmap(a.Value); ok {
					rtpmap[c.PT] = c
				}
			case "fmtp":
				pt, rest, ok := strings.Cut(a.Value, " ")
				if n, err := strconv.ParseUint(pt, 10, 7); ok && err == nil {
					fmtp[uint8(n)] = strings.TrimSpace(rest)
				}
			}
		}
		var out []codec
		for _, f := range md.MediaName.Formats {
			n, err := strconv.ParseUint(f, 10, 7)
			if err != nil {
				continue
			}
			pt := uint8(n)
			c, ok := rtpmap[pt]
			if !ok {
				c, ok = staticCodecs[pt]
			}
			if !ok {
				continue
			}
			c.Fmtp = fmtp[pt]
			out = append(out, c)
		}
		_, fp := md.Attribute("fingerprint")
		if !fp {
			_, fp = sd.Attribute("fingerprint")
		}
		_, ufrag := md.Attribute("ice-ufrag")
		if !ufrag {
			_, ufrag = sd.Attribute("ice-ufrag")
		}
		return out, fp && ufrag, nil
	}
	return nil, false, errors.New("parse SDP: no active audio m= line")
}

// parseRtpmap reads "96 telephone-event/8000[/1]".
func parseRtpmap(v string) (codec, bool) {
	pt, enc, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok {
		return codec{}, false
	}
	n, err := strconv.ParseUint(pt, 10, 7)
	if err != nil {
		return codec{}, false
	}
	parts := strings.Split(strings.TrimSpace(enc), "/")
	if len(parts) < 2 || parts[0] == "" {
		return codec{}, false
	}
	rate, err := strconv.Atoi(parts[1])
	if err != nil || rate <= 0 {
		return codec{}, false
	}
	c := codec{PT: uint8(n), Name: parts[0], Rate: rate}
	if len(parts) > 2 {
		if ch, err := strconv.Atoi(parts[2]); err == nil {
			c.Channels = ch
		}
	}
	return c, true
}

// ptMap translates payload type numbers between the phone's and the browser's numbering by
// codec name and rate. A packet's PT is looked up first in its sender's table, then in the
// other (implementations often send with their own numbering instead of the receiver's);
// the PT written is the one the receiver declared. Unknown PTs are dropped.
type ptMap struct {
	phone, browser [128]string      // PT -> key, "" when not negotiated
	toPhone        map[string]uint8 // key -> PT the phone declared
	toBrowser      map[string]uint8 // key -> PT the browser declared
	_              struct{}         // not comparable
}

func newPTMap(phone, browser []codec) *ptMap {
	m := &ptMap{toPhone: map[string]uint8{}, toBrowser: map[string]uint8{}}
	for _, c := range phone {
		if c.PT < 128 && m.phone[c.PT] == "" {
			m.phone[c.PT] = c.key()
		}
		if _, dup := m.toPhone[c.key()]; !dup {
			m.toPhone[c.key()] = c.PT
		}
	}
	for _, c := range browser {
		if c.PT < 128 && m.browser[c.PT] == "" {
			m.browser[c.PT] = c.key()
		}
		if _, dup := m.toBrowser[c.key()]; !dup {
			m.toBrowser[c.key()] = c.PT
		}
	}
	return m
}

// forBrowser maps the PT of a packet the phone sent; ok is false to drop it.
func (m *ptMap) forBrowser(pt uint8) (uint8, bool) {
	k := m.phone[pt&0x7f]
	if k == "" {
		k = m.browser[pt&0x7f]
	}
	out, ok := m.toBrowser[k]
	return out, ok && k != ""
}

// forPhone maps the PT of a packet the browser sent; ok is false to drop it.
func (m *ptMap) forPhone(pt uint8) (uint8, bool) {
	k := m.browser[pt&0x7f]
	if k == "" {
		k = m.phone[pt&0x7f]
	}
	out, ok := m.toPhone[k]
	return out, ok && k != ""
}

// common returns the codecs of a (in a's order and numbering) that b also has.
func common(a, b []codec) []codec {
	have := map[string]bool{}
	for _, c := range b {
		have[c.key()] = true
	}
	var out []codec
	for _, c := range a {
		if have[c.key()] {
			out = append(out, c)
		}
	}
	return out
}
