// Package open opens switchboard's storage backend named by a database
// URL, so that the server and every CLI command work against either:
//
//	sqlite:DIR              the SQLite file DIR/switchboard.db (the default:
//	                        sqlite:<--data>)
//	postgres://user@host/db PostgreSQL (also postgresql://; key=value
//	                        connection strings are not accepted)
//
// Whatever the backend, the data directory (--data) keeps the files that
// belong to one machine: secret.key, the lock and control socket, and the
// self-signed TLS material.
package open

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/postgres"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

// Env is the environment variable that gives the database URL when --db
// is not passed.
const Env = "SWITCHBOARD_DB"

// Backend is everything a storage backend offers the server and the CLI.
type Backend interface {
	store.Directory
	store.Bindings
	store.Changes
	store.Journal
	store.Calls
	store.Security
	store.Meta
	store.Doctor
	store.Nodes
	store.Admins
	AddDomain(ctx context.Context, name, realm string) (store.Domain, error)
	RenameDomain(ctx context.Context, old, new string) (store.Domain, error)
	SetDefaultDomain(ctx context.Context, name string) (store.Domain, error)
	RemoveDomain(ctx context.Context, name string) (int, error)
	PruneChanges(ctx context.Context, seq int64) error
	Notify(ctx context.Context, kind, key string) error
	DeleteMeta(ctx context.Context, key string) error
	// Path is the SQLite database file, or the PostgreSQL URL with its
	// password redacted.
	Path() string
	Close() error
}

var (
	_ Backend = (*sqlite.DB)(nil)
	_ Backend = (*postgres.DB)(nil)
)

// Kinds of backend.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Target is a parsed database URL.
type Target struct {
	// Kind is SQLite or Postgres.
	Kind string
	// Dir is SQLite's directory; URL is PostgreSQL's connection URL.
	Dir, URL string
}

// String is the target as the user may see it: the password of a
// PostgreSQL URL is redacted.
func (t Target) String() string {
	if t.Kind == SQLite {
		return "sqlite:" + t.Dir
	}
	return postgres.Redact(t.URL)
}

// ErrBadURL: the database URL is neither sqlite:DIR nor postgres://.
var ErrBadURL = errors.New("database URL must be sqlite:DIR or postgres://USER@HOST/DB")

// Parse reads a database URL; "" means sqlite:dataDir.
func Parse(dbURL, dataDir string) (Target, error) {
	switch {
	case dbURL == "":
		if dataDir == "" {
			return Target{}, errors.New("data directory is empty: pass --data DIR or --db URL")
		}
		return Target{Kind: SQLite, Dir: dataDir}, nil
	case strings.HasPrefix(dbURL, "sqlite:"):
		dir := strings.TrimPrefix(strings.TrimPrefix(dbURL, "sqlite:"), "//")
		if dir == "" {
			return Target{}, fmt.Errorf("%q: %w", dbURL, ErrBadURL)
		}
		return Target{Kind: SQLite, Dir: dir}, nil
	case strings.HasPrefix(dbURL, "postgres://"), strings.HasPrefix(dbURL, "postgresql://"):
		return Target{Kind: Postgres, URL: dbURL}, nil
	}
	return Target{}, fmt.Errorf("%q: %w", postgres.Redact(dbURL), ErrBadURL)
}

// ErrNoDatabase: the target holds no switchboard database (OpenExisting).
var ErrNoDatabase = errors.New("no switchboard database")

// ErrSchema: the target's schema version is not this binary's
// (OpenExisting; serve migrates at start).
var ErrSchema = errors.New("database schema differs from this switchboard's")

// Open opens the target, creating and migrating its schema as needed.
func Open(ctx context.Context, t Target) (Backend, error) {
	if t.Kind == SQLite {
		return sqlite.Open(ctx, t.Dir)
	}
	return postgres.Open(ctx, t.URL)
}

// OpenExisting opens a target that must already hold a database of this
// binary's schema version, creating and migrating nothing. Its errors wrap
// ErrNoDatabase or ErrSchema for those cases.
func OpenExisting(ctx context.Context, t Target) (Backend, error) {
	var b Backend
	var err error
	if t.Kind == SQLite {
		b, err = sqlite.OpenExisting(ctx, t.Dir)
	} else {
		b, err = postgres.OpenExisting(ctx, t.URL)
	}
	switch {
	case errors.Is(err, sqlite.ErrNoDatabase), errors.Is(err, postgres.ErrNoDatabase):
		return nil, fmt.Errorf("%s: %w", t, ErrNoDatabase)
	case errors.Is(err, sqlite.ErrSchema), errors.Is(err, postgres.ErrSchema):
		msg := err.Error()
		for _, p := range []string{sqlite.ErrSchema.Error() + ": ", postgres.ErrSchema.Error() + ": "} {
			msg = strings.TrimPrefix(msg, p)
		}
		return nil, fmt.Errorf("%w: %s", ErrSchema, msg)
	case err != nil:
		return nil, err
	}
	return b, nil
}

// ImportIndex returns the index of the input row that made an
// ImportExtensions fail, whichever the backend.
func ImportIndex(err error) (int, bool) {
	var s *sqlite.ImportError
	if errors.As(err, &s) {
		return s.Index, true
	}
	var p *postgres.ImportError
	if errors.As(err, &p) {
		return p.Index, true
	}
	return 0, false
}

// Status is what `switchboard db status` shows.
type Status struct {
	Backend string `json:"backend"`
	// Database is the SQLite file or the redacted PostgreSQL URL.
	Database string `json:"database"`
	// Exists is false when there is no switchboard database there yet.
	Exists bool `json:"exists"`
	// Version is the database's schema version, Latest this binary's;
	// Pending is how many migrations serve (or db migrate) would apply.
	Version int `json:"schema_version"`
	Latest  int `json:"latest_version"`
	Pending int `json:"pending_migrations"`
}

// ReadStatus reads the target's schema version without changing it.
func ReadStatus(ctx context.Context, t Target) (Status, error) {
	st := Status{Backend: t.Kind}
	if t.Kind == SQLite {
		st.Database, st.Latest = sqlite.PathIn(t.Dir), sqlite.Version()
		v, err := sqlite.SchemaVersionOf(ctx, t.Dir)
		if err != nil {
			return st, err
		}
		st.Version = v
	} else {
		st.Database, st.Latest = postgres.Redact(t.URL), postgres.Version()
		v, err := postgres.SchemaVersionOf(ctx, t.URL)
		if err != nil {
			return st, err
		}
		st.Version = v
	}
	st.Exists = st.Version > 0
	if st.Version < st.Latest {
		st.Pending = st.Latest - st.Version
	}
	return st, nil
}
