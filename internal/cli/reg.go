package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	storeopen "github.com/switchboard-pbx/switchboard/internal/store/open"

	"github.com/switchboard-pbx/switchboard/internal/control"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/view"
)

// regView is the JSON shape of one registration (stable field names).
type regView = view.Registration

func toRegView(b store.Binding, now time.Time) regView { return view.RegistrationOf(b, now) }

func countLive(bs []store.Binding) int {
	n := 0
	now := time.Now()
	for _, b := range bs {
		if b.ExpiresAt.After(now) {
			n++
		}
	}
	return n
}

// Reg runs `switchboard reg [EXT]`.
func Reg(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("reg", flag.ContinueOnError)
	data := fs.String("data", defaultData(), "data directory (env SWITCHBOARD_DATA)")
	dbURL := dbFlag(fs)
	domain := fs.String("domain", "", "only this domain")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		helpText(env.Stdout, fs, `Usage: switchboard reg [EXT] [--domain D] [--json]
       switchboard reg rm EXT [CONTACT] [--domain D]
       switchboard reg flush [--domain D]

Lists current registrations, like 'sofia status profile internal reg':
user@domain, contact, where the REGISTER came from (source ip:port and
transport), user agent, Call-ID, expiry and seconds left, auth user and
realm, and OPTIONS ping status.

reg rm drops an extension's registrations (or the one with CONTACT), reg
flush every registration (of D with --domain), like FreeSWITCH's
flush_inbound_reg: nothing is sent to the phones, each registers again at
its next refresh; the journal records who removed them.`)
		return nil
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 && subAlias(pos[0]) == "list" { // reg list [EXT] = reg [EXT]
		pos = pos[1:]
	} else if len(pos) > 0 {
		switch subAlias(pos[0]) {
		case "rm":
			if len(pos) < 2 || len(pos) > 3 {
				return usagef("usage: switchboard reg rm EXT [CONTACT] [--domain D], e.g. switchboard reg rm 2002")
			}
			if err := validNumber(pos[1]); err != nil {
				return err
			}
			contact := ""
			if len(pos) == 3 {
				contact = pos[2]
			}
			return regRemove(ctx, env, *data, *dbURL, *domain, pos[1], contact, *asJSON)
		case "flush":
			if len(pos) != 1 {
				return usagef("usage: switchboard reg flush [--domain D] (drops every registration, of D only with --domain)")
			}
			return regRemove(ctx, env, *data, *dbURL, *domain, "", "", *asJSON)
		}
	}
	if len(pos) > 1 {
		return usagef("`switchboard reg` takes at most one extension number, e.g. switchboard reg 2002")
	}
	db, err := openExisting(ctx, *data, *dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	dom := ""
	if *domain != "" {
		if dom, err = resolveDomain(ctx, db, *domain); err != nil {
			return err
		}
	}
	num := ""
	if len(pos) == 1 {
		num = pos[0]
		if err := validNumber(num); err != nil {
			return err
		}
	}
	freshen(ctx, *data)
	bs, err := db.BindingsOf(ctx, dom, num)
	if err != nil {
		return err
	}
	now := time.Now()
	running, _ := control.Running(*data)
	views := []regView{}
	for _, b := range bs {
		if !b.ExpiresAt.After(now) {
			continue
		}
		v := toRegView(b, now)
		switch strings.ToUpper(v.Transport) {
		case "TCP", "TLS", "WS", "WSS":
			v.Connection = "open"
			if !running || v.PingStatus == "unreachable" {
				v.Connection = "closed"
			}
		}
		views = append(views, v)
	}
	if *asJSON {
		return writeJSON(env.Stdout, views)
	}
	if len(views) == 0 {
		if num != "" {
			fmt.Fprintf(env.Stdout, "%s is not registered (ask why: switchboard doctor %s)\n", num, num)
		} else {
			fmt.Fprintln(env.Stdout, "no registrations")
		}
	}
	for _, v := range views {
		status := "Registered(" + v.Transport + ")"
		ping, rtt := v.PingStatus, "-"
		if ping == "" {
			ping = "-"
		}
		if v.Pinged && v.PingStatus == "reachable" {
			rtt = fmt.Sprintf("%.2f ms", v.PingRTTms)
		}
		tw := table(env.Stdout)
		for _, kv := range [][2]string{{"User", v.User}, {"Contact", v.Contact}, {"Agent", v.UserAgent},
			{"Status", fmt.Sprintf("%s EXP(%s) EXPSECS(%d)", status, b2l(v.ExpiresAt), v.ExpiresIn)},
			{"Ping-Status", ping}, {"Ping-Time", rtt}, {"Source", v.Source}, {"Connection", orDash(v.Connection)},
			{"Call-ID", v.CallID}, {"Auth-User", v.AuthUser}, {"Auth-Realm", v.AuthRealm}, {"Node", v.Node}} {
			if kv[0] == "Node" && kv[1] == "" {
				continue
			}
			fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
		}
		tw.Flush()
		fmt.Fprintln(env.Stdout)
	}
	fmt.Fprintf(env.Stdout, "Total items returned: %d\n", len(views))
	if !running {
		fmt.Fprintln(env.Stdout, "(switchboard serve is not running: these are the bindings saved at its last stop)")
	}
	return nil
}

func b2l(rfc string) string {
	t, err := time.Parse(time.RFC3339, rfc)
	if err != nil {
		return rfc
	}
	return localTime(t)
}

// statusView is the JSON shape of `switchboard status`.
type (
	statusView   = view.Status
	profileView  = view.Profile
	listenerView = view.Listener
)

// Status runs `switchboard status`.
func Status(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	data := fs.String("data", defaultData(), "data directory (env SWITCHBOARD_DATA)")
	dbURL := dbFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, done, err := parseHelp(env, fs, args, "Usage: switchboard status [--json]\n\nShows whether the server runs, its profiles and listeners, counts and uptime.")
	if done || err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("`switchboard status` takes no arguments")
	}
	db, err := openExisting(ctx, *data, *dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	freshen(ctx, *data)
	bs, err := db.BindingsOf(ctx, "", "")
	if err != nil {
		return err
	}
	rt, running, _ := runtimeOf(ctx, *data, db)
	pid := rt.PID
	v, err := view.StatusOf(ctx, db, *data, rt, running, countLive(bs))
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(env.Stdout, v)
	}
	tw := table(env.Stdout)
	state := "stopped (start it with: switchboard serve --data " + *data + ")"
	if running {
		state = fmt.Sprintf("running (pid %d, up %s)", pid, ago(time.Duration(v.UptimeS)*time.Second))
	}
	fmt.Fprintf(tw, "switchboard:\t%s\n", state)
	fmt.Fprintf(tw, "version:\t%s\n", v.Version)
	fmt.Fprintf(tw, "data:\t%s\n", v.DataDir)
	fmt.Fprintf(tw, "database:\t%s\n", v.Database)
	fmt.Fprintf(tw, "default domain:\t%s\n", v.DefaultDomain)
	fmt.Fprintf(tw, "domains:\t%d\n", v.Domains)
	fmt.Fprintf(tw, "extensions:\t%d\n", v.Extensions)
	fmt.Fprintf(tw, "registrations:\t%d\n", v.Registrations)
	if m := v.MediaRelay; m != nil {
		if m.Mode == "never" {
			fmt.Fprintf(tw, "media relay:\tnever (media flow between the phones)\n")
		} else {
			fmt.Fprintf(tw, "media relay:\t%s, UDP ports %s (%d in use), SDP address %s\n", m.Mode, m.RTPPorts, m.PortsInUse, m.MediaIP)
		}
	}
	tw.Flush()
	fmt.Fprintln(env.Stdout)
	tw = table(env.Stdout)
	fmt.Fprintln(tw, "PROFILE\tPROTOCOL\tADDRESS\tSTATE")
	for _, p := range v.Profiles {
		if len(p.Listeners) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t%s\n", p.Name, p.State)
		}
		for _, l := range p.Listeners {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, l.Protocol, l.Address, l.State)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printNodes(env.Stdout, v.Nodes)
}

// regRemove runs `reg rm` and `reg flush`: it drops the matching live
// registrations (through the running server, which forgets them at once,
// or in the database when none runs) and journals who did it. Nothing is
// sent to the phones.
func regRemove(ctx context.Context, env Env, data, dbURL, domainFlag, ext, contact string, asJSON bool) error {
	db, err := openExisting(ctx, data, dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	dom := ""
	if domainFlag != "" || ext != "" {
		if dom, err = resolveDomain(ctx, db, domainFlag); err != nil {
			return err
		}
	}
	var gone []store.Binding
	if c, err := control.Dial(data); err == nil {
		defer c.Close()
		gone, err = c.RemoveRegistrations(ctx, control.RemoveRequest{Domain: dom, Extension: ext, Contact: contact,
			SudoUser: os.Getenv("SUDO_USER")})
		if err != nil {
			return fmt.Errorf("the running server could not remove the registrations: %w", err)
		}
	} else if gone, err = removeStored(ctx, db, dom, ext, contact); err != nil {
		return err
	}
	if asJSON {
		views := []regView{}
		now := time.Now()
		for _, b := range gone {
			views = append(views, toRegView(b, now))
		}
		return writeJSON(env.Stdout, views)
	}
	switch {
	case len(gone) == 0 && ext != "" && contact != "":
		return usagef("%s has no registration with contact %s: see switchboard reg %s", ext, contact, ext)
	case len(gone) == 0 && ext != "":
		fmt.Fprintf(env.Stdout, "%s is not registered: nothing to remove\n", ext)
	case len(gone) == 0:
		fmt.Fprintln(env.Stdout, "no registrations: nothing to remove")
	default:
		for _, b := range gone {
			fmt.Fprintf(env.Stdout, "removed %s@%s %s (from %s)\n", b.Extension, b.Domain, b.Contact, b.Source)
		}
		fmt.Fprintln(env.Stdout, "nothing was sent to the phones: each registers again at its next refresh (reboot one to make it re-register now)")
	}
	return nil
}

// removeStored drops matching registrations from the database of a
// stopped server and journals it.
func removeStored(ctx context.Context, db storeopen.Backend, dom, ext, contact string) ([]store.Binding, error) {
	bs, err := db.BindingsOf(ctx, dom, ext)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var gone []store.Binding
	var keys []store.BindingKey
	var events []journal.Event
	by := control.UserName(os.Getuid(), os.Getenv("SUDO_USER"))
	for _, b := range bs {
		if !b.ExpiresAt.After(now) || (contact != "" && b.Contact != contact) {
			continue
		}
		gone = append(gone, b)
		keys = append(keys, b.Key())
		events = append(events, journal.Event{Time: now, Kind: journal.KindBinding, Cause: cause.RemovedByAdmin,
			Extension: b.Extension, Domain: b.Domain, Source: b.Source, Transport: b.Transport, UserAgent: b.UserAgent,
			CallID: b.CallID, AuthUser: b.AuthUser, Realm: b.Realm,
			Detail: "contact " + b.Contact + " removed by " + by + " (server stopped); the phone registers again at its next refresh"})
	}
	if len(keys) == 0 {
		return nil, nil
	}
	if err := db.ApplyBindings(ctx, nil, keys); err != nil {
		return nil, err
	}
	return gone, journal.Insert(ctx, db, events)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
