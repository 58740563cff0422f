package location

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// remoteView is what a node knows of the bindings other nodes own and of
// their leases, as last read from the shared store by RunRemote.
type remoteView struct {
	mu sync.RWMutex // guards aors, nodes and alive
	// aors holds the other nodes' bindings by extension.
	aors map[aorKey][]store.Binding
	// nodes are the lease rows last read; alive the names whose lease is
	// current.
	nodes []store.Node
	alive map[string]bool
	// paths are the nodes' current Paths, from their lease rows' addresses:
	// a node restarted on another address is reached there even before
	// it rewrites its bindings.
	paths map[string]string
}

// lookup appends to own the bindings of k that another node owns, whose
// node's lease is current, which are unexpired at now and whose contact
// own does not hold.
func (r *remoteView) lookup(k aorKey, own []store.Binding, now time.Time) []store.Binding {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, b := range r.aors[k] {
		if !b.ExpiresAt.After(now) || !r.alive[b.Node] ||
			slices.ContainsFunc(own, func(o store.Binding) bool { return o.Contact == b.Contact }) {
			continue
		}
		if p := r.paths[b.Node]; p != "" {
			b.Path = p
		}
		own = append(own, b)
	}
	return own
}

// RemoteConfig configures RunRemote.
type RemoteConfig struct {
	// Every is how often the store is read (default 500 ms): a binding
	// another node writes is seen here within about that long.
	Every time.Duration
	// Resync is how often every other node's binding is read again, which
	// also drops those deleted meanwhile (default 10 s).
	Resync time.Duration
	// Lease is how long a node's lease lasts after its last renewal: the
	// bindings of a node whose lease is older are skipped (default 15 s).
	Lease time.Duration
	// Skew is how far the nodes' clocks may disagree (default 5 s).
	Skew time.Duration
}

// RunRemote keeps the table's view of the other nodes' bindings and leases
// (used by Lookup) up to date from src until ctx ends: every cfg.Every the
// bindings written since the last read, every cfg.Resync all of them. A
// failed read keeps the last view (the leases then age: a database that
// stays unreachable longer than the lease makes the other nodes' bindings
// skipped). Call SetNode first.
func (t *Table) RunRemote(ctx context.Context, src store.Nodes, cfg RemoteConfig) {
	if cfg.Every <= 0 {
		cfg.Every = 500 * time.Millisecond
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 10 * time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 15 * time.Second
	}
	if cfg.Skew <= 0 {
		cfg.Skew = 5 * time.Second
	}
	tick := time.NewTicker(cfg.Every)
	defer tick.Stop()
	var last, lastFull time.Time
	for {
		start := time.Now()
		full := last.IsZero() || start.Sub(lastFull) >= cfg.Resync
		since := time.Time{}
		if !full {
			since = last.Add(-cfg.Skew)
		}
		if err := t.refreshRemote(ctx, src, full, since, cfg.Lease); err != nil {
			if ctx.Err() != nil {
				return
			}
			t.log.Debug("location: read other nodes' bindings", "error", err)
		} else {
			last = start
			if full {
				lastFull = start
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// refreshRemote reads the leases and the other nodes' bindings (all when
// full, else those written since) into the view.
func (t *Table) refreshRemote(ctx context.Context, src store.Nodes, full bool, since time.Time, lease time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	nodes, err := src.ListNodes(ctx)
	if err != nil {
		return err
	}
	now := t.now()
	bs, err := src.OtherBindings(ctx, t.self, since, now)
	if err != nil {
		return err
	}
	alive := make(map[string]bool, len(nodes))
	paths := make(map[string]string, len(nodes))
	for _, n := range nodes {
		alive[n.Name] = n.Name != t.self && now.Sub(n.RenewedAt) < lease
		if n.Address != "" {
			paths[n.Name] = "<sip:" + n.Address + ";lr>"
		}
	}
	r := &t.remote
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nodes, r.alive, r.paths = nodes, alive, paths
	if full || r.aors == nil { // a resync also forgets what expired
		r.aors = make(map[aorKey][]store.Binding)
	}
	for _, b := range bs {
		k := aorKey{normDomain(b.Domain), b.Extension}
		list := r.aors[k]
		if i := slices.IndexFunc(list, func(o store.Binding) bool { return o.Contact == b.Contact }); i >= 0 {
			list[i] = b
		} else {
			list = append(list, b)
		}
		r.aors[k] = list
	}
	return nil
}
