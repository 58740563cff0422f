package location_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/location"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// countingStore is a store.Bindings that counts the rows written (pure
// logic under test: which refreshes reach the store).
type countingStore struct {
	mu      sync.Mutex
	upserts int
	last    map[string]store.Binding
}

func (c *countingStore) LoadBindings(context.Context) ([]store.Binding, error) { return nil, nil }

func (c *countingStore) ApplyBindings(_ context.Context, up []store.Binding, _ []store.BindingKey) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.upserts += len(up)
	for _, b := range up {
		c.last[b.Contact] = b
	}
	return nil
}

// TestLazyRefresh: with SetLazyRefresh, phones refreshing every 60 s a
// 3600 s registration cost fewer than 0.1 store writes per refresh; the
// stored expiry never falls behind the time of the refresh by less than
// half an interval; a change other than the expiry is written at once.
func TestLazyRefresh(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	cs := &countingStore{last: map[string]store.Binding{}}
	tb := location.New(cs, quiet, clk.Now)
	tb.SetLazyRefresh(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tb.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	const phones, refreshes = 20, 200
	register := func(i int, cseq uint32, source string) {
		b := binding("20"+string(rune('a'+i)), "sip:p"+string(rune('a'+i))+"@10.0.0.1", clk.Now(), time.Hour)
		b.CSeq, b.Source = cseq, source
		if _, err := tb.Update(ctx, "pbx.test", b.Extension, func([]store.Binding) ([]store.Binding, error) {
			return []store.Binding{b}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < phones; i++ {
		register(i, 1, "127.0.0.1:5062")
	}
	if err := tb.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cs.mu.Lock()
	first := cs.upserts
	cs.mu.Unlock()
	if first != phones {
		t.Fatalf("first registrations: %d writes, want %d", first, phones)
	}
	for r := 0; r < refreshes; r++ {
		clk.Add(time.Minute)
		for i := 0; i < phones; i++ {
			register(i, uint32(r+2), "127.0.0.1:5062")
		}
		if err := tb.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		cs.mu.Lock()
		for c, b := range cs.last {
			if b.ExpiresAt.Before(clk.Now().Add(30 * time.Minute)) {
				t.Fatalf("refresh %d: stored expiry of %s is %s, less than half an interval after now %s", r, c, b.ExpiresAt, clk.Now())
			}
		}
		cs.mu.Unlock()
	}
	cs.mu.Lock()
	writes := cs.upserts - first
	cs.mu.Unlock()
	perRefresh := float64(writes) / float64(phones*refreshes)
	t.Logf("%d writes for %d refreshes: %.3f per refresh", writes, phones*refreshes, perRefresh)
	if perRefresh >= 0.1 {
		t.Fatalf("%.3f writes per refresh, want < 0.1", perRefresh)
	}
	// Memory holds the latest expiry all along.
	if got := tb.Lookup("pbx.test", "20a"); len(got) != 1 || !got[0].ExpiresAt.Equal(clk.Now().Add(time.Hour)) {
		t.Fatalf("memory: %+v", got)
	}
	// A phone that moved (another source) is written at once.
	register(0, 999, "192.0.2.7:5060")
	if err := tb.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.last["sip:pa@10.0.0.1"].Source != "192.0.2.7:5060" {
		t.Fatalf("a moved phone was not written: %+v", cs.last["sip:pa@10.0.0.1"])
	}
}
