package cli

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/version"
)

// ExitCode carries a non-zero exit status that is not an error message
// (e.g. doctor's "not registered" verdict).
type ExitCode struct{ Code int }

func (e *ExitCode) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// command is one entry of the command table: it dispatches, writes the
// top-level help and feeds "did you mean".
type command struct {
	name    string
	aliases []string // other names that run it (plurals)
	summary string   // one line in `switchboard --help`
	run     func(context.Context, Env, []string) error
}

// commands is the command table, in the order --help lists it.
func commands() []command {
	return []command{
		{"serve", nil, "run the server (SIP on UDP+TCP, SQLite in --data DIR)",
			Serve},
		{"ext", []string{"extension", "extensions"}, "manage extensions: add, list, show, set, passwd, rm, import, export", Ext},
		{"domain", []string{"domains"}, "manage domains (tenants): add, list, rm, rename, default", Domain},
		{"reg", nil, "list current registrations (like sofia status profile internal reg); reg rm EXT; reg flush", Reg},
		{"status", nil, "show whether the server runs, its listeners, counts and uptime", Status},
		{"acl", []string{"acls"}, "access control lists: list, show, add, set, allow, deny, rm, test", ACL},
		{"profile", []string{"profiles"}, "the SIP profile: list, show (like sofia status profile internal), set its ACLs", Profile},
		{"ban", []string{"bans"}, "brute-force bans: list, rm IP, add IP", Ban},
		{"key", nil, "the key that signs nonces and route tokens: key rotate", Key},
		{"calls", nil, "list recent calls with their SIP status and cause; calls show ID; calls hangup ID; calls --active", Calls},
		{"doctor", nil, "why can't EXT register or be called: doctor 2002; doctor call 2001 2002", Doctor},
		{"trace", nil, "live SIP messages in and out, like sngrep: trace --ext 2001 [--full] [--pcap FILE]", Trace},
		{"journal", nil, "every decision with its cause: journal --ext 2002 --ip IP --since 10m --follow", Journal},
		{"backup", nil, "write a consistent copy of the database while the server runs: backup FILE", Backup},
		{"restore", nil, "replace the database with a backup (server stopped): restore FILE", Restore},
		{"db", nil, "the database: db status, db migrate, db copy --from sqlite:./data --to postgres://...", DB},
		{"admin", []string{"admins"}, "web console admins and API tokens: add, passwd, rm, list; token add, list, rm", Admin},
		{"version", nil, "print the version, commit and build date (also --version)", Version},
	}
}

// lookup returns the command named (or aliased) name.
func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name || slices.Contains(c.aliases, name) {
			return c, true
		}
	}
	return command{}, false
}

// Usage is the top-level help, `switchboard --help`, made from the command
// table.
func Usage() string {
	var b strings.Builder
	b.WriteString(`switchboard: a PBX in one binary that says why a phone can't register or be called.

Usage: switchboard COMMAND [ARGS] [--data DIR] [--json]

Commands:
`)
	width := 0
	for _, c := range commands() {
		width = max(width, len(c.name))
	}
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, c.name, c.summary)
	}
	b.WriteString(`
Subcommands take the same aliases everywhere: list = ls, show = get,
rm = del = delete = remove. Every command takes --data DIR (default ./data,
env SWITCHBOARD_DATA), --db URL (env SWITCHBOARD_DB) and --help; --data,
--db and --json may also come before
the command. Run 'switchboard COMMAND --help' for a command's flags.
Start here: switchboard serve   then, in another terminal: switchboard ext add 2001`)
	return b.String()
}

// globalFlag reports whether name is a flag every command takes (written
// before the command, `switchboard --data D ext list`, it is moved after
// it) and whether it takes a value.
func globalFlag(name string) (takesValue, ok bool) {
	switch name {
	case "data", "db":
		return true, true
	case "json":
		return false, true
	}
	return false, false
}

// Dispatch runs the subcommand named by the first argument that is not a
// global flag.
func Dispatch(ctx context.Context, env Env, args []string) error {
	args, err := hoistGlobalFlags(args)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		fmt.Fprintln(env.Stderr, Usage())
		return &ExitCode{Code: 2}
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		fmt.Fprintln(env.Stdout, Usage())
		return nil
	case "-v", "--version":
		return Version(ctx, env, args[1:])
	}
	cmd, ok := lookup(name)
	if !ok {
		if near := closest(name, commandNames()); near != "" {
			return usagef("unknown command %q: did you mean `switchboard %s`? (run `switchboard --help` for the list)", name, near)
		}
		return usagef("unknown command %q: run `switchboard --help` for the list of commands", name)
	}
	err = cmd.run(ctx, env, args[1:])
	if err != nil && strings.TrimSpace(err.Error()) == "" {
		return &ExitCode{Code: 1}
	}
	return err
}

// hoistGlobalFlags moves global flags that precede the command name to the
// end of the arguments, where every command parses them.
func hoistGlobalFlags(args []string) ([]string, error) {
	var moved []string
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "-" {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takesValue, global := globalFlag(name)
		if !global {
			break // -h, --version, or a mistake the command reports
		}
		moved = append(moved, a)
		i++
		if takesValue && !hasValue {
			if i == len(args) {
				return nil, usagef("flag %s needs a value, e.g. %s ./data", a, a)
			}
			moved = append(moved, args[i])
			i++
		}
	}
	if i == len(args) {
		if len(moved) > 0 {
			return nil, usagef("no command after %s: e.g. switchboard %s status", strings.Join(moved, " "), strings.Join(moved, " "))
		}
		return args, nil
	}
	if len(moved) == 0 {
		return args, nil
	}
	out := append([]string{}, args[i:]...)
	return append(out, moved...), nil
}

func commandNames() []string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return names
}

// subAlias maps the aliases every command with subcommands accepts to the
// canonical subcommand: ls = list, get = show, del = delete = remove = rm.
func subAlias(sub string) string {
	switch sub {
	case "ls":
		return "list"
	case "get":
		return "show"
	case "del", "delete", "remove":
		return "rm"
	}
	return sub
}

// subcommand resolves the subcommand sub of `switchboard cmd` against the
// canonical names valid (aliases per subAlias): it returns the canonical
// name, or a usage error that suggests the nearest one.
func subcommand(cmd, sub string, valid ...string) (string, error) {
	if c := subAlias(sub); slices.Contains(valid, c) {
		return c, nil
	}
	list := valid[len(valid)-1]
	if len(valid) > 1 {
		list = strings.Join(valid[:len(valid)-1], ", ") + " or " + list
	}
	cands := append([]string{}, valid...)
	for _, a := range []string{"ls", "get", "del", "delete", "remove"} {
		if slices.Contains(valid, subAlias(a)) {
			cands = append(cands, a)
		}
	}
	if near := closest(sub, cands); near != "" {
		return "", usagef("unknown command `%s %s`: did you mean `switchboard %s %s`? (use %s; see switchboard %s --help)",
			cmd, sub, cmd, subAlias(near), list, cmd)
	}
	return "", usagef("unknown command `%s %s`: use %s (see switchboard %s --help)", cmd, sub, list, cmd)
}

// closest returns the candidate nearest to s by edit distance when it is
// close enough to be a typo (or s is a prefix of exactly one), else "".
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	var prefixed []string
	for _, c := range candidates {
		if strings.HasPrefix(c, s) && s != "" {
			prefixed = append(prefixed, c)
		}
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" && len(prefixed) == 1 {
		return prefixed[0]
	}
	if bestD > len(s)/2 && len(prefixed) != 1 {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Version runs `switchboard version` (also `--version`, `-v`).
func Version(_ context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.String("data", "", "ignored")
	fs.String("db", "", "ignored")
	asJSON := fs.Bool("json", false, "print JSON: version, commit, build_date, modified, go, platform")
	pos, done, err := parseHelp(env, fs, args, "Usage: switchboard version [--json]\n\nPrints the version, the commit and date it was built from, and the Go toolchain.")
	if done || err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("`switchboard version` takes no arguments")
	}
	info := version.Get()
	if *asJSON {
		return writeJSON(env.Stdout, info)
	}
	fmt.Fprintln(env.Stdout, "switchboard", info)
	return nil
}
