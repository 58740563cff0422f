// Package location is the live table of registrations (bindings): which
// contacts each extension (address of record) is reachable at, until when,
// and through which source address and transport.
//
// The table lives in memory for the hot path and is persisted to the store
// by a batching writer, so bindings survive a restart, kill -9 included:
// the writer commits each change within milliseconds of Update (a kill -9
// in that window loses only those changes; the phones re-register), and
// Flush waits for everything queued. Expired bindings are
// removed by Run's sweeper, which reports each expiry to OnExpire.
package location

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

const shardCount = 64

type aorKey struct{ domain, ext string }

type shard struct {
	mu   sync.RWMutex // guards aors
	aors map[aorKey][]store.Binding
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

	// srcMu guards srcs: how many bindings (live, or expired but not yet
	// swept) came from each source address. Taken inside a shard lock.
	srcMu sync.Mutex
	srcs  map[netip.Addr]int
}

type op struct {
	upsert []store.Binding
	del    []store.BindingKey
	done   chan error
}

// ErrStopped is returned by Update after the table stopped.
var ErrStopped = errors.New("location table stopped")

// New returns an empty table persisting to db. now is the clock (nil = time.Now).
func New(db store.Bindings, log *slog.Logger, now func() time.Time) *Table {
	if now == nil {
		now = time.Now
	}
	t := &Table{db: db, log: log, now: now, seed: maphash.MakeSeed(), ops: make(chan op, 4096),
		stopped: make(chan struct{}), srcs: map[netip.Addr]int{}}
	for i := range t.shards {
		t.shards[i].aors = make(map[aorKey][]store.Binding)
	}
	return t
}

// OnExpire sets the function told about each binding the sweeper removes.
// Call before Run.
func (t *Table) OnExpire(f func(store.Binding)) { t.onExpire = f }

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
	n := 0
	for _, b := range all {
		if !b.ExpiresAt.After(now) {
			stale = append(stale, b.Key())
			continue
		}
		k := aorKey{normDomain(b.Domain), b.Extension}
		s := t.shard(k)
		s.aors[k] = append(s.aors[k], b)
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

// Lookup returns a copy of the unexpired bindings of an extension, oldest
// registration first.
func (t *Table) Lookup(domain, ext string) []store.Binding {
	k := aorKey{normDomain(domain), ext}
	s := t.shard(k)
	now := t.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	cur := s.aors[k]
	out := make([]store.Binding, 0, len(cur))
	for _, b := range cur {
		if b.ExpiresAt.After(now) {
			out = append(out, b)
		}
	}
	return out
}

// Update atomically replaces the bindings of one extension with what fn
// returns (fn gets the current unexpired bindings and must not keep them),
// queues the difference for the background writer (which commits it within
// milliseconds; Flush waits for it), and returns the new set. It blocks only
// when the writer's queue is full. When fn returns an error nothing changes
// and that error is returned.
func (t *Table) Update(ctx context.Context, domain, ext string, fn func(cur []store.Binding) ([]store.Binding, error)) ([]store.Binding, error) {
	k := aorKey{normDomain(domain), ext}
	s := t.shard(k)
	now := t.now()
	s.mu.Lock()
	old := s.aors[k]
	live := make([]store.Binding, 0, len(old))
	for _, b := range old {
		if b.ExpiresAt.After(now) {
			live = append(live, b)
		}
	}
	next, err := fn(live)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	// Diff: upsert changed/new, delete removed (including expired ones).
	var o op
	keep := make(map[string]struct{}, len(next))
	for _, b := range next {
		keep[b.Contact] = struct{}{}
		if !containsSame(old, b) {
			o.upsert = append(o.upsert, b)
		}
	}
	for _, b := range old {
		if _, ok := keep[b.Contact]; !ok {
			o.del = append(o.del, b.Key())
		}
	}
	if len(next) == 0 {
		delete(s.aors, k)
	} else {
		s.aors[k] = next
	}
	t.recountSources(old, next)
	// Copy before unlocking: Sweep and SetPing modify the stored slice.
	out := append([]store.Binding(nil), next...)
	s.mu.Unlock()
	if len(o.upsert) == 0 && len(o.del) == 0 {
		return out, nil
	}
	return out, t.enqueue(ctx, o)
}

// enqueue hands o to the writer without waiting for the commit.
func (t *Table) enqueue(ctx context.Context, o op) error {
	select {
	case t.ops <- o:
		return nil
	case <-t.stopped:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush waits until every change queued before the call is committed.
func (t *Table) Flush(ctx context.Context) error {
	return t.persist(ctx, op{})
}

func containsSame(list []store.Binding, b store.Binding) bool {
	for i := range list {
		if list[i] == b {
			return true
		}
	}
	return false
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
	select {
	case err := <-o.done:
		return err
	case <-t.stopped:
		// Run may have written it in its final batch; wait briefly for that.
		select {
		case err := <-o.done:
			return err
		default:
			return ErrStopped
		}
	case <-ctx.Done():
		return ctx.Err()
	}
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
	s.mu.Lock()
	list := s.aors[k]
	for i := range list {
		if list[i].Contact != key.Contact {
			continue
		}
		prev = list[i].PingStatus
		persist := prev != status || now.Sub(list[i].PingAt) > time.Minute
		list[i].PingStatus = status
		list[i].PingRTT = float64(rtt.Microseconds()) / 1000
		if persist {
			list[i].PingAt = now
		}
		b, ok = list[i], true
		s.mu.Unlock()
		if persist {
			select {
			case t.ops <- op{upsert: []store.Binding{b}}:
			default:
			}
		}
		return prev, b, true
	}
	s.mu.Unlock()
	return "", b, false
}

// All returns every unexpired binding, ordered by domain, extension, then
// registration time.
func (t *Table) All() []store.Binding {
	now := t.now()
	var out []store.Binding
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for _, list := range s.aors {
			for _, b := range list {
				if b.ExpiresAt.After(now) {
					out = append(out, b)
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

// Count returns the number of unexpired bindings.
func (t *Table) Count() int {
	now := t.now()
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for _, list := range s.aors {
			for _, b := range list {
				if b.ExpiresAt.After(now) {
					n++
				}
			}
		}
		s.mu.RUnlock()
	}
	return n
}

// HasSource reports whether a binding came from ip (any port): the address
// has a live registration. Access control exempts such addresses from
// brute-force bans. It takes one short lock.
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
func (t *Table) recountSources(old, next []store.Binding) {
	if len(old) == len(next) {
		same := true
		for i := range old {
			if old[i].Source != next[i].Source {
				same = false
				break
			}
		}
		if same {
			return
		}
	}
	for i := range old {
		t.countSource(old[i].Source, -1)
	}
	for i := range next {
		t.countSource(next[i].Source, 1)
	}
}

// RemoveExtension drops every binding of an extension (it was deleted).
func (t *Table) RemoveExtension(ctx context.Context, domain, ext string) {
	_, _ = t.Update(ctx, domain, ext, func([]store.Binding) ([]store.Binding, error) { return nil, nil })
}

// Sweep removes expired bindings now and reports them; Run calls it every
// second. It returns the removed bindings.
func (t *Table) Sweep(ctx context.Context) []store.Binding {
	now := t.now()
	var gone []store.Binding
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, list := range s.aors {
			n := 0
			for _, b := range list {
				if b.ExpiresAt.After(now) {
					list[n] = b
					n++
				} else {
					gone = append(gone, b)
					t.countSource(b.Source, -1)
				}
			}
			if n == 0 {
				delete(s.aors, k)
			} else if n != len(list) {
				clear(list[n:])
				s.aors[k] = list[:n]
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

// Writer batching: a commit at most every batchWindow, or sooner at maxBatch ops.
const (
	batchWindow = 20 * time.Millisecond
	maxBatch    = 4096
)

func (t *Table) drainOps(batch []op) []op {
	for {
		select {
		case o := <-t.ops:
			batch = append(batch, o)
		default:
			return batch
		}
	}
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
	for {
		select {
		case o := <-t.ops:
			// Group commit: gather what arrives within batchWindow (or up to
			// maxBatch ops) into one transaction. Tiny transactions cost far
			// more than the rows they write (prepare, commit, WAL frames).
			batch = append(batch[:0], o)
			window := time.NewTimer(batchWindow)
		gather:
			for len(batch) < maxBatch {
				select {
				case o := <-t.ops:
					batch = append(batch, o)
				case <-window.C:
					break gather
				case <-ctx.Done():
					break gather
				}
			}
			window.Stop()
			t.write(batch)
		case <-ctx.Done():
			<-sweeperDone
			t.write(t.drainOps(batch[:0]))
			return
		}
	}
}

func (t *Table) write(batch []op) {
	if len(batch) == 0 {
		return
	}
	up, del := flatten(batch)
	err := t.db.ApplyBindings(context.Background(), up, del)
	if err != nil {
		t.log.Error("location: save bindings", "error", err)
	}
	for _, o := range batch {
		if o.done != nil {
			o.done <- err
		}
	}
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
