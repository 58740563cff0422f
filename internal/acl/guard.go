package acl

import (
	"hash/maphash"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// GuardConfig configures a [Guard]. Non-positive fields take their defaults
// (see [DefaultGuardConfig]).
type GuardConfig struct {
	// MaxFailures failed authentications from one IP within Window ban it.
	// At most MaxMaxFailures; larger values are clamped.
	MaxFailures int
	// Window is the sliding window in which failures are counted: a failure
	// at time f still counts at time t when t-f < Window.
	Window time.Duration
	// BanFor is how long an automatic ban lasts.
	BanFor time.Duration
	// MaxTracked caps the number of IPs with a failure counter. When full,
	// the counter with the oldest last failure (within its shard) is
	// dropped.
	MaxTracked int
	// MaxBans caps the number of expiring bans. When full, the oldest
	// inserted expiring ban (within its shard) is dropped. Permanent bans
	// (zero Until, only created by Add) do not count and are never dropped.
	MaxBans int
}

// Defaults of [GuardConfig].
const (
	DefaultMaxFailures = 5
	DefaultWindow      = 60 * time.Second
	DefaultBanFor      = time.Hour
	DefaultMaxTracked  = 1_000_000
	DefaultMaxBans     = 1_000_000

	// MaxMaxFailures bounds GuardConfig.MaxFailures: the window is exact,
	// so each tracked IP stores MaxFailures timestamps.
	MaxMaxFailures = 100
)

// DefaultGuardConfig returns 5 failures within 60s ban for 1h, tracking at
// most 1,000,000 IPs and 1,000,000 bans.
func DefaultGuardConfig() GuardConfig {
	return GuardConfig{
		MaxFailures: DefaultMaxFailures,
		Window:      DefaultWindow,
		BanFor:      DefaultBanFor,
		MaxTracked:  DefaultMaxTracked,
		MaxBans:     DefaultMaxBans,
	}
}

func (c GuardConfig) withDefaults() GuardConfig {
	d := DefaultGuardConfig()
	if c.MaxFailures <= 0 {
		c.MaxFailures = d.MaxFailures
	}
	c.MaxFailures = min(c.MaxFailures, MaxMaxFailures)
	if c.Window <= 0 {
		c.Window = d.Window
	}
	if c.BanFor <= 0 {
		c.BanFor = d.BanFor
	}
	if c.MaxTracked <= 0 {
		c.MaxTracked = d.MaxTracked
	}
	if c.MaxBans <= 0 {
		c.MaxBans = d.MaxBans
	}
	return c
}

// Ban is a banned IP. A zero Until means the ban never expires.
type Ban struct {
	IP       netip.Addr
	Reason   string
	Failures int
	Since    time.Time
	Until    time.Time
}

// active reports whether the ban is in force at now.
func (b *Ban) active(now time.Time) bool {
	return b.Until.IsZero() || now.Before(b.Until)
}

// Guard implements brute-force protection: after MaxFailures failed
// authentications from one IP within Window, the IP is banned for BanFor.
//
// Guard is safe for concurrent use. State is sharded by a seeded hash of
// the IP; [Guard.Banned] takes only a shard read lock, and no lock at all
// while there are no bans. Memory is bounded by MaxTracked failure counters
// (each about 100 bytes plus 8 bytes per MaxFailures) and MaxBans expiring
// bans. Expired counters and bans are removed lazily as the shard is used,
// or all at once by [Guard.Sweep].
type Guard struct {
	cfg      GuardConfig
	now      func() time.Time
	epoch    time.Time
	window   int64 // ns
	seed     uint64
	userSeed maphash.Seed
	mask     uint64
	trackCap int // per shard
	banCap   int // per shard
	shards   []guardShard
	nbans    atomic.Int64 // ban entries held, including expired ones not yet removed
	ntracked atomic.Int64 // failure counters held
	exempt   atomic.Pointer[func(netip.Addr) bool]
}

// NewGuard returns a Guard using cfg (non-positive fields defaulted) and the
// clock now (nil means time.Now).
func NewGuard(cfg GuardConfig, now func() time.Time) *Guard {
	cfg = cfg.withDefaults()
	if now == nil {
		now = time.Now
	}
	n := shardCount(min(cfg.MaxTracked, cfg.MaxBans))
	g := &Guard{
		cfg:      cfg,
		now:      now,
		epoch:    now(),
		window:   int64(cfg.Window),
		seed:     newSeed(),
		userSeed: maphash.MakeSeed(),
		mask:     uint64(n - 1),
		trackCap: min(max(1, cfg.MaxTracked/n), math.MaxInt32-1),
		banCap:   max(1, cfg.MaxBans/n),
		shards:   make([]guardShard, n),
	}
	for i := range g.shards {
		g.shards[i].init()
	}
	return g
}

// Config returns the effective configuration.
func (g *Guard) Config() GuardConfig { return g.cfg }

// SetExempt sets the function reporting IPs that must never be banned (for
// example trunks or the admin network); nil means none. It is meant to be
// called at construction but is safe at any time; existing bans and failure
// counters of IPs that are now exempt are removed. f is called with
// normalised addresses, never under a Guard lock, and must be safe for
// concurrent use.
func (g *Guard) SetExempt(f func(netip.Addr) bool) {
	if f == nil {
		g.exempt.Store(nil)
		return
	}
	g.exempt.Store(&f)
	var ips []netip.Addr
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.RLock()
		for ip := range s.bans {
			ips = append(ips, ip)
		}
		for ip := range s.fails {
			ips = append(ips, ip)
		}
		s.mu.RUnlock()
	}
	for _, ip := range ips {
		if f(ip) {
			g.Remove(ip)
		}
	}
}

func (g *Guard) isExempt(ip netip.Addr) bool {
	f := g.exempt.Load()
	return f != nil && (*f)(ip)
}

func (g *Guard) shard(ip netip.Addr) *guardShard {
	return &g.shards[shardOf(ip, g.seed, g.mask)]
}

// Fail records one failed authentication from ip; reason describes it (for
// example "wrong password for 2002@example.com"). When this failure brings
// the failures within Window to MaxFailures, ip is banned from now for
// BanFor, its counter is cleared and the new Ban is returned with ok=true.
// Otherwise ok is false. Failures from exempt, invalid or already banned IPs
// are ignored. Fail is FailUser with no user.
func (g *Guard) Fail(ip netip.Addr, reason string) (b Ban, ok bool) {
	return g.FailUser(ip, "", reason)
}

// FailUser is Fail for a failure about user (for example "2002@example.com",
// the account whose password was tried). The counter remembers whether all
// its failures were about one user, so that [Guard.SucceedUser] clears it
// only then: an address that knows one password cannot wipe out the record
// of its guesses at others by logging in between them.
func (g *Guard) FailUser(ip netip.Addr, user, reason string) (b Ban, ok bool) {
	ip = normalize(ip)
	if !ip.IsValid() || g.isExempt(ip) {
		return Ban{}, false
	}
	now := g.now()
	t := int64(now.Sub(g.epoch))
	s := g.shard(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, found := s.bans[ip]; found {
		if e.active(now) {
			return Ban{}, false
		}
		s.deleteBan(g, ip)
	}
	s.pruneFails(g, t)
	i, found := s.fails[ip]
	if found {
		s.lruRemove(i)
	} else {
		if len(s.fails) >= g.trackCap {
			s.release(g, s.head) // drop the oldest
		}
		i = s.alloc(g, ip)
	}
	s.lruPushBack(i)

	k := int32(g.cfg.MaxFailures)
	e := &s.ents[i]
	ring := s.times[int(i)*int(k) : int(i+1)*int(k)]
	for e.count > 0 && ring[e.start] <= t-g.window {
		e.start = (e.start + 1) % k
		e.count--
	}
	ring[(e.start+e.count)%k] = t
	subject := g.subject(user)
	switch {
	case e.count == 0:
		e.subject, e.mixed = subject, false
	case e.subject != subject:
		e.mixed = true
	}
	e.count++
	e.last = t
	if e.count < k {
		return Ban{}, false
	}
	b = Ban{
		IP:       ip,
		Reason:   reason,
		Failures: int(e.count),
		Since:    now,
		Until:    now.Add(g.cfg.BanFor),
	}
	s.release(g, i)
	s.insertBan(g, b, now)
	return b, true
}

// Succeed records a successful authentication from ip: its failure counter
// is cleared, whoever the failures were about. It does not lift a ban.
func (g *Guard) Succeed(ip netip.Addr) {
	g.succeed(ip, "", true)
}

// SucceedUser records a successful authentication of user from ip: ip's
// failure counter is cleared only when every failure it holds was about
// user (a phone that failed, then got its password right). Failures about
// other users keep counting. It does not lift a ban.
func (g *Guard) SucceedUser(ip netip.Addr, user string) {
	g.succeed(ip, user, false)
}

func (g *Guard) succeed(ip netip.Addr, user string, all bool) {
	if g.ntracked.Load() == 0 {
		return
	}
	ip = normalize(ip)
	subject := g.subject(user)
	s := g.shard(ip)
	s.mu.Lock()
	if i, ok := s.fails[ip]; ok {
		if e := &s.ents[i]; all || !e.mixed && e.subject == subject {
			s.release(g, i)
		}
	}
	s.mu.Unlock()
}

// subject is a seeded hash of user, what a failure counter remembers of it.
func (g *Guard) subject(user string) uint64 {
	return maphash.String(g.userSeed, user)
}

// Banned reports whether ip is banned now. Expired bans are removed lazily.
// It is called for every packet: it does not allocate, takes no lock while
// the Guard holds no bans, and otherwise one shard read lock.
func (g *Guard) Banned(ip netip.Addr) bool {
	if g.nbans.Load() == 0 {
		return false
	}
	ip = normalize(ip)
	s := g.shard(ip)
	s.mu.RLock()
	e, ok := s.bans[ip]
	s.mu.RUnlock()
	if !ok {
		return false
	}
	if e.Until.IsZero() {
		return true
	}
	now := g.now()
	if now.Before(e.Until) {
		return true
	}
	s.mu.Lock()
	if cur, ok := s.bans[ip]; ok && cur.seq == e.seq {
		s.deleteBan(g, ip)
	}
	s.mu.Unlock()
	return false
}

// Add restores or creates a ban, for example one loaded from the database
// after a restart or set by an administrator. b.IP is normalised; a zero
// Since becomes now; a zero Until makes the ban permanent. A ban that has
// already expired, or whose IP is invalid or exempt, is ignored. An
// existing ban of the same IP is replaced and its failure counter cleared.
func (g *Guard) Add(b Ban) {
	b.IP = normalize(b.IP)
	if !b.IP.IsValid() || g.isExempt(b.IP) {
		return
	}
	now := g.now()
	if b.Since.IsZero() {
		b.Since = now
	}
	if !b.active(now) {
		return
	}
	s := g.shard(b.IP)
	s.mu.Lock()
	if i, ok := s.fails[b.IP]; ok {
		s.release(g, i)
	}
	s.insertBan(g, b, now)
	s.mu.Unlock()
}

// Remove lifts the ban of ip and clears its failure counter. It reports
// whether a ban was in force.
func (g *Guard) Remove(ip netip.Addr) bool {
	ip = normalize(ip)
	now := g.now()
	s := g.shard(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.fails[ip]; ok {
		s.release(g, i)
	}
	e, ok := s.bans[ip]
	if !ok {
		return false
	}
	s.deleteBan(g, ip)
	return e.active(now)
}

// List returns the bans in force now, sorted by Since (then by IP).
func (g *Guard) List() []Ban {
	now := g.now()
	var out []Ban
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.RLock()
		for _, e := range s.bans {
			if e.active(now) {
				out = append(out, e.Ban)
			}
		}
		s.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, b Ban) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return a.IP.Compare(b.IP)
	})
	return out
}

// Tracked returns the number of IPs that currently have a failure counter
// (including ones that have expired but were not yet removed).
func (g *Guard) Tracked() int { return int(g.ntracked.Load()) }

// Sweep removes all expired bans and failure counters now. Calling it is
// optional (everything also expires lazily); an owner may call it
// periodically, for example every minute, to return memory sooner.
func (g *Guard) Sweep() {
	now := g.now()
	t := int64(now.Sub(g.epoch))
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.Lock()
		for ip, e := range s.bans {
			if !e.active(now) {
				s.deleteBan(g, ip)
			}
		}
		s.compactQueue()
		s.pruneFails(g, t)
		s.mu.Unlock()
	}
}

// guardShard holds the bans and failure counters of the IPs hashed to it.
//
// Failure counters live in a slab (ents, with MaxFailures timestamps each in
// times) linked into a list ordered by last failure, oldest at head, so that
// expiry and eviction are O(1) and steady-state Fail does not allocate.
type guardShard struct {
	mu sync.RWMutex

	bans     map[netip.Addr]banEntry
	banQ     []banRef // expiring bans in insertion order; may hold stale refs
	banHead  int      // first unconsumed element of banQ
	expiring int      // live bans with a non-zero Until
	seq      uint64

	fails      map[netip.Addr]int32 // index into ents
	ents       []failEnt
	times      []int64 // len(ents)*MaxFailures ring buffers, ns since epoch
	free       int32   // free list through failEnt.next, -1 = empty
	head, tail int32   // LRU by last failure, -1 = empty

	_ [64]byte // keep shards on separate cache lines
}

type banEntry struct {
	Ban
	seq uint64
}

type banRef struct {
	ip  netip.Addr
	seq uint64
}

type failEnt struct {
	ip           netip.Addr
	prev, next   int32
	start, count int32  // ring buffer window in times
	last         int64  // last failure, ns since epoch
	subject      uint64 // hash of the user the failures were about
	mixed        bool   // the failures were about more than one user
}

func (s *guardShard) init() {
	s.bans = make(map[netip.Addr]banEntry)
	s.fails = make(map[netip.Addr]int32)
	s.free, s.head, s.tail = -1, -1, -1
}

func (s *guardShard) lruRemove(i int32) {
	e := &s.ents[i]
	if e.prev >= 0 {
		s.ents[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.ents[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (s *guardShard) lruPushBack(i int32) {
	e := &s.ents[i]
	e.prev, e.next = s.tail, -1
	if s.tail >= 0 {
		s.ents[s.tail].next = i
	} else {
		s.head = i
	}
	s.tail = i
}

// alloc returns a fresh failure counter for ip, not yet linked in the LRU.
func (s *guardShard) alloc(g *Guard, ip netip.Addr) int32 {
	var i int32
	if s.free >= 0 {
		i = s.free
		s.free = s.ents[i].next
	} else {
		i = int32(len(s.ents))
		s.ents = append(s.ents, failEnt{})
		k := g.cfg.MaxFailures
		s.times = slices.Grow(s.times, k)[:len(s.times)+k]
	}
	s.ents[i] = failEnt{ip: ip, prev: -1, next: -1}
	s.fails[ip] = i
	g.ntracked.Add(1)
	return i
}

// release drops failure counter i and puts its slot on the free list.
func (s *guardShard) release(g *Guard, i int32) {
	if i < 0 {
		return
	}
	delete(s.fails, s.ents[i].ip)
	s.lruRemove(i)
	s.ents[i] = failEnt{next: s.free}
	s.free = i
	g.ntracked.Add(-1)
	if len(s.fails) == 0 && cap(s.ents) > 1024 {
		// A flood has passed: give the memory back.
		s.fails = make(map[netip.Addr]int32)
		s.ents, s.times = nil, nil
		s.free, s.head, s.tail = -1, -1, -1
	}
}

// pruneFails drops counters whose last failure is at least Window old.
func (s *guardShard) pruneFails(g *Guard, t int64) {
	for s.head >= 0 && s.ents[s.head].last <= t-g.window {
		s.release(g, s.head)
	}
}

func (s *guardShard) deleteBan(g *Guard, ip netip.Addr) {
	e, ok := s.bans[ip]
	if !ok {
		return
	}
	delete(s.bans, ip)
	g.nbans.Add(-1)
	if !e.Until.IsZero() {
		s.expiring--
	}
	if len(s.bans) == 0 {
		s.banQ, s.banHead = s.banQ[:0], 0
	}
}

// insertBan stores b (replacing any ban of the same IP), enforcing MaxBans.
func (s *guardShard) insertBan(g *Guard, b Ban, now time.Time) {
	s.deleteBan(g, b.IP)
	s.seq++
	s.bans[b.IP] = banEntry{Ban: b, seq: s.seq}
	g.nbans.Add(1)
	if b.Until.IsZero() {
		return
	}
	// Consume stale and expired refs at the front, then evict the oldest
	// live ones while over capacity.
front:
	for ; s.banHead < len(s.banQ); s.banHead++ {
		ref := s.banQ[s.banHead]
		e, ok := s.bans[ref.ip]
		switch {
		case !ok || e.seq != ref.seq:
			// stale: lifted or replaced
		case !e.active(now) || s.expiring >= g.banCap:
			s.deleteBan(g, ref.ip)
		default:
			break front
		}
	}
	s.expiring++
	s.banQ = append(s.banQ, banRef{ip: b.IP, seq: s.seq})
	if s.banHead > 64 && s.banHead > len(s.banQ)/2 || len(s.banQ)-s.banHead > 2*s.expiring+64 {
		s.compactQueue()
	}
}

// compactQueue drops consumed and stale refs from banQ.
func (s *guardShard) compactQueue() {
	q := s.banQ[:0]
	for _, ref := range s.banQ[s.banHead:] {
		if e, ok := s.bans[ref.ip]; ok && e.seq == ref.seq {
			q = append(q, ref)
		}
	}
	clear(s.banQ[len(q):])
	s.banQ, s.banHead = q, 0
	if cap(s.banQ) > 1024 && len(s.banQ) < cap(s.banQ)/4 {
		s.banQ = slices.Clone(s.banQ)
	}
}
