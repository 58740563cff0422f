package sdpkind

import (
	"strings"
	"testing"
)

// chromeOffer is the shape of a Chromium audio offer (trimmed).
const chromeOffer = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
	"a=group:BUNDLE 0\r\na=msid-semantic: WMS\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\n" +
	"a=candidate:1 1 udp 2113937151 127.0.0.1 54400 typ host generation 0\r\n" +
	"a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\na=ice-options:trickle\r\n" +
	"a=fingerprint:sha-256 3B:0A:61:8C:2D:55:01:6D:9A:42:7F:F6:3D:84:D6:D3:9C:1E:62:2B:01:9C:E4:44:FB:DB:0C:B9:DF:E6:80:72\r\n" +
	"a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"

// phoneOffer is what baresip, SIPp and desk phones send.
const phoneOffer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name, ct, body string
		want           Kind
	}{
		{"chrome", "application/sdp", chromeOffer, WebRTC},
		{"phone", "application/sdp", phoneOffer, Plain},
		{"phone LF only", "application/sdp", strings.ReplaceAll(phoneOffer, "\r\n", "\n"), Plain},
		{"content type params and case", "Application/SDP; charset=utf-8", phoneOffer, Plain},
		{"no content type", "", chromeOffer, WebRTC},
		{"late offer", "", "", Unknown},
		{"not sdp", "application/sdp", "hello", Unknown},
		{"other type", "text/plain", phoneOffer, Unknown},
		{"multipart", "multipart/mixed;boundary=x", chromeOffer, Unknown},
		{"SDES SRTP phone", "application/sdp", strings.Replace(phoneOffer, "RTP/AVP", "RTP/SAVP", 1) + "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\r\n", Plain},
		{"DTLS with RTP/SAVPF and media fingerprint", "application/sdp",
			"v=0\r\nm=audio 5000 RTP/SAVPF 0\r\na=fingerprint:sha-256 AA\r\n", WebRTC},
		{"DTLS with session fingerprint", "application/sdp",
			"v=0\r\na=fingerprint:sha-256 AA\r\nm=audio 5000 RTP/SAVP 0\r\n", WebRTC},
		{"TCP/DTLS", "application/sdp", "v=0\r\nm=audio 9 TCP/DTLS/RTP/SAVPF 0\r\n", WebRTC},
		{"disabled stream only", "application/sdp", "v=0\r\nm=audio 0 RTP/AVP 0\r\n", Unknown},
		{"disabled webrtc stream, active plain", "application/sdp",
			"v=0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 0\r\nm=audio 4000 RTP/AVP 0\r\n", Plain},
		{"fax only", "application/sdp", "v=0\r\nm=image 4000 udptl t38\r\n", Unknown},
		{"port count", "application/sdp", "v=0\r\nm=audio 4000/2 RTP/AVP 0\r\n", Plain},
		{"short m line", "application/sdp", "v=0\r\nm=audio\r\n", Unknown},
		{"bad port", "application/sdp", "v=0\r\nm=audio x RTP/AVP 0\r\n", Unknown},
	} {
		if got := Classify(tc.ct, []byte(tc.body)); got != tc.want {
			t.Errorf("%s: Classify = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestClassifyLargeBody: past MaxBody nothing is read, so a huge body
// costs no more than MaxBody.
func TestClassifyLargeBody(t *testing.T) {
	body := "v=0\r\n" + strings.Repeat("a=x\r\n", MaxBody/5) + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
	if got := Classify("application/sdp", []byte(body)); got != Unknown {
		t.Fatalf("m= line past MaxBody was read: %v", got)
	}
}

func TestEndpointAndCompatible(t *testing.T) {
	for _, tc := range []struct {
		offer     Kind
		transport string
		ok        bool
	}{
		{WebRTC, "wss", true},
		{WebRTC, "WS", true},
		{WebRTC, "UDP", false},
		{WebRTC, "tcp", false},
		{WebRTC, "TLS", false},
		{Plain, "UDP", true},
		{Plain, "TLS", true},
		{Plain, "WSS", false},
		{Unknown, "WSS", true},
		{Unknown, "UDP", true},
	} {
		target := Endpoint(tc.transport)
		if got := Compatible(tc.offer, target); got != tc.ok {
			t.Errorf("Compatible(%v, %s) = %v, want %v", tc.offer, tc.transport, got, tc.ok)
		}
		why := Why(tc.offer, target)
		if (why == "") != tc.ok || (!tc.ok && !strings.Contains(why, "media relay")) {
			t.Errorf("Why(%v, %s) = %q", tc.offer, tc.transport, why)
		}
	}
}

// FuzzClassify: any body gets an answer, never a panic, and the answer
// does not depend on bytes past MaxBody.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{chromeOffer, phoneOffer, "", "v=0\r\nm=", "v=0\nm=audio 0/ RTP\n", "v=\na=fingerprint:\nm=video 1 UDP/TLS/RTP/SAVPF"} {
		f.Add("application/sdp", []byte(s))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		k := Classify(ct, body)
		if k != Unknown && k != Plain && k != WebRTC {
			t.Fatalf("Classify returned %d", k)
		}
		if len(body) > MaxBody {
			if k2 := Classify(ct, body[:MaxBody]); k2 != k {
				t.Fatalf("answer depends on bytes past MaxBody: %v vs %v", k, k2)
			}
		}
	})
}

// BenchmarkClassify: the cost the check adds to every new call with SDP.
func BenchmarkClassify(b *testing.B) {
	for _, tc := range []struct{ name, sdp string }{{"chrome", chromeOffer}, {"phone", phoneOffer}} {
		body := []byte(tc.sdp)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Classify("application/sdp", body)
			}
		})
	}
}
