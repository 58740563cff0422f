package server

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return value(s[0])
}

// TestReleaseIfQuiet: garbage left by a burst is collected and returned
// when no collection ran since the last look; with collections running
// (the count moved) nothing is forced.
func TestReleaseIfQuiet(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no automatic GC during the test
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
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	cycles := value(s[0])
	if _, released := releaseIfQuiet(cycles+1, 32<<20); released {
		t.Fatal("released although collections ran since the last look")
	}
	next, released := releaseIfQuiet(cycles, 32<<20)
	if !released || next <= cycles {
		t.Fatalf("quiet heap of %d bytes not released (cycles %d -> %d)", before, cycles, next)
	}
	if after := heapObjects(); after > before/2 {
		t.Fatalf("heap objects %d -> %d: the garbage was not collected", before, after)
	}
}
