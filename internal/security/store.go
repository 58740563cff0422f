package security

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Backend is what Store needs from the database: the access-control
// tables and the settings a server publishes (store/sqlite.DB has both).
type Backend interface {
	store.Security
	store.Meta
}

// Store reads and writes ACLs, profile settings and bans through a
// Backend, adding the checks and the policy (name validation, which
// profiles and extensions refer to a list). Every write reaches a running
// server through the change feed, kinds "acl", "profile" and "ban".
type Store struct{ b Backend }

// NewStore returns a Store on b.
func NewStore(b Backend) *Store { return &Store{b: b} }

// Sentinel errors of Store (the store's, so errors.Is works on either).
var (
	ErrNoACL     = store.ErrNoACL
	ErrACLExists = store.ErrACLExists
	ErrNoNode    = store.ErrNoNode
	ErrNoProfile = store.ErrNoProfile
	ErrNoBan     = store.ErrNoBan
)

// DefaultProfile is the one SIP profile switchboard runs (FreeSWITCH's
// "internal").
const DefaultProfile = "internal"

// Profile is a profile's access-control settings: the names of the ACLs
// applied to REGISTER, to calls, and the trusted networks (exempt from
// rate limits and bans). "" means none.
type Profile = store.Profile

// ACLs returns every list with its nodes in order, sorted by name.
func (s *Store) ACLs(ctx context.Context) ([]acl.List, error) { return s.b.ACLs(ctx) }

// ACL returns one list; ErrNoACL when it does not exist.
func (s *Store) ACL(ctx context.Context, name string) (acl.List, error) {
	all, err := s.ACLs(ctx)
	if err != nil {
		return acl.List{}, err
	}
	for _, l := range all {
		if l.Name == name {
			return l, nil
		}
	}
	return acl.List{}, fmt.Errorf("acl %s: %w", name, ErrNoACL)
}

// HasACL reports whether a list exists.
func (s *Store) HasACL(ctx context.Context, name string) (bool, error) { return s.b.HasACL(ctx, name) }

// AddACL creates an empty list; ErrACLExists when the name is taken.
func (s *Store) AddACL(ctx context.Context, name string, defaultAllow bool) error {
	if err := acl.ValidName(name); err != nil {
		return err
	}
	return s.b.AddACL(ctx, name, defaultAllow)
}

// SetDefault changes a list's default action.
func (s *Store) SetDefault(ctx context.Context, name string, defaultAllow bool) error {
	return s.b.SetACLDefault(ctx, name, defaultAllow)
}

// AddNode appends a node to a list (or replaces the action of an existing
// node with the same prefix, keeping its place). It reports whether a node
// was added (false: an existing one was updated or already equal).
func (s *Store) AddNode(ctx context.Context, name string, n acl.Node) (added bool, err error) {
	return s.b.PutACLNode(ctx, name, n)
}

// RemoveNode deletes the node of a list with prefix p; ErrNoNode when the
// list has none.
func (s *Store) RemoveNode(ctx context.Context, name string, p netip.Prefix) error {
	return s.b.RemoveACLNode(ctx, name, p)
}

// RemoveACL deletes a list and its nodes. It does not check references;
// see UsedBy.
func (s *Store) RemoveACL(ctx context.Context, name string) error { return s.b.RemoveACL(ctx, name) }

// UsedBy lists what refers to a list: "profile internal register-acl",
// "extension 2002@example.com", ...
func (s *Store) UsedBy(ctx context.Context, name string) ([]string, error) {
	var out []string
	ps, err := s.Profiles(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		for _, r := range []struct{ v, what string }{{p.RegisterACL, "register-acl"}, {p.InboundACL, "inbound-acl"}, {p.TrustedACL, "trusted-acl"}} {
			if r.v == name {
				out = append(out, "profile "+p.Name+" "+r.what)
			}
		}
	}
	exts, err := s.b.ExtensionsWithACL(ctx, name)
	if err != nil {
		return nil, err
	}
	for _, e := range exts {
		out = append(out, "extension "+e)
	}
	return out, nil
}

// Profiles returns every profile, sorted by name.
func (s *Store) Profiles(ctx context.Context) ([]Profile, error) { return s.b.Profiles(ctx) }

// Profile returns one profile; ErrNoProfile when it does not exist.
func (s *Store) Profile(ctx context.Context, name string) (Profile, error) {
	return s.b.Profile(ctx, name)
}

// SetProfile writes a profile's settings.
func (s *Store) SetProfile(ctx context.Context, p Profile) error { return s.b.SetProfile(ctx, p) }

// Bans returns the bans in force at now (expired rows are skipped),
// oldest first.
func (s *Store) Bans(ctx context.Context, now time.Time) ([]acl.Ban, error) {
	return s.b.Bans(ctx, now)
}

// Ban returns the ban of ip in force at now; ErrNoBan when there is none.
func (s *Store) Ban(ctx context.Context, ip netip.Addr, now time.Time) (acl.Ban, error) {
	return s.b.Ban(ctx, ip, now)
}

// PutBan writes (or replaces) a ban.
func (s *Store) PutBan(ctx context.Context, b acl.Ban) error { return s.b.PutBan(ctx, b) }

// RemoveBan deletes the ban of ip. It reports ErrNoBan when no ban was in
// force at now (an expired row is deleted all the same).
func (s *Store) RemoveBan(ctx context.Context, ip netip.Addr, now time.Time) error {
	_, err := s.Ban(ctx, ip, now)
	if _, derr := s.b.DeleteBan(ctx, ip); derr != nil {
		return derr
	}
	return err
}

// PruneBans deletes bans that expired before now and returns how many.
func (s *Store) PruneBans(ctx context.Context, now time.Time) (int64, error) {
	return s.b.PruneBans(ctx, now)
}
