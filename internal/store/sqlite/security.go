package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// The access-control tables are migration 4's: acls, acl_nodes, profiles
// and bans (since and until in Unix milliseconds, until 0 = permanent).

// ACLs returns every list with its nodes in order, sorted by name.
func (db *DB) ACLs(ctx context.Context) ([]acl.List, error) {
	rows, err := db.sql.QueryContext(ctx, `SELECT a.name, a.default_allow, n.allow, n.cidr
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

// HasACL reports whether a list exists.
func (db *DB) HasACL(ctx context.Context, name string) (bool, error) {
	var one int
	err := db.sql.QueryRowContext(ctx, "SELECT 1 FROM acls WHERE name = ?", name).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read acl %s: %w", name, err)
	}
	return true, nil
}

// AddACL creates an empty list (store.ErrACLExists).
func (db *DB) AddACL(ctx context.Context, name string, defaultAllow bool) error {
	_, err := db.sql.ExecContext(ctx, "INSERT INTO acls(name, default_allow) VALUES (?, ?)", name, defaultAllow)
	if isUnique(err) {
		return fmt.Errorf("acl %s: %w", name, store.ErrACLExists)
	}
	if err != nil {
		return fmt.Errorf("add acl %s: %w", name, err)
	}
	return nil
}

// SetACLDefault changes a list's default action (store.ErrNoACL).
func (db *DB) SetACLDefault(ctx context.Context, name string, defaultAllow bool) error {
	res, err := db.sql.ExecContext(ctx, "UPDATE acls SET default_allow = ? WHERE name = ?", defaultAllow, name)
	if err != nil {
		return fmt.Errorf("set default of acl %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("acl %s: %w", name, store.ErrNoACL)
	}
	return nil
}

// PutACLNode appends a node or updates the action of the node with the
// same prefix in place, in one transaction.
func (db *DB) PutACLNode(ctx context.Context, name string, n acl.Node) (added bool, err error) {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("acl %s: %w", name, err)
	}
	defer tx.Rollback()
	var one int
	if err := tx.QueryRowContext(ctx, "SELECT 1 FROM acls WHERE name = ?", name).Scan(&one); errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("acl %s: %w", name, store.ErrNoACL)
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

// RemoveACLNode deletes the node with prefix p (store.ErrNoACL,
// store.ErrNoNode).
func (db *DB) RemoveACLNode(ctx context.Context, name string, p netip.Prefix) error {
	ok, err := db.HasACL(ctx, name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("acl %s: %w", name, store.ErrNoACL)
	}
	res, err := db.sql.ExecContext(ctx, "DELETE FROM acl_nodes WHERE acl = ? AND cidr = ?", name, p.String())
	if err != nil {
		return fmt.Errorf("acl %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("acl %s has no node %s: %w", name, p, store.ErrNoNode)
	}
	return nil
}

// RemoveACL deletes a list and its nodes (store.ErrNoACL).
func (db *DB) RemoveACL(ctx context.Context, name string) error {
	res, err := db.sql.ExecContext(ctx, "DELETE FROM acls WHERE name = ?", name)
	if err != nil {
		return fmt.Errorf("remove acl %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("acl %s: %w", name, store.ErrNoACL)
	}
	return nil
}

// ExtensionsWithACL returns "number@domain" of the extensions using name.
func (db *DB) ExtensionsWithACL(ctx context.Context, name string) ([]string, error) {
	rows, err := db.sql.QueryContext(ctx, `SELECT e.number, d.name FROM extensions e JOIN domains d ON d.id = e.domain_id
		WHERE e.acl = ? ORDER BY d.name, e.number`, name)
	if err != nil {
		return nil, fmt.Errorf("read acl users: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var num, dom string
		if err := rows.Scan(&num, &dom); err != nil {
			return nil, fmt.Errorf("read acl users: %w", err)
		}
		out = append(out, num+"@"+dom)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read acl users: %w", err)
	}
	return out, nil
}

// Profiles returns every profile, sorted by name.
func (db *DB) Profiles(ctx context.Context) ([]store.Profile, error) {
	rows, err := db.sql.QueryContext(ctx, "SELECT name, register_acl, inbound_acl, trusted_acl FROM profiles ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("read profiles: %w", err)
	}
	defer rows.Close()
	var out []store.Profile
	for rows.Next() {
		var p store.Profile
		if err := rows.Scan(&p.Name, &p.RegisterACL, &p.InboundACL, &p.TrustedACL); err != nil {
			return nil, fmt.Errorf("read profiles: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read profiles: %w", err)
	}
	return out, nil
}

// Profile returns one profile (store.ErrNoProfile).
func (db *DB) Profile(ctx context.Context, name string) (store.Profile, error) {
	var p store.Profile
	err := db.sql.QueryRowContext(ctx, "SELECT name, register_acl, inbound_acl, trusted_acl FROM profiles WHERE name = ?", name).
		Scan(&p.Name, &p.RegisterACL, &p.InboundACL, &p.TrustedACL)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Profile{}, fmt.Errorf("profile %s: %w", name, store.ErrNoProfile)
	}
	if err != nil {
		return store.Profile{}, fmt.Errorf("read profile %s: %w", name, err)
	}
	return p, nil
}

// SetProfile writes a profile's settings (store.ErrNoProfile).
func (db *DB) SetProfile(ctx context.Context, p store.Profile) error {
	res, err := db.sql.ExecContext(ctx, "UPDATE profiles SET register_acl = ?, inbound_acl = ?, trusted_acl = ? WHERE name = ?",
		p.RegisterACL, p.InboundACL, p.TrustedACL, p.Name)
	if err != nil {
		return fmt.Errorf("write profile %s: %w", p.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("profile %s: %w", p.Name, store.ErrNoProfile)
	}
	return nil
}

const banColumns = "ip, reason, failures, since, until"

// Bans returns the bans in force at now, oldest first.
func (db *DB) Bans(ctx context.Context, now time.Time) ([]acl.Ban, error) {
	return db.queryBans(ctx, "SELECT "+banColumns+" FROM bans WHERE until = 0 OR until > ? ORDER BY since, ip", now.UnixMilli())
}

// BansOf returns the stored bans of ips, expired or not.
func (db *DB) BansOf(ctx context.Context, ips []netip.Addr) ([]acl.Ban, error) {
	if len(ips) == 0 {
		return nil, nil
	}
	args := make([]any, len(ips))
	for i, ip := range ips {
		args[i] = ip.Unmap().String()
	}
	return db.queryBans(ctx, "SELECT "+banColumns+" FROM bans WHERE ip IN (?"+strings.Repeat(",?", len(ips)-1)+")", args...)
}

func (db *DB) queryBans(ctx context.Context, q string, args ...any) ([]acl.Ban, error) {
	rows, err := db.sql.QueryContext(ctx, q, args...)
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
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read bans: %w", err)
	}
	return out, nil
}

// Ban returns the ban of ip in force at now (store.ErrNoBan).
func (db *DB) Ban(ctx context.Context, ip netip.Addr, now time.Time) (acl.Ban, error) {
	row := db.sql.QueryRowContext(ctx, "SELECT "+banColumns+" FROM bans WHERE ip = ? AND (until = 0 OR until > ?)",
		ip.Unmap().String(), now.UnixMilli())
	b, err := scanBan(row)
	if errors.Is(err, sql.ErrNoRows) {
		return acl.Ban{}, fmt.Errorf("ban of %s: %w", ip, store.ErrNoBan)
	}
	return b, err
}

func scanBan(r interface{ Scan(...any) error }) (acl.Ban, error) {
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
	b.Until = fromMs(until)
	return b, nil
}

// PutBan writes (or replaces) a ban.
func (db *DB) PutBan(ctx context.Context, b acl.Ban) error {
	_, err := db.sql.ExecContext(ctx, `INSERT INTO bans(ip, reason, failures, since, until) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(ip) DO UPDATE SET reason = excluded.reason, failures = excluded.failures, since = excluded.since, until = excluded.until`,
		b.IP.Unmap().String(), b.Reason, b.Failures, b.Since.UnixMilli(), unixMs(b.Until))
	if err != nil {
		return fmt.Errorf("write ban of %s: %w", b.IP, err)
	}
	return nil
}

// DeleteBan deletes the ban of ip, expired or not.
func (db *DB) DeleteBan(ctx context.Context, ip netip.Addr) (bool, error) {
	res, err := db.sql.ExecContext(ctx, "DELETE FROM bans WHERE ip = ?", ip.Unmap().String())
	if err != nil {
		return false, fmt.Errorf("remove ban of %s: %w", ip, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// PruneBans deletes bans that expired at now and returns how many.
func (db *DB) PruneBans(ctx context.Context, now time.Time) (int64, error) {
	res, err := db.sql.ExecContext(ctx, "DELETE FROM bans WHERE until != 0 AND until <= ?", now.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune bans: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
