package security

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
)

// Store reads and writes the access-control tables of the database
// (migration 4 of store/sqlite: acls, acl_nodes, profiles, bans). Every
// write reaches a running server through the change feed (triggers), kinds
// "acl", "profile" and "ban".
type Store struct{ db *sql.DB }

// NewStore returns a Store on db (sqlite.DB.SQL()).
func NewStore(db *sql.DB) *Store { return &Store{db: db} }

// Sentinel errors of Store.
var (
	ErrNoACL     = errors.New("no such acl")
	ErrACLExists = errors.New("acl already exists")
	ErrNoNode    = errors.New("no such node")
	ErrNoProfile = errors.New("no such profile")
	ErrNoBan     = errors.New("no such ban")
)

// DefaultProfile is the one SIP profile switchboard runs (FreeSWITCH's
// "internal").
const DefaultProfile = "internal"

// Profile is a profile's access-control settings: the names of the ACLs
// applied to REGISTER, to calls, and the trusted networks (exempt from
// rate limits and bans). "" means none.
type Profile struct {
	Name        string `json:"name"`
	RegisterACL string `json:"register_acl"`
	InboundACL  string `json:"inbound_acl"`
	TrustedACL  string `json:"trusted_acl"`
}

// ACLs returns every list with its nodes in order, sorted by name.
func (s *Store) ACLs(ctx context.Context) ([]acl.List, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT a.name, a.default_allow, n.allow, n.cidr
		FROM acls a LEFT JOIN acl_nodes n ON n.acl = a.name ORDER BY a.name, n.position`)
	if err != nil {
		return nil, fmt.Errorf("read acls: %w", err)
	}
	defer rows.Close()
	var out []acl.List
	for rows.Next() {
		var name, cidr sql.NullString
		var def bool
		var allow sql.NullBool
		if err := rows.Scan(&name, &def, &allow, &cidr); err != nil {
			return nil, fmt.Errorf("read acls: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].Name != name.String {
			out = append(out, acl.List{Name: name.String, DefaultAllow: def})
		}
		if cidr.Valid {
			n, err := acl.ParseNode(allow.Bool, cidr.String)
			if err != nil {
				return nil, fmt.Errorf("acl %s: stored node %q: %w", name.String, cidr.String, err)
			}
			l := &out[len(out)-1]
			l.Nodes = append(l.Nodes, n)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read acls: %w", err)
	}
	return out, nil
}

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
func (s *Store) HasACL(ctx context.Context, name string) (bool, error) {
	var one int
	err := s.db.QueryRowContext(ctx, "SELECT 1 FROM acls WHERE name = ?", name).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read acl %s: %w", name, err)
	}
	return true, nil
}

// AddACL creates an empty list; ErrACLExists when the name is taken.
func (s *Store) AddACL(ctx context.Context, name string, defaultAllow bool) error {
	if err := acl.ValidName(name); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, "INSERT INTO acls(name, default_allow) VALUES (?, ?)", name, defaultAllow)
	if err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed") {
		return fmt.Errorf("acl %s: %w", name, ErrACLExists)
	}
	if err != nil {
		return fmt.Errorf("add acl %s: %w", name, err)
	}
	return nil
}

// SetDefault changes a list's default action.
func (s *Store) SetDefault(ctx context.Context, name string, defaultAllow bool) error {
	res, err := s.db.ExecContext(ctx, "UPDATE acls SET default_allow = ? WHERE name = ?", defaultAllow, name)
	if err != nil {
		return fmt.Errorf("set default of acl %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("acl %s: %w", name, ErrNoACL)
	}
	return nil
}

// AddNode appends a node to a list (or replaces the action of an existing
// node with the same prefix, keeping its place). It reports whether a node
// was added (false: an existing one was updated or already equal).
func (s *Store) AddNode(ctx context.Context, name string, n acl.Node) (added bool, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("acl %s: %w", name, err)
	}
	defer tx.Rollback()
	var one int
	if err := tx.QueryRowContext(ctx, "SELECT 1 FROM acls WHERE name = ?", name).Scan(&one); errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("acl %s: %w", name, ErrNoACL)
	} else if err != nil {
		return false, fmt.Errorf("acl %s: %w", name, err)
	}
	cidr := n.Prefix.String()
	var pos int
	var allow bool
	err = tx.QueryRowContext(ctx, "SELECT position, allow FROM acl_nodes WHERE acl = ? AND cidr = ?", name, cidr).Scan(&pos, &allow)
	switch {
	case err == nil:
		if allow != n.Allow {
			if _, err := tx.ExecContext(ctx, "UPDATE acl_nodes SET allow = ? WHERE acl = ? AND position = ?", n.Allow, name, pos); err != nil {
				return false, fmt.Errorf("acl %s: %w", name, err)
			}
		}
	case errors.Is(err, sql.ErrNoRows):
		added = true
		if _, err := tx.ExecContext(ctx, `INSERT INTO acl_nodes(acl, position, allow, cidr)
			VALUES (?, (SELECT coalesce(max(position), 0) + 1 FROM acl_nodes WHERE acl = ?), ?, ?)`, name, name, n.Allow, cidr); err != nil {
			return false, fmt.Errorf("acl %s: %w", name, err)
		}
	default:
		return false, fmt.Errorf("acl %s: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("acl %s: %w", name, err)
	}
	return added, nil
}

// RemoveNode deletes the node of a list with prefix p; ErrNoNode when the
// list has none.
func (s *Store) RemoveNode(ctx context.Context, name string, p netip.Prefix) error {
	if _, err := s.ACL(ctx, name); err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, "DELETE FROM acl_nodes WHERE acl = ? AND cidr = ?", name, p.String())
	if err != nil {
		return fmt.Errorf("acl %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("acl %s has no node %s: %w", name, p, ErrNoNode)
	}
	return nil
}

// RemoveACL deletes a list and its nodes. It does not check references;
// see UsedBy.
func (s *Store) RemoveACL(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM acls WHERE name = ?", name)
	if err != nil {
		return fmt.Errorf("remove acl %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("acl %s: %w", name, ErrNoACL)
	}
	return nil
}

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
	rows, err := s.db.QueryContext(ctx, `SELECT e.number, d.name FROM extensions e JOIN domains d ON d.id = e.domain_id
		WHERE e.acl = ? ORDER BY d.name, e.number`, name)
	if err != nil {
		return nil, fmt.Errorf("read acl users: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var num, dom string
		if err := rows.Scan(&num, &dom); err != nil {
			return nil, fmt.Errorf("read acl users: %w", err)
		}
		out = append(out, "extension "+num+"@"+dom)
	}
	return out, rows.Err()
}

// Profiles returns every profile, sorted by name.
func (s *Store) Profiles(ctx context.Context) ([]Profile, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT name, register_acl, inbound_acl, trusted_acl FROM profiles ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("read profiles: %w", err)
	}
	defer rows.Close()
	var out []Profile
	for rows.Next() {
		var p Profile
		if err := rows.Scan(&p.Name, &p.RegisterACL, &p.InboundACL, &p.TrustedACL); err != nil {
			return nil, fmt.Errorf("read profiles: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Profile returns one profile; ErrNoProfile when it does not exist.
func (s *Store) Profile(ctx context.Context, name string) (Profile, error) {
	var p Profile
	err := s.db.QueryRowContext(ctx, "SELECT name, register_acl, inbound_acl, trusted_acl FROM profiles WHERE name = ?", name).
		Scan(&p.Name, &p.RegisterACL, &p.InboundACL, &p.TrustedACL)
	if errors.Is(err, sql.ErrNoRows) {
		return Profile{}, fmt.Errorf("profile %s: %w", name, ErrNoProfile)
	}
	if err != nil {
		return Profile{}, fmt.Errorf("read profile %s: %w", name, err)
	}
	return p, nil
}

// SetProfile writes a profile's settings.
func (s *Store) SetProfile(ctx context.Context, p Profile) error {
	res, err := s.db.ExecContext(ctx, "UPDATE profiles SET register_acl = ?, inbound_acl = ?, trusted_acl = ? WHERE name = ?",
		p.RegisterACL, p.InboundACL, p.TrustedACL, p.Name)
	if err != nil {
		return fmt.Errorf("write profile %s: %w", p.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("profile %s: %w", p.Name, ErrNoProfile)
	}
	return nil
}

// Bans returns the bans in force at now (expired rows are skipped),
// oldest first.
func (s *Store) Bans(ctx context.Context, now time.Time) ([]acl.Ban, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT ip, reason, failures, since, until FROM bans WHERE until = 0 OR until > ? ORDER BY since, ip",
		now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("read bans: %w", err)
	}
	defer rows.Close()
	var out []acl.Ban
	for rows.Next() {
		b, err := scanBan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// Ban returns the ban of ip in force at now; ErrNoBan when there is none.
func (s *Store) Ban(ctx context.Context, ip netip.Addr, now time.Time) (acl.Ban, error) {
	row := s.db.QueryRowContext(ctx, "SELECT ip, reason, failures, since, until FROM bans WHERE ip = ? AND (until = 0 OR until > ?)",
		ip.Unmap().String(), now.UnixMilli())
	b, err := scanBan(row)
	if errors.Is(err, sql.ErrNoRows) {
		return acl.Ban{}, fmt.Errorf("ban of %s: %w", ip, ErrNoBan)
	}
	return b, err
}

type scanner interface{ Scan(dest ...any) error }

func scanBan(r scanner) (acl.Ban, error) {
	var ip string
	var b acl.Ban
	var since, until int64
	if err := r.Scan(&ip, &b.Reason, &b.Failures, &since, &until); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return b, err
		}
		return b, fmt.Errorf("read bans: %w", err)
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return b, fmt.Errorf("read bans: stored address %q: %w", ip, err)
	}
	b.IP = a
	b.Since = time.UnixMilli(since)
	if until != 0 {
		b.Until = time.UnixMilli(until)
	}
	return b, nil
}

// PutBan writes (or replaces) a ban.
func (s *Store) PutBan(ctx context.Context, b acl.Ban) error {
	var until int64
	if !b.Until.IsZero() {
		until = b.Until.UnixMilli()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO bans(ip, reason, failures, since, until) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(ip) DO UPDATE SET reason = excluded.reason, failures = excluded.failures, since = excluded.since, until = excluded.until`,
		b.IP.Unmap().String(), b.Reason, b.Failures, b.Since.UnixMilli(), until)
	if err != nil {
		return fmt.Errorf("write ban of %s: %w", b.IP, err)
	}
	return nil
}

// RemoveBan deletes the ban of ip. It reports ErrNoBan when no ban was in
// force at now (an expired row is deleted all the same).
func (s *Store) RemoveBan(ctx context.Context, ip netip.Addr, now time.Time) error {
	_, err := s.Ban(ctx, ip, now)
	if _, derr := s.db.ExecContext(ctx, "DELETE FROM bans WHERE ip = ?", ip.Unmap().String()); derr != nil {
		return fmt.Errorf("remove ban of %s: %w", ip, derr)
	}
	return err
}

// PruneBans deletes bans that expired before now and returns how many.
func (s *Store) PruneBans(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM bans WHERE until != 0 AND until <= ?", now.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune bans: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
