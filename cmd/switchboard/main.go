// Command switchboard is a PBX in one binary: an extension directory, a SIP
// registrar and proxy, a journal of every decision, and a doctor that
// explains why a phone cannot register or be called.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/cli"
	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/server"
	"golang.org/x/term"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	env := cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, TTY: term.IsTerminal(int(os.Stdout.Fd())),
		Serve: serve}
	err := cli.Dispatch(context.Background(), env, args)
	if err == nil {
		return 0
	}
	var ec *cli.ExitCode
	if errors.As(err, &ec) {
		return ec.Code
	}
	msg := err.Error()
	fmt.Fprintln(os.Stderr, "switchboard: "+strings.TrimSpace(msg))
	return 1
}

// serve builds the server from the settings `switchboard serve` read and
// runs it until ctx ends.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
