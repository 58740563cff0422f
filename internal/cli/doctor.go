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
	"github.com/switchboard-pbx/switchboard/internal/doctor"
	storeopen "github.com/switchboard-pbx/switchboard/internal/store/open"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

const doctorUsage = `
Usage: switchboard doctor EXT [--domain D] [--json]
       switchboard doctor call FROM TO [--domain D] [--json]
       switchboard doctor call --id ID [--json]

Explains why an extension cannot register or be called, with the evidence
and the fix: the directory (exists, enabled, password, max registrations),
the listeners (serve running, ports answering, host firewall), its current
registrations, the history of its REGISTER attempts (wrong password, auth
user, domain, ACL, ban, interval, expiry), reachability (OPTIONS qualify,
INVITE timeouts) and its last failed calls.

'doctor call FROM TO' explains why a call from FROM to TO fails or would
fail: the caller's side (exists, authenticates, allowed), the callee's side
and the last such call's SIP status and cause; when the media relay carried
it, which direction of audio never arrived or stopped, from which address,
and why (NAT, SIP ALG, a browser's DTLS). 'doctor call --id ID' explains
the recorded call ID (the number 'switchboard calls' lists, or a SIP
Call-ID) instead of the newest between two extensions.

The first line is the verdict. It works whether or not serve runs (it reads
the data directory) and says which. Exit status: 0 when the extension is
registered and reachable (the call would work), 1 otherwise.

Causes and their fixes: see "Doctor causes" in the README.`

// Doctor runs `switchboard doctor EXT` and `switchboard doctor call FROM TO`.
func Doctor(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	data := fs.String("data", defaultData(), "data directory (env SWITCHBOARD_DATA)")
	dbURL := dbFlag(fs)
	domain := fs.String("domain", "", "the extension's domain (default: the server's default domain)")
	asJSON := fs.Bool("json", false, "print JSON")
	callID := fs.String("id", "", "with `doctor call`: the recorded call to explain (its number in `switchboard calls`, or its SIP Call-ID)")
	pos, done, err := parseHelp(env, fs, args, doctorUsage)
	if done || err != nil {
		return err
	}
	call := len(pos) > 0 && pos[0] == "call"
	byID := *callID != ""
	switch {
	case byID && !call:
		return usagef("--id goes with `doctor call`, e.g. switchboard doctor call --id 12")
	case byID && len(pos) != 1:
		return usagef("`switchboard doctor call --id ID` takes no extension numbers: the call record names them")
	case call && !byID && len(pos) != 3:
		return usagef("`switchboard doctor call` takes two extension numbers, the caller and the callee, e.g. switchboard doctor call 2001 2002")
	case !call && len(pos) != 1:
		return usagef("`switchboard doctor` takes one extension number, e.g. switchboard doctor 2002 (or: switchboard doctor call 2001 2002)")
	}
	nums := pos
	if call {
		nums = pos[1:]
	}
	for _, n := range nums {
		if err := validNumber(n); err != nil {
			return err
		}
	}
	db, err := openExisting(ctx, *data, *dbURL)
	var ue *UsageError
	if err != nil && !errors.As(err, &ue) {
		if t, terr := target(*data, *dbURL); terr == nil && t.Kind == storeopen.Postgres {
			// Storage is down: the doctor can read nothing, and the server
			// cannot save registrations (REGISTERs get 503).
			return fmt.Errorf("%s: the database cannot be read, so switchboard cannot save registrations (REGISTERs get 503 with Retry-After) until PostgreSQL answers: %w", cause.StoreUnavailable, err)
		}
		return err
	}
	if err != nil {
		return err
	}
	defer db.Close()
	dom, err := resolveDomain(ctx, db, *domain)
	if err != nil {
		return err
	}
	// The file system check is SQLite's: PostgreSQL's disk is the server's.
	_, onFile := db.(*sqlite.DB)
	r := &doctor.Reader{DB: db, Serve: serveState(ctx, *data, db), Probe: true, Firewall: true, Disk: onFile,
		Calls: doctor.CallsFromDB(db), Bans: doctor.BansFromDB(db), Loc: time.Local}
	if *data != defaultData() {
		r.DataDir = *data
	}
	opts := doctor.TextOptions{UTF8: doctor.LocaleUTF8(os.Getenv), Color: env.TTY && os.Getenv("NO_COLOR") == ""}
	if call {
		var in doctor.CallInputs
		if byID {
			rec, err := callRecord(ctx, db, *callID)
			if err != nil {
				return err
			}
			in, err = r.GatherCallID(ctx, rec.ID)
			if err != nil {
				return err
			}
		} else if in, err = r.GatherCall(ctx, nums[0], nums[1], dom); err != nil {
			return err
		}
		rep := doctor.DiagnoseCall(ctx, in)
		if *asJSON {
			err = writeJSON(env.Stdout, rep)
		} else {
			err = doctor.WriteCallText(env.Stdout, rep, opts)
		}
		if err == nil && !rep.WouldWork {
			return &ExitCode{Code: 1}
		}
		return err
	}
	in, err := r.Gather(ctx, nums[0], dom)
	if err != nil {
		return err
	}
	rep := doctor.Diagnose(ctx, in)
	rep.LastSIP = lastSIP(ctx, *data, in)
	if *asJSON {
		err = writeJSON(env.Stdout, rep)
	} else {
		err = doctor.WriteText(env.Stdout, rep, opts)
		if err == nil && len(rep.LastSIP) > 0 {
			err = writeLastSIP(env.Stdout, rep.LastSIP)
		}
	}
	if err == nil && !rep.Callable {
		return &ExitCode{Code: 1}
	}
	return err
}

// serveState reads whether serve holds the data directory and the
// listeners it published (the meta "runtime" record).
func serveState(ctx context.Context, dir string, db storeopen.Backend) doctor.Serve {
	freshen(ctx, dir)
	rt, running, ok := runtimeOf(ctx, dir, db)
	s := doctor.Serve{Running: running}
	if running {
		s.PID = rt.PID
	}
	if !ok {
		return s
	}
	s.Known, s.StartedAt = true, rt.StartedAt
	for _, l := range rt.Listeners {
		s.Listeners = append(s.Listeners, doctor.Listener{Proto: strings.ToLower(l.Proto), Addr: l.Addr})
	}
	return s
}
