package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/view"
)

// TestWriteMedia: `calls show` lays out both legs side by side with the
// counters, addresses, loss, jitter, MOS and strays, and says when the
// media was not relayed.
func TestWriteMedia(t *testing.T) {
	first := time.Date(2026, 1, 15, 14, 20, 2, 0, time.Local)
	v := view.Call{From: "2001", To: "2002", Media: view.MediaOf([]store.MediaLeg{
		{Side: "caller", Relayed: true, Codec: "PCMU", SignalledAddr: "192.168.1.50:4000", SIPSource: "192.168.1.50",
			LatchedAddr: "192.168.1.50:4000", PacketsIn: 1500, BytesIn: 258000, PacketsOut: 0, BytesOut: 0,
			FirstPacketIn: first, LastPacketIn: first.Add(30 * time.Second), Lost: 3, JitterMS: 1.26, MOS: 4.41},
		{Side: "callee", Relayed: true, Codec: "PCMU", SignalledAddr: "10.0.0.5:4000", SIPSource: "203.0.113.7",
			PacketsOut: 1500, BytesOut: 258000, Stray: 12, StraySource: "198.51.100.9:5004"}})}
	var buf bytes.Buffer
	if err := writeMedia(&buf, v, false); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"caller 2001", "callee 2002",
		"signalled (SDP)   192.168.1.50:4000  10.0.0.5:4000",
		"latched           192.168.1.50:4000  - (nothing latched)",
		"packets in / out  1500 / 0           0 / 1500",
		"first packet in   14:20:02.000       -",
		"loss              3 (0.2%)           -",
		"jitter            1.3 ms",
		"MOS               4.4                -",
		"stray             0                  12, last from 198.51.100.9:5004",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	buf.Reset()
	if err := writeMedia(&buf, view.Call{From: "2001", To: "2002", Media: []view.MediaLeg{}}, false); err != nil ||
		!strings.Contains(buf.String(), "not relayed") || !strings.Contains(buf.String(), "--media-relay always") {
		t.Fatalf("unrelayed: %q %v", buf.String(), err)
	}
	buf.Reset()
	v = view.Call{From: "2001", To: "2002", Media: view.MediaOf([]store.MediaLeg{
		{Side: "caller", SignalledAddr: "127.0.0.77:4000", SIPSource: "127.0.0.1"},
		{Side: "callee", SignalledAddr: "127.0.0.1:7000", SIPSource: "127.0.0.1"}})}
	if err := writeMedia(&buf, v, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"not relayed", "--media-relay always",
		"signalled (SDP)  127.0.0.77:4000", "127.0.0.1:7000",
		"NAT              yes: the SDP address is not the SIP source  no"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("unrelayed with addresses: missing %q in\n%s", want, buf.String())
		}
	}
	if strings.Contains(buf.String(), "packets in") {
		t.Errorf("unrelayed call shows counters:\n%s", buf.String())
	}
}
