package proxy

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
)

// TestAnswerRetransmissions: a 2xx the phone sends again is relayed to the
// caller, while the INVITE's transaction lingers (on the wire) and after it
// ended (ForwardResponse), but only for a known dialog and from the party
// that answered.
func TestAnswerRetransmissions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	c := e.setupCall(a, b, "call-rtx")
	ok := b.reply(c.binv, 200, "callee-tag") // a retransmission on the wire
	a.response(sip.INVITE, 200)

	// After the transaction: what sipgo hands to the unhandled-response
	// handler.
	forward := func(src string, mutate func(*sip.Response)) {
		m, err := sip.ParseMessage([]byte(ok.String()))
		if err != nil {
			t.Fatal(err)
		}
		res := m.(*sip.Response)
		res.SetSource(src)
		if mutate != nil {
			mutate(res)
		}
		e.p.ForwardResponse(res)
	}
	before := a.count(isRes(sip.INVITE, 200))
	forward(b.addr, nil)
	eventually(t, "2xx relayed by ForwardResponse", func() bool { return a.count(isRes(sip.INVITE, 200)) == before+1 })

	// Refused: another sender, an unknown dialog, not our Via; dropped and
	// journaled.
	forward("127.0.0.2:5999", nil)
	forward(b.addr, func(r *sip.Response) {
		cid := sip.CallIDHeader("unknown-call")
		r.ReplaceHeader(&cid)
	})
	forward(b.addr, func(r *sip.Response) { r.RemoveHeader("Via") })
	e.p.ForwardResponse(sip.NewResponse(180, "Ringing")) // not a 2xx: ignored
	e.event(journal.Filter{Cause: cause.RouteTokenRefused}, func(ev journal.Event) bool {
		return strings.Contains(ev.Detail, "not the party of the dialog that answered")
	})
	// The refused ones never reached the caller: a marker request that
	// follows them proves they would have arrived by now.
	a.send(c.aLeg.request(a, sip.INFO))
	info := b.request(sip.INFO)
	b.reply(info, 200, "")
	a.response(sip.INFO, 200)
	if n := a.count(isRes(sip.INVITE, 200)); n != before+1 {
		t.Fatalf("caller got %d 200s, want %d: a refused retransmission was relayed", n, before+1)
	}
}

// TestReInviteBothWays: a re-INVITE from either party reaches the other
// one and its answer comes back; the 2xx refreshes the remote target, so a
// request to the new Contact is routed only after it.
func TestReInviteBothWays(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	c := e.setupCall(a, b, "call-reinvite")
	moved := "sip:2001@127.0.0.1:9" // the caller's new Contact

	// Before the refresh, the callee may not address the new Contact.
	early := c.bLeg.request(b, sip.INFO)
	sip.ParseUri(moved, &early.Recipient)
	b.send(early)
	b.response(sip.INFO, 403)

	// Caller -> callee, with the new Contact.
	c.aLeg.localContact = moved
	re := c.aLeg.request(a, sip.INVITE)
	a.send(re)
	a.response(sip.INVITE, 100)
	got := b.request(sip.INVITE)
	if got.CSeq().SeqNo != re.CSeq().SeqNo {
		t.Fatalf("re-INVITE CSeq %d, sent %d", got.CSeq().SeqNo, re.CSeq().SeqNo)
	}
	b.reply(got, 200, "")
	ok := a.response(sip.INVITE, 200)
	if ok.CSeq().SeqNo != re.CSeq().SeqNo {
		t.Fatalf("200 of CSeq %d", ok.CSeq().SeqNo)
	}
	a.send(c.aLeg.request(a, sip.ACK))
	b.request(sip.ACK)

	// Callee -> caller, to the refreshed target (relayed to where the
	// caller is reached, as recorded at setup).
	sip.ParseUri(moved, &c.bLeg.target)
	re2 := c.bLeg.request(b, sip.INVITE)
	b.send(re2)
	got2 := a.request(sip.INVITE)
	if got2.Recipient.String() != moved {
		t.Fatalf("re-INVITE to the caller has Request-URI %s, want %s", got2.Recipient.String(), moved)
	}
	a.reply(got2, 200, "")
	b.response(sip.INVITE, 200)
	b.send(c.bLeg.request(b, sip.ACK))
	a.request(sip.ACK)
}

// TestCalleeHangsUp: the callee's BYE reaches the caller and ends the
// record hung up by the callee; a BYE crossing it gets the caller's answer
// while the dialog lingers, then 481.
func TestCalleeHangsUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	c := e.setupCall(a, b, "call-calleebye")
	b.send(c.bLeg.request(b, sip.BYE))
	bye := a.request(sip.BYE)
	if bye.Recipient.String() != c.inv.Contact().Address.String() {
		t.Fatalf("BYE to the caller has Request-URI %s", bye.Recipient.String())
	}
	a.reply(bye, 200, "")
	b.response(sip.BYE, 200)
	r := e.record("call-calleebye", func(r calls.Record) bool { return !r.Active() })
	if r.Cause != cause.NormalClearing || r.HangupBy != calls.ByCallee {
		t.Fatalf("record = %+v", r)
	}
	// A crossing BYE from the caller is still routed (the dialog lingers).
	a.send(c.aLeg.request(a, sip.BYE))
	late := b.request(sip.BYE)
	b.reply(late, 481, "")
	a.response(sip.BYE, 481)
	// Any other request of the ended dialog is refused.
	a.send(c.aLeg.request(a, sip.INFO))
	a.response(sip.INFO, 481)
}

// TestInDialogRefusals: requests that do not belong to a dialog the proxy
// set up, or do not come from one of its parties with its token, are
// refused and journaled; nothing reaches the phones.
func TestInDialogRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b, x := e.phone("127.0.0.1"), e.phone("127.0.0.1"), e.phone("127.0.0.2")
	e.register("2002", b)
	c := e.setupCall(a, b, "call-refuse")

	// A third party replaying the caller's dialog.
	x.send(c.aLeg.request(x, sip.BYE))
	x.response(sip.BYE, 403)
	e.event(journal.Filter{Cause: cause.RouteTokenRefused}, func(ev journal.Event) bool {
		return strings.Contains(ev.Detail, "is not the dialog's caller")
	})
	// An unknown dialog: 481.
	unknown := *c.aLeg
	unknown.callID = "no-such-call"
	unknown.routes = nil
	a.send(unknown.request(a, sip.BYE))
	a.response(sip.BYE, 481)
	// The dialog's token on another Call-ID, or a forged one: 403.
	forged := *c.aLeg
	forged.callID = "no-such-call"
	a.send(forged.request(a, sip.BYE))
	a.response(sip.BYE, 403)
	forged.routes = []string{strings.Replace(c.aLeg.routes[0], ";sb=", ";sb=AAAA", 1)}
	a.send(forged.request(a, sip.BYE))
	a.response(sip.BYE, 403)
	// The dialog's party without the Route, or with another token, or to
	// another target.
	noRoute := *c.aLeg
	noRoute.routes = nil
	a.send(noRoute.request(a, sip.INFO))
	a.response(sip.INFO, 403)
	a.send(forged.withCallID(c.aLeg).request(a, sip.INFO))
	a.response(sip.INFO, 403)
	elsewhere := *c.aLeg
	sip.ParseUri("sip:2002@127.0.0.1:9", &elsewhere.target)
	a.send(elsewhere.request(a, sip.INFO))
	a.response(sip.INFO, 403)
	extra := *c.aLeg
	extra.routes = append(slicesClone(extra.routes), "<sip:127.0.0.3;lr>")
	a.send(extra.request(a, sip.INFO))
	a.response(sip.INFO, 403)
	// Without a To tag: not routed.
	msg := c.aLeg.request(a, sip.MESSAGE)
	msg.To().Params.Remove("tag")
	a.send(msg)
	a.response(sip.MESSAGE, 405)
	orphan := c.aLeg.request(a, sip.BYE)
	orphan.To().Params.Remove("tag")
	a.send(orphan)
	a.response(sip.BYE, 481)
	// A CANCEL matching no transaction.
	never := a.invite("2001", "2002", "call-never-sent", 1)
	a.send(cancelFor(never))
	a.response(sip.CANCEL, 481)
	// A refused ACK is dropped silently.
	x.send(c.aLeg.request(x, sip.ACK))

	// Nothing of this reached the callee: a valid request after them is
	// the next thing it sees.
	a.send(c.aLeg.request(a, sip.INFO))
	got := b.next("INFO or anything refused", func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && r.Method != sip.ACK
	}).(*sip.Request)
	if got.Method != sip.INFO {
		t.Fatalf("callee got a refused %s", got.Method)
	}
	if n := b.count(isReq(sip.ACK)); n != 1 {
		t.Fatalf("callee got %d ACKs, want only the call's", n)
	}
	if n := b.count(isReq(sip.BYE)); n != 0 {
		t.Fatalf("callee got %d refused BYEs", n)
	}
}

func (l leg) withCallID(of *leg) *leg {
	l.callID = of.callID
	l.local, l.remote = of.local, of.remote
	return &l
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// TestHangup: Proxy.Hangup sends a BYE to each party (each as if from the
// other) and ends the record hung up by the administrator.
func TestHangup(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	e.setupCall(a, b, "call-hangup")
	if _, err := e.p.Hangup(context.Background(), "no-such-call", "t"); !errors.Is(err, ErrNoSuchCall) {
		t.Fatalf("hangup of an unknown call: %v", err)
	}
	done := make(chan HangupResult, 1)
	go func() {
		res, err := e.p.Hangup(context.Background(), "call-hangup", "tester")
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	toB, toA := b.request(sip.BYE), a.request(sip.BYE)
	if !strings.Contains(toB.From().Value(), "caller-call-hangup") || !strings.Contains(toA.From().Value(), "callee-tag") {
		t.Fatalf("BYEs not on behalf of the other party: to callee From %s, to caller From %s",
			toB.From().Value(), toA.From().Value())
	}
	b.reply(toB, 200, "")
	a.reply(toA, 200, "")
	if res := <-done; res.Caller != 200 || res.Callee != 200 {
		t.Fatalf("hangup result %+v", res)
	}
	r := e.record("call-hangup", func(r calls.Record) bool { return !r.Active() })
	if r.HangupBy != calls.ByAdmin || !strings.Contains(r.Detail, "tester") {
		t.Fatalf("record = %+v", r)
	}
}

// TestShutdownEndsCalls: calls still up when the proxy stops end
// SYSTEM_SHUTDOWN.
func TestShutdownEndsCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	e.setupCall(a, b, "call-shutdown")
	e.p.Shutdown()
	r := e.record("call-shutdown", func(r calls.Record) bool { return !r.Active() })
	if r.Cause != cause.SystemShutdown || r.HangupBy != calls.ByServer {
		t.Fatalf("record = %+v", r)
	}
}

// TestReInviteCancelledAndRefused: a re-INVITE the caller CANCELs while the
// callee rings is CANCELled towards the callee, and an error answer to a
// re-INVITE is relayed without ending the call.
func TestReInviteCancelledAndRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	c := e.setupCall(a, b, "call-recancel")

	re := c.aLeg.request(a, sip.INVITE)
	a.send(re)
	got := b.request(sip.INVITE)
	b.reply(got, 180, "")
	a.response(sip.INVITE, 180)
	a.send(cancelFor(re))
	a.response(sip.CANCEL, 200)
	res := a.response(sip.INVITE, 487)
	a.send(ackFor(re, res))
	cancel := b.request(sip.CANCEL)
	b.reply(cancel, 200, "")
	b.reply(got, 487, "")

	re = c.aLeg.request(a, sip.INVITE)
	a.send(re)
	got = b.request(sip.INVITE)
	b.reply(got, 488, "")
	res = a.response(sip.INVITE, 488)
	a.send(ackFor(re, res))
	if n := e.p.ActiveDialogs(); n != 1 {
		t.Fatalf("dialogs = %d after a refused re-INVITE, want the call still up", n)
	}
	a.send(c.aLeg.request(a, sip.BYE))
	bye := b.request(sip.BYE)
	b.reply(bye, 200, "")
	a.response(sip.BYE, 200)
}

// TestStatelessACKDropped: the ACK of an answer sent without a transaction
// (the guard's stateless 407: no Route, no dialog) is dropped without a
// journal event, so it does not use up the once-a-minute journal slot of
// its address: an ACK with a forged route token that follows is still
// journaled.
func TestStatelessACKDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a := e.phone("127.0.0.1")
	ack := func(callID, route string) *sip.Request {
		m, err := sip.ParseMessage([]byte("ACK sip:2002@" + testDomain + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + a.addr + ";branch=" + newBranch() + ";rport\r\n" + route +
			"Max-Forwards: 70\r\nFrom: <sip:2001@" + testDomain + ">;tag=caller-" + callID + "\r\n" +
			"To: <sip:2002@" + testDomain + ">;tag=stateless-407\r\nCall-ID: " + callID + "\r\n" +
			"CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		req := m.(*sip.Request)
		req.SetSource(a.addr)
		req.SetTransport("UDP")
		return req
	}
	// Handled in order, as sipgo would hand them over.
	e.p.ServeACK(ack("after-407", ""), nil)
	e.p.ServeACK(ack("forged-ack", "Route: <sip:127.0.0.1:"+strconv.Itoa(e.addr.Port)+";lr;sb=AAAAAAAAAAAAAAAAAAAAAAAA>\r\n"), nil)
	ev := e.event(journal.Filter{Cause: cause.RouteTokenRefused}, func(ev journal.Event) bool { return ev.CallID != "" })
	if ev.CallID != "forged-ack" || !strings.Contains(ev.Detail, "forged route token") {
		t.Fatalf("journaled %q: %s; want the forged ACK's refusal only", ev.CallID, ev.Detail)
	}
}
