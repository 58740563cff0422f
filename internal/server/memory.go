package server

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Memory release after a load peak: every releaseCheck, when no garbage
// collection ran for releaseQuiet and the heap holds more than
// releaseSlack (and more than an eighth of the live heap) beyond its live
// objects, the server collects and returns the free memory to the OS.
const (
	releaseCheck = 2 * time.Second
	releaseQuiet = 10 * time.Second
	releaseSlack = 16 << 20
)

// releaseMemory gives memory back after a load peak. A burst of calls or
// registrations grows the heap to twice the live objects (Go's default
// GOGC); when the burst is over little allocates, so the runtime runs no
// collection and keeps the garbage, and its scavenger returns free pages
// only slowly: the process would show its peak size for many minutes.
// Under steady load collections run on their own and this does nothing;
// after a quiet releaseQuiet it costs one collection.
func (s *Server) releaseMemory(ctx context.Context) {
	t := time.NewTicker(releaseCheck)
	defer t.Stop()
	var m memWatch
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.check(now, releaseQuiet, releaseSlack)
		}
	}
}

// memWatch remembers when the collection count last moved.
type memWatch struct {
	cycles  uint64
	changed time.Time
}

// check releases memory when no collection ran for quiet (as seen by
// earlier checks) and the heap exceeds its live objects by more than slack
// and by more than an eighth. It reports whether it released.
func (m *memWatch) check(now time.Time, quiet time.Duration, slack uint64) bool {
	samples := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	metrics.Read(samples)
	cycles := value(samples[0])
	if cycles != m.cycles || m.changed.IsZero() {
		m.cycles, m.changed = cycles, now
		return false
	}
	held := value(samples[1]) + value(samples[2])
	live := value(samples[3])
	if now.Sub(m.changed) < quiet || held <= live+slack || held <= live+live/8 {
		return false
	}
	debug.FreeOSMemory()
	metrics.Read(samples)
	m.cycles, m.changed = value(samples[0]), now
	return true
}

func value(s metrics.Sample) uint64 {
	if s.Value.Kind() == metrics.KindUint64 {
		return s.Value.Uint64()
	}
	return 0
}
