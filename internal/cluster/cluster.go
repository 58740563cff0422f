// Package cluster is what several switchboard nodes sharing one database
// need beyond the store: each node's lease (Lease, renewed in the nodes
// table while the node runs) and the proof that a request comes from
// another node (Signer: an HMAC, with a secret kept in the shared
// database, over the forwarded INVITE; an outsider who cannot read the
// database cannot pose as a node).
//
// A node forwards a call for a phone registered on another node to that
// node's internal address with a Header; the owning node, after Verify,
// routes it to its own binding of that contact without asking the caller
// for credentials (the forwarding node authenticated the caller).
package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Header is the SIP header of an INVITE one node forwards to another:
// "node=NAME;ts=UNIX;domain=DOMAIN;mac=HEX".
const Header = "X-Switchboard-Node"

// MetaKey is the setting (store.Meta) holding the nodes' shared secret.
const MetaKey = "node_secret"

// MaxAge is how old (or how far in the future, for clocks apart) a
// signature may be.
const MaxAge = 30 * time.Second

// ErrBadSignature: the header is missing, malformed, too old or not signed
// with the nodes' secret.
var ErrBadSignature = errors.New("cluster: not signed by a node of this cluster")

// Signer signs and checks the Header of forwarded INVITEs. Create with
// NewSigner.
type Signer struct {
	self string
	meta store.Meta
	now  func() time.Time

	mu       sync.Mutex // guards key and reloaded
	key      []byte
	reloaded time.Time
}

// NewSigner loads the nodes' shared secret from meta, creating it when
// there is none yet, for the node named self.
func NewSigner(ctx context.Context, self string, meta store.Meta) (*Signer, error) {
	s := &Signer{self: self, meta: meta, now: time.Now}
	v, ok, err := meta.Meta(ctx, MetaKey)
	if err != nil {
		return nil, fmt.Errorf("cluster: read node secret: %w", err)
	}
	if !ok || len(v) < 32 {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("cluster: make node secret: %w", err)
		}
		if err := meta.SetMeta(ctx, MetaKey, hex.EncodeToString(b)); err != nil {
			return nil, fmt.Errorf("cluster: store node secret: %w", err)
		}
		if v, _, err = meta.Meta(ctx, MetaKey); err != nil {
			return nil, fmt.Errorf("cluster: read node secret: %w", err)
		}
	}
	s.key, s.reloaded = []byte(v), s.now()
	return s, nil
}

// Sign returns the Header value for an INVITE with this Call-ID,
// Request-URI and From header value (the caller, as the forwarding node
// authenticated it), routed in domain.
func (s *Signer) Sign(callID, ruri, from, domain string) string {
	ts := strconv.FormatInt(s.now().Unix(), 10)
	s.mu.Lock()
	key := s.key
	s.mu.Unlock()
	return "node=" + s.self + ";ts=" + ts + ";domain=" + domain + ";mac=" + mac(key, s.self, ts, domain, callID, ruri, from)
}

// Verify checks a Header value of an INVITE with this Call-ID,
// Request-URI and From header value and returns the signing node and the
// call's domain. It
// fails with ErrBadSignature. When the signature does not match, the
// secret is read again from the database (at most once a second: a node
// that started at the same moment may have written another).
func (s *Signer) Verify(ctx context.Context, value, callID, ruri, from string) (node, domain string, err error) {
	f := map[string]string{}
	for _, part := range strings.Split(value, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return "", "", ErrBadSignature
		}
		f[k] = v
	}
	node, domain, ts, got := f["node"], f["domain"], f["ts"], f["mac"]
	sec, err := strconv.ParseInt(ts, 10, 64)
	if node == "" || domain == "" || got == "" || err != nil {
		return "", "", ErrBadSignature
	}
	if d := s.now().Sub(time.Unix(sec, 0)); d > MaxAge || d < -MaxAge {
		return "", "", fmt.Errorf("%w: signed %s ago", ErrBadSignature, d.Round(time.Second))
	}
	for try := 0; try < 2; try++ {
		s.mu.Lock()
		key := s.key
		s.mu.Unlock()
		if hmac.Equal([]byte(got), []byte(mac(key, node, ts, domain, callID, ruri, from))) {
			return node, domain, nil
		}
		if try == 0 && !s.reload(ctx) {
			break
		}
	}
	return "", "", ErrBadSignature
}

// reload reads the secret again unless it did within the last second; it
// reports whether the key changed.
func (s *Signer) reload(ctx context.Context) bool {
	s.mu.Lock()
	if s.now().Sub(s.reloaded) < time.Second {
		s.mu.Unlock()
		return false
	}
	s.reloaded = s.now()
	s.mu.Unlock()
	v, ok, err := s.meta.Meta(ctx, MetaKey)
	if err != nil || !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if string(s.key) == v {
		return false
	}
	s.key = []byte(v)
	return true
}

func mac(key []byte, parts ...string) string {
	h := hmac.New(sha256.New, key)
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Lease renews a node's row in the nodes table. Create with NewLease and
// run Run.
type Lease struct {
	db    store.Nodes
	node  store.Node
	every time.Duration
	log   *slog.Logger

	mu      sync.Mutex // guards lastOK and lastErr
	lastOK  time.Time
	lastErr error
}

// NewLease returns the lease of node n (StartedAt set by the caller),
// renewed every lease/3.
func NewLease(db store.Nodes, n store.Node, lease time.Duration, log *slog.Logger) *Lease {
	return &Lease{db: db, node: n, every: lease / 3, log: log}
}

// Renew writes the lease row now.
func (l *Lease) Renew(ctx context.Context) error {
	n := l.node
	n.RenewedAt = time.Now()
	ctx, cancel := context.WithTimeout(ctx, l.every)
	defer cancel()
	err := l.db.RenewNode(ctx, n)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.lastOK = n.RenewedAt
	}
	l.lastErr = err
	return err
}

// Run renews the lease every third of its time until ctx ends.
func (l *Lease) Run(ctx context.Context) {
	t := time.NewTicker(l.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := l.Renew(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("node lease not renewed: the database is unreachable", "node", l.node.Name, "error", err)
		}
	}
}

// State returns when the lease was last renewed and the last renewal's
// error (nil when it succeeded).
func (l *Lease) State() (renewed time.Time, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastOK, l.lastErr
}

// Node returns the node's row as it renews it.
func (l *Lease) Node() store.Node { return l.node }
