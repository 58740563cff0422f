package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/webauth"
	"golang.org/x/term"
)

const adminUsage = `Usage: switchboard admin add NAME | passwd NAME | rm NAME | list [--json]
       switchboard admin token add NAME | token list [--json] | token rm NAME

Admins of the web console (serve --http, default http://127.0.0.1:8080) and
tokens of its JSON API. There is no default password: while no admin exists,
serve prints a one-time setup link; or add one here. Passwords (at least 10
characters) are asked for on the terminal, or read as one line from standard
input with --password-stdin; only a bcrypt hash is stored. Removing an admin
or changing the password ends that admin's console sessions.

API tokens are for scripts: 'Authorization: Bearer TOKEN'. A token is
printed once when made (only its SHA-256 hash is kept); lost, it is
replaced with token rm and token add.

  switchboard admin add alice
  printf '%s\n' "$PW" | switchboard admin passwd alice --password-stdin
  switchboard admin token add backup-script`

type adminView struct {
	Name              string `json:"name"`
	CreatedAt         string `json:"created_at"`
	PasswordChangedAt string `json:"password_changed_at"`
}

type tokenView struct {
	Name       string `json:"name"`
	Prefix     string `json:"prefix"`
	CreatedAt  string `json:"created_at"`
	LastUsedAt string `json:"last_used_at"` // "" when never used
}

// Admin runs `switchboard admin ...`.
func Admin(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("admin", flag.ContinueOnError)
	data := fs.String("data", defaultData(), "data directory (env SWITCHBOARD_DATA)")
	dbURL := dbFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON (list, token list)")
	pwStdin := fs.Bool("password-stdin", false, "add, passwd: read the password as one line from standard input")
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) || (err == nil && len(pos) == 0) {
		helpText(env.Stdout, fs, adminUsage)
		return nil
	}
	if err != nil {
		return err
	}
	cmd, err := subcommand("admin", pos[0], "add", "passwd", "rm", "list", "token")
	if err != nil {
		return err
	}
	rest := pos[1:]
	if cmd == "token" {
		if len(rest) == 0 {
			return usagef("usage: switchboard admin token add NAME | token list | token rm NAME")
		}
		sub, err := subcommand("admin token", rest[0], "add", "list", "rm")
		if err != nil {
			return err
		}
		cmd, rest = "token "+sub, rest[1:]
	}
	if *pwStdin && cmd != "add" && cmd != "passwd" {
		return usagef("--password-stdin goes with `switchboard admin add` and `admin passwd`")
	}
	if strings.HasSuffix(cmd, "list") {
		if len(rest) > 0 {
			return usagef("`switchboard admin %s` takes no arguments", cmd)
		}
	} else if len(rest) != 1 {
		return usagef("usage: switchboard admin %s NAME, e.g. switchboard admin %s alice", cmd, cmd)
	}
	db, err := openFor(ctx, env, *data, *dbURL, !strings.HasSuffix(cmd, "list"))
	if err != nil {
		return err
	}
	defer db.Close()
	switch cmd {
	case "list":
		admins, err := db.Admins(ctx)
		if err != nil {
			return err
		}
		vs := []adminView{}
		for _, a := range admins {
			vs = append(vs, adminView{Name: a.Name, CreatedAt: a.CreatedAt.UTC().Format(time.RFC3339),
				PasswordChangedAt: a.PasswordChangedAt.UTC().Format(time.RFC3339)})
		}
		if *asJSON {
			return writeJSON(env.Stdout, vs)
		}
		if len(vs) == 0 {
			fmt.Fprintln(env.Stdout, "no admins: add one with `switchboard admin add NAME` (or the setup link serve prints)")
			return nil
		}
		tw := table(env.Stdout)
		fmt.Fprintln(tw, "NAME\tCREATED\tPASSWORD CHANGED")
		for _, a := range admins {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Name, localTime(a.CreatedAt), localTime(a.PasswordChangedAt))
		}
		return tw.Flush()
	case "add", "passwd":
		name := rest[0]
		if err := webauth.ValidName("admin", name); err != nil {
			return usagef("%v", err)
		}
		if cmd == "passwd" {
			if _, err := db.Admin(ctx, name); errors.Is(err, store.ErrNotFound) {
				return usagef("no admin %s: list them with `switchboard admin list`, add one with `switchboard admin add %s`", name, name)
			} else if err != nil {
				return err
			}
		} else if _, err := db.Admin(ctx, name); err == nil {
			return usagef("admin %s already exists: change the password with `switchboard admin passwd %s`", name, name)
		}
		pw, err := adminPassword(env, name, *pwStdin)
		if err != nil {
			return err
		}
		if err := webauth.CheckPassword(name, pw); err != nil {
			return usagef("%v", err)
		}
		hash, err := webauth.HashPassword(pw)
		if err != nil {
			return err
		}
		if cmd == "add" {
			if err := db.AddAdmin(ctx, store.Admin{Name: name, PasswordHash: hash}); errors.Is(err, store.ErrDuplicate) {
				return usagef("admin %s already exists: change the password with `switchboard admin passwd %s`", name, name)
			} else if err != nil {
				return err
			}
			journalAdmin(ctx, env, db, cause.AdminChanged, "", "admin "+name+" added")
			fmt.Fprintf(env.Stdout, "admin %s added: log in to the console (serve --http, default http://127.0.0.1:8080)\n", name)
			return nil
		}
		if err := db.SetAdminPassword(ctx, name, hash, time.Now()); err != nil {
			return err
		}
		journalAdmin(ctx, env, db, cause.AdminChanged, "", "password of admin "+name+" changed")
		fmt.Fprintf(env.Stdout, "password of admin %s changed; its console sessions ended\n", name)
		return nil
	case "rm":
		name := rest[0]
		if err := db.RemoveAdmin(ctx, name); errors.Is(err, store.ErrNotFound) {
			return usagef("no admin %s: list them with `switchboard admin list`", name)
		} else if err != nil {
			return err
		}
		journalAdmin(ctx, env, db, cause.AdminChanged, "", "admin "+name+" removed")
		fmt.Fprintf(env.Stdout, "admin %s removed; its console sessions ended\n", name)
		return nil
	case "token list":
		toks, err := db.APITokens(ctx)
		if err != nil {
			return err
		}
		vs := []tokenView{}
		for _, t := range toks {
			v := tokenView{Name: t.Name, Prefix: t.Prefix, CreatedAt: t.CreatedAt.UTC().Format(time.RFC3339)}
			if !t.LastUsedAt.IsZero() {
				v.LastUsedAt = t.LastUsedAt.UTC().Format(time.RFC3339)
			}
			vs = append(vs, v)
		}
		if *asJSON {
			return writeJSON(env.Stdout, vs)
		}
		if len(vs) == 0 {
			fmt.Fprintln(env.Stdout, "no API tokens: make one with `switchboard admin token add NAME`")
			return nil
		}
		tw := table(env.Stdout)
		fmt.Fprintln(tw, "NAME\tPREFIX\tCREATED\tLAST USED")
		for _, t := range toks {
			used := "never"
			if !t.LastUsedAt.IsZero() {
				used = localTime(t.LastUsedAt)
			}
			fmt.Fprintf(tw, "%s\t%s…\t%s\t%s\n", t.Name, t.Prefix, localTime(t.CreatedAt), used)
		}
		return tw.Flush()
	case "token add":
		name := rest[0]
		if err := webauth.ValidName("token", name); err != nil {
			return usagef("%v", err)
		}
		tok, hash, prefix, err := webauth.NewToken()
		if err != nil {
			return err
		}
		if err := db.AddAPIToken(ctx, store.APIToken{Name: name, Hash: hash, Prefix: prefix}); errors.Is(err, store.ErrDuplicate) {
			return usagef("API token %s already exists: remove it with `switchboard admin token rm %s`, or choose another name", name, name)
		} else if err != nil {
			return err
		}
		journalAdmin(ctx, env, db, cause.AdminChanged, "", "API token "+name+" added")
		fmt.Fprintln(env.Stderr, "switchboard: API token "+name+" made; it is shown this once (send it as 'Authorization: Bearer TOKEN'):")
		fmt.Fprintln(env.Stdout, tok)
		return nil
	case "token rm":
		name := rest[0]
		if err := db.RemoveAPIToken(ctx, name); errors.Is(err, store.ErrNotFound) {
			return usagef("no API token %s: list them with `switchboard admin token list`", name)
		} else if err != nil {
			return err
		}
		journalAdmin(ctx, env, db, cause.AdminChanged, "", "API token "+name+" removed")
		fmt.Fprintf(env.Stdout, "API token %s removed\n", name)
		return nil
	}
	return nil
}

// adminPassword reads an admin's new password: one line of standard input
// with --password-stdin, else twice on the terminal without echo.
func adminPassword(env Env, name string, fromStdin bool) (string, error) {
	if fromStdin {
		if env.Stdin == nil {
			return "", usagef("--password-stdin: no standard input; pipe the password in, e.g. printf '%%s\\n' \"$PW\" | switchboard admin add %s --password-stdin", name)
		}
		line, err := bufio.NewReaderSize(io.LimitReader(env.Stdin, 4096), 4096).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read the password from standard input: %w", err)
		}
		return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
	}
	f, ok := env.Stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", usagef("no terminal to ask the password on: pipe it in with --password-stdin, e.g. printf '%%s\\n' \"$PW\" | switchboard admin add %s --password-stdin", name)
	}
	read := func(prompt string) (string, error) {
		fmt.Fprint(env.Stderr, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return "", fmt.Errorf("read the password from the terminal: %w", err)
		}
		return string(b), nil
	}
	pw, err := read("password for admin " + name + " (at least 10 characters): ")
	if err != nil {
		return "", err
	}
	again, err := read("again: ")
	if err != nil {
		return "", err
	}
	if pw != again {
		return "", usagef("the two passwords differ: run the command again")
	}
	return pw, nil
}
