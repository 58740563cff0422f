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
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/batch"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store/multirow"
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
)

// AdminCauses returns the causes of KindAdmin events.
func AdminCauses() []cause.Code {
	return []cause.Code{cause.BanLifted, cause.BanAdded, cause.ACLChanged, cause.ProfileChanged}
}

// Event is one decision.
type Event struct {
	ID        int64      `json:"id"`
	Time      time.Time  `json:"time"`
	Kind      string     `json:"kind"`
	Cause     cause.Code `json:"cause"`
	Extension string     `json:"extension"`
	Domain    string     `json:"domain"`
	AuthUser  string     `json:"auth_user"`
	Realm     string     `json:"realm"`
	Source    string     `json:"source"`
	Transport string     `json:"transport"`
	UserAgent string     `json:"user_agent"`
	Status    int        `json:"sip_status"`
	CallID    string     `json:"call_id"`
	Detail    string     `json:"detail"`
}

// SourceIP returns the IP part of Source.
func (e *Event) SourceIP() string {
	if h, _, err := net.SplitHostPort(e.Source); err == nil {
		return h
	}
	return e.Source
}

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
	db        *sql.DB
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
}

// NewWriter returns a writer with a queue of queueLen events (0 = 65536).
func NewWriter(db *sql.DB, log *slog.Logger, r Retention, queueLen int) *Writer {
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
	w.q.Add(e)
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
	in := newInsert(w.db)
	defer in.Close()
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
				if err := insert(context.Background(), in, events); err != nil {
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
func Insert(ctx context.Context, db *sql.DB, events []Event) error {
	in := newInsert(db)
	defer in.Close()
	return insert(ctx, in, events)
}

func newInsert(db *sql.DB) *multirow.Insert {
	return multirow.New(db, `INSERT INTO journal(time, kind, cause, extension, domain, auth_user, realm,
		source, transport, user_agent, status, call_id, detail)`, insertCols, "")
}

const insertCols = 13

// insert writes events in one transaction with in's statements.
func insert(ctx context.Context, in *multirow.Insert, events []Event) error {
	args := make([]any, 0, len(events)*insertCols)
	for i := range events {
		e := &events[i]
		args = append(args, e.Time.UnixMicro(), e.Kind, string(e.Cause), e.Extension, e.Domain,
			e.AuthUser, e.Realm, e.Source, e.Transport, e.UserAgent, e.Status, e.CallID, e.Detail)
	}
	if err := in.Write(ctx, args); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

func (w *Writer) prune(ctx context.Context) {
	cutoff := w.now().Add(-w.retention.MaxAge).UnixMicro()
	if _, err := w.db.ExecContext(ctx, "DELETE FROM journal WHERE time < ?", cutoff); err != nil {
		w.log.Warn("journal: prune by age failed", "error", err)
	}
	if _, err := w.db.ExecContext(ctx,
		"DELETE FROM journal WHERE id <= (SELECT max(id) FROM journal) - ?", w.retention.MaxEvents); err != nil {
		w.log.Warn("journal: prune by count failed", "error", err)
	}
}

// Filter selects events. Zero fields match everything.
type Filter struct {
	Extension string
	Domain    string
	IP        string // source IP (any port)
	Kind      string
	Cause     cause.Code
	Since     time.Time
	AfterID   int64
	Limit     int // default 1000
	// Oldest returns the oldest first (default newest first), by time and
	// then id.
	Oldest bool
}

// Query returns events matching f.
func Query(ctx context.Context, db *sql.DB, f Filter) ([]Event, error) {
	var where []string
	var args []any
	// col names a filtered column. Following (AfterID) reads the few rows
	// past a known id through the primary key: a unary + keeps SQLite from
	// walking an extension's (or address's) whole index instead.
	col := func(name string) string {
		if f.AfterID > 0 {
			return "+" + name
		}
		return name
	}
	if f.Extension != "" {
		where = append(where, col("extension")+" = ?")
		args = append(args, f.Extension)
	}
	if f.Domain != "" {
		where = append(where, "domain = ? COLLATE NOCASE")
		args = append(args, f.Domain)
	}
	if f.IP != "" {
		// Ranges instead of LIKE so the journal_source index serves them:
		// "ip:" <= source < "ip;" matches every "ip:port" (';' follows ':').
		src := col("source")
		where = append(where, "("+src+" = ? OR ("+src+" >= ? AND "+src+" < ?) OR ("+src+" >= ? AND "+src+" < ?))")
		args = append(args, f.IP, f.IP+":", f.IP+";", "["+f.IP+"]:", "["+f.IP+"];")
	}
	if f.Kind != "" {
		where = append(where, col("kind")+" = ?")
		args = append(args, f.Kind)
	}
	if f.Cause != "" {
		where = append(where, col("cause")+" = ?")
		args = append(args, string(f.Cause))
	}
	if !f.Since.IsZero() {
		where = append(where, col("time")+" >= ?")
		args = append(args, f.Since.UnixMicro())
	}
	if f.AfterID > 0 {
		where = append(where, "id > ?")
		args = append(args, f.AfterID)
	}
	q := `SELECT id, time, kind, cause, extension, domain, auth_user, realm, source, transport, user_agent, status,
		call_id, detail FROM journal`
	if f.Extension != "" && f.AfterID == 0 {
		// An extension's newest events come straight off journal_ext in
		// order. Pinned because with ANALYZE statistics SQLite may prefer a
		// skip-scan of journal_dom_ext_cause and sort hundreds of thousands
		// of rows (seconds, not milliseconds); a schema change that drops
		// the index then fails loudly instead of slowly.
		q += " INDEXED BY journal_ext"
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	// By time, then id: the order of the journal_ext and journal_time
	// indexes (whose entries end with the rowid), so an extension's newest
	// events come straight off journal_ext however many it has. Following
	// (AfterID) reads the few rows past a known id in id order.
	order := "time %[1]s, id %[1]s"
	if f.AfterID > 0 {
		order = "id %[1]s"
	}
	dir := "DESC"
	if f.Oldest {
		dir = "ASC"
	}
	q += " ORDER BY " + fmt.Sprintf(order, dir)
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	q += fmt.Sprintf(" LIMIT %d", limit)
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("journal: query: %w", err)
	}
	out, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("journal: query: %w", err)
	}
	return out, nil
}

// scanEvents reads the rows of a query that selects the journal's columns
// in table order, and closes them.
func scanEvents(rows *sql.Rows) ([]Event, error) {
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var t int64
		var c string
		if err := rows.Scan(&e.ID, &t, &e.Kind, &c, &e.Extension, &e.Domain, &e.AuthUser, &e.Realm, &e.Source,
			&e.Transport, &e.UserAgent, &e.Status, &e.CallID, &e.Detail); err != nil {
			return nil, err
		}
		e.Time = time.UnixMicro(t)
		e.Cause = cause.Code(c)
		out = append(out, e)
	}
	return out, rows.Err()
}

// Admin returns the newest operator changes (KindAdmin events, which name
// no extension and no domain), newest first, at most limit (0 = 200). It
// seeks the journal_dom_ext_cause index, so it costs the same however
// large the journal is.
func Admin(ctx context.Context, db *sql.DB, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = 200
	}
	causes := AdminCauses()
	q := `SELECT id, time, kind, cause, extension, domain, auth_user, realm, source, transport, user_agent, status,
		call_id, detail FROM journal INDEXED BY journal_dom_ext_cause
		WHERE domain = '' AND extension = '' AND cause IN (?` + strings.Repeat(",?", len(causes)-1) + `) AND kind = ?
		ORDER BY time DESC, id DESC LIMIT ?`
	args := make([]any, 0, len(causes)+2)
	for _, c := range causes {
		args = append(args, string(c))
	}
	args = append(args, KindAdmin, limit)
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("journal: read admin events: %w", err)
	}
	out, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("journal: read admin events: %w", err)
	}
	return out, nil
}
