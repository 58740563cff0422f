// Package location is the live table of registrations (bindings): which
// contacts each extension (address of record) is reachable at, until when,
// and through which source address and transport.
//
// The table lives in memory for the hot path and is persisted to the store
// by a group-committing writer: Update returns only once its change is
// committed (many concurrent Updates share one transaction), so a change
// Update reported is on disk and survives a restart, kill -9 included. When
// the store cannot write (a full disk), the writer retries, then rolls the
// failed changes back out of memory, returns ErrUnavailable for them and
// refuses new ones with ErrUnavailable until a retry, after a back-off,
// succeeds: memory never holds a change the store refused. Expired bindings
// are removed by Run's sweeper, which reports each expiry to OnExpire.
//
// Several nodes on one database (SetNode, RunRemote): the table holds and
// writes this node's bindings, each carrying the node's name and Path;
// Lookup adds the bindings other nodes own (read from the store by
// RunRemote) while their node's lease is current. SetLazyRefresh and
// SetBacklog trade the write per REGISTER and the refusal while the store
// cannot write for fewer writes and answers from memory (see each).
//
// Memory: a server holds every registration in this table, so a binding is
// kept compact (see node and compact) rather than as a store.Binding: its
// numbers in fixed fields, its strings packed into one string, its domain
// and extension shared with the map key and its user agent with the other
// phones of the same make. With typical values that is 210–230 bytes and two
// heap objects per binding (BenchmarkHeapPerBinding), where store.Binding
// values took about 500 bytes and six; a refresh with unchanged strings
// allocates no new text.
package location

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

const shardCount = 64

type aorKey struct{ domain, ext string }

type shard struct {
	mu sync.RWMutex // guards aors, the nodes in it, and agents
	// aors holds each extension's bindings, a list in registration order
	// (the order Update's fn returned them, or the store loaded them);
	// an extension without bindings has no entry.
	aors map[aorKey]*node
	// agents holds user agents the shard's bindings share by index
	// (compact.agent), so that a fleet of phones of one make costs one copy
	// of their user agent, not one per binding.
	agents agents
	// owner and path are the node name and Path every binding of the
	// shard carries (Table.SetNode; read-only once serving).
	owner, path string
}

// Table is the location table. Create with New; start Run.
type Table struct {
	db       store.Bindings
	log      *slog.Logger
	now      func() time.Time
	seed     maphash.Seed
	shards   [shardCount]shard
	ops      chan op
	onExpire func(store.Binding)
	stopped  chan struct{}
	// lazy: see SetLazyRefresh.
	lazy atomic.Bool
	// self is this node's name (SetNode); remote is the other nodes'
	// bindings (see remote.go).
	self   string
	remote remoteView

	// srcMu guards srcs: how many bindings (live, or expired but not yet
	// swept) came from each source address. Taken inside a shard lock.
	srcMu sync.Mutex
	srcs  map[netip.Addr]int

	// down is set while the store cannot write: Update and SetPing refuse
	// changes. applying counts Updates and SetPings between their check of
	// down and their enqueue, so that the writer, once it set down, can
	// wait for every change already made in memory to reach its queue.
	down     atomic.Bool
	applying atomic.Int64
	// healthMu guards health.
	healthMu sync.Mutex
	health   Health
	// Only Run's goroutine uses these: deletes of expired bindings whose
	// write failed (retried with the next batch), the current back-off and
	// the time down ends.
	retryDel []store.BindingKey
	backoff  time.Duration
	upAt     time.Time
	// backlogCap is SetBacklog's bound (0: no backlog). backlog holds the
	// changes acknowledged from memory while the store could not write, in
	// order, and backlogN how many bindings they touch; Run's goroutine
	// only.
	backlogCap int
	backlog    []op
	backlogN   int
}

// An op is one change for the writer. An Update's op carries what it
// replaced (before, after: the extension's lists under key in shard), so a
// change the store refused can be taken back out of memory.
type op struct {
	upsert []store.Binding
	del    []store.BindingKey
	done   chan error

	shard         *shard
	key           aorKey
	undo          bool // before and after are set
	before, after *node
}

// ErrStopped is returned by Update after the table stopped.
var ErrStopped = errors.New("location table stopped")

// ErrUnavailable is returned (wrapped in an *UnavailableError) by Update
// when the store cannot write: the change was not made, in memory or on
// disk.
var ErrUnavailable = errors.New("location: the store cannot write")

// UnavailableError is the error for a change refused or rolled back because
// the store cannot write. Err is the store's last error; RetryAfter is how
// long until the writer tries again.
type UnavailableError struct {
	Err        error
	RetryAfter time.Duration
}

func (e *UnavailableError) Error() string {
	return "location: the store cannot write, binding not saved: " + e.Err.Error()
}

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// Unwrap returns the store's error.
func (e *UnavailableError) Unwrap() error { return e.Err }

// Health is the state of the table's writer.
type Health struct {
	// Down is true while the store cannot write (changes are refused).
	Down bool
	// Since is when the writer last failed (down) or recovered.
	Since time.Time
	// Err is the store's last write error while Down.
	Err error
	// RetryAt is when the writer tries the store again while Down (by the
	// system clock, not the table's).
	RetryAt time.Time
	// Failures counts batches that failed after their retries.
	Failures int64
	// Backlog is how many binding changes wait, acknowledged from memory,
	// for the store to write again (see SetBacklog).
	Backlog int
}

// New returns an empty table persisting to db. now is the clock (nil = time.Now).
func New(db store.Bindings, log *slog.Logger, now func() time.Time) *Table {
	if now == nil {
		now = time.Now
	}
	t := &Table{db: db, log: log, now: now, seed: maphash.MakeSeed(), ops: make(chan op, 4096),
		stopped: make(chan struct{}), srcs: map[netip.Addr]int{}}
	for i := range t.shards {
		t.shards[i].aors = make(map[aorKey]*node)
	}
	return t
}

// SetNode names the node that owns this table's bindings and its Path
// URI (RFC 3327): every binding the table holds, writes and returns carries
// them, Load takes only the stored bindings of this node (and those of no
// node), and the store deletes a binding only while this node owns it.
// Call before Load and Run.
func (t *Table) SetNode(name, path string) {
	t.self = name
	for i := range t.shards {
		t.shards[i].owner, t.shards[i].path = name, path
	}
}

// OnExpire sets the function told about each binding the sweeper removes.
// Call before Run.
func (t *Table) OnExpire(f func(store.Binding)) { t.onExpire = f }

// Health returns the state of the writer.
func (t *Table) Health() Health {
	t.healthMu.Lock()
	defer t.healthMu.Unlock()
	return t.health
}

// unavailable returns the error for a change refused while down.
func (t *Table) unavailable() error {
	t.healthMu.Lock()
	defer t.healthMu.Unlock()
	err := t.health.Err
	if err == nil {
		err = errors.New("store write failed")
	}
	return &UnavailableError{Err: err, RetryAfter: max(time.Until(t.health.RetryAt), 0)}
}

func normDomain(d string) string { return strings.ToLower(d) }

func (t *Table) shard(k aorKey) *shard {
	var h maphash.Hash
	h.SetSeed(t.seed)
	h.WriteString(k.domain)
	h.WriteByte(0)
	h.WriteString(k.ext)
	return &t.shards[h.Sum64()%shardCount]
}

// Load fills the table from the store, dropping (and deleting) bindings that
// expired while the server was down. It returns how many were loaded.
func (t *Table) Load(ctx context.Context) (int, error) {
	all, err := t.db.LoadBindings(ctx)
	if err != nil {
		return 0, err
	}
	now := t.now()
	var stale []store.BindingKey
	domains := map[string]string{} // one copy of each domain name for the keys
	n := 0
	for i := range all {
		b := &all[i]
		if b.Node != "" && b.Node != t.self {
			continue // another node's: never ours to load or delete
		}
		if !b.ExpiresAt.After(now) {
			stale = append(stale, b.Key())
			continue
		}
		d := normDomain(b.Domain)
		if shared, ok := domains[d]; ok {
			d = shared
		} else {
			domains[d] = d
		}
		k := aorKey{d, b.Extension}
		s := t.shard(k)
		e := &node{compact: s.pack(k, b, ""), stored: unixNano(b.ExpiresAt)}
		if last := s.aors[k]; last == nil {
			s.aors[k] = e
		} else {
			for last.next != nil {
				last = last.next
			}
			last.next = e
		}
		t.countSource(b.Source, 1)
		n++
	}
	if len(stale) > 0 {
		if err := t.db.ApplyBindings(ctx, nil, stale); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Lookup returns a copy of the unexpired bindings of an extension: this
// node's, oldest registration first, then those other nodes own whose lease
// is current (see RunRemote), except for contacts this node holds.
func (t *Table) Lookup(domain, ext string) []store.Binding {
	own := t.LookupLocal(domain, ext)
	return t.remote.lookup(aorKey{normDomain(domain), ext}, own, t.now())
}

// LookupLocal returns a copy of the unexpired bindings of an extension
// that this node owns, oldest registration first.
func (t *Table) LookupLocal(domain, ext string) []store.Binding {
	k := aorKey{normDomain(domain), ext}
	s := t.shard(k)
	now := unixNano(t.now())
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.live(k, now)
}

// Update atomically replaces the bindings of one extension with what fn
// returns (fn gets the current unexpired bindings in a slice of its own,
// which it may change and return, and must not keep them)
// and returns the new set once the change is committed to the store (it
// shares a transaction with the other changes queued meanwhile): a nil
// error means the change is durable. An unchanged set returns at once.
// The set returned is the slice fn returned, each binding's Node and Path
// set; the table keeps no reference to it.
//
// When fn returns an error nothing changes and that error is returned.
// While the store cannot write, Update refuses at once (fn is not called);
// a change whose write failed is taken back out of memory. Both return an
// *UnavailableError (errors.Is ErrUnavailable). ErrStopped: the table
// stopped and the change was not saved. If ctx ends while waiting for the
// commit, ctx.Err() is returned and the change may still be committed (or
// rolled back).
func (t *Table) Update(ctx context.Context, domain, ext string, fn func(cur []store.Binding) ([]store.Binding, error)) ([]store.Binding, error) {
	k := aorKey{normDomain(domain), ext}
	s := t.shard(k)
	now := unixNano(t.now())
	t.applying.Add(1)
	applying := true
	defer func() {
		if applying {
			t.applying.Add(-1)
		}
	}()
	if t.down.Load() { // refused early: the writer waits for no refused Update
		return nil, t.unavailable()
	}
	s.mu.Lock()
	old := s.aors[k]
	next, err := fn(s.live(k, now))
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	// Diff: upsert changed/new, delete removed (including expired ones).
	// The new list gets new nodes; the old list is left as it was.
	o := op{shard: s, key: k, undo: true, before: old}
	var head *node
	tail := &head
	refreshed := false // a refresh changed memory only (SetLazyRefresh)
	for i := range next {
		b := &next[i]
		reuse := "" // the text of an old binding of the same contact
		var prev *node
		for e := old; e != nil; e = e.next {
			if e.contact() == b.Contact {
				reuse, prev = e.text, e
				break
			}
		}
		b.Node, b.Path = s.owner, s.path
		e := &node{compact: s.pack(k, b, reuse)}
		switch {
		case prev != nil && prev.compact == e.compact:
			e.stored = prev.stored
		case prev != nil && t.lazy.Load() && lazyRefresh(prev, &e.compact, now):
			e.stored, refreshed = prev.stored, true
		default:
			e.stored = e.expires
			o.upsert = append(o.upsert, *b)
		}
		*tail, tail = e, &e.next
	}
	for e := old; e != nil; e = e.next {
		if c := e.contact(); !slices.ContainsFunc(next, func(b store.Binding) bool { return b.Contact == c }) {
			b := s.binding(k, &e.compact)
			o.del = append(o.del, b.Key())
		}
	}
	out := next // the table keeps nothing of next: pack and upsert copy
	if len(o.upsert) == 0 && len(o.del) == 0 {
		if refreshed {
			s.set(k, head)
			t.recountSources(old, next)
		}
		s.mu.Unlock()
		return out, nil
	}
	// Checked after the applying count went up: either the writer sees
	// this Update in flight, or this Update sees down (see fail).
	if t.down.Load() {
		s.mu.Unlock()
		return nil, t.unavailable()
	}
	s.set(k, head)
	o.after = head
	t.recountSources(old, next)
	// Queued under the shard lock, so that the changes of one extension
	// reach the writer in the order they were made.
	o.done = make(chan error, 1)
	select {
	case t.ops <- o:
	case <-t.stopped:
		s.set(k, old)
		t.recountSources(head, s.list(k, old))
		s.mu.Unlock()
		return nil, ErrStopped
	}
	s.mu.Unlock()
	t.applying.Add(-1)
	applying = false
	return out, t.wait(ctx, o.done)
}

// set makes list the bindings of k (none when nil); s.mu must be held.
func (s *shard) set(k aorKey, list *node) {
	if list == nil {
		delete(s.aors, k)
	} else {
		s.aors[k] = list
	}
}

// list returns every binding of list (expired ones included) under key k;
// s.mu must be held.
func (s *shard) list(k aorKey, list *node) []store.Binding {
	var out []store.Binding
	for e := list; e != nil; e = e.next {
		out = append(out, s.binding(k, &e.compact))
	}
	return out
}

// wait waits for the writer's answer on done.
func (t *Table) wait(ctx context.Context, done chan error) error {
	select {
	case err := <-done:
		return err
	case <-t.stopped:
		// Run may have written it in its final batch; wait briefly for that.
		select {
		case err := <-done:
			return err
		default:
			return ErrStopped
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush waits until every change queued before the call is committed. It
// returns an *UnavailableError while the store cannot write.
func (t *Table) Flush(ctx context.Context) error {
	return t.persist(ctx, op{})
}

// SetBacklog makes the table answer changes from memory while the store
// cannot write (a database restarting or unreachable), up to n bindings
// changed: they are written, in order, once it can again (tried after a
// back-off of 250 ms doubling up to 5 s). Past n, changes are refused
// with an *UnavailableError as without a backlog. Changes in the backlog
// are lost if the process dies before the store is back. n = 0 (the
// default) turns the backlog off. Call before Run.
func (t *Table) SetBacklog(n int) { t.backlogCap = n }

// SetLazyRefresh makes Update skip the store write of a refresh that only
// moves a binding's expiry (and CSeq and registration time), as long as
// the expiry moved by at most half the registration interval since the
// binding was last written: phones refreshing often cost a write every
// half interval, not one per REGISTER. The store's expiry then lags the
// one in memory by at most half an interval: after a kill -9, a binding
// comes back with that earlier expiry (it is still in the future while
// the phone refreshes at least every half interval), and other nodes
// consider it until then.
func (t *Table) SetLazyRefresh(on bool) { t.lazy.Store(on) }

// lazyRefresh reports whether c, made at now (Unix ns), differs from prev
// only by a refresh whose write may be skipped (see SetLazyRefresh): the
// interval is c's expiry less now (RegisteredAt is the first
// registration's).
func lazyRefresh(prev *node, c *compact, now int64) bool {
	p := &prev.compact
	if p.text != c.text || p.pingAt != c.pingAt || p.pingRTT != c.pingRTT || p.transport != c.transport ||
		p.ping != c.ping || p.agent != c.agent || p.flags != c.flags || prev.stored == 0 {
		return false
	}
	moved := c.expires - prev.stored
	return moved >= 0 && moved <= (c.expires-now)/2
}

func (t *Table) persist(ctx context.Context, o op) error {
	o.done = make(chan error, 1)
	select {
	case t.ops <- o:
	case <-t.stopped:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	return t.wait(ctx, o.done)
}

// SetPing records the result of an OPTIONS qualify for one binding and
// returns its previous status ("", "reachable" or "unreachable") and the
// updated binding. The status is persisted only when it changes (or once a
// minute for the RTT).
func (t *Table) SetPing(key store.BindingKey, reachable bool, rtt time.Duration) (prev string, b store.Binding, ok bool) {
	k := aorKey{normDomain(key.Domain), key.Extension}
	s := t.shard(k)
	status := "unreachable"
	if reachable {
		status = "reachable"
	}
	now := t.now()
	t.applying.Add(1)
	defer t.applying.Add(-1)
	s.mu.Lock()
	for e := s.aors[k]; e != nil; e = e.next {
		if e.contact() != key.Contact {
			continue
		}
		b = s.binding(k, &e.compact)
		prev = b.PingStatus
		persist := prev != status || now.Sub(b.PingAt) > time.Minute
		e.ping = code(pingStatuses[:], status)
		e.pingRTT = float64(rtt.Microseconds()) / 1000
		if persist {
			e.pingAt = unixNano(now)
			e.setUTC(pingAtUTC, now)
		}
		b = s.binding(k, &e.compact)
		if persist && !t.down.Load() {
			// Queued under the shard lock, like Update's changes (see there);
			// dropped when the queue is full.
			select {
			case t.ops <- op{upsert: []store.Binding{b}}:
			default:
			}
		}
		s.mu.Unlock()
		return prev, b, true
	}
	s.mu.Unlock()
	return "", b, false
}

// All returns every unexpired binding, ordered by domain, extension, then
// registration time.
func (t *Table) All() []store.Binding {
	now := unixNano(t.now())
	var out []store.Binding
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for k, list := range s.aors {
			for e := list; e != nil; e = e.next {
				if e.expires > now {
					out = append(out, s.binding(k, &e.compact))
				}
			}
		}
		s.mu.RUnlock()
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		if a.Domain != b.Domain {
			return a.Domain < b.Domain
		}
		if a.Extension != b.Extension {
			return a.Extension < b.Extension
		}
		return a.RegisteredAt.Before(b.RegisteredAt)
	})
	return out
}

// Remove drops the unexpired bindings that match and returns them: of
// domain ("" = every domain), of extension ext ("" = every extension), with
// Contact URI contact ("" = every contact). Nothing is sent to the phones.
func (t *Table) Remove(ctx context.Context, domain, ext, contact string) ([]store.Binding, error) {
	type aor struct{ domain, ext string }
	var aors []aor
	seen := map[aor]bool{}
	for _, b := range t.All() {
		a := aor{b.Domain, b.Extension}
		if (domain == "" || strings.EqualFold(b.Domain, domain)) && (ext == "" || b.Extension == ext) && !seen[a] {
			seen[a] = true
			aors = append(aors, a)
		}
	}
	var gone []store.Binding
	for _, a := range aors {
		_, err := t.Update(ctx, a.domain, a.ext, func(cur []store.Binding) ([]store.Binding, error) {
			keep := cur[:0:0]
			for _, b := range cur {
				if contact == "" || b.Contact == contact {
					gone = append(gone, b)
				} else {
					keep = append(keep, b)
				}
			}
			return keep, nil
		})
		if err != nil {
			return gone, err
		}
	}
	return gone, nil
}

// Count returns the number of unexpired bindings.
func (t *Table) Count() int {
	now := unixNano(t.now())
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for _, list := range s.aors {
			for e := list; e != nil; e = e.next {
				if e.expires > now {
					n++
				}
			}
		}
		s.mu.RUnlock()
	}
	return n
}

// HasSource reports whether a binding came from ip (any port): the address
// has a live registration. Access control judges such addresses' failed
// authentications apart (their own extensions' failures never count). It
// takes one short lock.
func (t *Table) HasSource(ip netip.Addr) bool {
	ip = ip.Unmap()
	t.srcMu.Lock()
	defer t.srcMu.Unlock()
	return t.srcs[ip] > 0
}

// countSource adds d to the bindings counted for source ("ip:port").
func (t *Table) countSource(source string, d int) {
	ap, err := netip.ParseAddrPort(source)
	if err != nil {
		return
	}
	ip := ap.Addr().Unmap()
	t.srcMu.Lock()
	if n := t.srcs[ip] + d; n > 0 {
		t.srcs[ip] = n
	} else {
		delete(t.srcs, ip)
	}
	t.srcMu.Unlock()
}

// recountSources moves the source counts from old bindings to next; a
// refresh from the same addresses touches nothing.
func (t *Table) recountSources(old *node, next []store.Binding) {
	i := 0
	for e := old; e != nil && i < len(next) && e.source() == next[i].Source; e = e.next {
		i++
	}
	if i == len(next) && old.len() == i {
		return
	}
	for e := old; e != nil; e = e.next {
		t.countSource(e.source(), -1)
	}
	for i := range next {
		t.countSource(next[i].Source, 1)
	}
}

// RemoveExtension drops every binding of an extension (it was deleted)
// from memory at once, and from the store with the next write; while the
// store cannot write, the delete is kept and retried (the extension is
// gone, so its bindings must not stay in memory meanwhile).
func (t *Table) RemoveExtension(ctx context.Context, domain, ext string) {
	k := aorKey{normDomain(domain), ext}
	s := t.shard(k)
	s.mu.Lock()
	old := s.aors[k]
	var keys []store.BindingKey
	for e := old; e != nil; e = e.next {
		b := s.binding(k, &e.compact)
		keys = append(keys, b.Key())
	}
	delete(s.aors, k)
	t.recountSources(old, nil)
	s.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	if err := t.persist(ctx, op{del: keys}); err != nil && !errors.Is(err, ErrStopped) && !errors.Is(err, ErrUnavailable) {
		t.log.Error("location: delete the bindings of a removed extension", "extension", ext, "domain", domain, "error", err)
	}
}

// RenameDomain moves the unexpired bindings of domain old to domain new
// (the domain was renamed) and returns how many moved (a contact already
// registered under the new name is not added twice). The rename's own
// transaction moved the stored rows; the writer stores them again under the
// new name and deletes the old keys, which also covers writes that were
// queued under the old name meanwhile.
func (t *Table) RenameDomain(ctx context.Context, old, new string) (int, error) {
	from := normDomain(old)
	now := t.now()
	moved := map[string][]store.Binding{} // extension -> its bindings
	var o op
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, head := range s.aors {
			if k.domain != from {
				continue
			}
			for e := head; e != nil; e = e.next {
				b := s.binding(k, &e.compact)
				o.del = append(o.del, b.Key())
				if b.ExpiresAt.After(now) {
					b.Domain = new
					moved[k.ext] = append(moved[k.ext], b)
				}
			}
			t.recountSources(head, nil)
			delete(s.aors, k)
		}
		s.mu.Unlock()
	}
	if len(o.del) == 0 {
		return 0, nil
	}
	if err := t.persist(ctx, o); err != nil {
		return 0, err
	}
	n := 0
	for ext, bs := range moved {
		if _, err := t.Update(ctx, new, ext, func(cur []store.Binding) ([]store.Binding, error) {
			// A phone that registered under the new name meanwhile keeps
			// that binding.
			bs = slices.DeleteFunc(bs, func(b store.Binding) bool {
				return slices.ContainsFunc(cur, func(c store.Binding) bool { return c.Contact == b.Contact })
			})
			return append(cur, bs...), nil
		}); err != nil {
			return n, err
		}
		n += len(bs)
	}
	return n, nil
}

// Sweep removes expired bindings now and reports them; Run calls it every
// second. It returns the removed bindings.
func (t *Table) Sweep(ctx context.Context) []store.Binding {
	now := unixNano(t.now())
	var gone []store.Binding
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, head := range s.aors {
			changed := false
			for p := &head; *p != nil; {
				e := *p
				if e.expires > now {
					p = &e.next
					continue
				}
				b := s.binding(k, &e.compact)
				gone = append(gone, b)
				t.countSource(b.Source, -1)
				*p, changed = e.next, true
			}
			switch {
			case head == nil:
				delete(s.aors, k)
			case changed:
				s.aors[k] = head
			}
		}
		s.mu.Unlock()
	}
	if len(gone) == 0 {
		return nil
	}
	keys := make([]store.BindingKey, len(gone))
	for i := range gone {
		keys[i] = gone[i].Key()
	}
	if err := t.persist(ctx, op{del: keys}); err != nil && !errors.Is(err, ErrStopped) {
		t.log.Error("location: delete expired bindings", "error", err)
	}
	if t.onExpire != nil {
		for _, b := range gone {
			t.onExpire(b)
		}
	}
	return gone
}

// Writer: group commit. The writer takes every change queued (up to
// maxBatch) into one transaction as soon as the previous commit is done;
// while a commit runs the next batch gathers, so the busier the server the
// larger the batches, and a lone change waits for no timer.
const maxBatch = 4096

// A failed write is tried again after each of retryPauses; when it still
// fails the store is down: its changes are rolled back and refused, and
// new ones are refused, for a back-off from minBackoff doubling up to
// maxBackoff, after which the next batch tries again.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// retryPauses are the pauses between the tries of one batch.
func retryPauses() [3]time.Duration {
	return [...]time.Duration{10 * time.Millisecond, 50 * time.Millisecond, 200 * time.Millisecond}
}

func (t *Table) drainOps(batch []op) []op {
	for len(batch) < maxBatch {
		select {
		case o := <-t.ops:
			batch = append(batch, o)
		default:
			return batch
		}
	}
	return batch
}

// Run persists changes in batches and sweeps expired bindings every second
// until ctx ends; then it stops the sweeper, writes what is queued and
// returns.
func (t *Table) Run(ctx context.Context) {
	sweeperDone := make(chan struct{})
	go func() {
		defer close(sweeperDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				t.Sweep(ctx)
			}
		}
	}()
	defer close(t.stopped)
	batch := make([]op, 0, 256)
	var up *time.Timer // ends a down period
	var upC <-chan time.Time
	var retry *time.Timer // the next try of the backlog
	var retryC <-chan time.Time
	for {
		if t.down.Load() && up == nil {
			up = time.NewTimer(time.Until(t.upAt))
			upC = up.C
		}
		if len(t.backlog) > 0 && retry == nil {
			retry = time.NewTimer(time.Until(t.upAt))
			retryC = retry.C
		}
		select {
		case <-retryC:
			retry, retryC = nil, nil
			t.writeBacklog()
		case o := <-t.ops:
			batch = t.drainOps(append(batch[:0], o))
			t.write(batch)
			// Drop the written ops: the array would keep their bindings
			// (up to maxBatch of them) in memory until overwritten.
			clear(batch)
		case <-upC:
			up, upC = nil, nil
			t.down.Store(false) // the next batch tries the store again
		case <-ctx.Done():
			if up != nil {
				up.Stop()
			}
			if retry != nil {
				retry.Stop()
			}
			<-sweeperDone
			t.down.Store(false) // a last try for what is queued
			if t.writeBacklog() {
				t.write(t.drainOps(batch[:0]))
			} else {
				t.queue(t.drainOps(batch[:0]), nil)
				t.log.Error("location: stopped with bindings the store never saved; their phones register again at their next refresh",
					"bindings", t.backlogN)
			}
			return
		}
	}
}

// write commits batch, retrying, and answers its ops; when the store
// refuses it, the table goes down (see fail).
func (t *Table) write(batch []op) {
	if len(batch) == 0 {
		return
	}
	if t.down.Load() {
		// Only changes that ask no answer of memory arrive now (Updates
		// and SetPings are refused while down): a Flush, a sweep.
		t.fail(batch)
		return
	}
	if len(t.backlog) > 0 { // the store is known down: behind the backlog
		t.queue(batch, nil)
		return
	}
	ops := batch
	if len(t.retryDel) > 0 {
		// First, so that a binding registered again since wins.
		ops = append([]op{{del: t.retryDel}}, batch...)
	}
	up, del := flatten(ops)
	var err error
	for i, pause := range retryPauses() {
		if err = t.apply(up, del); err == nil || t.backlogCap > 0 {
			break // with a backlog, the backlog's retries take over
		}
		t.log.Warn("location: save bindings failed; trying again", "try", i+1, "error", err)
		time.Sleep(pause)
	}
	if err != nil && t.backlogCap == 0 {
		err = t.apply(up, del)
	}
	if err != nil && t.backlogCap > 0 {
		t.queue(batch, err)
		return
	}
	if err != nil {
		t.goDown(err)
		t.fail(batch)
		return
	}
	t.retryDel = nil
	t.backoff = 0
	t.healthMu.Lock()
	if t.health.Down {
		t.health.Down, t.health.Since, t.health.Err = false, t.now(), nil
		t.healthMu.Unlock()
		t.log.Info("location: the store writes again; registrations are accepted")
	} else {
		t.healthMu.Unlock()
	}
	for _, o := range batch {
		if o.done != nil {
			o.done <- nil
		}
	}
}

// queue acknowledges batch from memory into the backlog (err: the write
// that just failed, nil when the backlog already holds changes), or,
// when that would pass the backlog's bound, refuses it (see fail).
func (t *Table) queue(batch []op, err error) {
	n := 0
	for _, o := range batch {
		n += len(o.upsert) + len(o.del)
	}
	if t.backlogN+n > t.backlogCap {
		if err == nil {
			err = t.Health().Err
		}
		if err == nil {
			err = errors.New("store write failed")
		}
		t.log.Error("location: the backlog of unsaved bindings is full; registrations are refused (503)",
			"backlog", t.backlogN, "max", t.backlogCap)
		t.goDown(err)
		t.fail(batch)
		return
	}
	if len(t.backlog) == 0 {
		t.backoff = min(max(2*t.backoff, minBackoff), maxBackoff)
		t.upAt = time.Now().Add(t.backoff)
		t.log.Error("location: the store cannot write; registrations are answered from memory and saved when it can",
			"error", err, "retry_in", t.backoff)
	}
	for _, o := range batch {
		if len(o.upsert)+len(o.del) > 0 {
			t.backlog = append(t.backlog, op{upsert: o.upsert, del: o.del})
		}
	}
	t.backlogN += n
	t.healthMu.Lock()
	if !t.health.Down {
		t.health.Since = t.now()
		t.health.Failures++
	}
	t.health.Down, t.health.RetryAt, t.health.Backlog = true, t.upAt, t.backlogN
	if err != nil {
		t.health.Err = err
	}
	t.healthMu.Unlock()
	for _, o := range batch {
		if o.done != nil {
			o.done <- nil
		}
	}
}

// backlogWriteTimeout bounds one write while a backlog is kept (see
// SetBacklog): a database cut off by a partition must not hold the
// REGISTERs that wait for the writer for long before they are answered
// from memory.
const backlogWriteTimeout = 2 * time.Second

// apply writes up and del to the store, within backlogWriteTimeout when
// a backlog is kept.
func (t *Table) apply(up []store.Binding, del []store.BindingKey) error {
	ctx := context.Background()
	if t.backlogCap > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, backlogWriteTimeout)
		defer cancel()
	}
	return t.db.ApplyBindings(ctx, up, del)
}

// writeBacklog tries to write the backlog (and the deletes to retry); it
// reports whether the backlog is empty now.
func (t *Table) writeBacklog() bool {
	if len(t.backlog) == 0 {
		return true
	}
	ops := t.backlog
	if len(t.retryDel) > 0 {
		ops = append([]op{{del: t.retryDel}}, ops...)
	}
	up, del := flatten(ops)
	if err := t.apply(up, del); err != nil {
		t.backoff = min(max(2*t.backoff, minBackoff), maxBackoff)
		t.upAt = time.Now().Add(t.backoff)
		t.healthMu.Lock()
		t.health.Err, t.health.RetryAt = err, t.upAt
		t.healthMu.Unlock()
		t.log.Warn("location: the store still cannot write", "backlog", t.backlogN, "error", err, "retry_in", t.backoff)
		return false
	}
	t.log.Info("location: the store writes again; the backlog is saved", "bindings", t.backlogN)
	clear(t.backlog)
	t.backlog, t.backlogN, t.retryDel, t.backoff = t.backlog[:0], 0, nil, 0
	t.down.Store(false) // refused while the backlog was full: accepted again
	t.healthMu.Lock()
	t.health.Down, t.health.Since, t.health.Err, t.health.Backlog = false, t.now(), nil, 0
	t.healthMu.Unlock()
	return true
}

// goDown marks the store down after a failed write (err): Updates and
// SetPings are refused from now until the back-off ends.
func (t *Table) goDown(err error) {
	t.backoff = min(max(2*t.backoff, minBackoff), maxBackoff)
	now := t.now()
	t.upAt = time.Now().Add(t.backoff)
	t.healthMu.Lock()
	t.health = Health{Down: true, Since: now, Err: err, RetryAt: t.upAt, Failures: t.health.Failures + 1}
	t.healthMu.Unlock()
	t.down.Store(true)
	t.log.Error("location: the store cannot write; registrations are refused (503) until it can",
		"error", err, "retry_in", t.backoff)
}

// fail answers batch's ops with an *UnavailableError after taking their
// changes back out of memory, together with every change already made in
// memory and queued (or about to be) behind them: down is set, so once
// the Updates in flight are queued none can follow. Rolled back newest
// first, the table is again what the store holds. Deletes of expired
// bindings are kept and retried with the next batch.
func (t *Table) fail(batch []op) {
	failed := batch
	for t.applying.Load() > 0 || len(t.ops) > 0 {
		select {
		case o := <-t.ops:
			failed = append(failed, o)
		default:
			time.Sleep(50 * time.Microsecond)
		}
	}
	for i := len(failed) - 1; i >= 0; i-- {
		o := &failed[i]
		switch {
		case o.undo:
			t.undo(o)
		case o.upsert == nil:
			t.retryDel = append(t.retryDel, o.del...)
		}
	}
	err := t.unavailable()
	for _, o := range failed {
		if o.done != nil {
			o.done <- err
		}
	}
}

// undo takes o's change back out of memory.
func (t *Table) undo(o *op) {
	s, k := o.shard, o.key
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.aors[k]
	if cur == o.after {
		s.set(k, o.before)
		t.recountSources(cur, s.list(k, o.before))
		return
	}
	// The sweeper removed an expired binding since: put back o's contacts
	// as they were before it, leave the others as they are.
	touched := map[string]bool{}
	for _, b := range o.upsert {
		touched[b.Contact] = true
	}
	for _, d := range o.del {
		touched[d.Contact] = true
	}
	var head *node
	tail := &head
	for _, list := range [...]*node{cur, o.before} {
		for e := list; e != nil; e = e.next {
			if touched[e.contact()] == (list == o.before) {
				n := &node{compact: e.compact, stored: e.stored}
				*tail, tail = n, &n.next
			}
		}
	}
	t.recountSources(cur, s.list(k, head))
	s.set(k, head)
}

// flatten merges ops in order so that the last operation on a key wins.
func flatten(batch []op) ([]store.Binding, []store.BindingKey) {
	type last struct {
		b   store.Binding
		del bool
	}
	m := make(map[store.BindingKey]last)
	order := make([]store.BindingKey, 0)
	for _, o := range batch {
		for _, b := range o.upsert {
			k := b.Key()
			if _, ok := m[k]; !ok {
				order = append(order, k)
			}
			m[k] = last{b: b}
		}
		for _, k := range o.del {
			if _, ok := m[k]; !ok {
				order = append(order, k)
			}
			m[k] = last{del: true}
		}
	}
	var up []store.Binding
	var del []store.BindingKey
	for _, k := range order {
		l := m[k]
		if l.del {
			del = append(del, k)
		} else {
			up = append(up, l.b)
		}
	}
	return up, del
}

// A node is one binding in an extension's list (shard.aors).
type node struct {
	compact
	next *node // the extension's next binding; nil for the last
	// stored is the expiry (Unix ns) of the binding as last written to
	// the store; 0 when unknown. See SetLazyRefresh.
	stored int64
}

// compact is a store.Binding as the table keeps it: 56 bytes plus one
// string, where a store.Binding is 256 bytes plus up to nine strings. The
// binding's Domain and Extension are those of its map key unless the flags
// say otherwise, its UserAgent one of its shard's agents unless agent is 0.
// shard.pack makes a compact and shard.binding turns it back: every string
// comes back exactly, every time as the same instant (see unixNano).
type compact struct {
	// text holds strings, each as its uvarint length and its bytes:
	// Contact; Source (or, when Contact contains it, its length and offset
	// there; see appendSource); UserAgent if agent is 0; CallID; then
	// Domain, Extension, AuthUser and Realm if their flags are set,
	// Transport if transport is 0, and last PingStatus if ping is 0.
	// PingStatus comes last so that SetPing can set a known status and
	// leave the stale one unread.
	text string
	// registered, expires and pingAt are RegisteredAt, ExpiresAt and PingAt
	// in Unix nanoseconds (see unixNano).
	registered, expires, pingAt int64
	pingRTT                     float64
	cseq                        uint32
	transport                   uint8 // index in transports; 0 = Transport is in text
	ping                        uint8 // index in pingStatuses; 0 = PingStatus is in text
	agent                       uint8 // index in the shard's agents; 0 = UserAgent is in text
	flags                       uint8
}

// Flags of a compact binding.
const (
	domainInText  uint8 = 1 << iota // Domain is not the key's domain
	extInText                       // Extension is not the key's extension
	authInText                      // AuthUser is not the key's extension
	realmInText                     // Realm is not the key's domain
	registeredUTC                   // RegisteredAt is in UTC, not time.Local
	expiresUTC                      // ExpiresAt is in UTC, not time.Local
	pingAtUTC                       // PingAt is in UTC, not time.Local
)

// The transports and ping statuses a compact binding stores as a code (the
// index); any other value is kept in its text under code 0.
var (
	transports   = [...]string{1: "", 2: "UDP", 3: "TCP", 4: "TLS", 5: "WS", 6: "WSS"}
	pingStatuses = [...]string{1: "", 2: "reachable", 3: "unreachable"}
)

// code returns the index of s in names (ignoring names[0]), or 0.
func code(names []string, s string) uint8 {
	for i := 1; i < len(names); i++ {
		if names[i] == s {
			return uint8(i)
		}
	}
	return 0
}

// pack returns b as kept under key k; s.mu must be held for writing. When
// old (the text of a binding of the same contact, or "") holds exactly the
// strings b needs, the new binding shares it instead of allocating its own:
// a refresh allocates no text. The result shares no memory with b.
func (s *shard) pack(k aorKey, b *store.Binding, old string) compact {
	c := compact{registered: unixNano(b.RegisteredAt), expires: unixNano(b.ExpiresAt), pingAt: unixNano(b.PingAt),
		pingRTT: b.PingRTT, cseq: b.CSeq, transport: code(transports[:], b.Transport), ping: code(pingStatuses[:], b.PingStatus),
		agent: s.agents.code(b.UserAgent)}
	c.setUTC(registeredUTC, b.RegisteredAt)
	c.setUTC(expiresUTC, b.ExpiresAt)
	c.setUTC(pingAtUTC, b.PingAt)
	var buf [256]byte // room for a typical binding's strings, on the stack
	text := appendString(buf[:0], b.Contact)
	text = appendSource(text, b.Contact, b.Source)
	if c.agent == 0 {
		text = appendString(text, b.UserAgent)
	}
	text = appendString(text, b.CallID)
	for _, f := range [...]struct {
		flag      uint8
		val, base string
	}{{domainInText, b.Domain, k.domain}, {extInText, b.Extension, k.ext}, {authInText, b.AuthUser, k.ext}, {realmInText, b.Realm, k.domain}} {
		if f.val != f.base {
			c.flags |= f.flag
			text = appendString(text, f.val)
		}
	}
	if c.transport == 0 {
		text = appendString(text, b.Transport)
	}
	if c.ping == 0 {
		text = appendString(text, b.PingStatus)
	}
	if string(text) == old {
		c.text = old
	} else {
		c.text = string(text)
	}
	return c
}

// binding returns c, kept under key k, as a store.Binding; s.mu must be
// held. Its strings are k's, one of s.agents or substrings of c.text;
// nothing is allocated.
func (s *shard) binding(k aorKey, c *compact) store.Binding {
	r := reader(c.text)
	b := store.Binding{Domain: k.domain, Extension: k.ext, AuthUser: k.ext, Realm: k.domain,
		CSeq: c.cseq, PingRTT: c.pingRTT, Transport: transports[c.transport], PingStatus: pingStatuses[c.ping],
		RegisteredAt: timeOf(c.registered, c.flags&registeredUTC != 0),
		ExpiresAt:    timeOf(c.expires, c.flags&expiresUTC != 0),
		PingAt:       timeOf(c.pingAt, c.flags&pingAtUTC != 0)}
	b.Contact, b.Source = r.contactSource()
	if c.agent == 0 {
		b.UserAgent = r.string()
	} else {
		b.UserAgent = s.agents.list[c.agent]
	}
	b.CallID = r.string()
	b.Node, b.Path = s.owner, s.path
	for _, f := range [...]struct {
		flag uint8
		val  *string
	}{{domainInText, &b.Domain}, {extInText, &b.Extension}, {authInText, &b.AuthUser}, {realmInText, &b.Realm}} {
		if c.flags&f.flag != 0 {
			*f.val = r.string()
		}
	}
	if c.transport == 0 {
		b.Transport = r.string()
	}
	if c.ping == 0 {
		b.PingStatus = r.string()
	}
	return b
}

// contact returns c's Contact.
func (c *compact) contact() string {
	r := reader(c.text)
	return r.string()
}

// source returns c's Source.
func (c *compact) source() string {
	r := reader(c.text)
	_, source := r.contactSource()
	return source
}

// setUTC sets flag if t's location is UTC and clears it otherwise.
func (c *compact) setUTC(flag uint8, t time.Time) {
	if t.Location() == time.UTC {
		c.flags |= flag
	} else {
		c.flags &^= flag
	}
}

// live returns the bindings of key k that expire after now (Unix
// nanoseconds), in order; s.mu must be held.
func (s *shard) live(k aorKey, now int64) []store.Binding {
	list := s.aors[k]
	n := 0
	for e := list; e != nil; e = e.next {
		if e.expires > now {
			n++
		}
	}
	out := make([]store.Binding, 0, n)
	for e := list; e != nil; e = e.next {
		if e.expires > now {
			out = append(out, s.binding(k, &e.compact))
		}
	}
	return out
}

// len returns how many bindings list holds.
func (list *node) len() int {
	n := 0
	for e := list; e != nil; e = e.next {
		n++
	}
	return n
}

// agents is a shard's table of shared user agents. It fills first come, up
// to maxAgents strings of at most maxAgentLen bytes, and keeps them for the
// table's life (at most about 2 MB for the 64 shards): a PBX's phones share
// a few user agents. Once it is full, other user agents stay in each
// binding's text, unshared.
type agents struct {
	list  []string         // by index; list[0] is "" and unused
	index map[string]uint8 // the index of each string in list
}

const (
	maxAgents   = 255 // the most indexes compact.agent holds
	maxAgentLen = 128
)

// code returns the index of ua, adding it if there is room, or 0 when ua
// is to be kept in the binding's text.
func (a *agents) code(ua string) uint8 {
	if i, ok := a.index[ua]; ok {
		return i
	}
	if len(ua) > maxAgentLen || len(a.list) > maxAgents {
		return 0
	}
	if a.list == nil {
		a.list, a.index = []string{""}, map[string]uint8{}
	}
	ua = strings.Clone(ua) // ua may point into a whole received message
	i := uint8(len(a.list))
	a.list = append(a.list, ua)
	a.index[ua] = i
	return i
}

// appendString appends s to a compact text: its uvarint length, then s.
func appendString(text []byte, s string) []byte {
	text = binary.AppendUvarint(text, uint64(len(s)))
	return append(text, s...)
}

// appendSource appends source to a compact text that holds contact: when
// contact contains source (a phone not behind a NAT), the uvarint of
// 2×len(source)+1 and the uvarint of its offset in contact; otherwise the
// uvarint of 2×len(source), then source.
func appendSource(text []byte, contact, source string) []byte {
	if i := strings.Index(contact, source); i >= 0 && source != "" {
		text = binary.AppendUvarint(text, uint64(len(source))<<1|1)
		return binary.AppendUvarint(text, uint64(i))
	}
	text = binary.AppendUvarint(text, uint64(len(source))<<1)
	return append(text, source...)
}

// reader reads a compact text from its start.
type reader string

// uvarint reads one uvarint.
func (r *reader) uvarint() int {
	v, shift := 0, 0
	for {
		b := (*r)[0]
		*r = (*r)[1:]
		v |= int(b&0x7f) << shift
		if b < 0x80 {
			return v
		}
		shift += 7
	}
}

// string reads one string (see appendString).
func (r *reader) string() string {
	n := r.uvarint()
	s := (*r)[:n]
	*r = (*r)[n:]
	return string(s)
}

// contactSource reads Contact and Source (see appendSource).
func (r *reader) contactSource() (contact, source string) {
	contact = r.string()
	v := r.uvarint()
	n := v >> 1
	if v&1 != 0 {
		i := r.uvarint()
		return contact, contact[i : i+n]
	}
	source = string((*r)[:n])
	*r = (*r)[n:]
	return contact, source
}

// noTime stands for the zero time.Time in a compact binding.
const noTime = math.MinInt64

// unixNano returns t in Unix nanoseconds, noTime for the zero time. A time
// outside what that holds (before 1678 or after 2262) is clamped to the
// nearest end, which keeps any comparison with the present as it was.
func unixNano(t time.Time) int64 {
	switch sec := t.Unix(); {
	case t.IsZero():
		return noTime
	case sec < math.MinInt64/int64(time.Second):
		return noTime + 1
	case sec >= math.MaxInt64/int64(time.Second):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// timeOf returns the time ns (see unixNano) in UTC or time.Local. A compact
// binding keeps only these two locations: a time in any other comes back as
// the same instant in time.Local, and without a monotonic clock reading.
func timeOf(ns int64, utc bool) time.Time {
	if ns == noTime {
		return time.Time{}
	}
	t := time.Unix(0, ns)
	if utc {
		t = t.UTC()
	}
	return t
}
