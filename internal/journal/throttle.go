package journal

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// Throttle decides which repeated events are worth a journal entry: the
// first of each (source address, user) pair within a window (a phone
// re-registering or calling every few seconds is challenged each time;
// one entry a minute says as much). Create with NewThrottle; safe for
// concurrent use. Memory: 16 bytes per pair seen within the last window,
// pruned once per window; the map is rebuilt when most entries went, so a
// burst's memory is given back.
type Throttle struct {
	window int64 // ns
	now    func() time.Time
	seed   maphash.Seed

	mu    sync.Mutex
	seen  map[uint64]int64 // hash of the pair -> Unix ns of its last entry
	prune int64            // Unix ns of the next prune
}

// throttleMax bounds the map: a flood of distinct pairs within one window
// (a scan) starts it afresh rather than growing without limit.
const throttleMax = 200_000

// NewThrottle returns a throttle with the given window; now is the clock
// (nil = time.Now).
func NewThrottle(window time.Duration, now func() time.Time) *Throttle {
	if now == nil {
		now = time.Now
	}
	return &Throttle{window: int64(window), now: now, seed: maphash.MakeSeed(), seen: map[uint64]int64{}}
}

// Key identifies the pair of src and user (a 64-bit hash; a collision only
// skips one journal entry or settles the wrong held one).
func (t *Throttle) Key(src netip.Addr, user string) uint64 {
	var h maphash.Hash
	h.SetSeed(t.seed)
	a16 := src.As16()
	h.Write(a16[:])
	h.WriteString(user)
	return h.Sum64()
}

// First reports whether an event of the pair key (see Key) is the first
// within the window, and remembers it.
func (t *Throttle) First(key uint64) bool {
	now := t.now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	if now >= t.prune {
		t.prune = now + t.window
		before := len(t.seen)
		for k, at := range t.seen {
			if now-at >= t.window {
				delete(t.seen, k)
			}
		}
		if len(t.seen) < before/4 { // Go maps never shrink: rebuild
			m := make(map[uint64]int64, len(t.seen))
			for k, at := range t.seen {
				m[k] = at
			}
			t.seen = m
		}
	}
	if at, ok := t.seen[key]; ok && now-at < t.window {
		return false
	}
	if len(t.seen) >= throttleMax {
		clear(t.seen)
	}
	t.seen[key] = now
	return true
}
