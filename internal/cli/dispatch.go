package cli

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/version"
)

// ExitCode carries a non-zero exit status that is not an error message
// (e.g. doctor's "not registered" verdict).
type ExitCode struct{ Code int }

func (e *ExitCode) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// commands maps each subcommand to its function.
func commands() map[string]func(context.Context, Env, []string) error {
	return map[string]func(context.Context, Env, []string) error{
		"serve":   func(ctx context.Context, env Env, args []string) error { return Serve(ctx, env, args, nil) },
		"ext":     Ext,
		"domain":  Domain,
		"reg":     Reg,
		"status":  Status,
		"calls":   Calls,
		"doctor":  Doctor,
		"journal": Journal,
		"acl":     ACL,
		"profile": Profile,
		"ban":     Ban,
		"backup":  Backup,
		"restore": Restore,
		"key":     Key,
		"version": Version,
	}
}

// globalFlag reports whether name is a flag every command takes (written
// before the command, `switchboard --data D ext list`, it is moved after
// it) and whether it takes a value.
func globalFlag(name string) (takesValue, ok bool) {
	switch name {
	case "data":
		return true, true
	case "json":
		return false, true
	}
	return false, false
}

// Dispatch runs the subcommand named by the first argument that is not a
// global flag.
func Dispatch(ctx context.Context, env Env, args []string, usage string) error {
	args, err := hoistGlobalFlags(args)
	if err != nil {
		return err
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		fmt.Fprintln(env.Stdout, usage)
		return nil
	case "-v", "--version":
		return Version(ctx, env, args[1:])
	}
	cmd, ok := commands()[name]
	if !ok {
		if near := closest(name, commandNames()); near != "" {
			return usagef("unknown command %q: did you mean `switchboard %s`? (run `switchboard --help` for the list)", name, near)
		}
		return usagef("unknown command %q: run `switchboard --help` for the list of commands", name)
	}
	err = cmd(ctx, env, args[1:])
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
	for n := range commands() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
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
