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
// collection ran for the quiet time, and only once: a heap that holds only
// live objects is left alone.
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
	var m memWatch
	if m.check(now, 10*time.Second, 16<<20) {
		t.Fatal("released at the first look (no quiet time observed yet)")
	}
	if m.check(now.Add(5*time.Second), 10*time.Second, 16<<20) {
		t.Fatal("released after 5 s of a 10 s quiet time")
	}
	if !m.check(now.Add(11*time.Second), 10*time.Second, 16<<20) {
		t.Fatal("64 MiB of garbage not released after the quiet time")
	}
	if after := heapObjects(); after > before/2 {
		t.Fatalf("heap objects %d -> %d: the garbage was not collected", before, after)
	}
	if m.check(now.Add(30*time.Second), 10*time.Second, 16<<20) {
		t.Fatal("released again although the heap holds no garbage")
	}
}
