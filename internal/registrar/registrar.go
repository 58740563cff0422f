// Package registrar answers REGISTER requests (RFC 3261 §10): digest
// authentication, ownership of the address of record, Expires bounds (423),
// adding, refreshing and removing bindings in the location table, and a
// journal event for every decision.
//
// Durability: a 200 that adds, refreshes or removes a binding is sent only
// after the location table committed the change to the store (see
// location.Table.Update); when the store cannot write, the REGISTER gets
// 503 with Retry-After (cause store_unavailable) and nothing changes.
package registrar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/auth"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/location"
	"github.com/switchboard-pbx/switchboard/internal/sipreply"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Policy is the access-control seam: register ACLs, per-extension auth ACLs
// and brute-force accounting. The zero Registrar uses AllowAll.
type Policy interface {
	// AllowRegister decides whether src may register at all (the profile's
	// register ACL); list names the ACL that denied.
	AllowRegister(src netip.Addr) (ok bool, list string)
	// AllowExtension decides whether src may authenticate as an extension
	// whose own auth ACL is acl ("" = none: allowed).
	AllowExtension(src netip.Addr, acl string) (ok bool, list string)
	// AuthFailed counts a failed authentication from src for number@domain,
	// the account whose password was tried.
	AuthFailed(src netip.Addr, domain, number, reason string)
	// AuthSucceeded records that number@domain authenticated from src.
	AuthSucceeded(src netip.Addr, domain, number string)
}

// AllowAll is a Policy that allows everything and counts nothing.
type AllowAll struct{}

func (AllowAll) AllowRegister(netip.Addr) (bool, string)          { return true, "" }
func (AllowAll) AllowExtension(netip.Addr, string) (bool, string) { return true, "" }
func (AllowAll) AuthFailed(netip.Addr, string, string, string)    {}
func (AllowAll) AuthSucceeded(netip.Addr, string, string)         {}

// Config holds the registrar's settings.
type Config struct {
	MinExpires     int // seconds; shorter non-zero requests get 423
	MaxExpires     int // seconds; longer ones are shortened to this
	DefaultExpires int // when the phone asks for none
}

// Registrar handles REGISTER. Create with New.
type Registrar struct {
	cfg     Config
	dir     *directory.Cache
	auth    *auth.Authenticator
	loc     *location.Table
	journal *journal.Writer
	policy  Policy
	log     *slog.Logger
	now     func() time.Time

	// challenged journals a plain challenge once a minute per phone and
	// user, so a busy phone does not flood the journal.
	challenged *journal.Throttle

	// answers writes every answer as bytes.
	answers sipreply.Writer
	// date is the Date of the 200s sent within the same second.
	date atomic.Pointer[httpDate]
	// uriBufs holds *bytes.Buffer for uriString.
	uriBufs sync.Pool
}

// httpDate is a Date header value and the Unix second it was written for.
type httpDate struct {
	sec   int64
	value string
}

// New returns a registrar. policy may be nil (AllowAll).
func New(cfg Config, dir *directory.Cache, a *auth.Authenticator, loc *location.Table, j *journal.Writer,
	policy Policy, log *slog.Logger) *Registrar {
	if policy == nil {
		policy = AllowAll{}
	}
	if cfg.MinExpires <= 0 {
		cfg.MinExpires = 60
	}
	if cfg.MaxExpires <= 0 {
		cfg.MaxExpires = 7200
	}
	if cfg.DefaultExpires <= 0 {
		cfg.DefaultExpires = 3600
	}
	return &Registrar{cfg: cfg, dir: dir, auth: a, loc: loc, journal: j, policy: policy, log: log,
		now: time.Now, challenged: journal.NewThrottle(time.Minute, nil)}
}

// request facts shared by every answer path.
type facts struct {
	req       *sip.Request
	send      func(*sipreply.Answer) error
	src       netip.Addr
	ev        journal.Event
	domain    string
	served    bool
	toUser    string
	userAgent string
	// retryAfter is the Retry-After (seconds) of a store_unavailable 503.
	retryAfter int
}

// ServeREGISTER is the sipgo handler for REGISTER.
func (r *Registrar) ServeREGISTER(req *sip.Request, tx sip.ServerTransaction) {
	r.Serve(req, sipreply.ForTransaction(tx.Respond))
}

// Serve handles one REGISTER and answers it through send (which ends the
// answer: Answer.Bytes, or Response for a server transaction). Used directly
// (without a server transaction) for REGISTER over UDP: the registrar is
// idempotent for retransmissions (a repeated CSeq refreshes again and gets
// the same 200; a repeated nonce count gets a fresh challenge), so keeping
// each transaction for 32 s to absorb them is not needed.
//
// Serve returns once the answer is sent; a change it accepts is committed
// to the database first (a few milliseconds, one shared fsync), so call it
// on a goroutine of its own, never on a socket's reader.
func (r *Registrar) Serve(req *sip.Request, send func(*sipreply.Answer) error) {
	f := facts{req: req, send: send}
	f.src = SourceAddr(req.Source())
	if h := firstHeader(req, "User-Agent"); h != nil {
		f.userAgent = h.Value()
	}
	f.ev = journal.Event{Kind: journal.KindRegister, Source: req.Source(), Transport: req.Transport(),
		UserAgent: f.userAgent}
	if cid := req.CallID(); cid != nil {
		f.ev.CallID = cid.Value()
	}
	to := req.To()
	if to == nil || req.From() == nil || req.CallID() == nil || req.CSeq() == nil {
		r.refuse(&f, cause.BadRequest, "missing To, From, Call-ID or CSeq")
		return
	}
	if to.Address.Scheme != "sip" && to.Address.Scheme != "sips" {
		r.refuse(&f, cause.BadRequest, "To must be a SIP URI, not "+to.Address.Scheme)
		return
	}
	f.toUser = to.Address.User
	f.domain, f.served = r.dir.Resolve(to.Address.Host)
	f.ev.Extension, f.ev.Domain = f.toUser, f.domain

	if ok, list := r.policy.AllowRegister(f.src); !ok {
		r.refuse(&f, cause.ACLDenied, "source "+f.src.String()+" rejected by register acl "+list)
		return
	}

	res := r.auth.Check(req, "Authorization", f.domain, f.served)
	f.ev.AuthUser, f.ev.Realm = res.AuthUser, res.Realm
	if res.Cause == cause.NonceReplay && r.retransmission(&f) {
		return
	}
	if res.NeedsChallenge() {
		r.challenge(&f, res)
		return
	}
	if res.Cause != "" {
		r.policy.AuthFailed(f.src, f.domain, authUser(res, f.toUser), res.Detail)
		r.refuse(&f, res.Cause, res.Detail)
		return
	}
	ext := res.Ext
	if ok, list := r.policy.AllowExtension(f.src, ext.ACL()); !ok {
		r.refuse(&f, cause.ACLDenied, "source "+f.src.String()+" rejected by acl "+list+" of extension "+ext.Number())
		return
	}
	if res.AuthUser != f.toUser {
		r.policy.AuthFailed(f.src, f.domain, res.AuthUser, "auth user "+res.AuthUser+" registering "+f.toUser)
		r.refuse(&f, cause.AuthUserMismatch,
			fmt.Sprintf("authenticated as %s but registering %s: the auth user must be the extension", res.AuthUser, f.toUser))
		return
	}
	r.policy.AuthSucceeded(f.src, f.domain, res.AuthUser)
	r.update(&f, ext, res)
}

// authUser is the account a refused answer tried: the digest username, or
// the To user when there was none.
func authUser(res auth.Result, toUser string) string {
	if res.AuthUser != "" {
		return res.AuthUser
	}
	return toUser
}

// retransmission answers a REGISTER whose nonce count was already used when
// it repeats, verbatim, the request that registered its Call-ID and CSeq
// (the phone did not get our 200 in time and sent it again): it gets the
// same 200 again. Over UDP without a transaction this is how a retransmitted
// authenticated REGISTER is told from a replay; a real replay can only
// re-assert the binding that the original request made.
//
// Its 200 too waits until what is queued (the original's change, when it
// is still in flight) is committed; while the store cannot write it gets
// 503 like any other REGISTER.
func (r *Registrar) retransmission(f *facts) bool {
	callID, cseq := f.req.CallID().Value(), f.req.CSeq().SeqNo
	registered := func(bindings []store.Binding) bool {
		for _, b := range bindings {
			if b.CallID == callID && b.CSeq == cseq && b.Source == f.req.Source() {
				return true
			}
		}
		return false
	}
	if !registered(r.loc.Lookup(f.domain, f.toUser)) {
		return false
	}
	if err := r.loc.Flush(context.Background()); err != nil {
		r.storeFailed(f, err)
		return true
	}
	// Looked up again: the change may have been rolled back meanwhile.
	if bindings := r.loc.Lookup(f.domain, f.toUser); registered(bindings) {
		r.ok(f, bindings, r.now())
		return true
	}
	return false
}

// SourceAddr parses "ip:port" into the IP (unmapped); zero on failure.
func SourceAddr(src string) netip.Addr {
	if ap, err := netip.ParseAddrPort(src); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(src)
	if err != nil {
		host = src
	}
	a, _ := netip.ParseAddr(strings.Trim(host, "[]"))
	return a.Unmap()
}

func (r *Registrar) challenge(f *facts, res auth.Result) {
	a := r.answers.Begin(f.req, 401, "Unauthorized", "")
	r.auth.ChallengeTo(a, "WWW-Authenticate", f.domain, res.Cause == cause.StaleNonce)
	r.respond(f, 401, a)
	f.ev.Cause, f.ev.Status, f.ev.Detail = res.Cause, 401, res.Detail
	if res.Cause != cause.Challenged || res.Detail != "" {
		r.journal.Release(r.challenged.Key(f.src, f.toUser))
		r.journal.Record(f.ev)
		return
	}
	// A plain challenge is journaled once a minute per phone and user, and
	// only if no successful registration follows within journal.HoldFor
	// (the registered event says the phone was challenged and answered).
	key := r.challenged.Key(f.src, f.toUser)
	if r.challenged.First(key) {
		f.ev.Detail = "challenged with realm " + f.domain
		r.journal.Hold(key, f.ev)
	}
}

func (r *Registrar) refuse(f *facts, c cause.Code, detail string) {
	a, _ := cause.AnswerFor(c)
	ans := r.answers.Begin(f.req, a.Status, a.Reason, "")
	if c == cause.IntervalTooBrief {
		ans.HeaderInt("Min-Expires", r.cfg.MinExpires)
	}
	if c == cause.StoreUnavailable {
		ans.HeaderInt("Retry-After", f.retryAfter)
	}
	r.respond(f, a.Status, ans)
	f.ev.Cause, f.ev.Status, f.ev.Detail = c, a.Status, detail
	r.journal.Release(r.challenged.Key(f.src, f.toUser)) // its challenge first
	r.journal.Record(f.ev)
}

// respond ends the answer a (of status) and sends it.
func (r *Registrar) respond(f *facts, status int, a *sipreply.Answer) {
	a.Header("Server", "switchboard")
	if err := f.send(a); err != nil {
		r.log.Debug("registrar: respond", "status", status, "error", err)
	}
}

// serverError answers 500.
func (r *Registrar) serverError(f *facts) {
	r.respond(f, 500, r.answers.Begin(f.req, 500, "Server Internal Error", ""))
}

type contactReq struct {
	uri     string
	expires int
}

// update applies the REGISTER's contacts to the location table.
func (r *Registrar) update(f *facts, ext *directory.Entry, res auth.Result) {
	req := f.req
	headerExpires := -1
	if h := firstHeader(req, "Expires"); h != nil {
		v, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		if err != nil || v < 0 {
			r.refuse(f, cause.BadRequest, "bad Expires header "+strconv.Quote(h.Value()))
			return
		}
		headerExpires = v
	}
	var wildcard bool
	var contacts []contactReq
	for _, h := range req.Headers() {
		if !auth.HeaderIs(h.Name(), "Contact") {
			continue
		}
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			r.refuse(f, cause.BadRequest, "unparsable Contact")
			return
		}
		if c.Address.Wildcard {
			wildcard = true
			continue
		}
		exp := headerExpires
		if v, ok := c.Params.Get("expires"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				r.refuse(f, cause.BadRequest, "bad expires parameter "+strconv.Quote(v))
				return
			}
			exp = n
		}
		if exp < 0 {
			exp = r.cfg.DefaultExpires
		}
		if exp > 0 && exp < r.cfg.MinExpires {
			r.refuse(f, cause.IntervalTooBrief,
				fmt.Sprintf("asked for %d s, the minimum is %d s", exp, r.cfg.MinExpires))
			return
		}
		if exp > r.cfg.MaxExpires {
			exp = r.cfg.MaxExpires
		}
		contacts = append(contacts, contactReq{uri: r.uriString(&c.Address), expires: exp})
	}
	if wildcard && (len(contacts) > 0 || headerExpires != 0) {
		r.refuse(f, cause.BadRequest, "Contact: * needs Expires: 0 and no other Contact")
		return
	}
	callID := req.CallID().Value()
	cseq := req.CSeq().SeqNo
	now := r.now()
	var outcome cause.Code = cause.Registered
	var detail string
	bindings, err := r.loc.Update(context.Background(), ext.Domain(), ext.Number(), func(cur []store.Binding) ([]store.Binding, error) {
		if wildcard {
			outcome, detail = cause.Unregistered, fmt.Sprintf("removed all %d contacts", len(cur))
			return nil, nil
		}
		if len(contacts) == 0 {
			outcome, detail = cause.Registered, "query"
			return cur, nil
		}
		next := cur // a slice of its own (see location.Table.Update)
		var added, removed, refreshed, replaced int
		for _, c := range contacts {
			idx, restarted := findBinding(next, c.uri, req.Source(), req.Transport(), callID)
			if restarted {
				if c.expires == 0 {
					idx = -1 // removing a contact we do not have
				} else {
					replaced++
				}
			}
			// RFC 3261 §10.3 step 7: an older CSeq for the same Call-ID is out
			// of order. The same CSeq is a retransmission: refresh again.
			if idx >= 0 && next[idx].CallID == callID && next[idx].CSeq > cseq {
				return nil, errOutOfOrder
			}
			if c.expires == 0 {
				if idx >= 0 {
					next = append(next[:idx], next[idx+1:]...)
					removed++
				}
				continue
			}
			// Strings kept for the binding's lifetime are copied: the parsed
			// header values point into the whole received message, which
			// would otherwise stay in memory with every binding.
			b := store.Binding{Domain: ext.Domain(), Extension: ext.Number(), Contact: c.uri, Source: strings.Clone(req.Source()),
				Transport: strings.ToUpper(req.Transport()), UserAgent: strings.Clone(f.userAgent),
				CallID: strings.Clone(callID), CSeq: cseq, AuthUser: strings.Clone(res.AuthUser),
				Realm: strings.Clone(res.Realm), RegisteredAt: now,
				ExpiresAt: now.Add(time.Duration(c.expires) * time.Second)}
			if idx >= 0 {
				if !restarted { // a restarted phone's reachability starts afresh
					b.PingStatus, b.PingRTT, b.PingAt = next[idx].PingStatus, next[idx].PingRTT, next[idx].PingAt
				}
				if next[idx].CallID == callID {
					b.RegisteredAt = next[idx].RegisteredAt
				}
				next[idx] = b
				refreshed++
			} else {
				next = append(next, b)
				added++
			}
		}
		if added > 0 && len(next) > ext.MaxRegistrations() {
			return nil, errMaxRegistrations{have: len(cur), max: ext.MaxRegistrations()}
		}
		switch {
		case len(next) == 0 || (removed > 0 && added == 0 && refreshed == 0):
			outcome = cause.Unregistered
		default:
			outcome = cause.Registered
		}
		detail = countsDetail(added, refreshed, removed, len(next))
		if replaced > 0 {
			detail += fmt.Sprintf("; %d replaced the binding of a restarted phone (same address and port, new Call-ID)", replaced)
		}
		return next, nil
	})
	if err != nil {
		switch e := err.(type) {
		case errMaxRegistrations:
			r.refuse(f, cause.MaxRegistrations, fmt.Sprintf("already %d of %d registrations", e.have, e.max))
		default:
			if err == errOutOfOrder {
				r.refuse(f, cause.OutOfOrder, "CSeq not above the binding's for the same Call-ID")
				return
			}
			if errors.Is(err, location.ErrUnavailable) {
				r.storeFailed(f, err)
				return
			}
			r.log.Error("registrar: save binding", "extension", ext.Number(), "domain", ext.Domain(), "error", err)
			r.serverError(f)
		}
		return
	}
	r.ok(f, bindings, now)
	f.ev.Cause, f.ev.Status, f.ev.Detail = outcome, 200, detail
	r.journal.Settle(r.challenged.Key(f.src, f.toUser))
	r.journal.Record(f.ev)
}

// countsDetail is the journal detail of a registration: "A added, R
// refreshed, D removed, B bound" (written without fmt: it is on every
// REGISTER's path, under the location table's shard lock).
func countsDetail(added, refreshed, removed, bound int) string {
	b := make([]byte, 0, 64)
	b = strconv.AppendInt(b, int64(added), 10)
	b = append(b, " added, "...)
	b = strconv.AppendInt(b, int64(refreshed), 10)
	b = append(b, " refreshed, "...)
	b = strconv.AppendInt(b, int64(removed), 10)
	b = append(b, " removed, "...)
	b = strconv.AppendInt(b, int64(bound), 10)
	b = append(b, " bound"...)
	return string(b)
}

// storeFailed answers 503 with Retry-After when the location table could
// not make a change durable (err wraps location.ErrUnavailable), or 500 for
// any other error: no 200 without a committed binding.
func (r *Registrar) storeFailed(f *facts, err error) {
	var ue *location.UnavailableError
	if !errors.As(err, &ue) {
		r.log.Error("registrar: save binding", "extension", f.toUser, "domain", f.domain, "error", err)
		r.serverError(f)
		return
	}
	// At least 1 s; a little more than the writer's back-off, so the phone
	// comes back once it has tried again.
	f.retryAfter = max(1, int(ue.RetryAfter.Round(time.Second)/time.Second)+1)
	r.refuse(f, cause.StoreUnavailable, "the binding could not be saved, the database cannot write: "+ue.Err.Error())
}

// ok answers 200 listing every current contact with its remaining time.
func (r *Registrar) ok(f *facts, bindings []store.Binding, now time.Time) {
	a := r.answers.Begin(f.req, 200, "OK", "")
	for _, b := range bindings {
		a.Contact(b.Contact, int(b.ExpiresAt.Sub(now).Round(time.Second)/time.Second))
	}
	a.Header("Date", r.httpDate(now))
	r.respond(f, 200, a)
}

// uriString returns u.String() (the text a binding keeps) in a string of
// its own size: sipgo's String grows a builder several times.
func (r *Registrar) uriString(u *sip.Uri) string {
	b, _ := r.uriBufs.Get().(*bytes.Buffer)
	if b == nil {
		b = new(bytes.Buffer)
	}
	b.Reset()
	u.StringWrite(b)
	s := b.String()
	if b.Cap() <= 1024 {
		r.uriBufs.Put(b)
	}
	return s
}

// httpDate returns now as a Date header value (RFC 3261 §20.17), written
// once per second.
func (r *Registrar) httpDate(now time.Time) string {
	sec := now.Unix()
	if d := r.date.Load(); d != nil && d.sec == sec {
		return d.value
	}
	d := &httpDate{sec: sec, value: now.UTC().Format(http1123)}
	r.date.Store(d)
	return d.value
}

// firstHeader returns req's first header named name (ASCII case ignored),
// or nil. sipgo's GetHeader lowercases the name of every header of the
// message at each lookup: an allocation per name with a capital letter.
func firstHeader(req *sip.Request, name string) sip.Header {
	for _, h := range req.Headers() {
		if auth.HeaderIs(h.Name(), name) {
			return h
		}
	}
	return nil
}

const http1123 = "Mon, 02 Jan 2006 15:04:05 GMT"

type errMaxRegistrations struct{ have, max int }

func (e errMaxRegistrations) Error() string { return "max registrations" }

var errOutOfOrder = fmt.Errorf("out of order")
