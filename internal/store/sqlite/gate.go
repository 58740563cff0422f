package sqlite

import "sync"

// writeGate orders this process's write transactions on the database.
//
// SQLite lets one transaction write at a time; without the gate the
// server's writers (the bindings a REGISTER's 200 waits for, the journal,
// the call records, pruning) meet at the database lock, and the loser
// sleeps in SQLite's busy handler in steps of up to 100 ms however soon the
// lock is free. Measured at 20,000 REGISTER/s offered, the bindings writer
// and the journal writer were each "busy" over 90 % of the time while
// doing a fraction of that in work: registrations waited for the journal's
// sleep, not for their own commit.
//
// The gate is a lock with two classes. An urgent writer (a commit
// somebody waits for: bindings) goes before every background writer
// (journal events, call records, pruning) that is still waiting, so it
// waits at most for the background chunk being written, which callers
// keep small (backgroundChunk rows). A background writer passed over
// maxPassed times in a row goes next anyway, so a steady stream of
// urgent commits slows the journal but never stops it.
//
// The gate orders only this process; another process (the CLI) still
// meets the server at SQLite's lock, with busy_timeout.
type writeGate struct {
	mu   sync.Mutex
	cond sync.Cond
	// busy is set while a writer holds the gate; urgent counts urgent
	// writers waiting for it; passed counts urgent writers that went
	// before a waiting background writer since the last background turn.
	busy   bool
	urgent int
	passed int
	// background counts background writers waiting.
	background int
	// turns counts the write transactions begun (for tests).
	turns int
}

// maxPassed is how many urgent writers may go in a row before a waiting
// background writer.
const maxPassed = 4

// backgroundChunk is how many rows a background writer puts into one
// transaction: at about 25-50 µs a row (journal, call records), a chunk
// holds the gate a few milliseconds.
const backgroundChunk = 256

func newWriteGate() *writeGate {
	g := &writeGate{}
	g.cond.L = &g.mu
	return g
}

// lock takes the gate for one write transaction; unlock gives it back.
func (g *writeGate) lock(urgent bool) {
	g.mu.Lock()
	if urgent {
		g.urgent++
		for g.busy || (g.background > 0 && g.passed >= maxPassed) {
			g.cond.Wait()
		}
		g.urgent--
		if g.background > 0 {
			g.passed++
		}
	} else {
		g.background++
		for g.busy || (g.urgent > 0 && g.passed < maxPassed) {
			g.cond.Wait()
		}
		g.background--
		g.passed = 0
	}
	g.busy = true
	g.turns++
	g.mu.Unlock()
}

func (g *writeGate) unlock() {
	g.mu.Lock()
	g.busy = false
	g.mu.Unlock()
	g.cond.Broadcast()
}

// do runs fn holding the gate.
func (g *writeGate) do(urgent bool, fn func() error) error {
	g.lock(urgent)
	defer g.unlock()
	return fn()
}
