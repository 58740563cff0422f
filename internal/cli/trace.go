package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/control"
	"github.com/switchboard-pbx/switchboard/internal/doctor"
	"github.com/switchboard-pbx/switchboard/internal/trace"
)

const traceUsage = `
Usage: switchboard trace [--ext N] [--ip IP] [--call-id ID] [--method M] [--full] [--pcap FILE] [--json] [--duration D]

Prints the SIP messages the running server receives and sends, as they
pass (like FreeSWITCH's 'sofia global siptrace on' or sngrep), one line
each: local time, direction (<-- received from, --> sent to the remote
address), transport, remote ip:port, the request or status line and the
start of the Call-ID. --full prints whole messages, --json one JSON
object per line (time, direction, transport, local, remote, first_line,
call_id, method, message). Messages are shown as received, before the
packet filter (bans, ACLs) decides about them.

Filters combine: --ext matches the user part of the Request-URI, From,
To or Contact; --ip the remote address; --call-id the Call-ID; --method
the CSeq method (so --method REGISTER shows the 401 and 200 too).

--pcap FILE also writes the messages to a pcap file Wireshark and tshark
open (created with mode 0600; --force replaces an existing file). It ends
on Ctrl-C, SIGTERM or after --duration (10s, 5m). Capturing costs the
server nothing while nobody traces.`

// Trace runs `switchboard trace`.
func Trace(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	data := fs.String("data", defaultData(), "data directory (env SWITCHBOARD_DATA)")
	ext := fs.String("ext", "", "only messages to or from this extension (Request-URI, From, To or Contact user)")
	ip := fs.String("ip", "", "only messages from or to this remote IP address")
	callID := fs.String("call-id", "", "only messages with this Call-ID")
	method := fs.String("method", "", "only messages whose CSeq method is this (REGISTER, INVITE, ...)")
	full := fs.Bool("full", false, "print whole messages, not one line each")
	pcap := fs.String("pcap", "", "also write the messages to this pcap `FILE`")
	force := fs.Bool("force", false, "with --pcap, replace an existing file")
	asJSON := fs.Bool("json", false, "print one JSON object per message")
	duration := fs.Duration("duration", 0, "stop after this long (10s, 5m); default: until Ctrl-C")
	pos, done, err := parseHelp(env, fs, args, traceUsage)
	if done || err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usagef("unknown argument %q: filters are flags, e.g. switchboard trace --ext 2001", pos[0])
	case *duration < 0:
		return usagef("--duration %s is negative: give how long to trace, e.g. --duration 30s", *duration)
	case *force && *pcap == "":
		return usagef("--force only applies to --pcap FILE: e.g. switchboard trace --pcap sip.pcap --force")
	}
	if *ext != "" {
		if err := validNumber(*ext); err != nil {
			return err
		}
	}
	if *ip != "" {
		if _, err := netip.ParseAddr(*ip); err != nil {
			return usagef("--ip %q is not an IP address: give one address, e.g. --ip 192.0.2.10", *ip)
		}
	}
	if *method != "" && strings.ContainsAny(*method, " \t\r\n") {
		return usagef("--method %q is not a SIP method: e.g. --method INVITE", *method)
	}
	c, err := control.Dial(*data)
	if err != nil {
		return usagef("switchboard serve is not running on %s: trace shows a running server's messages (start it with: switchboard serve --data %s)", *data, *data)
	}
	defer c.Close()

	var pw *trace.PcapWriter
	if *pcap != "" {
		flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
		if *force {
			flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		}
		f, err := os.OpenFile(*pcap, flags, 0o600)
		if errors.Is(err, os.ErrExist) {
			return usagef("--pcap %s exists: pick another file or add --force to replace it", *pcap)
		}
		if err != nil {
			return fmt.Errorf("pcap file: %w", err)
		}
		bw := bufio.NewWriter(f)
		defer func() {
			_ = bw.Flush()
			_ = f.Close()
		}()
		if pw, err = trace.NewPcapWriter(bw); err != nil {
			return err
		}
		// each record is flushed, so the file is whole if we are killed
		pw = pw.WithFlush(bw.Flush)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	q := url.Values{}
	for k, v := range map[string]string{"ext": *ext, "ip": *ip, "call_id": *callID, "method": *method} {
		if v != "" {
			q.Set(k, v)
		}
	}
	out := bufio.NewWriter(env.Stdout)
	defer out.Flush()
	started := func() {
		fmt.Fprintf(env.Stderr, "tracing SIP on %s (Ctrl-C to stop)\n", *data)
	}
	return c.Trace(ctx, q, started, func(l control.TraceLine) error {
		if l.Message == nil {
			if l.Lost > 0 {
				fmt.Fprintf(env.Stderr, "trace: %d messages lost so far (this terminal reads too slowly; narrow the filter)\n", l.Lost)
			}
			return nil
		}
		m := l.Message
		if pw != nil {
			if err := pw.Write(*m); err != nil {
				return err
			}
		}
		switch {
		case *asJSON:
			if err := writeJSONLine(out, m); err != nil {
				return err
			}
		default:
			fmt.Fprintln(out, traceLine(m))
			if *full {
				fmt.Fprintln(out, strings.TrimRight(strings.ReplaceAll(m.Text, "\r\n", "\n"), "\n"))
				fmt.Fprintln(out)
			}
		}
		return out.Flush()
	})
}

// traceLine is the one-line form of m, aligned like sngrep's list.
func traceLine(m *trace.Message) string {
	arrow := "<--"
	if m.Direction == trace.Out {
		arrow = "-->"
	}
	first := m.FirstLine
	cid := m.CallID
	if len(cid) > 12 {
		cid = cid[:12]
	}
	return fmt.Sprintf("%s %s %-3s %-21s %-60s %s", m.Time.Local().Format("15:04:05.000"), arrow, m.Transport,
		m.Remote, first, cid)
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

// lastSIPCount is how many buffered messages the doctor shows.
const lastSIPCount = 10

// lastSIP asks the running server for the last messages it buffered (from
// a recent trace) with the extension of in, or from the addresses its
// phone registered or was refused from; nil when none or no server.
func lastSIP(ctx context.Context, data string, in doctor.Inputs) []trace.Message {
	c, err := control.Dial(data)
	if err != nil {
		return nil
	}
	defer c.Close()
	queries := []url.Values{{"ext": {in.Number}}}
	seen := map[string]bool{}
	addIP := func(source string) {
		ip := source
		if h, _, err := net.SplitHostPort(source); err == nil {
			ip = h
		}
		if _, err := netip.ParseAddr(ip); err != nil || seen[ip] || len(seen) >= 3 {
			return
		}
		seen[ip] = true
		queries = append(queries, url.Values{"ip": {ip}})
	}
	for _, b := range in.Bindings {
		addIP(b.Source)
	}
	for _, e := range in.History.Recent {
		addIP(e.Source)
	}
	type key struct {
		at        time.Time
		dir, text string
	}
	var all []trace.Message
	dup := map[key]bool{}
	for _, q := range queries {
		q.Set("limit", strconv.Itoa(lastSIPCount))
		ms, err := c.RecentTrace(ctx, q)
		if err != nil {
			return nil
		}
		for _, m := range ms {
			k := key{m.Time, m.Direction, m.Text}
			if !dup[k] {
				dup[k] = true
				all = append(all, m)
			}
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) })
	if len(all) > lastSIPCount {
		all = all[len(all)-lastSIPCount:]
	}
	return all
}

// writeLastSIP writes the doctor's "last SIP messages" evidence.
func writeLastSIP(w io.Writer, ms []trace.Message) error {
	fmt.Fprintf(w, "\nLast SIP messages with this phone (buffered by the server from a recent `switchboard trace`):\n")
	for i := range ms {
		if _, err := fmt.Fprintln(w, "  "+strings.TrimRight(traceLine(&ms[i]), " ")); err != nil {
			return err
		}
	}
	return nil
}
