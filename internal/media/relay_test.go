package media

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// portBase hands each test its own slice of ports below the ephemeral range
// (32768+), so the test clients' port-0 sockets never land in a relay range.
var portBase atomic.Int32

func testRange(t testing.TB, n int) (int, int) {
	t.Helper()
	lo := 20000 + int(portBase.Add(int32(n+2))) - (n + 2)
	return lo, lo + n - 1
}

func newRelay(t testing.TB, cfg Config) *Relay {
	t.Helper()
	if !cfg.AdvertiseIP.IsValid() {
		cfg.AdvertiseIP = loopback
	}
	if !cfg.BindIP.IsValid() {
		cfg.BindIP = loopback
	}
	if cfg.PortMin == 0 {
		cfg.PortMin, cfg.PortMax = testRange(t, 40)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// party is a test phone: one UDP socket on 127.0.0.1.
type party struct {
	t    testing.TB
	conn *net.UDPConn
}

func newParty(t testing.TB) *party {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &party{t: t, conn: c}
}

func (p *party) addr() netip.AddrPort { return p.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (p *party) send(to netip.AddrPort, pkt []byte) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort(pkt, to); err != nil {
		p.t.Fatal(err)
	}
}

// recv waits up to d for a datagram; ok is false on timeout.
func (p *party) recv(d time.Duration) ([]byte, netip.AddrPort, bool) {
	p.t.Helper()
	buf := make([]byte, 4096)
	p.conn.SetReadDeadline(time.Now().Add(d))
	n, from, err := p.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, netip.AddrPort{}, false
		}
		p.t.Fatal(err)
	}
	return buf[:n], unmap(from), true
}

func rtpPacket(pt uint8, seq uint16, ts, ssrc uint32, payload int) []byte {
	b := make([]byte, 12+payload)
	b[0] = 0x80
	b[1] = pt
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	for i := 12; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

// rtcpRR is an empty receiver report (8 bytes).
func rtcpRR(ssrc uint32) []byte {
	b := make([]byte, 8)
	b[0] = 0x80
	b[1] = 201
	binary.BigEndian.PutUint16(b[2:], 1)
	binary.BigEndian.PutUint32(b[4:], ssrc)
	return b
}

func TestForwardBothWays(t *testing.T) {
	r := newRelay(t, Config{})
	s, err := r.Open("call-1")
	if err != nil {
		t.Fatal(err)
	}
	a, b := newParty(t), newParty(t)
	s.Leg(Caller).SetPeer(Peer{RTP: a.addr(), SIPSource: loopback})
	s.Leg(Callee).SetPeer(Peer{RTP: b.addr(), SIPSource: loopback})

	pa := rtpPacket(0, 1, 160, 0xa, 160)
	a.send(s.Leg(Caller).Addr(), pa)
	got, from, ok := b.recv(2 * time.Second)
	if !ok || string(got) != string(pa) {
		t.Fatalf("callee did not get the caller's packet: ok=%v", ok)
	}
	if from != s.Leg(Callee).Addr() {
		t.Errorf("callee got it from %v, want the relay's callee leg %v", from, s.Leg(Callee).Addr())
	}
	pb := rtpPacket(8, 7, 320, 0xb, 160)
	b.send(s.Leg(Callee).Addr(), pb)
	got, from, ok = a.recv(2 * time.Second)
	if !ok || string(got) != string(pb) {
		t.Fatalf("caller did not get the callee's packet: ok=%v", ok)
	}
	if from != s.Leg(Caller).Addr() {
		t.Errorf("caller got it from %v, want %v", from, s.Leg(Caller).Addr())
	}
	st := s.Stats()
	if st[Caller].PacketsIn != 1 || st[Caller].PacketsOut != 1 || st[Callee].PacketsIn != 1 || st[Callee].PacketsOut != 1 {
		t.Errorf("stats = %+v", st)
	}
	if st[Caller].Latched != a.addr() || st[Callee].Latched != b.addr() {
		t.Errorf("latched %v %v, want %v %v", st[Caller].Latched, st[Callee].Latched, a.addr(), b.addr())
	}
	if r.PortsInUse() != 4 {
		t.Errorf("PortsInUse = %d, want 4", r.PortsInUse())
	}
	fin := s.Close()
	if fin[Caller].BytesIn != uint64(len(pa)) {
		t.Errorf("final BytesIn = %d", fin[Caller].BytesIn)
	}
	if r.PortsInUse() != 0 || r.Session("call-1") != nil {
		t.Errorf("after Close: PortsInUse = %d, session %v", r.PortsInUse(), r.Session("call-1"))
	}
}
