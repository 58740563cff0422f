// Package batch is the asynchronous, batched writer loop shared by the
// journal and the call records: Add never blocks (a full queue drops and
// counts), and Run hands what arrived to a write function every interval or
// every Max items, on Flush, and once more when its context ends. Writes
// happen on Run's goroutine only.
package batch

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Queue is a bounded queue of T drained in batches. Create with New. Its
// memory follows the backlog: an idle queue holds no buffer of its bound's
// size.
type Queue[T any] struct {
	size int

	mu    sync.Mutex // guards items
	items []T

	max      atomic.Int64  // Run's Loop.Max: Add wakes Run when this many wait
	wake     chan struct{} // capacity 1
	flushReq chan chan struct{}
	stopped  chan struct{}
	dropped  atomic.Int64
}

// New returns a queue holding at most size items.
func New[T any](size int) *Queue[T] {
	q := &Queue[T]{size: size, wake: make(chan struct{}, 1), flushReq: make(chan chan struct{}),
		stopped: make(chan struct{})}
	q.max.Store(defaultMax)
	return q
}

const defaultMax = 4096

// Add queues v without blocking; it reports false (and counts a drop) when
// the queue is full.
func (q *Queue[T]) Add(v T) bool { return q.add(v, q.size) }

// AddBelow queues v only while fewer than n items wait (and the queue is
// not full); otherwise it drops v, counts the drop and reports false. It
// keeps room in the queue for what Add queues.
func (q *Queue[T]) AddBelow(v T, n int) bool { return q.add(v, min(n, q.size)) }

// add queues v unless limit items wait.
func (q *Queue[T]) add(v T, limit int) bool {
	q.mu.Lock()
	if len(q.items) >= limit {
		q.mu.Unlock()
		q.dropped.Add(1)
		return false
	}
	q.items = append(q.items, v)
	n := len(q.items)
	q.mu.Unlock()
	if int64(n) >= q.max.Load() {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// take swaps the queued items for spare (emptied) and returns them.
func (q *Queue[T]) take(spare []T) []T {
	q.mu.Lock()
	out := q.items
	q.items = spare[:0]
	q.mu.Unlock()
	return out
}

// Dropped is how many items Add dropped because the queue was full.
func (q *Queue[T]) Dropped() int64 { return q.dropped.Load() }

// Flush waits until every item added before the call has been written (or
// ctx ends, or Run has stopped).
func (q *Queue[T]) Flush(ctx context.Context) {
	done := make(chan struct{})
	select {
	case q.flushReq <- done:
	case <-ctx.Done():
		return
	case <-q.stopped:
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Loop configures Run.
type Loop[T any] struct {
	Every time.Duration // write what arrived at least this often (default 50 ms)
	Max   int           // write at once when this many are waiting (default 4096)
	// Write stores a batch; it must not keep the slice.
	Write func(batch []T)
	// Housekeeping, when set, runs at start and every HousekeepingEvery
	// (default 1 min), e.g. to prune old rows.
	Housekeeping      func()
	HousekeepingEvery time.Duration
}

// Run drains the queue until ctx ends, then writes what is left and returns.
func (q *Queue[T]) Run(ctx context.Context, l Loop[T]) {
	defer close(q.stopped)
	if l.Every <= 0 {
		l.Every = 50 * time.Millisecond
	}
	if l.Max <= 0 {
		l.Max = defaultMax
	}
	q.max.Store(int64(l.Max))
	if l.HousekeepingEvery <= 0 {
		l.HousekeepingEvery = time.Minute
	}
	house := func() {
		if l.Housekeeping != nil {
			l.Housekeeping()
		}
	}
	var spare []T
	// write hands everything queued to l.Write, at most l.Max at a time, and
	// keeps the buffer for the next swap unless a burst made it large.
	write := func() {
		batch := q.take(spare)
		for rest := batch; len(rest) > 0; {
			n := min(len(rest), l.Max)
			l.Write(rest[:n])
			rest = rest[n:]
		}
		clear(batch)
		spare = batch[:0]
		if cap(spare) > 2*l.Max {
			spare = nil
		}
	}
	tick := time.NewTicker(l.Every)
	defer tick.Stop()
	hk := time.NewTicker(l.HousekeepingEvery)
	defer hk.Stop()
	house()
	for {
		select {
		case <-q.wake:
			write()
		case <-tick.C:
			write()
		case done := <-q.flushReq:
			write()
			close(done)
		case <-hk.C:
			house()
		case <-ctx.Done():
			write()
			return
		}
	}
}
