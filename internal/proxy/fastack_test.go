package proxy

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/sipreply"
)

// TestTakeACK: before sipgo, TakeACK forwards the caller's ACK of the
// dialog-creating INVITE's 2xx to the callee and drops the ACK of a
// stateless 407 (recognised by the To tag ChallengeStateless gives it);
// every other ACK (the callee's, a re-INVITE's CSeq, an unknown 407's, one
// over TCP) is left to sipgo (false).
func TestTakeACK(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)
	c := e.setupCall(a, b, "take-ack")
	from := a.conn.LocalAddr()

	ack := []byte(c.aLeg.request(a, sip.ACK).String())
	if !e.p.TakeACK("UDP", from, ack) {
		t.Fatal("the caller's ACK of the 2xx was not taken")
	}
	got := b.request(sip.ACK)
	if got.CallID().Value() != "take-ack" || got.GetHeader("Route") != nil {
		t.Fatalf("forwarded ACK: %s", got.String())
	}
	if e.p.TakeACK("TCP", from, ack) {
		t.Fatal("an ACK over TCP was taken")
	}
	later := *c.aLeg
	later.cseq++ // a re-INVITE's ACK
	if e.p.TakeACK("UDP", from, []byte(later.request(a, sip.ACK).String())) {
		t.Fatal("the ACK of another CSeq was taken")
	}
	if e.p.TakeACK("UDP", b.conn.LocalAddr(), []byte(c.bLeg.request(b, sip.ACK).String())) {
		t.Fatal("an ACK from the callee was taken")
	}

	// The stateless 407 carries the tag its ACK is recognised by.
	inv := a.invite("2001", "2002", "take-407", 1)
	inv.SetSource(a.addr)
	inv.SetTransport("UDP")
	var ch *sip.Response
	e.p.ChallengeStateless(inv, sipreply.ForTransaction(func(r *sip.Response) error { ch = r; return nil }))
	if ch == nil || ch.StatusCode != 407 || !strings.HasPrefix(tagOf(ch.To().Params), statelessTagPrefix) {
		t.Fatalf("stateless challenge: %v", ch)
	}
	if !e.p.TakeACK("UDP", from, []byte(ackFor(inv, ch).String())) {
		t.Fatal("the ACK of a stateless 407 was not taken")
	}
	other := ch.Clone()
	other.To().Params.Add("tag", "from-a-transaction")
	if e.p.TakeACK("UDP", from, []byte(ackFor(inv, other).String())) {
		t.Fatal("the ACK of a 407 sent in a transaction was taken (its transaction must absorb it)")
	}
}
