package calls

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

func openDB(t *testing.T, dir string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestWriterLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	w := NewWriter(db, quiet(), Retention{}, 0)
	if n, err := w.Init(ctx); err != nil || n != 0 {
		t.Fatalf("Init: %d %v", n, err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(rctx); close(done) }()

	t0 := time.Now().Add(-10 * time.Second).Truncate(time.Microsecond)
	r := Record{ID: w.NextID(), CallID: "abc@x", From: "2001", To: "2002", Domain: "pbx.test",
		Source: "127.0.0.1:5070", Transport: "UDP", UserAgent: "baresip", Start: t0,
		Branches: []Branch{{Contact: "sip:2002@127.0.0.1:5080", Destination: "127.0.0.1:5080", Transport: "UDP"}}}
	if r.ID != 1 {
		t.Fatalf("first id = %d, want 1", r.ID)
	}
	w.Save(r)
	// Mutating the caller's slice after Save must not change what is stored.
	r.Branches[0].Status = 999
	w.Flush(ctx)
	act, err := Query(ctx, db, Filter{Active: true})
	if err != nil || len(act) != 1 || !act[0].Active() || act[0].Branches[0].Status != 0 {
		t.Fatalf("active calls: %+v %v", act, err)
	}

	r.Branches[0] = Branch{Contact: "sip:2002@127.0.0.1:5080", Status: 200, Reason: "OK"}
	r.Answer = t0.Add(2 * time.Second)
	w.Save(r)
	r.End = t0.Add(7 * time.Second)
	r.SIPStatus, r.Cause, r.HangupBy = 200, cause.NormalClearing, ByCaller
	w.Save(r)
	w.Save(Record{ID: w.NextID(), CallID: "def@x", From: "2001", To: "2003", Domain: "pbx.test", Start: t0.Add(time.Second),
		End: t0.Add(time.Second), SIPStatus: 480, Cause: cause.UserNotRegistered, HangupBy: ByServer})
	w.Flush(ctx)

	got, err := Get(ctx, db, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got.Active() || got.Cause != cause.NormalClearing || got.Duration(time.Now()) != 5*time.Second ||
		got.Branches[0].Status != 200 || !got.Start.Equal(t0) || got.HangupBy != ByCaller {
		t.Fatalf("unexpected record %+v", got)
	}
	all, _ := Query(ctx, db, Filter{})
	if len(all) != 2 || all[0].ID != 2 || all[1].ID != 1 {
		t.Fatalf("want newest first, got %+v", all)
	}
	failed, _ := Query(ctx, db, Filter{To: "2003", Failed: true})
	if len(failed) != 1 || failed[0].Cause != cause.UserNotRegistered {
		t.Fatalf("failed calls to 2003: %+v", failed)
	}
	if act, _ := Query(ctx, db, Filter{Active: true}); len(act) != 0 {
		t.Fatalf("no call should be active: %+v", act)
	}
	if _, err := Get(ctx, db, 42); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(42) = %v, want not found", err)
	}

	// A call left in progress is ended at the next start, ids continue.
	w.Save(Record{ID: w.NextID(), CallID: "ghi@x", From: "2002", To: "2001", Domain: "pbx.test", Start: time.Now(),
		Answer: time.Now()})
	w.Flush(ctx)
	stop()
	<-done

	w2 := NewWriter(db, quiet(), Retention{}, 0)
	n, err := w2.Init(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Init ended %d (%v), want 1", n, err)
	}
	if id := w2.NextID(); id != 4 {
		t.Fatalf("next id after restart = %d, want 4", id)
	}
	left, _ := Get(ctx, db, 3)
	if left.Active() || left.Cause != cause.SystemShutdown || left.HangupBy != ByServer || left.Detail == "" {
		t.Fatalf("left-over call not ended: %+v", left)
	}
}

func TestSaveNeverBlocks(t *testing.T) {
	db := openDB(t, t.TempDir())
	w := NewWriter(db, quiet(), Retention{}, 2)
	for i := 0; i < 10; i++ {
		w.Save(Record{ID: int64(i + 1)})
	}
	if w.Dropped() != 8 {
		t.Fatalf("dropped = %d, want 8", w.Dropped())
	}
}

func TestDuration(t *testing.T) {
	now := time.Now()
	r := Record{Start: now.Add(-time.Minute)}
	if r.Duration(now) != 0 {
		t.Fatal("unanswered call has a duration")
	}
	r.Answer = now.Add(-30 * time.Second)
	if r.Duration(now) != 30*time.Second {
		t.Fatalf("active call duration = %s", r.Duration(now))
	}
}
