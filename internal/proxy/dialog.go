package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"hash/maphash"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/registrar"
	"github.com/switchboard-pbx/switchboard/internal/sdp"
)

// DialogLinger is how long an ended dialog still routes a late ACK, a
// crossing BYE and 2xx retransmissions (sipgo's transaction linger, Timer
// K/J scale): after that, in-dialog requests for it get 481.
const DialogLinger = 8 * time.Second

// side is one party of a dialog as the proxy recorded it at setup.
type side struct {
	// dest and transport are where requests to this party go (NAT-aware:
	// the address its INVITE came from, or router.Destination of the
	// binding that answered); fixed for the dialog's life.
	dest, transport string
	// routes are the Route entries that must follow ours in requests sent
	// to this party (other proxies in its Record-Route path); usually none.
	routes []string

	// Guarded by dialog.mu:
	// ips are the addresses this party's requests may come from.
	ips []netip.Addr
	// contact is the party's remote target (normalised host:port of its
	// Contact), refreshed by a 2xx to a re-INVITE or UPDATE; target is
	// that Contact's whole URI (the Request-URI of a request to it).
	contact, target string
	// addr is the party's From or To header value in the dialog (its URI
	// and tag), and cseq the highest CSeq of its requests the proxy saw:
	// what a BYE on its behalf needs (Proxy.Hangup).
	addr string
	cseq uint32
}

// dialog is a call the proxy follows (early from a 1xx with a To tag,
// confirmed from the 2xx) until its BYE: both parties, where each is
// reached, the route token the dialog was given and the call record to
// finish. Only requests that match a dialog are routed.
type dialog struct {
	callID, callerTag, calleeTag string
	token                        string // the sb= parameter of our Record-Route
	caller, callee               side
	inviteCSeq                   uint32 // the CSeq number of the INVITE that set it up

	// mu guards confirmed, rec, last, ended and the sides' ips and contact.
	mu        sync.Mutex
	confirmed bool // answered (2xx); false for an early dialog
	rec       calls.Record
	last      time.Time
	ended     time.Time // zero while the dialog lasts
	// media is the call's relayed media (nil: not relayed), closed when
	// the call record ends.
	media *callMedia
	// byeAt is when the first BYE forwarded without a transaction
	// (TakeBYE) was sent, and byeFromCaller whether the caller sent it;
	// zero while none was.
	byeAt         time.Time
	byeFromCaller bool
}

// hasIP reports whether src is an address the party s may send from.
func (d *dialog) hasIP(s *side, src netip.Addr) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Contains(s.ips, src)
}

// addIP lets the party s send from src too.
func (d *dialog) addIP(s *side, src netip.Addr) {
	if !src.IsValid() {
		return
	}
	d.mu.Lock()
	if !slices.Contains(s.ips, src) {
		s.ips = append(s.ips, src)
	}
	d.mu.Unlock()
}

// targetOK reports whether a request to party s may carry Request-URI u:
// its recorded Contact or the address it is reached at.
func (d *dialog) targetOK(s *side, u *sip.Uri) bool {
	hp := uriHostPort(u)
	d.mu.Lock()
	defer d.mu.Unlock()
	return hp == s.contact || hp == strings.ToLower(s.dest)
}

// setContact records c (a Contact header, nil: no change) as party s's
// remote target.
func (d *dialog) setContact(s *side, c *sip.ContactHeader) {
	if c == nil {
		return
	}
	hp := uriHostPort(&c.Address)
	target := c.Address.String()
	d.mu.Lock()
	s.contact, s.target = hp, target
	d.mu.Unlock()
}

// sawCSeq records the CSeq of a request from the caller (fromCaller) or
// the callee, so a BYE on its behalf can go above it.
func (d *dialog) sawCSeq(fromCaller bool, cs *sip.CSeqHeader) {
	if cs == nil {
		return
	}
	s := &d.callee
	if fromCaller {
		s = &d.caller
	}
	d.mu.Lock()
	s.cseq = max(s.cseq, cs.SeqNo)
	d.mu.Unlock()
}

func (d *dialog) isConfirmed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.confirmed
}

// uriHostPort returns the normalised host:port of a URI (default port
// 5060, 5061 for sips), the form dialog targets are compared in.
func uriHostPort(u *sip.Uri) string {
	port := u.Port
	if port == 0 {
		port = 5060
		if u.IsEncrypted() {
			port = 5061
		}
	}
	return net.JoinHostPort(strings.ToLower(strings.Trim(u.Host, "[]")), strconv.Itoa(port))
}

const dialogShards = 32

// dialogTable holds the dialogs, keyed by Call-ID and the callee's tag,
// and, for DialogLinger, the ones that ended.
type dialogTable struct {
	seed   maphash.Seed
	max    int
	shards [dialogShards]struct {
		mu   sync.Mutex // guards m and gone
		m    map[string]*dialog
		gone map[string]*dialog // ended within DialogLinger (or the last sweep)
	}
	n atomic.Int64 // dialogs in the m maps
}

func newDialogTable(max int) *dialogTable {
	t := &dialogTable{seed: maphash.MakeSeed(), max: max}
	for i := range t.shards {
		t.shards[i].m = map[string]*dialog{}
		t.shards[i].gone = map[string]*dialog{}
	}
	return t
}

func dialogKey(callID, calleeTag string) string { return callID + "\x00" + calleeTag }

func (t *dialogTable) shard(callID string) int {
	return int(maphash.String(t.seed, callID) % dialogShards)
}

// full reports whether the table holds its maximum of dialogs.
func (t *dialogTable) full() bool { return t.n.Load() >= int64(t.max) }

// add stores d unless the table is full or holds the same dialog; it
// reports whether it did.
func (t *dialogTable) add(d *dialog) bool {
	if t.n.Add(1) > int64(t.max) {
		t.n.Add(-1)
		return false
	}
	s := &t.shards[t.shard(d.callID)]
	k := dialogKey(d.callID, d.calleeTag)
	s.mu.Lock()
	if _, dup := s.m[k]; dup {
		s.mu.Unlock()
		t.n.Add(-1)
		return false
	}
	delete(s.gone, k)
	s.m[k] = d
	s.mu.Unlock()
	return true
}

// find returns the dialog of an in-dialog request, whether the caller
// sent it, and whether the dialog has ended (it is then still returned
// for DialogLinger after its end).
func (t *dialogTable) find(callID, fromTag, toTag string, now time.Time) (d *dialog, fromCaller, ended bool) {
	s := &t.shards[t.shard(callID)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if d = s.m[dialogKey(callID, toTag)]; d != nil && d.callerTag == fromTag {
		return d, true, false
	}
	if d = s.m[dialogKey(callID, fromTag)]; d != nil && d.callerTag == toTag {
		return d, false, false
	}
	for _, c := range [...]struct {
		key        string
		tag        string
		fromCaller bool
	}{{dialogKey(callID, toTag), fromTag, true}, {dialogKey(callID, fromTag), toTag, false}} {
		if d = s.gone[c.key]; d != nil && d.callerTag == c.tag {
			d.mu.Lock()
			recent := now.Sub(d.ended) < DialogLinger
			d.mu.Unlock()
			if recent {
				return d, c.fromCaller, true
			}
		}
	}
	return nil, false, false
}

// remove ends d: it leaves the table and lingers for DialogLinger. It
// reports false when d had already ended or was never added.
func (t *dialogTable) remove(d *dialog, now time.Time) bool {
	if !t.take(d) {
		return false
	}
	d.mu.Lock()
	d.ended = now
	d.mu.Unlock()
	s := &t.shards[t.shard(d.callID)]
	s.mu.Lock()
	s.gone[dialogKey(d.callID, d.calleeTag)] = d
	s.mu.Unlock()
	return true
}

// drop removes d without a linger (an early dialog that was not answered).
func (t *dialogTable) drop(d *dialog) { t.take(d) }

func (t *dialogTable) take(d *dialog) bool {
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
	t.n.Add(-1)
	return true
}

// sweep forgets the dialogs that ended before now-DialogLinger.
func (t *dialogTable) sweep(now time.Time) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, d := range s.gone {
			d.mu.Lock()
			old := now.Sub(d.ended) >= DialogLinger
			d.mu.Unlock()
			if old {
				delete(s.gone, k)
			}
		}
		s.mu.Unlock()
	}
}

// expire removes and returns the dialogs idle since before cutoff (all of
// them when cutoff is zero). Early dialogs among them have no call record
// to finish (isConfirmed is false).
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
	t.n.Add(-int64(len(out)))
	return out
}

func (t *dialogTable) len() int { return int(t.n.Load()) }

// endDialog finishes the call record of a dialog, ending now.
func (p *Proxy) endDialog(d *dialog, c cause.Code, by, detail string) {
	p.endDialogAt(d, p.now(), c, by, detail)
}

// endDialogAt finishes the call record of a dialog, ending at end.
func (p *Proxy) endDialogAt(d *dialog, end time.Time, c cause.Code, by, detail string) {
	d.mu.Lock()
	if !d.confirmed {
		d.mu.Unlock()
		return
	}
	d.rec.End = end
	d.rec.Cause, d.rec.HangupBy = c, by
	if detail != "" {
		if d.rec.Detail != "" {
			d.rec.Detail += "; "
		}
		d.rec.Detail += detail
	}
	m := d.media
	d.mu.Unlock()
	if m != nil {
		legs := p.closeMedia(m)
		d.mu.Lock()
		d.rec.Media = legs
		d.mu.Unlock()
	}
	d.mu.Lock()
	rec := d.rec
	d.mu.Unlock()
	p.d.Calls.Save(rec)
}

// Route tokens: a random nonce and an HMAC of the Call-ID, the caller's
// From tag and the nonce, keyed with Config.Key. A token is made when the
// INVITE is forked and recorded in the dialog; it routes nothing by
// itself: an in-dialog request must match a dialog the proxy knows (see
// nextHop). The MAC only tells a forged token (403) from one of a dialog
// that ended or was set up before a restart (481).
const (
	tokenNonce = 8
	tokenMAC   = 10
)

// newToken returns a fresh route token for the dialog(s) the INVITE with
// callID and the caller's tag callerTag sets up.
func (p *Proxy) newToken(callID, callerTag string) string {
	var b [tokenNonce + tokenMAC]byte
	_, _ = rand.Read(b[:tokenNonce]) // crypto/rand.Read never fails (Go 1.24+)
	copy(b[tokenNonce:], p.tokenMAC(callID, callerTag, b[:tokenNonce]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (p *Proxy) tokenMAC(callID, callerTag string, nonce []byte) []byte {
	m := hmac.New(sha256.New, p.cfg.Key)
	m.Write([]byte("record-route\x00"))
	m.Write(nonce)
	m.Write([]byte(callID))
	m.Write([]byte{0})
	m.Write([]byte(callerTag))
	return m.Sum(nil)[:tokenMAC]
}

// tokenSigned reports whether tok is a token this server made for callID
// and callerTag (at any time, for any dialog of that call).
func (p *Proxy) tokenSigned(tok, callID, callerTag string) bool {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != tokenNonce+tokenMAC {
		return false
	}
	return hmac.Equal(b[tokenNonce:], p.tokenMAC(callID, callerTag, b[:tokenNonce]))
}

// hop is where an in-dialog request goes next.
type hop struct {
	dest, transport string
	dlg             *dialog
	fromCaller      bool
}

// refusal is why an in-dialog request (or a 2xx retransmission) is not
// routed.
type refusal struct {
	status int        // 403, or 481 for a dialog the proxy does not know
	cause  cause.Code // journaled: RouteTokenRefused or ACLDenied
	detail string
}

// routeSet returns the URIs of the Route (or Record-Route) headers hdrs.
func routeSet(hdrs []sip.Header) []string {
	var out []string
	for _, h := range hdrs {
		switch r := h.(type) {
		case *sip.RouteHeader:
			out = append(out, r.Address.String())
		case *sip.RecordRouteHeader:
			out = append(out, r.Address.String())
		default:
			out = append(out, h.Value())
		}
	}
	return out
}

// nextHop pops our Route entries from an in-dialog request and decides
// whether and where it goes. The rules, in order:
//
//  1. The profile's inbound ACL applies to every sender but the callee
//     party of a known dialog (a phone registered with us: its BYE must
//     work whoever may place calls): denied -> 403 acl_denied.
//  2. The request must match a dialog the proxy knows (Call-ID and both
//     tags; an ended one only for ACK and BYE within DialogLinger): else
//     481, or 403 when its route token is forged.
//  3. It must come from an address of the party its From tag names (the
//     caller's INVITE source; the answering binding's source, destination
//     and the source of its answer), carry our Route with the dialog's own
//     token, have exactly the Routes the dialog recorded after ours, and a
//     Request-URI that is the other party's recorded Contact (or address).
//     Else 403 route_token_refused.
//
// It then goes to the other party at the address and transport recorded at
// setup: never to a Route or Request-URI host taken from the request, so a
// refused request causes no connection attempt and is answered alike
// whatever it names.
func (p *Proxy) nextHop(req *sip.Request) (h hop, r *refusal) {
	callID := req.CallID().Value()
	fromTag, toTag := tagOf(req.From().Params), tagOf(req.To().Params)
	src := registrar.SourceAddr(req.Source())
	own, tokens := p.popOwnRoutes(req)
	d, fromCaller, ended := p.dialogs.find(callID, fromTag, toTag, p.now())
	var from, to *side
	party, other := "caller", "callee"
	if d != nil {
		from, to = &d.caller, &d.callee
		if !fromCaller {
			from, to = to, from
			party, other = other, party
		}
	}
	if d == nil || fromCaller || !d.hasIP(from, src) {
		if ok, list := p.d.Policy.AllowInvite(src); !ok {
			return h, &refusal{403, cause.ACLDenied, "source " + src.String() + " rejected by " + list}
		}
	}
	if d == nil || (ended && req.Method != sip.ACK && req.Method != sip.BYE) {
		for _, tok := range tokens {
			if !p.tokenSigned(tok, callID, fromTag) && !p.tokenSigned(tok, callID, toTag) {
				return h, &refusal{403, cause.RouteTokenRefused, "forged route token"}
			}
		}
		detail := "no dialog with this Call-ID and tags: it ended, was never set up by this server, or was set up before a restart"
		if ended {
			detail = "the dialog has ended"
		}
		return h, &refusal{481, cause.RouteTokenRefused, detail}
	}
	if !d.hasIP(from, src) {
		return h, &refusal{403, cause.RouteTokenRefused, "sender " + src.String() + " is not the dialog's " + party}
	}
	tokenOK := false
	for _, tok := range tokens {
		if hmac.Equal([]byte(tok), []byte(d.token)) {
			tokenOK = true
		}
	}
	if !tokenOK {
		if own == 0 {
			return h, &refusal{403, cause.RouteTokenRefused, "no Route to this server (the dialog's Record-Route was not followed)"}
		}
		return h, &refusal{403, cause.RouteTokenRefused, "the route token is not this dialog's"}
	}
	if rest := routeSet(req.GetHeaders("Route")); !slices.Equal(rest, to.routes) {
		return h, &refusal{403, cause.RouteTokenRefused, "Route " + strings.Join(rest, ", ") + " is not the dialog's route set"}
	}
	if !d.targetOK(to, &req.Recipient) {
		return h, &refusal{403, cause.RouteTokenRefused, "Request-URI " + req.Recipient.String() + " is not the dialog's " + other}
	}
	h.dlg, h.fromCaller, h.dest, h.transport = d, fromCaller, to.dest, to.transport
	return h, nil
}

// refuseInDialog answers a refused in-dialog request (tx nil: an ACK, not
// answered) and journals it, at most once a minute per source address and
// cause.
func (p *Proxy) refuseInDialog(req *sip.Request, tx sip.ServerTransaction, r *refusal) {
	status := 0
	if tx != nil {
		if r.status == 481 {
			status = 481
			p.answer(req, tx, 481, "Call/Transaction Does Not Exist")
		} else {
			status = p.answerCause(req, tx, r.cause)
		}
	}
	src := registrar.SourceAddr(req.Source())
	if !p.refused.First(p.refused.Key(src, string(r.cause))) {
		return
	}
	p.d.Journal.Record(journal.Event{Kind: journal.KindRequest, Cause: r.cause, Source: req.Source(),
		Transport: strings.ToUpper(req.Transport()), UserAgent: userAgent(req), CallID: req.CallID().Value(),
		Status: status, Detail: "in-dialog " + string(req.Method) + " " + req.Recipient.String() + " not routed: " +
			r.detail + " (further refusals of this address are journaled once a minute)"})
}

// ServeACK forwards the ACK of a 2xx statelessly along the dialog's route
// (an ACK for a non-2xx answer is absorbed by its transaction and never
// reaches this handler), under the same rules as any in-dialog request
// (nextHop). ACKs are never answered; refused ones are journaled.
//
// An ACK with no Route header of a dialog the proxy does not know is the
// ACK of an answer sent without a transaction (the stateless 407 of a
// call's first INVITE, a refusal of the packet guard): it could never be
// routed, so it is dropped at once, without a copy or a journal event
// (every call sends one).
func (p *Proxy) ServeACK(req *sip.Request, _ sip.ServerTransaction) {
	if req.CallID() == nil || req.From() == nil || req.To() == nil || req.CSeq() == nil {
		return
	}
	if req.GetHeader("Route") == nil {
		if d, _, _ := p.dialogs.find(req.CallID().Value(), tagOf(req.From().Params), tagOf(req.To().Params), p.now()); d == nil {
			return
		}
	}
	p.forwardACK(req, req.Clone())
}

// forwardACK forwards fwd, the ACK req or a copy of it that it may change,
// along the dialog's route (nextHop), or journals its refusal.
func (p *Proxy) forwardACK(req, fwd *sip.Request) {
	h, r := p.nextHop(fwd)
	if r != nil {
		p.refuseInDialog(req, nil, r)
		return
	}
	h.dlg.touch(p.now())
	h.dlg.sawCSeq(h.fromCaller, req.CSeq())
	if !p.prepareForward(fwd, h.dest, h.transport) {
		return
	}
	if len(fwd.Body()) > 0 { // a late offer's answer
		if fwd == req {
			fwd = req.Clone()
		}
		p.relayBody(h.dlg.callID, h.fromCaller, fwd, registrar.SourceAddr(req.Source()))
		if h.fromCaller {
			h.dlg.lateAnswer(req.Body())
		}
	}
	if err := p.d.Client.WriteRequest(fwd, prebuilt); err != nil {
		p.log.Debug("proxy: forward ACK", "to", h.dest, "error", err)
	}
}

// lateAnswer records the audio address of the caller's answer to a late
// offer (the body of its ACK) on the caller's leg of a call that is not
// relayed (unrelayedLegs), when that leg has none yet. The legs are
// replaced, not changed in place: a saved copy of the record may share
// them.
func (d *dialog) lateAnswer(body []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.media != nil || len(d.rec.Media) != 2 || d.rec.Media[0].Relayed || d.rec.Media[0].SignalledAddr != "" {
		return
	}
	a, ok := sdp.AudioAddr(body)
	if !ok {
		return
	}
	legs := slices.Clone(d.rec.Media)
	legs[0].SignalledAddr = a.String()
	d.rec.Media = legs
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
// PRACK within a dialog the proxy set up and still knows, from one of its
// parties to the other (nextHop has the rules; no authentication: the
// sender's address and the dialog's route token are the credential),
// statefully: the answer of the other party is relayed, 408 when it does
// not answer. (A BYE between parties both over UDP is forwarded before
// sipgo sees it, without a transaction: TakeBYE.) Outside a dialog these requests are not routed (481, or 405
// for MESSAGE, NOTIFY and REFER which switchboard does not route between
// extensions yet). A BYE ends the call record.
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
	fwd := forwardCopy(req)
	h, r := p.nextHop(fwd)
	if r != nil {
		p.refuseInDialog(req, tx, r)
		return
	}
	h.dlg.touch(p.now())
	if !p.prepareForward(fwd, h.dest, h.transport) {
		p.answerCause(req, tx, cause.TooManyHops)
		return
	}
	p.relayBody(h.dlg.callID, h.fromCaller, fwd, registrar.SourceAddr(req.Source()))
	trying := sip.NewResponseFromRequest(req, 100, "Trying", nil)
	upDest, upTp := trying.Destination(), req.Transport()
	if req.IsInvite() {
		p.respond(tx, trying)
	}
	out, err := p.d.Client.TransactionRequest(context.Background(), fwd, prebuilt)
	if err != nil {
		p.log.Debug("proxy: forward in-dialog request", "method", req.Method, "to", h.dest, "error", err)
		p.answer(req, tx, 503, "Service Unavailable")
		p.byeDone(req.Method, h, 503)
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
					p.respond(tx, p.relayUp(h, res, upDest, upTp))
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
				p.respond(tx, p.relayUp(h, res, upDest, upTp))
			}
			p.targetRefresh(req, res, h)
			p.byeDone(req.Method, h, res.StatusCode)
			if !isInvite {
				out.Terminate()
			}
			return
		case <-out.Done():
			if !gaveUp {
				p.answer(req, tx, 408, "Request Timeout")
			}
			p.byeDone(req.Method, h, 408)
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

// relayUp turns the answer to an in-dialog request into the sender's
// response (see upstream), its SDP rewritten when the call's media are
// relayed.
func (p *Proxy) relayUp(h hop, res *sip.Response, dest, transport string) *sip.Response {
	r := upstream(res, dest, transport)
	p.relayBody(h.dlg.callID, !h.fromCaller, r, registrar.SourceAddr(res.Source()))
	return r
}

// reinviteLimit bounds how long a re-INVITE may stay unanswered.
const reinviteLimit = 3 * time.Minute

// targetRefresh records the new remote targets of a dialog after a 2xx to
// a re-INVITE or UPDATE (RFC 3261 §12.2): the sender's Contact from the
// request, the other party's from the answer. Only the Contact (what a
// Request-URI may name) changes; where each party is reached does not.
func (p *Proxy) targetRefresh(req *sip.Request, res *sip.Response, h hop) {
	if !res.IsSuccess() || (req.Method != sip.INVITE && req.Method != sip.UPDATE) {
		return
	}
	from, to := &h.dlg.caller, &h.dlg.callee
	if !h.fromCaller {
		from, to = to, from
	}
	h.dlg.setContact(from, req.Contact())
	h.dlg.setContact(to, res.Contact())
}

// byeDone ends the call record when a BYE (method) got its final answer
// (any answer but a challenge ends the dialog, RFC 3261 §15.1.2). The
// dialog lingers for DialogLinger (a late ACK, a crossing BYE), then
// in-dialog requests for it get 481.
func (p *Proxy) byeDone(method sip.RequestMethod, h hop, status int) {
	if method != sip.BYE || status == 401 || status == 407 {
		return
	}
	if !p.dialogs.remove(h.dlg, p.now()) {
		return
	}
	by := calls.ByCallee
	if h.fromCaller {
		by = calls.ByCaller
	}
	p.endDialog(h.dlg, cause.NormalClearing, by, "")
}
