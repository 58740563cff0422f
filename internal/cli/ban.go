package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/security"
	"github.com/switchboard-pbx/switchboard/internal/view"
)

const banUsage = `Usage: switchboard ban list | rm IP | add IP [--for 1h] [--reason TEXT] [--json]

Brute-force protection: after --ban-after failed authentications (or
scanner messages) from one address within --ban-window, the server bans the
address for --ban-for: its packets are dropped silently. Bans survive
restarts. Trusted networks (profile --trusted-acl) are never banned. An
address with a live registration is never banned for the failures of the
extensions registered from it, but guessing other extensions' passwords
from there bans it after --ban-after-registered (default 4 x --ban-after).

  switchboard ban list               the bans in force
  switchboard ban rm 203.0.113.7     lift a ban at once
  switchboard ban add 203.0.113.7 --for 24h --reason "toll fraud attempts"
  switchboard ban add 203.0.113.7 --for 0    (permanent)`

// banView is the JSON shape of one ban (stable field names).
type banView = view.Ban

// Ban runs `switchboard ban ...`.
func Ban(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("ban", flag.ContinueOnError)
	data := fs.String("data", defaultData(), "data directory (env SWITCHBOARD_DATA)")
	dbURL := dbFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	dur := fs.Duration("for", time.Hour, "ban add: how long (0 = permanent)")
	reason := fs.String("reason", "banned by the operator", "ban add: why")
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) || (err == nil && len(pos) == 0) {
		helpText(env.Stdout, fs, banUsage)
		return nil
	}
	if err != nil {
		return err
	}
	cmd, err := subcommand("ban", banAlias(pos[0]), "list", "rm", "add")
	if err != nil {
		return err
	}
	rest := pos[1:]
	if (isSet(fs, "for") || isSet(fs, "reason")) && cmd != "add" {
		return usagef("--for and --reason go with `switchboard ban add`")
	}
	db, err := openFor(ctx, env, *data, *dbURL, cmd == "add")
	if err != nil {
		return err
	}
	defer db.Close()
	st := security.NewStore(db)
	now := time.Now()
	switch cmd {
	case "list":
		if len(rest) > 0 {
			return usagef("`switchboard ban list` takes no arguments")
		}
		bans, err := st.Bans(ctx, now)
		if err != nil {
			return err
		}
		vs := []banView{}
		for _, b := range bans {
			v := banView{IP: b.IP.String(), Reason: b.Reason, Failures: b.Failures, Since: b.Since.UTC().Format(time.RFC3339),
				Permanent: b.Until.IsZero()}
			if !v.Permanent {
				v.Until = b.Until.UTC().Format(time.RFC3339)
				v.ExpiresInS = int64(b.Until.Sub(now).Round(time.Second) / time.Second)
			}
			vs = append(vs, v)
		}
		if *asJSON {
			return writeJSON(env.Stdout, vs)
		}
		if len(vs) == 0 {
			fmt.Fprintln(env.Stdout, "no bans in force")
			return nil
		}
		tw := table(env.Stdout)
		fmt.Fprintln(tw, "IP\tSINCE\tEXPIRES IN\tFAILURES\tREASON")
		for i, v := range vs {
			left := "never"
			if !v.Permanent {
				left = ago(time.Duration(v.ExpiresInS) * time.Second)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", v.IP, localTime(bans[i].Since), left, v.Failures, v.Reason)
		}
		return tw.Flush()
	case "rm":
		if len(rest) != 1 {
			return usagef("usage: switchboard ban rm IP, e.g. switchboard ban rm 203.0.113.7")
		}
		ip, err := parseBanIP(rest[0])
		if err != nil {
			return err
		}
		was, _ := st.Ban(ctx, ip, now)
		if err := st.RemoveBan(ctx, ip, now); errors.Is(err, security.ErrNoBan) {
			return usagef("%s is not banned: see the bans in force with `switchboard ban list`", ip)
		} else if err != nil {
			return err
		}
		journalAdmin(ctx, env, db, cause.BanLifted, ip.String(), "ban of "+ip.String()+banTerms(was)+" lifted")
		syncServer(ctx, env, *data, db)
		fmt.Fprintf(env.Stdout, "lifted the ban of %s\n", ip)
		return nil
	case "add":
		if len(rest) != 1 {
			return usagef("usage: switchboard ban add IP [--for 1h] [--reason TEXT]")
		}
		ip, err := parseBanIP(rest[0])
		if err != nil {
			return err
		}
		if *dur < 0 {
			return usagef("--for %s: give a duration such as 1h, or 0 for a permanent ban", *dur)
		}
		if strings.ContainsAny(*reason, "\r\n") {
			return usagef("--reason must be one line")
		}
		if p, err := st.Profile(ctx, security.DefaultProfile); err == nil && p.TrustedACL != "" {
			if l, err := st.ACL(ctx, p.TrustedACL); err == nil {
				if ok, _ := l.Decide(ip); ok {
					return usagef("%s is in the trusted acl %s, which is exempt from bans: remove it from that acl first (switchboard acl show %s)",
						ip, l.Name, l.Name)
				}
			}
		}
		b := acl.Ban{IP: ip, Reason: *reason, Since: now}
		if *dur > 0 {
			b.Until = now.Add(*dur)
		}
		if err := st.PutBan(ctx, b); err != nil {
			return err
		}
		journalAdmin(ctx, env, db, cause.BanAdded, ip.String(), "ban of "+ip.String()+banTerms(b)+" added")
		syncServer(ctx, env, *data, db)
		if b.Until.IsZero() {
			fmt.Fprintf(env.Stdout, "banned %s permanently\n", ip)
		} else {
			fmt.Fprintf(env.Stdout, "banned %s until %s\n", ip, localTime(b.Until))
		}
		return nil
	}
	return usagef("unknown command `ban %s`: use list, rm or add (see switchboard ban --help)", cmd)
}

func parseBanIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, usagef("%q is not an IP address (e.g. 203.0.113.7 or 2001:db8::7)", s)
	}
	return ip.Unmap(), nil
}

// banAlias is ban's own alias: `ban lift IP` is `ban rm IP`.
func banAlias(sub string) string {
	if sub == "lift" {
		return "rm"
	}
	return sub
}

// banTerms describes a ban for the journal: " (until 2026-01-15T15:01:00Z:
// wrong password)", or "" for the zero Ban.
func banTerms(b acl.Ban) string {
	if !b.IP.IsValid() {
		return ""
	}
	until := "permanent"
	if !b.Until.IsZero() {
		until = "until " + b.Until.UTC().Format(time.RFC3339)
	}
	if b.Reason == "" {
		return " (" + until + ")"
	}
	return " (" + until + ": " + b.Reason + ")"
}
