package location_test

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/location"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

// clock is an injectable, manually advanced time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// table opens (or reopens) the sqlite store in dir and runs a location
// table on it until the test ends or stop is called.
type table struct {
	*location.Table
	db   *sqlite.DB
	stop func()
}

func open(t *testing.T, dir string, clk *clock, onExpire func(store.Binding)) *table {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	tb := location.New(db, quiet, clk.Now)
	if onExpire != nil {
		tb.OnExpire(onExpire)
	}
	if _, err := tb.Load(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		tb.Run(runCtx)
		close(done)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			db.Close()
		})
	}
	t.Cleanup(stop)
	return &table{Table: tb, db: db, stop: stop}
}

func binding(ext, contact string, now time.Time, ttl time.Duration) store.Binding {
	return store.Binding{Domain: "pbx.test", Extension: ext, Contact: contact, Source: "127.0.0.1:5062",
		Transport: "UDP", UserAgent: "test phone", CallID: "call-" + contact, CSeq: 2, AuthUser: ext, Realm: "pbx.test",
		RegisteredAt: now, ExpiresAt: now.Add(ttl)}
}

// add replaces ext's bindings with bs (Update's "set" use).
func add(t *testing.T, tb *table, ext string, bs ...store.Binding) {
	t.Helper()
	got, err := tb.Update(context.Background(), "pbx.test", ext, func(cur []store.Binding) ([]store.Binding, error) {
		return append(cur, bs...), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < len(bs) {
		t.Fatalf("Update returned %d bindings, want at least %d", len(got), len(bs))
	}
	// Update only queues the write; Flush waits for the commit.
	if err := tb.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func stored(t *testing.T, db *sqlite.DB) []store.Binding {
	t.Helper()
	bs, err := db.BindingsOf(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

func contacts(bs []store.Binding) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Contact
	}
	slices.Sort(out)
	return out
}

// TestExpiryWithClock: a binding is live until its expiry instant and gone
// from Lookup, All and Count the moment the clock passes it, before any
// sweep.
func TestExpiryWithClock(t *testing.T) {
	clk := &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	tb := open(t, t.TempDir(), clk, nil)
	now := clk.Now()
	add(t, tb, "2001", binding("2001", "sip:a@127.0.0.1", now, 60*time.Second), binding("2001", "sip:b@127.0.0.1", now, 120*time.Second))

	if got := contacts(tb.Lookup("PBX.test", "2001")); !slices.Equal(got, []string{"sip:a@127.0.0.1", "sip:b@127.0.0.1"}) {
		t.Fatalf("Lookup (domain case-insensitive): %v", got)
	}
	clk.Add(59 * time.Second)
	if n := tb.Count(); n != 2 {
		t.Fatalf("Count 1 s before the first expiry = %d, want 2", n)
	}
	clk.Add(time.Second) // exactly at a's expiry: expired
	if got := contacts(tb.Lookup("pbx.test", "2001")); !slices.Equal(got, []string{"sip:b@127.0.0.1"}) {
		t.Fatalf("Lookup at a's expiry: %v", got)
	}
	if n := tb.Count(); n != 1 || len(tb.All()) != 1 {
		t.Fatalf("Count/All at a's expiry: %d/%d, want 1", n, len(tb.All()))
	}
	// Update sees only live bindings and drops the expired one from storage.
	got, err := tb.Update(context.Background(), "pbx.test", "2001", func(cur []store.Binding) ([]store.Binding, error) {
		if len(cur) != 1 || cur[0].Contact != "sip:b@127.0.0.1" {
			t.Errorf("Update got %v, want only b", contacts(cur))
		}
		return cur, nil
	})
	if err != nil || len(got) != 1 {
		t.Fatalf("Update: %v %v", got, err)
	}
	if err := tb.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := contacts(stored(t, tb.db)); !slices.Equal(s, []string{"sip:b@127.0.0.1"}) {
		t.Fatalf("stored after Update: %v, want only b", s)
	}
}

// TestSweepReportsExpired: Sweep removes exactly the expired bindings from
// memory and storage and reports each one to OnExpire once.
func TestSweepReportsExpired(t *testing.T) {
	clk := &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	var mu sync.Mutex
	var expired []store.Binding
	tb := open(t, t.TempDir(), clk, func(b store.Binding) {
		mu.Lock()
		expired = append(expired, b)
		mu.Unlock()
	})
	now := clk.Now()
	add(t, tb, "2001", binding("2001", "sip:short@127.0.0.1", now, 10*time.Second), binding("2001", "sip:long@127.0.0.1", now, time.Hour))
	add(t, tb, "2002", binding("2002", "sip:other@127.0.0.1", now, 10*time.Second))

	if gone := tb.Sweep(context.Background()); len(gone) != 0 {
		t.Fatalf("Sweep before any expiry removed %v", contacts(gone))
	}
	clk.Add(11 * time.Second)
	// Run's own once-a-second sweeper may win the race; together they must
	// report each expired binding exactly once.
	gone := tb.Sweep(context.Background())
	mu.Lock()
	reported := contacts(expired)
	mu.Unlock()
	want := []string{"sip:other@127.0.0.1", "sip:short@127.0.0.1"}
	if !slices.Equal(reported, want) {
		t.Fatalf("OnExpire got %v, want %v", reported, want)
	}
	for _, g := range contacts(gone) {
		if !slices.Contains(want, g) {
			t.Fatalf("Sweep returned %s, which had not expired", g)
		}
	}
	if tb.Sweep(context.Background()) != nil {
		t.Fatal("a second Sweep found more to remove")
	}
	if got := contacts(tb.All()); !slices.Equal(got, []string{"sip:long@127.0.0.1"}) {
		t.Fatalf("All after Sweep: %v", got)
	}
	if s := contacts(stored(t, tb.db)); !slices.Equal(s, []string{"sip:long@127.0.0.1"}) {
		t.Fatalf("stored after Sweep: %v", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if e := expired[0]; e.Source != "127.0.0.1:5062" || e.Transport != "UDP" || e.UserAgent != "test phone" {
		t.Fatalf("OnExpire got an incomplete binding: %+v", e)
	}
}

// TestPersistAcrossReopen: what Update returned is on disk; a reopened table
// loads it unchanged, and drops (and deletes) what expired in between.
func TestPersistAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	tb := open(t, dir, clk, nil)
	now := clk.Now()
	keep := binding("2001", "sip:2001@127.0.0.1:5062;transport=udp", now, time.Hour)
	keep.PingStatus, keep.PingRTT, keep.PingAt = "reachable", 1.5, now
	add(t, tb, "2001", keep)
	add(t, tb, "2002", binding("2002", "sip:2002@127.0.0.1:5064", now, 30*time.Second))
	// Remove one, to check deletes persist too.
	add(t, tb, "2003", binding("2003", "sip:2003@127.0.0.1:5066", now, time.Hour))
	if _, err := tb.Update(context.Background(), "pbx.test", "2003", func([]store.Binding) ([]store.Binding, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	tb.stop()

	clk.Add(time.Minute) // 2002 expires while "the server is down"
	tb2 := open(t, dir, clk, nil)
	all := tb2.All()
	if len(all) != 1 {
		t.Fatalf("after reopen: want only 2001's binding, got %v", contacts(all))
	}
	got := all[0]
	if !got.RegisteredAt.Equal(keep.RegisteredAt) || !got.ExpiresAt.Equal(keep.ExpiresAt) || !got.PingAt.Equal(keep.PingAt) {
		t.Fatalf("times changed across reopen: %+v vs %+v", got, keep)
	}
	got.RegisteredAt, got.ExpiresAt, got.PingAt = keep.RegisteredAt, keep.ExpiresAt, keep.PingAt
	if got != keep {
		t.Fatalf("binding changed across reopen:\ngot  %+v\nwant %+v", got, keep)
	}
	if s := contacts(stored(t, tb2.db)); !slices.Equal(s, []string{keep.Contact}) {
		t.Fatalf("stored after reopen: %v, want only %s (the expired one deleted at load)", s, keep.Contact)
	}
}

// TestUpdateErrorChangesNothing: when fn fails, nothing changes and the
// error comes back.
func TestUpdateErrorChangesNothing(t *testing.T) {
	clk := &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	tb := open(t, t.TempDir(), clk, nil)
	add(t, tb, "2001", binding("2001", "sip:a@127.0.0.1", clk.Now(), time.Hour))
	boom := context.DeadlineExceeded
	_, err := tb.Update(context.Background(), "pbx.test", "2001", func(cur []store.Binding) ([]store.Binding, error) {
		return nil, boom
	})
	if err != boom {
		t.Fatalf("Update error = %v, want %v", err, boom)
	}
	if got := contacts(tb.Lookup("pbx.test", "2001")); !slices.Equal(got, []string{"sip:a@127.0.0.1"}) {
		t.Fatalf("Lookup after a failed Update: %v", got)
	}
	if err := tb.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := stored(t, tb.db); len(s) != 1 {
		t.Fatalf("stored after a failed Update: %v", contacts(s))
	}
}

func TestRenameDomainMovesBindings(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	tab := open(t, t.TempDir(), clk, nil)
	db := tab.db
	now := clk.Now()
	add := func(domain, ext, contact, source string) {
		t.Helper()
		if _, err := tab.Update(ctx, domain, ext, func(cur []store.Binding) ([]store.Binding, error) {
			return append(cur, store.Binding{Domain: domain, Extension: ext, Contact: contact, Source: source,
				Transport: "UDP", CallID: contact, RegisteredAt: now, ExpiresAt: now.Add(time.Hour)}), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	add("old.test", "2001", "sip:2001@192.0.2.1:5060", "192.0.2.1:5060")
	add("old.test", "2001", "sip:2001@192.0.2.2:5060", "192.0.2.2:5060")
	add("old.test", "2002", "sip:2002@192.0.2.3:5060", "192.0.2.3:5060")
	add("other.test", "2001", "sip:2001@192.0.2.9:5060", "192.0.2.9:5060")
	// Registered under the new name already: kept once.
	add("new.test", "2002", "sip:2002@192.0.2.3:5060", "192.0.2.3:5060")
	n, err := tab.RenameDomain(ctx, "OLD.test", "new.test")
	if err != nil || n != 2 {
		t.Fatalf("RenameDomain = %d, %v; want 2 moved (and one already there)", n, err)
	}
	if got := tab.Lookup("old.test", "2001"); len(got) != 0 {
		t.Fatalf("old domain still has %v", got)
	}
	if got := tab.Lookup("new.test", "2001"); len(got) != 2 || got[0].Domain != "new.test" {
		t.Fatalf("new domain 2001: %+v", got)
	}
	if got := tab.Lookup("new.test", "2002"); len(got) != 1 {
		t.Fatalf("new domain 2002: %+v, want the one binding", got)
	}
	if got := tab.Lookup("other.test", "2001"); len(got) != 1 {
		t.Fatalf("another domain was touched: %+v", got)
	}
	if !tab.HasSource(netip.MustParseAddr("192.0.2.1")) {
		t.Fatal("source count lost in the move")
	}
	if err := tab.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	stored, err := db.LoadBindings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range stored {
		if b.Domain == "old.test" {
			t.Fatalf("a stored binding kept the old name: %+v", b)
		}
	}
	if len(stored) != 4 {
		t.Fatalf("stored %d bindings, want 4", len(stored))
	}
}
