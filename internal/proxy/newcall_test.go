package proxy

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/sipreply"
)

// TestNewCallRefusals: the answers a new call gets before it is forked,
// each with its cause journaled.
func TestNewCallRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a := e.phone("127.0.0.1")

	// Max-Forwards 0: 483 before any authentication.
	inv := a.invite("2001", "2002", "call-mf0", 1)
	mf := sip.MaxForwardsHeader(0)
	inv.ReplaceHeader(&mf)
	a.send(inv)
	res := a.response(sip.INVITE, 483)
	a.send(ackFor(inv, res))

	// Our own Via already on it: a loop.
	inv = a.invite("2001", "2002", "call-loop", 1)
	v := e.p.newVia("UDP")
	inv.AppendHeader(v) // below the phone's own
	a.send(inv)
	res = a.response(sip.INVITE, 482)

	// A number nobody has: 404 (after authentication).
	inv = a.call("2001", "2999", "call-404")
	res = a.response(sip.INVITE, 404)
	a.send(ackFor(inv, res))
	r := e.record("call-404", func(r calls.Record) bool { return !r.Active() })
	if r.SIPStatus != 404 || r.HangupBy != calls.ByServer {
		t.Fatalf("record = %+v", r)
	}

	// An extension with no phone registered: 480 with a Q.850 Reason.
	inv = a.call("2001", "2003", "call-480")
	res = a.response(sip.INVITE, 480)
	a.send(ackFor(inv, res))
	if h := res.GetHeader("Reason"); h == nil || !strings.HasPrefix(h.Value(), "Q.850;cause=") {
		t.Fatalf("480 without a Q.850 Reason: %v", h)
	}
	e.event(journal.Filter{Kind: journal.KindInvite, Extension: "2003"}, func(ev journal.Event) bool { return ev.Status == 480 })

	// Authenticated as 2001 but calling as 2002: 403.
	inv = a.callAs("2001", "2002", "2003", "call-mismatch")
	res = a.response(sip.INVITE, 403)
	a.send(ackFor(inv, res))
	e.event(journal.Filter{Kind: journal.KindInvite}, func(ev journal.Event) bool {
		return ev.Cause == cause.AuthUserMismatch
	})

	// Not a SIP URI.
	inv = a.invite("2001", "2002", "call-tel", 1)
	sip.ParseUri("tel:+15551234", &inv.Recipient)
	a.send(inv)
	a.response(sip.INVITE, 400, 416)
}

// TestWrongPassword: a wrong answer to the challenge gets 403.
func TestWrongPassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a := e.phone("127.0.0.1")
	inv := a.invite("2001", "2002", "call-badpw", 1)
	a.send(inv)
	ch := a.response(sip.INVITE, 407)
	a.send(ackFor(inv, ch))
	inv = a.invite("2001", "2002", "call-badpw", 2)
	inv.AppendHeader(sip.NewHeader("Proxy-Authorization",
		`Digest username="2001", realm="pbx.test", nonce="x", uri="sip:2002@pbx.test", response="00000000000000000000000000000000", algorithm=MD5`))
	a.send(inv)
	a.response(sip.INVITE, 403, 407)
}

// TestTooManyDialogs: with the dialog table full a new call gets 503.
func TestTooManyDialogs(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.MaxDialogs = 1
	e := newEnv(t, cfg)
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	e.setupCall(a, b, "call-first")
	inv := a.call("2001", "2002", "call-second")
	res := a.response(sip.INVITE, 503)
	a.send(ackFor(inv, res))
}

// TestStatelessChallenge: Stateless takes only a plain first INVITE with
// nothing to refuse, and ChallengeStateless answers it 407 with a
// Proxy-Authenticate of the caller's realm.
func TestStatelessChallenge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a := e.phone("127.0.0.1")
	plain := func() *sip.Request {
		r := a.invite("2001", "2002", "call-stateless", 1)
		r.SetSource(a.addr)
		return r
	}
	if !e.p.Stateless(plain()) {
		t.Fatal("a plain INVITE was not taken statelessly")
	}
	for name, mutate := range map[string]func(*sip.Request){
		"credentials": func(r *sip.Request) { r.AppendHeader(sip.NewHeader("Proxy-Authorization", "Digest x")) },
		"to tag":      func(r *sip.Request) { r.To().Params.Add("tag", "x") },
		"max-forwards 0": func(r *sip.Request) {
			mf := sip.MaxForwardsHeader(0)
			r.ReplaceHeader(&mf)
		},
		"tel uri": func(r *sip.Request) { sip.ParseUri("tel:+1555", &r.Recipient) },
		"looped":  func(r *sip.Request) { r.AppendHeader(e.p.newVia("UDP")) },
		"bye":     func(r *sip.Request) { r.Method = sip.BYE },
	} {
		r := plain()
		mutate(r)
		if e.p.Stateless(r) {
			t.Errorf("%s: taken statelessly", name)
		}
	}
	var got *sip.Response
	req := plain()
	e.p.ChallengeStateless(req, sipreply.ForTransaction(func(r *sip.Response) error { got = r; return nil }))
	if got == nil || got.StatusCode != 407 {
		t.Fatalf("answer %v, want 407", got)
	}
	if h := got.GetHeader("Proxy-Authenticate"); h == nil || !strings.Contains(h.Value(), `realm="pbx.test"`) {
		t.Fatalf("Proxy-Authenticate = %v", h)
	}
}
