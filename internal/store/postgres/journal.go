package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// journalInsert writes any number of events in one statement, in the
// order of the arrays (WITH ORDINALITY), so that ids follow it.
const journalInsert = `INSERT INTO journal(time, kind, cause, extension, domain, auth_user, realm,
		source, transport, user_agent, status, call_id, detail)
	SELECT t, k, c, e, d, a, r, s, tr, ua, st, ci, de FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[],
		$5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int4[], $12::text[], $13::text[])
		WITH ORDINALITY AS u(t, k, c, e, d, a, r, s, tr, ua, st, ci, de, ord)
	ORDER BY ord`

// InsertEvents writes events in one statement (one round trip): all or
// nothing, ids in order.
func (db *DB) InsertEvents(ctx context.Context, events []store.Event) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if len(events) == 0 {
		return nil
	}
	n := len(events)
	tm := make([]int64, n)
	st := make([]int32, n)
	cols := make([][]string, 11)
	for i := range cols {
		cols[i] = make([]string, n)
	}
	for i := range events {
		e := &events[i]
		tm[i], st[i] = e.Time.UnixMicro(), int32(e.Status)
		cols[0][i], cols[1][i], cols[2][i], cols[3][i], cols[4][i] = e.Kind, string(e.Cause), e.Extension, e.Domain, e.AuthUser
		cols[5][i], cols[6][i], cols[7][i], cols[8][i], cols[9][i], cols[10][i] = e.Realm, e.Source, e.Transport, e.UserAgent, e.CallID, e.Detail
	}
	if _, err := db.pool.Exec(ctx, journalInsert, tm, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6],
		cols[7], cols[8], st, cols[9], cols[10]); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

const journalColumns = `id, time, kind, cause, extension, domain, auth_user, realm, source, transport, user_agent, status,
		call_id, detail`

// QueryEvents returns the events matching f.
func (db *DB) QueryEvents(ctx context.Context, f store.JournalFilter) ([]store.Event, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.Extension != "" {
		where = append(where, "extension = "+arg(f.Extension))
	}
	if f.Domain != "" {
		where = append(where, "lower(domain) = lower("+arg(f.Domain)+")")
	}
	if f.IP != "" {
		// "ip", "ip:port" or "[ip]:port", not a longer address.
		where = append(where, "(source = "+arg(f.IP)+" OR starts_with(source, "+arg(f.IP+":")+
			") OR starts_with(source, "+arg("["+f.IP+"]:")+"))")
	}
	if f.Kind != "" {
		where = append(where, "kind = "+arg(f.Kind))
	}
	if f.Cause != "" {
		where = append(where, "cause = "+arg(string(f.Cause)))
	}
	if !f.Since.IsZero() {
		where = append(where, "time >= "+arg(f.Since.UnixMicro()))
	}
	if f.AfterID > 0 {
		where = append(where, "id > "+arg(f.AfterID))
	}
	q := "SELECT " + journalColumns + " FROM journal"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
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
	out, err := db.queryEvents(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("journal: query: %w", err)
	}
	return out, nil
}

func (db *DB) queryEvents(ctx context.Context, q string, args ...any) ([]store.Event, error) {
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func scanEvent(sc interface{ Scan(...any) error }) (store.Event, error) {
	var e store.Event
	var t int64
	var c string
	if err := sc.Scan(&e.ID, &t, &e.Kind, &c, &e.Extension, &e.Domain, &e.AuthUser, &e.Realm, &e.Source,
		&e.Transport, &e.UserAgent, &e.Status, &e.CallID, &e.Detail); err != nil {
		return e, err
	}
	e.Time = time.UnixMicro(t)
	e.Cause = cause.Code(c)
	return e, nil
}

// AdminEvents returns the newest events of kind with one of causes that
// name no extension and no domain (journal_dom_ext_cause serves it).
func (db *DB) AdminEvents(ctx context.Context, kind string, causes []cause.Code, limit int) ([]store.Event, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if limit <= 0 {
		limit = 200
	}
	if len(causes) == 0 {
		return nil, nil
	}
	cs := make([]string, len(causes))
	for i, c := range causes {
		cs[i] = string(c)
	}
	out, err := db.queryEvents(ctx, "SELECT "+journalColumns+` FROM journal
		WHERE domain = '' AND extension = '' AND cause = ANY($1::text[]) AND kind = $2
		ORDER BY time DESC, id DESC LIMIT $3`, cs, kind, limit)
	if err != nil {
		return nil, fmt.Errorf("journal: read admin events: %w", err)
	}
	return out, nil
}

// CauseStats counts through journal_dom_ext_cause, stopping at limit+1.
func (db *DB) CauseStats(ctx context.Context, ext, domain string, c cause.Code, since time.Time, limit int) (store.CauseStats, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if limit <= 0 {
		limit = 10_000
	}
	from := since.UnixMicro()
	if since.IsZero() {
		from = 0
	}
	var st store.CauseStats
	var n int
	var first, last *int64
	err := db.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM (SELECT 1 FROM journal
			WHERE extension = $1 AND domain = $2 AND cause = $3 AND time >= $4 LIMIT $5) x),
		(SELECT time FROM journal WHERE extension = $1 AND domain = $2 AND cause = $3 AND time >= $4 ORDER BY time ASC LIMIT 1),
		(SELECT time FROM journal WHERE extension = $1 AND domain = $2 AND cause = $3 AND time >= $4 ORDER BY time DESC LIMIT 1)`,
		ext, domain, string(c), from, limit+1).Scan(&n, &first, &last)
	if err != nil {
		return st, fmt.Errorf("journal: count %s for %s@%s: %w", c, ext, domain, err)
	}
	if n == 0 || first == nil || last == nil {
		return st, nil
	}
	st.Count, st.Capped = n, n > limit
	if st.Capped {
		st.Count = limit
	}
	st.First, st.Last = time.UnixMicro(*first), time.UnixMicro(*last)
	return st, nil
}

// LastEventOf reads journal_dom_ext_cause.
func (db *DB) LastEventOf(ctx context.Context, ext, domain string, c cause.Code) (e store.Event, ok bool, err error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	e, err = scanEvent(db.pool.QueryRow(ctx, "SELECT "+journalColumns+` FROM journal
		WHERE extension = $1 AND domain = $2 AND cause = $3 ORDER BY time DESC, id DESC LIMIT 1`, ext, domain, string(c)))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Event{}, false, nil
	}
	if err != nil {
		return store.Event{}, false, fmt.Errorf("journal: last %s for %s@%s: %w", c, ext, domain, err)
	}
	return e, true, nil
}

// EventByID returns one event; ok is false when it does not exist (pruned).
func (db *DB) EventByID(ctx context.Context, id int64) (e store.Event, ok bool, err error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	e, err = scanEvent(db.pool.QueryRow(ctx, "SELECT "+journalColumns+" FROM journal WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Event{}, false, nil
	}
	if err != nil {
		return store.Event{}, false, fmt.Errorf("journal: read event %d: %w", id, err)
	}
	return e, true, nil
}

// LastEventID returns the newest event id (0 for an empty journal).
func (db *DB) LastEventID(ctx context.Context) (int64, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var id int64
	if err := db.pool.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM journal").Scan(&id); err != nil {
		return 0, fmt.Errorf("journal: last id: %w", err)
	}
	return id, nil
}

// OldestEventTime returns the time of the oldest event (zero when empty).
func (db *DB) OldestEventTime(ctx context.Context) (time.Time, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var t *int64
	if err := db.pool.QueryRow(ctx, "SELECT min(time) FROM journal").Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("journal: oldest event: %w", err)
	}
	if t == nil {
		return time.Time{}, nil
	}
	return time.UnixMicro(*t), nil
}

// HasCause reports whether any event has cause c.
func (db *DB) HasCause(ctx context.Context, c cause.Code) (bool, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var ok bool
	if err := db.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM journal WHERE cause = $1)", string(c)).Scan(&ok); err != nil {
		return false, fmt.Errorf("journal: look up cause: %w", err)
	}
	return ok, nil
}

// PruneEvents deletes by age, then by count; both are tried and their
// errors joined.
func (db *DB) PruneEvents(ctx context.Context, before time.Time, keep int) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var errs []error
	if _, err := db.pool.Exec(ctx, "DELETE FROM journal WHERE time < $1", before.UnixMicro()); err != nil {
		errs = append(errs, fmt.Errorf("journal: prune by age: %w", err))
	}
	if _, err := db.pool.Exec(ctx,
		"DELETE FROM journal WHERE id <= (SELECT max(id) FROM journal) - $1", keep); err != nil {
		errs = append(errs, fmt.Errorf("journal: prune by count: %w", err))
	}
	return errors.Join(errs...)
}
