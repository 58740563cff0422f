package security

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/guard"
)

// The packet guard with Service as its Policy, as the server wires them.

func newTestGuard(t testing.TB, cfg Config) (*Service, *guard.Guard, *recorder) {
	t.Helper()
	s, _ := newTestService(t, cfg)
	g := guard.New(guard.Config{}, guard.Deps{Policy: s, Now: s.now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rec := &recorder{}
	g.SetTransport(rec)
	return s, g, rec
}

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

// TestFilterHotPathDoesNotAllocate: the guard's common case (a
// well-formed message from an address that is not banned), with this
// policy deciding, allocates nothing.
func TestFilterHotPathDoesNotAllocate(t *testing.T) {
	_, g, _ := newTestGuard(t, Config{RateLimit: 1e9, RateBurst: 1e9})
	from := &net.UDPAddr{IP: net.IPv4(192, 168, 1, 23), Port: 5062}
	tcp := &net.TCPAddr{IP: net.IPv4(192, 168, 1, 23), Port: 40000}
	if n := testing.AllocsPerRun(200, func() {
		if g.Filter("UDP", from, benchRegister) == nil {
			t.Fatal("dropped")
		}
	}); n != 0 {
		t.Errorf("UDP: %v allocations per message, want 0", n)
	}
	if n := testing.AllocsPerRun(200, func() {
		if g.Filter("TCP", tcp, benchRegister) == nil {
			t.Fatal("dropped")
		}
	}); n != 0 {
		t.Errorf("TCP: %v allocations per message, want 0", n)
	}
}

func BenchmarkFilterUDP(b *testing.B) {
	_, g, _ := newTestGuard(b, Config{RateLimit: 1e9, RateBurst: 1e9})
	from := &net.UDPAddr{IP: net.IPv4(192, 168, 1, 23), Port: 5062}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchRegister)))
	for i := 0; i < b.N; i++ {
		g.Filter("UDP", from, benchRegister)
	}
}

func BenchmarkFilterTCP(b *testing.B) {
	_, g, _ := newTestGuard(b, Config{RateLimit: 1e9, RateBurst: 1e9})
	from := &net.TCPAddr{IP: net.IPv4(192, 168, 1, 23), Port: 40000}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchRegister)))
	for i := 0; i < b.N; i++ {
		g.Filter("TCP", from, benchRegister)
	}
}

func TestFilterScannerBanned(t *testing.T) {
	msg := []byte("OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1\r\n" +
		"From: \"sipvicious\"<sip:100@1.1.1.1>;tag=1\r\nTo: \"sipvicious\"<sip:100@1.1.1.1>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\n" +
		"User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n")
	s, g, rec := newTestGuard(t, Config{BanAfter: 3})
	if out := g.Filter("UDP", udpFrom, msg); out != nil {
		t.Fatal("scanner passed")
	}
	if replies, _ := rec.Take(); len(replies) != 0 {
		t.Fatalf("answered a scanner: %q", replies)
	}
	ip := netip.MustParseAddr("192.0.2.7")
	if !s.guard.Banned(ip) {
		t.Fatal("scanner not banned at its first message")
	}
	ok := []byte(strings.Replace(string(msg), "friendly-scanner", "Yealink SIP-T46S", 1))
	if out := g.Filter("UDP", udpFrom, ok); out != nil {
		t.Fatal("banned address passed")
	}
	if s.stats.Scanners.Load() != 1 || s.stats.BannedDropped.Load() != 1 || s.stats.Bans.Load() != 1 {
		t.Errorf("stats scanners=%d banned=%d bans=%d", s.stats.Scanners.Load(), s.stats.BannedDropped.Load(), s.stats.Bans.Load())
	}
}

func TestFilterRateLimit(t *testing.T) {
	msg := []byte("OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:b@example.com>;tag=1\r\n" +
		"To: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
	_, g, _ := newTestGuard(t, Config{RateLimit: 10, RateBurst: 5})
	passed := 0
	for i := 0; i < 50; i++ {
		if g.Filter("UDP", udpFrom, msg) != nil {
			passed++
		}
	}
	if passed != 5 {
		t.Fatalf("passed %d of 50 with burst 5 and a frozen clock", passed)
	}
	other := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 99), Port: 5060}
	if g.Filter("UDP", other, msg) == nil {
		t.Fatal("another address was limited")
	}
}
