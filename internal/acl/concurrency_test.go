package acl

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrent hammers a Guard, a RateLimiter and a Set-swapping reader
// from many goroutines; run with -race. It also checks invariants that a
// lost update would break.
func TestConcurrent(t *testing.T) {
	const workers = 16
	const iters = 2000
	c := newFakeClock()
	g := NewGuard(GuardConfig{MaxFailures: 5, Window: time.Hour, BanFor: time.Hour, MaxTracked: 4096, MaxBans: 4096}, c.Now)
	g.SetExempt(func(ip netip.Addr) bool { return ip.Is4() && ip.As4()[0] == 10 })
	r := NewRateLimiter(1, 50, c.Now)

	var cur atomic.Pointer[Set]
	cur.Store(NewSet([]List{{Name: "lan", Nodes: []Node{mustNode(t, true, "192.0.2.0/24")}}}))

	var bans atomic.Int64
	var allowedShared atomic.Int64
	shared := netip.MustParseAddr("198.51.100.1")
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			// Each worker owns one IP and fails it exactly MaxFailures times,
			// interleaved with noise: exactly one ban per worker must result.
			own := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(w)})
			for i := 0; i < iters; i++ {
				noise := netip.AddrFrom4([4]byte{192, 0, byte(w), byte(i)})
				switch i % 8 {
				case 0:
					g.Fail(noise, "noise")
				case 1:
					g.Succeed(noise)
				case 2:
					g.Banned(noise)
					g.Banned(own)
				case 3:
					if r.Allow(shared) {
						allowedShared.Add(1)
					}
					r.Allow(noise)
				case 4:
					if l, ok := cur.Load().Get("lan"); ok {
						l.Decide(noise)
					}
				case 5:
					if i%400 == 5 {
						cur.Store(NewSet([]List{{Name: "lan", DefaultAllow: i%2 == 0}}))
						_ = g.List()
						g.Sweep()
						r.Sweep()
					}
				case 6:
					g.Fail(netip.AddrFrom4([4]byte{10, 0, byte(w), byte(i)}), "exempt")
				case 7:
					if i%16 == 7 {
						g.Add(Ban{IP: noise, Reason: "manual", Until: c.Now().Add(time.Minute)})
						g.Remove(noise)
					}
				}
				if i%(iters/5) == 0 {
					if _, ok := g.Fail(own, "own"); ok {
						bans.Add(1)
					}
				}
			}
		}(w)
	}
	wg.Wait()
	if got := bans.Load(); got != workers {
		t.Errorf("own-IP bans = %d, want %d", got, workers)
	}
	if got := allowedShared.Load(); got != 50 {
		t.Errorf("shared IP allowed %d times with a frozen clock, want burst 50", got)
	}
	for _, b := range g.List() {
		if b.IP.Is4() && b.IP.As4()[0] == 10 {
			t.Errorf("exempt IP banned: %+v", b)
		}
	}
}
