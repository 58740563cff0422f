// Package directory is the server's in-memory view of domains and
// extensions, read on every request without touching the database. It is
// loaded at start and kept current by Watch, which polls the store's change
// feed, so `switchboard ext ...` edits reach a running server within a
// fraction of a second, without restart.
package directory

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Source is what the cache reads from.
type Source interface {
	store.Directory
	store.Changes
	PruneChanges(ctx context.Context, seq int64) error
}

// Cache holds the directory. Safe for concurrent use.
type Cache struct {
	src Source
	log *slog.Logger

	mu      sync.RWMutex                 // guards domains, exts
	domains map[string]store.Domain      // lower-case name -> domain
	exts    map[string]map[string]*Entry // lower-case domain -> number -> entry (read-only)

	local         map[string]struct{} // guarded by mu
	defaultDomain string              // guarded by mu

	lastSeq int64         // owned by Load/Poll's caller (Watch's goroutine)
	subs    []func(Event) // set by Subscribe before Watch starts; read by Poll
}

// New returns an empty cache reading from src.
func New(src Source, log *slog.Logger) *Cache {
	return &Cache{src: src, log: log, domains: map[string]store.Domain{},
		exts: map[string]map[string]*Entry{}}
}

// Subscribe registers fn to receive every Event the cache applies from the
// change feed, in feed order, on the goroutine that runs Poll (Watch's),
// after the cache itself shows the change. fn must return soon: the next
// changes wait for it. Call before Watch starts.
func (c *Cache) Subscribe(fn func(Event)) {
	c.subs = append(c.subs, fn)
}

// emit delivers e to every subscriber.
func (c *Cache) emit(e Event) {
	for _, fn := range c.subs {
		fn(e)
	}
}

// Load reads the whole directory. The extensions are kept as compact
// entries (see Entry) in one slice; the rows read from the store are not
// kept.
func (c *Cache) Load(ctx context.Context) error {
	seq, err := c.src.LastChange(ctx)
	if err != nil {
		return err
	}
	doms, err := c.src.Domains(ctx)
	if err != nil {
		return err
	}
	exts, err := c.src.Extensions(ctx, "")
	if err != nil {
		return err
	}
	entries, err := newEntries(exts)
	if err != nil {
		return err
	}
	em := make(map[string]map[string]*Entry, len(doms))
	for i := 0; i < len(entries); {
		// The entries of a domain are next to each other and share txt.
		txt, n := entries[i].txt, 0
		for i+n < len(entries) && entries[i+n].txt == txt {
			n++
		}
		k := lower(txt.domain)
		m := em[k]
		if m == nil {
			m = make(map[string]*Entry, n)
			em[k] = m
		}
		for j := i; j < i+n; j++ {
			m[entries[j].Number()] = &entries[j]
		}
		i += n
	}
	dm := make(map[string]store.Domain, len(doms))
	for _, d := range doms {
		k := strings.ToLower(d.Name)
		dm[k] = d
		if em[k] == nil {
			em[k] = map[string]*Entry{}
		}
	}
	c.mu.Lock()
	c.domains, c.exts = dm, em
	c.lastSeq = seq
	c.mu.Unlock()
	return nil
}

// Domain returns a domain by name (case-insensitive).
func (c *Cache) Domain(name string) (store.Domain, bool) {
	c.mu.RLock()
	d, ok := c.domains[lower(name)]
	c.mu.RUnlock()
	return d, ok
}

// Realm returns the digest realm of a domain (case-insensitive name): the
// realm its phones are challenged with and their password hashes are made
// with. A domain the cache does not know is its own realm.
func (c *Cache) Realm(domain string) string {
	c.mu.RLock()
	d, ok := c.domains[lower(domain)]
	c.mu.RUnlock()
	if ok && d.Realm != "" {
		return d.Realm
	}
	return domain
}

// Domains returns every domain.
func (c *Cache) Domains() []store.Domain {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]store.Domain, 0, len(c.domains))
	for _, d := range c.domains {
		out = append(out, d)
	}
	return out
}

// Lookup returns an extension by domain (case-insensitive) and number. The
// entry is read-only and stays as it is: a later change to the extension
// publishes a new entry.
func (c *Cache) Lookup(domain, number string) (*Entry, bool) {
	c.mu.RLock()
	e, ok := c.exts[lower(domain)][number]
	c.mu.RUnlock()
	return e, ok
}

// extKeys returns every loaded extension's domain and number.
func (c *Cache) extKeys() map[ExtensionRemoved]struct{} {
	c.mu.RLock()
	defer c.mu.RUnlock()
	keys := make(map[ExtensionRemoved]struct{}, len(c.exts))
	for _, m := range c.exts {
		for _, e := range m {
			keys[ExtensionRemoved{Domain: e.Domain(), Number: e.Number()}] = struct{}{}
		}
	}
	return keys
}

// Count returns how many extensions are loaded.
func (c *Cache) Count() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := 0
	for _, m := range c.exts {
		n += len(m)
	}
	return n
}

// lower avoids allocating when s is already lower-case (the usual case).
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

const fullReloadAbove = 1000

// Poll applies the change feed once and delivers an Event for each change
// to the subscribers. It returns how many changes it applied.
//
// An event equal to the one delivered just before it in the same poll is
// not delivered again (an ACL written with 50 entries is one ACLChanged):
// subscribers read the current state, which already holds both changes.
// More than fullReloadAbove changes reload the whole directory instead;
// see Reloaded for what is delivered then.
func (c *Cache) Poll(ctx context.Context) (int, error) {
	changes, err := c.src.ChangesSince(ctx, c.lastSeq, fullReloadAbove+1)
	if err != nil || len(changes) == 0 {
		return 0, err
	}
	if len(changes) > fullReloadAbove {
		before := c.extKeys()
		if err := c.Load(ctx); err != nil {
			return 0, err
		}
		// Renames first: their bindings move before the old names'
		// extensions are reported removed.
		for _, ch := range changes {
			switch ch.Kind {
			case "domain-renamed":
				if old, new, ok := strings.Cut(ch.Key, " "); ok {
					c.emit(DomainRenamed{Old: old, New: new})
				}
			case "default-domain":
				c.mu.Lock()
				c.defaultDomain = ch.Key
				c.mu.Unlock()
				c.emit(DefaultDomainChanged{Name: ch.Key})
			}
		}
		after := c.extKeys()
		for k := range before {
			if _, ok := after[k]; !ok {
				c.emit(k)
			}
		}
		c.emit(Reloaded{})
		return len(changes), nil
	}
	var last Event
	for _, ch := range changes {
		if e := c.apply(ctx, ch); e != nil && e != last {
			c.emit(e)
			last = e
		}
		c.lastSeq = ch.Seq
	}
	return len(changes), nil
}

// apply applies one change to the cache and returns its event (nil: none,
// e.g. a kind this version does not know, or a change it could not read).
func (c *Cache) apply(ctx context.Context, ch store.Change) Event {
	switch ch.Kind {
	case "ext":
		return c.reloadExt(ctx, ch.Key)
	case "domain":
		c.reloadDomain(ctx, ch.Key)
		return DomainChanged{Name: ch.Key}
	case "domain-renamed":
		old, new, ok := strings.Cut(ch.Key, " ")
		if !ok {
			c.log.Warn("directory: malformed domain rename in the change feed", "key", ch.Key)
			return nil
		}
		c.renameDomain(ctx, old, new)
		return DomainRenamed{Old: old, New: new}
	case "default-domain":
		c.mu.Lock()
		c.defaultDomain = ch.Key
		c.mu.Unlock()
		return DefaultDomainChanged{Name: ch.Key}
	case "acl":
		return ACLChanged{Name: ch.Key}
	case "profile":
		return ProfileChanged{Name: ch.Key}
	case "ban":
		ip, err := netip.ParseAddr(ch.Key)
		if err != nil {
			c.log.Warn("directory: malformed ban address in the change feed", "key", ch.Key)
			return nil
		}
		return BanChanged{IP: ip}
	}
	c.log.Debug("directory: change of an unknown kind ignored", "kind", ch.Kind, "key", ch.Key)
	return nil
}

// reloadExt reads one extension again and returns ExtensionChanged, or
// ExtensionRemoved when it no longer exists (nil when it cannot be read).
func (c *Cache) reloadExt(ctx context.Context, key string) Event {
	domain, number, ok := strings.Cut(key, "/")
	if !ok {
		return nil
	}
	x, err := c.src.Extension(ctx, domain, number)
	dk := lower(domain)
	if errors.Is(err, store.ErrNotFound) {
		c.mu.Lock()
		delete(c.exts[dk], number)
		c.mu.Unlock()
		return ExtensionRemoved{Domain: domain, Number: number}
	}
	var es []Entry
	if err == nil {
		es, err = newEntries([]store.Extension{x})
	}
	if err != nil {
		c.log.Warn("directory: reload extension", "extension", key, "error", err)
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exts[dk] == nil {
		c.exts[dk] = map[string]*Entry{}
	}
	c.exts[dk][number] = &es[0]
	return ExtensionChanged{Domain: domain, Number: number}
}

// renameDomain replaces domain old by new with its extensions, read again
// (their entries carry the domain's name).
func (c *Cache) renameDomain(ctx context.Context, old, new string) {
	exts, err := c.src.Extensions(ctx, new)
	var es []Entry
	if err == nil {
		es, err = newEntries(exts)
	}
	if err != nil {
		c.log.Warn("directory: reload renamed domain", "domain", new, "error", err)
		return
	}
	c.reloadDomain(ctx, new)
	m := make(map[string]*Entry, len(es))
	for i := range es {
		m[es[i].Number()] = &es[i]
	}
	c.mu.Lock()
	delete(c.domains, lower(old))
	delete(c.exts, lower(old))
	c.exts[lower(new)] = m
	if strings.EqualFold(c.defaultDomain, old) {
		c.defaultDomain = new
	}
	c.mu.Unlock()
}

func (c *Cache) reloadDomain(ctx context.Context, name string) {
	d, err := c.src.Domain(ctx, name)
	k := lower(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if errors.Is(err, store.ErrNotFound) {
		delete(c.domains, k)
		delete(c.exts, k)
		return
	}
	if err != nil {
		c.log.Warn("directory: reload domain", "domain", name, "error", err)
		return
	}
	c.domains[k] = d
	if c.exts[k] == nil {
		c.exts[k] = map[string]*Entry{}
	}
}

// Watch polls the change feed every interval, and at once whenever kick
// delivers, until ctx ends. It calls applied with the newest sequence
// number applied, once at the start (what Load read) and after each poll
// that applied changes (the CLI waits for that to report an edit as live).
// It prunes applied entries every minute.
func (c *Cache) Watch(ctx context.Context, interval time.Duration, kick <-chan struct{}, applied func(seq int64)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	lastPrune := time.Now()
	if applied != nil {
		applied(c.lastSeq) // what Load read
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
		n, err := c.Poll(ctx)
		if err != nil && ctx.Err() == nil {
			c.log.Warn("directory: poll changes", "error", err)
		}
		if n > 0 && applied != nil {
			applied(c.lastSeq)
		}
		if time.Since(lastPrune) > time.Minute {
			lastPrune = time.Now()
			if err := c.src.PruneChanges(ctx, c.lastSeq); err != nil && ctx.Err() == nil {
				c.log.Warn("directory: prune changes", "error", err)
			}
		}
	}
}

// Local tells the cache which host names and addresses are the server's own
// and which domain they mean: a request addressed to one of them belongs to
// the default domain (as in a FusionPBX install addressed by IP).
type Local struct {
	DefaultDomain string
	Hosts         []string // own IPs and host names, any case
}

// SetLocal sets the server's own names. Call before serving.
func (c *Cache) SetLocal(l Local) {
	m := make(map[string]struct{}, len(l.Hosts))
	for _, h := range l.Hosts {
		m[strings.ToLower(strings.Trim(h, "[]"))] = struct{}{}
	}
	c.mu.Lock()
	c.local = m
	c.defaultDomain = l.DefaultDomain
	c.mu.Unlock()
}

// DefaultDomain returns the default domain's name.
func (c *Cache) DefaultDomain() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.defaultDomain
}

// Resolve maps the host part of a request's To or Request-URI to the domain
// it belongs to. served is false for a domain we do not serve (unknown or
// disabled); domain is then host itself, so callers can name it.
func (c *Cache) Resolve(host string) (domain string, served bool) {
	h := lower(strings.Trim(host, "[]"))
	c.mu.RLock()
	defer c.mu.RUnlock()
	if d, ok := c.domains[h]; ok {
		return d.Name, d.Enabled
	}
	if _, ok := c.local[h]; ok {
		if d, ok := c.domains[lower(c.defaultDomain)]; ok {
			return d.Name, d.Enabled
		}
	}
	return host, false
}
