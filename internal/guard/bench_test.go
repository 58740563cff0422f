package guard

import (
	"net"
	"testing"
)

// A REGISTER as a desk phone sends it, with credentials.
var benchRegister = []byte("REGISTER sip:pbx.example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.168.1.23:5062;branch=z9hG4bK1392876235;rport\r\n" +
	"From: \"Front desk\" <sip:2002@pbx.example.com>;tag=1486337396\r\n" +
	"To: \"Front desk\" <sip:2002@pbx.example.com>\r\n" +
	"Call-ID: 0_1871524866@192.168.1.23\r\n" +
	"CSeq: 2 REGISTER\r\n" +
	"Contact: <sip:2002@192.168.1.23:5062>;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-805EC0AABBCC>\"\r\n" +
	"Authorization: Digest username=\"2002\", realm=\"pbx.example.com\", nonce=\"Y2VhZjE3\", uri=\"sip:pbx.example.com\", " +
	"response=\"2c5e2e6e3c5f4b2f5a3c8b7d6e5f4a3b\", algorithm=MD5\r\n" +
	"Max-Forwards: 70\r\n" +
	"User-Agent: Yealink SIP-T46S 66.86.0.15\r\n" +
	"Expires: 3600\r\n" +
	"Allow: INVITE, ACK, OPTIONS, CANCEL, BYE, SUBSCRIBE, NOTIFY, INFO, REFER, UPDATE\r\n" +
	"Content-Length: 0\r\n\r\n")

func TestFilterHotPathDoesNotAllocate(t *testing.T) {
	s, _ := newTestGuard(t, Config{})
	var m message
	if res, _ := scan(benchRegister, false, &m); res != scanOK || m.unsure {
		t.Fatalf("the benchmark REGISTER is not on the fast path: res=%v unsure=%v", res, m.unsure)
	}
	from := &net.UDPAddr{IP: net.IPv4(192, 168, 1, 23), Port: 5062}
	tcp := &net.TCPAddr{IP: net.IPv4(192, 168, 1, 23), Port: 40000}
	if n := testing.AllocsPerRun(200, func() {
		if s.Filter("UDP", from, benchRegister) == nil {
			t.Fatal("dropped")
		}
	}); n != 0 {
		t.Errorf("UDP: %v allocations per message, want 0", n)
	}
	if n := testing.AllocsPerRun(200, func() {
		if s.Filter("TCP", tcp, benchRegister) == nil {
			t.Fatal("dropped")
		}
	}); n != 0 {
		t.Errorf("TCP: %v allocations per message, want 0", n)
	}
}

func BenchmarkFilterUDP(b *testing.B) {
	s, _ := newTestGuard(b, Config{})
	from := &net.UDPAddr{IP: net.IPv4(192, 168, 1, 23), Port: 5062}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchRegister)))
	for i := 0; i < b.N; i++ {
		s.Filter("UDP", from, benchRegister)
	}
}

func BenchmarkFilterTCP(b *testing.B) {
	s, _ := newTestGuard(b, Config{})
	from := &net.TCPAddr{IP: net.IPv4(192, 168, 1, 23), Port: 40000}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchRegister)))
	for i := 0; i < b.N; i++ {
		s.Filter("TCP", from, benchRegister)
	}
}

// A 200 OK as a UAS behind the proxy sends it: both Vias echoed on one line.
var benchAnswer = []byte("SIP/2.0 200 OK\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-sbYL2VvCzG55p1PP2GjGli, SIP/2.0/UDP 127.0.0.1:5091;branch=z9hG4bK-20538-1-4\r\n" +
	"From: <sip:100000@127.0.0.1>;tag=20538SIPpTag1\r\n" +
	"To: <sip:101000@127.0.0.1>;tag=20531SIPpTag011\r\n" +
	"Call-ID: 1-20538@127.0.0.1\r\nCSeq: 2 INVITE\r\n" +
	"Record-Route: <sip:127.0.0.1:5070;lr;sb=abc>\r\n" +
	"Contact: <sip:127.0.0.1:5080;transport=UDP>\r\nContent-Length: 0\r\n\r\n")

// TestFastPathVias: Via lists on one line stay on the fast path when every
// hop but the last has parameters; anything the parser might read
// differently goes to sipgo's parser.
func TestFastPathVias(t *testing.T) {
	var m message
	if res, _ := scan(benchAnswer, false, &m); res != scanOK || m.unsure {
		t.Fatalf("a 200 OK with two Vias on one line is not on the fast path: res=%v unsure=%v", res, m.unsure)
	}
	for _, c := range []struct {
		via  string
		fast bool
	}{
		{"SIP/2.0/UDP a;branch=z9hG4bK1", true},
		{"SIP/2.0/UDP a;branch=z9hG4bK1,SIP/2.0/UDP b", true},
		{"SIP/2.0/UDP a;branch=z9hG4bK1 ,\t SIP/2.0/TCP b:5061;rport", true},
		{"SIP/2.0/UDP a, SIP/2.0/UDP b;branch=z9hG4bK2", false},  // no parameters before the comma
		{"SIP/2.0/UDP a;x=\"q,r\", SIP/2.0/UDP b", false},        // quoted
		{"SIP/2.0/UDP a;branch=z9hG4bK1,, SIP/2.0/UDP b", false}, // empty hop
		{"SIP/2.0/UDP [::1];branch=z9hG4bK1", false},             // IPv6
		{"SIP/2.0/UDP a;branch=z9hG4bK1, garbage", false},
	} {
		if got := fastVia([]byte(c.via)); got != c.fast {
			t.Errorf("fastVia(%q) = %v, want %v", c.via, got, c.fast)
		}
	}
}
