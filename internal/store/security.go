package store

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
)

// Sentinel errors of Security.
var (
	ErrNoACL     = errors.New("no such acl")
	ErrACLExists = errors.New("acl already exists")
	ErrNoNode    = errors.New("no such node")
	ErrNoProfile = errors.New("no such profile")
	ErrNoBan     = errors.New("no such ban")
)

// Profile is a SIP profile's access-control settings: the names of the
// ACLs applied to REGISTER, to calls, and the trusted networks (exempt from
// rate limits and bans). "" means none.
type Profile struct {
	Name        string `json:"name"`
	RegisterACL string `json:"register_acl"`
	InboundACL  string `json:"inbound_acl"`
	TrustedACL  string `json:"trusted_acl"`
}

// Security stores access-control lists, profile settings and bans. Every
// write reaches a running server through the change feed (kinds "acl",
// "profile", "ban"). Ban times are kept to the millisecond; a zero Until
// is a permanent ban.
type Security interface {
	// ACLs returns every list with its nodes in order, sorted by name.
	ACLs(ctx context.Context) ([]acl.List, error)
	// HasACL reports whether a list exists.
	HasACL(ctx context.Context, name string) (bool, error)
	// AddACL creates an empty list; the error wraps ErrACLExists when the
	// name is taken.
	AddACL(ctx context.Context, name string, defaultAllow bool) error
	// SetACLDefault changes a list's default action (ErrNoACL).
	SetACLDefault(ctx context.Context, name string, defaultAllow bool) error
	// PutACLNode appends n to a list, or changes the action of the node
	// with the same prefix in its place; added is false in that case
	// (ErrNoACL when the list does not exist).
	PutACLNode(ctx context.Context, name string, n acl.Node) (added bool, err error)
	// RemoveACLNode deletes the node with prefix p (ErrNoNode).
	RemoveACLNode(ctx context.Context, name string, p netip.Prefix) error
	// RemoveACL deletes a list and its nodes (ErrNoACL).
	RemoveACL(ctx context.Context, name string) error
	// ExtensionsWithACL returns "number@domain" of the extensions whose
	// ACL is name, sorted by domain and number.
	ExtensionsWithACL(ctx context.Context, name string) ([]string, error)

	// Profiles returns every profile, sorted by name.
	Profiles(ctx context.Context) ([]Profile, error)
	// Profile returns one profile (ErrNoProfile).
	Profile(ctx context.Context, name string) (Profile, error)
	// SetProfile writes an existing profile's settings (ErrNoProfile).
	SetProfile(ctx context.Context, p Profile) error

	// Bans returns the bans in force at now, oldest first (by Since, then
	// address).
	Bans(ctx context.Context, now time.Time) ([]acl.Ban, error)
	// Ban returns the ban of ip in force at now (ErrNoBan).
	Ban(ctx context.Context, ip netip.Addr, now time.Time) (acl.Ban, error)
	// BansOf returns the stored bans of the given addresses, expired or
	// not, in no particular order.
	BansOf(ctx context.Context, ips []netip.Addr) ([]acl.Ban, error)
	// PutBan writes (or replaces) the ban of b.IP.
	PutBan(ctx context.Context, b acl.Ban) error
	// DeleteBan deletes the ban of ip, expired or not; it reports whether
	// there was one.
	DeleteBan(ctx context.Context, ip netip.Addr) (bool, error)
	// PruneBans deletes the bans expired at now and returns how many.
	PruneBans(ctx context.Context, now time.Time) (int64, error)
}

// Meta reads and writes the settings a server publishes for the CLI.
type Meta interface {
	// Meta reads a setting; ok is false when it is not set.
	Meta(ctx context.Context, key string) (value string, ok bool, err error)
	// SetMeta writes a setting.
	SetMeta(ctx context.Context, key, value string) error
}

// Doctor is what the doctor reads about the directory beyond Directory.
type Doctor interface {
	// ExtensionNumbers returns the numbers of domain's extensions (exact
	// name, case-insensitive), in no particular order.
	ExtensionNumbers(ctx context.Context, domain string) ([]string, error)
	// DomainsWithExtension returns the names of the domains other than
	// except that have an extension number, sorted.
	DomainsWithExtension(ctx context.Context, number, except string) ([]string, error)
	// CountRegistrations returns how many bindings are unexpired at now.
	CountRegistrations(ctx context.Context, now time.Time) (int, error)
	// BindingsOf returns the bindings of one extension.
	BindingsOf(ctx context.Context, domain, number string) ([]Binding, error)
}
