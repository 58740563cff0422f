package e2e

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/test/webrtc"
)

// webrtcCall is the part of `switchboard calls --json` the tests read.
type webrtcCall struct {
	CallID    string `json:"call_id"`
	From      string `json:"from"`
	To        string `json:"to"`
	Transport string `json:"transport"`
	Active    bool   `json:"active"`
	State     string `json:"state"`
	SIPStatus int    `json:"sip_status"`
	Cause     string `json:"cause"`
	HangupBy  string `json:"hangup_by"`
	Detail    string `json:"detail"`
}

// lastCall polls `calls --limit 1 --json` until ok accepts the newest call.
func lastWebRTCCall(t *testing.T, s *Server, what string, ok func(webrtcCall) bool) webrtcCall {
	t.Helper()
	var last []webrtcCall
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		last = nil
		s.JSON(&last, "calls", "--limit", "1")
		if len(last) == 1 && ok(last[0]) {
			return last[0]
		}
	}
	t.Fatalf("no call record %s; last %+v", what, last)
	return webrtcCall{}
}

// webrtcPW is every test extension's password.
const webrtcPW = "webrtc-Secret-9"

func TestBrowserPhones(t *testing.T) {
	t.Parallel()
	base := webrtc.ServePage(t) // skips (or fails under CI) without JsSIP
	// Without a media relay: a browser and a UDP phone are refused with 488
	// (TestBrowserCallsBaresip has the relay's WebRTC bridge connect them).
	s := Start(t, "", "--wss", "127.0.0.1:0", "--media-relay", "never")
	addr := s.ListenerAddr("wss")
	if addr == "" {
		t.Fatalf("no WSS listener in the start line:\n%s", s.Log())
	}
	for _, ext := range []string{"2001", "2002", "2003", "2004"} {
		s.AddExt(ext, webrtcPW)
	}
	spki := s.CertSPKIHash(t)
	if got := webrtc.SPKIHash(t, addr); got != spki {
		t.Fatalf("the WSS port serves a key hashing to %s, the data directory's certificate to %s", got, spki)
	}
	bctx := webrtc.Launch(t, spki, 3*time.Minute)
	wss := "wss://" + addr
	_, wssPort, _ := net.SplitHostPort(addr)
	a := webrtc.Open(t, bctx, base, wss, "2001", webrtcPW, s.Domain)
	b := webrtc.Open(t, bctx, base, wss, "2002", webrtcPW, s.Domain)
	registered := func(st webrtc.State) bool { return st.Registered }
	a.Wait("registered", 15*time.Second, registered)
	b.Wait("registered", 15*time.Second, registered)
	for _, r := range s.Regs("2002") {
		if r.Transport != "WSS" || !strings.Contains(r.Contact, ".invalid") {
			t.Fatalf("2002's registration %+v, want a WSS binding with JsSIP's .invalid contact", r)
		}
	}

	t.Run("browser to browser", func(t *testing.T) {
		a.Eval(`phone.call("2002")`)
		b.Wait("ringing", 10*time.Second, func(st webrtc.State) bool { return st.Incoming == 1 })
		b.Eval(`phone.answer()`)
		confirmed := func(st webrtc.State) bool { return st.Confirmed }
		sa0 := a.Wait("confirmed", 10*time.Second, confirmed)
		sb0 := b.Wait("confirmed", 10*time.Second, confirmed)
		// Media stays on loopback: only 127.0.0.1 candidates were offered.
		for _, st := range []webrtc.State{sa0, sb0} {
			if len(st.SDPCandidates) == 0 {
				t.Fatalf("no ICE candidate in the SDP: %+v", st)
			}
			for _, c := range st.SDPCandidates {
				if c != "127.0.0.1" {
					t.Fatalf("ICE candidate %s in the SDP: %+v", c, st)
				}
			}
		}
		// WSS on both sides: one Record-Route, naming the WSS listener.
		if rr := sb0.RecordRoute; len(rr) != 1 || !strings.Contains(rr[0], ":"+wssPort+";transport=wss;lr") {
			t.Fatalf("the callee browser got Record-Route %q, want one entry with the WSS port %s", rr, wssPort)
		}
		// Audio flows both ways: each browser receives RTP.
		var sa, sb webrtc.Stats
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			sa, sb = a.Stats(), b.Stats()
			if sa.BytesReceived > 0 && sb.BytesReceived > 0 {
				break
			}
		}
		if sa.BytesReceived == 0 || sb.BytesReceived == 0 {
			t.Fatalf("RTP bytes received: 2001 %+v, 2002 %+v", sa, sb)
		}
		rec := lastWebRTCCall(t, s, "answered", func(c webrtcCall) bool { return c.State == "up" })
		if rec.From != "2001" || rec.To != "2002" || rec.Transport != "WSS" {
			t.Fatalf("call record %+v", rec)
		}
		a.Eval(`phone.hangup()`)
		st := b.Wait("ended", 5*time.Second, func(st webrtc.State) bool { return st.Ended })
		if st.Originator != "remote" {
			t.Fatalf("2002's call ended by %q, want remote: %+v", st.Originator, st)
		}
		rec = lastWebRTCCall(t, s, "ended NORMAL_CLEARING", func(c webrtcCall) bool { return !c.Active })
		if rec.Cause != "NORMAL_CLEARING" || rec.SIPStatus != 200 || rec.HangupBy != "caller" {
			t.Fatalf("call record %+v", rec)
		}

		// The other direction of in-dialog routing: the callee hangs up.
		first := rec.CallID
		a.Eval(`phone.call("2002")`)
		b.Wait("ringing again", 10*time.Second, func(st webrtc.State) bool { return st.Incoming == 2 })
		b.Eval(`phone.answer()`)
		a.Wait("confirmed again", 10*time.Second, confirmed)
		b.Wait("confirmed again", 10*time.Second, confirmed)
		b.Eval(`phone.hangup()`)
		st = a.Wait("ended by the callee", 5*time.Second, func(st webrtc.State) bool { return st.Ended })
		if st.Originator != "remote" {
			t.Fatalf("2001's call ended by %q, want remote: %+v", st.Originator, st)
		}
		rec = lastWebRTCCall(t, s, "second call ended", func(c webrtcCall) bool { return !c.Active && c.CallID != first })
		if rec.Cause != "NORMAL_CLEARING" || rec.HangupBy != "callee" {
			t.Fatalf("call record %+v", rec)
		}
	})

	t.Run("browser to UDP phone without a media relay", func(t *testing.T) {
		udp := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2003", webrtcPW, s.Addr, "udp")}})
		udp.WaitRegistered("2003@"+s.Domain, 15*time.Second)
		a.Eval(`phone.call("2003")`)
		st := a.Wait("refused", 10*time.Second, func(st webrtc.State) bool { return st.Failed })
		if st.Status != 488 || !strings.Contains(st.Reason, `cause=88`) || !strings.Contains(st.Reason, "webrtc_needs_media_relay") ||
			!strings.Contains(st.Warning, "media relay") {
			t.Fatalf("the browser's call to a UDP phone: %+v", st)
		}
		rec := lastWebRTCCall(t, s, "488", func(c webrtcCall) bool { return !c.Active && c.To == "2003" })
		if rec.SIPStatus != 488 || rec.Cause != "webrtc_needs_media_relay" || !strings.Contains(rec.Detail, "media relay") {
			t.Fatalf("call record %+v", rec)
		}
		for _, ev := range udp.Events() {
			if ev.Type == "CALL_INCOMING" {
				t.Fatalf("the UDP phone rang for a call refused for want of a media relay")
			}
		}
		// And the other way: the UDP phone's plain-RTP call to a browser.
		if err := udp.Dial("sip:2001@" + s.Addr); err != nil {
			t.Fatalf("dial: %v", err)
		}
		if ev := udp.WaitEvent("CALL_CLOSED", 0, 10*time.Second); !strings.Contains(ev.Param, "488") {
			t.Fatalf("baresip's call to the browser closed with %q, want 488", ev.Param)
		}
		if st := a.State(); st.Incoming != 0 {
			t.Fatalf("the browser rang for a call refused for want of a media relay: %+v", st)
		}
		rec = lastWebRTCCall(t, s, "488 from the UDP phone", func(c webrtcCall) bool { return !c.Active && c.From == "2003" })
		if rec.SIPStatus != 488 || rec.Cause != "webrtc_needs_media_relay" {
			t.Fatalf("call record %+v", rec)
		}
		var doc struct {
			Cause   string `json:"cause"`
			Verdict string `json:"verdict"`
		}
		out, _, code := s.TryCLI("doctor", "call", "2001", "2003", "--json")
		if code != 1 {
			t.Fatalf("doctor call 2001 2003 exited %d, want 1 (the call fails)", code)
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("doctor call --json: %v\n%s", err, out)
		}
		if doc.Cause != "webrtc_needs_media_relay" || !strings.Contains(doc.Verdict, "media relay") {
			t.Fatalf("doctor call 2001 2003: %+v", doc)
		}
	})

	t.Run("TCP phone to browser", func(t *testing.T) {
		// A TCP phone offering WebRTC media (SIPp with a DTLS/ICE SDP, as a
		// WebRTC gateway would) calls the browser: the transport changes,
		// so the browser sees two Record-Routes, its own WSS side first;
		// the answer, the ACK and the caller's BYE cross between TCP and
		// the WebSocket.
		n := b.State().Incoming
		done := make(chan SIPpResult, 1)
		go func() {
			done <- SIPp(t, s.Addr, "call-uac-webrtc.xml", 1, "-t", "t1",
				"-inf", CSV(t, "SEQUENTIAL", callerRow("2003", webrtcPW, "2002")), "-d", "500")
		}()
		var st webrtc.State
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if st = b.State(); st.Incoming == n+1 {
				break
			}
			select {
			case r := <-done:
				t.Fatalf("SIPp over TCP ended (exit %d) before the browser rang:\n%s", r.Code, r.Output)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("the browser did not ring within 15 s: %+v\nSIPp: %+v", st, <-done)
			}
		}
		_, sipPort, _ := net.SplitHostPort(s.Addr)
		if rr := st.RecordRoute; len(rr) != 2 || !strings.Contains(rr[0], ":"+wssPort+";transport=wss;lr") ||
			!strings.Contains(rr[1], ":"+sipPort+";transport=tcp;lr") {
			t.Errorf("the browser got Record-Route %q, want its WSS side (port %s) then the TCP side (port %s)", rr, wssPort, sipPort)
		}
		b.Eval(`phone.answer()`)
		r := <-done
		if r.Code != 0 {
			t.Fatalf("SIPp over TCP calling the browser: exit %d\n%s", r.Code, r.Output)
		}
		st = b.Wait("ended by the TCP phone", 10*time.Second, func(st webrtc.State) bool { return st.Ended })
		if st.Originator != "remote" {
			t.Fatalf("the browser's call ended by %q: %+v", st.Originator, st)
		}
		rec := lastWebRTCCall(t, s, "TCP call ended", func(c webrtcCall) bool { return !c.Active && c.From == "2003" && c.To == "2002" })
		if rec.Transport != "TCP" || rec.Cause != "NORMAL_CLEARING" || rec.HangupBy != "caller" {
			t.Fatalf("call record %+v", rec)
		}
	})

	t.Run("certificate not trusted", func(t *testing.T) {
		// A browser that does not trust the self-signed certificate
		// refuses the WebSocket with a TLS alert and tells the page only
		// that it closed; the server journals the failed handshake.
		plain := webrtc.Launch(t, "", time.Minute)
		c := webrtc.Open(t, plain, base, wss, "2004", webrtcPW, s.Domain)
		st := c.Wait("refused by the browser", 10*time.Second, func(st webrtc.State) bool { return st.Disconnected > 0 })
		if st.Registered || st.Connected {
			t.Fatalf("a browser that does not trust the certificate connected: %+v", st)
		}
		var evs []map[string]any
		WaitFor(t, 5*time.Second, "tls_handshake_failed in the journal", func() bool {
			evs = journalEvents(t, s, "--cause", "tls_handshake_failed")
			return len(evs) > 0
		})
		d, _ := evs[0]["detail"].(string)
		if evs[0]["transport"] != "WSS" || !strings.Contains(d, "127.0.0.1") || !strings.Contains(d, "remote error") {
			t.Fatalf("journal event %v: want a WSS handshake from 127.0.0.1 refused by the browser's alert", evs[0])
		}
		t.Logf("journaled: %s", d)
		// The doctor of the extension that never registered points at it.
		out, _, _ := s.TryCLI("doctor", "2004")
		if v := strings.SplitN(out, "\n", 2)[0]; !strings.Contains(v, "tls_handshake_failed") || !strings.Contains(v, "127.0.0.1") {
			t.Fatalf("doctor 2004's verdict does not name the refused handshake:\n%s", out)
		}
	})

	t.Run("tab closed", func(t *testing.T) {
		b.Close()
		closed := time.Now()
		for {
			regs := s.Regs("2002")
			if len(regs) == 1 && strings.EqualFold(regs[0].PingStatus, "unreachable") {
				break
			}
			if time.Since(closed) > time.Second {
				t.Fatalf("1 s after its tab closed, 2002's registration is %+v", regs)
			}
			time.Sleep(20 * time.Millisecond)
		}
		a.Eval(`phone.call("2002")`)
		st := a.Wait("refused", 10*time.Second, func(st webrtc.State) bool { return st.Failed })
		if st.Status != 480 {
			t.Fatalf("a call to the closed tab: %+v", st)
		}
		out, _, _ := s.TryCLI("doctor", "2002")
		if !strings.Contains(out, "WebSocket") || !strings.Contains(out, "closed") {
			t.Fatalf("doctor 2002 does not name the closed WebSocket:\n%s", out)
		}
	})
}
