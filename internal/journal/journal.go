// Package journal records every decision switchboard takes (each REGISTER
// and INVITE answer, binding expiry, qualify failures and recoveries, bans)
// as an Event in the database, so the doctor and the operator can explain
// what happened afterwards.
//
// Writes are asynchronous and batched: Record never blocks the SIP hot path.
// When the queue is full (the database cannot keep up), events are dropped
// and counted rather than slowing registration. The table is bounded by age
// and count (Retention).
package journal

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/batch"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Event kinds.
const (
	KindRegister = "register"
	KindInvite   = "invite"
	KindBinding  = "binding"
	KindQualify  = "qualify"
	KindBan      = "ban"
	KindRequest  = "request"
	// KindAdmin is an operator's change made with the CLI (ban add/rm, acl
	// and profile edits); AuthUser holds the OS user who made it, Source the
	// address a ban names, Detail what changed. See AdminCauses.
	KindAdmin = "admin"
	// KindConsole is a refused web console login: AuthUser holds the name
	// tried, Source the client's address (causes wrong_password,
	// unknown_admin, login_locked).
	KindConsole = "console"
)

// AdminCauses returns the causes of KindAdmin events.
func AdminCauses() []cause.Code {
	return []cause.Code{cause.BanLifted, cause.BanAdded, cause.ACLChanged, cause.ProfileChanged}
}

// Event is one decision (its fields are defined with the store, which
// keeps them).
type Event = store.Event

// Retention bounds the journal.
type Retention struct {
	MaxAge    time.Duration // default 7 days
	MaxEvents int           // default 1,000,000
}

// DefaultRetention is 7 days and 1,000,000 events.
var DefaultRetention = Retention{MaxAge: 7 * 24 * time.Hour, MaxEvents: 1_000_000}

// Writer batches events into the database. Create with NewWriter; Run
// drains the queue until its context ends, then flushes what is left.
type Writer struct {
	db        store.Journal
	log       *slog.Logger
	retention Retention
	q         *batch.Queue[Event]
	now       func() time.Time
	// off, when set, makes Record a no-op (see Disable).
	off atomic.Bool
	// lost counts events dropped because their write kept failing.
	lost atomic.Int64

	holdMu sync.Mutex       // guards held
	held   map[uint64]Event // see Hold

	// tap, when set, sees every event queued (see Tap).
	tap atomic.Pointer[func(Event)]
}

// Tap makes fn see every event the writer queues for the database (from
// Record, and held events when they are recorded), as it is queued: the
// live feed of the web console. fn runs on the recording goroutine (the
// SIP hot path) and must not block; nil removes the tap. Events seen by
// fn have no ID yet. An event dropped because the queue is full is still
// seen.
func (w *Writer) Tap(fn func(Event)) {
	if fn == nil {
		w.tap.Store(nil)
		return
	}
	w.tap.Store(&fn)
}

// add queues e and shows it to the tap. A routine success (a REGISTER
// that registered) only takes the first half of the queue: when the
// database falls behind (a flood of registrations writes bindings first,
// see store/sqlite's writeGate), the half left keeps room for what the
// doctor explains failures with (challenges gone wrong, refusals, bans).
// Both kinds of drop are counted in Dropped.
func (w *Writer) add(e Event) {
	if e.Cause == cause.Registered {
		w.q.AddBelow(e, w.q.Cap()/2)
	} else {
		w.q.Add(e)
	}
	if fn := w.tap.Load(); fn != nil {
		(*fn)(e)
	}
}

// NewWriter returns a writer with a queue of queueLen events (0 = 65536).
func NewWriter(db store.Journal, log *slog.Logger, r Retention, queueLen int) *Writer {
	if queueLen <= 0 {
		queueLen = 65536
	}
	if r.MaxAge <= 0 {
		r.MaxAge = DefaultRetention.MaxAge
	}
	if r.MaxEvents <= 0 {
		r.MaxEvents = DefaultRetention.MaxEvents
	}
	return &Writer{db: db, log: log, retention: r, q: batch.New[Event](queueLen), now: time.Now,
		held: map[uint64]Event{}}
}

// Disable turns recording off: Record then drops every event at once
// without counting it as dropped. It exists to measure what the journal
// costs (serve --journal=false); the doctor has nothing to explain without
// it. Safe to call at any time; Run, Flush and pruning keep working.
func (w *Writer) Disable() { w.off.Store(true) }

// Enabled reports whether Record keeps events (see Disable).
func (w *Writer) Enabled() bool { return w != nil && !w.off.Load() }

// Record queues an event; it never blocks. Time is set when zero.
func (w *Writer) Record(e Event) {
	if w == nil || w.off.Load() {
		return
	}
	if e.Time.IsZero() {
		e.Time = w.now()
	}
	w.add(e)
}

// Dropped is how many events were dropped: the queue was full, or they
// could not be written (the store failed for longer than maxUnsaved events
// took to arrive).
func (w *Writer) Dropped() int64 { return w.q.Dropped() + w.lost.Load() }

// maxUnsaved is how many events whose write failed the writer keeps to
// try again.
const maxUnsaved = 10000

// Flush waits until every event recorded (or held) before the call is
// written (or ctx ends).
func (w *Writer) Flush(ctx context.Context) {
	w.release(true)
	w.q.Flush(ctx)
}

// Run writes batches every 50 ms until ctx is done, then records the held
// events and writes what is queued. It prunes old events every minute.
func (w *Writer) Run(ctx context.Context) {
	qctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	// unsaved holds the newest events (at most maxUnsaved) whose write
	// failed (a full disk): they go first in the next write; older ones
	// are dropped and counted. Only the queue's goroutine uses it.
	var unsaved []Event
	go func() {
		defer close(done)
		w.q.Run(qctx, batch.Loop[Event]{
			Write: func(events []Event) {
				if len(unsaved) > 0 {
					events = append(unsaved, events...)
				}
				if err := w.db.InsertEvents(context.Background(), events); err != nil {
					if len(unsaved) == 0 {
						w.log.Error("journal: write failed; keeping the newest events to try again", "events", len(events),
							"error", err)
					}
					if n := len(events) - maxUnsaved; n > 0 {
						w.lost.Add(int64(n))
						events = events[n:]
					}
					unsaved = append([]Event(nil), events...)
					return
				}
				if len(unsaved) > 0 {
					w.log.Info("journal: writes again", "events", len(events), "lost", w.lost.Load())
				}
				unsaved = nil
			},
			Housekeeping: func() { w.prune(ctx) },
		})
	}()
	t := time.NewTicker(HoldFor / 4)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.release(false)
		case <-ctx.Done():
			w.release(true)
			stop()
			<-done
			return
		}
	}
}

// Insert writes events in one transaction.
func Insert(ctx context.Context, db store.Journal, events []Event) error {
	return db.InsertEvents(ctx, events)
}

func (w *Writer) prune(ctx context.Context) {
	if err := w.db.PruneEvents(ctx, w.now().Add(-w.retention.MaxAge), w.retention.MaxEvents); err != nil {
		w.log.Warn("journal: prune failed", "error", err)
	}
}

// Filter selects events. Zero fields match everything.
type Filter = store.JournalFilter

// Query returns events matching f (see store.Journal.QueryEvents).
func Query(ctx context.Context, db store.Journal, f Filter) ([]Event, error) {
	return db.QueryEvents(ctx, f)
}

// Admin returns the newest operator changes (KindAdmin events, which name
// no extension and no domain), newest first, at most limit (0 = 200).
func Admin(ctx context.Context, db store.Journal, limit int) ([]Event, error) {
	return db.AdminEvents(ctx, KindAdmin, AdminCauses(), limit)
}
