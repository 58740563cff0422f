// Package sdp reads and rewrites the SDP bodies (RFC 4566/8866) of calls
// whose media the relay anchors (package media): where a party wants its
// audio (connection address, port, RTCP port, rtcp-mux), which codecs it
// offers, and whether it is a WebRTC browser. Rewrite puts the relay's
// address into a body and leaves the rest alone; Plain builds a plain RTP
// audio body (the phone side of a WebRTC bridge).
//
// The parser is bounded and pure logic: a body larger than MaxBody, with
// more than MaxMedia media lines, more than MaxFormats payload types on a
// media line or a port outside 0-65535 is refused with an error (the proxy
// answers 488), never a panic, whatever the input.
package sdp

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Bounds of what Parse accepts.
const (
	// MaxBody is the largest body Parse reads (a browser's offer with
	// video is about 6 KB).
	MaxBody = 64 << 10
	// MaxMedia is the most m= lines a body may have.
	MaxMedia = 16
	// MaxFormats is the most payload types one m= line may list.
	MaxFormats = 64
)

// Errors of Parse (wrapped with the offending detail).
var (
	ErrTooLarge     = errors.New("SDP body too large")
	ErrTooManyMedia = errors.New("too many media lines in SDP")
	ErrBadMedia     = errors.New("malformed m= line in SDP")
	ErrNotSDP       = errors.New("not an SDP body")
	// ErrNoAudio is returned by Rewrite when the body has no active audio
	// stream to point at the relay.
	ErrNoAudio = errors.New("no active audio stream in SDP")
)

// Codec is one payload type of an audio m= line.
type Codec struct {
	PT       uint8
	Name     string // "PCMU", "PCMA", "telephone-event", "opus", "G722" (as in rtpmap, case kept)
	Rate     int
	Channels int    // 0 = 1
	Fmtp     string // value of a=fmtp for this PT, "" if none
}

// String is "PCMU/8000" (with "/2" for two channels).
func (c Codec) String() string {
	s := c.Name + "/" + strconv.Itoa(c.Rate)
	if c.Channels > 1 {
		s += "/" + strconv.Itoa(c.Channels)
	}
	return s
}

// Same reports whether c and o are the same codec: name (case-insensitive),
// rate and channel count, whatever their payload types.
func (c Codec) Same(o Codec) bool {
	return strings.EqualFold(c.Name, o.Name) && c.Rate == o.Rate && max(c.Channels, 1) == max(o.Channels, 1)
}

// Media is one m= section.
type Media struct {
	Type     string // "audio", "video", ...
	Port     int    // 0: the stream is disabled
	Proto    string // "RTP/AVP", "UDP/TLS/RTP/SAVPF", ...
	Formats  []string
	Conn     netip.Addr // the c= of the section, else the session's; invalid when none or not an IP
	RTCPPort int        // a=rtcp port; 0 when absent (then Port+1)
	RTCPAddr netip.Addr // a=rtcp address, when it has one
	RTCPMux  bool       // a=rtcp-mux
	Dir      string     // "sendrecv" (default), "sendonly", "recvonly", "inactive"
	Codecs   []Codec    // in the order of Formats (RTP profiles only)
	ICE      bool       // a=ice-ufrag or a=candidate
	DTLS     bool       // a=fingerprint (here or at session level)
}

// Active reports whether the stream is in use (a non-zero port).
func (m *Media) Active() bool { return m.Port != 0 }

// WebRTC reports whether the stream is a browser's: DTLS-SRTP (a DTLS
// profile, or a secure profile with a fingerprint), which needs ICE.
func (m *Media) WebRTC() bool {
	p := strings.ToUpper(m.Proto)
	if strings.Contains(p, "DTLS") || strings.HasPrefix(p, "UDP/TLS/") || strings.HasPrefix(p, "TCP/TLS/") {
		return true
	}
	return strings.HasPrefix(p, "RTP/SAVP") && m.DTLS
}

// Addr is where the party wants its RTP: connection address and port.
func (m *Media) Addr() netip.AddrPort { return netip.AddrPortFrom(m.Conn, uint16(m.Port)) }

// RTCP is where the party wants its RTCP: a=rtcp, else port+1 (the RTP
// address itself with rtcp-mux).
func (m *Media) RTCP() netip.AddrPort {
	ip := m.Conn
	if m.RTCPAddr.IsValid() {
		ip = m.RTCPAddr
	}
	switch {
	case m.RTCPPort != 0:
		return netip.AddrPortFrom(ip, uint16(m.RTCPPort))
	case m.RTCPMux:
		return m.Addr()
	case m.Port > 0 && m.Port < 65535:
		return netip.AddrPortFrom(ip, uint16(m.Port+1))
	}
	return netip.AddrPort{}
}

// Session is a parsed SDP body.
type Session struct {
	Conn  netip.Addr // session-level c=; invalid when none
	Media []Media
}

// Audio returns the first active audio stream, nil when there is none.
func (s *Session) Audio() *Media {
	for i := range s.Media {
		if m := &s.Media[i]; m.Active() && strings.EqualFold(m.Type, "audio") {
			return m
		}
	}
	return nil
}

// CodecNames lists the codecs of the first active audio stream
// ("PCMU/8000 PCMA/8000"), for messages; "none" when there is none.
func (s *Session) CodecNames() string {
	a := s.Audio()
	if a == nil || len(a.Codecs) == 0 {
		return "none"
	}
	names := make([]string, len(a.Codecs))
	for i, c := range a.Codecs {
		names[i] = c.String()
	}
	return strings.Join(names, " ")
}

// static are the RTP/AVP static payload types (RFC 3551) a phone may use
// without an rtpmap.
var static = [...]struct {
	name string
	rate int
}{0: {"PCMU", 8000}, 3: {"GSM", 8000}, 4: {"G723", 8000}, 8: {"PCMA", 8000}, 9: {"G722", 8000},
	13: {"CN", 8000}, 18: {"G729", 8000}}

// Parse reads an SDP body. It checks only what the relay relies on: the
// "v=" start, the bounds (MaxBody, MaxMedia, MaxFormats), m= lines with a
// port in 0-65535, a=rtcp ports in 1-65535. Unknown lines are ignored.
func Parse(body []byte) (*Session, error) {
	if len(body) > MaxBody {
		return nil, fmt.Errorf("%w: %d bytes (at most %d)", ErrTooLarge, len(body), MaxBody)
	}
	if !bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("v=")) {
		return nil, ErrNotSDP
	}
	s := &Session{}
	var sessDTLS bool
	var cur *Media
	rtpmap := map[int]Codec{} // of the current section
	fmtp := map[int]string{}
	closeMedia := func() {
		if cur == nil {
			return
		}
		if !cur.Conn.IsValid() {
			cur.Conn = s.Conn
		}
		cur.DTLS = cur.DTLS || sessDTLS
		if strings.Contains(strings.ToUpper(cur.Proto), "RTP") {
			for _, f := range cur.Formats {
				pt, err := strconv.Atoi(f)
				if err != nil || pt < 0 || pt > 127 {
					continue
				}
				c, ok := rtpmap[pt]
				if !ok {
					if pt >= len(static) || static[pt].name == "" {
						continue
					}
					c = Codec{Name: static[pt].name, Rate: static[pt].rate}
				}
				c.PT, c.Fmtp = uint8(pt), fmtp[pt]
				cur.Codecs = append(cur.Codecs, c)
			}
		}
		clear(rtpmap)
		clear(fmtp)
	}
	for rest := body; len(rest) > 0; {
		var line []byte
		line, rest = nextLine(rest)
		line = bytes.TrimRight(line, "\r \t")
		if len(line) < 2 || line[1] != '=' {
			continue
		}
		val := string(line[2:])
		switch line[0] {
		case 'm':
			closeMedia()
			if len(s.Media) == MaxMedia {
				return nil, fmt.Errorf("%w: more than %d", ErrTooManyMedia, MaxMedia)
			}
			m, err := parseM(val)
			if err != nil {
				return nil, err
			}
			s.Media = append(s.Media, m)
			cur = &s.Media[len(s.Media)-1]
		case 'c':
			ip := parseConn(val)
			if cur == nil {
				s.Conn = ip
			} else {
				cur.Conn = ip
			}
		case 'a':
			name, arg, _ := strings.Cut(val, ":")
			if cur == nil {
				if name == "fingerprint" {
					sessDTLS = true
				}
				continue
			}
			switch name {
			case "rtcp":
				port, addr, err := parseRTCP(arg)
				if err != nil {
					return nil, err
				}
				cur.RTCPPort, cur.RTCPAddr = port, addr
			case "rtcp-mux":
				cur.RTCPMux = true
			case "sendrecv", "sendonly", "recvonly", "inactive":
				cur.Dir = name
			case "ice-ufrag", "candidate":
				cur.ICE = true
			case "fingerprint":
				cur.DTLS = true
			case "rtpmap":
				if pt, c, ok := parseRtpmap(arg); ok {
					rtpmap[pt] = c
				}
			case "fmtp":
				if f, p, ok := strings.Cut(arg, " "); ok {
					if pt, err := strconv.Atoi(f); err == nil && pt >= 0 && pt <= 127 {
						fmtp[pt] = strings.TrimSpace(p)
					}
				}
			}
		}
	}
	closeMedia()
	for i := range s.Media {
		if s.Media[i].Dir == "" {
			s.Media[i].Dir = "sendrecv"
		}
	}
	return s, nil
}

// parseM reads "audio 49170 RTP/AVP 0 8 101" ("49170/2": a port count).
func parseM(v string) (Media, error) {
	f := strings.Fields(v)
	if len(f) < 3 {
		return Media{}, fmt.Errorf("%w: %q", ErrBadMedia, clip(v))
	}
	port := f[1]
	if i := strings.IndexByte(port, '/'); i >= 0 {
		port = port[:i]
	}
	n, err := parsePort(port, 0)
	if err != nil {
		return Media{}, fmt.Errorf("%w: %q: %v", ErrBadMedia, clip(v), err)
	}
	if len(f)-3 > MaxFormats {
		return Media{}, fmt.Errorf("%w: %d payload types (at most %d)", ErrBadMedia, len(f)-3, MaxFormats)
	}
	return Media{Type: f[0], Port: n, Proto: f[2], Formats: f[3:]}, nil
}

// parsePort reads a decimal port in min-65535.
func parsePort(s string, min int) (int, error) {
	if len(s) == 0 || len(s) > 5 {
		return 0, fmt.Errorf("port %q out of range", clip(s))
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("port %q is not a number", clip(s))
		}
		n = n*10 + int(c-'0')
	}
	if n < min || n > 65535 {
		return 0, fmt.Errorf("port %d out of range", n)
	}
	return n, nil
}

// parseConn reads "IN IP4 192.0.2.1" (a multicast TTL suffix is dropped);
// invalid when it is not an IP address.
func parseConn(v string) netip.Addr {
	f := strings.Fields(v)
	if len(f) < 3 || f[0] != "IN" {
		return netip.Addr{}
	}
	a := f[2]
	if i := strings.IndexByte(a, '/'); i >= 0 {
		a = a[:i]
	}
	ip, err := netip.ParseAddr(a)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}
	}
	return ip.Unmap()
}

// parseRTCP reads "53020" or "53020 IN IP4 192.0.2.1" (RFC 3605).
func parseRTCP(v string) (int, netip.Addr, error) {
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0, netip.Addr{}, fmt.Errorf("%w: empty a=rtcp", ErrBadMedia)
	}
	port, err := parsePort(f[0], 1)
	if err != nil {
		return 0, netip.Addr{}, fmt.Errorf("%w: a=rtcp: %v", ErrBadMedia, err)
	}
	var ip netip.Addr
	if len(f) >= 4 {
		ip = parseConn(strings.Join(f[1:4], " "))
	}
	return port, ip, nil
}

// parseRtpmap reads "101 telephone-event/8000" or "111 opus/48000/2".
func parseRtpmap(v string) (int, Codec, bool) {
	f, enc, ok := strings.Cut(v, " ")
	if !ok {
		return 0, Codec{}, false
	}
	pt, err := strconv.Atoi(f)
	if err != nil || pt < 0 || pt > 127 {
		return 0, Codec{}, false
	}
	parts := strings.Split(strings.TrimSpace(enc), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" {
		return 0, Codec{}, false
	}
	rate, err := strconv.Atoi(parts[1])
	if err != nil || rate <= 0 || rate > 1_000_000 {
		return 0, Codec{}, false
	}
	c := Codec{Name: parts[0], Rate: rate}
	if len(parts) == 3 {
		ch, err := strconv.Atoi(parts[2])
		if err != nil || ch < 1 || ch > 255 {
			return 0, Codec{}, false
		}
		c.Channels = ch
	}
	return pt, c, true
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Common returns the codecs of offer (in its order, with its payload
// types) that answer has too, by name, rate and channels, not payload type.
func Common(offer, answer []Codec) []Codec {
	var out []Codec
	for _, o := range offer {
		for _, a := range answer {
			if o.Same(a) {
				out = append(out, o)
				break
			}
		}
	}
	return out
}

// Voice reports whether codecs has one that carries sound (anything but
// telephone-event and comfort noise): two parties whose common codecs are
// only those cannot talk.
func Voice(codecs []Codec) bool {
	for _, c := range codecs {
		if !strings.EqualFold(c.Name, "telephone-event") && !strings.EqualFold(c.Name, "CN") {
			return true
		}
	}
	return false
}

// iceAttrs are the media attributes Rewrite drops: the relay does not do
// ICE towards a plain phone, so the party's own candidates must not reach
// the other side (they would let it bypass the relay).
var iceAttrs = []string{"a=candidate:", "a=ice-ufrag:", "a=ice-pwd:", "a=ice-options:", "a=end-of-candidates",
	"a=remote-candidates:", "a=ice-lite"}

// Rewrite returns body with the first active audio stream pointed at
// audioAddr: its port in the m= line, the connection address in the
// session's c= and the stream's c= (added when the stream has none and the
// session has none either), a=rtcp set to rtcpPort (added when the party
// had one; without one the peer uses port+1, which is the relay's RTCP
// port). Every other stream is disabled (port 0: the relay carries audio
// only), ICE attributes are dropped, and everything else is kept as it is,
// line endings included. It fails when body does not Parse or has no
// active audio stream.
func Rewrite(body []byte, audioAddr netip.AddrPort, rtcpPort uint16) ([]byte, error) {
	s, err := Parse(body)
	if err != nil {
		return nil, err
	}
	audio := s.Audio()
	if audio == nil {
		return nil, ErrNoAudio
	}
	target := 0
	for i := range s.Media {
		if &s.Media[i] == audio {
			target = i
		}
	}
	ip := audioAddr.Addr().Unmap()
	family := "IP4"
	if ip.Is6() {
		family = "IP6"
	}
	conn := "c=IN " + family + " " + ip.String()
	eol := "\r\n"
	if !bytes.Contains(body, []byte("\r\n")) {
		eol = "\n"
	}
	// Does the stream have its own c= line? Else, without a session c=,
	// one is added right after its m= line.
	ownConn, media := false, -1
	eachLine(body, func(_ []byte, line string) {
		if strings.HasPrefix(line, "m=") {
			media++
		} else if media == target && strings.HasPrefix(line, "c=") {
			ownConn = true
		}
	})
	addConn := !ownConn && !s.Conn.IsValid()
	out := make([]byte, 0, len(body)+64)
	media = -1
	eachLine(body, func(raw []byte, line string) {
		if strings.HasPrefix(line, "m=") {
			media++
			if f := strings.Fields(line[2:]); len(f) >= 3 {
				port := "0"
				if media == target {
					port = strconv.Itoa(int(audioAddr.Port()))
				}
				out = append(out, "m="+f[0]+" "+port+" "+strings.Join(f[2:], " ")+eol...)
				if media == target && addConn {
					out = append(out, conn+eol...)
				}
				return
			}
		}
		switch {
		case strings.HasPrefix(line, "c=") && (media == -1 || media == target):
			out = append(out, conn+eol...)
			return
		case media == target && strings.HasPrefix(line, "a=rtcp:"):
			out = append(out, "a=rtcp:"+strconv.Itoa(int(rtcpPort))+" IN "+family+" "+ip.String()+eol...)
			return
		case media == target && hasAnyPrefix(line, iceAttrs):
			return
		}
		out = append(out, raw...)
	})
	return out, nil
}

// eachLine calls fn with each line of body: raw with its line ending,
// line without it and without trailing blanks.
func eachLine(body []byte, fn func(raw []byte, line string)) {
	for rest := body; len(rest) > 0; {
		var raw []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			raw, rest = rest[:i+1], rest[i+1:]
		} else {
			raw, rest = rest, nil
		}
		fn(raw, string(bytes.TrimRight(raw, "\r\n \t")))
	}
}

// nextLine splits the first line (without its '\n') off rest.
func nextLine(rest []byte) (line, after []byte) {
	if i := bytes.IndexByte(rest, '\n'); i >= 0 {
		return rest[:i], rest[i+1:]
	}
	return rest, nil
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// Plain builds a plain RTP/AVP audio SDP offering codecs at addr with
// direction dir ("" = sendrecv); sessID is the o= session id and version
// (keep it for the call; a changed body needs a higher one).
func Plain(addr netip.AddrPort, codecs []Codec, dir string, sessID uint64) []byte {
	ip := addr.Addr().Unmap()
	family := "IP4"
	if ip.Is6() {
		family = "IP6"
	}
	if dir == "" {
		dir = "sendrecv"
	}
	var b strings.Builder
	id := strconv.FormatUint(sessID, 10)
	b.WriteString("v=0\r\no=switchboard " + id + " " + id + " IN " + family + " " + ip.String() + "\r\n")
	b.WriteString("s=switchboard\r\nc=IN " + family + " " + ip.String() + "\r\nt=0 0\r\n")
	b.WriteString("m=audio " + strconv.Itoa(int(addr.Port())) + " RTP/AVP")
	for _, c := range codecs {
		b.WriteString(" " + strconv.Itoa(int(c.PT)))
	}
	b.WriteString("\r\n")
	for _, c := range codecs {
		b.WriteString("a=rtpmap:" + strconv.Itoa(int(c.PT)) + " " + c.String() + "\r\n")
		if c.Fmtp != "" {
			b.WriteString("a=fmtp:" + strconv.Itoa(int(c.PT)) + " " + c.Fmtp + "\r\n")
		}
	}
	b.WriteString("a=ptime:20\r\na=" + dir + "\r\n")
	return []byte(b.String())
}

// AudioConn returns the connection address of the first active audio
// stream of body without parsing the rest (no allocation): what the proxy
// compares with the SIP source address on every call to spot a party
// behind NAT. ok is false when body has no active audio stream or its
// address is not an IP; the bounds of Parse apply (MaxBody, MaxMedia).
func AudioConn(body []byte) (ip netip.Addr, ok bool) {
	a, ok := AudioAddr(body)
	return a.Addr(), ok
}

// AudioAddr is AudioConn with the stream's port: the address:port a party
// asks to receive its audio at, read without parsing the rest of body (no
// allocation). ok is false as for AudioConn.
func AudioAddr(body []byte) (addr netip.AddrPort, ok bool) {
	if len(body) > MaxBody {
		return netip.AddrPort{}, false
	}
	var sess, cur netip.Addr
	port, media := 0, 0
	done := func() (netip.AddrPort, bool) {
		if cur.IsValid() {
			return netip.AddrPortFrom(cur, uint16(port)), true
		}
		return netip.AddrPortFrom(sess, uint16(port)), sess.IsValid()
	}
	for rest := body; len(rest) > 0; {
		var line []byte
		line, rest = nextLine(rest)
		line = bytes.TrimRight(line, "\r \t")
		if len(line) < 2 || line[1] != '=' {
			continue
		}
		switch line[0] {
		case 'm':
			if port != 0 {
				return done()
			}
			if media++; media > MaxMedia {
				return netip.AddrPort{}, false
			}
			port = audioPort(line[2:])
		case 'c':
			ip := connAddr(line[2:])
			if media == 0 {
				sess = ip
			} else if port != 0 {
				cur = ip
			}
		}
	}
	if port != 0 {
		return done()
	}
	return netip.AddrPort{}, false
}

// audioPort returns the port of an m= value "audio PORT ...", 0 when it is
// not audio or its port is not in 1-65535 (the stream is inactive).
func audioPort(v []byte) int {
	if !bytes.HasPrefix(v, []byte("audio ")) {
		return 0
	}
	v = bytes.TrimLeft(v[len("audio "):], " ")
	n, digits := 0, 0
	for _, c := range v {
		if c < '0' || c > '9' {
			break
		}
		if digits++; digits > 5 {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0
	}
	return n
}

// connAddr reads the address of a c= value ("IN IP4 192.0.2.1") without
// allocating; invalid when it is not an IP.
func connAddr(v []byte) netip.Addr {
	if !bytes.HasPrefix(v, []byte("IN IP")) || len(v) < len("IN IP4 ") {
		return netip.Addr{}
	}
	a := bytes.TrimLeft(v[len("IN IP4"):], " ")
	if i := bytes.IndexAny(a, "/ "); i >= 0 {
		a = a[:i]
	}
	var ip netip.Addr
	if err := ip.UnmarshalText(a); err != nil || ip.Zone() != "" {
		return netip.Addr{}
	}
	return ip.Unmap()
}
