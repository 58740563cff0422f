// Package store defines switchboard's persistent data model: domains (tenants),
// extensions, registrations (bindings), the change feed that tells a running
// server what the CLI changed, the journal, call records, access control
// (ACLs, profiles, bans), and the interfaces a storage backend implements.
// Only backends speak their database's language (SQL); every other package
// uses these interfaces, and package storetest is the contract a backend
// passes.
//
// The default backend is store/sqlite (an embedded database in the data
// directory). Every method returns a wrapped error; the sentinel errors below
// let callers tell the common failures apart with errors.Is.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors shared by every backend.
var (
	// ErrNotFound: the extension, domain or row asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrDuplicate: a row with the same unique key (e.g. extension number in
	// its domain) already exists.
	ErrDuplicate = errors.New("already exists")
)

// Domain is a tenant. Extension numbers are unique within a domain. Realm
// is the digest realm its phones authenticate against: the name the domain
// was created with, unless given otherwise, and kept when the domain is
// renamed, because every stored password hash (HA1) is made with it.
type Domain struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Realm     string    `json:"realm"`
	Enabled   bool      `json:"enabled"`
	CreatedAt time.Time `json:"created_at"`
}

// Extension is one entry of the directory. The password itself is never
// stored: only its digest HA1 hashes (MD5 and SHA-256 of user:realm:password).
type Extension struct {
	ID               int64     `json:"id"`
	Domain           string    `json:"domain"`
	Number           string    `json:"extension"`
	HA1MD5           string    `json:"-"`
	HA1SHA256        string    `json:"-"`
	Enabled          bool      `json:"enabled"`
	CallerIDName     string    `json:"caller_id_name"`
	CallerIDNumber   string    `json:"caller_id_number"`
	Description      string    `json:"description"`
	MaxRegistrations int       `json:"max_registrations"`
	CallTimeout      int       `json:"call_timeout_s"`
	ACL              string    `json:"acl"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

// Binding is one registered contact of an extension (RFC 3261 §10), with the
// network facts needed to reach the phone again behind NAT: the source
// address, transport and local listener the REGISTER arrived on.
type Binding struct {
	Domain       string    `json:"domain"`
	Extension    string    `json:"extension"`
	Contact      string    `json:"contact"`
	Source       string    `json:"source"`
	Transport    string    `json:"transport"`
	UserAgent    string    `json:"user_agent"`
	CallID       string    `json:"call_id"`
	CSeq         uint32    `json:"cseq"`
	AuthUser     string    `json:"auth_user"`
	Realm        string    `json:"realm"`
	RegisteredAt time.Time `json:"registered_at"`
	ExpiresAt    time.Time `json:"expires_at"`
	// PingStatus is "", "reachable" or "unreachable" (OPTIONS qualify).
	PingStatus string    `json:"ping_status"`
	PingRTT    float64   `json:"ping_rtt_ms"`
	PingAt     time.Time `json:"ping_at"`
	// Node is the name of the server (serve --node) that holds the phone's
	// flow and owns the binding; Path is that node's internal SIP address as
	// a Path URI (RFC 3327, "<sip:10.0.0.11:5060;lr>"), where the other
	// nodes send requests for the phone. Both are "" in rows written before
	// nodes existed.
	Node string `json:"node"`
	Path string `json:"path"`
}

// Key identifies a binding: the address of record plus the contact URI,
// and the node that owns it.
func (b *Binding) Key() BindingKey {
	return BindingKey{Domain: b.Domain, Extension: b.Extension, Contact: b.Contact, Node: b.Node}
}

// BindingKey identifies one binding. Node scopes a delete: ApplyBindings
// deletes the row only while it is owned by Node (or by no node), so that a
// node never deletes a binding the phone has since made on another node.
type BindingKey struct{ Domain, Extension, Contact, Node string }

// Change is one entry of the change feed: something in the directory (kind
// "ext", "domain", "acl", "ban", "profile") was written by another process.
type Change struct {
	Seq  int64
	Kind string
	Key  string
}

// Directory reads and writes domains and extensions.
type Directory interface {
	Domains(ctx context.Context) ([]Domain, error)
	Domain(ctx context.Context, name string) (Domain, error)
	EnsureDomain(ctx context.Context, name string) (Domain, error)
	Extensions(ctx context.Context, domain string) ([]Extension, error)
	Extension(ctx context.Context, domain, number string) (Extension, error)
	AddExtension(ctx context.Context, e Extension) (Extension, error)
	UpdateExtension(ctx context.Context, e Extension) error
	RemoveExtension(ctx context.Context, domain, number string) error
	ImportExtensions(ctx context.Context, exts []Extension) error
	// ListExtensions returns one page of the extensions that q selects and
	// how many it selects in all (see ExtensionQuery). The page is read in
	// index order, without sorting the directory.
	ListExtensions(ctx context.Context, q ExtensionQuery) ([]Extension, int, error)
	Counts(ctx context.Context) (domains, extensions int, err error)
}

// Bindings persists the location table so it survives restarts.
type Bindings interface {
	LoadBindings(ctx context.Context) ([]Binding, error)
	// ApplyBindings upserts and deletes in one transaction.
	ApplyBindings(ctx context.Context, upsert []Binding, del []BindingKey) error
}

// Changes is the feed a running server polls to pick up CLI edits at once.
type Changes interface {
	ChangesSince(ctx context.Context, seq int64, limit int) ([]Change, error)
	LastChange(ctx context.Context) (int64, error)
}

// Node is one server sharing the database (serve --node NAME) and its
// lease: a node renews RenewedAt every few seconds while it runs; a node
// whose lease is older than the lease time is down, and lookups on the
// other nodes skip its bindings.
type Node struct {
	Name string `json:"name"`
	// Address is the node's internal SIP address (host:port, UDP), where
	// the other nodes forward calls for the phones registered on it.
	Address   string    `json:"address"`
	StartedAt time.Time `json:"started_at"`
	RenewedAt time.Time `json:"renewed_at"`
}

// Nodes is the lease table of the nodes sharing a database, and the view a
// node has of the bindings the other nodes own.
type Nodes interface {
	// RenewNode inserts or updates n's row (address, started_at,
	// renewed_at).
	RenewNode(ctx context.Context, n Node) error
	// ListNodes returns every node row, by name.
	ListNodes(ctx context.Context) ([]Node, error)
	// OtherBindings returns the bindings owned by a node other than node
	// (and by some node: rows without one are nobody's to forward to) that
	// were written at or after since (the zero time: all) and are
	// unexpired at now.
	OtherBindings(ctx context.Context, node string, since, now time.Time) ([]Binding, error)
	// ReserveIDs atomically reserves n numbers of the counter key (kept in
	// the settings) and returns the first: 0 at the first reservation,
	// then each reservation's first follows the last one's range. Nodes
	// take their call record IDs from a range of their own this way.
	ReserveIDs(ctx context.Context, key string, n int64) (first int64, err error)
}
