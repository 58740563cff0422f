// Package cli implements the switchboard command line: one function per
// subcommand, each taking its arguments and writing to the given streams, so
// tests can run commands in-process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/config"
)

// Env is where a command reads and writes.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// TTY reports whether Stdout is a terminal (color and marks).
	TTY bool
	// Serve builds and runs the server with the settings `serve` read
	// (main links in internal/server; the command line does not import it).
	Serve func(ctx context.Context, cfg config.Config, log *slog.Logger) error
}

// UsageError is a mistake in the command line; main prints it with a hint
// and exits 1 (2 for flag syntax).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, a ...any) error { return &UsageError{Msg: fmt.Sprintf(format, a...)} }

// parse parses flags that may come before or after positional arguments
// (`ext show 2002 --json` and `ext show --json 2002` both work). "--" ends
// flag parsing.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			msg := err.Error()
			if strings.HasPrefix(msg, "flag provided but not defined: ") {
				msg = "unknown flag " + strings.TrimPrefix(msg, "flag provided but not defined: ")
			}
			// Go names flags -name; the help and the README write --name.
			msg = goFlagName.ReplaceAllString(msg, "$1--$2")
			return nil, usagef("%s (see: switchboard %s --help)", msg, fs.Name())
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if err := boolWithValue(fs, args[:len(args)-len(rest)], rest[0]); err != nil {
			return nil, err
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseHelp is parse for a command's flags that also prints its help for
// -h/--help; done is true when it did (the command then returns err, nil).
func parseHelp(env Env, fs *flag.FlagSet, args []string, usage string) (pos []string, done bool, err error) {
	pos, err = parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		helpText(env.Stdout, fs, usage)
		return nil, true, nil
	}
	return pos, false, err
}

// goFlagName matches a flag name as Go's flag package writes it in errors.
var goFlagName = regexp.MustCompile(`(^|[ :])-([A-Za-z][A-Za-z0-9-]+)`)

// boolWithValue catches `--enabled false`: a bool flag takes no separate
// value, so Go's flag package would read "false" as the next argument.
// consumed are the arguments the flag set parsed, next the one it stopped
// at.
func boolWithValue(fs *flag.FlagSet, consumed []string, next string) error {
	if len(consumed) == 0 {
		return nil
	}
	last := consumed[len(consumed)-1]
	if !strings.HasPrefix(last, "-") || strings.Contains(last, "=") {
		return nil
	}
	f := fs.Lookup(strings.TrimLeft(last, "-"))
	if f == nil {
		return nil
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
		return nil
	}
	val := ""
	switch strings.ToLower(next) {
	case "true", "yes", "on":
		val = "true"
	case "false", "no", "off":
		val = "false"
	default:
		return nil
	}
	return usagef("%s takes no separate value: write --%s=%s (see: switchboard %s --help)", last, f.Name, val, fs.Name())
}

// helpText writes a command's usage and its flags.
func helpText(w io.Writer, fs *flag.FlagSet, usage string) {
	fmt.Fprintln(w, strings.TrimSpace(usage))
	var has bool
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprintln(w, "\nFlags:")
		printFlags(w, fs)
	}
}

// printFlags writes a flag set's flags the way the README writes them,
// `--name VALUE  usage (default X)`, aligned, in name order. One-letter
// flags get one dash. The default is shown only when it is not the type's
// zero value: a command whose flags only change what is given (ext set)
// registers them with zero defaults, so none is shown.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	type line struct{ left, usage string }
	var lines []line
	width := 0
	fs.VisitAll(func(f *flag.Flag) {
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		name, usage := flag.UnquoteUsage(f)
		left := dash + f.Name
		if !isBool(f) {
			left += " " + placeholder(f.Name, name)
		}
		if d := f.DefValue; !isZeroDefault(d) {
			if name == "duration" { // 1h0m0s -> 1h
				if strings.HasSuffix(d, "m0s") {
					d = strings.TrimSuffix(d, "0s")
				}
				if strings.HasSuffix(d, "h0m") {
					d = strings.TrimSuffix(d, "0m")
				}
			}
			if strings.ContainsAny(d, " \t") {
				d = strconv.Quote(d)
			}
			usage += " (default " + d + ")"
		}
		lines = append(lines, line{left, usage})
		width = max(width, len(left))
	})
	for _, l := range lines {
		fmt.Fprintf(w, "  %-*s  %s\n", width, l.left, l.usage)
	}
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// isZeroDefault reports whether a flag's default is its type's zero value
// (not worth printing).
func isZeroDefault(d string) bool {
	switch d {
	case "", "0", "0s", "false":
		return true
	}
	return false
}

// placeholder names a flag's value in help: the word the usage quotes in
// backquotes (Go's convention), else a name by flag, else by type.
func placeholder(flagName, typeName string) string {
	switch typeName {
	case "string", "value":
	case "int", "uint", "int64", "uint64", "float":
		return "N"
	case "duration":
		return "DURATION"
	default:
		return typeName // from backquotes in the usage
	}
	switch flagName {
	case "data":
		return "DIR"
	case "domain", "acl", "register-acl", "inbound-acl", "trusted-acl", "name":
		return "NAME"
	case "ext", "from", "to", "cid-number":
		return "NUMBER"
	case "ip":
		return "IP"
	case "config":
		return "FILE"
	case "sip", "pprof", "tls", "ws", "wss":
		return "ADDR"
	case "tls-cert", "tls-key":
		return "FILE"
	case "ws-origins":
		return "LIST"
	case "description", "reason":
		return "TEXT"
	case "default":
		return "allow|deny"
	case "digest":
		return "LIST"
	case "since":
		return "WHEN"
	case "log-level":
		return "LEVEL"
	}
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}
