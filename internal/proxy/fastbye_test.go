package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
)

// TestTakeBYE: a BYE between UDP phones is forwarded without a transaction
// (TakeBYE): a retransmission reaches the callee again as the same
// transaction (same branch, which a transaction-stateful forward would
// have absorbed), a response to it from an address that is not the
// callee's is dropped and journaled, and the callee's 200 goes back to the
// caller and ends the call record.
func TestTakeBYE(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b, x := e.phone("127.0.0.1"), e.phone("127.0.0.1"), e.phone("127.0.0.2")
	e.register("2002", b)
	c := e.setupCall(a, b, "call-takebye")
	bye := c.aLeg.request(a, sip.BYE)
	a.send(bye)
	got := b.request(sip.BYE)
	br, _ := got.Via().Params.Get("branch")
	if !strings.HasPrefix(br, statelessBranch) {
		t.Fatalf("forwarded BYE has branch %q, want one starting %q", br, statelessBranch)
	}
	a.send(bye) // a retransmission
	again := b.request(sip.BYE)
	if br2, _ := again.Via().Params.Get("branch"); br2 != br {
		t.Fatalf("retransmitted BYE forwarded with branch %q, first with %q", br2, br)
	}
	// Another address answering for the callee: dropped.
	forged := sip.NewResponseFromRequest(got, 200, "OK", nil)
	x.send(forged)
	e.event(journal.Filter{Cause: cause.RouteTokenRefused}, func(ev journal.Event) bool {
		return strings.Contains(ev.Detail, "response to BYE not relayed")
	})
	if n := a.count(isRes(sip.BYE, 200)); n != 0 {
		t.Fatalf("caller got %d 200s to its BYE from a third address", n)
	}
	e.record("call-takebye", func(r calls.Record) bool { return r.Active() })
	// The callee answering with the caller's Via rewritten to a third
	// host: nothing reaches that host.
	redirected := sip.NewResponseFromRequest(got, 200, "OK", nil)
	vias := redirected.GetHeaders("Via")
	if len(vias) != 2 {
		t.Fatalf("200 to the forwarded BYE has %d Vias, want 2", len(vias))
	}
	v := vias[1].(*sip.ViaHeader)
	v.Host, v.Port = host(x.addr), port(x.addr)
	v.Params.Remove("received")
	v.Params.Remove("rport")
	b.send(redirected)

	b.reply(got, 200, "")
	res := a.response(sip.BYE, 200)
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if n := x.count(isRes(sip.BYE, 200)); n != 0 {
			t.Fatalf("a 200 to the BYE was relayed to the host its rewritten Via named (%d)", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(res.GetHeaders("Via")); n != 1 || res.Via().Host != host(a.addr) {
		t.Fatalf("200 to the BYE reached the caller with %d Vias, top %v", n, res.Via())
	}
	r := e.record("call-takebye", func(r calls.Record) bool { return !r.Active() })
	if r.Cause != cause.NormalClearing || r.HangupBy != calls.ByCaller {
		t.Fatalf("record = %+v", r)
	}
	if n := e.p.ActiveDialogs(); n != 0 {
		t.Fatalf("dialogs after BYE = %d", n)
	}
}

// TestTakeBYEUnanswered: a BYE forwarded without a transaction that gets
// no final answer ends the call Timer F after it was sent (as the 408 of a
// stateful forward did), not before.
func TestTakeBYEUnanswered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	c := e.setupCall(a, b, "call-byesilent")
	b.send(c.bLeg.request(b, sip.BYE))
	a.request(sip.BYE) // never answered
	sent := time.Now()
	e.p.endUnansweredBYEs(sent.Add(sip.Timer_F / 2))
	if n := e.p.ActiveDialogs(); n != 1 {
		t.Fatalf("dialogs %s after an unanswered BYE = %d, want 1", sip.Timer_F/2, n)
	}
	e.p.endUnansweredBYEs(sent.Add(sip.Timer_F + time.Second))
	if n := e.p.ActiveDialogs(); n != 0 {
		t.Fatalf("dialogs after Timer F = %d, want 0", n)
	}
	r := e.record("call-byesilent", func(r calls.Record) bool { return !r.Active() })
	if r.Cause != cause.NormalClearing || r.HangupBy != calls.ByCallee {
		t.Fatalf("record = %+v", r)
	}
	if d := r.End.Sub(sent); d < sip.Timer_F-time.Second || d > sip.Timer_F+time.Second {
		t.Fatalf("record ends %s after the BYE, want Timer F (%s)", d, sip.Timer_F)
	}
}

// TestTakeBYEChallenged: a BYE answered with a challenge is relayed and
// ends nothing (RFC 3261 §15.1.2), not even Timer F later; the BYE with
// credentials that follows ends the call.
func TestTakeBYEChallenged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	c := e.setupCall(a, b, "call-byechallenged")
	a.send(c.aLeg.request(a, sip.BYE))
	b.reply(b.request(sip.BYE), 407, "")
	a.response(sip.BYE, 407)
	e.p.endUnansweredBYEs(time.Now().Add(sip.Timer_F + time.Second))
	if n := e.p.ActiveDialogs(); n != 1 {
		t.Fatalf("dialogs after a challenged BYE = %d, want 1", n)
	}
	a.send(c.aLeg.request(a, sip.BYE))
	b.reply(b.request(sip.BYE), 200, "")
	a.response(sip.BYE, 200)
	r := e.record("call-byechallenged", func(r calls.Record) bool { return !r.Active() })
	if r.HangupBy != calls.ByCaller {
		t.Fatalf("record = %+v", r)
	}
}
