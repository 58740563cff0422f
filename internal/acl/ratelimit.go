package acl

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// DefaultRateLimiterMaxTracked is the number of per-IP buckets a
// [RateLimiter] made by [NewRateLimiter] keeps at most.
const DefaultRateLimiterMaxTracked = 1_000_000

// RateLimiter limits requests per source IP with a token bucket: at most
// Rate requests per second on average, with bursts of up to Burst.
//
// It is safe for concurrent use and sharded by a seeded hash of the IP.
// Buckets that have refilled completely are equivalent to absent ones and
// are pruned lazily (at most once per refill time per shard, when a new IP
// arrives). The number of buckets is capped; when a shard is full even
// after pruning, an arbitrary bucket of that shard is dropped (that IP
// starts again with a full bucket).
type RateLimiter struct {
	rate       float64 // tokens per second; 0 = disabled
	burst      float64
	now        func() time.Time
	epoch      time.Time
	sweepEvery int64 // ns
	seed       uint64
	mask       uint64
	capPer     int
	shards     []rlShard
}

type rlShard struct {
	mu        sync.Mutex
	m         map[netip.Addr]bucket
	lastSweep int64
	_         [64]byte
}

type bucket struct {
	tokens float64
	last   int64 // ns since epoch
}

// NewRateLimiter returns a limiter allowing rate requests per second per IP
// with bursts of burst (at least 1), tracking at most
// [DefaultRateLimiterMaxTracked] IPs. A rate of 0 (or negative, NaN or
// infinite) disables it: Allow always returns true. now is the clock (nil
// means time.Now).
func NewRateLimiter(rate float64, burst int, now func() time.Time) *RateLimiter {
	return NewRateLimiterSize(rate, burst, DefaultRateLimiterMaxTracked, now)
}

// NewRateLimiterSize is [NewRateLimiter] tracking at most maxTracked IPs
// (non-positive means the default).
func NewRateLimiterSize(rate float64, burst, maxTracked int, now func() time.Time) *RateLimiter {
	if !(rate > 0) || math.IsInf(rate, 1) {
		return &RateLimiter{}
	}
	if now == nil {
		now = time.Now
	}
	if burst < 1 {
		burst = 1
	}
	if maxTracked <= 0 {
		maxTracked = DefaultRateLimiterMaxTracked
	}
	n := shardCount(maxTracked)
	fill := float64(burst) / rate * 1e9 // ns to refill an empty bucket
	r := &RateLimiter{
		rate:       rate,
		burst:      float64(burst),
		now:        now,
		epoch:      now(),
		sweepEvery: int64(max(min(fill, float64(math.MaxInt64/2)), float64(time.Second))),
		seed:       newSeed(),
		mask:       uint64(n - 1),
		capPer:     max(1, maxTracked/n),
		shards:     make([]rlShard, n),
	}
	for i := range r.shards {
		r.shards[i].m = make(map[netip.Addr]bucket)
	}
	return r
}

// Allow reports whether a request from ip may proceed now, taking a token
// if so. The first request of an unknown IP is always allowed. It does not
// allocate in the steady state.
func (r *RateLimiter) Allow(ip netip.Addr) bool {
	if r.rate == 0 {
		return true
	}
	ip = normalize(ip)
	t := int64(r.now().Sub(r.epoch))
	s := &r.shards[shardOf(ip, r.seed, r.mask)]
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[ip]
	if !ok {
		if len(s.m) >= r.capPer {
			s.makeRoom(r, t)
		} else if len(s.m) >= 64 && t-s.lastSweep >= r.sweepEvery {
			s.sweep(r, t)
		}
		s.m[ip] = bucket{tokens: r.burst - 1, last: t}
		return true
	}
	if d := t - b.last; d > 0 {
		b.tokens = min(r.burst, b.tokens+float64(d)*r.rate/1e9)
		b.last = t
	}
	allowed := b.tokens >= 1
	if allowed {
		b.tokens--
	}
	s.m[ip] = b
	return allowed
}

// Len returns the number of IPs currently tracked.
func (r *RateLimiter) Len() int {
	n := 0
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// Sweep prunes all full (idle) buckets now. Optional; pruning also happens
// lazily.
func (r *RateLimiter) Sweep() {
	if r.rate == 0 {
		return
	}
	t := int64(r.now().Sub(r.epoch))
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		s.sweep(r, t)
		s.mu.Unlock()
	}
}

// sweep deletes buckets that have refilled completely by t.
func (s *rlShard) sweep(r *RateLimiter, t int64) {
	s.lastSweep = t
	for ip, b := range s.m {
		if b.tokens+float64(t-b.last)*r.rate/1e9 >= r.burst {
			delete(s.m, ip)
		}
	}
	if len(s.m) == 0 {
		s.m = make(map[netip.Addr]bucket) // let a flood's memory go
	}
}

// makeRoom frees at least one slot in a full shard: prune idle buckets if
// that has not been done recently, else drop an arbitrary bucket.
func (s *rlShard) makeRoom(r *RateLimiter, t int64) {
	if t-s.lastSweep >= r.sweepEvery {
		s.sweep(r, t)
	}
	for ip := range s.m {
		if len(s.m) < r.capPer {
			break
		}
		delete(s.m, ip)
	}
}
