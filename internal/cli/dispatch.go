package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/server"
)

// ExitCode carries a non-zero exit status that is not an error message
// (e.g. doctor's "not registered" verdict).
type ExitCode struct{ Code int }

func (e *ExitCode) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// commands maps each subcommand to its function. Other files add theirs in
// Commands below.
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
		"key":     Key,
		"version": func(ctx context.Context, env Env, args []string) error {
			fmt.Fprintln(env.Stdout, "switchboard", server.Version)
			return nil
		},
	}
}

// Dispatch runs the subcommand named by args[0].
func Dispatch(ctx context.Context, env Env, args []string, usage string) error {
	name := args[0]
	if name == "-h" || name == "--help" || name == "help" {
		fmt.Fprintln(env.Stdout, usage)
		return nil
	}
	cmd, ok := commands()[name]
	if !ok {
		return usagef("unknown command %q: run `switchboard --help` for the list of commands", name)
	}
	err := cmd(ctx, env, args[1:])
	if err != nil && strings.TrimSpace(err.Error()) == "" {
		return &ExitCode{Code: 1}
	}
	return err
}
