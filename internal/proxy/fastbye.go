package proxy

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"net"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/registrar"
)

// statelessBranch starts the Via branch of the BYEs forwarded without a
// transaction (TakeBYE): a '.' never occurs in the random branches of
// newVia, so their responses are told apart before sipgo parses them.
const statelessBranch = branchPrefix + "."

var (
	byePrefix            = []byte("BYE ")
	responsePrefix       = []byte("SIP/2.0 ")
	statelessBranchParam = []byte("branch=" + statelessBranch)
)

// Take is the proxy's part of the stack's read filter (UDP, after the
// packet guard): it handles the messages of a call that need no sipgo
// transaction (TakeACK, TakeBYE, TakeBYEResponse) and reports whether it
// took data (read only during the call). Anything it does not take is left
// to sipgo.
func (p *Proxy) Take(transport string, remote net.Addr, data []byte) bool {
	if transport != "UDP" && transport != "udp" {
		return false
	}
	switch {
	case bytes.HasPrefix(data, ackPrefix):
		return p.TakeACK(transport, remote, data)
	case bytes.HasPrefix(data, byePrefix):
		return p.TakeBYE(remote, data)
	case bytes.HasPrefix(data, responsePrefix):
		return p.TakeBYEResponse(remote, data)
	}
	return false
}

// TakeBYE forwards, without a transaction (RFC 3261 §16.11), a BYE
// received over UDP within a dialog the proxy follows whose other party is
// reached over UDP, under the rules of every in-dialog request (nextHop:
// sender, token, route set, target). Its Via branch is derived from the
// sender's transaction (statelessBranch + a hash of its top Via, Call-ID
// and CSeq), so a retransmission is forwarded as the same transaction and
// the callee's UAS absorbs it and repeats its answer; the answer comes
// back through TakeBYEResponse, which ends the call. Over UDP on both
// sides nothing is lost against a stateful forward: the sender
// retransmits, and the answer goes back along the Vias as a server
// transaction would send it.
//
// It takes nothing that would be refused or answered by the proxy itself
// (unknown dialog, wrong token or sender, Max-Forwards 0), nor a BYE with
// a body or to a party over another transport: ServeInDialog handles
// those statefully, as before.
func (p *Proxy) TakeBYE(remote net.Addr, data []byte) bool {
	if !bytes.Contains(data, routeTokenParam) {
		return false
	}
	msg, err := sip.ParseMessage(append([]byte(nil), data...))
	if err != nil {
		return false
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.Method != sip.BYE || req.CallID() == nil || req.From() == nil || req.To() == nil ||
		req.CSeq() == nil || req.Via() == nil || !hasToTag(req) || len(req.Body()) > 0 {
		return false
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		return false // 483, by ServeInDialog
	}
	req.SetTransport("UDP")
	req.SetSource(remote.String())
	branch := p.statelessBranch(req)
	// nextHop changes only req (our Routes popped; sipgo parses data
	// afresh for what is not taken) and decides nothing but where it
	// goes: a refusal (an unknown dialog: 481, a wrong token or sender:
	// 403) is left to ServeInDialog, which answers and journals it.
	h, r := p.nextHop(req)
	if r != nil || h.transport != "UDP" {
		return false
	}
	now := p.now()
	h.dlg.touch(now)
	h.dlg.byeSent(now, h.fromCaller)
	if !p.prepareForwardBranch(req, h.dest, h.transport, branch) {
		return false
	}
	if err := p.d.Client.WriteRequest(req, prebuilt); err != nil {
		p.log.Debug("proxy: forward BYE", "to", h.dest, "error", err)
	}
	return true
}

// statelessBranch returns the branch of our Via for req forwarded without
// a transaction: the same for every retransmission of it (RFC 3261
// §16.11), different for any other request.
func (p *Proxy) statelessBranch(req *sip.Request) string {
	v := req.Via()
	h := fnv.New128a()
	b, _ := v.Params.Get("branch")
	for _, s := range []string{b, v.Host, strconv.Itoa(v.Port), req.CallID().Value(), string(req.Method)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], req.CSeq().SeqNo)
	h.Write(n[:])
	var sum [16]byte
	return statelessBranch + hex.EncodeToString(h.Sum(sum[:0]))
}

// TakeBYEResponse relays a response, received over UDP, to a BYE TakeBYE
// forwarded (our Via on top with a statelessBranch): our Via removed, to
// the next Via (its received/rport), only for a dialog the proxy follows
// (an ended one within DialogLinger) and from an address of the party the
// BYE went to; else it is dropped (journaled, once a minute per address,
// when a party of no such dialog sends it). A final answer other than a
// challenge ends the dialog and its call record, as a stateful forward's
// does (byeDone). It reports whether it took data.
func (p *Proxy) TakeBYEResponse(remote net.Addr, data []byte) bool {
	if !bytes.Contains(data, statelessBranchParam) {
		return false
	}
	msg, err := sip.ParseMessage(append([]byte(nil), data...))
	if err != nil {
		return false
	}
	res, ok := msg.(*sip.Response)
	if !ok {
		return false
	}
	v := res.Via()
	if v == nil || !p.isOwnVia(v) {
		return false
	}
	if b, _ := v.Params.Get("branch"); len(b) <= len(statelessBranch) || b[:len(statelessBranch)] != statelessBranch {
		return false
	}
	// Ours from here on: never a sipgo client transaction's.
	cs := res.CSeq()
	if cs == nil || cs.MethodName != sip.BYE || res.CallID() == nil || res.From() == nil || res.To() == nil {
		return true
	}
	res.SetTransport("UDP")
	res.SetSource(remote.String())
	// From and To are the BYE's: its sender is the From party.
	d, fromCaller, _ := p.dialogs.find(res.CallID().Value(), tagOf(res.From().Params), tagOf(res.To().Params), p.now())
	if d == nil {
		return true // long over: nothing to relay it for
	}
	answerer := &d.callee
	if !fromCaller {
		answerer = &d.caller
	}
	if src := registrar.SourceAddr(remote.String()); !d.hasIP(answerer, src) {
		if p.refused.First(p.refused.Key(src, string(cause.RouteTokenRefused))) {
			p.d.Journal.Record(journal.Event{Kind: journal.KindRequest, Cause: cause.RouteTokenRefused, Source: res.Source(),
				Transport: "UDP", CallID: res.CallID().Value(),
				Detail: strconv.Itoa(res.StatusCode) + " response to BYE not relayed: sender " + src.String() +
					" is not the party of the dialog the BYE went to (further refusals of this address are journaled once a minute)"})
		}
		return true
	}
	res.RemoveHeader("Via")
	next := res.Via()
	if next == nil {
		return true
	}
	dest, tp := viaTarget(next)
	// The Vias below ours are the answerer's to write: the answer goes
	// only to an address of the party that sent the BYE, never to a host
	// a forged Via names.
	sender := &d.caller
	if !fromCaller {
		sender = &d.callee
	}
	if to := registrar.SourceAddr(dest); !to.IsValid() || !d.hasIP(sender, to) {
		p.log.Debug("proxy: response to BYE not relayed: its next Via is not the BYE's sender", "via", dest)
		return true
	}
	res.SetDestination(dest)
	res.SetTransport(tp)
	p.relayResponse(res)
	if err := p.writeResponse(res); err != nil {
		p.log.Debug("proxy: forward BYE response", "status", res.StatusCode, "to", dest, "error", err)
	}
	switch {
	case res.StatusCode == 401 || res.StatusCode == 407:
		// A challenge: the dialog lasts (byeDone), and the BYE with
		// credentials that may follow is timed on its own.
		d.mu.Lock()
		d.byeAt = time.Time{}
		d.mu.Unlock()
	case res.StatusCode >= 200:
		p.byeDone(sip.BYE, hop{dlg: d, fromCaller: fromCaller}, res.StatusCode)
	}
	return true
}

// byeSent records that a BYE from the caller (fromCaller) or the callee
// was forwarded without a transaction at now (the first one since the
// last challenge of one counts).
func (d *dialog) byeSent(now time.Time, fromCaller bool) {
	d.mu.Lock()
	if d.byeAt.IsZero() {
		d.byeAt, d.byeFromCaller = now, fromCaller
	}
	d.mu.Unlock()
}

// byeTimedOut returns the dialogs still in the table whose BYE, forwarded
// without a transaction, was sent before cutoff and never got a final
// answer.
func (t *dialogTable) byeTimedOut(cutoff time.Time) []*dialog {
	var out []*dialog
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, d := range s.m {
			d.mu.Lock()
			if !d.byeAt.IsZero() && d.byeAt.Before(cutoff) {
				out = append(out, d)
			}
			d.mu.Unlock()
		}
		s.mu.Unlock()
	}
	return out
}

// endUnansweredBYEs ends the dialogs whose stateless BYE got no final
// answer within Timer F (a stateful forward would have answered 408 and
// ended them then): the call ended when its BYE was sent.
func (p *Proxy) endUnansweredBYEs(now time.Time) {
	for _, d := range p.dialogs.byeTimedOut(now.Add(-sip.Timer_F)) {
		d.mu.Lock()
		at, fromCaller := d.byeAt, d.byeFromCaller
		d.mu.Unlock()
		if !p.dialogs.remove(d, now) {
			continue
		}
		by := calls.ByCallee
		if fromCaller {
			by = calls.ByCaller
		}
		p.endDialogAt(d, at.Add(sip.Timer_F), cause.NormalClearing, by, "")
	}
}
