package journal

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

// TestHold: a held event is dropped when settled in time, recorded after
// HoldFor otherwise, and recorded at once by Flush; Run records what is
// still held when it stops.
func TestHold(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mu sync.Mutex
	now := time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	w := NewWriter(db, slog.New(slog.NewTextHandler(io.Discard, nil)), Retention{}, 0)
	w.now = clock
	th := NewThrottle(time.Minute, clock)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(runCtx); close(done) }()

	ev := func(ext string) Event {
		return Event{Kind: KindRegister, Cause: cause.Challenged, Extension: ext, Domain: "example.com", Source: "192.0.2.1:5060"}
	}
	src := netip.MustParseAddr("192.0.2.1")
	count := func(ext string) int {
		t.Helper()
		w.q.Flush(ctx) // what was released, not what is held
		evs, err := Query(ctx, db, Filter{Extension: ext})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}

	w.Hold(th.Key(src, "2001"), ev("2001")) // answered in time: never recorded
	w.Hold(th.Key(src, "2002"), ev("2002")) // never answered: recorded after HoldFor
	w.Hold(th.Key(src, "2003"), ev("2003")) // recorded by Flush
	advance(time.Second)
	w.Settle(th.Key(src, "2001"))
	w.release(false)
	if n := count("2002"); n != 0 {
		t.Fatalf("2002 recorded after 1 s of %s", HoldFor)
	}
	advance(HoldFor)
	w.Settle(th.Key(src, "2003")) // too late? no: 2003 is settled before its release
	w.Hold(th.Key(src, "2004"), ev("2004"))
	w.release(false)
	if n := count("2002"); n != 1 {
		t.Fatalf("2002 recorded %d times after %s, want 1", n, HoldFor)
	}
	w.Flush(ctx)
	if n := count("2004"); n != 1 {
		t.Fatalf("Flush did not record the held 2004 event (%d)", n)
	}
	w.Hold(th.Key(src, "2006"), ev("2006"))
	w.Release(th.Key(src, "2006")) // a refusal follows: the challenge goes first
	if n := count("2006"); n != 1 {
		t.Fatalf("Release did not record the held 2006 event (%d)", n)
	}
	w.Hold(th.Key(src, "2005"), ev("2005"))
	stop()
	<-done
	for ext, want := range map[string]int{"2001": 0, "2003": 0, "2005": 1} {
		if n := count(ext); n != want {
			t.Errorf("%s: %d events, want %d", ext, n, want)
		}
	}
}

// TestTapSeesRecordedAndHeld: the tap sees an event when Record queues it
// and a held event only when it is recorded, not when it is held or
// settled.
func TestTapSeesRecordedAndHeld(t *testing.T) {
	w := NewWriter(nil, nil, Retention{}, 16)
	var seen []string
	w.Tap(func(e Event) { seen = append(seen, e.Detail) })
	w.Record(Event{Detail: "a"})
	w.Hold(1, Event{Detail: "held"})
	w.Hold(2, Event{Detail: "settled"})
	w.Settle(2)
	if len(seen) != 1 || seen[0] != "a" {
		t.Fatalf("before release the tap saw %q, want [a]", seen)
	}
	w.Release(1)
	if len(seen) != 2 || seen[1] != "held" {
		t.Fatalf("after release the tap saw %q, want [a held]", seen)
	}
	w.Tap(nil)
	w.Record(Event{Detail: "b"})
	if len(seen) != 2 {
		t.Fatalf("a removed tap still saw %q", seen)
	}
}

// TestRoutineSuccessKeepsRoomForFailures: while the database is behind
// (nothing drains the queue here), registrations fill only half of the
// queue; the failures the doctor explains still find room, and every
// event left out is counted.
func TestRoutineSuccessKeepsRoomForFailures(t *testing.T) {
	w := NewWriter(nil, nil, Retention{}, 8)
	for i := 0; i < 6; i++ {
		w.Record(Event{Kind: KindRegister, Cause: cause.Registered})
	}
	if n, d := w.q.Len(), w.Dropped(); n != 4 || d != 2 {
		t.Fatalf("after 6 registrations: %d queued, %d dropped; want 4 and 2", n, d)
	}
	for i := 0; i < 5; i++ {
		w.Record(Event{Kind: KindRegister, Cause: cause.WrongPassword})
	}
	if n, d := w.q.Len(), w.Dropped(); n != 8 || d != 3 {
		t.Fatalf("after 5 failures more: %d queued, %d dropped; want 8 and 3", n, d)
	}
}
