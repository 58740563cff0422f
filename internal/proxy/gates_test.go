package proxy

import (
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/registrar"
)

const firstInvite = "INVITE sip:2002@pbx.example SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK7;rport\r\n" +
	"From: <sip:2001@pbx.example>;tag=a\r\n" +
	"To: <sip:2002@pbx.example>\r\n" +
	"Call-ID: call-7\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"

// TestStatelessGates: the stateless path takes a call's first INVITE only
// when admit, the gate ServeINVITE applies first, passes it: a refused
// INVITE takes the transaction path and gets admit's cause there.
func TestStatelessGates(t *testing.T) {
	p := New(Config{Host: "192.0.2.10", Port: 5070, Key: []byte("k")}, Deps{Policy: denyList{"203.0.113.66"}})
	looped := newReq(t, firstInvite)
	looped.AppendHeader(p.newVia("UDP"))
	for _, c := range []struct {
		name, raw, src string
		want           cause.Code
		stateless      bool
	}{
		{"plain", firstInvite, "203.0.113.1:5060", "", true},
		{"tel URI", replace(firstInvite, "INVITE sip:2002@", "INVITE tel:2002@"), "203.0.113.1:5060", cause.BadRequest, false},
		{"Max-Forwards 0", replace(firstInvite, "Max-Forwards: 70", "Max-Forwards: 0"), "203.0.113.1:5060", cause.TooManyHops, false},
		{"looped", looped.String(), "203.0.113.1:5060", cause.LoopDetected, false},
		{"inbound acl", firstInvite, "203.0.113.66:5060", cause.ACLDenied, false},
		// Past admit, but not a first INVITE without credentials: sipgo's.
		{"credentials", replace(firstInvite, "Max-Forwards", "Proxy-Authorization: Digest username=\"2001\"\r\nMax-Forwards"), "203.0.113.1:5060", "", false},
		{"in dialog", replace(firstInvite, "<sip:2002@pbx.example>\r\n", "<sip:2002@pbx.example>;tag=b\r\n"), "203.0.113.1:5060", "", false},
	} {
		req := newReq(t, c.raw)
		req.SetSource(c.src)
		if got, detail := p.admit(req, registrar.SourceAddr(c.src)); got != c.want || (got == "") != (detail == "") {
			t.Errorf("%s: admit = %q (%q), want %q", c.name, got, detail, c.want)
		}
		if got := p.Stateless(req); got != c.stateless {
			t.Errorf("%s: Stateless = %v, want %v", c.name, got, c.stateless)
		}
	}
}
