// Package calls keeps a record of every call attempt the proxy handled:
// who called whom, from where, when it started, was answered and ended, the
// final SIP status and the hangup cause (FreeSWITCH names such as
// NORMAL_CLEARING or USER_NOT_REGISTERED), which bindings were tried and what
// each answered, and who hung up.
//
// Records are written asynchronously in batches by Writer, so the SIP hot
// path never waits for the database: the proxy calls Save with a snapshot
// at each step of a call (start, answer, end) and the writer upserts the
// latest snapshot of each call per batch. A call in progress is a row with
// no end time; the CLI (another process) sees it in `switchboard calls
// --active`.
//
// Only authenticated INVITEs make a record: a challenge (407) is not a call
// attempt, and refused credentials are journaled (package journal) rather
// than recorded, so a password-guessing flood cannot fill the table.
//
// Calls that were still up when the server stopped cannot be followed any
// further: Writer.Init ends them with cause SYSTEM_SHUTDOWN (hangup_by
// "server") when the server starts again, and a graceful stop does the same
// for the calls it was tracking. Their end time is the moment the server
// noticed, not when the parties hung up.
//
// The table is bounded by Retention (age and count), pruned every minute.
//
// Readers (CLI, doctor, web console) use Query and Get on the same database:
//
//	recs, err := calls.Query(ctx, db, calls.Filter{To: "2002", Failed: true, Limit: 10})
package calls

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/batch"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Hangup parties recorded in Record.HangupBy.
const (
	ByCaller = "caller" // the caller hung up (BYE) or cancelled (CANCEL)
	ByCallee = "callee" // the callee hung up or refused
	ByServer = "server" // switchboard ended it: ring timeout, no response, shutdown
	ByAdmin  = "admin"  // an operator hung it up (switchboard calls hangup)
)

// Branch is one binding the call was forked to and what it answered.
type Branch = store.CallBranch

// Record is one call attempt (its fields are defined with the store,
// which keeps them).
type Record = store.Call

// Retention bounds the table.
type Retention struct {
	MaxAge     time.Duration // default 90 days
	MaxRecords int           // default 1,000,000
}

// DefaultRetention keeps 90 days and at most 1,000,000 calls.
var DefaultRetention = Retention{MaxAge: 90 * 24 * time.Hour, MaxRecords: 1_000_000}

// Writer batches records into the database. Create with NewWriter, call
// Init once before use, then Run drains the queue until its context ends.
type Writer struct {
	db        store.Calls
	log       *slog.Logger
	retention Retention
	q         *batch.Queue[Record]
	nextID    atomic.Int64
	now       func() time.Time
}

// NewWriter returns a writer with a queue of queueLen snapshots (0 = 65536).
func NewWriter(db store.Calls, log *slog.Logger, r Retention, queueLen int) *Writer {
	if queueLen <= 0 {
		queueLen = 65536
	}
	if r.MaxAge <= 0 {
		r.MaxAge = DefaultRetention.MaxAge
	}
	if r.MaxRecords <= 0 {
		r.MaxRecords = DefaultRetention.MaxRecords
	}
	return &Writer{db: db, log: log, retention: r, q: batch.New[Record](queueLen), now: time.Now}
}

// Init prepares the writer at server start: it continues the id sequence
// after the newest stored call and ends the calls a previous run left in
// progress (cause SYSTEM_SHUTDOWN). It returns how many it ended.
func (w *Writer) Init(ctx context.Context) (int64, error) {
	maxID, err := w.db.LastCallID(ctx)
	if err != nil {
		return 0, err
	}
	w.nextID.Store(maxID)
	return EndActive(ctx, w.db, w.now(), cause.SystemShutdown, ByServer,
		"switchboard stopped while this call was in progress; its real end time is unknown")
}

// InitRange prepares the writer of one of several nodes sharing the
// database: its ids continue from first (a range reserved for this node
// and run, store.Nodes.ReserveIDs) or from the highest stored, whichever
// is higher, so that nodes never write the same id. Unlike Init it ends
// no call: the calls left in progress may be another node's.
func (w *Writer) InitRange(ctx context.Context, first int64) error {
	maxID, err := w.db.LastCallID(ctx)
	if err != nil {
		return err
	}
	w.nextID.Store(max(maxID, first))
	return nil
}

// NextID returns a new call id (1, 2, 3, ... continuing across restarts).
func (w *Writer) NextID() int64 { return w.nextID.Add(1) }

// Save queues a snapshot of r; it never blocks. A later snapshot of the
// same id replaces the earlier one. When the queue is full the snapshot is
// dropped and counted (Dropped). r.Branches is copied.
func (w *Writer) Save(r Record) {
	if w == nil {
		return
	}
	r.Branches = slices.Clone(r.Branches)
	if !w.q.Add(r) {
		if n := w.q.Dropped(); n%1000 == 1 {
			w.log.Warn("calls: record queue full, dropping call record snapshots", "dropped", n)
		}
	}
}

// Dropped is how many snapshots were dropped because the queue was full.
func (w *Writer) Dropped() int64 { return w.q.Dropped() }

// Flush waits until every snapshot saved before the call is written (or
// ctx ends, or the writer stopped).
func (w *Writer) Flush(ctx context.Context) { w.q.Flush(ctx) }

// Run writes batches every 50 ms until ctx is done, then writes what is
// queued and returns. It prunes old records every minute.
func (w *Writer) Run(ctx context.Context) {
	w.q.Run(ctx, batch.Loop[Record]{
		Write: func(recs []Record) {
			if err := w.db.SaveCalls(context.Background(), recs); err != nil {
				w.log.Error("calls: write failed", "records", len(recs), "error", err)
			}
		},
		Housekeeping: func() { w.prune(ctx) },
	})
}

// Upsert writes records in one transaction; for several snapshots of one id
// the last one wins.
func Upsert(ctx context.Context, db store.Calls, recs []Record) error {
	return db.SaveCalls(ctx, recs)
}

func (w *Writer) prune(ctx context.Context) {
	err := w.db.PruneCalls(ctx, w.now().Add(-w.retention.MaxAge), w.retention.MaxRecords)
	if err != nil && ctx.Err() == nil {
		w.log.Warn("calls: prune failed", "error", err)
	}
}

// EndActive ends every call recorded as in progress with cause c at time
// at, and returns how many it ended.
func EndActive(ctx context.Context, db store.Calls, at time.Time, c cause.Code, by, detail string) (int64, error) {
	return db.EndActiveCalls(ctx, at, c, by, detail)
}

// Filter selects records. Zero fields match everything.
type Filter = store.CallFilter

// Query returns the records matching f, newest first.
func Query(ctx context.Context, db store.Calls, f Filter) ([]Record, error) {
	return db.QueryCalls(ctx, f)
}

// Get returns one record; the error wraps store.ErrNotFound when there is
// no call with that id.
func Get(ctx context.Context, db store.Calls, id int64) (Record, error) {
	return db.CallByID(ctx, id)
}

// ErrNotFound is store.ErrNotFound, for callers that only import calls.
var ErrNotFound = store.ErrNotFound
