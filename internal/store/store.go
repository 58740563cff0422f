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
}

// Key identifies a binding: the address of record plus the contact URI.
func (b *Binding) Key() BindingKey {
	return BindingKey{Domain: b.Domain, Extension: b.Extension, Contact: b.Contact}
}

// BindingKey identifies one binding.
type BindingKey struct{ Domain, Extension, Contact string }

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
