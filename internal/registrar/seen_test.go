package registrar

import (
	"net/netip"
	"testing"
	"time"
)

func TestFirstChallengeOncePerMinuteAndPruned(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r := New(Config{}, nil, nil, nil, nil, nil, nil)
	r.now = func() time.Time { return now }
	a := netip.MustParseAddr("192.0.2.10")
	b := netip.MustParseAddr("192.0.2.11")

	if !r.firstChallenge(a, "2001") {
		t.Fatal("first challenge of a/2001 not reported first")
	}
	if r.firstChallenge(a, "2001") {
		t.Fatal("second challenge within the minute reported first")
	}
	if !r.firstChallenge(a, "2002") || !r.firstChallenge(b, "2001") {
		t.Fatal("another user or source not reported first")
	}
	now = now.Add(59 * time.Second)
	if r.firstChallenge(a, "2001") {
		t.Fatal("challenge 59 s later reported first")
	}
	now = now.Add(2 * time.Second)
	if !r.firstChallenge(a, "2001") {
		t.Fatal("challenge after a minute not reported first")
	}

	// A burst of distinct phones is forgotten a minute later: the map
	// shrinks back to the pairs seen since.
	for i := range 5000 {
		r.firstChallenge(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), "2001")
	}
	if len(r.seen) < 5000 {
		t.Fatalf("after the burst: %d entries, want >= 5000", len(r.seen))
	}
	now = now.Add(2 * time.Minute)
	r.firstChallenge(a, "2001")
	if len(r.seen) != 1 {
		t.Fatalf("a minute after the burst: %d entries, want 1", len(r.seen))
	}
}
