package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/store"
	storeopen "github.com/switchboard-pbx/switchboard/internal/store/open"
)

const domainUsage = `Usage: switchboard domain add NAME [--realm R] | list | rm NAME --yes
       switchboard domain rename OLD NEW | default NAME

Domains are tenants: each has its own extensions. Phones authenticate
against the domain's digest realm: its name unless --realm says otherwise.
A renamed domain keeps its realm, so every phone's password keeps working.
The default domain is the one requests to the server's own addresses and
host names belong to (the domain phones reach by the server's IP).`

// Domain runs `switchboard domain add|list|rm|rename|default`.
func Domain(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("domain", flag.ContinueOnError)
	data := fs.String("data", defaultData(), "data directory (env SWITCHBOARD_DATA)")
	dbURL := dbFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	realm := fs.String("realm", "", "domain add: the digest realm (default: the domain's name)")
	yes := fs.Bool("yes", false, "domain rm: delete the domain with all its extensions and registrations")
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) || (err == nil && len(pos) == 0) {
		helpText(env.Stdout, fs, domainUsage)
		return nil
	}
	if err != nil {
		return err
	}
	cmd, err := subcommand("domain", pos[0], "add", "list", "rm", "rename", "default")
	if err != nil {
		return err
	}
	if isSet(fs, "realm") && cmd != "add" {
		return usagef("--realm goes with `switchboard domain add NAME --realm R`")
	}
	db, err := openFor(ctx, env, *data, *dbURL, cmd != "list")
	if err != nil {
		return err
	}
	defer db.Close()
	def, err := defaultDomain(ctx, db)
	if err != nil {
		return err
	}
	arg := func(n int, usage string) error {
		if len(pos) != n+1 {
			return usagef("usage: %s", usage)
		}
		return nil
	}
	known := func(name string) (store.Domain, error) {
		d, err := db.Domain(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			return d, usagef("unknown domain %s: see `switchboard domain list`", name)
		}
		return d, err
	}
	switch cmd {
	case "list":
		return domainList(ctx, env, db, def, *asJSON)
	case "add":
		if err := arg(1, "switchboard domain add NAME [--realm R], e.g. switchboard domain add pbx.example.com"); err != nil {
			return err
		}
		if err := config.ValidDomain(pos[1]); err != nil {
			return usagef("%v", err)
		}
		if *realm != "" {
			if err := config.ValidDomain(*realm); err != nil {
				return usagef("--realm: %v", err)
			}
		}
		if _, err := db.Domain(ctx, pos[1]); err == nil {
			return usagef("domain %s already exists", pos[1])
		}
		d, err := db.AddDomain(ctx, pos[1], *realm)
		if err != nil {
			return err
		}
		syncServer(ctx, env, *data, db)
		if *asJSON {
			return writeJSON(env.Stdout, d)
		}
		if d.Realm != d.Name {
			fmt.Fprintf(env.Stdout, "added domain %s (realm %s)\n", d.Name, d.Realm)
		} else {
			fmt.Fprintf(env.Stdout, "added domain %s\n", d.Name)
		}
		return nil
	case "rename":
		if err := arg(2, "switchboard domain rename OLD NEW, e.g. switchboard domain rename 127.0.0.1 192.0.2.10"); err != nil {
			return err
		}
		if err := config.ValidDomain(pos[2]); err != nil {
			return usagef("%v", err)
		}
		old, err := known(pos[1])
		if err != nil {
			return err
		}
		if _, err := db.Domain(ctx, pos[2]); err == nil && !strings.EqualFold(pos[2], old.Name) {
			return usagef("domain %s already exists: pick another name, or move its extensions first", pos[2])
		}
		d, err := db.RenameDomain(ctx, old.Name, pos[2])
		if err != nil {
			return err
		}
		syncServer(ctx, env, *data, db)
		if *asJSON {
			return writeJSON(env.Stdout, map[string]any{"old": old.Name, "domain": d, "default": strings.EqualFold(old.Name, def)})
		}
		fmt.Fprintf(env.Stdout, "renamed domain %s to %s; its realm stays %s, so passwords keep working\n", old.Name, d.Name, d.Realm)
		if strings.EqualFold(old.Name, def) {
			fmt.Fprintf(env.Stdout, "%s is the default domain\n", d.Name)
		}
		return nil
	case "default":
		if len(pos) == 1 {
			fmt.Fprintln(env.Stdout, def)
			return nil
		}
		if err := arg(1, "switchboard domain default NAME (or without NAME to print it)"); err != nil {
			return err
		}
		if _, err := known(pos[1]); err != nil {
			return err
		}
		d, err := db.SetDefaultDomain(ctx, pos[1])
		if err != nil {
			return err
		}
		syncServer(ctx, env, *data, db)
		if *asJSON {
			return writeJSON(env.Stdout, d)
		}
		fmt.Fprintf(env.Stdout, "%s is the default domain (a serve --domain flag still overrides it at start)\n", d.Name)
		return nil
	case "rm":
		if err := arg(1, "switchboard domain rm NAME --yes"); err != nil {
			return err
		}
		d, err := known(pos[1])
		if err != nil {
			return err
		}
		if d.Name == def {
			return usagef("%s is the default domain and cannot be removed (make another the default first: switchboard domain default NAME)", d.Name)
		}
		if !*yes {
			exts, err := db.Extensions(ctx, d.Name)
			if err != nil {
				return err
			}
			if len(exts) > 0 {
				return usagef("domain %s has %d extension(s), deleted with it: add --yes to delete them all (switchboard domain rm %s --yes)", d.Name, len(exts), d.Name)
			}
		}
		n, err := db.RemoveDomain(ctx, d.Name)
		if err != nil {
			return err
		}
		syncServer(ctx, env, *data, db)
		if *asJSON {
			return writeJSON(env.Stdout, map[string]any{"domain": d.Name, "removed": true, "extensions": n})
		}
		fmt.Fprintf(env.Stdout, "removed domain %s and its %d extension(s)\n", d.Name, n)
		return nil
	}
	return usagef("unknown command `domain %s`: use add, list, rm, rename or default", pos[0])
}

func domainList(ctx context.Context, env Env, db storeopen.Backend, def string, asJSON bool) error {
	ds, err := db.Domains(ctx)
	if err != nil {
		return err
	}
	type view struct {
		Name      string `json:"name"`
		Realm     string `json:"realm"`
		Enabled   bool   `json:"enabled"`
		Default   bool   `json:"default"`
		CreatedAt string `json:"created_at"`
	}
	vs := []view{}
	for _, d := range ds {
		vs = append(vs, view{d.Name, d.Realm, d.Enabled, strings.EqualFold(d.Name, def), d.CreatedAt.UTC().Format("2006-01-02T15:04:05Z")})
	}
	if asJSON {
		return writeJSON(env.Stdout, vs)
	}
	tw := table(env.Stdout)
	fmt.Fprintln(tw, "DOMAIN\tREALM\tENABLED\tDEFAULT")
	for _, v := range vs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Name, v.Realm, yesno(v.Enabled), yesno(v.Default))
	}
	return tw.Flush()
}
