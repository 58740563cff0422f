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

func newPartyAt(t testing.TB, ip string) *party {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &party{t: t, conn: c}
}

// waitStats polls the session's stats until ok returns true (5 s deadline).
func waitStats(t testing.TB, s *Session, what string, ok func(st [2]LegStats) bool) [2]LegStats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := s.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; stats %+v", what, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// expect reads one datagram at p and checks it is want.
func (p *party) expect(want []byte, what string) netip.AddrPort {
	p.t.Helper()
	got, from, ok := p.recv(3 * time.Second)
	if !ok {
		p.t.Fatalf("%s: nothing arrived", what)
	}
	if string(got) != string(want) {
		p.t.Fatalf("%s: got %x, want %x", what, got, want)
	}
	return from
}

// openCall opens a session with both legs' peers set to a and b (signalled =
// their sockets, SIP source = their IPs).
func openCall(t testing.TB, r *Relay, id string, a, b *party, muxA, muxB bool) *Session {
	t.Helper()
	s, err := r.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	s.Leg(Caller).SetPeer(Peer{RTP: a.addr(), RTCPMux: muxA, SIPSource: a.addr().Addr()})
	s.Leg(Callee).SetPeer(Peer{RTP: b.addr(), RTCPMux: muxB, SIPSource: b.addr().Addr()})
	return s
}

// rtcpAddr is the RTCP socket of a leg.
func rtcpAddr(l *Leg) netip.AddrPort { return netip.AddrPortFrom(l.Addr().Addr(), l.RTCPPort()) }

// TestForwardRTCP: RTCP between two non-muxing parties goes RTCP port to
// RTCP port, from the relay's RTCP sockets.
func TestForwardRTCP(t *testing.T) {
	r := newRelay(t, Config{})
	a, b := newParty(t), newParty(t)
	aRTCP, bRTCP := newParty(t), newParty(t)
	s, err := r.Open("rtcp")
	if err != nil {
		t.Fatal(err)
	}
	s.Leg(Caller).SetPeer(Peer{RTP: a.addr(), RTCP: aRTCP.addr(), SIPSource: loopback})
	s.Leg(Callee).SetPeer(Peer{RTP: b.addr(), RTCP: bRTCP.addr(), SIPSource: loopback})

	sr := rtcpRR(0xa)
	aRTCP.send(rtcpAddr(s.Leg(Caller)), sr)
	if from := bRTCP.expect(sr, "caller's RTCP at the callee"); from != rtcpAddr(s.Leg(Callee)) {
		t.Errorf("from %v, want the callee leg's RTCP socket %v", from, rtcpAddr(s.Leg(Callee)))
	}
	rr := rtcpRR(0xb)
	bRTCP.send(rtcpAddr(s.Leg(Callee)), rr)
	aRTCP.expect(rr, "callee's RTCP at the caller")
	st := s.Stats()
	if st[Caller].LatchedRTCP != aRTCP.addr() || st[Callee].LatchedRTCP != bRTCP.addr() {
		t.Errorf("RTCP latched %v %v", st[Caller].LatchedRTCP, st[Callee].LatchedRTCP)
	}
	if st[Caller].Latched.IsValid() {
		t.Errorf("RTCP latched the RTP slot: %v", st[Caller].Latched)
	}
}

// TestForwardRTCPMux: a muxing caller sends RTP and RTCP on one port; the
// relay demuxes by packet type and sends the RTCP to the non-muxing
// callee's RTCP port, and the callee's RTCP back to the caller's RTP port
// from the caller leg's RTP socket.
func TestForwardRTCPMux(t *testing.T) {
	r := newRelay(t, Config{})
	a, b, bRTCP := newParty(t), newParty(t), newParty(t)
	s, err := r.Open("mux")
	if err != nil {
		t.Fatal(err)
	}
	s.Leg(Caller).SetPeer(Peer{RTP: a.addr(), RTCPMux: true, SIPSource: loopback})
	s.Leg(Callee).SetPeer(Peer{RTP: b.addr(), RTCP: bRTCP.addr(), SIPSource: loopback})

	rtp := rtpPacket(0, 1, 0, 0xa, 160)
	a.send(s.Leg(Caller).Addr(), rtp)
	b.expect(rtp, "caller's RTP at the callee")
	rtcp := rtcpRR(0xa)
	rtcp[1] = 200 // SR type in the mux range (marker bit + PT 72)
	a.send(s.Leg(Caller).Addr(), rtcp)
	bRTCP.expect(rtcp, "caller's muxed RTCP at the callee's RTCP port")

	back := rtcpRR(0xb)
	bRTCP.send(rtcpAddr(s.Leg(Callee)), back)
	if from := a.expect(back, "callee's RTCP at the muxing caller"); from != s.Leg(Caller).Addr() {
		t.Errorf("muxed RTCP came from %v, want the RTP socket %v", from, s.Leg(Caller).Addr())
	}
	st := s.Stats()
	if st[Caller].PacketsIn != 2 || st[Caller].Lost != 0 {
		t.Errorf("caller in = %d lost %d, want 2 and 0 (RTCP must not count as RTP)", st[Caller].PacketsIn, st[Caller].Lost)
	}
}

// TestLatchSignalled: (a) a packet from the signalled address latches even
// outside the window; another source afterwards is stray and not forwarded.
func TestLatchSignalled(t *testing.T) {
	r := newRelay(t, Config{LatchWindow: time.Nanosecond})
	a, b := newPartyAt(t, "127.0.0.2"), newPartyAt(t, "127.0.0.3")
	evil := newPartyAt(t, "127.0.0.4")
	s, err := r.Open("sig")
	if err != nil {
		t.Fatal(err)
	}
	s.Leg(Caller).SetPeer(Peer{RTP: a.addr(), SIPSource: netip.MustParseAddr("127.0.0.9")})
	s.Leg(Callee).SetPeer(Peer{RTP: b.addr(), SIPSource: b.addr().Addr()})

	// Before latching, a stranger outside the window is refused.
	bad := rtpPacket(0, 900, 0, 0xe, 20)
	evil.send(s.Leg(Caller).Addr(), bad)
	p1 := rtpPacket(0, 1, 0, 0xa, 20)
	a.send(s.Leg(Caller).Addr(), p1)
	b.expect(p1, "signalled caller's packet")
	// After latching, the stranger is stray and cannot redirect.
	evil.send(s.Leg(Caller).Addr(), bad)
	p2 := rtpPacket(0, 2, 160, 0xa, 20)
	a.send(s.Leg(Caller).Addr(), p2)
	b.expect(p2, "the next packet at the callee is the caller's (the stray one was dropped)")
	// Media for the caller still goes to the latched address, not the stranger.
	pb := rtpPacket(0, 1, 0, 0xb, 20)
	b.send(s.Leg(Callee).Addr(), pb)
	a.expect(pb, "callee's packet at the latched caller")

	st := s.Stats()[Caller]
	if st.Latched != a.addr() || st.Stray != 2 || st.StraySource != evil.addr() || st.PacketsIn != 2 {
		t.Errorf("caller stats: latched %v stray %d from %v in %d; want %v 2 %v 2", st.Latched, st.Stray, st.StraySource, st.PacketsIn, a.addr(), evil.addr())
	}
}

// TestLatchNATPort: (b) the party's NAT changed the port: a packet from the
// SIP source IP latches although it is not the signalled address and the
// window is over; media for the party then goes to the NAT's port, not to
// the signalled (private) one.
func TestLatchNATPort(t *testing.T) {
	r := newRelay(t, Config{LatchWindow: time.Nanosecond})
	nat := newPartyAt(t, "127.0.0.2")     // what the NAT shows
	private := newPartyAt(t, "127.0.0.5") // what the SDP says (never sends)
	b := newPartyAt(t, "127.0.0.3")
	s, err := r.Open("nat")
	if err != nil {
		t.Fatal(err)
	}
	s.Leg(Caller).SetPeer(Peer{RTP: private.addr(), SIPSource: nat.addr().Addr()})
	s.Leg(Callee).SetPeer(Peer{RTP: b.addr(), SIPSource: b.addr().Addr()})

	p := rtpPacket(0, 1, 0, 0xa, 20)
	nat.send(s.Leg(Caller).Addr(), p)
	b.expect(p, "caller's packet from behind NAT")
	pb := rtpPacket(0, 1, 0, 0xb, 20)
	b.send(s.Leg(Callee).Addr(), pb)
	nat.expect(pb, "callee's packet at the NAT's address")
	if st := s.Stats()[Caller]; st.Latched != nat.addr() || st.Signalled != private.addr() {
		t.Errorf("latched %v signalled %v, want %v %v", st.Latched, st.Signalled, nat.addr(), private.addr())
	}
}

// TestLatchWindow: (c) within the window the first source latches whatever
// it is (SIP ALG); after the window a source matching neither (a) nor (b)
// does not, and nothing from it is forwarded.
func TestLatchWindow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window time.Duration
		latch  bool
	}{{"inside", time.Hour, true}, {"after", time.Nanosecond, false}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRelay(t, Config{LatchWindow: tc.window})
			alg := newPartyAt(t, "127.0.0.7")
			signalled := newPartyAt(t, "127.0.0.5")
			b := newPartyAt(t, "127.0.0.3")
			s, err := r.Open("win")
			if err != nil {
				t.Fatal(err)
			}
			s.Leg(Caller).SetPeer(Peer{RTP: signalled.addr(), SIPSource: netip.MustParseAddr("127.0.0.6")})
			s.Leg(Callee).SetPeer(Peer{RTP: b.addr(), SIPSource: b.addr().Addr()})
			p := rtpPacket(0, 1, 0, 0xa, 20)
			alg.send(s.Leg(Caller).Addr(), p)
			if tc.latch {
				b.expect(p, "packet within the window")
			} else {
				// The signalled party's packet is the first to arrive.
				q := rtpPacket(0, 2, 0, 0xa, 20)
				signalled.send(s.Leg(Caller).Addr(), q)
				b.expect(q, "signalled party's packet (the stranger's was dropped)")
			}
			st := s.Stats()[Caller]
			if tc.latch && (st.Latched != alg.addr() || st.Stray != 0) {
				t.Errorf("latched %v stray %d, want %v 0", st.Latched, st.Stray, alg.addr())
			}
			if !tc.latch && (st.Latched != signalled.addr() || st.Stray != 1 || st.StraySource != alg.addr()) {
				t.Errorf("latched %v stray %d from %v, want %v 1 %v", st.Latched, st.Stray, st.StraySource, signalled.addr(), alg.addr())
			}
		})
	}
}

// TestLatchReopenedBySetPeer: a re-INVITE (SetPeer again) moves the party:
// the new address latches, the old one becomes stray.
func TestLatchReopenedBySetPeer(t *testing.T) {
	r := newRelay(t, Config{LatchWindow: time.Nanosecond})
	a1, a2 := newPartyAt(t, "127.0.0.2"), newPartyAt(t, "127.0.0.12")
	b := newPartyAt(t, "127.0.0.3")
	s := openCall(t, r, "reinvite", a1, b, false, false)
	p := rtpPacket(0, 1, 0, 0xa, 20)
	a1.send(s.Leg(Caller).Addr(), p)
	b.expect(p, "first address")

	s.Leg(Caller).SetPeer(Peer{RTP: a2.addr(), SIPSource: a2.addr().Addr()})
	// Before the new address sends, media for the caller goes to it (signalled).
	pb := rtpPacket(0, 1, 0, 0xb, 20)
	b.send(s.Leg(Callee).Addr(), pb)
	a2.expect(pb, "callee's packet at the re-INVITE's address")
	a1.send(s.Leg(Caller).Addr(), rtpPacket(0, 2, 160, 0xa, 20))
	q := rtpPacket(0, 3, 320, 0xa, 20)
	a2.send(s.Leg(Caller).Addr(), q)
	b.expect(q, "new address's packet (the old address is stray)")
	if st := s.Stats()[Caller]; st.Latched != a2.addr() || st.Stray != 1 || st.StraySource != a1.addr() {
		t.Errorf("latched %v stray %d from %v", st.Latched, st.Stray, st.StraySource)
	}
}

// TestNoDestinationNoForward: nothing is forwarded to a party whose leg has
// no SetPeer yet, and packets arriving before SetPeer are dropped (Early).
func TestNoDestinationNoForward(t *testing.T) {
	r := newRelay(t, Config{})
	a, b := newParty(t), newParty(t)
	s, err := r.Open("nodest")
	if err != nil {
		t.Fatal(err)
	}
	b.send(s.Leg(Callee).Addr(), rtpPacket(0, 1, 0, 0xb, 20)) // callee leg has no peer
	s.Leg(Caller).SetPeer(Peer{RTP: a.addr(), SIPSource: loopback})
	a.send(s.Leg(Caller).Addr(), rtpPacket(0, 1, 0, 0xa, 20)) // no destination on the callee side
	st := waitStats(t, s, "both packets counted", func(st [2]LegStats) bool {
		return st[Callee].Early == 1 && st[Caller].PacketsIn == 1
	})
	if st[Callee].PacketsOut != 0 || st[Caller].PacketsOut != 0 {
		t.Errorf("something was forwarded: %+v", st)
	}
	if _, _, ok := a.recv(50 * time.Millisecond); ok {
		t.Error("the caller received the early packet")
	}
}

// TestMalformedDropped: runts, other versions, headers that do not fit,
// RTP on the RTCP port and oversized datagrams are counted and never
// forwarded.
func TestMalformedDropped(t *testing.T) {
	r := newRelay(t, Config{})
	a, b := newParty(t), newParty(t)
	s := openCall(t, r, "bad", a, b, false, false)
	ext := rtpPacket(0, 5, 0, 1, 0)
	ext[0] |= 0x10 // extension bit, no extension
	cc := rtpPacket(0, 5, 0, 1, 8)
	cc[0] |= 0x0f // 15 CSRCs in 8 bytes
	badRTCP := rtcpRR(1)
	badRTCP[3] = 40 // length beyond the datagram
	big := rtpPacket(0, 5, 0, 1, 3000)
	cases := [][]byte{
		{}, {0x80}, make([]byte, 11), rtpPacket(0, 1, 0, 1, 0)[:11],
		{0x40, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0},                                              // version 1
		{0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, // STUN
		{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},                                          // DTLS
		ext, cc, badRTCP, big,
	}
	for _, c := range cases {
		a.send(s.Leg(Caller).Addr(), c)
	}
	a.send(rtcpAddr(s.Leg(Caller)), rtpPacket(0, 1, 0, 1, 20)) // RTP on the RTCP port
	want := uint64(len(cases) + 1)
	waitStats(t, s, "malformed counted", func(st [2]LegStats) bool { return st[Caller].Malformed == want })
	good := rtpPacket(0, 9, 0, 1, 20)
	a.send(s.Leg(Caller).Addr(), good)
	b.expect(good, "the first packet forwarded is the valid one")
	st := s.Stats()[Caller]
	if st.PacketsIn != 1 || st.Latched != a.addr() {
		t.Errorf("in %d latched %v: malformed packets must neither count nor latch", st.PacketsIn, st.Latched)
	}
}

// TestNoLoopThroughOwnPorts: an SDP that points a leg at the relay's own
// port does not make the relay feed itself: the copy that comes back in is
// dropped as stray instead of latching (rule (c) would otherwise accept it)
// and being sent on.
func TestNoLoopThroughOwnPorts(t *testing.T) {
	r := newRelay(t, Config{LatchWindow: time.Hour})
	a := newParty(t)
	s, err := r.Open("loop")
	if err != nil {
		t.Fatal(err)
	}
	s.Leg(Caller).SetPeer(Peer{RTP: a.addr(), SIPSource: loopback})
	s.Leg(Callee).SetPeer(Peer{RTP: s.Leg(Callee).Addr(), SIPSource: netip.MustParseAddr("127.0.0.9")})
	a.send(s.Leg(Caller).Addr(), rtpPacket(0, 1, 0, 0xa, 20))
	st := waitStats(t, s, "looped packet dropped", func(st [2]LegStats) bool { return st[Callee].Stray >= 1 })
	if st[Callee].PacketsIn != 0 || st[Callee].Latched.IsValid() || st[Caller].PacketsOut != 0 {
		t.Errorf("the relay fed itself: callee in %d latched %v, caller out %d", st[Callee].PacketsIn, st[Callee].Latched, st[Caller].PacketsOut)
	}
}
