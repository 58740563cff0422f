package proxy

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
)

// dialog is an answered call the proxy follows until its BYE: where each
// party is reached, and the call record to finish.
type dialog struct {
	callID, callerTag, calleeTag string
	callerDest, callerTransport  string
	calleeDest, calleeTransport  string

	// mu guards rec and last.
	mu   sync.Mutex
	rec  calls.Record
	last time.Time
}

const dialogShards = 32

// dialogTable holds the dialogs, keyed by Call-ID and the callee's tag.
type dialogTable struct {
	seed   maphash.Seed
	max    int
	shards [dialogShards]struct {
		mu sync.Mutex // guards m
		m  map[string]*dialog
	}
	count sync.Mutex // guards n
	n     int
}

func newDialogTable(max int) *dialogTable {
	t := &dialogTable{seed: maphash.MakeSeed(), max: max}
	for i := range t.shards {
		t.shards[i].m = map[string]*dialog{}
	}
	return t
}

func dialogKey(callID, calleeTag string) string { return callID + "\x00" + calleeTag }

func (t *dialogTable) shard(callID string) int {
	return int(maphash.String(t.seed, callID) % dialogShards)
}

// add stores d unless the table is full; it reports whether it did.
func (t *dialogTable) add(d *dialog) bool {
	t.count.Lock()
	if t.n >= t.max {
		t.count.Unlock()
		return false
	}
	t.n++
	t.count.Unlock()
	s := &t.shards[t.shard(d.callID)]
	s.mu.Lock()
	if _, dup := s.m[dialogKey(d.callID, d.calleeTag)]; dup {
		s.mu.Unlock()
		t.count.Lock()
		t.n--
		t.count.Unlock()
		return false
	}
	s.m[dialogKey(d.callID, d.calleeTag)] = d
	s.mu.Unlock()
	return true
}

// find returns the dialog of an in-dialog request and whether the caller
// sent it.
func (t *dialogTable) find(callID, fromTag, toTag string) (d *dialog, fromCaller bool) {
	s := &t.shards[t.shard(callID)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if d = s.m[dialogKey(callID, toTag)]; d != nil && d.callerTag == fromTag {
		return d, true
	}
	if d = s.m[dialogKey(callID, fromTag)]; d != nil && d.callerTag == toTag {
		return d, false
	}
	return nil, false
}

// remove deletes d; it reports false when it was already gone.
func (t *dialogTable) remove(d *dialog) bool {
	s := &t.shards[t.shard(d.callID)]
	k := dialogKey(d.callID, d.calleeTag)
	s.mu.Lock()
	cur, ok := s.m[k]
	if ok && cur == d {
		delete(s.m, k)
	}
	s.mu.Unlock()
	if !ok || cur != d {
		return false
	}
	t.count.Lock()
	t.n--
	t.count.Unlock()
	return true
}

// expire removes and returns the dialogs idle since before cutoff (all of
// them when cutoff is zero).
func (t *dialogTable) expire(cutoff time.Time) []*dialog {
	var out []*dialog
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, d := range s.m {
			d.mu.Lock()
			idle := cutoff.IsZero() || d.last.Before(cutoff)
			d.mu.Unlock()
			if idle {
				delete(s.m, k)
				out = append(out, d)
			}
		}
		s.mu.Unlock()
	}
	t.count.Lock()
	t.n -= len(out)
	t.count.Unlock()
	return out
}

func (t *dialogTable) len() int {
	t.count.Lock()
	defer t.count.Unlock()
	return t.n
}

// endDialog finishes the call record of a dialog.
func (p *Proxy) endDialog(d *dialog, c cause.Code, by, detail string) {
	d.mu.Lock()
	d.rec.End = p.now()
	d.rec.Cause, d.rec.HangupBy = c, by
	if detail != "" {
		if d.rec.Detail != "" {
			d.rec.Detail += "; "
		}
		d.rec.Detail += detail
	}
	rec := d.rec
	d.mu.Unlock()
	p.d.Calls.Save(rec)
}

// hop is where an in-dialog request goes next.
type hop struct {
	dest, transport string
	dlg             *dialog
	fromCaller      bool
}

// nextHop pops our Route entries from an in-dialog request and decides
// where it goes: the next Route, else the party of the dialog it is
// addressed to (at the address its requests come from), else the
// Request-URI. ok is false (with the status to answer) for a request that
// is not ours to route: no Route to us and no dialog we know (481), or a
// Route to us whose token does not match the Call-ID (403: we are no open
// relay).
func (p *Proxy) nextHop(req *sip.Request) (h hop, status int, reason string) {
	callID := req.CallID().Value()
	fromTag, toTag := tagOf(req.From().Params), tagOf(req.To().Params)
	own, tokenOK := p.popOwnRoutes(req, callID)
	h.dlg, h.fromCaller = p.dialogs.find(callID, fromTag, toTag)
	switch {
	case own == 0 && h.dlg == nil:
		return h, 481, "Call/Transaction Does Not Exist"
	case own > 0 && !tokenOK && h.dlg == nil:
		return h, 403, "Forbidden"
	}
	if r := req.Route(); r != nil {
		h.dest, h.transport = uriDest(&r.Address)
		return h, 0, ""
	}
	if h.dlg != nil {
		if h.fromCaller {
			h.dest, h.transport = h.dlg.calleeDest, h.dlg.calleeTransport
		} else {
			h.dest, h.transport = h.dlg.callerDest, h.dlg.callerTransport
		}
		return h, 0, ""
	}
	h.dest, h.transport = uriDest(&req.Recipient)
	return h, 0, ""
}

// ServeACK forwards the ACK of a 2xx statelessly along the dialog's route
// (an ACK for a non-2xx answer is absorbed by its transaction and never
// reaches this handler). ACKs are never answered.
func (p *Proxy) ServeACK(req *sip.Request, _ sip.ServerTransaction) {
	if req.CallID() == nil || req.From() == nil || req.To() == nil || req.CSeq() == nil {
		return
	}
	fwd := req.Clone()
	h, status, _ := p.nextHop(fwd)
	if status != 0 {
		p.log.Debug("proxy: ACK not routed", "call_id", req.CallID().Value(), "status", status)
		return
	}
	if h.dlg != nil {
		h.dlg.touch(p.now())
	}
	if !p.prepareForward(fwd, h.dest, h.transport) {
		return
	}
	if err := p.d.Client.WriteRequest(fwd, prebuilt); err != nil {
		p.log.Debug("proxy: forward ACK", "to", h.dest, "error", err)
	}
}

func (d *dialog) touch(now time.Time) {
	d.mu.Lock()
	d.last = now
	d.mu.Unlock()
}

// ServeCANCEL answers a CANCEL that matched no INVITE transaction (sipgo
// answers the matching ones itself, 200 then 487, and tells the INVITE's
// handler): 481.
func (p *Proxy) ServeCANCEL(req *sip.Request, tx sip.ServerTransaction) {
	p.answer(req, tx, 481, "Call/Transaction Does Not Exist")
}

// ServeInDialog forwards BYE, UPDATE, INFO, REFER, NOTIFY, MESSAGE and
// PRACK within a dialog we record-routed (no authentication: the dialog's
// Record-Route token is the credential), statefully: the answer of the
// other party is relayed, 408 when it does not answer. Outside a dialog
// these requests are not routed (481, or 405 for MESSAGE, NOTIFY and REFER
// which switchboard does not route between extensions yet). A BYE ends the
// call record.
func (p *Proxy) ServeInDialog(req *sip.Request, tx sip.ServerTransaction) {
	if req.CallID() == nil || req.From() == nil || req.To() == nil || req.CSeq() == nil || req.Via() == nil {
		p.answer(req, tx, 400, "Bad Request")
		return
	}
	if !hasToTag(req) {
		switch req.Method {
		case sip.MESSAGE, sip.NOTIFY, sip.REFER:
			p.answer(req, tx, 405, "Method Not Allowed", sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, PRACK"))
		default:
			p.answer(req, tx, 481, "Call/Transaction Does Not Exist")
		}
		return
	}
	p.forwardInDialog(req, tx)
}

// forwardInDialog relays one in-dialog request (re-INVITE included) and its
// answer.
func (p *Proxy) forwardInDialog(req *sip.Request, tx sip.ServerTransaction) {
	fwd := req.Clone()
	h, status, reason := p.nextHop(fwd)
	if status != 0 {
		p.answer(req, tx, status, reason)
		return
	}
	if h.dlg != nil {
		h.dlg.touch(p.now())
	}
	if !p.prepareForward(fwd, h.dest, h.transport) {
		p.answerCause(req, tx, cause.TooManyHops)
		return
	}
	trying := sip.NewResponseFromRequest(req, 100, "Trying", nil)
	upDest, upTp := trying.Destination(), req.Transport()
	if req.IsInvite() {
		p.respond(tx, trying)
	}
	out, err := p.d.Client.TransactionRequest(context.Background(), fwd, prebuilt)
	if err != nil {
		p.log.Debug("proxy: forward in-dialog request", "method", req.Method, "to", h.dest, "error", err)
		p.answer(req, tx, 503, "Service Unavailable")
		p.byeDone(req, h, 503)
		return
	}
	isInvite := req.IsInvite()
	var cancelled chan struct{}
	var limit <-chan time.Time
	if isInvite {
		out.OnRetransmission(p.forwardStateless)
		cancelled = make(chan struct{})
		var once sync.Once
		tx.OnCancel(func(*sip.Request) { once.Do(func() { close(cancelled) }) })
		t := time.NewTimer(reinviteLimit)
		defer t.Stop()
		limit = t.C
	}
	provisional, gaveUp := false, false
	for {
		select {
		case res := <-out.Responses():
			if res.StatusCode == 100 {
				provisional = true
				continue
			}
			if res.StatusCode < 200 {
				provisional = true
				if !gaveUp {
					p.respond(tx, upstream(res, upDest, upTp))
				}
				continue
			}
			if gaveUp {
				// Answered after the caller cancelled: a 2xx still goes up
				// (RFC 3261 §16.7 step 5); the rest is absorbed.
				if res.IsSuccess() {
					p.forwardStateless(res)
				}
			} else {
				p.respond(tx, upstream(res, upDest, upTp))
			}
			p.byeDone(req, h, res.StatusCode)
			if !isInvite {
				out.Terminate()
			}
			return
		case <-out.Done():
			if !gaveUp {
				p.answer(req, tx, 408, "Request Timeout")
			}
			p.byeDone(req, h, 408)
			return
		case <-cancelled:
			cancelled = nil
			gaveUp = true
			if provisional {
				p.sendCancel(fwd)
			}
		case <-limit:
			limit = nil
			if !gaveUp {
				gaveUp = true
				p.answer(req, tx, 408, "Request Timeout")
			}
			p.sendCancel(fwd)
			go func() {
				// Give the peer 32 s to answer the CANCEL, then let go.
				select {
				case <-out.Done():
				case <-time.After(sip.Timer_B):
					out.Terminate()
				}
			}()
			return
		}
	}
}

// reinviteLimit bounds how long a re-INVITE may stay unanswered.
const reinviteLimit = 3 * time.Minute

// byeDone ends the call record when a BYE got its final answer (any answer
// but a challenge ends the dialog, RFC 3261 §15.1.2).
func (p *Proxy) byeDone(req *sip.Request, h hop, status int) {
	if req.Method != sip.BYE || h.dlg == nil || status == 401 || status == 407 {
		return
	}
	if !p.dialogs.remove(h.dlg) {
		return
	}
	by := calls.ByCallee
	if h.fromCaller {
		by = calls.ByCaller
	}
	p.endDialog(h.dlg, cause.NormalClearing, by, "")
}
