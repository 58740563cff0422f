package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/control"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	storeopen "github.com/switchboard-pbx/switchboard/internal/store/open"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

const keyUsage = `Usage: switchboard key rotate [--data DIR] [--json]

The signing key (DATA/secret.key, mode 0600) signs the server's digest
nonces and Record-Route tokens. 'key rotate' replaces it with a new random
key, for instance when a copy of the data directory may have leaked.

A running server keeps the old key until it restarts. After the restart,
nonces signed with the old key are refused with a fresh challenge, so
phones simply authenticate again; requests inside calls set up before the
restart are refused, as they are after any restart.`

// Key runs `switchboard key ...`.
func Key(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(env.Stdout, strings.TrimSpace(keyUsage))
		return nil
	}
	if args[0] != "rotate" {
		return usagef("unknown command `key %s`: use `switchboard key rotate`", args[0])
	}
	fs := flag.NewFlagSet("key rotate", flag.ContinueOnError)
	data := fs.String("data", defaultData(), "data directory (env SWITCHBOARD_DATA)")
	dbURL := dbFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, done, err := parseHelp(env, fs, args[1:], keyUsage)
	if done || err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("`switchboard key rotate` takes no arguments")
	}
	t, err := target(*data, *dbURL)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(t.Dir, sqlite.FileName)); err != nil && t.Kind == storeopen.SQLite {
		return usagef("no switchboard database in %s: pass --data DIR where switchboard serve keeps its data (or set SWITCHBOARD_DATA)", *data)
	}
	path, err := secret.Rotate(*data)
	if err != nil {
		return err
	}
	running, pid := control.Running(*data)
	if *asJSON {
		return writeJSON(env.Stdout, map[string]any{"path": path, "server_running": running, "pid": pid})
	}
	fmt.Fprintf(env.Stdout, "new signing key written to %s\n", path)
	if running {
		fmt.Fprintf(env.Stdout, "the running server (pid %d) uses it from its next start: restart it; phones then authenticate again\n", pid)
	}
	return nil
}
