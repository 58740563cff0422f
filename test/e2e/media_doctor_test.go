package e2e

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// doctorMediaJSON is the part of `doctor call --json` this test reads.
type doctorMediaJSON struct {
	Verdict   string `json:"verdict"`
	Cause     string `json:"cause"`
	WouldWork bool   `json:"would_work"`
	Findings  []struct {
		Check    string   `json:"check"`
		Status   string   `json:"status"`
		Cause    string   `json:"cause"`
		Evidence []string `json:"evidence"`
		Fix      string   `json:"fix"`
	} `json:"findings"`
}

// doctorCallMedia runs `doctor ARGS --json`, which exits 1 when the call does
// not work, and decodes its report.
func doctorCallMedia(t *testing.T, s *Server, args ...string) (doctorMediaJSON, int) {
	t.Helper()
	out, errOut, code := s.TryCLI(append(args, "--json")...)
	var r doctorMediaJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("switchboard %s --json (exit %d): %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, err, out, errOut)
	}
	return r, code
}

// TestDoctorOneWayAudio: one-way audio reproduced on purpose. Through
// --media-relay always, baresip 2001 (sending a 440 Hz tone) calls 2002, a
// SIPp phone that answers with SDP and never sends RTP. While the call is
// up, `calls --active` shows the relay's live counters (packets from the
// caller, none from the callee) and `doctor call 2001 2002` already names
// the silent direction from them. After it, the call record's media legs
// say the same (caller leg packets_in > 0, callee leg packets_in == 0), and
// `doctor call --id ID` and `doctor call 2001 2002` name the callee ->
// caller direction with media_never_arrived and exit 1.
func TestDoctorOneWayAudio(t *testing.T) {
	t.Parallel()
	Need(t, "baresip")
	s := callSetup(t, "--media-relay", "always", "--rtp-ports", "12300-12399")
	callee := NewPhone(t, s, "2002", "secret-2002")
	callee.Start("call-phone-answer.xml", "-d", "300")
	a := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2001", "secret-2001", s.Addr, "udp")},
		Config: []string{"audio_source ausine,440", "ausrc_srate 48000", "ausrc_channels 2"}})
	a.WaitRegistered("2001@127.0.0.1", 15*time.Second)
	if err := a.Dial("sip:2002@" + s.Addr); err != nil {
		t.Fatalf("dial: %v\n%s", err, a.Log())
	}
	a.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)

	// Live counters while the call is up: packets arrive from the caller.
	var live []mediaCall
	deadline := time.Now().Add(10 * time.Second)
	for {
		live = nil
		s.JSON(&live, "calls", "--active")
		if len(live) == 1 && len(live[0].Media) == 2 && live[0].Media[0].PacketsIn >= 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls --active shows no live packets from the caller: %+v\nserver log:\n%s", live, s.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if live[0].Media[1].PacketsIn != 0 {
		t.Fatalf("live: the silent callee's leg counted packets in: %+v", live[0].Media[1])
	}
	text := s.CLI("calls", "--active")
	if !strings.Contains(text, "PKTS FROM CALLER") || !strings.Contains(text, "PKTS FROM CALLEE") {
		t.Fatalf("calls --active has no live counter columns:\n%s", text)
	}

	// The doctor reads the live counters of the call in progress: once it
	// has been up a few seconds, the silent direction is named.
	deadline = time.Now().Add(20 * time.Second)
	for {
		r, code := doctorCallMedia(t, s, "doctor", "call", "2001", "2002")
		if r.Cause == "media_never_arrived" && code == 1 && strings.Contains(r.Verdict, "2002 → 2001: no RTP ever arrived from 2002") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("doctor call 2001 2002 during the call: exit %d, %+v", code, r)
		}
		time.Sleep(500 * time.Millisecond)
	}

	if err := a.Hangup(); err != nil {
		t.Fatalf("hangup: %v", err)
	}
	a.WaitEvent("CALL_CLOSED", 0, 10*time.Second)
	c := lastMediaCall(t, s, "NORMAL_CLEARING and media legs", func(c mediaCall) bool {
		return c.Cause == "NORMAL_CLEARING" && len(c.Media) == 2
	})
	caller, calleeLeg := c.Media[0], c.Media[1]
	t.Logf("caller leg %+v", caller)
	t.Logf("callee leg %+v", calleeLeg)
	if caller.Side != "caller" || calleeLeg.Side != "callee" || !caller.Relayed || !calleeLeg.Relayed {
		t.Fatalf("legs %+v", c.Media)
	}
	if caller.PacketsIn < 50 || calleeLeg.PacketsOut < 50 {
		t.Fatalf("the caller's tone did not go through the relay: caller in %d, callee out %d", caller.PacketsIn, calleeLeg.PacketsOut)
	}
	if calleeLeg.PacketsIn != 0 || caller.PacketsOut != 0 {
		t.Fatalf("packets from the silent callee: callee in %d, caller out %d", calleeLeg.PacketsIn, caller.PacketsOut)
	}
	var shown mediaCall
	s.JSON(&shown, "calls", "show", strconv.FormatInt(c.ID, 10))
	if len(shown.Media) != 2 || shown.Media[0].PacketsIn != caller.PacketsIn || shown.Media[1].PacketsIn != 0 {
		t.Fatalf("calls show --json media %+v", shown.Media)
	}
	if out := s.CLI("calls", "show", strconv.FormatInt(c.ID, 10)); !strings.Contains(out, "packets in / out") ||
		!strings.Contains(out, "caller 2001") || !strings.Contains(out, "callee 2002") {
		t.Fatalf("calls show prints no media legs:\n%s", out)
	}

	for _, args := range [][]string{{"doctor", "call", "--id", strconv.FormatInt(c.ID, 10)}, {"doctor", "call", "2001", "2002"}} {
		r, code := doctorCallMedia(t, s, args...)
		if code != 1 || r.WouldWork || r.Cause != "media_never_arrived" ||
			!strings.Contains(r.Verdict, "2002 → 2001: no RTP ever arrived from 2002") {
			t.Fatalf("%s: exit %d, %+v", strings.Join(args, " "), code, r)
		}
		var sawOK bool
		for _, f := range r.Findings {
			if f.Check == "media" && f.Status == "ok" && strings.Contains(f.Evidence[0], "2001 → 2002:") {
				sawOK = true
			}
		}
		if !sawOK {
			t.Fatalf("%s: the caller's direction is not reported as arriving: %+v", strings.Join(args, " "), r.Findings)
		}
	}
	if _, errOut, code := s.TryCLI("doctor", "call", "--id", "999"); code != 1 || !strings.Contains(errOut, "no call 999") {
		t.Fatalf("doctor call --id 999: exit %d, %s", code, errOut)
	}
}

// TestDoctorMediaStopped: audio that stops mid-call. A SIPp phone 2001
// calls baresip 2002 through --media-relay always; its RTP (sent from
// here) flows for 2 s, then stops while the call stays up 8 s more.
// `doctor call --id ID` names the 2001 -> 2002 direction with
// media_stopped, when it stopped and after how long, and reports 2002's
// audio as arriving.
func TestDoctorMediaStopped(t *testing.T) {
	t.Parallel()
	Need(t, "baresip")
	s := callSetup(t, "--media-relay", "always", "--rtp-ports", "12400-12499")
	b := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2002", "secret-2002", s.Addr, "udp", "answermode=auto")},
		Config: []string{"audio_source ausine,1000", "ausrc_srate 48000", "ausrc_channels 2"}})
	b.WaitRegistered("2002@127.0.0.1", 15*time.Second)
	phone := NewRTPPhone(t)
	file := filepath.Join(t.TempDir(), "answer-addr")
	done := make(chan SIPpResult, 1)
	go func() {
		done <- SIPp(t, s.Addr, "call-uac-media.xml", 1, "-inf",
			CSV(t, "SEQUENTIAL", AuthRow("2001", "secret-2001", "2002", "127.0.0.1", strconv.Itoa(int(phone.Addr().Port())), file)), "-d", "10000")
	}()
	relay, ok := WaitRelayAddr(file, 15*time.Second)
	if !ok {
		r := <-done
		t.Fatalf("the phone's call got no SDP answer with an audio address (SIPp %d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	phone.SendTone(relay, 440, 2*time.Second, 0x5151, 0, nil)
	if r := <-done; r.Code != 0 {
		t.Fatalf("the call failed (%d):\n%s", r.Code, r.Output)
	}
	c := lastMediaCall(t, s, "NORMAL_CLEARING and media legs", func(c mediaCall) bool {
		return c.Cause == "NORMAL_CLEARING" && len(c.Media) == 2
	})
	if c.Media[0].PacketsIn < 50 || c.Media[1].PacketsIn < 200 {
		t.Fatalf("legs %+v", c.Media)
	}
	r, code := doctorCallMedia(t, s, "doctor", "call", "--id", strconv.FormatInt(c.ID, 10))
	if code != 1 || r.Cause != "media_stopped" || !strings.Contains(r.Verdict, "2001 → 2002: RTP from 2001 stopped at") ||
		!strings.Contains(r.Verdict, "after 1s") && !strings.Contains(r.Verdict, "after 2s") {
		t.Fatalf("doctor call --id %d: exit %d, %+v", c.ID, code, r)
	}
	var sawOK bool
	for _, f := range r.Findings {
		if f.Check == "media" && f.Status == "ok" && strings.Contains(f.Evidence[0], "2002 → 2001:") {
			sawOK = true
		}
	}
	if !sawOK {
		t.Fatalf("2002's direction is not reported as arriving: %+v", r.Findings)
	}
}
