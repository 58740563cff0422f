package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/control"
	"github.com/switchboard-pbx/switchboard/internal/store"
	storeopen "github.com/switchboard-pbx/switchboard/internal/store/open"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

// defaultData is the --data default: $SWITCHBOARD_DATA or ./data.
func defaultData() string {
	if v := os.Getenv("SWITCHBOARD_DATA"); v != "" {
		return v
	}
	return "./data"
}

// dbFlag registers --db: the database URL (sqlite:DIR or postgres://...;
// default $SWITCHBOARD_DB, else the SQLite file in --data).
func dbFlag(fs *flag.FlagSet) *string {
	return fs.String("db", os.Getenv(storeopen.Env), "database URL: sqlite:DIR or postgres://USER@HOST/DB (env SWITCHBOARD_DB; default: SQLite in --data)")
}

// target parses --db (with --data as SQLite's default directory).
func target(dir, dbURL string) (storeopen.Target, error) {
	t, err := storeopen.Parse(dbURL, dir)
	if err != nil {
		return t, usagef("--db: %v", err)
	}
	return t, nil
}

// openDB opens the database for a command that edits it, creating (and
// migrating) it when missing, with a note on stderr so that a mistyped
// --data or --db does not pass unnoticed.
func openDB(ctx context.Context, env Env, dir, dbURL string) (storeopen.Backend, error) {
	t, err := target(dir, dbURL)
	if err != nil {
		return nil, err
	}
	db, err := storeopen.OpenExisting(ctx, t)
	if err == nil {
		return db, nil
	}
	if !errors.Is(err, storeopen.ErrNoDatabase) {
		return openExisting(ctx, dir, dbURL) // its message says what to do
	}
	if t.Kind == storeopen.SQLite {
		if _, statErr := os.Stat(filepath.Join(t.Dir, sqlite.FileName)); statErr == nil {
			return openExisting(ctx, dir, dbURL) // it exists but cannot be used as it is
		}
	}
	b, err := storeopen.Open(ctx, t)
	if err != nil {
		return nil, err
	}
	if t.Kind == storeopen.SQLite {
		fmt.Fprintf(env.Stderr, "switchboard: note: created a new database in %s (start the server on it with: switchboard serve --data %s)\n", t.Dir, t.Dir)
	} else {
		fmt.Fprintf(env.Stderr, "switchboard: note: created switchboard's tables in %s\n", t)
	}
	return b, nil
}

// openFor opens the database for a command that edits it (openDB) or
// only reads it (openExisting).
func openFor(ctx context.Context, env Env, dir, dbURL string, edit bool) (storeopen.Backend, error) {
	if edit {
		return openDB(ctx, env, dir, dbURL)
	}
	return openExisting(ctx, dir, dbURL)
}

// openExisting opens the database that must already exist, for commands
// that read: it creates nothing and migrates nothing.
func openExisting(ctx context.Context, dir, dbURL string) (storeopen.Backend, error) {
	t, err := target(dir, dbURL)
	if err != nil {
		return nil, err
	}
	db, err := storeopen.OpenExisting(ctx, t)
	switch {
	case errors.Is(err, storeopen.ErrNoDatabase) && t.Kind == storeopen.SQLite:
		return nil, usagef("no switchboard data in %s (start it with switchboard serve --data %s, or pass --data DIR where it keeps its data)", t.Dir, t.Dir)
	case errors.Is(err, storeopen.ErrNoDatabase):
		return nil, usagef("no switchboard tables in %s (start switchboard serve --db on it, or run switchboard db migrate --db URL)", t)
	case errors.Is(err, storeopen.ErrSchema):
		return nil, usagef("%s: restart switchboard serve with this version (it upgrades the database at start), or use the switchboard that wrote it", strings.TrimPrefix(err.Error(), storeopen.ErrSchema.Error()+": "))
	}
	return db, err
}

// defaultDomain returns the data directory's default domain, creating it
// like `serve` would when the server never ran.
func defaultDomain(ctx context.Context, db storeopen.Backend) (string, error) {
	if v, ok, err := db.Meta(ctx, "default_domain"); err != nil || ok {
		return v, err
	}
	d := config.PrimaryIPv4()
	if _, err := db.EnsureDomain(ctx, d); err != nil {
		return "", err
	}
	return d, db.SetMeta(ctx, "default_domain", d)
}

// resolveDomain returns the canonical name of --domain (or the default),
// failing with a clear message when it does not exist.
func resolveDomain(ctx context.Context, db storeopen.Backend, flagVal string) (string, error) {
	if flagVal == "" {
		return defaultDomain(ctx, db)
	}
	d, err := db.Domain(ctx, flagVal)
	if errors.Is(err, store.ErrNotFound) {
		return "", usagef("unknown domain %s: list domains with `switchboard domain list`, create it with `switchboard domain add %s`", flagVal, flagVal)
	}
	return d.Name, err
}

var numberRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}$`)

func validNumber(n string) error {
	if !numberRE.MatchString(n) {
		return usagef("invalid extension number %q: use 1-32 letters, digits, '.', '_', '+' or '-', starting with a letter or digit (e.g. 2002)", n)
	}
	return nil
}

var weakPasswords = map[string]bool{"password": true, "12345678": true, "123456789": true, "1234567890": true,
	"qwertyui": true, "qwerty123": true, "password1": true, "11111111": true, "00000000": true, "abcdefgh": true,
	"switchboard": true, "changeme": true, "letmein1": true}

// checkPassword rejects empty and weak passwords with the reason.
func checkPassword(number, pw string) error {
	switch {
	case pw == "":
		return usagef("password is empty: give one with --password, or leave the flag out to generate a strong one")
	case len(pw) < 8:
		return usagef("password is too weak: use at least 8 characters (or leave --password out to generate one)")
	case strings.Contains(pw, number) && len(pw) < len(number)+6:
		return usagef("password is too weak: it contains the extension number")
	case weakPasswords[strings.ToLower(pw)]:
		return usagef("password is too weak: it is on the list of common passwords")
	case strings.Count(pw, pw[:1]) == len(pw):
		return usagef("password is too weak: it repeats one character")
	case strings.ContainsAny(pw, "\r\n\x00"):
		return usagef("password must not contain line breaks or NUL")
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// timeLayout is the one time format of text output (tables, show views):
// local time to the second. JSON uses RFC 3339 in UTC everywhere.
const timeLayout = "2006-01-02 15:04:05"

// localTime formats t for text output, "-" when it is zero.
func localTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(timeLayout)
}

func yesno(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// syncServer makes a directory edit live before the command returns: when a
// server runs on the data directory, it is asked over the control socket
// to apply the change feed up to this edit, and the command waits (up to
// 3 s) until it has. Without a running server there is nothing to wait for.
func syncServer(ctx context.Context, env Env, dir string, db storeopen.Backend) {
	c, err := control.Dial(dir)
	if err != nil {
		return
	}
	defer c.Close()
	want, err := db.LastChange(ctx)
	if err != nil || want == 0 {
		return
	}
	if err := c.Sync(ctx, want); err != nil {
		fmt.Fprintf(env.Stderr, "switchboard: warning: the running server has not applied the change yet (%v); it will within seconds\n", err)
	}
}

// freshen makes a read of the data directory see what a running server
// holds in memory: it asks the server over the control socket to commit
// its queued registration, journal and call record writes, and returns
// when it has. Without a running server there is nothing to ask.
func freshen(ctx context.Context, dir string) {
	c, err := control.Dial(dir)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.Flush(ctx)
}

// runtimeOf returns what runs on the data directory: the live answer of a
// running server, or the facts its last run left in the database (ok false
// when there are none).
func runtimeOf(ctx context.Context, dir string, db storeopen.Backend) (rt control.Runtime, running bool, ok bool) {
	if c, err := control.Dial(dir); err == nil {
		defer c.Close()
		if rt, err := c.Runtime(ctx); err == nil {
			return rt, true, true
		}
	}
	raw, found, err := db.Meta(ctx, "runtime")
	if err != nil || !found || json.Unmarshal([]byte(raw), &rt) != nil {
		return control.Runtime{}, false, false
	}
	running, _ = control.Running(dir)
	return rt, running, true
}
