package media

import (
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// forwardRig is a relayed call between two loopback parties.
type forwardRig struct {
	a, b   *party
	to     netip.AddrPort
	pkt    []byte
	buf    []byte
	s      *Session
	seq    uint16
	failed bool
}

func newForwardRig(tb testing.TB) *forwardRig {
	r := newRelay(tb, Config{})
	a, b := newParty(tb), newParty(tb)
	s := openCall(tb, r, "bench", a, b, false, false)
	return &forwardRig{a: a, b: b, to: s.Leg(Caller).Addr(), pkt: rtpPacket(0, 0, 0, 1, 160), buf: make([]byte, 2048), s: s}
}

// one sends n G.711 packets (20 ms, 172 bytes) from the caller and reads
// them at the callee; it allocates nothing itself.
func (f *forwardRig) one(tb testing.TB, n int) {
	for range n {
		f.seq++
		f.pkt[2], f.pkt[3] = byte(f.seq>>8), byte(f.seq)
		if _, err := f.a.conn.WriteToUDPAddrPort(f.pkt, f.to); err != nil {
			tb.Fatal(err)
		}
	}
	f.b.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range n {
		if _, _, err := f.b.conn.ReadFromUDPAddrPort(f.buf); err != nil {
			tb.Fatalf("callee read: %v", err)
		}
	}
}

// TestForwardNoAllocs: forwarding a packet allocates nothing (read, check,
// latch, stats, write; the test parties allocate nothing either).
func TestForwardNoAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	f := newForwardRig(t)
	f.one(t, 10) // latch, first-packet bookkeeping
	if avg := testing.AllocsPerRun(500, func() { f.one(t, 1) }); avg > 0 {
		t.Errorf("%v allocations per forwarded packet, want 0", avg)
	}
}

// BenchmarkRelayForward: G.711 packets through one session over loopback,
// caller to callee. "pingpong" sends one packet and waits for it (latency
// of the path: 2 sends, 2 receives, the relay goroutine's wake-up);
// "burst32" sends 32 and then reads 32 (throughput). ns/op is per packet.
func BenchmarkRelayForward(b *testing.B) {
	for _, tc := range []struct {
		name  string
		burst int
	}{{"pingpong", 1}, {"burst32", 32}} {
		b.Run(tc.name, func(b *testing.B) {
			f := newForwardRig(b)
			f.one(b, 10)
			b.ReportAllocs()
			b.ResetTimer()
			n := 0
			for n < b.N {
				k := min(tc.burst, b.N-n)
				f.one(b, k)
				n += k
			}
			b.StopTimer()
			st := f.s.Stats()[Caller]
			if st.Lost != 0 {
				b.Errorf("lost %d packets", st.Lost)
			}
		})
	}
}

// BenchmarkSessionMemory: memory a relayed call holds in the process (heap
// and goroutine stacks of 4 sockets with their readers), measured over 250
// open sessions with traffic; reported as bytes/session. One op opens,
// feeds and closes the 250 sessions.
func BenchmarkSessionMemory(b *testing.B) {
	const n = 250
	lo, hi := testRange(b, 4*n+8)
	r := newRelay(b, Config{PortMin: lo, PortMax: hi})
	pa, pb := newParty(b), newParty(b)
	var before, after runtime.MemStats
	sessions := make([]*Session, 0, n)
	b.ReportAllocs()
	for b.Loop() {
		sessions = sessions[:0]
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range n {
			s, err := r.Open(strconv.Itoa(i))
			if err != nil {
				b.Fatal(err)
			}
			s.Leg(Caller).SetPeer(Peer{RTP: pa.addr(), SIPSource: loopback})
			s.Leg(Callee).SetPeer(Peer{RTP: pb.addr(), SIPSource: loopback})
			pa.send(s.Leg(Caller).Addr(), rtpPacket(0, 1, 0, 1, 160))
			sessions = append(sessions, s)
		}
		waitStats(b, sessions[n-1], "last session's packet", func(st [2]LegStats) bool { return st[Caller].PacketsIn == 1 })
		runtime.GC()
		runtime.ReadMemStats(&after)
		for _, s := range sessions {
			s.Close()
		}
	}
	used := int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)
	b.ReportMetric(float64(used)/n, "bytes/session")
}

// BenchmarkHandle: the relay's own work per packet without the socket
// calls (classify, latch check, counters, loss and jitter, destination).
func BenchmarkHandle(b *testing.B) {
	r := newRelay(b, Config{})
	s := newSession(r, "handle") // no sockets: the write is skipped
	src := netip.MustParseAddrPort("127.0.0.2:5004")
	s.Leg(Caller).SetPeer(Peer{RTP: src, SIPSource: src.Addr()})
	s.Leg(Callee).SetPeer(Peer{RTP: netip.MustParseAddrPort("127.0.0.3:6000")})
	pkt := rtpPacket(0, 0, 0, 1, 160)
	l := s.Leg(Caller)
	b.ReportAllocs()
	seq := uint16(0)
	for b.Loop() {
		seq++
		pkt[2], pkt[3] = byte(seq>>8), byte(seq)
		s.handle(l, sockRTP, pkt, src, false, false)
	}
}
