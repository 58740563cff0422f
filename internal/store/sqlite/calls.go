package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/multirow"
)

const callUpsertCols = 17

func newCallUpsert(db *sql.DB) *multirow.Insert {
	return multirow.New(db, `INSERT INTO calls(id, call_id, caller, callee, domain, source, transport,
		user_agent, started_at, answered_at, ended_at, sip_status, cause, hangup_by, branches, detail, media)`, callUpsertCols,
		`ON CONFLICT(id) DO UPDATE SET answered_at = excluded.answered_at, ended_at = excluded.ended_at,
		sip_status = excluded.sip_status, cause = excluded.cause, hangup_by = excluded.hangup_by,
		branches = excluded.branches, detail = excluded.detail, media = excluded.media`)
}

// SaveCalls upserts records with statements prepared once per database
// (multirow), in transactions of at most backgroundChunk records; branches
// are stored as JSON. On an error the chunks before the failed one are
// written.
func (db *DB) SaveCalls(ctx context.Context, recs []store.Call) error {
	last := make(map[int64]int, len(recs))
	for i := range recs {
		last[recs[i].ID] = i
	}
	args := make([]any, 0, len(last)*callUpsertCols)
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
		media, err := store.EncodeMedia(r.Media)
		if err != nil {
			return fmt.Errorf("calls: call %d: %w", r.ID, err)
		}
		args = append(args, r.ID, r.CallID, r.From, r.To, r.Domain, r.Source, r.Transport,
			r.UserAgent, micros(r.Start), micros(r.Answer), micros(r.End), int64(r.SIPStatus), string(r.Cause), r.HangupBy,
			string(branches), r.Detail, media)
	}
	// In background writes of at most backgroundChunk records (see
	// writeGate).
	for len(args) > 0 {
		n := min(len(args), backgroundChunk*callUpsertCols)
		if err := db.gate.do(false, func() error { return db.callUpsert.Write(ctx, args[:n]) }); err != nil {
			return fmt.Errorf("calls: save: %w", err)
		}
		args = args[n:]
	}
	return nil
}

// LastCallID returns the highest stored call id (0 when none).
func (db *DB) LastCallID(ctx context.Context) (int64, error) {
	var maxID sql.NullInt64
	if err := db.sql.QueryRowContext(ctx, "SELECT max(id) FROM calls").Scan(&maxID); err != nil {
		return 0, fmt.Errorf("calls: read last id: %w", err)
	}
	return maxID.Int64, nil
}

// EndActiveCalls ends every call recorded as in progress.
func (db *DB) EndActiveCalls(ctx context.Context, at time.Time, c cause.Code, by, detail string) (int64, error) {
	res, err := db.sql.ExecContext(ctx, `UPDATE calls SET ended_at = ?, cause = ?, hangup_by = ?,
		detail = CASE WHEN detail = '' THEN ? ELSE detail || '; ' || ? END WHERE ended_at = 0`,
		micros(at), string(c), by, detail, detail)
	if err != nil {
		return 0, fmt.Errorf("calls: end calls left in progress: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

const callColumns = `id, call_id, caller, callee, domain, source, transport, user_agent, started_at, answered_at,
	ended_at, sip_status, cause, hangup_by, branches, detail, media`

// QueryCalls returns the records matching f, newest first.
func (db *DB) QueryCalls(ctx context.Context, f store.CallFilter) ([]store.Call, error) {
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
	q := "SELECT " + callColumns + " FROM calls"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += fmt.Sprintf(" ORDER BY id DESC LIMIT %d", limit)
	rows, err := db.sql.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("calls: query: %w", err)
	}
	defer rows.Close()
	out := []store.Call{}
	for rows.Next() {
		r, err := scanCall(rows)
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

// CallByID returns one record (store.ErrNotFound).
func (db *DB) CallByID(ctx context.Context, id int64) (store.Call, error) {
	r, err := scanCall(db.sql.QueryRowContext(ctx, "SELECT "+callColumns+" FROM calls WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Call{}, fmt.Errorf("call %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Call{}, fmt.Errorf("calls: get %d: %w", id, err)
	}
	return r, nil
}

// CountActiveCalls returns how many calls are in progress.
func (db *DB) CountActiveCalls(ctx context.Context) (int, error) {
	var n int
	if err := db.sql.QueryRowContext(ctx, "SELECT count(*) FROM calls WHERE ended_at = 0").Scan(&n); err != nil {
		return 0, fmt.Errorf("calls: count active: %w", err)
	}
	return n, nil
}

// PruneCalls deletes by age, then by count; both are tried and their
// errors joined.
// Both delete in background writes of at most pruneChunk rows (see
// PruneEvents).
func (db *DB) PruneCalls(ctx context.Context, before time.Time, keep int) error {
	return db.prune(ctx, "calls", "started_at < ? AND ended_at != 0", micros(before), "ended_at != 0", keep)
}

func scanCall(sc interface{ Scan(...any) error }) (store.Call, error) {
	var r store.Call
	var start, answer, end int64
	var c, branches, media string
	if err := sc.Scan(&r.ID, &r.CallID, &r.From, &r.To, &r.Domain, &r.Source, &r.Transport, &r.UserAgent,
		&start, &answer, &end, &r.SIPStatus, &c, &r.HangupBy, &branches, &r.Detail, &media); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return r, err
		}
		return r, fmt.Errorf("calls: read: %w", err)
	}
	r.Start, r.Answer, r.End = fromMicros(start), fromMicros(answer), fromMicros(end)
	r.Cause = cause.Code(c)
	r.Branches = []store.CallBranch{}
	if branches != "" && branches != "[]" {
		if err := json.Unmarshal([]byte(branches), &r.Branches); err != nil {
			return r, fmt.Errorf("calls: read branches of call %d: %w", r.ID, err)
		}
	}
	var err error
	if r.Media, err = store.DecodeMedia(media); err != nil {
		return r, fmt.Errorf("calls: read call %d: %w", r.ID, err)
	}
	return r, nil
}

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
