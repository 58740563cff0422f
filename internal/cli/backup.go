package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/control"
	storeopen "github.com/switchboard-pbx/switchboard/internal/store/open"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

// Backup runs `switchboard backup FILE`: a consistent copy of the database
// taken while the server runs.
func Backup(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	data := fs.String("data", defaultData(), "data directory (env SWITCHBOARD_DATA)")
	dbURL := dbFlag(fs)
	force := fs.Bool("force", false, "replace FILE when it exists")
	asJSON := fs.Bool("json", false, "print JSON: file, bytes, extensions, registrations")
	pos, done, err := parseHelp(env, fs, args, `Usage: switchboard backup FILE [--force]

Writes a consistent copy of the whole database (extensions, password hashes,
ACLs, bans, registrations, journal, call records) to FILE, mode 0600, while
the server keeps running. Restore it with: switchboard restore FILE`)
	if done || err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("backup needs one FILE: switchboard backup /var/backups/switchboard-$(date +%%F).db")
	}
	file := pos[0]
	if t, err := target(*data, *dbURL); err != nil {
		return err
	} else if t.Kind == storeopen.Postgres {
		return usagef("the database is PostgreSQL (%s): back it up with pg_dump, e.g. pg_dump -Fc -f %s DBNAME (and keep %s/secret.key)", t, file, *data)
	}
	if _, err := os.Lstat(file); err == nil {
		if !*force {
			return usagef("%s exists: pick another name or pass --force to replace it", file)
		}
		if err := os.Remove(file); err != nil {
			return fmt.Errorf("replace %s: %w", file, err)
		}
	}
	db, err := openExisting(ctx, *data, *dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	freshen(ctx, *data) // registrations the server still queues
	sq, ok := db.(*sqlite.DB)
	if !ok {
		return fmt.Errorf("backup: %T is not an SQLite database", db)
	}
	if err := sq.BackupTo(ctx, file); err != nil {
		return err
	}
	st, err := os.Stat(file)
	if err != nil {
		return err
	}
	_, exts, err := db.Counts(ctx)
	if err != nil {
		return err
	}
	bs, err := db.BindingsOf(ctx, "", "")
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(env.Stdout, map[string]any{"file": file, "bytes": st.Size(), "extensions": exts, "registrations": len(bs)})
	}
	fmt.Fprintf(env.Stdout, "backed up %s to %s (%d extension(s), %d registration(s), %d bytes; it holds password hashes: keep it private)\n",
		*data, file, exts, len(bs), st.Size())
	return nil
}

// Restore runs `switchboard restore FILE`: the database of the data
// directory becomes a copy of FILE. The server must be stopped.
func Restore(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	data := fs.String("data", defaultData(), "data directory (env SWITCHBOARD_DATA); created when missing")
	dbURL := dbFlag(fs)
	pos, done, err := parseHelp(env, fs, args, `Usage: switchboard restore FILE

Replaces the database in --data with FILE, a copy made by switchboard backup.
Stop the server first. The database it replaces is kept beside it as
switchboard.db.replaced-DATE, and FILE is migrated to this version's schema.`)
	if done || err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("restore needs one FILE: switchboard restore /var/backups/switchboard.db")
	}
	t, err := target(*data, *dbURL)
	if err != nil {
		return err
	}
	if t.Kind == storeopen.Postgres {
		return usagef("the database is PostgreSQL (%s): restore a pg_dump with pg_restore, e.g. pg_restore --clean -d DBNAME FILE", t)
	}
	if running, pid := control.Running(*data); running {
		return usagef("switchboard serve (pid %d) is running on %s: stop it first (e.g. systemctl stop switchboard), then run switchboard restore again", pid, *data)
	}
	if err := os.MkdirAll(t.Dir, 0o700); err != nil {
		return fmt.Errorf("data directory %s: %w", t.Dir, err)
	}
	saved, err := sqlite.ReplaceFile(ctx, t.Dir, pos[0], time.Now().UTC().Format("20060102-150405"))
	if errors.Is(err, sqlite.ErrNotSwitchboard) {
		return usagef("%s is not a switchboard backup: give a file written by switchboard backup", pos[0])
	}
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	fmt.Fprintf(env.Stdout, "restored %s into %s\n", pos[0], *data)
	if saved != "" {
		fmt.Fprintf(env.Stdout, "the database it replaced is saved as %s\n", saved)
	}
	fmt.Fprintln(env.Stdout, "start the server with: switchboard serve --data "+*data)
	return nil
}
