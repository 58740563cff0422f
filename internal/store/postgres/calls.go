package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// callUpsert writes any number of call records in one statement.
const callUpsert = `INSERT INTO calls(id, call_id, caller, callee, domain, source, transport,
		user_agent, started_at, answered_at, ended_at, sip_status, cause, hangup_by, branches, detail, media)
	SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
		$8::text[], $9::int8[], $10::int8[], $11::int8[], $12::int4[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[])
	ON CONFLICT (id) DO UPDATE SET answered_at = excluded.answered_at, ended_at = excluded.ended_at,
		sip_status = excluded.sip_status, cause = excluded.cause, hangup_by = excluded.hangup_by,
		branches = excluded.branches, detail = excluded.detail, media = excluded.media`

// SaveCalls upserts records in one statement (one round trip); branches
// are stored as JSON.
func (db *DB) SaveCalls(ctx context.Context, recs []store.Call) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if len(recs) == 0 {
		return nil
	}
	last := make(map[int64]int, len(recs))
	for i := range recs {
		last[recs[i].ID] = i
	}
	n := len(last)
	ids, start, answer, end := make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
	status := make([]int32, 0, n)
	txt := make([][]string, 12)
	for i := range txt {
		txt[i] = make([]string, 0, n)
	}
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
		ids, start, answer, end = append(ids, r.ID), append(start, micros(r.Start)), append(answer, micros(r.Answer)), append(end, micros(r.End))
		status = append(status, int32(r.SIPStatus))
		for j, v := range []string{r.CallID, r.From, r.To, r.Domain, r.Source, r.Transport, r.UserAgent,
			string(r.Cause), r.HangupBy, string(branches), r.Detail, media} {
			txt[j] = append(txt[j], v)
		}
	}
	if _, err := db.pool.Exec(ctx, callUpsert, ids, txt[0], txt[1], txt[2], txt[3], txt[4], txt[5], txt[6],
		start, answer, end, status, txt[7], txt[8], txt[9], txt[10], txt[11]); err != nil {
		return fmt.Errorf("calls: save: %w", err)
	}
	return nil
}

// LastCallID returns the highest stored call id (0 when none).
func (db *DB) LastCallID(ctx context.Context) (int64, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var id int64
	if err := db.pool.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM calls").Scan(&id); err != nil {
		return 0, fmt.Errorf("calls: read last id: %w", err)
	}
	return id, nil
}

// EndActiveCalls ends every call recorded as in progress.
func (db *DB) EndActiveCalls(ctx context.Context, at time.Time, c cause.Code, by, detail string) (int64, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, `UPDATE calls SET ended_at = $1, cause = $2, hangup_by = $3,
		detail = CASE WHEN detail = '' THEN $4 ELSE detail || '; ' || $4 END WHERE ended_at = 0`,
		micros(at), string(c), by, detail)
	if err != nil {
		return 0, fmt.Errorf("calls: end calls left in progress: %w", err)
	}
	return tag.RowsAffected(), nil
}

const callColumns = `id, call_id, caller, callee, domain, source, transport, user_agent, started_at, answered_at,
	ended_at, sip_status, cause, hangup_by, branches, detail, media`

// QueryCalls returns the records matching f, newest first.
func (db *DB) QueryCalls(ctx context.Context, f store.CallFilter) ([]store.Call, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.From != "" {
		where = append(where, "caller = "+arg(f.From))
	}
	if f.To != "" {
		where = append(where, "callee = "+arg(f.To))
	}
	if f.Ext != "" {
		p := arg(f.Ext)
		where = append(where, "(caller = "+p+" OR callee = "+p+")")
	}
	if f.Domain != "" {
		where = append(where, "lower(domain) = lower("+arg(f.Domain)+")")
	}
	if f.CallID != "" {
		where = append(where, "call_id = "+arg(f.CallID))
	}
	if f.Active {
		where = append(where, "ended_at = 0")
	}
	if f.Failed {
		where = append(where, "ended_at <> 0 AND cause <> "+arg(string(cause.NormalClearing)))
	}
	if !f.Since.IsZero() {
		where = append(where, "started_at >= "+arg(micros(f.Since)))
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
	rows, err := db.pool.Query(ctx, q, args...)
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
	ctx, cancel := db.bound(ctx)
	defer cancel()
	r, err := scanCall(db.pool.QueryRow(ctx, "SELECT "+callColumns+" FROM calls WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Call{}, fmt.Errorf("call %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Call{}, fmt.Errorf("calls: get %d: %w", id, err)
	}
	return r, nil
}

// CountActiveCalls returns how many calls are in progress.
func (db *DB) CountActiveCalls(ctx context.Context) (int, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var n int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM calls WHERE ended_at = 0").Scan(&n); err != nil {
		return 0, fmt.Errorf("calls: count active: %w", err)
	}
	return n, nil
}

// PruneCalls deletes by age, then by count; both are tried and their
// errors joined.
func (db *DB) PruneCalls(ctx context.Context, before time.Time, keep int) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var errs []error
	if _, err := db.pool.Exec(ctx, "DELETE FROM calls WHERE started_at < $1 AND ended_at <> 0", micros(before)); err != nil {
		errs = append(errs, fmt.Errorf("calls: prune by age: %w", err))
	}
	if _, err := db.pool.Exec(ctx,
		"DELETE FROM calls WHERE id <= (SELECT max(id) FROM calls) - $1 AND ended_at <> 0", keep); err != nil {
		errs = append(errs, fmt.Errorf("calls: prune by count: %w", err))
	}
	return errors.Join(errs...)
}

func scanCall(sc interface{ Scan(...any) error }) (store.Call, error) {
	var r store.Call
	var start, answer, end int64
	var c, branches, media string
	if err := sc.Scan(&r.ID, &r.CallID, &r.From, &r.To, &r.Domain, &r.Source, &r.Transport, &r.UserAgent,
		&start, &answer, &end, &r.SIPStatus, &c, &r.HangupBy, &branches, &r.Detail, &media); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
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
