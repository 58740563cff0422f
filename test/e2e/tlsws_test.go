package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWSSFlowReuse: a phone registers over WSS with a JsSIP-style contact
// (sip:2002@xyz.invalid;transport=ws) that nothing can reach; `reg` shows
// the binding over WSS from the connection's address. A call from a UDP
// phone (SIPp) reaches it down the WebSocket it registered on, is
// answered and hung up. When the WebSocket closes, the binding is marked
// unreachable within 1 s with a connection_closed journal entry naming
// the WebSocket, and the next call gets 480 USER_NOT_REGISTERED.
func TestWSSFlowReuse(t *testing.T) {
	Need(t, "sipp")
	s := Start(t, "", "--wss", "127.0.0.1:0")
	s.AddExt("2001", "secret-2001")
	s.AddExt("2002", "secret-2002")
	addr := s.ListenerAddr("wss")
	if addr == "" {
		t.Fatalf("no wss listener in the start line:\n%s", s.Log())
	}
	u, err := dialWS(t, s, "wss", addr, "https://127.0.0.1")
	if err != nil {
		t.Fatalf("WSS dial: %v\n%s", err, tail(s.Log(), 3000))
	}
	if r := u.register("2002", "secret-2002", 300); r.Status != 200 {
		t.Fatalf("REGISTER over WSS: %d\n%s\nserver log:\n%s", r.Status, r.Raw, tail(s.Log(), 3000))
	}
	regs := s.Regs("2002")
	if len(regs) != 1 || regs[0].Transport != "WSS" || regs[0].Source != u.conn.LocalAddr().String() {
		t.Fatalf("binding: %+v, want one over WSS from %s", regs, u.conn.LocalAddr())
	}

	// A call from a UDP phone goes down the WebSocket.
	type result struct {
		invite string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		inv, err := u.answerCall(20 * time.Second)
		got <- result{inv, err}
	}()
	r := SIPp(t, s.Addr, "call-uac-webrtc.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")), "-d", "300")
	res := <-got
	if res.err != nil || r.Code != 0 {
		t.Fatalf("call UDP -> WSS: sipp exit %d, ws side: %v\n%s\nserver log:\n%s", r.Code, res.err, r.Output, tail(s.Log(), 3000))
	}
	if !strings.HasPrefix(res.invite, "INVITE sip:2002@xyz.invalid") || !strings.Contains(res.invite, "Via: SIP/2.0/WSS") {
		t.Fatalf("INVITE over the WebSocket:\n%s", res.invite)
	}

	// Close the WebSocket: unreachable within 1 s, journaled.
	closed := time.Now()
	u.conn.Close()
	WaitFor(t, 1500*time.Millisecond, "the binding marked unreachable", func() bool {
		regs := s.Regs("2002")
		return len(regs) == 1 && regs[0].PingStatus == "unreachable"
	})
	if d := time.Since(closed); d > 1500*time.Millisecond {
		t.Errorf("marked unreachable after %s", d)
	}
	waitJournal(t, s, "2002", "connection_closed", 1)
	ev := journalEvents(t, s, "--ext", "2002", "--cause", "connection_closed")
	if d, _ := ev[0]["detail"].(string); !strings.Contains(d, "registered over WSS from 127.0.0.1") || !strings.Contains(d, "WebSocket closed at") {
		t.Errorf("journal detail: %q", d)
	}

	// The next call gets 480 without the server dialling the browser.
	r = SIPp(t, s.Addr, "doctor-call-480.xml", 1, "-inf", CSV(t, "SEQUENTIAL", []string{"2001", "2002", "[authentication username=2001 password=secret-2001]"}))
	if r.Code != 0 {
		t.Fatalf("call to the closed WSS binding: want 480, sipp exit %d\n%s", r.Code, r.Output)
	}
	if !strings.Contains(r.Messages, "USER_NOT_REGISTERED") {
		t.Errorf("480 without USER_NOT_REGISTERED:\n%s", tail(r.Messages, 2000))
	}
}

// TestTLSBaresipCall: two baresip phones register over TLS
// (;transport=tls), trusting the server's self-signed certificate through
// baresip's sip_cafile; `reg` shows them over TLS; 2001 calls 2002, the
// call is established on both sides, 2001 hangs up, the BYE reaches 2002
// over its TLS connection and the record says NORMAL_CLEARING.
func TestTLSBaresipCall(t *testing.T) {
	s := callSetup(t)
	tlsAddr := s.ListenerAddr("tls")
	if tlsAddr == "" {
		t.Fatalf("no tls listener in the start line:\n%s", s.Log())
	}
	ca := filepath.Join(s.Data, "tls-cert.pem")
	a := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2001", "secret-2001", tlsAddr, "tls")},
		Config: []string{"sip_cafile " + ca, "ausrc_srate 48000", "ausrc_channels 2"}})
	b := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2002", "secret-2002", tlsAddr, "tls", "answermode=auto")},
		Config: []string{"sip_cafile " + ca, "ausrc_srate 48000", "ausrc_channels 2"}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caller log:\n%s\ncallee log:\n%s\nserver log:\n%s", tail(a.Log(), 3000), tail(b.Log(), 3000), tail(s.Log(), 4000))
			t.Logf("journal:\n%s", s.CLI("journal"))
		}
	})
	a.WaitRegistered("2001@127.0.0.1", 15*time.Second)
	b.WaitRegistered("2002@127.0.0.1", 15*time.Second)
	for _, ext := range []string{"2001", "2002"} {
		if regs := s.Regs(ext); len(regs) != 1 || regs[0].Transport != "TLS" {
			t.Fatalf("%s: %+v, want one binding over TLS", ext, regs)
		}
	}
	if err := a.Dial("sip:2002@" + tlsAddr); err != nil {
		t.Fatalf("dial: %v\n%s", err, a.Log())
	}
	a.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	b.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	if err := a.Hangup(); err != nil {
		t.Fatalf("hangup: %v", err)
	}
	b.WaitEvent("CALL_CLOSED", 0, 10*time.Second)
	c := waitCall(t, s, "NORMAL_CLEARING", func(c CallRecord) bool { return c.Cause == "NORMAL_CLEARING" })
	if c.From != "2001" || c.To != "2002" || c.HangupBy != "caller" {
		t.Fatalf("call record %+v", c)
	}
}
