package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
)

// Stats summarises the events of one cause for one extension.
type Stats struct {
	// Count is how many events matched, at most the limit asked for;
	// Capped is true when there were more.
	Count  int  `json:"count"`
	Capped bool `json:"capped"`
	// First and Last are the times of the oldest and newest match (zero
	// when Count is 0).
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

// CauseStats counts the events with cause c recorded for extension ext in
// domain (exact, canonical name as the registrar records it) at or after
// since, stopping at limit (0 = 10,000) so an extension under a password
// brute force of millions of attempts still answers in milliseconds. It
// reads only the journal_dom_ext_cause index (migration 5).
func CauseStats(ctx context.Context, db *sql.DB, ext, domain string, c cause.Code, since time.Time, limit int) (Stats, error) {
	if limit <= 0 {
		limit = 10_000
	}
	from := since.UnixMicro()
	if since.IsZero() {
		from = 0
	}
	var st Stats
	var n int
	err := db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM journal
		WHERE extension = ? AND domain = ? AND cause = ? AND time >= ? LIMIT ?)`,
		ext, domain, string(c), from, limit+1).Scan(&n)
	if err != nil {
		return st, fmt.Errorf("journal: count %s for %s@%s: %w", c, ext, domain, err)
	}
	if n == 0 {
		return st, nil
	}
	st.Count, st.Capped = n, n > limit
	if st.Capped {
		st.Count = limit
	}
	var first, last int64
	err = db.QueryRowContext(ctx, `SELECT
		(SELECT time FROM journal WHERE extension = ?1 AND domain = ?2 AND cause = ?3 AND time >= ?4 ORDER BY time ASC LIMIT 1),
		(SELECT time FROM journal WHERE extension = ?1 AND domain = ?2 AND cause = ?3 AND time >= ?4 ORDER BY time DESC LIMIT 1)`,
		ext, domain, string(c), from).Scan(&first, &last)
	if err != nil {
		return st, fmt.Errorf("journal: first and last %s for %s@%s: %w", c, ext, domain, err)
	}
	st.First, st.Last = time.UnixMicro(first), time.UnixMicro(last)
	return st, nil
}

// LastOf returns the newest event with cause c for extension ext in domain,
// or ok=false when there is none. It reads the journal_dom_ext_cause index.
func LastOf(ctx context.Context, db *sql.DB, ext, domain string, c cause.Code) (e Event, ok bool, err error) {
	var id int64
	err = db.QueryRowContext(ctx, `SELECT id FROM journal WHERE extension = ? AND domain = ? AND cause = ?
		ORDER BY time DESC LIMIT 1`, ext, domain, string(c)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("journal: last %s for %s@%s: %w", c, ext, domain, err)
	}
	return ByID(ctx, db, id)
}

// ByID returns one event; ok is false when it does not exist (pruned).
func ByID(ctx context.Context, db *sql.DB, id int64) (e Event, ok bool, err error) {
	var t int64
	var c string
	err = db.QueryRowContext(ctx, `SELECT id, time, kind, cause, extension, domain, auth_user, realm, source,
		transport, user_agent, status, call_id, detail FROM journal WHERE id = ?`, id).Scan(&e.ID, &t, &e.Kind, &c,
		&e.Extension, &e.Domain, &e.AuthUser, &e.Realm, &e.Source, &e.Transport, &e.UserAgent, &e.Status,
		&e.CallID, &e.Detail)
	if errors.Is(err, sql.ErrNoRows) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("journal: read event %d: %w", id, err)
	}
	e.Time, e.Cause = time.UnixMicro(t), cause.Code(c)
	return e, true, nil
}

// LastID returns the newest event id (0 for an empty journal); `journal
// --follow` starts after it.
func LastID(ctx context.Context, db *sql.DB) (int64, error) {
	var id sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT max(id) FROM journal").Scan(&id); err != nil {
		return 0, fmt.Errorf("journal: last id: %w", err)
	}
	return id.Int64, nil
}

// OldestTime returns the time of the oldest event still in the journal
// (zero when it is empty): how far back "never seen" reaches.
func OldestTime(ctx context.Context, db *sql.DB) (time.Time, error) {
	var t sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT min(time) FROM journal").Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("journal: oldest event: %w", err)
	}
	if !t.Valid {
		return time.Time{}, nil
	}
	return time.UnixMicro(t.Int64), nil
}
