package proxy

import (
	"bytes"
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// statelessTagPrefix starts the To tag of the 407s ChallengeStateless
// sends without a transaction, so that their ACKs are known (TakeACK).
const statelessTagPrefix = "sb407-"

var (
	ackPrefix         = []byte("ACK ")
	routeTokenParam   = []byte(";sb=")
	statelessTagParam = []byte("tag=" + statelessTagPrefix)
)

// TakeACK handles an ACK received over UDP that needs no transaction, on
// the socket's reader, before sipgo parses it and makes a server
// transaction for it (a lock shared by every transaction of the process, a
// timer and a goroutine, for a message that is never answered). It reports
// whether it took data (which is only read during the call):
//
//   - the ACK of a 407 ChallengeStateless sent (its To tag, no Route) is
//     dropped: there is nothing to acknowledge;
//   - the caller's ACK of the 2xx of the INVITE that set up a dialog the
//     proxy follows (a Route, the dialog's Call-ID, tags and INVITE CSeq)
//     is forwarded along the dialog's route under the rules of ServeACK
//     (nextHop: sender, token, route set, target), without copying it.
//
// Everything else (ACKs of non-2xx answers, which their INVITE
// transaction must absorb; ACKs of re-INVITEs; ACKs over TCP; anything
// malformed) is left to sipgo and ServeACK. Take calls it from the
// stack's read filter, after the packet guard.
func (p *Proxy) TakeACK(transport string, remote net.Addr, data []byte) bool {
	if (transport != "UDP" && transport != "udp") || !bytes.HasPrefix(data, ackPrefix) {
		return false
	}
	// Only an ACK naming a route token or a stateless 407's tag can be
	// taken: any other is left to sipgo unparsed (parsed once, not twice).
	if !bytes.Contains(data, routeTokenParam) && !bytes.Contains(data, statelessTagParam) {
		return false
	}
	msg, err := sip.ParseMessage(append([]byte(nil), data...))
	if err != nil {
		return false
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.CallID() == nil || req.From() == nil || req.To() == nil || req.CSeq() == nil || req.Via() == nil {
		return false
	}
	req.SetTransport("UDP")
	req.SetSource(remote.String())
	toTag := tagOf(req.To().Params)
	if req.GetHeader("Route") == nil {
		return strings.HasPrefix(toTag, statelessTagPrefix)
	}
	d, fromCaller, ended := p.dialogs.find(req.CallID().Value(), tagOf(req.From().Params), toTag, p.now())
	if d == nil || ended || !fromCaller || req.CSeq().SeqNo != d.inviteCSeq || !d.isConfirmed() {
		return false
	}
	if len(req.Body()) > 0 && p.mediaOf(d.callID) != nil {
		return false // a late offer's answer: rewritten by ServeACK
	}
	// The request is this call's own: forwarded as it is.
	p.forwardACK(req, req)
	return true
}
