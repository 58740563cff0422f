package web

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// TestAPICallMedia: a call record's media legs are in GET /api/v1/calls
// (snake_case, as `calls --json`), and GET /api/v1/doctor/call?id=N
// explains that call: the silent callee's direction, media_never_arrived;
// an unknown id is 404, a malformed one 400.
func TestAPICallMedia(t *testing.T) {
	f, tok := apiFixture(t)
	ctx := context.Background()
	for _, n := range []string{"2001", "2002"} {
		f.api("POST", "/api/v1/extensions", tok, `{"extension":"`+n+`"}`)
	}
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	rec := store.Call{ID: 7, CallID: "one-way@test", From: "2001", To: "2002", Domain: "pbx.test", Source: "127.0.0.1:5070",
		Transport: "UDP", Start: t0, Answer: t0.Add(2 * time.Second), End: t0.Add(32 * time.Second), SIPStatus: 200,
		Cause: cause.NormalClearing, HangupBy: "caller",
		Media: []store.MediaLeg{
			{Side: "caller", Relayed: true, Codec: "PCMU/8000", SignalledAddr: "127.0.0.1:4000", SIPSource: "127.0.0.1",
				LatchedAddr: "127.0.0.1:4000", PacketsIn: 1500, BytesIn: 258000, FirstPacketIn: t0.Add(2 * time.Second),
				LastPacketIn: t0.Add(32 * time.Second), Lost: 3, JitterMS: 1.25, MOS: 4.4},
			{Side: "callee", Relayed: true, Codec: "PCMU/8000", SignalledAddr: "127.0.0.1:5000", SIPSource: "127.0.0.1",
				PacketsOut: 1500, BytesOut: 258000}}}
	if err := f.db.SaveCalls(ctx, []store.Call{rec}); err != nil {
		t.Fatal(err)
	}
	_, body := f.api("GET", "/api/v1/calls", tok, "")
	var calls []struct {
		Media []map[string]any `json:"media"`
	}
	if err := json.Unmarshal([]byte(body), &calls); err != nil || len(calls) != 1 || len(calls[0].Media) != 2 {
		t.Fatalf("calls: %v %.500s", err, body)
	}
	m := calls[0].Media
	if m[0]["side"] != "caller" || m[0]["packets_in"] != 1500.0 || m[0]["loss_pct"] != 0.2 || m[0]["latched_addr"] != "127.0.0.1:4000" ||
		m[1]["packets_in"] != 0.0 || m[1]["first_packet_in"] != "" {
		t.Fatalf("media legs: %v", m)
	}
	res, body := f.api("GET", "/api/v1/doctor/call?id=7", tok, "")
	var r struct {
		Verdict   string `json:"verdict"`
		Cause     string `json:"cause"`
		WouldWork bool   `json:"would_work"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || res.StatusCode != 200 || r.Cause != "media_never_arrived" || r.WouldWork ||
		!strings.Contains(r.Verdict, "2002 → 2001: no RTP ever arrived from 2002") {
		t.Fatalf("doctor call?id=7: %d %v %.500s", res.StatusCode, err, body)
	}
	if res, _ := f.api("GET", "/api/v1/doctor/call?id=8", tok, ""); res.StatusCode != 404 {
		t.Fatalf("unknown id: %d, want 404", res.StatusCode)
	}
	if res, _ := f.api("GET", "/api/v1/doctor/call?id=x", tok, ""); res.StatusCode != 400 {
		t.Fatalf("malformed id: %d, want 400", res.StatusCode)
	}
}
