package location_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/location"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// recStore is a store.Bindings that records what the writer applies.
type recStore struct {
	mu  sync.Mutex
	up  []store.Binding
	del []store.BindingKey
}

func (*recStore) LoadBindings(context.Context) ([]store.Binding, error) { return nil, nil }
func (r *recStore) ApplyBindings(_ context.Context, up []store.Binding, del []store.BindingKey) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.up, r.del = append(r.up, up...), append(r.del, del...)
	return nil
}

// take returns and forgets what was applied, after a Flush.
func (r *recStore) take(t *testing.T, tb *location.Table) ([]store.Binding, []store.BindingKey) {
	t.Helper()
	if err := tb.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	up, del := r.up, r.del
	r.up, r.del = nil, nil
	return up, del
}

// TestUpdateWritesChangesExactly: the writer gets exactly what fn returned
// for new and changed bindings, nothing for an unchanged set, and the
// stored key (domain as written) of a removed one. Lookup gives back every
// field, odd values included.
func TestUpdateWritesChangesExactly(t *testing.T) {
	rec := &recStore{}
	tb := location.New(rec, quiet, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tb.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	now := time.Now().UTC()
	b := store.Binding{Domain: "PBX.Test", Extension: "2001", Contact: "sip:2001@192.0.2.7:5062", Source: "203.0.113.9:41234",
		Transport: "sctp", UserAgent: "phone", CallID: "c1", CSeq: 1, AuthUser: "alice", Realm: "Realm",
		RegisteredAt: now, ExpiresAt: now.Add(time.Hour), PingStatus: "weird", PingRTT: 2.5, PingAt: now}
	set := func(bs ...store.Binding) {
		t.Helper()
		if _, err := tb.Update(context.Background(), "PBX.Test", "2001", func([]store.Binding) ([]store.Binding, error) {
			return bs, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	set(b)
	if up, del := rec.take(t, tb); len(up) != 1 || up[0] != b || len(del) != 0 {
		t.Fatalf("writer got %+v, %v; want the new binding", up, del)
	}
	got := tb.Lookup("pbx.test", "2001")
	if len(got) != 1 || got[0] != b {
		t.Fatalf("Lookup = %+v, want %+v", got, b)
	}

	set(got...) // unchanged
	if up, del := rec.take(t, tb); len(up) != 0 || len(del) != 0 {
		t.Fatalf("an unchanged set wrote %+v, %v", up, del)
	}

	r := got[0]
	r.CSeq, r.ExpiresAt = 2, now.Add(2*time.Hour)
	set(r)
	if up, _ := rec.take(t, tb); len(up) != 1 || up[0] != r {
		t.Fatalf("refresh wrote %+v, want %+v", up, r)
	}

	prev, pinged, ok := tb.SetPing(b.Key(), true, 1500*time.Microsecond)
	want := r
	want.PingStatus, want.PingRTT = "reachable", 1.5
	want.PingAt = pinged.PingAt
	if !ok || prev != "weird" || pinged != want {
		t.Fatalf("SetPing = %q, %+v; want \"weird\", %+v", prev, pinged, want)
	}
	if got := tb.Lookup("pbx.test", "2001"); len(got) != 1 || got[0] != want {
		t.Fatalf("Lookup after SetPing = %+v, want %+v", got, want)
	}

	set()
	if _, del := rec.take(t, tb); len(del) != 1 || del[0] != b.Key() {
		t.Fatalf("removal deleted %v, want %v", del, b.Key())
	}
	if tb.Count() != 0 {
		t.Fatal("binding left after removal")
	}
}
