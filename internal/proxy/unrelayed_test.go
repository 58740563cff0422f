package proxy

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// natSDPAt is a phone's plain offer or answer naming 10.0.0.5:port, an
// address that is not the test phones' SIP source (127.0.0.1): a phone
// behind NAT.
func natSDPAt(port string) string {
	return strings.Replace(strings.Replace(sdpAt(4000), "127.0.0.1", "10.0.0.5", -1), "4000", port, 1)
}

// TestUnrelayedCallRecordsAddresses: a call whose media are not relayed
// (no relay: --media-relay never) records one leg per side, Relayed false
// and no counters, with the audio address of the party's SDP (the
// caller's offer, the callee's answer in the 2xx) and the address its SIP
// came from; for a late offer the callee's is from its offer in the 2xx
// and the caller's from its answer in the ACK.
func TestUnrelayedCallRecordsAddresses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a, b := e.phone("127.0.0.1"), e.phone("127.0.0.1")
	e.register("2002", b)

	check := func(id string, want [2]string) {
		t.Helper()
		rec := e.record(id, func(r calls.Record) bool { return !r.End.IsZero() })
		if len(rec.Media) != 2 {
			t.Fatalf("%s: media legs %+v, want two (caller, callee)", id, rec.Media)
		}
		for i, side := range []string{"caller", "callee"} {
			l := rec.Media[i]
			wantLeg := store.MediaLeg{Side: side, SignalledAddr: want[i], SIPSource: "127.0.0.1",
				FirstPacketIn: l.FirstPacketIn, LastPacketIn: l.LastPacketIn}
			if l != wantLeg || !l.FirstPacketIn.IsZero() {
				t.Errorf("%s: %s leg %+v, want %+v", id, side, l, wantLeg)
			}
		}
	}

	// An offer in the INVITE, the answer in the 200.
	const id = "call-unrelayed"
	inv := a.callWithSDP("2001", "2002", id, natSDPAt("4000"))
	a.response(sip.INVITE, 100)
	binv := b.request(sip.INVITE)
	b.replySDP(binv, 200, "tag-b", sdpAt(7000))
	ok := a.response(sip.INVITE, 200)
	aLeg := callerLeg(inv, ok)
	a.send(aLeg.request(a, sip.ACK))
	b.request(sip.ACK)
	a.send(aLeg.request(a, sip.BYE))
	b.reply(b.request(sip.BYE), 200, "")
	a.response(sip.BYE, 200)
	check(id, [2]string{"10.0.0.5:4000", "127.0.0.1:7000"})

	// A late offer: the callee's offer in the 200, the caller's answer in the ACK.
	const late = "call-unrelayed-late"
	inv = a.callWithSDP("2001", "2002", late, "")
	a.response(sip.INVITE, 100)
	binv = b.request(sip.INVITE)
	b.replySDP(binv, 200, "tag-b2", sdpAt(7002))
	ok = a.response(sip.INVITE, 200)
	aLeg = callerLeg(inv, ok)
	ack := aLeg.request(a, sip.ACK)
	withSDP(ack, natSDPAt("4002"))
	a.send(ack)
	b.request(sip.ACK)
	a.send(aLeg.request(a, sip.BYE))
	b.reply(b.request(sip.BYE), 200, "")
	a.response(sip.BYE, 200)
	check(late, [2]string{"10.0.0.5:4002", "127.0.0.1:7002"})
}
