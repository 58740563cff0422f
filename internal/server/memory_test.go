package server

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return value(s[0])
}

// TestMemWatch: garbage left by a burst is collected and returned once no
// collection ran for the quiet time, and only once; a quiet heap is probed
// (collected) every probe interval, less often while probes find nothing.
func TestMemWatch(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no automatic GC during the test
	runtime.GC()
	var sink [][]byte
	for i := 0; i < 64; i++ {
		sink = append(sink, make([]byte, 1<<20))
	}
	runtime.KeepAlive(sink)
	sink = nil
	before := heapObjects()
	if before < 64<<20 {
		t.Fatalf("setup: heap objects %d, want at least 64 MiB of garbage", before)
	}
	now := time.Unix(1_800_000_000, 0)
	at := func(d time.Duration) time.Time { return now.Add(d) }
	m := memWatch{quiet: 10 * time.Second, slack: 16 << 20, probe: 30 * time.Second, probeMax: 2 * time.Minute}
	if m.check(at(0)) {
		t.Fatal("released at the first look (no quiet time observed yet)")
	}
	if m.check(at(5 * time.Second)) {
		t.Fatal("released after 5 s of a 10 s quiet time")
	}
	if !m.check(at(11 * time.Second)) {
		t.Fatal("64 MiB of garbage not released after the quiet time")
	}
	if after := heapObjects(); after > before/2 {
		t.Fatalf("heap objects %d -> %d: the garbage was not collected", before, after)
	}
	if m.check(at(30 * time.Second)) {
		t.Fatal("released again 19 s later although the heap holds no known garbage")
	}
	// Probes: 30 s after the release, then (nothing freed) 60 s, then 120 s.
	for _, c := range []struct {
		d    time.Duration
		want bool
	}{{40 * time.Second, false}, {41 * time.Second, true}, {100 * time.Second, false}, {101 * time.Second, true},
		{220 * time.Second, false}, {221 * time.Second, true}, {340 * time.Second, false}, {341 * time.Second, true}} {
		if got := m.check(at(c.d)); got != c.want {
			t.Fatalf("at %v: released = %v, want %v", c.d, got, c.want)
		}
	}
}
