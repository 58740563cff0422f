package server

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// quietHeapLimit: a heap larger than this with no garbage collection for a
// whole releaseEvery is collected and handed back to the OS.
const (
	quietHeapLimit = 96 << 20
	releaseEvery   = 30 * time.Second
)

// releaseMemory gives memory back after a load peak. A burst of calls or
// registrations grows the heap (each transaction lives 32 s after it ends);
// when the burst is over nothing allocates, so the Go runtime runs no
// collection and keeps the garbage, and its scavenger returns free pages
// only slowly: the process would show its peak size for a long time. When
// no collection ran for a whole releaseEvery and the heap (objects plus free
// pages) exceeds quietHeapLimit, it collects and returns the free memory to
// the OS (debug.FreeOSMemory). Under steady load collections run on their
// own and this does nothing.
func (s *Server) releaseMemory(ctx context.Context) {
	t := time.NewTicker(releaseEvery)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		last, _ = releaseIfQuiet(last, quietHeapLimit)
	}
}

// releaseIfQuiet collects and returns free memory to the OS when no
// collection ran since the count last and the heap exceeds limit. It
// returns the collection count to pass next time and whether it released.
func releaseIfQuiet(last, limit uint64) (cycles uint64, released bool) {
	samples := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	metrics.Read(samples)
	cycles = value(samples[0])
	if cycles != last || value(samples[1])+value(samples[2]) <= limit {
		return cycles, false
	}
	debug.FreeOSMemory()
	metrics.Read(samples)
	return value(samples[0]), true
}

func value(s metrics.Sample) uint64 {
	if s.Value.Kind() == metrics.KindUint64 {
		return s.Value.Uint64()
	}
	return 0
}
