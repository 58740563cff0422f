package e2e

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDoctorUnrelayedNAT: with --media-relay never, a SIPp phone 2001 whose
// SDP names 127.0.0.77:4000 while its SIP comes from 127.0.0.1 (behind NAT,
// as in TestMediaRelayNAT) calls baresip 2002, which answers. The relay
// does not carry the call, but its record has both media legs, unrelayed:
// the caller's with its SDP address and its SIP source, the callee's with
// the address of baresip's answer. `calls show ID` says the media were not
// relayed and shows the two addresses per side, and `doctor call --id ID`
// says the relay did not see the audio and points at the mismatch (NAT,
// the rule of --media-relay auto) with the fix --media-relay.
func TestDoctorUnrelayedNAT(t *testing.T) {
	t.Parallel()
	Need(t, "baresip")
	s := callSetup(t, "--media-relay", "never")
	b := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2002", "secret-2002", s.Addr, "udp", "answermode=auto")},
		Config: []string{"audio_source ausine,1000", "ausrc_srate 48000", "ausrc_channels 2"}})
	b.WaitRegistered("2002@127.0.0.1", 15*time.Second)
	file := filepath.Join(t.TempDir(), "answer-addr")
	done := make(chan SIPpResult, 1)
	go func() {
		done <- SIPp(t, s.Addr, "call-uac-media.xml", 1, "-inf",
			CSV(t, "SEQUENTIAL", AuthRow("2001", "secret-2001", "2002", "127.0.0.77", "4000", file)), "-d", "1000")
	}()
	answer, ok := WaitRelayAddr(file, 15*time.Second)
	if !ok {
		r := <-done
		t.Fatalf("the phone's call got no SDP answer with an audio address (SIPp %d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	if r := <-done; r.Code != 0 {
		t.Fatalf("the call failed (%d):\n%s", r.Code, r.Output)
	}
	c := lastMediaCall(t, s, "NORMAL_CLEARING and media legs", func(c mediaCall) bool {
		return c.Cause == "NORMAL_CLEARING" && len(c.Media) == 2
	})
	id := strconv.FormatInt(c.ID, 10)
	var shown mediaCall
	s.JSON(&shown, "calls", "show", id)
	if len(shown.Media) != 2 {
		t.Fatalf("calls show %s --json: media %+v", id, shown.Media)
	}
	caller, callee := shown.Media[0], shown.Media[1]
	if caller.Side != "caller" || caller.Relayed || caller.SignalledAddr != "127.0.0.77:4000" || caller.SIPSource != "127.0.0.1" ||
		caller.PacketsIn != 0 || caller.LatchedAddr != "" {
		t.Fatalf("caller leg %+v, want unrelayed, signalled 127.0.0.77:4000, SIP from 127.0.0.1, no counters", caller)
	}
	if callee.Side != "callee" || callee.Relayed || callee.SignalledAddr != answer.String() || callee.SIPSource != "127.0.0.1" {
		t.Fatalf("callee leg %+v, want unrelayed, signalled %s (baresip's answer), SIP from 127.0.0.1", callee, answer)
	}
	out := s.CLI("calls", "show", id)
	t.Logf("calls show %s:\n%s", id, out)
	for _, want := range []string{"Media: not relayed", "127.0.0.77:4000", answer.String(), "yes: the SDP address is not the SIP source"} {
		if !strings.Contains(out, want) {
			t.Fatalf("calls show %s: no %q in\n%s", id, want, out)
		}
	}

	stdout, errOut, code := s.TryCLI("doctor", "call", "--id", id, "--json")
	var r struct {
		Findings []struct {
			Check    string   `json:"check"`
			Status   string   `json:"status"`
			Cause    string   `json:"cause"`
			Evidence []string `json:"evidence"`
			Fix      string   `json:"fix"`
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("doctor call --id %s --json (exit %d): %v\n%s\n%s", id, code, err, stdout, errOut)
	}
	found := false
	for _, f := range r.Findings {
		if f.Check != "media" {
			continue
		}
		found = true
		ev := strings.Join(f.Evidence, "\n")
		if f.Status != "warn" || f.Cause != "media_behind_nat" || !strings.Contains(ev, "not relayed") ||
			!strings.Contains(ev, "2001's SDP names 127.0.0.77:4000 while its SIP came from 127.0.0.1: 2001 is behind NAT") ||
			!strings.Contains(f.Fix, "--media-relay") {
			t.Fatalf("doctor call --id %s: media finding %+v", id, f)
		}
	}
	if !found {
		t.Fatalf("doctor call --id %s: no media finding: %s", id, stdout)
	}
	text := s.CLI("doctor", "call", "--id", id)
	t.Logf("doctor call --id %s:\n%s", id, text)
	if !strings.Contains(text, "media_behind_nat") || !strings.Contains(text, "--media-relay") {
		t.Fatalf("doctor call --id %s:\n%s", id, text)
	}
}
