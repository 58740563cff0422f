package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/multirow"
)

const journalInsertCols = 13

func newJournalInsert(db *sql.DB) *multirow.Insert {
	return multirow.New(db, `INSERT INTO journal(time, kind, cause, extension, domain, auth_user, realm,
		source, transport, user_agent, status, call_id, detail)`, journalInsertCols, "")
}

// InsertEvents writes events with statements prepared once per database
// (multirow), in transactions of at most backgroundChunk events, each a
// background write (see writeGate). On an error the events before the
// failed chunk are written. Status goes as an int64, the driver's own
// type (database/sql converts an int by reflection).
func (db *DB) InsertEvents(ctx context.Context, events []store.Event) error {
	for len(events) > 0 {
		n := min(len(events), backgroundChunk)
		if err := db.gate.do(false, func() error { return db.insertEvents(ctx, events[:n]) }); err != nil {
			return err
		}
		events = events[n:]
	}
	return nil
}

func (db *DB) insertEvents(ctx context.Context, events []store.Event) error {
	args := make([]any, 0, len(events)*journalInsertCols)
	for i := range events {
		e := &events[i]
		args = append(args, e.Time.UnixMicro(), e.Kind, string(e.Cause), e.Extension, e.Domain,
			e.AuthUser, e.Realm, e.Source, e.Transport, e.UserAgent, int64(e.Status), e.CallID, e.Detail)
	}
	if err := db.journalInsert.Write(ctx, args); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

const journalColumns = `id, time, kind, cause, extension, domain, auth_user, realm, source, transport, user_agent, status,
		call_id, detail`

// QueryEvents returns the events matching f.
func (db *DB) QueryEvents(ctx context.Context, f store.JournalFilter) ([]store.Event, error) {
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
	q := "SELECT " + journalColumns + " FROM journal"
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
	rows, err := db.sql.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("journal: query: %w", err)
	}
	out, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("journal: query: %w", err)
	}
	return out, nil
}

// scanEvents reads the rows of a query that selects journalColumns, and
// closes them.
func scanEvents(rows *sql.Rows) ([]store.Event, error) {
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

// AdminEvents seeks the journal_dom_ext_cause index, so it costs the same
// however large the journal is.
func (db *DB) AdminEvents(ctx context.Context, kind string, causes []cause.Code, limit int) ([]store.Event, error) {
	if limit <= 0 {
		limit = 200
	}
	if len(causes) == 0 {
		return nil, nil
	}
	q := "SELECT " + journalColumns + ` FROM journal INDEXED BY journal_dom_ext_cause
		WHERE domain = '' AND extension = '' AND cause IN (?` + strings.Repeat(",?", len(causes)-1) + `) AND kind = ?
		ORDER BY time DESC, id DESC LIMIT ?`
	args := make([]any, 0, len(causes)+2)
	for _, c := range causes {
		args = append(args, string(c))
	}
	args = append(args, kind, limit)
	rows, err := db.sql.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("journal: read admin events: %w", err)
	}
	out, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("journal: read admin events: %w", err)
	}
	return out, nil
}

// CauseStats reads only the journal_dom_ext_cause index (migration 5), so
// an extension under a brute force of millions of attempts still answers
// in milliseconds.
func (db *DB) CauseStats(ctx context.Context, ext, domain string, c cause.Code, since time.Time, limit int) (store.CauseStats, error) {
	if limit <= 0 {
		limit = 10_000
	}
	from := since.UnixMicro()
	if since.IsZero() {
		from = 0
	}
	var st store.CauseStats
	var n int
	err := db.sql.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM journal
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
	err = db.sql.QueryRowContext(ctx, `SELECT
		(SELECT time FROM journal WHERE extension = ?1 AND domain = ?2 AND cause = ?3 AND time >= ?4 ORDER BY time ASC LIMIT 1),
		(SELECT time FROM journal WHERE extension = ?1 AND domain = ?2 AND cause = ?3 AND time >= ?4 ORDER BY time DESC LIMIT 1)`,
		ext, domain, string(c), from).Scan(&first, &last)
	if err != nil {
		return st, fmt.Errorf("journal: first and last %s for %s@%s: %w", c, ext, domain, err)
	}
	st.First, st.Last = time.UnixMicro(first), time.UnixMicro(last)
	return st, nil
}

// LastEventOf reads the journal_dom_ext_cause index.
func (db *DB) LastEventOf(ctx context.Context, ext, domain string, c cause.Code) (e store.Event, ok bool, err error) {
	var id int64
	err = db.sql.QueryRowContext(ctx, `SELECT id FROM journal WHERE extension = ? AND domain = ? AND cause = ?
		ORDER BY time DESC LIMIT 1`, ext, domain, string(c)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("journal: last %s for %s@%s: %w", c, ext, domain, err)
	}
	return db.EventByID(ctx, id)
}

// EventByID returns one event; ok is false when it does not exist (pruned).
func (db *DB) EventByID(ctx context.Context, id int64) (e store.Event, ok bool, err error) {
	e, err = scanEvent(db.sql.QueryRowContext(ctx, "SELECT "+journalColumns+" FROM journal WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Event{}, false, nil
	}
	if err != nil {
		return store.Event{}, false, fmt.Errorf("journal: read event %d: %w", id, err)
	}
	return e, true, nil
}

// LastEventID returns the newest event id (0 for an empty journal).
func (db *DB) LastEventID(ctx context.Context) (int64, error) {
	var id sql.NullInt64
	if err := db.sql.QueryRowContext(ctx, "SELECT max(id) FROM journal").Scan(&id); err != nil {
		return 0, fmt.Errorf("journal: last id: %w", err)
	}
	return id.Int64, nil
}

// OldestEventTime returns the time of the oldest event (zero when empty).
func (db *DB) OldestEventTime(ctx context.Context) (time.Time, error) {
	var t sql.NullInt64
	if err := db.sql.QueryRowContext(ctx, "SELECT min(time) FROM journal").Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("journal: oldest event: %w", err)
	}
	if !t.Valid {
		return time.Time{}, nil
	}
	return time.UnixMicro(t.Int64), nil
}

// HasCause reports whether any event has cause c.
func (db *DB) HasCause(ctx context.Context, c cause.Code) (bool, error) {
	var one int
	err := db.sql.QueryRowContext(ctx, "SELECT 1 FROM journal WHERE cause = ? LIMIT 1", string(c)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("journal: look up cause: %w", err)
	}
	return true, nil
}

// PruneEvents deletes by age, then by count; both are tried and their
// errors joined.
//
// Both delete in background writes of at most pruneChunk rows (see
// writeGate): at 10,000 events/s a minute's pruning is 600,000 rows,
// which in one transaction would hold the database for seconds while
// REGISTERs wait for their bindings.
func (db *DB) PruneEvents(ctx context.Context, before time.Time, keep int) error {
	return db.prune(ctx, "journal", "time < ?", before.UnixMicro(), "", keep)
}

// prune deletes the rows of table (integer primary key id) matching
// byAge (with ageArg), then those beyond the newest keep ids that also
// match also ("" for none); both are tried and their errors joined, each
// in pruneChunks.
func (db *DB) prune(ctx context.Context, table, byAge string, ageArg any, also string, keep int) error {
	var errs []error
	if err := db.pruneChunks(ctx, table, byAge, ageArg); err != nil {
		errs = append(errs, fmt.Errorf("%s: prune by age: %w", table, err))
	}
	byCount := "id <= ?"
	if also != "" {
		byCount += " AND " + also
	}
	var last sql.NullInt64
	if err := db.sql.QueryRowContext(ctx, "SELECT max(id) FROM "+table).Scan(&last); err != nil {
		errs = append(errs, fmt.Errorf("%s: prune by count: %w", table, err))
	} else if last.Valid {
		if err := db.pruneChunks(ctx, table, byCount, last.Int64-int64(keep)); err != nil {
			errs = append(errs, fmt.Errorf("%s: prune by count: %w", table, err))
		}
	}
	return errors.Join(errs...)
}

// pruneChunk is how many rows one pruning transaction deletes.
const pruneChunk = 2000

// pruneChunks deletes the rows of table (integer primary key id) matching
// where (with arg), at most pruneChunk per background write, oldest id
// first, until none is left or ctx ends.
func (db *DB) pruneChunks(ctx context.Context, table, where string, arg any) error {
	q := "DELETE FROM " + table + " WHERE id IN (SELECT id FROM " + table +
		" WHERE " + where + " ORDER BY id LIMIT " + fmt.Sprint(pruneChunk) + ")"
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var n int64
		err := db.gate.do(false, func() error {
			res, err := db.bg.ExecContext(ctx, q, arg)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return err
		}
		if n < pruneChunk {
			return nil
		}
	}
}
