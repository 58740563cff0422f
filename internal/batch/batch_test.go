package batch

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestQueueWritesEverythingInOrder(t *testing.T) {
	q := New[int](100)
	var mu sync.Mutex
	var got []int
	var houses int
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		q.Run(ctx, Loop[int]{Every: time.Hour, Max: 7,
			Write:        func(b []int) { mu.Lock(); got = append(got, b...); mu.Unlock() },
			Housekeeping: func() { houses++ }})
		close(done)
	}()
	for i := 0; i < 20; i++ {
		if !q.Add(i) {
			t.Fatalf("Add(%d) dropped", i)
		}
	}
	q.Flush(context.Background()) // the hour-long tick never fires: Max and Flush write
	mu.Lock()
	if len(got) != 20 {
		t.Fatalf("after Flush: %d written, want 20", len(got))
	}
	mu.Unlock()
	q.Add(20)
	cancel()
	<-done
	for i, v := range got {
		if v != i {
			t.Fatalf("order: got[%d] = %d", i, v)
		}
	}
	if len(got) != 21 || houses != 1 {
		t.Fatalf("at stop: %d written (want 21), housekeeping ran %d times (want 1)", len(got), houses)
	}
	q.Flush(context.Background()) // after Run stopped: returns at once
}

func TestQueueDropsWhenFull(t *testing.T) {
	q := New[int](2)
	q.Add(1)
	q.Add(2)
	if q.Add(3) || q.Dropped() != 1 {
		t.Fatalf("full queue: Add(3) kept or Dropped = %d", q.Dropped())
	}
}
