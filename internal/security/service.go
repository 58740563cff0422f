package security

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/guard"
	"github.com/switchboard-pbx/switchboard/internal/journal"
)

// Config holds the security settings of a running server.
type Config struct {
	// BanAfter failed authentications from one address within BanWindow
	// ban it for BanFor (0 = the defaults: 5, 60 s, 1 h).
	BanAfter  int
	BanWindow time.Duration
	BanFor    time.Duration
	// BanAfterRegistered is BanAfter for an address with a live
	// registration, counting only failures for extensions not registered
	// from it (guesses at others; the registered phones' own failures never
	// count). Higher, because an office behind one NAT shares an address
	// (0 = 4 x BanAfter, at most acl.MaxMaxFailures).
	BanAfterRegistered int
	// RateLimit is how many messages per second one address may send on
	// average (0: no limit), with bursts of up to RateBurst.
	RateLimit float64
	RateBurst int
	// Profile names the profile whose ACL settings apply (default
	// DefaultProfile).
	Profile string
	// StreamTimeout is the packet guard's (guard.Config.StreamTimeout),
	// reported by Publish (default guard.DefaultStreamTimeout).
	StreamTimeout time.Duration
	// NoteEvery bounds the journal events about dropped traffic: at most
	// one per address and cause per NoteEvery (default 1 min).
	NoteEvery time.Duration
}

// sharedTracked bounds the failure counters of addresses with live
// registrations (each up to BanAfterRegistered timestamps).
const sharedTracked = 100_000

// Defaults of Config.
const (
	DefaultRateLimit     = 200
	DefaultRateBurst     = 1000
	DefaultStreamTimeout = guard.DefaultStreamTimeout
	DefaultNoteEvery     = time.Minute
)

// Deps are the parts of the server a Service works with.
type Deps struct {
	Store *Store
	// Dir resolves request hosts to domains for journal events (optional).
	Dir *directory.Cache
	// Live reports whether an address has a live registration (optional).
	// Failures from such an address count toward BanAfterRegistered.
	Live func(netip.Addr) bool
	// LiveFrom reports whether number@domain has a live binding from the
	// address (optional): that extension's failures from there are its own
	// phone's (a changed password, a stale nonce) and never count.
	LiveFrom func(ip netip.Addr, domain, number string) bool
	// LiveAt lists the extensions (number@domain) with a live binding from
	// the address, for the detail of a ban (optional; called only then).
	LiveAt  func(ip netip.Addr) []string
	Journal *journal.Writer
	Log     *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Service is switchboard's access control and attack resistance: the
// profile's ACLs (register, inbound, trusted), per-extension ACLs,
// brute-force bans, flood protection and scanner bans, and the journal
// events of these decisions.
//
// It implements registrar.Policy, proxy.Policy and guard.Policy (the
// packet guard asks it about addresses and reports what it drops), and
// its AcceptConn is the sipstack's. All methods are safe for concurrent
// use. Create with New, then Load, and Run.
type Service struct {
	cfg   Config
	d     Deps
	now   func() time.Time
	guard *acl.Guard
	// shared counts the failures from addresses with live registrations
	// (threshold BanAfterRegistered); its bans move to guard at once.
	shared  *acl.Guard
	limiter *acl.RateLimiter
	snap    atomic.Pointer[snapshot]
	notes   noter
	persist chan acl.Ban
	// reloadMu serializes reloads from the change feed.
	reloadMu sync.Mutex
	stats    Stats
}

// Stats counts what the packet guard and the policy refused since start.
type Stats struct {
	BannedDropped atomic.Int64 // messages from banned addresses
	RateLimited   atomic.Int64 // messages over the rate limit
	Scanners      atomic.Int64 // messages from scanner user agents
	Malformed     atomic.Int64 // messages refused by the syntax checks
	Bans          atomic.Int64 // bans imposed
}

// snapshot is the access-control configuration in force; replaced whole
// on every change.
type snapshot struct {
	profile                     Profile
	set                         *acl.Set
	register, inbound, trusted  *acl.List // nil: not set
	missingRegister, missingInb bool
}

// New returns a Service; Load must run before it is used.
func New(cfg Config, d Deps) *Service {
	if cfg.Profile == "" {
		cfg.Profile = DefaultProfile
	}
	if cfg.StreamTimeout <= 0 {
		cfg.StreamTimeout = DefaultStreamTimeout
	}
	if cfg.NoteEvery <= 0 {
		cfg.NoteEvery = DefaultNoteEvery
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	now := d.Now
	if now == nil {
		now = time.Now
	}
	s := &Service{cfg: cfg, d: d, now: now, persist: make(chan acl.Ban, 4096)}
	s.guard = acl.NewGuard(acl.GuardConfig{MaxFailures: cfg.BanAfter, Window: cfg.BanWindow, BanFor: cfg.BanFor}, now)
	s.cfg.BanAfter, s.cfg.BanWindow, s.cfg.BanFor = s.guard.Config().MaxFailures, s.guard.Config().Window, s.guard.Config().BanFor
	if s.cfg.BanAfterRegistered <= 0 {
		s.cfg.BanAfterRegistered = 4 * s.cfg.BanAfter
	}
	s.shared = acl.NewGuard(acl.GuardConfig{MaxFailures: s.cfg.BanAfterRegistered, Window: s.cfg.BanWindow, BanFor: s.cfg.BanFor,
		MaxTracked: sharedTracked, MaxBans: sharedTracked}, now)
	s.cfg.BanAfterRegistered = s.shared.Config().MaxFailures
	s.limiter = acl.NewRateLimiter(cfg.RateLimit, cfg.RateBurst, now)
	s.guard.SetExempt(s.trusted)
	s.shared.SetExempt(s.trusted)
	s.snap.Store(&snapshot{})
	s.notes.last = map[noteKey]int64{}
	return s
}

// Config returns the effective configuration (defaults applied).
func (s *Service) Config() Config { return s.cfg }

// Stats returns the counters.
func (s *Service) Stats() *Stats { return &s.stats }

// Guard exposes the ban list (read it; use Ban and Unban to change it).
func (s *Service) Guard() *acl.Guard { return s.guard }

// Load reads the ACLs, the profile and the bans from the store.
func (s *Service) Load(ctx context.Context) error {
	if err := s.reloadConfig(ctx); err != nil {
		return err
	}
	return s.reloadBans(ctx)
}

// Settings is what `switchboard profile show` reports of the running
// server's security configuration (published in the meta table).
type Settings struct {
	BanAfter    int     `json:"ban_after"`
	BanAfterReg int     `json:"ban_after_registered"`
	BanWindowS  float64 `json:"ban_window_s"`
	BanForS     float64 `json:"ban_for_s"`
	RateLimit   float64 `json:"rate_limit"`
	RateBurst   int     `json:"rate_burst"`
	MaxMessage  int     `json:"max_message_bytes"`
	MaxHeaders  int     `json:"max_headers"`
	StreamWaitS float64 `json:"stream_timeout_s"`
}

// MetaKey is the meta-table key Settings is published under.
const MetaKey = "security"

// Publish writes Settings to the meta table for the CLI.
func (s *Service) Publish(ctx context.Context) error {
	st := Settings{BanAfter: s.cfg.BanAfter, BanAfterReg: s.cfg.BanAfterRegistered, BanWindowS: s.cfg.BanWindow.Seconds(), BanForS: s.cfg.BanFor.Seconds(),
		RateLimit: s.cfg.RateLimit, RateBurst: max(s.cfg.RateBurst, 1), MaxMessage: guard.MaxMessage, MaxHeaders: guard.MaxHeaders,
		StreamWaitS: s.cfg.StreamTimeout.Seconds()}
	if s.cfg.RateLimit <= 0 {
		st.RateLimit, st.RateBurst = 0, 0
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := s.d.Store.b.SetMeta(ctx, MetaKey, string(b)); err != nil {
		return fmt.Errorf("publish security settings: %w", err)
	}
	return nil
}

// Watch subscribes to dir's change events, so CLI edits apply at once: a
// changed ACL or profile reloads the access-control configuration, a
// changed ban reloads that ban, and a full reload of the directory
// (directory.Reloaded) reloads both whole, once each. Call before
// dir.Watch starts.
func (s *Service) Watch(ctx context.Context, dir *directory.Cache) {
	dir.Subscribe(func(e directory.Event) {
		switch e := e.(type) {
		case directory.ACLChanged, directory.ProfileChanged:
			s.reloadConfigLogged(ctx)
		case directory.BanChanged:
			s.reloadBan(ctx, e.IP)
		case directory.Reloaded:
			s.reloadConfigLogged(ctx)
			if err := s.reloadBans(ctx); err != nil && ctx.Err() == nil {
				s.d.Log.Warn("security: reload bans", "error", err)
			}
		}
	})
}

func (s *Service) reloadConfigLogged(ctx context.Context) {
	if err := s.reloadConfig(ctx); err != nil && ctx.Err() == nil {
		s.d.Log.Warn("security: reload acls", "error", err)
	}
}

func (s *Service) reloadConfig(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	lists, err := s.d.Store.ACLs(ctx)
	if err != nil {
		return err
	}
	p, err := s.d.Store.Profile(ctx, s.cfg.Profile)
	if errors.Is(err, ErrNoProfile) {
		p = Profile{Name: s.cfg.Profile}
	} else if err != nil {
		return err
	}
	sn := &snapshot{profile: p, set: acl.NewSet(lists)}
	resolve := func(name string) *acl.List {
		if name == "" {
			return nil
		}
		if l, ok := sn.set.Get(name); ok {
			return l
		}
		// A list that is referenced but missing denies everything (fail
		// closed); the CLI refuses to create that state.
		s.d.Log.Warn("security: profile refers to a missing acl; it denies everything", "acl", name)
		return &acl.List{Name: name}
	}
	sn.register, sn.inbound, sn.trusted = resolve(p.RegisterACL), resolve(p.InboundACL), resolve(p.TrustedACL)
	s.snap.Store(sn)
	// Addresses that became trusted lose their bans.
	for _, b := range s.guard.List() {
		if sn.trusted != nil {
			if ok, _ := sn.trusted.Decide(b.IP); ok {
				s.guard.Remove(b.IP)
				if err := s.d.Store.RemoveBan(ctx, b.IP, s.now()); err != nil && !errors.Is(err, ErrNoBan) {
					s.d.Log.Warn("security: lift ban of trusted address", "ip", b.IP, "error", err)
				}
			}
		}
	}
	return nil
}

func (s *Service) reloadBans(ctx context.Context) error {
	bans, err := s.d.Store.Bans(ctx, s.now())
	if err != nil {
		return err
	}
	in := make(map[netip.Addr]bool, len(bans))
	for _, b := range bans {
		in[b.IP] = true
		s.guard.Add(b)
	}
	for _, b := range s.guard.List() {
		if !in[b.IP] {
			s.guard.Remove(b.IP)
		}
	}
	return nil
}

func (s *Service) reloadBan(ctx context.Context, ip netip.Addr) {
	b, err := s.d.Store.Ban(ctx, ip, s.now())
	switch {
	case err == nil:
		s.guard.Add(b)
	case errors.Is(err, ErrNoBan):
		s.guard.Remove(ip)
	default:
		if ctx.Err() == nil {
			s.d.Log.Warn("security: reload ban", "ip", ip, "error", err)
		}
	}
}

// exempt reports addresses a scanner user agent does not get banned at
// once: trusted networks and addresses with a live registration (the
// scanner's messages are dropped all the same; the office's phones keep
// working). Failed authentications are judged by AuthFailed.
func (s *Service) exempt(ip netip.Addr) bool {
	if s.trusted(ip) {
		return true
	}
	return s.d.Live != nil && s.d.Live(ip)
}

func (s *Service) trusted(ip netip.Addr) bool {
	l := s.snap.Load().trusted
	if l == nil {
		return false
	}
	ok, _ := l.Decide(ip)
	return ok
}

// Trusted reports whether ip is in the profile's trusted ACL.
func (s *Service) Trusted(ip netip.Addr) bool { return s.trusted(ip) }

// AllowRegister implements registrar.Policy: the profile's register ACL.
func (s *Service) AllowRegister(src netip.Addr) (bool, string) {
	l := s.snap.Load().register
	if l == nil {
		return true, ""
	}
	ok, _ := l.Decide(src)
	return ok, l.Name
}

// AllowExtension implements registrar.Policy: the extension's own ACL. A
// list that does not exist denies (the CLI refuses to set one).
func (s *Service) AllowExtension(src netip.Addr, acl string) (bool, string) {
	if acl == "" {
		return true, ""
	}
	l, ok := s.snap.Load().set.Get(acl)
	if !ok {
		return false, acl
	}
	allowed, _ := l.Decide(src)
	return allowed, l.Name
}

// AllowInvite implements proxy.Policy: the profile's inbound ACL. The
// list is named "inbound acl NAME" for the journal detail.
func (s *Service) AllowInvite(src netip.Addr) (bool, string) {
	l := s.snap.Load().inbound
	if l == nil {
		return true, ""
	}
	ok, _ := l.Decide(src)
	return ok, "inbound acl " + l.Name
}

// AuthFailed implements registrar.Policy and proxy.Policy: it counts a
// failed authentication from src for number@domain (the account whose
// password was tried) and bans src after BanAfter of them within
// BanWindow. Trusted addresses are never counted. An address with a live
// registration is judged apart (unlike FusionPBX's Event Guard, which
// exempts it entirely): failures for an extension registered from it are
// its own phone's (a changed password, a stale nonce) and do not count;
// failures for any other extension are guesses and ban it after
// BanAfterRegistered within BanWindow.
func (s *Service) AuthFailed(src netip.Addr, domain, number, reason string) {
	src = src.Unmap()
	if s.trusted(src) {
		return
	}
	user := number + "@" + domain
	if s.d.Live == nil || !s.d.Live(src) {
		if b, ok := s.guard.FailUser(src, user, reason); ok {
			s.banned(b, "")
		}
		return
	}
	if s.d.LiveFrom != nil && s.d.LiveFrom(src, domain, number) {
		return
	}
	b, ok := s.shared.FailUser(src, user, reason)
	if !ok {
		return
	}
	s.shared.Remove(src)
	var phones []string
	if s.d.LiveAt != nil {
		phones = s.d.LiveAt(src)
	}
	if len(phones) > maxListed {
		phones = append(phones[:maxListed:maxListed], fmt.Sprintf("and %d more", len(phones)-maxListed))
	}
	b.Reason = fmt.Sprintf("brute force from an address with registered phones (%s); threshold %d; last: %s",
		strings.Join(phones, ", "), s.cfg.BanAfterRegistered, reason)
	s.guard.Add(b)
	s.banned(b, "")
}

// maxListed bounds the registered phones named in a ban's reason.
const maxListed = 5

// AuthSucceeded implements registrar.Policy and proxy.Policy: number@domain
// authenticated from src. src's failure count is cleared only when all
// the failures it holds were for that same extension: knowing one password
// does not wipe out the record of guesses at others.
func (s *Service) AuthSucceeded(src netip.Addr, domain, number string) {
	user := number + "@" + domain
	s.guard.SucceedUser(src, user)
	s.shared.SucceedUser(src, user)
}

// banned records a new automatic ban: journal, log, store.
func (s *Service) banned(b acl.Ban, transport string) {
	s.stats.Bans.Add(1)
	detail := fmt.Sprintf("address %s banned until %s after %d failed authentications within %s; last: %s",
		b.IP, b.Until.Format(time.RFC3339), b.Failures, s.cfg.BanWindow, b.Reason)
	if strings.HasPrefix(b.Reason, "brute force from") {
		detail = fmt.Sprintf("address %s banned until %s after %d failed authentications within %s: %s",
			b.IP, b.Until.Format(time.RFC3339), b.Failures, s.cfg.BanWindow, b.Reason)
	}
	if b.Failures < s.cfg.BanAfter {
		detail = fmt.Sprintf("address %s banned until %s: %s", b.IP, b.Until.Format(time.RFC3339), b.Reason)
	}
	s.d.Journal.Record(journal.Event{Time: b.Since, Kind: journal.KindBan, Cause: cause.IPBanned, Source: b.IP.String(),
		Transport: transport, Status: 0, Detail: detail})
	s.d.Log.Warn("address banned", "ip", b.IP, "until", b.Until.Format(time.RFC3339), "failures", b.Failures, "reason", b.Reason)
	select {
	case s.persist <- b:
	default:
		s.d.Log.Warn("security: ban not saved (queue full); it holds until restart", "ip", b.IP)
	}
}

// Ban bans ip for d (0: permanently) for reason, as an operator does.
func (s *Service) Ban(ctx context.Context, ip netip.Addr, d time.Duration, reason string) error {
	now := s.now()
	b := acl.Ban{IP: ip.Unmap(), Reason: reason, Since: now}
	if d > 0 {
		b.Until = now.Add(d)
	}
	s.guard.Add(b)
	return s.d.Store.PutBan(ctx, b)
}

// Run persists bans and expires old ones until ctx ends.
func (s *Service) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastSweep := s.now()
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case b := <-s.persist:
					s.save(context.Background(), b)
				default:
					return
				}
			}
		case b := <-s.persist:
			s.save(ctx, b)
		case <-tick.C:
			if now := s.now(); now.Sub(lastSweep) >= time.Minute {
				lastSweep = now
				s.guard.Sweep()
				s.shared.Sweep()
				s.limiter.Sweep()
				s.notes.sweep(now, s.cfg.NoteEvery)
				if _, err := s.d.Store.PruneBans(ctx, now); err != nil && ctx.Err() == nil {
					s.d.Log.Warn("security: prune bans", "error", err)
				}
			}
		}
	}
}

func (s *Service) save(ctx context.Context, b acl.Ban) {
	if err := s.d.Store.PutBan(ctx, b); err != nil {
		s.d.Log.Warn("security: save ban", "ip", b.IP, "error", err)
	}
}

// noter rate-limits journal events about dropped traffic: one per address
// and cause per interval, so a flood cannot flood the journal.
type noter struct {
	mu   sync.Mutex
	last map[noteKey]int64 // guarded by mu: unix ns of the last event
}

type noteKey struct {
	ip netip.Addr
	c  cause.Code
}

const maxNotes = 100_000

func (n *noter) ok(ip netip.Addr, c cause.Code, now time.Time, every time.Duration) bool {
	k := noteKey{ip, c}
	t := now.UnixNano()
	n.mu.Lock()
	defer n.mu.Unlock()
	if last, ok := n.last[k]; ok && t-last < int64(every) {
		return false
	}
	if len(n.last) >= maxNotes {
		n.sweepLocked(t, every)
		if len(n.last) >= maxNotes {
			clear(n.last)
		}
	}
	n.last[k] = t
	return true
}

func (n *noter) sweep(now time.Time, every time.Duration) {
	n.mu.Lock()
	n.sweepLocked(now.UnixNano(), every)
	n.mu.Unlock()
}

func (n *noter) sweepLocked(t int64, every time.Duration) {
	for k, last := range n.last {
		if t-last >= int64(every) {
			delete(n.last, k)
		}
	}
}

// note journals a refused or dropped message, at most once per address
// and cause per NoteEvery. head is the message (or what was read of it).
func (s *Service) note(ip netip.Addr, ap netip.AddrPort, transport string, c cause.Code, status int, head []byte, detail string) {
	now := s.now()
	if !s.notes.ok(ip, c, now, s.cfg.NoteEvery) {
		return
	}
	ev := eventFor(now, ap, transport, c, detail)
	ev.Status = status
	s.describe(&ev, head)
	s.d.Journal.Record(ev)
}

// eventFor starts a journal event about a message from ap.
func eventFor(now time.Time, ap netip.AddrPort, transport string, c cause.Code, detail string) journal.Event {
	return journal.Event{Time: now, Kind: journal.KindRequest, Cause: c, Source: ap.String(),
		Transport: strings.ToUpper(transport), Detail: detail}
}

// describe fills an event's method-dependent kind, extension, domain,
// user agent and Call-ID from a raw message, tolerating any bytes.
func (s *Service) describe(ev *journal.Event, head []byte) {
	m := guard.Summarize(head)
	method := string(m.Method)
	if ev.UserAgent == "" && m.UserAgent != nil {
		ev.UserAgent = guard.Printable(m.UserAgent)
	}
	if ev.CallID == "" && m.CallID != nil {
		ev.CallID = guard.Printable(m.CallID)
	}
	user, host := m.FromUser, m.FromHost // the caller for calls and other requests
	switch method {
	case "REGISTER":
		ev.Kind, user, host = journal.KindRegister, m.ToUser, m.ToHost
	case "INVITE":
		ev.Kind = journal.KindInvite
	}
	if len(user) > 0 {
		ev.Extension = guard.Printable(user)
		ev.Domain = guard.Printable(host)
		if s.d.Dir != nil && host != nil {
			if d, ok := s.d.Dir.Resolve(string(host)); ok {
				ev.Domain = d
			}
		}
	}
	if method != "" && !strings.HasPrefix(method, "SIP/") && ev.Detail != "" {
		ev.Detail = guard.Printable(m.Method) + ": " + ev.Detail
	}
}
