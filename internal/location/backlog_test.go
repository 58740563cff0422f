package location_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/location"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// flakyStore is a store.Bindings whose writes fail while broken (a
// database restarting), keeping what it committed.
type flakyStore struct {
	mu     sync.Mutex
	broken bool
	rows   map[string]store.Binding
}

func (f *flakyStore) LoadBindings(context.Context) ([]store.Binding, error) { return nil, nil }

func (f *flakyStore) ApplyBindings(_ context.Context, up []store.Binding, del []store.BindingKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken {
		return errors.New("connection refused")
	}
	for _, b := range up {
		f.rows[b.Extension+" "+b.Contact] = b
	}
	for _, k := range del {
		delete(f.rows, k.Extension+" "+k.Contact)
	}
	return nil
}

func (f *flakyStore) set(broken bool) {
	f.mu.Lock()
	f.broken = broken
	f.mu.Unlock()
}

func (f *flakyStore) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.rows)
}

// TestBacklogWhileStoreDown: with SetBacklog(3), while the store cannot
// write, registrations are acknowledged from memory up to 3 bindings, the
// next is refused (ErrUnavailable, not in memory), and the acknowledged
// ones are written once the store is back.
func TestBacklogWhileStoreDown(t *testing.T) {
	clk := &clock{t: time.Now()}
	fs := &flakyStore{rows: map[string]store.Binding{}}
	tb := location.New(fs, quiet, clk.Now)
	tb.SetBacklog(3)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tb.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	reg := func(ext string) error {
		b := binding(ext, "sip:"+ext+"@10.0.0.1", clk.Now(), time.Hour)
		_, err := tb.Update(ctx, "pbx.test", ext, func([]store.Binding) ([]store.Binding, error) {
			return []store.Binding{b}, nil
		})
		return err
	}
	fs.set(true)
	for _, ext := range []string{"2001", "2002", "2003"} {
		if err := reg(ext); err != nil {
			t.Fatalf("%s while the store is down, backlog not full: %v", ext, err)
		}
	}
	if h := tb.Health(); !h.Down || h.Backlog != 3 {
		t.Fatalf("health: %+v; want down with a backlog of 3", h)
	}
	if err := reg("2004"); !errors.Is(err, location.ErrUnavailable) {
		t.Fatalf("2004 past the backlog: %v, want ErrUnavailable", err)
	}
	if got := tb.Lookup("pbx.test", "2004"); len(got) != 0 {
		t.Fatalf("a refused registration is in memory: %+v", got)
	}
	if got := tb.Lookup("pbx.test", "2002"); len(got) != 1 {
		t.Fatalf("an acknowledged registration is not in memory: %+v", got)
	}
	fs.set(false)
	eventually(t, "the backlog is written once the store is back", func() bool {
		return fs.count() == 3 && !tb.Health().Down
	})
	if err := reg("2004"); err != nil {
		t.Fatalf("2004 once the store is back: %v", err)
	}
	if fs.count() != 4 {
		t.Fatalf("stored: %d, want 4", fs.count())
	}
}
