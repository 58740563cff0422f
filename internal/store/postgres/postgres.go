// Package postgres is switchboard's PostgreSQL storage backend, for
// installations that outgrow one SQLite file or run several nodes on
// shared state. It implements every interface of package store with
// jackc/pgx (a connection pool) on the same schema as store/sqlite (see
// migrations), migrated at start in one transaction under an advisory
// lock, so that nodes starting together do not race.
//
// Every error is wrapped with what was being done. A lost connection is an
// ordinary error (callers answer 503 or report storage down); the pool
// opens new connections as soon as the server is back. Bulk writes
// (bindings, journal, call records) send all their rows in one statement
// of arrays (unnest), so a batch costs the same number of round trips
// whatever its size.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// DB is an open switchboard database on a PostgreSQL server.
type DB struct {
	pool *pgxpool.Pool
	url  string // redacted
}

var (
	_ store.Directory = (*DB)(nil)
	_ store.Bindings  = (*DB)(nil)
	_ store.Changes   = (*DB)(nil)
	_ store.Journal   = (*DB)(nil)
	_ store.Calls     = (*DB)(nil)
	_ store.Security  = (*DB)(nil)
	_ store.Meta      = (*DB)(nil)
	_ store.Doctor    = (*DB)(nil)
	_ store.Nodes     = (*DB)(nil)
)

// ErrNoDatabase is returned by OpenExisting when the database holds no
// switchboard schema.
var ErrNoDatabase = errors.New("no switchboard database")

// ErrSchema is returned by OpenExisting when the database's schema is not
// the one this binary uses (serve migrates it at start).
var ErrSchema = errors.New("database schema differs from this switchboard's")

// migrateLock is the advisory lock key held while migrating.
const migrateLock = 7262026100

// Version is the schema version this binary uses.
func Version() int { return len(migrations) }

// Redact returns a PostgreSQL URL (or key=value connection string) with
// its password replaced by "xxxxx", fit for logs and errors.
func Redact(conn string) string {
	if u, err := url.Parse(conn); err == nil && u.Scheme != "" {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	f := strings.Fields(conn)
	for i, kv := range f {
		if strings.HasPrefix(kv, "password=") {
			f[i] = "password=xxxxx"
		}
	}
	return strings.Join(f, " ")
}

// connect opens a pool on conn and checks that the server answers.
func connect(ctx context.Context, conn string) (*DB, error) {
	red := Redact(conn)
	cfg, err := pgxpool.ParseConfig(conn)
	if err != nil {
		// pgx's parse errors may quote the string: say only what is wrong.
		return nil, fmt.Errorf("database URL %s is not valid: %s", red, strings.ReplaceAll(err.Error(), conn, red))
	}
	if cfg.MaxConns < 8 {
		cfg.MaxConns = 8
	}
	cfg.MaxConnIdleTime = 5 * time.Minute
	cfg.HealthCheckPeriod = 10 * time.Second
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "switchboard"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", red, err)
	}
	db := &DB{pool: pool, url: red}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database %s is unreachable: %w", red, err)
	}
	return db, nil
}

// Open connects to the database at conn (a postgres:// URL) and brings its
// schema up to this binary's version.
func Open(ctx context.Context, conn string) (*DB, error) {
	db, err := connect(ctx, conn)
	if err != nil {
		return nil, err
	}
	if _, err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// OpenExisting connects to the database at conn for commands that read
// what serve recorded (and edit it): it migrates nothing. It fails with
// ErrNoDatabase when the database has no switchboard schema and ErrSchema
// when its version is not this binary's.
func OpenExisting(ctx context.Context, conn string) (*DB, error) {
	db, err := connect(ctx, conn)
	if err != nil {
		return nil, err
	}
	v, err := db.SchemaVersion(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	if v == 0 {
		db.Close()
		return nil, fmt.Errorf("%s: %w", db.url, ErrNoDatabase)
	}
	if v != len(migrations) {
		db.Close()
		return nil, fmt.Errorf("%w: %s has schema version %d, this switchboard uses %d", ErrSchema, db.url, v, len(migrations))
	}
	return db, nil
}

// SchemaVersion returns how many migrations the database has had (0 for
// a database without switchboard's schema).
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var exists bool
	if err := db.pool.QueryRow(ctx, "SELECT to_regclass('schema_version') IS NOT NULL").Scan(&exists); err != nil {
		return 0, fmt.Errorf("read schema version of %s: %w", db.url, err)
	}
	if !exists {
		return 0, nil
	}
	var v int
	if err := db.pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version of %s: %w", db.url, err)
	}
	return v, nil
}

// Migrate applies the pending migrations in one transaction, holding an
// advisory lock so that several processes migrating at once apply each
// step once; it returns how many it applied. A database newer than this
// binary is refused.
func (db *DB) Migrate(ctx context.Context) (applied int, err error) {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate %s: %w", db.url, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrateLock)); err != nil {
		return 0, fmt.Errorf("migrate %s: lock: %w", db.url, err)
	}
	if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"); err != nil {
		return 0, fmt.Errorf("migrate %s: %w", db.url, err)
	}
	var v int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("migrate %s: read schema version: %w", db.url, err)
	}
	if v > len(migrations) {
		return 0, fmt.Errorf("database %s has schema version %d, newer than this switchboard (%d): upgrade switchboard", db.url, v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.Exec(ctx, migrations[i]); err != nil {
			return 0, fmt.Errorf("migrate %s to version %d: %w", db.url, i+1, err)
		}
	}
	if v < len(migrations) {
		if _, err := tx.Exec(ctx, "DELETE FROM schema_version"); err != nil {
			return 0, fmt.Errorf("migrate %s: %w", db.url, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_version(version) VALUES ($1)", len(migrations)); err != nil {
			return 0, fmt.Errorf("migrate %s: %w", db.url, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("migrate %s: commit: %w", db.url, err)
	}
	return len(migrations) - v, nil
}

// URL is the database's URL with its password redacted.
func (db *DB) URL() string { return db.url }

// Pool exposes the connection pool for tests and tools (`db copy`, the
// e2e tests that count rows). Switchboard's own packages use the methods.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Close closes the pool.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// Meta reads a setting; ok is false when it is not set.
func (db *DB) Meta(ctx context.Context, key string) (value string, ok bool, err error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	err = db.pool.QueryRow(ctx, "SELECT value FROM meta WHERE key = $1", key).Scan(&value)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read setting %s: %w", key, err)
	}
	return value, true, nil
}

// SetMeta writes a setting.
func (db *DB) SetMeta(ctx context.Context, key, value string) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	_, err := db.pool.Exec(ctx,
		"INSERT INTO meta(key, value) VALUES ($1, $2) ON CONFLICT(key) DO UPDATE SET value = excluded.value", key, value)
	if err != nil {
		return fmt.Errorf("write setting %s: %w", key, err)
	}
	return nil
}

// DeleteMeta removes a setting (nothing when it is not set). PostgreSQL
// keeps the old row version until VACUUM reclaims it; the table is
// vacuumed at once so that a secret does not linger longer than needed.
func (db *DB) DeleteMeta(ctx context.Context, key string) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if _, err := db.pool.Exec(ctx, "DELETE FROM meta WHERE key = $1", key); err != nil {
		return fmt.Errorf("delete setting %s: %w", key, err)
	}
	if _, err := db.pool.Exec(ctx, "VACUUM meta"); err != nil {
		return fmt.Errorf("delete setting %s: vacuum: %w", key, err)
	}
	return nil
}

// pgCode returns the SQLSTATE of a server error ("" for others).
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func isUnique(err error) bool  { return pgCode(err) == "23505" }
func isNotNull(err error) bool { return pgCode(err) == "23502" }

func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMs(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
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

// Path is the database's URL with its password redacted (the doctor shows
// where the data lives).
func (db *DB) Path() string { return db.url }

// SchemaVersionOf connects to conn and returns its schema version (0 when
// it has no switchboard schema), changing nothing.
func SchemaVersionOf(ctx context.Context, conn string) (int, error) {
	db, err := connect(ctx, conn)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	return db.SchemaVersion(ctx)
}

// OpTimeout bounds each operation whose context has no deadline, so that
// a server that stops answering (a network partition, where no reset
// arrives) turns into an error within seconds instead of a wait for the
// kernel's TCP timeout.
const OpTimeout = 15 * time.Second

// bound returns ctx, with OpTimeout when it has no deadline.
func (db *DB) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, OpTimeout)
}
