// Package sdpkind tells a WebRTC media offer (DTLS-SRTP with ICE, as every
// browser sends) from a plain RTP one (a desk phone or softphone: RTP/AVP,
// or SDES-keyed RTP/SAVP), and decides whether two endpoints can exchange
// media directly. A browser and a plain-RTP phone cannot hear each other
// without the media relay's WebRTC bridge (the browser insists on ICE and
// DTLS-SRTP, the phone speaks neither), so without it (--media-relay never,
// or a late offer) the proxy refuses such a call with 488 instead of
// letting it connect in silence.
//
// The package is pure logic on the SDP text: no I/O, no allocation (about
// 1-2 us for a browser's offer, BenchmarkClassify), and any input (garbage
// included) gets an answer, never a panic.
package sdpkind

import (
	"bytes"
	"strings"
)

// Kind is the media flavour of an offer or of an endpoint.
type Kind int

const (
	// Unknown: no SDP (a late offer), not SDP, or no active audio/video
	// stream. Nothing is decided on it: the proxy then takes the caller's
	// kind from the transport it came over (Endpoint).
	Unknown Kind = iota
	// Plain: RTP/AVP(F) or RTP/SAVP(F) without a DTLS fingerprint: what
	// SIP phones send.
	Plain
	// WebRTC: DTLS-SRTP (a UDP/TLS/RTP/SAVPF or TCP/DTLS/RTP/SAVPF
	// profile, or an a=fingerprint), as browsers send; needs ICE.
	WebRTC
)

// String returns "unknown", "plain RTP" or "WebRTC".
func (k Kind) String() string {
	switch k {
	case Plain:
		return "plain RTP"
	case WebRTC:
		return "WebRTC"
	}
	return "unknown"
}

// MaxBody is the largest SDP Classify reads; past it the rest is ignored
// (a browser offer with video is about 6 KB).
const MaxBody = 64 << 10

// Classify returns the kind of an SDP body. contentType is the message's
// Content-Type ("" is taken as application/sdp when the body starts like
// SDP). An active stream (m= line with a non-zero port) decides: any
// DTLS profile, or an a=fingerprint at session or media level with a
// secure profile, makes it WebRTC; RTP/AVP, RTP/AVPF or SDES RTP/SAVP(F)
// make it Plain. Bodies of other types, or with no active audio or video
// stream, are Unknown.
func Classify(contentType string, body []byte) Kind {
	if ct := mediaType(contentType); ct != "" && ct != "application/sdp" {
		return Unknown
	}
	if len(body) > MaxBody {
		body = body[:MaxBody]
	}
	if !bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("v=")) {
		return Unknown
	}
	var (
		sessionFP bool // a=fingerprint before the first m=
		inMedia   bool
		active    bool // the current m= line is audio/video with a port
		mediaFP   bool
		proto     []byte
		plain     bool
		webrtc    bool
	)
	closeMedia := func() {
		if !inMedia || !active {
			return
		}
		switch {
		case containsFold(proto, "DTLS") || hasPrefixFold(proto, "UDP/TLS/") || hasPrefixFold(proto, "TCP/TLS/"):
			webrtc = true
		case (equalFold(proto, "RTP/SAVPF") || equalFold(proto, "RTP/SAVP")) && (mediaFP || sessionFP):
			webrtc = true
		case equalFold(proto, "RTP/AVP") || equalFold(proto, "RTP/AVPF") || equalFold(proto, "RTP/SAVP") || equalFold(proto, "RTP/SAVPF"):
			plain = true
		}
	}
	for len(body) > 0 {
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		line = bytes.TrimRight(line, "\r \t")
		switch {
		case bytes.HasPrefix(line, []byte("m=")):
			closeMedia()
			inMedia, mediaFP = true, false
			active, proto = parseM(line[2:])
		case bytes.HasPrefix(line, []byte("a=fingerprint:")):
			if inMedia {
				mediaFP = true
			} else {
				sessionFP = true
			}
		}
	}
	closeMedia()
	switch {
	case webrtc:
		return WebRTC
	case plain:
		return Plain
	}
	return Unknown
}

// parseM reads "audio 49170 RTP/AVP 0 8": active is true for an audio or
// video stream with a non-zero port. proto aliases s.
func parseM(s []byte) (active bool, proto []byte) {
	media, rest := field(s)
	port, rest := field(rest)
	proto, _ = field(rest)
	if len(proto) == 0 {
		return false, nil
	}
	if !equalFold(media, "audio") && !equalFold(media, "video") {
		return false, proto
	}
	if i := bytes.IndexByte(port, '/'); i >= 0 { // "49170/2"
		port = port[:i]
	}
	n := 0
	for _, c := range port {
		if c < '0' || c > '9' || n > 65535 {
			return false, proto
		}
		n = n*10 + int(c-'0')
	}
	return len(port) > 0 && n > 0, proto
}

// field returns the first space-separated field of s and what follows it.
func field(s []byte) (f, rest []byte) {
	s = bytes.TrimLeft(s, " \t")
	if i := bytes.IndexAny(s, " \t"); i >= 0 {
		return s[:i], s[i:]
	}
	return s, nil
}

// equalFold, hasPrefixFold and containsFold compare ASCII case-insensitively
// without allocating.
func equalFold(b []byte, s string) bool { return len(b) == len(s) && hasPrefixFold(b, s) }

func hasPrefixFold(b []byte, s string) bool {
	if len(b) < len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if upper(b[i]) != upper(s[i]) {
			return false
		}
	}
	return true
}

func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if hasPrefixFold(b[i:], s) {
			return true
		}
	}
	return false
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// mediaType returns the lower-case type/subtype of a Content-Type value.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// Endpoint returns the kind of media an endpoint registered over transport
// can take: WebRTC for WebSocket (WS, WSS: RFC 7118 clients are browsers),
// Plain for UDP, TCP and TLS phones.
func Endpoint(transport string) Kind {
	switch strings.ToUpper(transport) {
	case "WS", "WSS":
		return WebRTC
	}
	return Plain
}

// Compatible reports whether an offer of kind offer can reach an endpoint
// of kind target without a media relay. Unknown on either side is
// compatible: there is nothing to decide on. (For a late offer, answered
// in the 2xx whose SDP the proxy does not read, the proxy passes the
// caller's Endpoint kind instead of Unknown.)
func Compatible(offer, target Kind) bool {
	return offer == Unknown || target == Unknown || offer == target
}

// Why says in one sentence why an offer of kind offer cannot reach an
// endpoint of kind target; "" when Compatible.
func Why(offer, target Kind) string {
	switch {
	case Compatible(offer, target):
		return ""
	case offer == WebRTC:
		return "the caller is a WebRTC browser (DTLS-SRTP and ICE) and the callee a plain-RTP phone: they can only hear each other through the media relay's WebRTC bridge (off with --media-relay never; an INVITE without SDP is not bridged)"
	default:
		return "the caller is a plain-RTP phone and the callee a WebRTC browser (DTLS-SRTP and ICE): they can only hear each other through the media relay's WebRTC bridge (off with --media-relay never; an INVITE without SDP is not bridged)"
	}
}
