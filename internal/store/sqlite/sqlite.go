// Package sqlite is switchboard's default storage backend: one SQLite
// database file (switchboard.db) in the data directory, created and migrated
// on first open, in WAL mode so the CLI can read and write while the server
// runs. It uses modernc.org/sqlite (pure Go, no cgo).
//
// Every write to the directory (extensions, domains, ACLs, bans, profile
// settings) appends a row to the change feed through triggers, which a
// running server polls to apply CLI edits at once.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/multirow"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// FileName is the database file inside the data directory.
const FileName = "switchboard.db"

// DB is an open switchboard database.
type DB struct {
	sql *sql.DB
	// bg is a second handle (one connection) for the background writers
	// (journal events, call records, pruning): its commits use
	// synchronous=NORMAL, so they do not wait for an fsync while holding
	// the write lock; SQLite fsyncs the write-ahead log they appended to at
	// the next commit of sql (a binding) or checkpoint. A power loss may
	// lose the journal events and call records written since; a crash of
	// the process loses nothing committed, and bindings keep FULL.
	bg         *sql.DB
	gate       *writeGate // orders write transactions (see writeGate)
	path       string
	bindUpsert *multirow.Insert // ApplyBindings' upserts
	// journalInsert and callUpsert are InsertEvents' and SaveCalls'
	// statements, prepared once and reused by every batch.
	journalInsert *multirow.Insert
	callUpsert    *multirow.Insert
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

// Open opens (creating the directory and file when missing) and migrates the
// database in dataDir. It fails with a one-line error when the directory is
// unusable (not a directory, not writable).
//
// What Open creates is private whatever the umask: the directory 0700 and
// the database file 0600, before SQLite opens it, so that the -wal and
// -shm files SQLite creates beside it take the same mode (SQLite gives
// them its database file's permissions). Modes of files that already
// exist are left alone here; `serve` tightens them (see Tighten).
func Open(ctx context.Context, dataDir string) (*DB, error) {
	if dataDir == "" {
		return nil, errors.New("data directory is empty: pass --data DIR")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s is unusable: %w", dataDir, unwrapPathErr(err))
	}
	st, err := os.Stat(dataDir)
	if err != nil {
		return nil, fmt.Errorf("data directory %s is unusable: %w", dataDir, unwrapPathErr(err))
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("data directory %s is not a directory", dataDir)
	}
	probe := filepath.Join(dataDir, ".write-test")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		return nil, fmt.Errorf("data directory %s is not writable: %w", dataDir, unwrapPathErr(err))
	}
	_ = os.Remove(probe)
	path := filepath.Join(dataDir, FileName)
	if err := createPrivate(path); err != nil {
		return nil, fmt.Errorf("create database %s: %w", path, unwrapPathErr(err))
	}
	db, err := openFile(path)
	if err != nil {
		return nil, err
	}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// ErrNoDatabase is returned by OpenExisting when the directory holds no
// switchboard database.
var ErrNoDatabase = errors.New("no switchboard database")

// ErrSchema is returned by OpenExisting when the database's schema is not
// the one this binary uses (serve migrates it at start).
var ErrSchema = errors.New("database schema differs from this switchboard's")

// OpenExisting opens the database in dataDir for commands that read what
// serve recorded (and edit it): it creates nothing and migrates nothing.
// It fails with ErrNoDatabase when there is no database, and with
// ErrSchema when its schema version is not this binary's.
func OpenExisting(ctx context.Context, dataDir string) (*DB, error) {
	path := filepath.Join(dataDir, FileName)
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", dataDir, ErrNoDatabase)
	}
	db, err := openFile(path)
	if err != nil {
		return nil, err
	}
	var v int
	if err := db.sql.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		db.Close()
		return nil, fmt.Errorf("read schema version of %s: %w", path, err)
	}
	if v == 0 {
		db.Close()
		return nil, fmt.Errorf("%s: %w", dataDir, ErrNoDatabase)
	}
	if v != len(migrations) {
		db.Close()
		return nil, fmt.Errorf("%w: %s has schema version %d, this switchboard uses %d", ErrSchema, path, v, len(migrations))
	}
	return db, nil
}

// openFile opens the SQLite file at path with switchboard's settings.
func openFile(path string) (*DB, error) {
	// temp_store(MEMORY): multi-row INSERTs keep their statement journal
	// (for a statement-level rollback) in memory instead of a temporary
	// file; with a file, its writes were a third of the journal's cost.
	//
	// cache_size(-8000) on the background writers' connection (bg), 8 MB
	// instead of 2: a batch of journal events dirties a page of each index
	// per row (the keys are extensions, in no order), and once a
	// transaction's dirty pages outgrow the cache SQLite writes them to
	// the WAL before the commit and rewrites their checksums at the commit
	// (pagerStress, walRewriteChecksums: a third of a 256-event batch's
	// CPU). The pool's four connections keep SQLite's 2 MB: with 8 MB
	// each, the server held 23 MB more from its start (71 against 48 MiB
	// with 100,000 extensions), for no CPU gain on bindings we could
	// measure.
	//
	// wal_autocheckpoint(4000): the WAL is copied into the database every
	// 4,000 pages (16 MB) instead of 1,000, so a page the writers dirty
	// again and again (the ends of the tables and of the time indexes) is
	// copied once per checkpoint, not four times. Durability is the same:
	// every commit is synced to the WAL (synchronous=FULL).
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_pragma=temp_store(MEMORY)" +
		"&_pragma=wal_autocheckpoint(4000)&_txlock=immediate"
	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	sdb.SetMaxOpenConns(4)
	sdb.SetMaxIdleConns(4)
	sdb.SetConnMaxIdleTime(0)
	bg, err := sql.Open("sqlite", strings.Replace(dsn, "synchronous(FULL)", "synchronous(NORMAL)", 1)+
		"&_pragma=cache_size(-8000)")
	if err != nil {
		sdb.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	bg.SetMaxOpenConns(1)
	bg.SetMaxIdleConns(1)
	bg.SetConnMaxIdleTime(0)
	return &DB{sql: sdb, bg: bg, gate: newWriteGate(), path: path,
		bindUpsert:    multirow.New(sdb, "INSERT OR REPLACE INTO bindings("+bindingColumns+")", bindingCols, ""),
		journalInsert: newJournalInsert(bg), callUpsert: newCallUpsert(bg)}, nil
}

// createPrivate creates path empty with mode 0600 when it does not exist
// (an empty file is an empty SQLite database).
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.Chmod(0o600)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Files are the database's files in the data directory: the database and
// SQLite's write-ahead log and shared-memory index beside it.
var Files = []string{FileName, FileName + "-wal", FileName + "-shm"}

// Loosened is a file or directory whose mode Tighten changed.
type Loosened struct {
	Path     string
	Old, New os.FileMode
}

func (l Loosened) String() string { return fmt.Sprintf("%s %04o->%04o", l.Path, l.Old, l.New) }

// Tighten makes dataDir private: the directory 0700 and each of names in
// it that exists (the database's Files, and whatever the caller adds) 0600
// when they allow more (group or others, or execute). It returns what it
// changed; names that do not exist are skipped.
func Tighten(dataDir string, names ...string) ([]Loosened, error) {
	var out []Loosened
	fix := func(path string, want os.FileMode) error {
		stat := os.Lstat
		if want == 0o700 {
			stat = os.Stat // the directory may be a symbolic link to one
		}
		st, err := stat(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if st.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symbolic link: keep the data directory's files in it", path)
		}
		if st.Mode().Perm()&^want == 0 {
			return nil
		}
		if err := os.Chmod(path, want); err != nil {
			return err
		}
		out = append(out, Loosened{Path: path, Old: st.Mode().Perm(), New: want})
		return nil
	}
	if err := fix(dataDir, 0o700); err != nil {
		return out, fmt.Errorf("make data directory %s private: %w", dataDir, err)
	}
	for _, n := range append(append([]string(nil), Files...), names...) {
		if err := fix(filepath.Join(dataDir, n), 0o600); err != nil {
			return out, fmt.Errorf("make data directory %s private: %w", dataDir, err)
		}
	}
	return out, nil
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Path is the database file's path.
func (db *DB) Path() string { return db.path }

// SQL exposes the handle for tests and tools that inspect the file (the
// e2e tests count rows and checkpoint the WAL with it). Switchboard's own
// packages never use it: every statement they need is a method of DB,
// behind the interfaces of package store.
func (db *DB) SQL() *sql.DB { return db.sql }

// Analyze gathers the statistics SQLite's query planner uses (ANALYZE),
// so that the plans are those of a database that has been in use.
func (db *DB) Analyze(ctx context.Context) error {
	if _, err := db.sql.ExecContext(ctx, "ANALYZE"); err != nil {
		return fmt.Errorf("analyze %s: %w", db.path, err)
	}
	return nil
}

// Close closes the database.
func (db *DB) Close() error {
	db.bindUpsert.Close()
	db.journalInsert.Close()
	db.callUpsert.Close()
	return errors.Join(db.bg.Close(), db.sql.Close())
}

// migrations are applied in order; PRAGMA user_version records how many ran.
// Append only: never edit a migration that has shipped.
var migrations = []string{
	// 1: core directory, registrations, change feed, settings.
	`
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE domains (
	id         INTEGER PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE COLLATE NOCASE,
	enabled    INTEGER NOT NULL DEFAULT 1,
	created_at INTEGER NOT NULL
);
CREATE TABLE extensions (
	id                INTEGER PRIMARY KEY,
	domain_id         INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
	number            TEXT NOT NULL,
	ha1_md5           TEXT NOT NULL,
	ha1_sha256        TEXT NOT NULL,
	enabled           INTEGER NOT NULL DEFAULT 1,
	cid_name          TEXT NOT NULL DEFAULT '',
	cid_number        TEXT NOT NULL DEFAULT '',
	description       TEXT NOT NULL DEFAULT '',
	max_registrations INTEGER NOT NULL DEFAULT 5,
	call_timeout      INTEGER NOT NULL DEFAULT 30,
	acl               TEXT NOT NULL DEFAULT '',
	created_at        INTEGER NOT NULL,
	updated_at        INTEGER NOT NULL,
	UNIQUE (domain_id, number)
);
CREATE TABLE bindings (
	domain        TEXT NOT NULL,
	extension     TEXT NOT NULL,
	contact       TEXT NOT NULL,
	source        TEXT NOT NULL,
	transport     TEXT NOT NULL,
	user_agent    TEXT NOT NULL DEFAULT '',
	call_id       TEXT NOT NULL DEFAULT '',
	cseq          INTEGER NOT NULL DEFAULT 0,
	auth_user     TEXT NOT NULL DEFAULT '',
	realm         TEXT NOT NULL DEFAULT '',
	registered_at INTEGER NOT NULL,
	expires_at    INTEGER NOT NULL,
	ping_status   TEXT NOT NULL DEFAULT '',
	ping_rtt_ms   REAL NOT NULL DEFAULT 0,
	ping_at       INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (domain, extension, contact)
) WITHOUT ROWID;
CREATE TABLE changes (
	seq  INTEGER PRIMARY KEY AUTOINCREMENT,
	kind TEXT NOT NULL,
	key  TEXT NOT NULL
);
CREATE TRIGGER ext_ins AFTER INSERT ON extensions BEGIN
	INSERT INTO changes(kind, key) SELECT 'ext', d.name || '/' || NEW.number FROM domains d WHERE d.id = NEW.domain_id;
END;
CREATE TRIGGER ext_upd AFTER UPDATE ON extensions BEGIN
	INSERT INTO changes(kind, key) SELECT 'ext', d.name || '/' || NEW.number FROM domains d WHERE d.id = NEW.domain_id;
END;
CREATE TRIGGER ext_del AFTER DELETE ON extensions BEGIN
	INSERT INTO changes(kind, key) SELECT 'ext', d.name || '/' || OLD.number FROM domains d WHERE d.id = OLD.domain_id;
END;
CREATE TRIGGER dom_ins AFTER INSERT ON domains BEGIN
	INSERT INTO changes(kind, key) VALUES ('domain', NEW.name);
END;
CREATE TRIGGER dom_upd AFTER UPDATE ON domains BEGIN
	INSERT INTO changes(kind, key) VALUES ('domain', NEW.name);
END;
CREATE TRIGGER dom_del AFTER DELETE ON domains BEGIN
	INSERT INTO changes(kind, key) VALUES ('domain', OLD.name);
END;
`,
	// 2: the journal of decisions (see package journal).
	`
CREATE TABLE journal (
	id         INTEGER PRIMARY KEY,
	time       INTEGER NOT NULL,
	kind       TEXT NOT NULL,
	cause      TEXT NOT NULL,
	extension  TEXT NOT NULL DEFAULT '',
	domain     TEXT NOT NULL DEFAULT '',
	auth_user  TEXT NOT NULL DEFAULT '',
	realm      TEXT NOT NULL DEFAULT '',
	source     TEXT NOT NULL DEFAULT '',
	transport  TEXT NOT NULL DEFAULT '',
	user_agent TEXT NOT NULL DEFAULT '',
	status     INTEGER NOT NULL DEFAULT 0,
	call_id    TEXT NOT NULL DEFAULT '',
	detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX journal_ext ON journal(extension, time);
CREATE INDEX journal_time ON journal(time);
CREATE INDEX journal_source ON journal(source);
`,
	// 3: call records (see package calls). Times are Unix microseconds, 0 =
	// not yet; ended_at = 0 marks a call in progress.
	`
CREATE TABLE calls (
	id          INTEGER PRIMARY KEY,
	call_id     TEXT NOT NULL,
	caller      TEXT NOT NULL,
	callee      TEXT NOT NULL,
	domain      TEXT NOT NULL,
	source      TEXT NOT NULL DEFAULT '',
	transport   TEXT NOT NULL DEFAULT '',
	user_agent  TEXT NOT NULL DEFAULT '',
	started_at  INTEGER NOT NULL,
	answered_at INTEGER NOT NULL DEFAULT 0,
	ended_at    INTEGER NOT NULL DEFAULT 0,
	sip_status  INTEGER NOT NULL DEFAULT 0,
	cause       TEXT NOT NULL DEFAULT '',
	hangup_by   TEXT NOT NULL DEFAULT '',
	branches    TEXT NOT NULL DEFAULT '[]',
	detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX calls_callee ON calls(callee, id);
CREATE INDEX calls_caller ON calls(caller, id);
CREATE INDEX calls_call_id ON calls(call_id);
CREATE INDEX calls_active ON calls(id) WHERE ended_at = 0;
CREATE INDEX calls_started ON calls(started_at);
`,
	// 4: access control (see package security): ACLs with their ordered
	// allow/deny nodes, the profile's ACL settings, and brute-force bans.
	// since/until are Unix milliseconds; until = 0 is a permanent ban. The
	// seed trusts loopback (exempt from rate limits and bans) and the
	// profile "internal" exists from the start.
	`
CREATE TABLE acls (
	name          TEXT PRIMARY KEY,
	default_allow INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE acl_nodes (
	acl      TEXT NOT NULL REFERENCES acls(name) ON DELETE CASCADE ON UPDATE CASCADE,
	position INTEGER NOT NULL,
	allow    INTEGER NOT NULL,
	cidr     TEXT NOT NULL,
	PRIMARY KEY (acl, position)
);
CREATE TABLE profiles (
	name         TEXT PRIMARY KEY,
	register_acl TEXT NOT NULL DEFAULT '',
	inbound_acl  TEXT NOT NULL DEFAULT '',
	trusted_acl  TEXT NOT NULL DEFAULT ''
);
CREATE TABLE bans (
	ip       TEXT PRIMARY KEY,
	reason   TEXT NOT NULL DEFAULT '',
	failures INTEGER NOT NULL DEFAULT 0,
	since    INTEGER NOT NULL,
	until    INTEGER NOT NULL DEFAULT 0
);
CREATE TRIGGER acl_ins AFTER INSERT ON acls BEGIN INSERT INTO changes(kind, key) VALUES ('acl', NEW.name); END;
CREATE TRIGGER acl_upd AFTER UPDATE ON acls BEGIN INSERT INTO changes(kind, key) VALUES ('acl', NEW.name); END;
CREATE TRIGGER acl_del AFTER DELETE ON acls BEGIN INSERT INTO changes(kind, key) VALUES ('acl', OLD.name); END;
CREATE TRIGGER acl_node_ins AFTER INSERT ON acl_nodes BEGIN INSERT INTO changes(kind, key) VALUES ('acl', NEW.acl); END;
CREATE TRIGGER acl_node_upd AFTER UPDATE ON acl_nodes BEGIN INSERT INTO changes(kind, key) VALUES ('acl', NEW.acl); END;
CREATE TRIGGER acl_node_del AFTER DELETE ON acl_nodes BEGIN INSERT INTO changes(kind, key) VALUES ('acl', OLD.acl); END;
CREATE TRIGGER profile_ins AFTER INSERT ON profiles BEGIN INSERT INTO changes(kind, key) VALUES ('profile', NEW.name); END;
CREATE TRIGGER profile_upd AFTER UPDATE ON profiles BEGIN INSERT INTO changes(kind, key) VALUES ('profile', NEW.name); END;
CREATE TRIGGER ban_ins AFTER INSERT ON bans BEGIN INSERT INTO changes(kind, key) VALUES ('ban', NEW.ip); END;
CREATE TRIGGER ban_upd AFTER UPDATE ON bans BEGIN INSERT INTO changes(kind, key) VALUES ('ban', NEW.ip); END;
CREATE TRIGGER ban_del AFTER DELETE ON bans BEGIN INSERT INTO changes(kind, key) VALUES ('ban', OLD.ip); END;
INSERT INTO acls(name, default_allow) VALUES ('loopback', 0);
INSERT INTO acl_nodes(acl, position, allow, cidr) VALUES ('loopback', 1, 1, '127.0.0.0/8'), ('loopback', 2, 1, '::1/128');
INSERT INTO profiles(name, trusted_acl) VALUES ('internal', 'loopback');
`,
	// 5: the doctor's per-cause counts and newest/oldest seeks for one
	// extension (see journal.CauseStats and journal.LastOf). Domain comes
	// first so that a query on the extension alone (`journal --ext`, newest
	// first) never takes this index over journal_ext and sorts.
	`
CREATE INDEX journal_dom_ext_cause ON journal(domain, extension, cause, time);
`,
	// 6: a digest realm per domain, kept when the domain is renamed (the
	// stored HA1 hashes are made with it); until now the realm was the
	// domain's name.
	`
ALTER TABLE domains ADD COLUMN realm TEXT NOT NULL DEFAULT '';
UPDATE domains SET realm = name;
`,
	// 7: several nodes on one database (serve --node): each binding's
	// owning node, its Path and when it was written (ms; the other nodes
	// read what changed since their last look), and the nodes' leases.
	`
ALTER TABLE bindings ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE bindings ADD COLUMN path TEXT NOT NULL DEFAULT '';
ALTER TABLE bindings ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX bindings_updated ON bindings(updated_at);
CREATE TABLE nodes (
	name       TEXT PRIMARY KEY,
	address    TEXT NOT NULL DEFAULT '',
	started_at INTEGER NOT NULL,
	renewed_at INTEGER NOT NULL
);
`,
	// 8: web console admins (bcrypt password hashes) and HTTP API tokens
	// (SHA-256 hashes of 256-bit random tokens); times in Unix milliseconds.
	`
CREATE TABLE admins (
	name        TEXT PRIMARY KEY,
	password    TEXT NOT NULL,
	created_at  INTEGER NOT NULL,
	password_at INTEGER NOT NULL
);
CREATE TABLE api_tokens (
	name         TEXT PRIMARY KEY,
	hash         TEXT NOT NULL UNIQUE,
	prefix       TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	last_used_at INTEGER NOT NULL DEFAULT 0
);
`,
	// 9: pages of the directory in its order (domain, then number with
	// shorter numbers first) read through an index (ListExtensions).
	`
CREATE INDEX extensions_order ON extensions(domain_id, length(number), number);
`,
	// 10: what the media relay saw per leg of a call (store.MediaLeg as
	// JSON, see store.EncodeMedia); '[]' when the media was not relayed.
	`
ALTER TABLE calls ADD COLUMN media TEXT NOT NULL DEFAULT '[]';
`,
	// 11: no bindings_updated index. Only other nodes read bindings by
	// updated_at (OtherBindings), and a SQLite database has one node (the
	// server shares only a PostgreSQL one, which keeps the index): the
	// index cost every binding write a second B-tree update (about a
	// sixth of its CPU) for no reader. OtherBindings still answers,
	// scanning the table.
	`
DROP INDEX bindings_updated;
`,
}

// migrate brings the file up to the newest schema, one transaction per step.
func (db *DB) migrate(ctx context.Context) error {
	var v int
	if err := db.sql.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version of %s: %w", db.path, err)
	}
	if v > len(migrations) {
		return fmt.Errorf("database %s has schema version %d, newer than this switchboard (%d): upgrade switchboard", db.path, v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		tx, err := db.sql.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", db.path, err)
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s to version %d: %w", db.path, i+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", db.path, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate %s: %w", db.path, err)
		}
	}
	return nil
}

// Meta reads a setting; ok is false when it is not set.
func (db *DB) Meta(ctx context.Context, key string) (value string, ok bool, err error) {
	err = db.sql.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", key).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read setting %s: %w", key, err)
	}
	return value, true, nil
}

// SetMeta writes a setting.
func (db *DB) SetMeta(ctx context.Context, key, value string) error {
	_, err := db.sql.ExecContext(ctx,
		"INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", key, value)
	if err != nil {
		return fmt.Errorf("write setting %s: %w", key, err)
	}
	return nil
}

// DeleteMeta removes a setting (nothing when it is not set). The row's
// bytes are overwritten in the database file (PRAGMA secure_delete), so a
// secret that lived there does not linger in a free page.
func (db *DB) DeleteMeta(ctx context.Context, key string) error {
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return fmt.Errorf("delete setting %s: %w", key, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA secure_delete = ON"); err != nil {
		return fmt.Errorf("delete setting %s: %w", key, err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA secure_delete = OFF")
	if _, err := conn.ExecContext(ctx, "DELETE FROM meta WHERE key = ?", key); err != nil {
		return fmt.Errorf("delete setting %s: %w", key, err)
	}
	return nil
}

func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

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

// Version is the schema version this binary uses.
func Version() int { return len(migrations) }

// PathIn is the database file of a data directory.
func PathIn(dataDir string) string { return filepath.Join(dataDir, FileName) }

// SchemaVersionOf returns the schema version of dataDir's database (0
// when there is none), creating and changing nothing.
func SchemaVersionOf(ctx context.Context, dataDir string) (int, error) {
	path := PathIn(dataDir)
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		return 0, nil
	}
	sdb, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return 0, fmt.Errorf("open database %s: %w", path, err)
	}
	defer sdb.Close()
	var v int
	if err := sdb.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version of %s: %w", path, err)
	}
	return v, nil
}
