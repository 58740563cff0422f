package acl

import (
	"math"
	"net/netip"
	"testing"
	"time"
)

func TestRateLimiter(t *testing.T) {
	type step struct {
		advance time.Duration
		ip      string
		want    []bool // results of consecutive Allow calls
	}
	T, F := true, false
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{
			name: "burst then refused then refilled", rate: 10, burst: 3,
			steps: []step{
				{0, "192.0.2.1", []bool{T, T, T, F, F}},
				{0, "192.0.2.2", []bool{T, T, T, F}}, // independent bucket
				{50 * time.Millisecond, "192.0.2.1", []bool{F}},
				{50 * time.Millisecond, "192.0.2.1", []bool{T, F}}, // 100ms = 1 token
				{time.Second, "192.0.2.1", []bool{T, T, T, F}},     // capped at burst
				{0, "::ffff:192.0.2.1", []bool{F}},                 // v4-mapped shares the bucket
			},
		},
		{
			name: "fractional rate", rate: 0.5, burst: 1,
			steps: []step{
				{0, "2001:db8::1", []bool{T, F}},
				{time.Second, "2001:db8::1", []bool{F}},
				{time.Second, "2001:db8::1", []bool{T, F}},
			},
		},
		{
			name: "burst below 1 is 1", rate: 1, burst: 0,
			steps: []step{
				{0, "192.0.2.1", []bool{T, F}},
				{time.Second, "192.0.2.1", []bool{T, F}},
			},
		},
		{
			name: "rate 0 disables", rate: 0, burst: 1,
			steps: []step{{0, "192.0.2.1", []bool{T, T, T, T, T, T, T, T}}},
		},
		{
			name: "negative rate disables", rate: -5, burst: 1,
			steps: []step{{0, "192.0.2.1", []bool{T, T, T}}},
		},
		{
			name: "NaN rate disables", rate: math.NaN(), burst: 1,
			steps: []step{{0, "192.0.2.1", []bool{T, T, T}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeClock()
			r := NewRateLimiter(tt.rate, tt.burst, c.Now)
			for i, s := range tt.steps {
				c.Advance(s.advance)
				ip := netip.MustParseAddr(s.ip)
				for j, want := range s.want {
					if got := r.Allow(ip); got != want {
						t.Fatalf("step %d call %d: Allow(%s) = %v, want %v", i, j, ip, got, want)
					}
				}
			}
		})
	}
}

func TestRateLimiterBounded(t *testing.T) {
	const maxTracked = 128
	c := newFakeClock()
	r := NewRateLimiterSize(100, 10, maxTracked, c.Now)
	for i := 0; i < 20000; i++ {
		r.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		if i%1000 == 0 {
			if n := r.Len(); n > maxTracked {
				t.Fatalf("after %d IPs Len = %d > %d", i+1, n, maxTracked)
			}
		}
	}
	if n := r.Len(); n > maxTracked {
		t.Fatalf("Len = %d > %d", n, maxTracked)
	}
	// Idle (refilled) buckets are pruned.
	c.Advance(time.Second)
	r.Sweep()
	if n := r.Len(); n != 0 {
		t.Errorf("Len after refill+Sweep = %d, want 0", n)
	}
}

func TestRateLimiterLazyPrune(t *testing.T) {
	c := newFakeClock()
	r := NewRateLimiterSize(10, 1, 1<<20, c.Now)
	for i := 0; i < 5000; i++ {
		r.Allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	before := r.Len()
	c.Advance(2 * time.Second) // > refill time and > 1s
	for i := 0; i < 5000; i++ {
		r.Allow(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}))
	}
	if n := r.Len(); n >= before+5000 {
		t.Errorf("Len = %d: idle buckets not pruned lazily (before %d)", n, before)
	}
}
