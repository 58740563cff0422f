package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/control"
	"github.com/switchboard-pbx/switchboard/internal/store"
	storeopen "github.com/switchboard-pbx/switchboard/internal/store/open"
	"github.com/switchboard-pbx/switchboard/internal/view"
)

const callsUsage = `
Usage: switchboard calls [--active] [--failed] [--ext N] [--from N] [--to N] [--domain D] [--limit N] [--json]
       switchboard calls show ID [--json]
       switchboard calls hangup ID

Lists recent call attempts, newest first: who called whom, when, how long
they talked, the final SIP status sent to the caller and the hangup cause
(FreeSWITCH names: NORMAL_CLEARING, USER_NOT_REGISTERED, USER_BUSY,
NO_ANSWER, UNALLOCATED_NUMBER, CALL_REJECTED, ORIGINATOR_CANCEL,
RECOVERY_ON_TIMER_EXPIRE, SYSTEM_SHUTDOWN), and who hung up.

--active lists the calls in progress (ringing or up), with the RTP packets
the media relay received so far from each side when it carries the call.
'calls show ID' shows one call with every phone (binding) it rang and what
each answered, and for a relayed call each leg's media: packets and bytes
in and out, first packet, loss, jitter, MOS, the address in its SDP, where
its SIP and its RTP came from, stray packets; ID is the number in the first
column, or the call's SIP Call-ID. 'calls hangup ID'
ends an answered call: the server sends a BYE to both phones and records
the call as hung up by the admin (who, in its detail).

Only authenticated calls are recorded; refused credentials are in the
journal (and explained by 'switchboard doctor').`

// callView is the JSON shape of a call record (stable field names).
type (
	callView   = view.Call
	branchView = view.Branch
)

func stamp(t time.Time) string { return view.Stamp(t) }

func callViewOf(r calls.Record, now time.Time) callView { return view.CallOf(r, now) }

// Calls runs `switchboard calls` and `switchboard calls show ID`.
func Calls(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("calls", flag.ContinueOnError)
	data := fs.String("data", defaultData(), "data directory (env SWITCHBOARD_DATA)")
	dbURL := dbFlag(fs)
	active := fs.Bool("active", false, "only calls in progress (ringing or up)")
	failed := fs.Bool("failed", false, "only ended calls whose cause is not NORMAL_CLEARING")
	ext := fs.String("ext", "", "only calls from or to this extension")
	from := fs.String("from", "", "only calls from this extension")
	to := fs.String("to", "", "only calls to this number")
	domain := fs.String("domain", "", "only calls in this domain")
	limit := fs.Int("limit", 50, "at most this many calls")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, done, err := parseHelp(env, fs, args, callsUsage)
	if done || err != nil {
		return err
	}
	if len(pos) > 0 {
		pos[0] = subAlias(pos[0])
		if pos[0] == "list" { // calls list = calls
			pos = pos[1:]
		}
	}
	show := len(pos) > 0 && pos[0] == "show"
	hangup := len(pos) > 0 && pos[0] == "hangup"
	switch {
	case show && len(pos) != 2:
		return usagef("`switchboard calls show` takes one call id, e.g. switchboard calls show 12 (list ids with: switchboard calls)")
	case hangup && len(pos) != 2:
		return usagef("`switchboard calls hangup` takes one call id, e.g. switchboard calls hangup 12 (list calls in progress with: switchboard calls --active)")
	case !show && !hangup && len(pos) > 0:
		return usagef("unknown argument %q: use `switchboard calls [--active] [--json]` or `switchboard calls show ID`", pos[0])
	case *limit < 1 || *limit > 100000:
		return usagef("--limit %d is out of range: give 1 to 100000, e.g. --limit 100", *limit)
	}
	for _, n := range []string{*ext, *from, *to} {
		if n != "" {
			if err := validNumber(n); err != nil {
				return err
			}
		}
	}
	db, err := openExisting(ctx, *data, *dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	freshen(ctx, *data)
	if show {
		return callShow(ctx, env, db, *data, pos[1], *asJSON)
	}
	if hangup {
		return callHangup(ctx, env, db, *data, pos[1], *asJSON)
	}
	dom := ""
	if *domain != "" {
		if dom, err = resolveDomain(ctx, db, *domain); err != nil {
			return err
		}
	}
	recs, err := calls.Query(ctx, db, calls.Filter{From: *from, To: *to, Ext: *ext, Domain: dom,
		Active: *active, Failed: *failed, Limit: *limit})
	if err != nil {
		return err
	}
	now := time.Now()
	views := make([]callView, 0, len(recs))
	var live map[string][]store.MediaLeg
	if *active {
		live = liveMedia(ctx, *data, recs)
	}
	for _, r := range recs {
		if legs, ok := live[r.CallID]; ok && r.Active() {
			r.Media = legs
		}
		views = append(views, callViewOf(r, now))
	}
	if *asJSON {
		return writeJSON(env.Stdout, views)
	}
	if len(views) == 0 {
		switch {
		case *active:
			fmt.Fprintln(env.Stdout, "no calls in progress")
		default:
			fmt.Fprintln(env.Stdout, "no calls recorded")
		}
		noteStopped(env.Stdout, *data, *active)
		return nil
	}
	color := env.TTY && os.Getenv("NO_COLOR") == ""
	tw := table(env.Stdout)
	head := "ID\tSTART\tFROM\tTO\tDURATION\tSTATUS\tCAUSE\tHANGUP"
	if *active {
		// Live counters: RTP packets the relay received from each side.
		head += "\tPKTS FROM CALLER\tPKTS FROM CALLEE"
	}
	fmt.Fprintln(tw, head)
	for i, v := range views {
		status, c := strconv.Itoa(v.SIPStatus), v.Cause
		if v.Active {
			status, c = v.State, "-"
		}
		if color && !v.Active && c != string(cause.NormalClearing) {
			c = "\x1b[31m" + c + "\x1b[0m"
		}
		hang := v.HangupBy
		if hang == "" {
			hang = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s", v.ID, localTime(recs[i].Start),
			v.From, v.To, clock(v.DurationS), status, c, hang)
		if *active {
			fmt.Fprintf(tw, "\t%s\t%s", packetsIn(v.Media, "caller"), packetsIn(v.Media, "callee"))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	noteStopped(env.Stdout, *data, *active)
	return nil
}

// noteStopped tells that active calls cannot be current without a server.
func noteStopped(w io.Writer, data string, active bool) {
	if running, _ := control.Running(data); !running && active {
		fmt.Fprintln(w, "(switchboard serve is not running: no call can be in progress)")
	}
}

// clock formats seconds as m:ss or h:mm:ss.
func clock(s float64) string {
	d := time.Duration(s * float64(time.Second)).Round(time.Second)
	h, m, sec := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, sec)
	}
	return fmt.Sprintf("%d:%02d", m, sec)
}

// callRecord finds a call record by its id (the number `calls` lists) or
// its SIP Call-ID.
func callRecord(ctx context.Context, db storeopen.Backend, id string) (calls.Record, error) {
	if n, err := strconv.ParseInt(id, 10, 64); err == nil && n > 0 {
		r, err := calls.Get(ctx, db, n)
		if errors.Is(err, calls.ErrNotFound) {
			return r, usagef("no call %d: list recent calls and their ids with `switchboard calls`", n)
		}
		return r, err
	}
	if strings.ContainsAny(id, " \t\r\n") || id == "" {
		return calls.Record{}, usagef("invalid call id %q: give the number from `switchboard calls` or a SIP Call-ID", id)
	}
	rs, err := calls.Query(ctx, db, calls.Filter{CallID: id, Limit: 1})
	if err != nil {
		return calls.Record{}, err
	}
	if len(rs) == 0 {
		return calls.Record{}, usagef("no call with id or Call-ID %q: list recent calls and their ids with `switchboard calls`", id)
	}
	return rs[0], nil
}

// callHangup runs `calls hangup ID`: the running server sends a BYE to
// both parties of the answered call.
func callHangup(ctx context.Context, env Env, db storeopen.Backend, data, id string, asJSON bool) error {
	rec, err := callRecord(ctx, db, id)
	if err != nil {
		return err
	}
	c, err := control.Dial(data)
	if err != nil {
		return usagef("switchboard serve is not running on %s: no call can be in progress", data)
	}
	defer c.Close()
	if !rec.Active() {
		return usagef("call %d (%s -> %s) already ended (%s): nothing to hang up", rec.ID, rec.From, rec.To, rec.Cause)
	}
	if rec.Answer.IsZero() {
		return usagef("call %d (%s -> %s) is still ringing: only answered calls are hung up (the caller can cancel it)", rec.ID, rec.From, rec.To)
	}
	res, err := c.Hangup(ctx, control.HangupRequest{CallID: rec.CallID, SudoUser: os.Getenv("SUDO_USER")})
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(env.Stdout, map[string]any{"id": rec.ID, "call_id": rec.CallID, "caller_status": res.Caller, "callee_status": res.Callee})
	}
	answer := func(st int) string {
		if st == 0 {
			return "no answer"
		}
		return "answered " + strconv.Itoa(st)
	}
	fmt.Fprintf(env.Stdout, "hung up call %d (%s -> %s): BYE to %s %s, to %s %s\n", rec.ID, rec.From, rec.To,
		rec.To, answer(res.Callee), rec.From, answer(res.Caller))
	return nil
}

func callShow(ctx context.Context, env Env, db storeopen.Backend, data, id string, asJSON bool) error {
	rec, err := callRecord(ctx, db, id)
	if err != nil {
		return err
	}
	live := false
	if legs, ok := liveMedia(ctx, data, []calls.Record{rec})[rec.CallID]; ok && rec.Active() {
		rec.Media, live = legs, true
	}
	v := callViewOf(rec, time.Now())
	if asJSON {
		return writeJSON(env.Stdout, v)
	}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	local := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Local().Format("2006-01-02 15:04:05.000")
	}
	status, c := strconv.Itoa(v.SIPStatus), v.Cause
	if v.Active {
		status, c = v.State, "- (in progress)"
	}
	tw := table(env.Stdout)
	for _, kv := range [][2]string{{"Call", strconv.FormatInt(v.ID, 10)}, {"Call-ID", v.CallID},
		{"From", v.From + "@" + v.Domain}, {"To", v.To + "@" + v.Domain},
		{"Caller", v.CallerSource + " (" + v.Transport + ") " + v.UserAgent},
		{"Start", local(rec.Start)}, {"Answer", local(rec.Answer)}, {"End", local(rec.End)},
		{"Duration", clock(v.DurationS)}, {"SIP status", status}, {"Cause", c},
		{"Hangup by", dash(v.HangupBy)}, {"Detail", dash(v.Detail)}} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout)
	if len(v.Branches) == 0 {
		fmt.Fprintln(env.Stdout, "No phone was rung.")
		return nil
	}

	tw = table(env.Stdout)
	fmt.Fprintln(tw, "CONTACT\tSENT TO\tTRANSPORT\tRANG\tANSWER")
	for _, b := range v.Branches {
		ans := "-"
		if b.SIPStatus != 0 {
			ans = strconv.Itoa(b.SIPStatus)
		}
		if b.Reason != "" {
			ans += " " + b.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Contact, b.Destination, b.Transport, yesno(b.Ringing), ans)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rec.Answer.IsZero() && len(v.Media) == 0 {
		return nil
	}
	fmt.Fprintln(env.Stdout)
	return writeMedia(env.Stdout, v, live)
}
