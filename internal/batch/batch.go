// Package batch is the asynchronous, batched writer loop shared by the
// journal and the call records: Add never blocks (a full queue drops and
// counts), and Run hands what arrived to a write function every interval or
// every Max items, on Flush, and once more when its context ends. Writes
// happen on Run's goroutine only.
package batch

import (
	"context"
	"sync/atomic"
	"time"
)

// Queue is a bounded queue of T drained in batches. Create with New.
type Queue[T any] struct {
	ch       chan T
	flushReq chan chan struct{}
	stopped  chan struct{}
	dropped  atomic.Int64
}

// New returns a queue holding at most size items.
func New[T any](size int) *Queue[T] {
	return &Queue[T]{ch: make(chan T, size), flushReq: make(chan chan struct{}), stopped: make(chan struct{})}
}

// Add queues v without blocking; it reports false (and counts a drop) when
// the queue is full.
func (q *Queue[T]) Add(v T) bool {
	select {
	case q.ch <- v:
		return true
	default:
		q.dropped.Add(1)
		return false
	}
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
		l.Max = 4096
	}
	if l.HousekeepingEvery <= 0 {
		l.HousekeepingEvery = time.Minute
	}
	house := func() {
		if l.Housekeeping != nil {
			l.Housekeeping()
		}
	}
	batch := make([]T, 0, 1024)
	write := func() {
		if len(batch) > 0 {
			l.Write(batch)
			clear(batch)
			batch = batch[:0]
		}
	}
	drain := func() {
		for {
			select {
			case v := <-q.ch:
				batch = append(batch, v)
			default:
				return
			}
		}
	}
	tick := time.NewTicker(l.Every)
	defer tick.Stop()
	hk := time.NewTicker(l.HousekeepingEvery)
	defer hk.Stop()
	house()
	for {
		select {
		case v := <-q.ch:
			batch = append(batch, v)
			if len(batch) >= l.Max {
				write()
			}
		case <-tick.C:
			write()
		case done := <-q.flushReq:
			drain()
			write()
			close(done)
		case <-hk.C:
			house()
		case <-ctx.Done():
			drain()
			write()
			return
		}
	}
}
