package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestCallUDPToTCP: baresip on UDP (2001) calls baresip registered over TCP
// (2002, auto answer). The INVITE reaches the TCP phone down the
// connection it registered over, with two Record-Routes (RFC 5658: the
// TCP side, transport=tcp, above the UDP side); the call is answered; the
// callee hangs up and its BYE, sent over TCP along that route set, reaches
// the UDP phone; the record says NORMAL_CLEARING, hung up by the callee.
func TestCallUDPToTCP(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	tr := startTrace(t, s, "--json", "--full", "--method", "INVITE", "--duration", "60s")
	tone := []string{"ausrc_srate 48000", "ausrc_channels 2"} // ausine plays 48 kHz only
	a := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2001", "secret-2001", s.Addr, "udp")}, Config: tone})
	b := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2002", "secret-2002", s.Addr, "tcp", "answermode=auto")},
		Config: tone})
	a.WaitRegistered("2001@127.0.0.1", 15*time.Second)
	b.WaitRegistered("2002@127.0.0.1", 15*time.Second)
	if regs := s.Regs("2002"); len(regs) != 1 || regs[0].Transport != "TCP" {
		t.Fatalf("2002's registrations %+v, want one over TCP", regs)
	}

	if err := a.Dial("sip:2002@" + s.Addr); err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("trace:\n%s\nserver log:\n%s\ncallee:\n%s", tr.stdout(), s.Log(), b.Log())
		}
	})
	a.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	b.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	if err := b.Hangup(); err != nil {
		t.Fatalf("hangup: %v", err)
	}
	a.WaitEvent("CALL_CLOSED", 0, 10*time.Second)
	b.WaitEvent("CALL_CLOSED", 0, 10*time.Second)
	c := waitCall(t, s, "NORMAL_CLEARING", func(c CallRecord) bool { return c.Cause == "NORMAL_CLEARING" })
	if c.From != "2001" || c.To != "2002" || c.SIPStatus != 200 || c.HangupBy != "callee" {
		t.Fatalf("call record %+v", c)
	}

	// The INVITE the TCP phone got.
	var inv string
	WaitFor(t, 5*time.Second, "the forwarded INVITE in the trace", func() bool {
		for _, m := range traceMsgs(t, tr.stdout()) {
			if m.Direction == "out" && m.Transport == "TCP" && strings.HasPrefix(m.FirstLine, "INVITE ") {
				inv = m.Message
				return true
			}
		}
		return false
	})
	var rr []string
	for _, line := range strings.Split(inv, "\r\n") {
		if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "Record-Route") {
			rr = append(rr, strings.Split(strings.TrimSpace(v), ",")...)
		}
	}
	if len(rr) != 2 || !strings.Contains(rr[0], ";transport=tcp;lr") || strings.Contains(rr[1], "transport=") {
		t.Fatalf("the TCP phone's INVITE has Record-Route %q, want the TCP side then the UDP side:\n%s", rr, inv)
	}
}
