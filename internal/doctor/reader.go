package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// DefaultRecent is how many of an extension's newest journal events the
// reader hands to Diagnose.
const DefaultRecent = 2000

// CallQuery selects call records for CallSource.
type CallQuery struct {
	// ID selects one call by its record number (the other fields are
	// then ignored; no such call: an empty answer).
	ID               int64
	From, To, Domain string
	// Failed selects ended calls whose cause is not NORMAL_CLEARING.
	Failed bool
	Limit  int
}

// CallSource reads call records, newest first.
type CallSource func(ctx context.Context, q CallQuery) ([]Call, error)

// BanSource reads the active bans of the given addresses.
type BanSource func(ctx context.Context, ips []string) ([]Ban, error)

// Store is what a Reader reads: the directory, the registrations, the
// journal, the access control and the published settings (store/sqlite.DB
// implements it).
type Store interface {
	store.Doctor
	store.Journal
	store.Meta
	AccessStore
	Domain(ctx context.Context, name string) (store.Domain, error)
	Extension(ctx context.Context, domain, number string) (store.Extension, error)
	// Path is the database file's path (its file system is checked).
	Path() string
}

// AccessStore reads the access control in force (see ReadAccess).
type AccessStore interface {
	ACLs(ctx context.Context) ([]acl.List, error)
	Profile(ctx context.Context, name string) (store.Profile, error)
}

// Reader gathers the facts Diagnose needs from a data directory and the
// running server. It only reads. The zero values of the optional fields
// turn their part off: Calls and Bans nil mean "not available" (a skip
// finding), Probe false skips probing, Firewall false skips the firewall.
// A Reader probes and reads the firewall once, on its first Gather; it is
// not safe for concurrent use.
type Reader struct {
	DB      Store
	DataDir string // shown in fixes ("" leaves --data out)
	// DefaultDomain is the server's default domain ("" = read it).
	DefaultDomain string
	// Serve says whether serve runs (from the lock) and what it published.
	Serve Serve
	// Probe the listeners of a running server (UDP OPTIONS, TCP connect).
	Probe bool
	// Firewall reads the host firewall rulesets.
	Firewall bool
	// Disk checks the database's file system (free space, a test write).
	Disk  bool
	Calls CallSource
	Bans  BanSource
	// RecentLimit bounds the journal events read (0 = DefaultRecent).
	RecentLimit int
	Now         func() time.Time
	Loc         *time.Location

	// runtimeDone records that probing and the firewall were done.
	runtimeDone bool
	firewall    Firewall
	storage     Storage
}

func (r *Reader) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Gather reads every fact about number@domain (domain canonical, as
// resolved by the caller). It fails only when the database cannot be read.
func (r *Reader) Gather(ctx context.Context, number, domain string) (Inputs, error) {
	in := Inputs{Now: r.now(), Loc: r.Loc, DataDir: r.DataDir, Number: number, Domain: domain}
	if in.Loc == nil {
		in.Loc = time.Local
	}
	in.DefaultDomain = r.DefaultDomain
	if in.DefaultDomain == "" {
		in.DefaultDomain, _, _ = r.DB.Meta(ctx, "default_domain")
	}
	if err := r.directory(ctx, &in); err != nil {
		return in, err
	}
	r.runtime(ctx)
	in.Serve, in.Firewall, in.Storage = r.Serve, r.firewall, r.storage
	var err error
	if in.Bindings, err = r.DB.BindingsOf(ctx, domain, number); err != nil {
		return in, fmt.Errorf("doctor: %w", err)
	}
	if nodes, ok := r.DB.(store.Nodes); ok {
		if in.Nodes, err = nodes.ListNodes(ctx); err != nil {
			return in, fmt.Errorf("doctor: %w", err)
		}
		in.NodeLease = 15 * time.Second
		if v, ok, _ := r.DB.Meta(ctx, "node_lease"); ok {
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				in.NodeLease = d
			}
		}
	}
	if err := r.history(ctx, &in); err != nil {
		return in, err
	}
	r.bans(ctx, &in)
	in.Access = ReadAccess(ctx, r.DB)
	if r.Calls != nil {
		failed, err := r.Calls(ctx, CallQuery{To: number, Domain: domain, Failed: true, Limit: 20})
		if err == nil {
			in.Calls = Calls{Available: true, Failed: failed}
		}
	}
	return in, nil
}

// ErrNoSuchCall is returned (wrapped) by GatherCallID for an id no call
// record has.
var ErrNoSuchCall = errors.New("no such call on record")

// GatherCallID reads the facts about the recorded call id: its parties'
// facts as GatherCall reads them, with that call (not the newest between
// them) as Last.
func (r *Reader) GatherCallID(ctx context.Context, id int64) (CallInputs, error) {
	if r.Calls == nil {
		return CallInputs{}, fmt.Errorf("doctor: call records cannot be read")
	}
	cs, err := r.Calls(ctx, CallQuery{ID: id})
	if err != nil {
		return CallInputs{}, err
	}
	if len(cs) == 0 {
		return CallInputs{}, fmt.Errorf("call %d: %w", id, ErrNoSuchCall)
	}
	c := cs[0]
	ci, err := r.gatherParties(ctx, c.From, c.To, c.Domain)
	if err != nil {
		return ci, err
	}
	ci.CallsAvailable, ci.Last, ci.ByID = true, &c, true
	return ci, nil
}

func (r *Reader) gatherParties(ctx context.Context, from, to, domain string) (CallInputs, error) {
	var ci CallInputs
	var err error
	if ci.Caller, err = r.Gather(ctx, from, domain); err != nil {
		return ci, err
	}
	if ci.Callee, err = r.Gather(ctx, to, domain); err != nil {
		return ci, err
	}
	return ci, nil
}

// GatherCall reads the facts about a call from one extension to another
// in domain.
func (r *Reader) GatherCall(ctx context.Context, from, to, domain string) (CallInputs, error) {
	ci, err := r.gatherParties(ctx, from, to, domain)
	if err != nil {
		return ci, err
	}
	if r.Calls != nil {
		calls, err := r.Calls(ctx, CallQuery{From: from, To: to, Domain: domain, Limit: 1})
		if err == nil {
			ci.CallsAvailable = true
			if len(calls) > 0 {
				ci.Last = &calls[0]
			}
		}
	}
	return ci, nil
}

func (r *Reader) directory(ctx context.Context, in *Inputs) error {
	d, err := r.DB.Domain(ctx, in.Domain)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("doctor: %w", err)
	default:
		in.Domain, in.DomainEnabled = d.Name, d.Enabled
	}
	e, err := r.DB.Extension(ctx, in.Domain, in.Number)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Only the numbers: reading 100,000 whole extensions to find typos
		// would cost the doctor its answer time.
		nums, err := r.DB.ExtensionNumbers(ctx, in.Domain)
		if err != nil {
			return fmt.Errorf("doctor: %w", err)
		}
		in.Similar = Similar(in.Number, nums, 3)
	case err != nil:
		return fmt.Errorf("doctor: %w", err)
	default:
		in.Ext = &e
	}
	if in.OtherDomains, err = r.DB.DomainsWithExtension(ctx, in.Number, in.Domain); err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	return nil
}

// runtime probes the listeners and reads the firewall, once per Reader.
func (r *Reader) runtime(ctx context.Context) {
	if r.runtimeDone {
		return
	}
	r.runtimeDone = true
	if r.Disk {
		r.storage = ReadStorage(filepath.Dir(r.DB.Path()))
	}
	if r.Probe && r.Serve.Running {
		for i, l := range r.Serve.Listeners {
			r.Serve.Listeners[i] = ProbeListener(ctx, l, time.Second)
		}
	}
	if r.Firewall {
		var ports []Port
		for _, l := range r.Serve.Listeners {
			if _, p, err := net.SplitHostPort(l.Addr); err == nil {
				if n, err := strconv.Atoi(p); err == nil {
					proto := strings.ToLower(l.Proto)
					if proto == "tls" || proto == "ws" || proto == "wss" {
						proto = "tcp" // the firewall sees TCP
					}
					ports = append(ports, Port{Proto: proto, Num: n})
				}
			}
		}
		if len(ports) == 0 {
			ports = []Port{{"udp", 5060}, {"tcp", 5060}}
		}
		r.firewall = ReadFirewall(ctx, ports)
	}
}

// failureCauses are the causes whose counts Diagnose may need beyond the
// recent window.
var failureCauses = []cause.Code{cause.WrongPassword, cause.AuthUserMismatch, cause.WrongDomain, cause.ACLDenied,
	cause.IPBanned, cause.MaxRegistrations, cause.IntervalTooBrief, cause.ExtensionMissing, cause.ExtensionDisabled,
	cause.DigestNoQOP, cause.DigestURIMismatch}

func (r *Reader) history(ctx context.Context, in *Inputs) error {
	db := r.DB
	h := &in.History
	h.Limit = r.RecentLimit
	if h.Limit <= 0 {
		h.Limit = DefaultRecent
	}
	var err error
	if h.Recent, err = journal.Query(ctx, db, journal.Filter{Extension: in.Number, Limit: h.Limit}); err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	h.Available = true
	// Operator changes are context: a journal too old for the query
	// leaves them out rather than failing the doctor.
	h.Admin, _ = journal.Admin(ctx, db, 200)
	for _, c := range []cause.Code{cause.TLSHandshakeFailed, cause.WSOriginRefused, cause.WSNoSIPSubprotocol, cause.HandshakeTimeout} {
		evs, err := journal.Query(ctx, db, journal.Filter{Cause: c, Since: time.Now().Add(-24 * time.Hour), Limit: 5})
		if err == nil {
			h.Handshakes = append(h.Handshakes, evs...)
		}
	}
	sort.Slice(h.Handshakes, func(i, j int) bool { return h.Handshakes[i].Time.After(h.Handshakes[j].Time) })
	if h.Oldest, err = journal.OldestTime(ctx, db); err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	h.Last = map[cause.Code]journal.Event{}
	for _, c := range []cause.Code{cause.Registered, cause.Unregistered, cause.Expired, cause.RemovedByAdmin} {
		e, ok, err := journal.LastOf(ctx, db, in.Number, in.Domain, c)
		if err != nil {
			return fmt.Errorf("doctor: %w", err)
		}
		if ok {
			h.Last[c] = e
		}
	}
	h.Stats = map[cause.Code]journal.Stats{}
	if len(h.Recent) < h.Limit {
		return nil // the window holds everything: no counting needed
	}
	since := time.Time{}
	if e, ok := h.Last[cause.Registered]; ok {
		since = e.Time.Add(time.Microsecond)
	}
	present := map[cause.Code]bool{}
	for _, e := range h.Recent {
		present[e.Cause] = true
	}
	for _, c := range failureCauses {
		if !present[c] {
			continue
		}
		st, err := journal.CauseStats(ctx, db, in.Number, in.Domain, c, since, 0)
		if err != nil {
			return fmt.Errorf("doctor: %w", err)
		}
		h.Stats[c] = st
	}
	return nil
}

func (r *Reader) bans(ctx context.Context, in *Inputs) {
	if r.Bans == nil {
		return
	}
	seen := map[string]bool{}
	var ips []string
	add := func(src string) {
		ip := ipOf(src)
		if ip != "" && !seen[ip] {
			seen[ip] = true
			ips = append(ips, ip)
		}
	}
	for _, e := range in.History.Recent {
		add(e.Source)
	}
	for _, b := range in.Bindings {
		add(b.Source)
	}
	bans, err := r.Bans(ctx, ips)
	if err != nil {
		return
	}
	in.Bans = Bans{Available: true, Active: bans}
}

// Similar returns up to max numbers from candidates that look like a typo
// of number: one digit changed, added or dropped, or two neighbours
// swapped. The result is sorted.
func Similar(number string, candidates []string, max int) []string {
	var out []string
	for _, c := range candidates {
		if c != number && oneEdit(number, c) {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if len(out[i]) != len(out[j]) {
			return len(out[i]) < len(out[j])
		}
		return out[i] < out[j]
	})
	if len(out) > max {
		out = out[:max]
	}
	return out
}

// oneEdit reports whether a and b differ by one substitution, insertion,
// deletion or adjacent transposition.
func oneEdit(a, b string) bool {
	la, lb := len(a), len(b)
	switch {
	case la == lb:
		var diff []int
		for i := 0; i < la; i++ {
			if a[i] != b[i] {
				diff = append(diff, i)
				if len(diff) > 2 {
					return false
				}
			}
		}
		switch len(diff) {
		case 1:
			return true
		case 2:
			i, j := diff[0], diff[1]
			return j == i+1 && a[i] == b[j] && a[j] == b[i]
		}
		return false
	case la == lb+1:
		return deletes(a, b)
	case lb == la+1:
		return deletes(b, a)
	}
	return false
}

// deletes reports whether removing one byte from long gives short.
func deletes(long, short string) bool {
	i := 0
	for i < len(short) && long[i] == short[i] {
		i++
	}
	return long[i+1:] == short[i:]
}

// CallsFromDB reads call records from the store (package calls).
func CallsFromDB(db store.Calls) CallSource {
	return func(ctx context.Context, q CallQuery) ([]Call, error) {
		var recs []calls.Record
		if q.ID != 0 {
			r, err := calls.Get(ctx, db, q.ID)
			switch {
			case errors.Is(err, calls.ErrNotFound):
			case err != nil:
				return nil, fmt.Errorf("doctor: %w", err)
			default:
				recs = append(recs, r)
			}
		} else {
			var err error
			recs, err = calls.Query(ctx, db, calls.Filter{From: q.From, To: q.To, Domain: q.Domain, Failed: q.Failed, Limit: q.Limit})
			if err != nil {
				return nil, fmt.Errorf("doctor: %w", err)
			}
		}
		out := make([]Call, 0, len(recs))
		for _, r := range recs {
			out = append(out, Call{Time: r.Start, Active: r.Active(), From: r.From, To: r.To, Domain: r.Domain, Status: r.SIPStatus,
				Cause: r.Cause, Source: r.Source, Detail: r.Detail, Answered: !r.Answer.IsZero(),
				ID: r.ID, CallID: r.CallID, AnswerTime: r.Answer, End: r.End, Media: r.Media})
		}
		return out, nil
	}
}

// BansFromDB reads the stored bans (expired or not) of the given addresses
// from the store; Diagnose keeps the active ones. Strings that are not
// addresses match nothing.
func BansFromDB(db store.Security) BanSource {
	return func(ctx context.Context, ips []string) ([]Ban, error) {
		addrs := make([]netip.Addr, 0, len(ips))
		for _, s := range ips {
			if a, err := netip.ParseAddr(s); err == nil {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) == 0 {
			return nil, nil
		}
		bans, err := db.BansOf(ctx, addrs)
		if err != nil {
			return nil, fmt.Errorf("doctor: %w", err)
		}
		out := make([]Ban, 0, len(bans))
		for _, b := range bans {
			out = append(out, Ban{IP: b.IP.String(), Reason: b.Reason, Failures: b.Failures, Since: b.Since, Until: b.Until})
		}
		return out, nil
	}
}

// ReadAccess reads the access control in force: the profile "internal"'s
// register and inbound ACLs and every list. Access.Available is false when
// they cannot be read.
func ReadAccess(ctx context.Context, db AccessStore) Access {
	var a Access
	p, err := db.Profile(ctx, "internal")
	switch {
	case errors.Is(err, store.ErrNoProfile):
	case err != nil:
		return Access{}
	default:
		a.RegisterACL, a.InboundACL = p.RegisterACL, p.InboundACL
	}
	lists, err := db.ACLs(ctx)
	if err != nil {
		return Access{}
	}
	a.Lists = make(map[string]acl.List, len(lists))
	for _, l := range lists {
		a.Lists[l.Name] = l
	}
	a.Available = true
	return a
}
