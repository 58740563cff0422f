package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

const journalUsage = `
Usage: switchboard journal [--ext N] [--ip IP] [--since 10m] [--follow] [--json]

Shows the journal: every decision switchboard took (each REGISTER and
INVITE answer, binding expiry, qualify results, bans), oldest first, with
the cause, the phone's source address, transport and user agent.

--since takes a duration (10m, 2h, 7d) or a time (2026-01-15 14:02,
2026-01-15T14:02:00Z, 14:02 for today). --follow keeps printing new events
until interrupted (Ctrl-C); with --json it prints one JSON object per line,
without it a JSON array.`

// Journal runs `switchboard journal`.
func Journal(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("journal", flag.ContinueOnError)
	data := fs.String("data", defaultData(), "data directory (env SWITCHBOARD_DATA)")
	dbURL := dbFlag(fs)
	ext := fs.String("ext", "", "only events about this extension number")
	domain := fs.String("domain", "", "only events in this domain")
	ip := fs.String("ip", "", "only events from this source IP (any port)")
	kind := fs.String("kind", "", "only this kind: register, invite, binding, qualify, ban, request, admin")
	causeFlag := fs.String("cause", "", "only this cause, e.g. wrong_password")
	since := fs.String("since", "", "only events at or after this time or this long ago (10m, 2h, 7d, 2026-01-15 14:02)")
	limit := fs.Int("limit", 100, "at most this many events (the newest); with --follow, how many to show first")
	follow := fs.Bool("follow", false, "keep printing new events until interrupted")
	fs.BoolVar(follow, "f", false, "short for --follow")
	interval := fs.Duration("interval", 250*time.Millisecond, "with --follow: how often to look for new events")
	asJSON := fs.Bool("json", false, "print JSON (an array; with --follow one object per line)")
	pos, done, err := parseHelp(env, fs, args, journalUsage)
	if done || err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("`switchboard journal` takes no arguments, only flags, e.g. switchboard journal --ext %s", pos[0])
	}
	f := journal.Filter{Kind: *kind, Cause: cause.Code(*causeFlag)}
	if *ext != "" {
		if err := validNumber(*ext); err != nil {
			return err
		}
		f.Extension = *ext
	}
	if *ip != "" {
		a, err := netip.ParseAddr(strings.Trim(*ip, "[]"))
		if err != nil {
			return usagef("--ip %q is not an IP address: give one such as --ip 192.168.1.50", *ip)
		}
		f.IP = a.Unmap().String()
	}
	if *kind != "" {
		switch *kind {
		case journal.KindRegister, journal.KindInvite, journal.KindBinding, journal.KindQualify, journal.KindBan, journal.KindRequest, journal.KindAdmin:
		default:
			return usagef("--kind %q is unknown: use register, invite, binding, qualify, ban, request or admin", *kind)
		}
	}
	if *since != "" {
		if f.Since, err = parseSince(*since, time.Now()); err != nil {
			return err
		}
	}
	if *limit < 1 {
		return usagef("--limit must be at least 1")
	}
	if *interval < 10*time.Millisecond {
		return usagef("--interval must be at least 10ms")
	}
	f.Limit = *limit
	db, err := openExisting(ctx, *data, *dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if *causeFlag != "" {
		if f.Cause, err = knownCause(ctx, db, *causeFlag); err != nil {
			return err
		}
	}
	freshen(ctx, *data)
	if *domain != "" {
		// A domain switchboard does not serve still appears in the journal
		// (wrong_domain), so take the name as given when it is unknown.
		f.Domain = *domain
		if d, err := db.Domain(ctx, *domain); err == nil {
			f.Domain = d.Name
		}
	}
	// --follow continues after the newest event at start, read before the
	// first query so nothing recorded in between is missed.
	after, err := journal.LastID(ctx, db)
	if err != nil {
		return err
	}
	evs, err := journal.Query(ctx, db, f)
	if err != nil {
		return err
	}
	reverse(evs)
	if !*follow {
		if *asJSON {
			if evs == nil {
				evs = []journal.Event{}
			}
			return writeJSON(env.Stdout, evs)
		}
		if len(evs) == 0 {
			fmt.Fprintln(env.Stdout, "no journal events match")
			return nil
		}
		return (&eventTable{}).write(env.Stdout, evs, true)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	header := true
	tab := &eventTable{}
	emit := func(evs []journal.Event) error {
		if *asJSON {
			enc := json.NewEncoder(env.Stdout)
			for i := range evs {
				if err := enc.Encode(&evs[i]); err != nil {
					return err
				}
			}
			return nil
		}
		err := tab.write(env.Stdout, evs, header)
		header = false
		return err
	}
	for _, e := range evs {
		after = max(after, e.ID)
	}
	if len(evs) > 0 {
		if err := emit(evs); err != nil {
			return err
		}
	}
	f.Since, f.Oldest, f.Limit = time.Time{}, true, 1000
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		f.AfterID = after
		evs, err := journal.Query(ctx, db, f)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(evs) == 0 {
			continue
		}
		after = evs[len(evs)-1].ID
		if err := emit(evs); err != nil {
			return err
		}
	}
}

func reverse(evs []journal.Event) {
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
}

// journalCols are the text columns and their minimum widths.
var journalCols = []struct {
	name string
	min  int
}{{"TIME", 23}, {"KIND", 8}, {"CAUSE", 18}, {"SIP", 3}, {"USER", 18}, {"SOURCE", 21}, {"TRANSPORT", 9},
	{"USER-AGENT", 16}, {"DETAIL", 0}}

// eventTable writes journal events as a table whose columns keep their
// widths from one write to the next, so the rows of successive --follow
// batches line up under the header: the first write sizes the columns
// (at least journalCols' minimum widths); a later, longer value widens only
// its own row.
type eventTable struct {
	widths []int // set by the first write
}

func (t *eventTable) write(w io.Writer, evs []journal.Event, header bool) error {
	rows := make([][]string, 0, len(evs)+1)
	if header {
		names := make([]string, len(journalCols))
		for i, c := range journalCols {
			names[i] = c.name
		}
		rows = append(rows, names)
	}
	for _, e := range evs {
		user := e.Extension
		if e.Domain != "" {
			user += "@" + e.Domain
		}
		status := "-"
		if e.Status > 0 {
			status = strconv.Itoa(e.Status)
		}
		rows = append(rows, []string{e.Time.Local().Format(timeLayout + ".000"), e.Kind, cell(string(e.Cause)), status,
			cell(user), cell(e.Source), cell(e.Transport), cell(e.UserAgent), oneLine(e.Detail)})
	}
	if t.widths == nil {
		t.widths = make([]int, len(journalCols))
		for i, c := range journalCols {
			t.widths[i] = c.min
		}
		for _, r := range rows {
			for i, c := range r {
				t.widths[i] = max(t.widths[i], utf8.RuneCountInString(c))
			}
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", max(t.widths[i]-utf8.RuneCountInString(c), 0)+2))
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// knownCause checks --cause against the causes switchboard records (and
// those already in the journal, written by another version), matching
// case-insensitively; it returns the canonical code.
func knownCause(ctx context.Context, db store.Journal, s string) (cause.Code, error) {
	all := cause.All()
	for _, c := range all {
		if strings.EqualFold(string(c), s) {
			return c, nil
		}
	}
	if seen, err := db.HasCause(ctx, cause.Code(s)); err != nil {
		return "", err
	} else if seen {
		return cause.Code(s), nil
	}
	names := make([]string, len(all))
	for i, c := range all {
		names[i] = string(c)
	}
	if near := closest(strings.ToLower(s), lower(names)); near != "" {
		for _, c := range all {
			if strings.EqualFold(string(c), near) {
				near = string(c)
			}
		}
		return "", usagef("--cause %q is unknown: did you mean --cause %s? (causes: %s)", s, near, strings.Join(names, ", "))
	}
	return "", usagef("--cause %q is unknown: use one of %s", s, strings.Join(names, ", "))
}

func lower(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}

// cell writes a value on one line, "-" when empty.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return oneLine(s)
}

// oneLine keeps a value from breaking the table (values come from phones).
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' || r < 0x20 {
			return ' '
		}
		return r
	}, s)
}

// parseSince reads --since: a duration ago (10m, 2h, 7d, 1d12h) or a time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, ok := parseAgo(s); ok {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"15:04:05", "15:04"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			y, m, d := now.Date()
			return time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), 0, time.Local), nil
		}
	}
	return time.Time{}, usagef("--since %q is neither a duration (10m, 2h, 7d) nor a time (2026-01-15 14:02, 14:02)", s)
}

// parseAgo accepts Go durations plus a leading day count: 7d, 1d12h.
func parseAgo(s string) (time.Duration, bool) {
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.Atoi(s[:i])
		if err != nil || n < 0 {
			return 0, false
		}
		days, s = time.Duration(n)*24*time.Hour, s[i+1:]
		if s == "" {
			return days, true
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, false
	}
	return days + d, true
}
