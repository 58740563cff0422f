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

func fastConfig() Config {
	// Long enough that a scripted phone always answers in time, short
	// enough for TestNoResponse.
	return Config{NoResponseTimeout: time.Second}
}

// TestCallAnsweredAndHungUp: 100/180/200 reach the caller, the ACK and the
// BYE reach the callee along the Record-Route, and the call record ends
// NORMAL_CLEARING hung up by the caller.
func TestCallAnsweredAndHungUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	c := e.setupCall(a, b, "call-ok")
	if rr := c.binv.GetHeader("Record-Route"); rr == nil || !strings.Contains(rr.Value(), ";sb=") {
		t.Fatalf("forwarded INVITE has no Record-Route with a route token: %v", rr)
	}
	if c.binv.GetHeader("Proxy-Authorization") != nil {
		t.Fatal("credentials were forwarded to the callee")
	}
	e.record("call-ok", func(r calls.Record) bool { return r.SIPStatus == 200 && !r.Answer.IsZero() && r.Active() })
	if n := e.p.ActiveDialogs(); n != 1 {
		t.Fatalf("dialogs = %d, want 1", n)
	}
	a.send(c.aLeg.request(a, sip.BYE))
	bye := b.request(sip.BYE)
	b.reply(bye, 200, "")
	a.response(sip.BYE, 200)
	r := e.record("call-ok", func(r calls.Record) bool { return !r.Active() })
	if r.Cause != cause.NormalClearing || r.HangupBy != calls.ByCaller || r.From != "2001" || r.To != "2002" {
		t.Fatalf("record = %+v", r)
	}
	if n := e.p.ActiveDialogs(); n != 0 {
		t.Fatalf("dialogs after BYE = %d", n)
	}
}

// cancelFor is the CANCEL of a client's INVITE (same branch and CSeq
// number).
func cancelFor(inv *sip.Request) *sip.Request {
	c := sip.NewRequest(sip.CANCEL, inv.Recipient)
	c.AppendHeader(inv.Via().Clone())
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	c.AppendHeader(sip.HeaderClone(inv.From()))
	c.AppendHeader(sip.HeaderClone(inv.To()))
	c.AppendHeader(sip.HeaderClone(inv.CallID()))
	c.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	c.SetBody(nil)
	return c
}

// TestForkFirstAnswerWins: an extension with two phones gets the INVITE on
// both; the first 200 goes to the caller and the other phone is CANCELled.
func TestForkFirstAnswerWins(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b1, b2 := e.phone("127.0.0.1"), e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b1)
	e.register("2002", b2)
	inv := a.call("2001", "2002", "call-fork")
	a.response(sip.INVITE, 100)
	i1, i2 := b1.request(sip.INVITE), b2.request(sip.INVITE)
	b1.reply(i1, 180, "tag-1")
	b2.reply(i2, 180, "tag-2")
	b2.reply(i2, 200, "tag-2")
	ok := a.response(sip.INVITE, 200)
	if !strings.Contains(ok.To().Value(), "tag-2") {
		t.Fatalf("caller got the 200 of the wrong phone: %s", ok.To().Value())
	}
	cancel := b1.request(sip.CANCEL)
	b1.reply(cancel, 200, "")
	b1.reply(i1, 487, "tag-1")
	b1.request(sip.ACK) // the proxy ACKs the 487 hop by hop
	a.send(callerLeg(inv, ok).request(a, sip.ACK))
	b2.request(sip.ACK)
	if b2.count(isReq(sip.CANCEL)) != 0 {
		t.Fatal("the phone that answered was cancelled")
	}
	r := e.record("call-fork", func(r calls.Record) bool {
		return len(r.Branches) == 2 && r.Branches[0].Status == 487 && r.Branches[1].Status == 200
	})
	if r.SIPStatus != 200 || !r.Branches[0].Ringing {
		t.Fatalf("record = %+v", r)
	}
}

// TestCallerCancelsWhileRinging: the caller's CANCEL gets 200 and its
// INVITE 487, the ringing phone is CANCELled, and the record ends
// ORIGINATOR_CANCEL by the caller.
func TestCallerCancelsWhileRinging(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	inv := a.call("2001", "2002", "call-cancel")
	binv := b.request(sip.INVITE)
	b.reply(binv, 180, "tag-b")
	a.response(sip.INVITE, 180)
	a.send(cancelFor(inv))
	a.response(sip.CANCEL, 200)
	res := a.response(sip.INVITE, 487)
	a.send(ackFor(inv, res))
	c := b.request(sip.CANCEL)
	b.reply(c, 200, "")
	b.reply(binv, 487, "tag-b")
	r := e.record("call-cancel", func(r calls.Record) bool { return !r.Active() })
	if r.Cause != cause.OriginatorCancel || r.HangupBy != calls.ByCaller || r.SIPStatus != 487 {
		t.Fatalf("record = %+v", r)
	}
	eventually(t, "early dialog dropped", func() bool { return e.p.ActiveDialogs() == 0 })
}

// TestCancelRacesAnswer: a 200 that crosses the caller's CANCEL is still
// relayed (RFC 3261 §16.7 step 5), and the caller's ACK and BYE of that
// dialog are routed to the phone.
func TestCancelRacesAnswer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	inv := a.call("2001", "2002", "call-race")
	binv := b.request(sip.INVITE)
	b.reply(binv, 180, "tag-b")
	a.response(sip.INVITE, 180)
	a.send(cancelFor(inv))
	res := a.response(sip.INVITE, 487)
	a.send(ackFor(inv, res))
	c := b.request(sip.CANCEL)
	b.reply(binv, 200, "tag-b") // answered before the CANCEL arrived
	b.reply(c, 200, "")
	ok := a.response(sip.INVITE, 200)
	l := callerLeg(inv, ok)
	a.send(l.request(a, sip.ACK))
	b.request(sip.ACK)
	a.send(l.request(a, sip.BYE))
	bye := b.request(sip.BYE)
	b.reply(bye, 200, "")
	a.response(sip.BYE, 200)
}

// TestBusy: a 486 reaches the caller with a Reason header; the record ends
// USER_BUSY by the callee.
func TestBusy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	inv := a.call("2001", "2002", "call-busy")
	binv := b.request(sip.INVITE)
	b.reply(binv, 486, "tag-b")
	b.request(sip.ACK)
	res := a.response(sip.INVITE, 486)
	a.send(ackFor(inv, res))
	if h := res.GetHeader("Reason"); h == nil || !strings.Contains(h.Value(), "cause=17") {
		t.Fatalf("486 without the Q.850 USER_BUSY reason: %v", h)
	}
	r := e.record("call-busy", func(r calls.Record) bool { return !r.Active() })
	if r.Cause != cause.UserBusy || r.HangupBy != calls.ByCallee {
		t.Fatalf("record = %+v", r)
	}
}

// TestDeclineCancelsOtherPhones: a 6xx from one phone ends the call: the
// other phone is CANCELled and the caller gets the 603.
func TestDeclineCancelsOtherPhones(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b1, b2 := e.phone("127.0.0.1"), e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b1)
	e.register("2002", b2)
	inv := a.call("2001", "2002", "call-decline")
	i1, i2 := b1.request(sip.INVITE), b2.request(sip.INVITE)
	b1.reply(i1, 180, "tag-1")
	b2.reply(i2, 603, "tag-2")
	c := b1.request(sip.CANCEL)
	b1.reply(c, 200, "")
	b1.reply(i1, 487, "tag-1")
	res := a.response(sip.INVITE, 603)
	a.send(ackFor(inv, res))
	r := e.record("call-decline", func(r calls.Record) bool { return !r.Active() })
	if r.Cause != cause.CallRejected || r.SIPStatus != 603 {
		t.Fatalf("record = %+v", r)
	}
}

// TestNoAnswer: a phone that rings past the extension's call timeout (1 s
// for 2004) is CANCELled and the caller gets 480 NO_ANSWER.
func TestNoAnswer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2004", b)
	inv := a.call("2001", "2004", "call-noanswer")
	binv := b.request(sip.INVITE)
	b.reply(binv, 180, "tag-b")
	res := a.response(sip.INVITE, 480)
	a.send(ackFor(inv, res))
	c := b.request(sip.CANCEL)
	b.reply(c, 200, "")
	b.reply(binv, 487, "tag-b")
	r := e.record("call-noanswer", func(r calls.Record) bool { return !r.Active() })
	if r.Cause != cause.NoAnswer || r.HangupBy != calls.ByServer {
		t.Fatalf("record = %+v", r)
	}
}

// TestNoResponse: a phone that answers nothing at all is given up after
// NoResponseTimeout: 408 to the caller and its binding marked unreachable
// (journaled).
func TestNoResponse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	inv := a.call("2001", "2002", "call-silent")
	b.request(sip.INVITE) // and never answer
	res := a.response(sip.INVITE, 408)
	a.send(ackFor(inv, res))
	if b := e.binding("2002", b); b.PingStatus != "unreachable" {
		t.Fatalf("silent binding is %q, want unreachable", b.PingStatus)
	}
	e.event(journalFilter("2002"), func(ev journalEvent) bool { return ev.Cause == cause.Unreachable })
	r := e.record("call-silent", func(r calls.Record) bool { return !r.Active() })
	if r.Cause != cause.RecoveryOnTimerExpire || r.SIPStatus != 408 {
		t.Fatalf("record = %+v", r)
	}
}

// TestOverloadShedsNewCalls: while Config.MaxSetups forwarded calls wait
// for their callees' first answer, a new call gets a fast 503 with
// Retry-After (journaled NORMAL_TEMPORARY_FAILURE) and is not forwarded;
// once the callee answers anything, calls go through again.
func TestOverloadShedsNewCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{NoResponseTimeout: 5 * time.Second, MaxSetups: 1})
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	a.call("2001", "2002", "shed-1")
	binv := b.request(sip.INVITE)
	a.call("2001", "2002", "shed-2")
	busy := a.response(sip.INVITE, 503)
	if busy.CallID().Value() != "shed-2" || busy.GetHeader("Retry-After") == nil {
		t.Fatalf("503 of %s without Retry-After: %s", busy.CallID().Value(), busy.String())
	}
	e.event(journal.Filter{Cause: cause.TemporaryFailure}, func(ev journal.Event) bool {
		return ev.CallID == "shed-2" && ev.Status == 503 && strings.Contains(ev.Detail, "overloaded")
	})
	b.reply(binv, 180, "callee-1")
	a.response(sip.INVITE, 180)
	a.call("2001", "2002", "shed-3")
	b.next("the INVITE of shed-3", func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && r.Method == sip.INVITE && r.CallID().Value() == "shed-3"
	})
	if n := b.count(func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && r.CallID().Value() == "shed-2"
	}); n != 0 {
		t.Fatalf("the shed call reached the callee (%d messages)", n)
	}
}
