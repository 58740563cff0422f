package journal_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

func openDB(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var t0 = time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC)

func event(sec int, c cause.Code, ext, src string) journal.Event {
	return journal.Event{Time: t0.Add(time.Duration(sec) * time.Second), Kind: journal.KindRegister, Cause: c,
		Extension: ext, Domain: "example.com", Source: src, Transport: "UDP", UserAgent: "UA"}
}

func TestQueryByIPAndCause(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	evs := []journal.Event{
		event(1, cause.WrongPassword, "2002", "127.0.0.1:5060"),
		event(2, cause.WrongPassword, "2002", "127.0.0.10:5060"),
		event(3, cause.Registered, "2002", "127.0.0.1:5070"),
		event(4, cause.Registered, "2003", "[::1]:5060"),
		event(5, cause.IPBanned, "", "127.0.0.1"),
	}
	if err := journal.Insert(ctx, db, evs); err != nil {
		t.Fatal(err)
	}
	got, err := journal.Query(ctx, db, journal.Filter{IP: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Source != "127.0.0.1" || got[1].Source != "127.0.0.1:5070" || got[2].Source != "127.0.0.1:5060" {
		t.Fatalf("ip 127.0.0.1: %+v", got)
	}
	if got, _ := journal.Query(ctx, db, journal.Filter{IP: "::1"}); len(got) != 1 || got[0].Extension != "2003" {
		t.Fatalf("ip ::1: %+v", got)
	}
	got, _ = journal.Query(ctx, db, journal.Filter{Extension: "2002", Cause: cause.WrongPassword, Oldest: true})
	if len(got) != 2 || got[0].Source != "127.0.0.1:5060" || got[1].Source != "127.0.0.10:5060" {
		t.Fatalf("cause: %+v", got)
	}
}

func TestCauseStats(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	var evs []journal.Event
	for i := 0; i < 50; i++ {
		evs = append(evs, event(i, cause.WrongPassword, "2002", "10.0.0.1:5060"))
	}
	evs = append(evs, event(100, cause.Registered, "2002", "10.0.0.1:5060"))
	other := event(101, cause.WrongPassword, "2002", "10.0.0.1:5060")
	other.Domain = "other.example.com"
	evs = append(evs, other)
	if err := journal.Insert(ctx, db, evs); err != nil {
		t.Fatal(err)
	}
	st, err := journal.CauseStats(ctx, db, "2002", "example.com", cause.WrongPassword, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Count != 50 || st.Capped || !st.First.Equal(t0) || !st.Last.Equal(t0.Add(49*time.Second)) {
		t.Fatalf("%+v", st)
	}
	st, _ = journal.CauseStats(ctx, db, "2002", "example.com", cause.WrongPassword, time.Time{}, 20)
	if st.Count != 20 || !st.Capped {
		t.Fatalf("capped: %+v", st)
	}
	st, _ = journal.CauseStats(ctx, db, "2002", "example.com", cause.WrongPassword, t0.Add(40*time.Second), 0)
	if st.Count != 10 || !st.First.Equal(t0.Add(40*time.Second)) {
		t.Fatalf("since: %+v", st)
	}
	if st, _ := journal.CauseStats(ctx, db, "2009", "example.com", cause.WrongPassword, time.Time{}, 0); st.Count != 0 || !st.First.IsZero() {
		t.Fatalf("none: %+v", st)
	}

	e, ok, err := journal.LastOf(ctx, db, "2002", "example.com", cause.Registered)
	if err != nil || !ok || !e.Time.Equal(t0.Add(100*time.Second)) || e.Source != "10.0.0.1:5060" || e.UserAgent != "UA" {
		t.Fatalf("last registered: %+v %v %v", e, ok, err)
	}
	if _, ok, err := journal.LastOf(ctx, db, "2002", "example.com", cause.Expired); ok || err != nil {
		t.Fatalf("last expired: %v %v", ok, err)
	}
	id, err := journal.LastID(ctx, db)
	if err != nil || id != 52 {
		t.Fatalf("last id %d %v", id, err)
	}
	if old, err := journal.OldestTime(ctx, db); err != nil || !old.Equal(t0) {
		t.Fatalf("oldest %v %v", old, err)
	}
}

func TestWriterDisable(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	db := openDB(t)
	w := journal.NewWriter(db, slog.New(slog.NewTextHandler(io.Discard, nil)), journal.Retention{}, 4)
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	w.Record(event(1, cause.Registered, "2002", "10.0.0.1:5060"))
	w.Flush(ctx)
	w.Disable()
	if w.Enabled() {
		t.Fatal("still enabled")
	}
	for i := 0; i < 10; i++ {
		w.Record(event(2, cause.Registered, "2002", "10.0.0.1:5060"))
	}
	w.Flush(ctx)
	cancel()
	<-done
	if w.Dropped() != 0 {
		t.Fatalf("a disabled writer counts drops: %d", w.Dropped())
	}
	if got, _ := journal.Query(context.Background(), db, journal.Filter{}); len(got) != 1 {
		t.Fatalf("want only the event recorded before Disable, got %d", len(got))
	}
}
