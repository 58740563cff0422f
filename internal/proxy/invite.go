package proxy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/auth"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/cluster"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/registrar"
	"github.com/switchboard-pbx/switchboard/internal/router"
	"github.com/switchboard-pbx/switchboard/internal/sdpkind"
	"github.com/switchboard-pbx/switchboard/internal/sipreply"
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
	if node, domain, ok := p.nodeCall(req); ok {
		p.serveNodeCall(req, tx, node, domain)
		return
	}
	p.serveNewCall(req, tx)
}

// serveNewCall authenticates and routes a dialog-creating INVITE: the
// gates of a new call (admit, then authorize), then the router.
func (p *Proxy) serveNewCall(req *sip.Request, tx sip.ServerTransaction) {
	src := registrar.SourceAddr(req.Source())
	ev := callEvent(req)
	caller := req.From().Address.User
	if c, detail := p.admit(req, src); c != "" {
		p.refuse(req, tx, &ev, c, detail)
		return
	}
	res, ok := p.authorize(req, &ev, src, "", func(a *sipreply.Answer) error {
		p.respond(tx, a.Response())
		return nil
	},
		func(c cause.Code, detail string) { p.refuse(req, tx, &ev, c, detail) })
	if !ok {
		return
	}
	ext := res.Ext
	if p.dialogs.full() {
		// Its in-dialog requests could not be routed.
		p.refuse(req, tx, &ev, cause.TemporaryFailure,
			fmt.Sprintf("too many calls in progress: %d dialogs followed (the maximum)", p.cfg.MaxDialogs))
		return
	}

	if n := p.setups.Load(); n >= int64(p.cfg.MaxSetups) {
		// Overloaded: a fast answer instead of one more call to carry.
		ev.Status = p.answerCause(req, tx, cause.TemporaryFailure, sip.NewHeader("Retry-After", "5"))
		ev.Cause = cause.TemporaryFailure
		ev.Detail = "server overloaded: " + strconv.FormatInt(n, 10) +
			" forwarded calls are still waiting for their callees' first answer (the maximum); " +
			"answered 503 with Retry-After (further refusals of this phone are journaled once a minute)"
		if p.shed.First(p.shed.Key(src, caller)) {
			p.d.Journal.Record(ev)
		}
		return
	}

	trying := sip.NewResponseFromRequest(req, 100, "Trying", nil)
	p.respond(tx, trying)

	now := p.now()
	rec := calls.Record{ID: p.d.Calls.NextID(), CallID: ev.CallID, From: caller, To: req.Recipient.User,
		Domain: ext.Domain(), Source: ev.Source, Transport: ev.Transport, UserAgent: ev.UserAgent, Start: now}
	ev.Domain = ext.Domain()
	d := p.rr.Route(router.Request{CallerDomain: ext.Domain(), Host: req.Recipient.Host, User: req.Recipient.User})
	bridged := false
	if d.Cause == "" {
		all := d.Targets
		d = mediaCheck(req, d)
		if d.Cause == cause.WebRTCNeedsMediaRelay && p.bridgeable(req) {
			// A browser and a plain phone: the WebRTC bridge carries their media.
			d.Targets, d.Cause, d.Detail, bridged = all, "", "", true
		}
	}
	var m *callMedia
	var offer []byte
	kind := bodyKind(req)
	sig := offerAddr(req, kind)
	if d.Cause == "" && bridged {
		m, offer, d.Cause, d.Detail = p.planBridge(req, d)
	} else if d.Cause == "" && p.d.Media != nil {
		m, offer, d.Cause, d.Detail = p.planMedia(req, d, kind, sig)
	}
	if d.Cause != "" {
		status := p.answerCause(req, tx, d.Cause, p.causeWarning(d.Cause, d.Detail)...)
		rec.End, rec.SIPStatus, rec.Cause, rec.HangupBy, rec.Detail = now, status, d.Cause, calls.ByServer, d.Detail
		p.d.Calls.Save(rec)
		ev.Cause, ev.Status, ev.Detail = d.Cause, status, caller+" -> "+req.Recipient.User+": "+d.Detail
		p.d.Journal.Record(ev)
		return
	}
	f := &fork{p: p, req: req, tx: tx, rec: rec, ev: ev, decision: d,
		upDest: trying.Destination(), upTransport: req.Transport(), media: m, offer: offer,
		offerAddr: sig, offerWebRTC: kind == sdpWebRTC}
	f.run()
}

// callEvent starts the journal event of a new call.
func callEvent(req *sip.Request) journal.Event {
	return journal.Event{Kind: journal.KindInvite, Extension: req.Recipient.User, Source: req.Source(),
		Transport: strings.ToUpper(req.Transport()), UserAgent: userAgent(req), CallID: req.CallID().Value()}
}

// admit applies the gates a new call passes before its credentials are
// looked at, on both paths (ServeINVITE and Stateless), in order: a SIP
// Request-URI, Max-Forwards above 0, no loop through this proxy, the
// inbound ACL. It returns the cause and detail of the first that fails,
// or "" when all pass. It answers nothing.
func (p *Proxy) admit(req *sip.Request, src netip.Addr) (cause.Code, string) {
	if req.Recipient.Scheme != "sip" && req.Recipient.Scheme != "sips" {
		return cause.BadRequest, "request URI must be a SIP URI, not " + req.Recipient.Scheme
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		return cause.TooManyHops, "Max-Forwards reached 0 (call from " + req.From().Address.User + ")"
	}
	if p.looped(req) {
		return cause.LoopDetected, "the INVITE already passed through this server"
	}
	if ok, list := p.d.Policy.AllowInvite(src); !ok {
		return cause.ACLDenied, "source " + src.String() + " rejected by " + list
	}
	return "", ""
}

// authorize is the authentication gate of a new call that admit let
// through, on both paths: missing, stale or foreign credentials get a 407
// through send (its To tag is tag, or a random one when ""); wrong ones, and a From user other than the authenticated
// one, are refused through refuse and counted against src (see
// Policy.AuthFailed). ok reports that the caller authenticated as its own
// extension (res.Ext); ev gets the domain, auth user and realm.
func (p *Proxy) authorize(req *sip.Request, ev *journal.Event, src netip.Addr, tag string, send func(*sipreply.Answer) error,
	refuse func(cause.Code, string)) (res auth.Result, ok bool) {
	caller := req.From().Address.User
	callerDomain, served := p.d.Dir.Resolve(req.From().Address.Host)
	ev.Domain = callerDomain
	res = p.d.Auth.Check(req, "Proxy-Authorization", callerDomain, served)
	ev.AuthUser, ev.Realm = res.AuthUser, res.Realm
	if res.NeedsChallenge() {
		p.challenge(req, tag, send, ev, res, callerDomain, src, caller)
		return res, false
	}
	if res.Cause != "" {
		who := res.AuthUser
		if who == "" {
			who = caller
		}
		p.d.Policy.AuthFailed(src, callerDomain, who, res.Detail)
		refuse(res.Cause, res.Detail+" (call from "+caller+")")
		return res, false
	}
	if res.AuthUser != caller {
		p.d.Policy.AuthFailed(src, callerDomain, res.AuthUser, "auth user "+res.AuthUser+" calling as "+caller)
		refuse(cause.AuthUserMismatch,
			fmt.Sprintf("authenticated as %s but the From user is %s: a phone may only call as its own extension", res.AuthUser, caller))
		return res, false
	}
	p.d.Policy.AuthSucceeded(src, callerDomain, res.AuthUser)
	p.d.Journal.Settle(p.challenged.Key(src, caller))
	return res, true
}

// Stateless reports whether req is an INVITE that starts a call and carries
// no credentials, and passes admit: its only answer is a 407 challenge,
// which ChallengeStateless sends without a server transaction (as
// Kamailio does). A retransmission just gets another 407; the ACK for the
// 407 matches nothing and is dropped. Everything else takes the
// transaction path (ServeINVITE).
func (p *Proxy) Stateless(req *sip.Request) bool {
	if req.Method != sip.INVITE || req.CallID() == nil || req.From() == nil || req.To() == nil ||
		req.CSeq() == nil || req.Via() == nil || hasToTag(req) || req.GetHeader("Proxy-Authorization") != nil ||
		req.GetHeader(cluster.Header) != nil { // another node's (ServeINVITE checks it)
		return false
	}
	c, _ := p.admit(req, registrar.SourceAddr(req.Source()))
	return c == ""
}

// ChallengeStateless answers an INVITE that Stateless accepted through
// send, by the same gate as ServeINVITE (authorize: without credentials,
// a 407), and journals it alike.
func (p *Proxy) ChallengeStateless(req *sip.Request, send func(*sipreply.Answer) error) {
	ev := callEvent(req)
	// Its To tag: its ACK is then recognised before sipgo parses it
	// (TakeACK).
	p.authorize(req, &ev, registrar.SourceAddr(req.Source()), statelessTagPrefix+sip.GenerateTagN(12), send, func(c cause.Code, detail string) {
		// Not reached: without credentials the answer is a 407.
		p.log.Error("proxy: stateless INVITE refused; dropped", "cause", c, "detail", detail)
	})
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

// challenge answers 407 with a Proxy-Authenticate per algorithm (To tag:
// tag, a random one when "") through send. A plain
// challenge is journaled once a minute per phone and user, unless the call
// is authenticated within journal.HoldFor; stale or bad nonces always.
func (p *Proxy) challenge(req *sip.Request, tag string, send func(*sipreply.Answer) error, ev *journal.Event, res auth.Result, realm string,
	src netip.Addr, user string) {
	a := p.answers.Begin(req, 407, "Proxy Authentication Required", tag)
	p.d.Auth.ChallengeTo(a, "Proxy-Authenticate", realm, res.Cause == cause.StaleNonce)
	a.Header("Server", p.cfg.ServerName)
	if err := send(a); err != nil {
		p.log.Debug("proxy: send 407", "error", err)
	}
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

// mediaCheck keeps the targets that can exchange media with the caller
// without a media relay (package sdpkind: a WebRTC browser, reached over
// WS/WSS, and a plain-RTP phone cannot). The caller's side is its SDP
// offer when the INVITE has one; an INVITE without an SDP offer (a late
// offer: the offer comes in the callee's 2xx, which the proxy does not
// read) is judged by the transport the caller came over instead (WS/WSS:
// a browser). A callee's side is the transport its binding registered
// over. When it drops every target the decision becomes
// WebRTCNeedsMediaRelay (488) with a detail naming both sides; with some
// left, the call rings those.
func mediaCheck(req *sip.Request, d router.Decision) router.Decision {
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	caller := sdpkind.Classify(ct, req.Body())
	late := caller == sdpkind.Unknown
	if late {
		caller = sdpkind.Endpoint(req.Transport())
	}
	kept := d.Targets[:0:0]
	var dropped []string
	why := ""
	for _, b := range d.Targets {
		target := sdpkind.Endpoint(b.Transport)
		if sdpkind.Compatible(caller, target) {
			kept = append(kept, b)
			continue
		}
		why = sdpkind.Why(caller, target)
		dropped = append(dropped, strings.ToUpper(b.Transport)+" "+b.Source)
	}
	if len(dropped) == 0 {
		return d
	}
	if len(kept) > 0 {
		d.Targets = kept
		return d
	}
	d.Targets = nil
	d.Cause = cause.WebRTCNeedsMediaRelay
	if late {
		d.Detail = fmt.Sprintf("late offer (no SDP in the INVITE) from a %s caller over %s to %s registered over %s: %s",
			caller, strings.ToUpper(req.Transport()), req.Recipient.User, strings.Join(dropped, ", "), why)
		return d
	}
	d.Detail = fmt.Sprintf("%s offer to %s registered over %s: %s", caller, req.Recipient.User,
		strings.Join(dropped, ", "), why)
	return d
}
