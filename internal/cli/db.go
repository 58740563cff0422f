package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/switchboard-pbx/switchboard/internal/control"
	storeopen "github.com/switchboard-pbx/switchboard/internal/store/open"
)

const dbUsage = `Usage: switchboard db status [--json] | migrate
       switchboard db copy --from sqlite:./data --to postgres://USER@HOST/DB [--force]

The database is SQLite in --data (the default) or PostgreSQL (--db
postgres://USER@HOST/DB, or $SWITCHBOARD_DB). Passwords in URLs are never
printed. secret.key, the lock and the control socket stay in --data either
way.

  status   the backend, the schema version and the migrations pending
  migrate  apply the pending migrations now (serve also does at start)
  copy     copy every table from --from to the PostgreSQL database --to in
           one transaction, all or nothing, checking each table's row count;
           a target that already holds data is refused unless --force
           (which replaces it). Stop switchboard serve first, so that no
           registration written meanwhile is left behind.`

// DB runs `switchboard db status|migrate|copy`.
func DB(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("db", flag.ContinueOnError)
	data := fs.String("data", defaultData(), "data directory (env SWITCHBOARD_DATA)")
	dbURL := dbFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	from := fs.String("from", "", "db copy: the database to copy, a `URL` sqlite:DIR or postgres://... (default: --db)")
	to := fs.String("to", "", "db copy: the PostgreSQL database to fill, a `URL` postgres://...")
	force := fs.Bool("force", false, "db copy: replace what the target database holds")
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) || (err == nil && len(pos) == 0) {
		helpText(env.Stdout, fs, dbUsage)
		return nil
	}
	if err != nil {
		return err
	}
	cmd, err := subcommand("db", pos[0], "status", "migrate", "copy")
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("`switchboard db %s` takes no arguments (see: switchboard db --help)", cmd)
	}
	if cmd != "copy" && (isSet(fs, "from") || isSet(fs, "to") || isSet(fs, "force")) {
		return usagef("--from, --to and --force go with `switchboard db copy --from sqlite:./data --to postgres://USER@HOST/DB`")
	}
	switch cmd {
	case "status":
		t, err := target(*data, *dbURL)
		if err != nil {
			return err
		}
		st, err := storeopen.ReadStatus(ctx, t)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(env.Stdout, st)
		}
		fmt.Fprintf(env.Stdout, "backend:  %s\ndatabase: %s\n", st.Backend, st.Database)
		switch {
		case !st.Exists:
			fmt.Fprintf(env.Stdout, "schema:   none yet (%d migrations pending: switchboard db migrate, or start serve)\n", st.Pending)
		case st.Version > st.Latest:
			fmt.Fprintf(env.Stdout, "schema:   version %d, newer than this switchboard (%d): upgrade switchboard\n", st.Version, st.Latest)
		case st.Pending > 0:
			fmt.Fprintf(env.Stdout, "schema:   version %d of %d (%d migrations pending: switchboard db migrate, or restart serve)\n", st.Version, st.Latest, st.Pending)
		default:
			fmt.Fprintf(env.Stdout, "schema:   version %d (up to date)\n", st.Version)
		}
		return nil
	case "migrate":
		t, err := target(*data, *dbURL)
		if err != nil {
			return err
		}
		before, err := storeopen.ReadStatus(ctx, t)
		if err != nil {
			return err
		}
		b, err := storeopen.Open(ctx, t)
		if err != nil {
			return err
		}
		b.Close()
		after, err := storeopen.ReadStatus(ctx, t)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(env.Stdout, map[string]any{"backend": after.Backend, "database": after.Database,
				"from_version": before.Version, "schema_version": after.Version, "applied": after.Version - before.Version})
		}
		if after.Version == before.Version {
			fmt.Fprintf(env.Stdout, "%s: schema version %d, up to date\n", after.Database, after.Version)
		} else {
			fmt.Fprintf(env.Stdout, "%s: migrated from schema version %d to %d\n", after.Database, before.Version, after.Version)
		}
		return nil
	}
	src := *from
	if src == "" {
		src = *dbURL
	}
	ft, err := target(*data, src)
	if err != nil {
		return usagef("--from: %v", err)
	}
	if *to == "" {
		return usagef("db copy needs --to postgres://USER@HOST/DB (the database to fill)")
	}
	tt, err := storeopen.Parse(*to, "")
	if err != nil {
		return usagef("--to: %v", err)
	}
	if tt.Kind != storeopen.Postgres {
		return usagef("--to must be a PostgreSQL URL (postgres://USER@HOST/DB): db copy moves an installation to PostgreSQL")
	}
	if ft.Kind == storeopen.SQLite {
		if running, pid := control.Running(ft.Dir); running {
			fmt.Fprintf(env.Stderr, "switchboard: note: switchboard serve (pid %d) runs on %s: registrations it writes after the copy's snapshot are not copied\n", pid, ft.Dir)
		}
	}
	rep, err := storeopen.Copy(ctx, ft, tt, *force)
	if errors.Is(err, storeopen.ErrTargetNotEmpty) {
		return usagef("%v", err)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(env.Stdout, rep)
	}
	var total int64
	for _, t := range rep.Tables {
		total += t.Rows
	}
	fmt.Fprintf(env.Stdout, "copied %s to %s (%d rows, counts checked):\n", rep.From, rep.To, total)
	for _, t := range rep.Tables {
		fmt.Fprintf(env.Stdout, "  %-11s %d\n", t.Table, t.Rows)
	}
	fmt.Fprintf(env.Stdout, "start the server on it with: switchboard serve --data %s --db '%s'\n", *data, rep.To)
	return nil
}
