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
//	recs, err := calls.Query(ctx, db.SQL(), calls.Filter{To: "2002", Failed: true, Limit: 10})
package calls

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/batch"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/multirow"
)

// Hangup parties recorded in Record.HangupBy.
const (
	ByCaller = "caller" // the caller hung up (BYE) or cancelled (CANCEL)
	ByCallee = "callee" // the callee hung up or refused
	ByServer = "server" // switchboard ended it: ring timeout, no response, shutdown
	ByAdmin  = "admin"  // an operator hung it up (switchboard calls hangup)
)

// Branch is one binding the call was forked to and what it answered.
type Branch struct {
	// Contact is the binding's contact URI (the INVITE's Request-URI).
	Contact string `json:"contact"`
	// Destination is the address the INVITE was sent to (where the phone
	// registered from) and Transport how.
	Destination string `json:"destination"`
	Transport   string `json:"transport"`
	UserAgent   string `json:"user_agent"`
	// Status is the final SIP status the branch answered (0: none; 408 is
	// also used when it never answered at all).
	Status int `json:"sip_status"`
	// Reason is the reason phrase, or what happened ("no response",
	// "cancelled: another phone answered", ...).
	Reason string `json:"reason"`
	// Ringing is true once the branch sent 180/183.
	Ringing bool `json:"ringing"`
}

// Record is one call attempt.
type Record struct {
	ID        int64  `json:"id"`
	CallID    string `json:"call_id"`
	From      string `json:"from"` // caller's user part, e.g. "2001"
	To        string `json:"to"`   // dialled user part, e.g. "2002"
	Domain    string `json:"domain"`
	Source    string `json:"caller_source"` // ip:port the INVITE came from
	Transport string `json:"transport"`
	UserAgent string `json:"user_agent"`
	// Start, Answer and End are zero when not (yet) reached.
	Start     time.Time  `json:"start"`
	Answer    time.Time  `json:"answer"`
	End       time.Time  `json:"end"`
	SIPStatus int        `json:"sip_status"` // final status sent to the caller (0 while ringing)
	Cause     cause.Code `json:"cause"`      // "" while in progress
	HangupBy  string     `json:"hangup_by"`  // ByCaller, ByCallee, ByServer; "" while in progress
	Branches  []Branch   `json:"branches"`
	Detail    string     `json:"detail"`
}

// Active reports whether the call is still in progress.
func (r *Record) Active() bool { return r.End.IsZero() }

// Duration is the talk time: from answer to end (or to now while the call
// is up); 0 for a call that was never answered.
func (r *Record) Duration(now time.Time) time.Duration {
	if r.Answer.IsZero() {
		return 0
	}
	end := r.End
	if end.IsZero() {
		end = now
	}
	if end.Before(r.Answer) {
		return 0
	}
	return end.Sub(r.Answer)
}

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
	db        *sql.DB
	log       *slog.Logger
	retention Retention
	q         *batch.Queue[Record]
	nextID    atomic.Int64
	now       func() time.Time
}

// NewWriter returns a writer with a queue of queueLen snapshots (0 = 65536).
func NewWriter(db *sql.DB, log *slog.Logger, r Retention, queueLen int) *Writer {
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
	var maxID sql.NullInt64
	if err := w.db.QueryRowContext(ctx, "SELECT max(id) FROM calls").Scan(&maxID); err != nil {
		return 0, fmt.Errorf("calls: read last id: %w", err)
	}
	w.nextID.Store(maxID.Int64)
	return EndActive(ctx, w.db, w.now(), cause.SystemShutdown, ByServer,
		"switchboard stopped while this call was in progress; its real end time is unknown")
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
	in := newUpsert(w.db)
	defer in.Close()
	w.q.Run(ctx, batch.Loop[Record]{
		Write: func(recs []Record) {
			if err := upsert(context.Background(), in, recs); err != nil {
				w.log.Error("calls: write failed", "records", len(recs), "error", err)
			}
		},
		Housekeeping: func() { w.prune(ctx) },
	})
}

// Upsert writes records in one transaction; for several snapshots of one id
// the last one wins.
func Upsert(ctx context.Context, db *sql.DB, recs []Record) error {
	in := newUpsert(db)
	defer in.Close()
	return upsert(ctx, in, recs)
}

const upsertCols = 16

func newUpsert(db *sql.DB) *multirow.Insert {
	return multirow.New(db, `INSERT INTO calls(id, call_id, caller, callee, domain, source, transport,
		user_agent, started_at, answered_at, ended_at, sip_status, cause, hangup_by, branches, detail)`, upsertCols,
		`ON CONFLICT(id) DO UPDATE SET answered_at = excluded.answered_at, ended_at = excluded.ended_at,
		sip_status = excluded.sip_status, cause = excluded.cause, hangup_by = excluded.hangup_by,
		branches = excluded.branches, detail = excluded.detail`)
}

// upsert writes records in one transaction with in's statements.
func upsert(ctx context.Context, in *multirow.Insert, recs []Record) error {
	last := make(map[int64]int, len(recs))
	for i := range recs {
		last[recs[i].ID] = i
	}
	args := make([]any, 0, len(last)*upsertCols)
	for i := range recs {
		if last[recs[i].ID] != i {
			continue
		}
		r := &recs[i]
		branches := []byte("[]")
		if len(r.Branches) > 0 {
			var err error
			if branches, err = json.Marshal(r.Branches); err != nil {
				return fmt.Errorf("calls: encode branches of call %d: %w", r.ID, err)
			}
		}
		args = append(args, r.ID, r.CallID, r.From, r.To, r.Domain, r.Source, r.Transport,
			r.UserAgent, micros(r.Start), micros(r.Answer), micros(r.End), r.SIPStatus, string(r.Cause), r.HangupBy,
			string(branches), r.Detail)
	}
	if err := in.Write(ctx, args); err != nil {
		return fmt.Errorf("calls: save: %w", err)
	}
	return nil
}

func (w *Writer) prune(ctx context.Context) {
	cutoff := micros(w.now().Add(-w.retention.MaxAge))
	if _, err := w.db.ExecContext(ctx, "DELETE FROM calls WHERE started_at < ? AND ended_at != 0", cutoff); err != nil && ctx.Err() == nil {
		w.log.Warn("calls: prune by age failed", "error", err)
	}
	if _, err := w.db.ExecContext(ctx,
		"DELETE FROM calls WHERE id <= (SELECT max(id) FROM calls) - ? AND ended_at != 0", w.retention.MaxRecords); err != nil && ctx.Err() == nil {
		w.log.Warn("calls: prune by count failed", "error", err)
	}
}

// EndActive ends every call recorded as in progress with cause c at time
// at, and returns how many it ended.
func EndActive(ctx context.Context, db *sql.DB, at time.Time, c cause.Code, by, detail string) (int64, error) {
	res, err := db.ExecContext(ctx, `UPDATE calls SET ended_at = ?, cause = ?, hangup_by = ?,
		detail = CASE WHEN detail = '' THEN ? ELSE detail || '; ' || ? END WHERE ended_at = 0`,
		micros(at), string(c), by, detail, detail)
	if err != nil {
		return 0, fmt.Errorf("calls: end calls left in progress: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// Filter selects records. Zero fields match everything.
type Filter struct {
	From   string // caller user part
	To     string // dialled user part
	Ext    string // either side
	Domain string
	CallID string
	// Active selects calls in progress only.
	Active bool
	// Failed selects ended calls whose cause is not NORMAL_CLEARING.
	Failed bool
	Since  time.Time
	Limit  int // default 100
}

const columns = `id, call_id, caller, callee, domain, source, transport, user_agent, started_at, answered_at,
	ended_at, sip_status, cause, hangup_by, branches, detail`

// Query returns the records matching f, newest first.
func Query(ctx context.Context, db *sql.DB, f Filter) ([]Record, error) {
	var where []string
	var args []any
	add := func(cond string, a ...any) {
		where = append(where, cond)
		args = append(args, a...)
	}
	if f.From != "" {
		add("caller = ?", f.From)
	}
	if f.To != "" {
		add("callee = ?", f.To)
	}
	if f.Ext != "" {
		add("(caller = ? OR callee = ?)", f.Ext, f.Ext)
	}
	if f.Domain != "" {
		add("domain = ? COLLATE NOCASE", f.Domain)
	}
	if f.CallID != "" {
		add("call_id = ?", f.CallID)
	}
	if f.Active {
		add("ended_at = 0")
	}
	if f.Failed {
		add("ended_at != 0 AND cause != ?", string(cause.NormalClearing))
	}
	if !f.Since.IsZero() {
		add("started_at >= ?", micros(f.Since))
	}
	q := "SELECT " + columns + " FROM calls"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += fmt.Sprintf(" ORDER BY id DESC LIMIT %d", limit)
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("calls: query: %w", err)
	}
	defer rows.Close()
	out := []Record{}
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("calls: query: %w", err)
	}
	return out, nil
}

// Get returns one record; the error wraps store.ErrNotFound when there is
// no call with that id.
func Get(ctx context.Context, db *sql.DB, id int64) (Record, error) {
	rows, err := db.QueryContext(ctx, "SELECT "+columns+" FROM calls WHERE id = ?", id)
	if err != nil {
		return Record{}, fmt.Errorf("calls: get %d: %w", id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Record{}, fmt.Errorf("calls: get %d: %w", id, err)
		}
		return Record{}, fmt.Errorf("call %d: %w", id, store.ErrNotFound)
	}
	return scan(rows)
}

func scan(rows *sql.Rows) (Record, error) {
	var r Record
	var start, answer, end int64
	var c, branches string
	if err := rows.Scan(&r.ID, &r.CallID, &r.From, &r.To, &r.Domain, &r.Source, &r.Transport, &r.UserAgent,
		&start, &answer, &end, &r.SIPStatus, &c, &r.HangupBy, &branches, &r.Detail); err != nil {
		return r, fmt.Errorf("calls: read: %w", err)
	}
	r.Start, r.Answer, r.End = fromMicros(start), fromMicros(answer), fromMicros(end)
	r.Cause = cause.Code(c)
	r.Branches = []Branch{}
	if branches != "" && branches != "[]" {
		if err := json.Unmarshal([]byte(branches), &r.Branches); err != nil {
			return r, fmt.Errorf("calls: read branches of call %d: %w", r.ID, err)
		}
	}
	return r, nil
}

// ErrNotFound is store.ErrNotFound, for callers that only import calls.
var ErrNotFound = store.ErrNotFound

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us)
}
