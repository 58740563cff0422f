package proxy

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/auth"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/registrar"
	"github.com/switchboard-pbx/switchboard/internal/router"
)

// ServeINVITE handles an INVITE: a new call (authenticate, route, fork) or
// a re-INVITE within a dialog (forwarded along its route). It blocks until
// the call is set up or has failed, because sipgo ends the server
// transaction when the handler returns.
func (p *Proxy) ServeINVITE(req *sip.Request, tx sip.ServerTransaction) {
	if req.CallID() == nil || req.From() == nil || req.To() == nil || req.CSeq() == nil || req.Via() == nil {
		p.answer(req, tx, 400, "Bad Request")
		return
	}
	if hasToTag(req) {
		p.forwardInDialog(req, tx)
		return
	}
	p.serveNewCall(req, tx)
}

// serveNewCall authenticates and routes a dialog-creating INVITE.
func (p *Proxy) serveNewCall(req *sip.Request, tx sip.ServerTransaction) {
	from := req.From()
	src := registrar.SourceAddr(req.Source())
	ev := journal.Event{Kind: journal.KindInvite, Extension: req.Recipient.User, Source: req.Source(),
		Transport: strings.ToUpper(req.Transport()), UserAgent: userAgent(req), CallID: req.CallID().Value()}
	caller := from.Address.User

	if req.Recipient.Scheme != "sip" && req.Recipient.Scheme != "sips" {
		p.refuse(req, tx, &ev, cause.BadRequest, "request URI must be a SIP URI, not "+req.Recipient.Scheme)
		return
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		p.refuse(req, tx, &ev, cause.TooManyHops, "Max-Forwards reached 0 (call from "+caller+")")
		return
	}
	if p.looped(req) {
		p.refuse(req, tx, &ev, cause.LoopDetected, "the INVITE already passed through this server")
		return
	}
	if ok, list := p.d.Policy.AllowInvite(src); !ok {
		p.refuse(req, tx, &ev, cause.ACLDenied, "source "+src.String()+" rejected by "+list)
		return
	}

	callerDomain, served := p.d.Dir.Resolve(from.Address.Host)
	ev.Domain = callerDomain
	res := p.d.Auth.Check(req, "Proxy-Authorization", callerDomain, served)
	ev.AuthUser, ev.Realm = res.AuthUser, res.Realm
	if res.NeedsChallenge() {
		p.challenge(req, func(r *sip.Response) { p.respond(tx, r) }, &ev, res, callerDomain, src, caller)
		return
	}
	if res.Cause != "" {
		who := res.AuthUser
		if who == "" {
			who = caller
		}
		p.d.Policy.AuthFailed(src, callerDomain, who, res.Detail)
		p.refuse(req, tx, &ev, res.Cause, res.Detail+" (call from "+caller+")")
		return
	}
	if res.AuthUser != caller {
		p.d.Policy.AuthFailed(src, callerDomain, res.AuthUser, "auth user "+res.AuthUser+" calling as "+caller)
		p.refuse(req, tx, &ev, cause.AuthUserMismatch,
			fmt.Sprintf("authenticated as %s but the From user is %s: a phone may only call as its own extension", res.AuthUser, caller))
		return
	}
	p.d.Policy.AuthSucceeded(src, callerDomain, res.AuthUser)
	p.d.Journal.Settle(p.challenged.Key(src, caller))
	ext := res.Ext
	if p.dialogs.full() {
		// Its in-dialog requests could not be routed.
		p.refuse(req, tx, &ev, cause.TemporaryFailure,
			fmt.Sprintf("too many calls in progress: %d dialogs followed (the maximum)", p.cfg.MaxDialogs))
		return
	}

	trying := sip.NewResponseFromRequest(req, 100, "Trying", nil)
	p.respond(tx, trying)

	now := p.now()
	rec := calls.Record{ID: p.d.Calls.NextID(), CallID: ev.CallID, From: caller, To: req.Recipient.User,
		Domain: ext.Domain(), Source: ev.Source, Transport: ev.Transport, UserAgent: ev.UserAgent, Start: now}
	ev.Domain = ext.Domain()
	d := p.rr.Route(router.Request{CallerDomain: ext.Domain(), Host: req.Recipient.Host, User: req.Recipient.User})
	if d.Cause != "" {
		status := p.answerCause(req, tx, d.Cause)
		rec.End, rec.SIPStatus, rec.Cause, rec.HangupBy, rec.Detail = now, status, d.Cause, calls.ByServer, d.Detail
		p.d.Calls.Save(rec)
		ev.Cause, ev.Status, ev.Detail = d.Cause, status, caller+" -> "+req.Recipient.User+": "+d.Detail
		p.d.Journal.Record(ev)
		return
	}
	f := &fork{p: p, req: req, tx: tx, rec: rec, ev: ev, decision: d,
		upDest: trying.Destination(), upTransport: req.Transport()}
	f.run()
}

// Stateless reports whether req is an INVITE that starts a call and carries
// no credentials, from an address the inbound ACL allows, with nothing else
// to refuse: its only answer is a 407 challenge, which ChallengeStateless
// sends without a server transaction (as Kamailio does). A retransmission
// just gets another 407; the ACK for the 407 matches nothing and is dropped.
// Everything else takes the transaction path (ServeINVITE).
func (p *Proxy) Stateless(req *sip.Request) bool {
	if req.Method != sip.INVITE || req.CallID() == nil || req.From() == nil || req.To() == nil ||
		req.CSeq() == nil || req.Via() == nil || hasToTag(req) || req.GetHeader("Proxy-Authorization") != nil {
		return false
	}
	if req.Recipient.Scheme != "sip" && req.Recipient.Scheme != "sips" {
		return false
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		return false
	}
	if p.looped(req) {
		return false
	}
	ok, _ := p.d.Policy.AllowInvite(registrar.SourceAddr(req.Source()))
	return ok
}

// ChallengeStateless answers an INVITE that Stateless accepted with a 407
// through send, and journals it like ServeINVITE would.
func (p *Proxy) ChallengeStateless(req *sip.Request, send func(*sip.Response) error) {
	from := req.From()
	src := registrar.SourceAddr(req.Source())
	ev := journal.Event{Kind: journal.KindInvite, Extension: req.Recipient.User, Source: req.Source(),
		Transport: strings.ToUpper(req.Transport()), UserAgent: userAgent(req), CallID: req.CallID().Value()}
	callerDomain, _ := p.d.Dir.Resolve(from.Address.Host)
	ev.Domain = callerDomain
	res := auth.Result{Cause: cause.Challenged}
	p.challenge(req, func(r *sip.Response) {
		if err := send(r); err != nil {
			p.log.Debug("proxy: send 407", "error", err)
		}
	}, &ev, res, callerDomain, src, from.Address.User)
}

// looped reports whether req already carries a Via this proxy added
// (RFC 3261 §16.3 step 4; switchboard does not spiral).
func (p *Proxy) looped(req *sip.Request) bool {
	for _, h := range req.GetHeaders("Via") {
		if v, ok := h.(*sip.ViaHeader); ok && p.isOwnVia(v) {
			return true
		}
	}
	return false
}

// refuse answers a new call with the SIP answer of cause c and journals it.
func (p *Proxy) refuse(req *sip.Request, tx sip.ServerTransaction, ev *journal.Event, c cause.Code, detail string) {
	ev.Status = p.answerCause(req, tx, c)
	ev.Cause, ev.Detail = c, detail
	if from := req.From(); from != nil { // its challenge first
		p.d.Journal.Release(p.challenged.Key(registrar.SourceAddr(req.Source()), from.Address.User))
	}
	p.d.Journal.Record(*ev)
}

// challenge answers 407 with a Proxy-Authenticate per algorithm. A plain
// challenge is journaled once a minute per phone and user, unless the call
// is authenticated within journal.HoldFor; stale or bad nonces always.
func (p *Proxy) challenge(req *sip.Request, send func(*sip.Response), ev *journal.Event, res auth.Result, realm string,
	src netip.Addr, user string) {
	resp := sip.NewResponseFromRequest(req, 407, "Proxy Authentication Required", nil)
	p.d.Auth.Challenge(resp, "Proxy-Authenticate", realm, res.Cause == cause.StaleNonce)
	resp.AppendHeader(sip.NewHeader("Server", p.cfg.ServerName))
	send(resp)
	ev.Cause, ev.Status, ev.Detail = res.Cause, 407, res.Detail
	if res.Cause != cause.Challenged || res.Detail != "" {
		p.d.Journal.Release(p.challenged.Key(src, user))
		p.d.Journal.Record(*ev)
		return
	}
	// Once a minute per phone and user, and only if the call is not
	// authenticated within journal.HoldFor (its own events follow).
	key := p.challenged.Key(src, user)
	if p.challenged.First(key) {
		ev.Detail = "call challenged with realm " + realm
		p.d.Journal.Hold(key, *ev)
	}
}
