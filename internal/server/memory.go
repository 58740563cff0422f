package server

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Memory release after a load peak. Every releaseCheck the server looks
// at the heap; once no garbage collection ran for releaseQuiet it collects
// and returns the free memory to the OS when the heap holds more than
// releaseSlack (and more than an eighth of the live heap) beyond the
// objects the last collection found live. Garbage that appears without
// allocation (transactions that end sipstack.TxLinger after their answer)
// is invisible to that test, so a quiet heap is also collected every
// probeEvery; a probe that finds little to free doubles the wait for the
// next one, up to probeMax.
//
// A soft memory limit (GOMEMLIMIT, serve --memory-limit) does not do this
// job: measured after 20,000 REGISTERs at 2,000/s, RSS stayed at its peak
// (44.5 MiB) for over 2 minutes without these probes, 45.4 MiB with
// GOMEMLIMIT=36MiB, and fell to 34.8 MiB within 60 s with them (README,
// "Memory").
const (
	releaseCheck = 2 * time.Second
	releaseQuiet = 10 * time.Second
	releaseSlack = 16 << 20
	probeEvery   = 30 * time.Second
	probeMax     = 16 * time.Minute
)

// releaseMemory gives memory back after a load peak. A burst of calls or
// registrations grows the heap to twice the live objects (Go's default
// GOGC); when the burst is over little allocates, so the runtime runs no
// collection and keeps the garbage, and its scavenger returns free pages
// only slowly: the process would show its peak size for many minutes.
// Under steady load collections run on their own and this does nothing.
func (s *Server) releaseMemory(ctx context.Context) {
	t := time.NewTicker(releaseCheck)
	defer t.Stop()
	m := memWatch{quiet: releaseQuiet, slack: releaseSlack, probe: probeEvery, probeMax: probeMax}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.check(now)
		}
	}
}

// memWatch decides when to collect; see releaseMemory.
type memWatch struct {
	quiet    time.Duration // no collection for this long before any release
	slack    uint64        // known garbage worth a release
	probe    time.Duration // collect a quiet heap this often (doubling up to probeMax)
	probeMax time.Duration

	cycles  uint64    // collection count at the last look
	changed time.Time // when cycles last moved
	wait    time.Duration
}

// check releases memory when due and reports whether it did.
func (m *memWatch) check(now time.Time) bool {
	samples := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	metrics.Read(samples)
	cycles := value(samples[0])
	if m.wait == 0 {
		m.wait = m.probe
	}
	if cycles != m.cycles || m.changed.IsZero() {
		m.cycles, m.changed = cycles, now
		return false
	}
	quiet := now.Sub(m.changed)
	held, live := value(samples[1])+value(samples[2]), value(samples[3])
	garbage := quiet >= m.quiet && held > live+m.slack && held > live+live/8
	if !garbage && quiet < m.wait {
		return false
	}
	debug.FreeOSMemory()
	metrics.Read(samples)
	if after := value(samples[3]); !garbage && live-min(live, after) < m.slack {
		m.wait = min(2*m.wait, m.probeMax) // nothing much to free: probe less often
	} else {
		m.wait = m.probe
	}
	m.cycles, m.changed = value(samples[0]), now
	return true
}

func value(s metrics.Sample) uint64 {
	if s.Value.Kind() == metrics.KindUint64 {
		return s.Value.Uint64()
	}
	return 0
}
