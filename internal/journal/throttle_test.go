package journal

import (
	"net/netip"
	"testing"
	"time"
)

func TestThrottleOncePerWindowAndPruned(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	th := NewThrottle(time.Minute, func() time.Time { return now })
	a := netip.MustParseAddr("192.0.2.10")
	b := netip.MustParseAddr("192.0.2.11")

	if !th.First(th.Key(a, "2001")) {
		t.Fatal("first event of a/2001 not reported first")
	}
	if th.First(th.Key(a, "2001")) {
		t.Fatal("second event within the window reported first")
	}
	if !th.First(th.Key(a, "2002")) || !th.First(th.Key(b, "2001")) {
		t.Fatal("another user or source not reported first")
	}
	now = now.Add(59 * time.Second)
	if th.First(th.Key(a, "2001")) {
		t.Fatal("event 59 s later reported first")
	}
	now = now.Add(2 * time.Second)
	if !th.First(th.Key(a, "2001")) {
		t.Fatal("event after the window not reported first")
	}

	// A burst of distinct phones is forgotten a window later.
	for i := range 5000 {
		th.First(th.Key(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), "2001"))
	}
	if th.size() < 5000 {
		t.Fatalf("after the burst: %d entries, want >= 5000", th.size())
	}
	now = now.Add(2 * time.Minute)
	th.First(th.Key(a, "2001"))
	if th.size() != 1 {
		t.Fatalf("a window after the burst: %d entries, want 1", th.size())
	}
}

// size is how many pairs the throttle remembers.
func (t *Throttle) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.seen)
}
