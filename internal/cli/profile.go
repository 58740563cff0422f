package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/control"
	"github.com/switchboard-pbx/switchboard/internal/security"
	storeopen "github.com/switchboard-pbx/switchboard/internal/store/open"
	"github.com/switchboard-pbx/switchboard/internal/view"
)

const profileUsage = `Usage: switchboard profile list | show [NAME] | set [NAME] [flags] [--json]

The SIP profile (FreeSWITCH's "internal"): its listeners, default domain,
access-control lists and counts, like 'sofia status profile internal'.

  switchboard profile show internal
  switchboard profile set internal --register-acl office --inbound-acl office
  switchboard profile set internal --trusted-acl sbc
  switchboard profile set internal --register-acl ""      (no register ACL)

--register-acl  only addresses this ACL allows may register (others: 403)
--inbound-acl   only addresses this ACL allows may place calls (others: 403)
--trusted-acl   networks exempt from rate limits and brute-force bans
                (load generators, SBCs in front of switchboard); default
                loopback; --trusted-acl "" trusts no address, loopback included
Changes apply to a running server at once. Ban thresholds and the rate
limit are serve flags (--ban-after, --ban-window, --ban-for, --rate-limit).`

// profileShowView is the JSON shape of `profile show` (stable names).
type (
	profileShowView = view.ProfileShow
	sipListenerView = view.SIPListener
	aclBrief        = view.ACLBrief
)

// Profile runs `switchboard profile ...`.
func Profile(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("profile", flag.ContinueOnError)
	data := fs.String("data", defaultData(), "data directory (env SWITCHBOARD_DATA)")
	dbURL := dbFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	regACL := fs.String("register-acl", "", "ACL of addresses that may register (\"\" = any)")
	inbACL := fs.String("inbound-acl", "", "ACL of addresses that may place calls (\"\" = any)")
	trustACL := fs.String("trusted-acl", "", "ACL of networks exempt from rate limits and bans (\"\" = none)")
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) || (err == nil && len(pos) == 0) {
		helpText(env.Stdout, fs, profileUsage)
		return nil
	}
	if err != nil {
		return err
	}
	cmd, err := subcommand("profile", profileAlias(pos[0]), "list", "show", "set")
	if err != nil {
		return err
	}
	rest := pos[1:]
	setFlags := isSet(fs, "register-acl") || isSet(fs, "inbound-acl") || isSet(fs, "trusted-acl")
	if setFlags && cmd != "set" {
		return usagef("--register-acl, --inbound-acl and --trusted-acl go with `switchboard profile set`")
	}
	if len(rest) > 1 {
		return usagef("`switchboard profile %s` takes at most one profile name (internal)", cmd)
	}
	name := security.DefaultProfile
	if len(rest) == 1 {
		name = rest[0]
	}
	db, err := openFor(ctx, env, *data, *dbURL, cmd == "set")
	if err != nil {
		return err
	}
	defer db.Close()
	st := security.NewStore(db)
	if cmd != "list" {
		if _, err := st.Profile(ctx, name); errors.Is(err, security.ErrNoProfile) {
			return usagef("there is no profile %s: switchboard runs one profile, internal (see switchboard profile list)", name)
		} else if err != nil {
			return err
		}
	}
	switch cmd {
	case "list":
		if len(rest) > 0 {
			return usagef("`switchboard profile list` takes no arguments")
		}
		ps, err := st.Profiles(ctx)
		if err != nil {
			return err
		}
		state := "STOPPED"
		if running, _ := control.Running(*data); running {
			state = "RUNNING"
		}
		type row struct {
			security.Profile
			State string `json:"state"`
		}
		rows := []row{}
		for _, p := range ps {
			rows = append(rows, row{p, state})
		}
		if *asJSON {
			return writeJSON(env.Stdout, rows)
		}
		tw := table(env.Stdout)
		fmt.Fprintln(tw, "NAME\tSTATE\tREGISTER ACL\tINBOUND ACL\tTRUSTED ACL")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.State, dash(r.RegisterACL), dash(r.InboundACL), dash(r.TrustedACL))
		}
		return tw.Flush()
	case "show":
		return profileShow(ctx, env, db, st, *data, name, *asJSON)
	case "set":
		if !setFlags {
			return usagef("nothing to change: give --register-acl, --inbound-acl or --trusted-acl (\"\" clears one)")
		}
		p, err := st.Profile(ctx, name)
		if err != nil {
			return err
		}
		before := p
		for _, f := range []struct {
			flag string
			val  *string
			dst  *string
		}{{"register-acl", regACL, &p.RegisterACL}, {"inbound-acl", inbACL, &p.InboundACL}, {"trusted-acl", trustACL, &p.TrustedACL}} {
			if !isSet(fs, f.flag) {
				continue
			}
			v := strings.TrimSpace(*f.val)
			if err := checkACLRef(ctx, db, "--"+f.flag, v); err != nil {
				return err
			}
			*f.dst = v
		}
		if err := st.SetProfile(ctx, p); err != nil {
			return err
		}
		journalAdmin(ctx, env, db, cause.ProfileChanged, "", profileChange(before, p))
		syncServer(ctx, env, *data, db)
		if *asJSON {
			return profileShow(ctx, env, db, st, *data, name, true)
		}
		fmt.Fprintf(env.Stdout, "profile %s: register acl %s, inbound acl %s, trusted acl %s\n",
			name, dash(p.RegisterACL), dash(p.InboundACL), dash(p.TrustedACL))
		return nil
	}
	return usagef("unknown command `profile %s`: use list, show or set (see switchboard profile --help)", cmd)
}

func profileShow(ctx context.Context, env Env, db storeopen.Backend, st *security.Store, data, name string, asJSON bool) error {
	rt, running, _ := runtimeOf(ctx, data, db)
	dom, err := defaultDomain(ctx, db)
	if err != nil {
		return err
	}
	v, err := view.ProfileShowOf(ctx, db, name, dom, rt, running)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(env.Stdout, v)
	}
	tw := table(env.Stdout)
	state := v.State
	if running {
		state = fmt.Sprintf("RUNNING (pid %d)", v.PID)
	} else {
		state += " (start it with: switchboard serve --data " + data + ")"
	}
	fmt.Fprintf(tw, "Name\t%s\n", v.Name)
	fmt.Fprintf(tw, "State\t%s\n", state)
	fmt.Fprintf(tw, "Domain\t%s\n", v.Domain)
	for i, l := range v.Listeners {
		label := ""
		if i == 0 {
			label = "Listeners"
		}
		fmt.Fprintf(tw, "%s\tsip:switchboard@%s (%s)\n", label, l.Address, strings.ToUpper(l.Protocol))
	}
	aclLine := func(n string) string {
		if n == "" {
			return "-"
		}
		if b, ok := v.ACLs[n]; ok {
			return fmt.Sprintf("%s (default %s, %d nodes)", n, b.Default, b.Nodes)
		}
		return n + " (missing: it denies everything)"
	}
	fmt.Fprintf(tw, "Register ACL\t%s\n", aclLine(v.RegisterACL))
	fmt.Fprintf(tw, "Inbound ACL\t%s\n", aclLine(v.InboundACL))
	fmt.Fprintf(tw, "Trusted ACL\t%s\n", aclLine(v.TrustedACL))
	if s := v.Security; s != nil {
		fmt.Fprintf(tw, "Brute force\tban after %d failed authentications within %s, for %s\n", s.BanAfter,
			time.Duration(s.BanWindowS*float64(time.Second)), time.Duration(s.BanForS*float64(time.Second)))
		if s.BanAfterReg > 0 {
			fmt.Fprintf(tw, "Registered addresses\tban after %d failed authentications for extensions not registered from there; their own phones' failures never count\n", s.BanAfterReg)
		}
		if s.RateLimit > 0 {
			fmt.Fprintf(tw, "Rate limit\t%g messages/s per address, bursts of %d\n", s.RateLimit, s.RateBurst)
		} else {
			fmt.Fprintf(tw, "Rate limit\toff\n")
		}
	}
	fmt.Fprintf(tw, "Registrations\t%d\n", v.Registrations)
	fmt.Fprintf(tw, "Extensions\t%d (in %d domains)\n", v.Extensions, v.Domains)
	fmt.Fprintf(tw, "Active calls\t%d\n", v.ActiveCalls)
	fmt.Fprintf(tw, "Active bans\t%d\n", v.ActiveBans)
	if err := tw.Flush(); err != nil {
		return err
	}
	return printNodes(env.Stdout, v.Nodes)
}

// profileAlias is profile's own alias: `profile status` is `profile show`, as
// in sofia status profile internal.
func profileAlias(sub string) string {
	if sub == "status" {
		return "show"
	}
	return sub
}

// profileChange describes a profile edit for the journal, e.g. "profile
// internal: inbound acl office -> none".
func profileChange(before, after security.Profile) string {
	var ch []string
	for _, f := range []struct{ what, old, new string }{{"register acl", before.RegisterACL, after.RegisterACL},
		{"inbound acl", before.InboundACL, after.InboundACL}, {"trusted acl", before.TrustedACL, after.TrustedACL}} {
		if f.old != f.new {
			ch = append(ch, f.what+" "+noneIfEmpty(f.old)+" -> "+noneIfEmpty(f.new))
		}
	}
	if len(ch) == 0 {
		ch = append(ch, "unchanged")
	}
	return "profile " + after.Name + ": " + strings.Join(ch, ", ")
}

func noneIfEmpty(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
