package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// waitFor polls cond (under the gate's mutex) until it holds.
func waitFor(t *testing.T, g *writeGate, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.mu.Lock()
		ok := cond()
		g.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWriteGateUrgentFirstButBackgroundNotStarved: a waiting urgent
// writer goes before a background writer that waited longer, and after
// maxPassed urgent writers in a row the background writer goes.
func TestWriteGateUrgentFirstButBackgroundNotStarved(t *testing.T) {
	g := newWriteGate()
	got := make(chan string, 16)
	take := func(name string, urgent bool) {
		go func() {
			g.lock(urgent)
			got <- name
		}()
	}
	g.lock(true) // the holder
	take("B", false)
	waitFor(t, g, "the background writer to wait", func() bool { return g.background == 1 })
	var order []string
	for i := 0; i <= maxPassed; i++ {
		take(fmt.Sprintf("U%d", i), true)
		waitFor(t, g, "an urgent writer to wait", func() bool { return g.urgent == 1 })
		g.unlock()
		order = append(order, <-got)
	}
	g.unlock()
	order = append(order, <-got)
	g.unlock()
	want := "[U0 U1 U2 U3 B U4]"
	if fmt.Sprint(order) != want {
		t.Fatalf("order %v, want %s", order, want)
	}
}

// TestBackgroundWritesInChunks: a batch of events larger than a chunk and
// a prune of more than pruneChunk rows both complete, keeping the newest,
// each in transactions of at most backgroundChunk (pruneChunk) rows.
func TestBackgroundWritesInChunks(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	n := 2*pruneChunk + backgroundChunk + 7
	events := make([]store.Event, n)
	for i := range events {
		events[i] = store.Event{Time: now.Add(time.Duration(i) * time.Microsecond), Kind: "register",
			Extension: fmt.Sprint(i)}
	}
	turns := func() int {
		db.gate.mu.Lock()
		defer db.gate.mu.Unlock()
		return db.gate.turns
	}
	t0 := turns()
	if err := db.InsertEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	if got, want := turns()-t0, (n+backgroundChunk-1)/backgroundChunk; got != want {
		t.Fatalf("%d events written in %d transactions, want %d", n, got, want)
	}
	count := func() (c int, oldest string) {
		if err := db.sql.QueryRow("SELECT count(*), coalesce((SELECT extension FROM journal ORDER BY id LIMIT 1), '') FROM journal").
			Scan(&c, &oldest); err != nil {
			t.Fatal(err)
		}
		return c, oldest
	}
	if c, _ := count(); c != n {
		t.Fatalf("%d events written, want %d", c, n)
	}
	keep := 100
	t0 = turns()
	if err := db.PruneEvents(ctx, now.Add(-time.Hour), keep); err != nil {
		t.Fatal(err)
	}
	// By age: one transaction that finds nothing; by count: the n-keep
	// rows in chunks, the last one short.
	if got, want := turns()-t0, 1+(n-keep)/pruneChunk+1; got != want {
		t.Fatalf("pruning %d events took %d transactions, want %d", n-keep, got, want)
	}
	if c, oldest := count(); c != keep || oldest != fmt.Sprint(n-keep) {
		t.Fatalf("after pruning to %d: %d events, oldest %s; want %d, oldest %d", keep, c, oldest, keep, n-keep)
	}
	if err := db.PruneEvents(ctx, now.Add(time.Hour), keep); err != nil {
		t.Fatal(err)
	}
	if c, _ := count(); c != 0 {
		t.Fatalf("after pruning by age: %d events left", c)
	}
}
