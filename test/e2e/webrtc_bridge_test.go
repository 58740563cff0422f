package e2e

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/test/webrtc"
)

// bridgeLeg is one media leg of a bridged call in `calls --json`.
type bridgeLeg struct {
	Side       string `json:"side"`
	Relayed    bool   `json:"relayed"`
	WebRTC     bool   `json:"webrtc"`
	DTLS       string `json:"dtls"`
	Codec      string `json:"codec"`
	PacketsIn  uint64 `json:"packets_in"`
	PacketsOut uint64 `json:"packets_out"`
}

type bridgeCall struct {
	ID        int64       `json:"id"`
	CallID    string      `json:"call_id"`
	From      string      `json:"from"`
	To        string      `json:"to"`
	SIPStatus int         `json:"sip_status"`
	Cause     string      `json:"cause"`
	Detail    string      `json:"detail"`
	Media     []bridgeLeg `json:"media"`
}

// lastBridgeCall polls `calls --limit 1 --json` until ok accepts the newest call.
func lastBridgeCall(t *testing.T, s *Server, what string, ok func(bridgeCall) bool) bridgeCall {
	t.Helper()
	var last []bridgeCall
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		last = nil
		s.JSON(&last, "calls", "--limit", "1")
		if len(last) == 1 && ok(last[0]) {
			return last[0]
		}
	}
	t.Fatalf("no call record %s; last %+v\nserver log:\n%s", what, last, s.Log())
	return bridgeCall{}
}

// checkBridged asserts that the call record shows both legs relayed, the browser's leg
// WebRTC with a completed DTLS handshake, and packets both ways on both legs.
func checkBridged(t *testing.T, c bridgeCall, browserSide string) {
	t.Helper()
	if len(c.Media) != 2 {
		t.Fatalf("call record without two media legs: %+v", c)
	}
	for _, l := range c.Media {
		web := l.Side == browserSide
		if !l.Relayed || l.WebRTC != web || l.PacketsIn == 0 || l.PacketsOut == 0 || (web && l.DTLS != "dtls-connected") ||
			!strings.Contains(l.Codec, "PCM") {
			t.Fatalf("media leg %+v of %+v: want relayed, webrtc=%v, DTLS connected on the browser's leg, G.711, packets both ways", l, c, web)
		}
	}
}

// newRecordings returns the WAV files of what baresip received (in dir) that are not in
// seen, largest first.
func newRecordings(dir string, seen []string) []string {
	var out []string
	for _, f := range Recordings(dir, "dec") {
		if !slices.Contains(seen, f) {
			out = append(out, f)
		}
	}
	return out
}

// checkHeard asserts that the recording holds sound (the browser's fake microphone beeps).
func checkHeard(t *testing.T, files []string, who string) {
	t.Helper()
	if len(files) == 0 {
		t.Fatalf("%s recorded nothing it received", who)
	}
	st, err := ReadWAVStats(files[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s received %.1f s of audio: RMS %.4f, peak %.3f", who, st.Seconds, st.RMS, st.Peak)
	if st.Seconds < 1 || st.Peak < 0.05 || st.RMS < 0.003 {
		t.Fatalf("%s's recording is silent or short: %+v", who, st)
	}
}

// TestBrowserCallsBaresip: with the media relay on (auto, the default), a JsSIP phone in
// headless Chromium and a baresip phone over UDP call each other through the WebRTC
// bridge: DTLS-SRTP to the browser, plain RTP to baresip, G.711 passed through. Both
// receive audio (the browser's getStats inbound bytes, baresip's recording), the browser's
// RFC 4733 DTMF reaches baresip, and the call record shows the bridged legs.
func TestBrowserCallsBaresip(t *testing.T) {
	t.Parallel()
	base := webrtc.ServePage(t) // skips (or fails under CI) without JsSIP
	s := Start(t, "", "--wss", "127.0.0.1:0", "--rtp-ports", "12500-12699")
	addr := s.ListenerAddr("wss")
	if addr == "" {
		t.Fatalf("no WSS listener in the start line:\n%s", s.Log())
	}
	s.AddExt("2001", webrtcPW)
	s.AddExt("2003", webrtcPW)
	s.AddExt("2004", webrtcPW)
	bctx := webrtc.Launch(t, s.CertSPKIHash(t), 3*time.Minute)
	a := webrtc.Open(t, bctx, base, "wss://"+addr, "2001", webrtcPW, s.Domain)
	a.Wait("registered", 15*time.Second, func(st webrtc.State) bool { return st.Registered })
	rec := t.TempDir()
	udp := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2003", webrtcPW, s.Addr, "udp", "answermode=auto")},
		Modules: []string{"sndfile"}, Config: []string{"audio_source ausine,1000", "ausrc_srate 48000", "ausrc_channels 2", "snd_path " + rec}})
	udp.WaitRegistered("2003@"+s.Domain, 15*time.Second)

	// audioBothWays waits for the browser to have received RTP (baresip's tone) and sent
	// some, then holds the call long enough for baresip to record a second of audio.
	audioBothWays := func(t *testing.T) {
		t.Helper()
		var st webrtc.Stats
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if st = a.Stats(); st.BytesReceived > 1000 && st.BytesSent > 1000 {
				break
			}
		}
		if st.BytesReceived <= 1000 || st.BytesSent <= 1000 {
			t.Fatalf("the browser's RTP counters: %+v (server log:\n%s)", st, s.Log())
		}
		time.Sleep(2 * time.Second)
	}

	t.Run("browser calls baresip", func(t *testing.T) {
		a.Eval(`phone.call("2003")`)
		udp.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
		a.Wait("confirmed", 10*time.Second, func(st webrtc.State) bool { return st.Confirmed })
		audioBothWays(t)
		a.Eval(`phone.dtmf("5")`)
		if ev := udp.WaitEvent("CALL_DTMF_START", 0, 5*time.Second); !strings.Contains(ev.Param, "5") {
			t.Fatalf("baresip received DTMF %q, want 5", ev.Param)
		}
		a.Eval(`phone.hangup()`)
		udp.WaitEvent("CALL_CLOSED", 0, 10*time.Second)
		c := lastBridgeCall(t, s, "ended with media legs", func(c bridgeCall) bool { return c.Cause == "NORMAL_CLEARING" && len(c.Media) == 2 })
		if c.From != "2001" || c.To != "2003" || c.SIPStatus != 200 {
			t.Fatalf("call record %+v", c)
		}
		checkBridged(t, c, "caller")
		checkHeard(t, newRecordings(rec, nil), "baresip 2003")
	})

	t.Run("baresip calls browser", func(t *testing.T) {
		seen := Recordings(rec, "dec")
		if err := udp.Dial("sip:2001@" + s.Addr); err != nil {
			t.Fatalf("dial: %v", err)
		}
		a.Wait("ringing", 10*time.Second, func(st webrtc.State) bool { return st.Incoming == 1 })
		a.Eval(`phone.answer()`)
		udp.WaitEvent("CALL_ESTABLISHED", 1, 10*time.Second)
		a.Wait("confirmed", 10*time.Second, func(st webrtc.State) bool { return st.Confirmed })
		audioBothWays(t)
		if err := udp.Hangup(); err != nil {
			t.Fatalf("hangup: %v", err)
		}
		a.Wait("ended", 10*time.Second, func(st webrtc.State) bool { return st.Ended })
		c := lastBridgeCall(t, s, "ended with media legs", func(c bridgeCall) bool {
			return c.From == "2003" && c.Cause == "NORMAL_CLEARING" && len(c.Media) == 2
		})
		checkBridged(t, c, "callee")
		checkHeard(t, newRecordings(rec, seen), "baresip 2003")
	})

	t.Run("no common codec", func(t *testing.T) {
		// A phone that offers only G.722 cannot reach the browser without transcoding: 488
		// media_codec_mismatch naming what it offered and what the bridge carries.
		g722 := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2004", webrtcPW, s.Addr, "udp", "audio_codecs=G722/16000")},
			Modules: []string{"g722"}})
		g722.WaitRegistered("2004@"+s.Domain, 15*time.Second)
		n := a.State().Incoming
		if err := g722.Dial("sip:2001@" + s.Addr); err != nil {
			t.Fatalf("dial: %v", err)
		}
		if ev := g722.WaitEvent("CALL_CLOSED", 0, 10*time.Second); !strings.Contains(ev.Param, "488") {
			t.Fatalf("the G.722 phone's call closed with %q, want 488", ev.Param)
		}
		c := lastBridgeCall(t, s, "refused", func(c bridgeCall) bool { return c.From == "2004" })
		if c.SIPStatus != 488 || c.Cause != "media_codec_mismatch" || !strings.Contains(c.Detail, "G722") || !strings.Contains(c.Detail, "PCMU/8000") {
			t.Fatalf("call record %+v", c)
		}
		if st := a.State(); st.Incoming != n {
			t.Fatalf("the browser rang for a call it could not hear: %+v", st)
		}
	})
}

// TestBrowserNoDTLS: a browser whose DTLS handshake never happens. The server's SIP
// listens on 127.0.0.1 only, so the relay binds its ports there, and --media-ip
// 127.0.0.99 writes an address into the SDP that nothing listens on: the browser's ICE
// checks reach nobody (the relay is ICE-lite and never sends checks itself), so no
// DTLS handshake, no SRTP keys, no audio. A JsSIP phone in headless Chromium calls a
// baresip phone; SIP works (the call is answered), the bridge reports "failed" after its
// handshake timeout, the browser hangs up. The call record's browser leg is WebRTC,
// DTLS "failed" (no ICE check arrived, so not even "ice-connected"), no packets in; `doctor call --id ID` (and `doctor call 2001 2003`)
// names the browser's direction with webrtc_no_dtls and the fix (open --rtp-ports, set
// --media-ip to an address the browser reaches), and exits 1.
func TestBrowserNoDTLS(t *testing.T) {
	t.Parallel()
	base := webrtc.ServePage(t) // skips (or fails under CI) without JsSIP
	s := Start(t, "", "--wss", "127.0.0.1:0", "--rtp-ports", "12700-12799", "--media-ip", "127.0.0.99")
	addr := s.ListenerAddr("wss")
	if addr == "" {
		t.Fatalf("no WSS listener in the start line:\n%s", s.Log())
	}
	if !strings.Contains(s.Log(), "media_ip=127.0.0.99") {
		t.Fatalf("the relay does not advertise --media-ip 127.0.0.99:\n%s", s.Log())
	}
	s.AddExt("2001", webrtcPW)
	s.AddExt("2003", webrtcPW)
	bctx := webrtc.Launch(t, s.CertSPKIHash(t), 3*time.Minute)
	a := webrtc.Open(t, bctx, base, "wss://"+addr, "2001", webrtcPW, s.Domain)
	a.Wait("registered", 15*time.Second, func(st webrtc.State) bool { return st.Registered })
	udp := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2003", webrtcPW, s.Addr, "udp", "answermode=auto")},
		Config: []string{"audio_source ausine,1000", "ausrc_srate 48000", "ausrc_channels 2"}})
	udp.WaitRegistered("2003@"+s.Domain, 15*time.Second)

	a.Eval(`phone.call("2003")`)
	udp.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	a.Wait("confirmed", 10*time.Second, func(st webrtc.State) bool { return st.Confirmed })

	// The bridge gives the handshake 10 s after the SDP exchange, then reports "failed"
	// (live, in calls --active).
	var live []bridgeCall
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		live = nil
		s.JSON(&live, "calls", "--active")
		if len(live) == 1 && len(live[0].Media) == 2 && live[0].Media[0].DTLS == "failed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the browser's leg never reported a failed handshake: %+v\nserver log:\n%s", live, s.Log())
		}
	}
	if st := a.Stats(); st.BytesReceived != 0 {
		t.Fatalf("the browser received audio without a DTLS handshake: %+v", st)
	}
	a.Eval(`phone.hangup()`)
	udp.WaitEvent("CALL_CLOSED", 0, 10*time.Second)

	c := lastBridgeCall(t, s, "ended with media legs", func(c bridgeCall) bool { return c.Cause == "NORMAL_CLEARING" && len(c.Media) == 2 })
	if c.From != "2001" || c.To != "2003" || c.SIPStatus != 200 {
		t.Fatalf("call record %+v", c)
	}
	id := strconv.FormatInt(c.ID, 10)
	var shown bridgeCall
	s.JSON(&shown, "calls", "show", id)
	if len(shown.Media) != 2 {
		t.Fatalf("calls show %s --json: media %+v", id, shown.Media)
	}
	browser, phone := shown.Media[0], shown.Media[1]
	t.Logf("browser leg %+v", browser)
	t.Logf("phone leg %+v", phone)
	// "failed", not "ice-connected": no ICE check reached the relay (127.0.0.99 is unreachable).
	if browser.Side != "caller" || !browser.Relayed || !browser.WebRTC || browser.DTLS != "failed" ||
		browser.PacketsIn != 0 || browser.PacketsOut != 0 {
		t.Fatalf("the browser's leg: %+v, want relayed WebRTC, DTLS failed (no ICE check arrived), no packets either way", browser)
	}
	if phone.Side != "callee" || phone.WebRTC {
		t.Fatalf("the phone's leg: %+v", phone)
	}

	const fix = "open the --rtp-ports range (UDP) in the server's firewall and set `serve --media-ip` to an address the browser reaches"
	for _, args := range [][]string{{"doctor", "call", "--id", id}, {"doctor", "call", "2001", "2003"}} {
		r, code := doctorCallMedia(t, s, args...)
		if code != 1 || r.WouldWork || r.Cause != "webrtc_no_dtls" ||
			!strings.Contains(r.Verdict, "2001 → 2003: no audio from 2001: its browser's DTLS handshake with the relay never completed") {
			t.Fatalf("%s: exit %d, %+v", strings.Join(args, " "), code, r)
		}
		var named bool
		for _, f := range r.Findings {
			if f.Check == "media" && f.Status == "fail" && f.Cause == "webrtc_no_dtls" && strings.HasPrefix(f.Evidence[0], "2001 → 2003:") &&
				strings.Contains(f.Fix, fix) {
				named = true
			}
		}
		if !named {
			t.Fatalf("%s: no webrtc_no_dtls finding with the fix for 2001's direction: %+v", strings.Join(args, " "), r.Findings)
		}
	}
	if out, _, code := s.TryCLI("doctor", "call", "--id", id); code != 1 || !strings.Contains(out, "webrtc_no_dtls") || !strings.Contains(out, fix) {
		t.Fatalf("doctor call --id %s: exit %d:\n%s", id, code, out)
	} else {
		t.Logf("doctor call --id %s:\n%s", id, out)
	}
}
