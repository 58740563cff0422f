package cli

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/control"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/view"
)

// liveMedia asks the running server for the live media counters of the
// calls in progress among recs, by Call-ID; nil when serve does not run,
// has no relay, or does not answer (the listing goes on without them).
func liveMedia(ctx context.Context, data string, recs []calls.Record) map[string][]store.MediaLeg {
	var ids []string
	for _, r := range recs {
		if r.Active() {
			ids = append(ids, r.CallID)
		}
	}
	return liveMediaOf(ctx, data, ids)
}

// liveMediaOf asks the running server for the live media counters of the
// calls with these Call-IDs (nil as liveMedia).
func liveMediaOf(ctx context.Context, data string, ids []string) map[string][]store.MediaLeg {
	if len(ids) == 0 {
		return nil
	}
	c, err := control.Dial(data)
	if err != nil {
		return nil
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	live, err := c.LiveMedia(ctx, ids)
	if err != nil {
		return nil
	}
	out := make(map[string][]store.MediaLeg, len(live))
	for _, l := range live {
		out[l.CallID] = l.Legs
	}
	return out
}

// mediaSide returns the view of the leg on side ("caller", "callee"), or
// nil.
func mediaSide(ms []view.MediaLeg, side string) *view.MediaLeg {
	for i := range ms {
		if ms[i].Side == side {
			return &ms[i]
		}
	}
	return nil
}

// packetsIn is a listing cell: packets received from that side, "-" when
// the relay does not carry the call.
func packetsIn(ms []view.MediaLeg, side string) string {
	l := mediaSide(ms, side)
	if l == nil || !l.Relayed {
		return "-"
	}
	return strconv.FormatUint(l.PacketsIn, 10)
}

// writeMedia writes the media legs of a call as a table with one column
// per leg (caller, callee) and one row per fact.
func writeMedia(w io.Writer, v callView, live bool) error {
	if len(v.Media) == 0 {
		if v.Active {
			_, err := fmt.Fprintln(w, "Media: not relayed, or no live counters from the server (the phones send their audio to each other).")
			return err
		}
		_, err := fmt.Fprintln(w, "Media: not relayed (the phones sent their audio to each other; `serve --media-relay always` relays and counts every call).")
		return err
	}
	relayed := false
	for _, l := range v.Media {
		relayed = relayed || l.Relayed
	}
	if !relayed {
		return writeUnrelayed(w, v)
	}
	title := "Media (relayed; in = from the party, out = to it):"
	if live {
		title = "Media (live counters; in = from the party, out = to it):"
	}
	fmt.Fprintln(w, title)
	legs := [2]*view.MediaLeg{mediaSide(v.Media, "caller"), mediaSide(v.Media, "callee")}
	names := [2]string{"caller " + v.From, "callee " + v.To}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	stamp := func(s string) string {
		t, err := time.Parse("2006-01-02T15:04:05.000Z", s)
		if err != nil {
			return "-"
		}
		return t.Local().Format("15:04:05.000")
	}
	rows := []struct {
		name string
		cell func(l *view.MediaLeg) string
	}{
		{"", nil},
		{"signalled (SDP)", func(l *view.MediaLeg) string { return dash(l.SignalledAddr) }},
		{"SIP from", func(l *view.MediaLeg) string { return dash(l.SIPSource) }},
		{"latched", func(l *view.MediaLeg) string {
			if l.LatchedAddr == "" {
				return "- (nothing latched)"
			}
			return l.LatchedAddr
		}},
		{"codec", func(l *view.MediaLeg) string { return dash(l.Codec) }},
		{"packets in / out", func(l *view.MediaLeg) string { return fmt.Sprintf("%d / %d", l.PacketsIn, l.PacketsOut) }},
		{"bytes in / out", func(l *view.MediaLeg) string { return fmt.Sprintf("%d / %d", l.BytesIn, l.BytesOut) }},
		{"first packet in", func(l *view.MediaLeg) string { return stamp(l.FirstPacketIn) }},
		{"last packet in", func(l *view.MediaLeg) string { return stamp(l.LastPacketIn) }},
		{"loss", func(l *view.MediaLeg) string {
			if l.PacketsIn == 0 {
				return "-"
			}
			return fmt.Sprintf("%d (%.1f%%)", l.Lost, l.LossPct)
		}},
		{"jitter", func(l *view.MediaLeg) string {
			if l.PacketsIn == 0 {
				return "-"
			}
			return fmt.Sprintf("%.1f ms", l.JitterMS)
		}},
		{"MOS", func(l *view.MediaLeg) string {
			if l.PacketsIn == 0 {
				return "-"
			}
			return fmt.Sprintf("%.1f", l.MOS)
		}},
		{"stray", func(l *view.MediaLeg) string {
			if l.Stray == 0 {
				return "0"
			}
			return fmt.Sprintf("%d, last from %s", l.Stray, dash(l.StraySource))
		}},
		{"malformed", func(l *view.MediaLeg) string { return strconv.FormatUint(l.Malformed, 10) }},
		{"WebRTC", func(l *view.MediaLeg) string {
			if !l.WebRTC {
				return "no"
			}
			return "yes, DTLS " + dash(l.DTLS)
		}},
	}
	tw := table(w)
	for _, r := range rows {
		cells := [2]string{}
		for i, l := range legs {
			switch {
			case r.cell == nil:
				cells[i] = names[i]
			case l == nil:
				cells[i] = "-"
			default:
				cells[i] = r.cell(l)
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", r.name, cells[0], cells[1])
	}
	return tw.Flush()
}

// writeUnrelayed writes the media of a call the relay did not carry: that
// it was not relayed, and per side the audio address its SDP named and
// where its SIP came from, flagging a side whose two differ (behind NAT:
// the rule of serve --media-relay auto, and of the doctor).
func writeUnrelayed(w io.Writer, v callView) error {
	fmt.Fprintln(w, "Media: not relayed (the phones sent their audio to each other; `serve --media-relay always` relays and counts every call).")
	legs := [2]*view.MediaLeg{mediaSide(v.Media, "caller"), mediaSide(v.Media, "callee")}
	names := [2]string{"caller " + v.From, "callee " + v.To}
	cell := func(l *view.MediaLeg, f func(*view.MediaLeg) string) string {
		if l == nil {
			return "-"
		}
		if s := f(l); s != "" {
			return s
		}
		return "-"
	}
	tw := table(w)
	fmt.Fprintf(tw, "  \t%s\t%s\n", names[0], names[1])
	for _, r := range []struct {
		name string
		f    func(*view.MediaLeg) string
	}{
		{"signalled (SDP)", func(l *view.MediaLeg) string { return l.SignalledAddr }},
		{"SIP from", func(l *view.MediaLeg) string { return l.SIPSource }},
		{"NAT", func(l *view.MediaLeg) string {
			sdpIP, sipIP := addrIP(l.SignalledAddr), addrIP(l.SIPSource)
			switch {
			case l.WebRTC || !sdpIP.IsValid() || !sipIP.IsValid() || sdpIP.IsUnspecified():
				return "unknown"
			case sdpIP != sipIP:
				return "yes: the SDP address is not the SIP source"
			}
			return "no"
		}},
	} {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", r.name, cell(legs[0], r.f), cell(legs[1], r.f))
	}
	return tw.Flush()
}

// addrIP reads the IP of "ip", "ip:port" or "[ip]:port" (invalid when none).
func addrIP(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(strings.Trim(s, "[]"))
	return a.Unmap()
}
