package e2e

import (
	"math"
	"path/filepath"
	"testing"
	"time"
)

// MediaLegRecord is one leg of a relayed call in `calls --json`.
type MediaLegRecord struct {
	Side          string `json:"side"`
	Relayed       bool   `json:"relayed"`
	Codec         string `json:"codec"`
	SignalledAddr string `json:"signalled_addr"`
	SIPSource     string `json:"sip_source"`
	LatchedAddr   string `json:"latched_addr"`
	PacketsIn     uint64 `json:"packets_in"`
	BytesIn       uint64 `json:"bytes_in"`
	PacketsOut    uint64 `json:"packets_out"`
	BytesOut      uint64 `json:"bytes_out"`
	Stray         uint64 `json:"stray"`
	StraySource   string `json:"stray_source"`
	Malformed     uint64 `json:"malformed"`
}

// mediaCall is a call record with its media legs.
type mediaCall struct {
	ID        int64            `json:"id"`
	CallID    string           `json:"call_id"`
	SIPStatus int              `json:"sip_status"`
	Cause     string           `json:"cause"`
	HangupBy  string           `json:"hangup_by"`
	Detail    string           `json:"detail"`
	Media     []MediaLegRecord `json:"media"`
}

// lastMediaCall waits until the newest call record satisfies ok.
func lastMediaCall(t *testing.T, s *Server, what string, ok func(mediaCall) bool) mediaCall {
	t.Helper()
	var last []mediaCall
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		last = nil
		s.JSON(&last, "calls", "--limit", "1")
		if len(last) == 1 && ok(last[0]) {
			return last[0]
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no call record with %s; last: %+v\nserver log:\n%s", what, last, s.Log())
	return mediaCall{}
}

// mediaPhones starts two baresip phones, 2001 (tone 440 Hz) and 2002 (auto
// answer, tone 1000 Hz), recording what they receive, registered with s.
// extra2001 are further config lines for 2001.
func mediaPhones(t *testing.T, s *Server, extra2001 ...string) (a, b *Baresip, recA, recB string) {
	t.Helper()
	recA, recB = t.TempDir(), t.TempDir()
	a = StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2001", "secret-2001", s.Addr, "udp")},
		Modules: []string{"sndfile"}, Config: append([]string{"audio_source ausine,440", "ausrc_srate 48000", "ausrc_channels 2", "snd_path " + recA}, extra2001...)})
	b = StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2002", "secret-2002", s.Addr, "udp", "answermode=auto")},
		Modules: []string{"sndfile"}, Config: []string{"audio_source ausine,1000", "ausrc_srate 48000", "ausrc_channels 2", "snd_path " + recB}})
	a.WaitRegistered("2001@127.0.0.1", 15*time.Second)
	b.WaitRegistered("2002@127.0.0.1", 15*time.Second)
	return a, b, recA, recB
}

// checkTone asserts that the largest recording of what a phone received
// (in dir) holds the other side's tone at wantHz.
func checkTone(t *testing.T, dir, who string, wantHz float64) {
	t.Helper()
	files := Recordings(dir, "dec")
	if len(files) == 0 {
		all, _ := filepath.Glob(filepath.Join(dir, "*"))
		t.Fatalf("%s recorded nothing it received (files: %v)", who, all)
	}
	st, err := ReadWAVStats(files[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s received %.1f s of audio: RMS %.3f, peak %.3f, ~%.0f Hz", who, st.Seconds, st.RMS, st.Peak, st.FreqHz)
	if st.Seconds < 1 || st.RMS < 0.01 || st.Peak < 0.05 {
		t.Fatalf("%s's recording is silent or short: %+v", who, st)
	}
	if math.Abs(st.FreqHz-wantHz) > wantHz*0.15 {
		t.Fatalf("%s heard %.0f Hz, want the other side's %.0f Hz tone", who, st.FreqHz, wantHz)
	}
}

// relayedCall makes 2001 call 2002, keeps the call up for hold, hangs up,
// and returns the call record once it has its media legs.
func relayedCall(t *testing.T, s *Server, a, b *Baresip, hold time.Duration) mediaCall {
	t.Helper()
	if err := a.Dial("sip:2002@" + s.Addr); err != nil {
		t.Fatalf("dial: %v\n%s", err, a.Log())
	}
	a.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	b.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	time.Sleep(hold)
	if err := a.Hangup(); err != nil {
		t.Fatalf("hangup: %v", err)
	}
	b.WaitEvent("CALL_CLOSED", 0, 10*time.Second)
	a.WaitEvent("CALL_CLOSED", 0, 10*time.Second)
	return lastMediaCall(t, s, "NORMAL_CLEARING and media legs", func(c mediaCall) bool {
		return c.Cause == "NORMAL_CLEARING" && len(c.Media) == 2
	})
}

// checkRelayed asserts that both parties sent their RTP to the relay and
// got the other's from it: each leg counted packets in and out (a phone
// only sends to the relay's port if the SDP it received named it), from
// the address it latched.
func checkRelayed(t *testing.T, c mediaCall) {
	t.Helper()
	for _, l := range c.Media {
		t.Logf("%s leg: signalled %s, SIP %s, latched %s, in %d pkts, out %d pkts, stray %d, malformed %d, codec %s",
			l.Side, l.SignalledAddr, l.SIPSource, l.LatchedAddr, l.PacketsIn, l.PacketsOut, l.Stray, l.Malformed, l.Codec)
		if !l.Relayed || l.PacketsIn < 50 || l.PacketsOut < 50 || l.LatchedAddr == "" || l.BytesIn == 0 {
			t.Fatalf("%s leg did not carry audio through the relay: %+v", l.Side, l)
		}
	}
	if c.Media[0].Side != "caller" || c.Media[1].Side != "callee" {
		t.Fatalf("legs out of order: %+v", c.Media)
	}
}

// TestMediaRelayAlways: with --media-relay always, baresip 2001 calls
// baresip 2002: each phone's tone reaches the other (recordings), each
// phone sent its RTP to the relay (the SDP each got named the relay: the
// relay counted packets in on both legs), and the call record keeps the
// media counters.
func TestMediaRelayAlways(t *testing.T) {
	s := callSetup(t, "--media-relay", "always", "--rtp-ports", "41000-41099")
	a, b, recA, recB := mediaPhones(t, s)
	c := relayedCall(t, s, a, b, 2*time.Second)
	checkRelayed(t, c)
	a.Stop()
	b.Stop()
	checkTone(t, recB, "2002", 440)
	checkTone(t, recA, "2001", 1000)
}
