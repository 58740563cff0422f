package sdp

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

const phoneOffer = "v=0\r\n" +
	"o=- 1 1 IN IP4 192.168.1.20\r\n" +
	"s=-\r\n" +
	"c=IN IP4 192.168.1.20\r\n" +
	"t=0 0\r\n" +
	"m=audio 4000 RTP/AVP 0 8 101\r\n" +
	"a=rtpmap:101 telephone-event/8000\r\n" +
	"a=fmtp:101 0-16\r\n" +
	"a=rtcp:4001\r\n" +
	"a=sendrecv\r\n" +
	"m=video 4002 RTP/AVP 96\r\n" +
	"a=rtpmap:96 H264/90000\r\n"

const browserOffer = "v=0\r\n" +
	"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n" +
	"s=-\r\nt=0 0\r\n" +
	"a=group:BUNDLE 0\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=rtcp:9 IN IP4 0.0.0.0\r\n" +
	"a=candidate:1 1 udp 2122260223 10.0.0.5 50000 typ host\r\n" +
	"a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef01234567\r\n" +
	"a=fingerprint:sha-256 AA:BB\r\n" +
	"a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n" +
	"a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n" +
	"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000\r\n"

func TestParsePhone(t *testing.T) {
	s, err := Parse([]byte(phoneOffer))
	if err != nil {
		t.Fatal(err)
	}
	a := s.Audio()
	if a == nil {
		t.Fatal("no audio")
	}
	if got, want := a.Addr(), netip.MustParseAddrPort("192.168.1.20:4000"); got != want {
		t.Errorf("Addr = %v, want %v", got, want)
	}
	if got, want := a.RTCP(), netip.MustParseAddrPort("192.168.1.20:4001"); got != want {
		t.Errorf("RTCP = %v, want %v", got, want)
	}
	if a.WebRTC() || a.RTCPMux || a.Dir != "sendrecv" {
		t.Errorf("webrtc=%v mux=%v dir=%q", a.WebRTC(), a.RTCPMux, a.Dir)
	}
	if got := s.CodecNames(); got != "PCMU/8000 PCMA/8000 telephone-event/8000" {
		t.Errorf("codecs %q", got)
	}
	if a.Codecs[2].PT != 101 || a.Codecs[2].Fmtp != "0-16" {
		t.Errorf("telephone-event %+v", a.Codecs[2])
	}
	if len(s.Media) != 2 || s.Media[1].Codecs[0].Name != "H264" {
		t.Errorf("video %+v", s.Media)
	}
}

func TestParseBrowser(t *testing.T) {
	s, err := Parse([]byte(browserOffer))
	if err != nil {
		t.Fatal(err)
	}
	a := s.Audio()
	if !a.WebRTC() || !a.ICE || !a.RTCPMux {
		t.Errorf("webrtc=%v ice=%v mux=%v", a.WebRTC(), a.ICE, a.RTCPMux)
	}
	if a.Codecs[0].Name != "opus" || a.Codecs[0].Channels != 2 || a.Codecs[0].Fmtp == "" {
		t.Errorf("opus %+v", a.Codecs[0])
	}
	// Without a session c=, the media c= is used.
	if a.Conn != netip.MustParseAddr("0.0.0.0") {
		t.Errorf("conn %v", a.Conn)
	}
}

// TestParseRefuses: absurd bodies are errors, not panics or silent cuts.
func TestParseRefuses(t *testing.T) {
	many := "v=0\r\nc=IN IP4 10.0.0.1\r\n" + strings.Repeat("m=audio 4000 RTP/AVP 0\r\n", 300)
	huge := "v=0\r\n" + strings.Repeat("a=x\r\n", MaxBody/4)
	for name, tc := range map[string]struct {
		body string
		err  error
	}{
		"hundreds of m= lines": {many, ErrTooManyMedia},
		"64 KiB+":              {huge, ErrTooLarge},
		"port 99999":           {"v=0\r\nm=audio 99999 RTP/AVP 0\r\n", ErrBadMedia},
		"port -1":              {"v=0\r\nm=audio -1 RTP/AVP 0\r\n", ErrBadMedia},
		"port 1e9":             {"v=0\r\nm=audio 1000000000000000000000 RTP/AVP 0\r\n", ErrBadMedia},
		"short m=":             {"v=0\r\nm=audio 4000\r\n", ErrBadMedia},
		"rtcp 0":               {"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:0\r\n", ErrBadMedia},
		"rtcp 70000":           {"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:70000\r\n", ErrBadMedia},
		"too many formats":     {"v=0\r\nm=audio 4000 RTP/AVP" + strings.Repeat(" 0", MaxFormats+1) + "\r\n", ErrBadMedia},
		"not sdp":              {"hello", ErrNotSDP},
		"empty":                {"", ErrNotSDP},
	} {
		_, err := Parse([]byte(tc.body))
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.err)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("%s: error message too long: %d bytes", name, len(err.Error()))
		}
	}
	// Port 0 is a disabled stream, not an error: no audio.
	s, err := Parse([]byte("v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n"))
	if err != nil || s.Audio() != nil {
		t.Errorf("port 0: %v, audio %v", err, s.Audio())
	}
}

func TestRewrite(t *testing.T) {
	relay := netip.MustParseAddrPort("203.0.113.7:20000")
	out, err := Rewrite([]byte(phoneOffer), relay, 20001)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	a := s.Audio()
	if a.Addr() != relay || a.RTCP() != netip.MustParseAddrPort("203.0.113.7:20001") {
		t.Errorf("rewritten to %v rtcp %v:\n%s", a.Addr(), a.RTCP(), out)
	}
	if s.Media[1].Port != 0 {
		t.Errorf("video not disabled: %d", s.Media[1].Port)
	}
	if bytes.Contains(out, []byte("192.168.1.20\r\nt=")) || !bytes.Contains(out, []byte("a=fmtp:101 0-16\r\n")) {
		t.Errorf("rewrite lost or kept the wrong lines:\n%s", out)
	}
	if bytes.Count(out, []byte("\r\n")) != bytes.Count([]byte(phoneOffer), []byte("\r\n")) {
		t.Errorf("line count changed:\n%s", out)
	}

	// ICE candidates go; a media c= is replaced; IPv6.
	relay6 := netip.MustParseAddrPort("[2001:db8::7]:20002")
	out, err = Rewrite([]byte(browserOffer), relay6, 20003)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("candidate")) || bytes.Contains(out, []byte("ice-ufrag")) ||
		!bytes.Contains(out, []byte("c=IN IP6 2001:db8::7\r\n")) {
		t.Errorf("browser rewrite:\n%s", out)
	}

	// No c= at all: one is added after the m= line.
	out, err = Rewrite([]byte("v=0\nm=audio 5000 RTP/AVP 0\na=sendrecv"), relay, 20001)
	if err != nil {
		t.Fatal(err)
	}
	if want := "v=0\nm=audio 20000 RTP/AVP 0\nc=IN IP4 203.0.113.7\na=sendrecv"; string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}

	if _, err := Rewrite([]byte("v=0\r\nm=video 5000 RTP/AVP 96\r\n"), relay, 20001); !errors.Is(err, ErrNoAudio) {
		t.Errorf("no audio: %v", err)
	}
}

func TestCommon(t *testing.T) {
	offer := []Codec{{PT: 111, Name: "opus", Rate: 48000, Channels: 2}, {PT: 0, Name: "PCMU", Rate: 8000},
		{PT: 126, Name: "telephone-event", Rate: 8000}}
	answer := []Codec{{PT: 8, Name: "PCMA", Rate: 8000}, {PT: 0, Name: "pcmu", Rate: 8000},
		{PT: 101, Name: "telephone-event", Rate: 8000}}
	got := Common(offer, answer)
	if len(got) != 2 || got[0].PT != 0 || got[1].PT != 126 {
		t.Errorf("Common = %+v", got)
	}
	if !Voice(got) || Voice(got[1:]) {
		t.Errorf("Voice wrong")
	}
	if len(Common(offer[:1], answer)) != 0 {
		t.Errorf("opus shared with a G.711 phone")
	}
}

func TestPlain(t *testing.T) {
	codecs := []Codec{{PT: 0, Name: "PCMU", Rate: 8000}, {PT: 101, Name: "telephone-event", Rate: 8000, Fmtp: "0-16"}}
	body := Plain(netip.MustParseAddrPort("127.0.0.1:30000"), codecs, "", 42)
	s, err := Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	a := s.Audio()
	if a.Addr() != netip.MustParseAddrPort("127.0.0.1:30000") || a.WebRTC() || len(a.Codecs) != 2 ||
		a.Codecs[1].Fmtp != "0-16" || a.Dir != "sendrecv" {
		t.Errorf("Plain:\n%s", body)
	}
}

// FuzzParse: any input gets an answer, never a panic; a body that parses
// can be rewritten, and the result parses with the relay's address.
func FuzzParse(f *testing.F) {
	for _, s := range []string{phoneOffer, browserOffer, "", "v=0", "v=0\nm=audio 0/ RTP\n", "v=0\nc=IN IP4 ::1\nm=audio 1 RTP/AVP\na=rtcp:1 IN IP6 x"} {
		f.Add([]byte(s))
	}
	relay := netip.MustParseAddrPort("127.0.0.1:20000")
	f.Fuzz(func(t *testing.T, body []byte) {
		AudioConn(body)
		s, err := Parse(body)
		if err != nil {
			return
		}
		if len(s.Media) > MaxMedia {
			t.Fatalf("%d media", len(s.Media))
		}
		a := s.Audio()
		_ = s.CodecNames()
		out, err := Rewrite(body, relay, 20001)
		if a == nil {
			if err == nil {
				t.Fatal("rewrote a body without audio")
			}
			return
		}
		_ = a.RTCP()
		if err != nil {
			t.Fatalf("Rewrite of a parsed body: %v", err)
		}
		s2, err := Parse(out)
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				return
			}
			t.Fatalf("rewritten body does not parse: %v\n%q", err, out)
		}
		if a2 := s2.Audio(); a2 == nil || a2.Addr() != relay {
			t.Fatalf("rewritten audio %+v\n%q", a2, out)
		}
	})
}

func TestAudioConn(t *testing.T) {
	for body, want := range map[string]string{
		phoneOffer:   "192.168.1.20",
		browserOffer: "0.0.0.0",
		"v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 5000 RTP/AVP 96\r\nc=IN IP4 10.0.0.2\r\nm=audio 5002 RTP/AVP 0\r\n": "10.0.0.1",
		"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 0 RTP/AVP 0\r\nm=audio 5002 RTP/AVP 0\r\nc=IN IP6 ::1\r\n":          "::1",
		"v=0\r\nm=audio 5002 RTP/AVP 0\r\n":               "",
		"v=0\r\nc=IN IP4 pbx.example\r\nm=audio 5 X\r\n":  "",
		"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 99999 X\r\n": "",
	} {
		ip, ok := AudioConn([]byte(body))
		if got := ""; ok {
			got = ip.String()
			if got != want {
				t.Errorf("AudioConn = %s, want %q\n%s", got, want, body)
			}
		} else if want != "" {
			t.Errorf("AudioConn found nothing, want %s\n%s", want, body)
		}
	}
}

func BenchmarkAudioConn(b *testing.B) {
	body := []byte(phoneOffer)
	b.ReportAllocs()
	for b.Loop() {
		AudioConn(body)
	}
}

// TestAudioAddr: AudioAddr finds the address:port of the first active
// audio stream (the stream's c= over the session's), nothing without one.
func TestAudioAddr(t *testing.T) {
	for body, want := range map[string]string{
		"v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 5000 RTP/AVP 96\r\nc=IN IP4 10.0.0.2\r\nm=audio 5002 RTP/AVP 0\r\n": "10.0.0.1:5002",
		"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 0 RTP/AVP 0\r\nm=audio 5004 RTP/AVP 0\r\nc=IN IP6 ::1\r\n":          "[::1]:5004",
		"v=0\r\nm=audio 5002 RTP/AVP 0\r\n":               "",
		"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 99999 X\r\n": "",
		"v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 4000 X\r\n":  "",
	} {
		a, ok := AudioAddr([]byte(body))
		if got := ""; ok {
			got = a.String()
			if got != want {
				t.Errorf("AudioAddr = %s, want %q\n%s", got, want, body)
			}
		} else if want != "" {
			t.Errorf("AudioAddr found nothing, want %s\n%s", want, body)
		}
	}
}
