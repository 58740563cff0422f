// Package cli implements the switchboard command line: one function per
// subcommand, each taking its arguments and writing to the given streams, so
// tests can run commands in-process.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Env is where a command reads and writes.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// TTY reports whether Stdout is a terminal (color and marks).
	TTY bool
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
			return nil, usagef("%s (see: switchboard %s --help)", msg, fs.Name())
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
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

// helpText writes a command's usage and its flags.
func helpText(w io.Writer, fs *flag.FlagSet, usage string) {
	fmt.Fprintln(w, strings.TrimSpace(usage))
	var has bool
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}
