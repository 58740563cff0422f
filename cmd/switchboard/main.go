// Command switchboard is a PBX in one binary: an extension directory, a SIP
// registrar and proxy, a journal of every decision, and a doctor that
// explains why a phone cannot register or be called.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/cli"
	"golang.org/x/term"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	env := cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, TTY: term.IsTerminal(int(os.Stdout.Fd()))}
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
