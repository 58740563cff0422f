package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"regexp"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

var domainRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62}\.?)*$|^[0-9a-fA-F:]+$`)

// Domain runs `switchboard domain add|list|rm`.
func Domain(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("domain", flag.ContinueOnError)
	data := fs.String("data", defaultData(), "data directory (env SWITCHBOARD_DATA)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) || (err == nil && len(pos) == 0) {
		helpText(env.Stdout, fs, `Usage: switchboard domain add NAME | list | rm NAME [--json]

Domains are tenants: each has its own extensions, and its name is the digest
realm its phones authenticate against.`)
		return nil
	}
	if err != nil {
		return err
	}
	sub, err := subcommand("domain", pos[0], "add", "list", "rm")
	if err != nil {
		return err
	}
	db, err := openFor(ctx, env, *data, sub != "list")
	if err != nil {
		return err
	}
	defer db.Close()
	def, err := defaultDomain(ctx, db)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		ds, err := db.Domains(ctx)
		if err != nil {
			return err
		}
		type view struct {
			Name      string `json:"name"`
			Enabled   bool   `json:"enabled"`
			Default   bool   `json:"default"`
			CreatedAt string `json:"created_at"`
		}
		vs := []view{}
		for _, d := range ds {
			vs = append(vs, view{d.Name, d.Enabled, d.Name == def, d.CreatedAt.UTC().Format("2006-01-02T15:04:05Z")})
		}
		if *asJSON {
			return writeJSON(env.Stdout, vs)
		}
		tw := table(env.Stdout)
		fmt.Fprintln(tw, "DOMAIN\tENABLED\tDEFAULT")
		for _, v := range vs {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, yesno(v.Enabled), yesno(v.Default))
		}
		return tw.Flush()
	case "add":
		if len(pos) != 2 {
			return usagef("usage: switchboard domain add NAME, e.g. switchboard domain add pbx.example.com")
		}
		if !domainRE.MatchString(pos[1]) {
			return usagef("invalid domain name %q: use a host name like pbx.example.com or an IP address", pos[1])
		}
		if _, err := db.Domain(ctx, pos[1]); err == nil {
			return usagef("domain %s already exists", pos[1])
		}
		d, err := db.EnsureDomain(ctx, pos[1])
		if err != nil {
			return err
		}
		syncServer(ctx, env, *data, db)
		if *asJSON {
			return writeJSON(env.Stdout, d)
		}
		fmt.Fprintf(env.Stdout, "added domain %s\n", d.Name)
		return nil
	case "rm":
		if len(pos) != 2 {
			return usagef("usage: switchboard domain rm NAME")
		}
		d, err := db.Domain(ctx, pos[1])
		if errors.Is(err, store.ErrNotFound) {
			return usagef("unknown domain %s: see `switchboard domain list`", pos[1])
		}
		if err != nil {
			return err
		}
		if d.Name == def {
			return usagef("%s is the default domain and cannot be removed", d.Name)
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
	return usagef("unknown command `domain %s`: use add, list or rm", sub)
}
