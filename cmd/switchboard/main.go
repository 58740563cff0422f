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

const usage = `switchboard: a PBX in one binary that says why a phone can't register or be called.

Usage: switchboard COMMAND [ARGS] [--data DIR] [--json]

Commands:
  serve      run the server (SIP on UDP+TCP, SQLite in --data DIR)
  ext        manage extensions: add, list, show, set, passwd, rm, import, export
  domain     manage domains (tenants): add, list, rm
  reg        list current registrations (like sofia status profile internal reg)
  status     show whether the server runs, its listeners, counts and uptime
  acl        access control lists: list, show, add, allow, deny, rm, test
  profile    the SIP profile: show (like sofia status profile internal), set its ACLs
  ban        brute-force bans: list, rm IP, add IP
  key        the key that signs nonces and route tokens: key rotate
  calls      list recent calls with their SIP status and cause; calls show ID; calls --active
  doctor     why can't EXT register or be called: doctor 2002; doctor call 2001 2002
  journal    every decision with its cause: journal --ext 2002 --ip IP --since 10m --follow
  backup     write a consistent copy of the database while the server runs: backup FILE
  restore    replace the database with a backup (server stopped): restore FILE
  version    print the version, commit and build date (also --version)

Every command takes --data DIR (default ./data, env SWITCHBOARD_DATA) and --help;
--data and --json may also come before the command.
Start here: switchboard serve   then, in another terminal: switchboard ext add 2001`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	env := cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, TTY: term.IsTerminal(int(os.Stdout.Fd()))}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	err := cli.Dispatch(context.Background(), env, args, usage)
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
