package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// ACLs returns every list with its nodes in order, sorted by name.
func (db *DB) ACLs(ctx context.Context) ([]acl.List, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	rows, err := db.pool.Query(ctx, `SELECT a.name, a.default_allow, n.allow, n.cidr
		FROM acls a LEFT JOIN acl_nodes n ON n.acl = a.name ORDER BY a.name COLLATE "C", n.position`)
	if err != nil {
		return nil, fmt.Errorf("read acls: %w", err)
	}
	defer rows.Close()
	var out []acl.List
	for rows.Next() {
		var name string
		var cidr *string
		var def bool
		var allow *bool
		if err := rows.Scan(&name, &def, &allow, &cidr); err != nil {
			return nil, fmt.Errorf("read acls: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].Name != name {
			out = append(out, acl.List{Name: name, DefaultAllow: def})
		}
		if cidr != nil {
			n, err := acl.ParseNode(allow != nil && *allow, *cidr)
			if err != nil {
				return nil, fmt.Errorf("acl %s: stored node %q: %w", name, *cidr, err)
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
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var ok bool
	if err := db.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM acls WHERE name = $1)", name).Scan(&ok); err != nil {
		return false, fmt.Errorf("read acl %s: %w", name, err)
	}
	return ok, nil
}

// AddACL creates an empty list (store.ErrACLExists).
func (db *DB) AddACL(ctx context.Context, name string, defaultAllow bool) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	_, err := db.pool.Exec(ctx, "INSERT INTO acls(name, default_allow) VALUES ($1, $2)", name, defaultAllow)
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
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, "UPDATE acls SET default_allow = $1 WHERE name = $2", defaultAllow, name)
	if err != nil {
		return fmt.Errorf("set default of acl %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("acl %s: %w", name, store.ErrNoACL)
	}
	return nil
}

// PutACLNode appends a node or updates the action of the node with the
// same prefix in place, in one transaction (the list's row is locked, so
// two writers do not take the same position).
func (db *DB) PutACLNode(ctx context.Context, name string, n acl.Node) (added bool, err error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("acl %s: %w", name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var one int
	if err := tx.QueryRow(ctx, "SELECT 1 FROM acls WHERE name = $1 FOR UPDATE", name).Scan(&one); errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("acl %s: %w", name, store.ErrNoACL)
	} else if err != nil {
		return false, fmt.Errorf("acl %s: %w", name, err)
	}
	cidr := n.Prefix.String()
	var pos int
	var allow bool
	err = tx.QueryRow(ctx, "SELECT position, allow FROM acl_nodes WHERE acl = $1 AND cidr = $2", name, cidr).Scan(&pos, &allow)
	switch {
	case err == nil:
		if allow != n.Allow {
			if _, err := tx.Exec(ctx, "UPDATE acl_nodes SET allow = $1 WHERE acl = $2 AND position = $3", n.Allow, name, pos); err != nil {
				return false, fmt.Errorf("acl %s: %w", name, err)
			}
		}
	case errors.Is(err, pgx.ErrNoRows):
		added = true
		if _, err := tx.Exec(ctx, `INSERT INTO acl_nodes(acl, position, allow, cidr)
			VALUES ($1, (SELECT coalesce(max(position), 0) + 1 FROM acl_nodes WHERE acl = $1), $2, $3)`, name, n.Allow, cidr); err != nil {
			return false, fmt.Errorf("acl %s: %w", name, err)
		}
	default:
		return false, fmt.Errorf("acl %s: %w", name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("acl %s: %w", name, err)
	}
	return added, nil
}

// RemoveACLNode deletes the node with prefix p (store.ErrNoACL,
// store.ErrNoNode).
func (db *DB) RemoveACLNode(ctx context.Context, name string, p netip.Prefix) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	ok, err := db.HasACL(ctx, name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("acl %s: %w", name, store.ErrNoACL)
	}
	tag, err := db.pool.Exec(ctx, "DELETE FROM acl_nodes WHERE acl = $1 AND cidr = $2", name, p.String())
	if err != nil {
		return fmt.Errorf("acl %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("acl %s has no node %s: %w", name, p, store.ErrNoNode)
	}
	return nil
}

// RemoveACL deletes a list and its nodes (store.ErrNoACL).
func (db *DB) RemoveACL(ctx context.Context, name string) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, "DELETE FROM acls WHERE name = $1", name)
	if err != nil {
		return fmt.Errorf("remove acl %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("acl %s: %w", name, store.ErrNoACL)
	}
	return nil
}

// ExtensionsWithACL returns "number@domain" of the extensions using name.
func (db *DB) ExtensionsWithACL(ctx context.Context, name string) ([]string, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	return db.column(ctx, `SELECT e.number || '@' || d.name FROM extensions e JOIN domains d ON d.id = e.domain_id
		WHERE e.acl = $1 ORDER BY lower(d.name) COLLATE "C", e.number COLLATE "C"`, name)
}

// Profiles returns every profile, sorted by name.
func (db *DB) Profiles(ctx context.Context) ([]store.Profile, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	rows, err := db.pool.Query(ctx, `SELECT name, register_acl, inbound_acl, trusted_acl FROM profiles ORDER BY name COLLATE "C"`)
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
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var p store.Profile
	err := db.pool.QueryRow(ctx, "SELECT name, register_acl, inbound_acl, trusted_acl FROM profiles WHERE name = $1", name).
		Scan(&p.Name, &p.RegisterACL, &p.InboundACL, &p.TrustedACL)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Profile{}, fmt.Errorf("profile %s: %w", name, store.ErrNoProfile)
	}
	if err != nil {
		return store.Profile{}, fmt.Errorf("read profile %s: %w", name, err)
	}
	return p, nil
}

// SetProfile writes a profile's settings (store.ErrNoProfile).
func (db *DB) SetProfile(ctx context.Context, p store.Profile) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, "UPDATE profiles SET register_acl = $1, inbound_acl = $2, trusted_acl = $3 WHERE name = $4",
		p.RegisterACL, p.InboundACL, p.TrustedACL, p.Name)
	if err != nil {
		return fmt.Errorf("write profile %s: %w", p.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("profile %s: %w", p.Name, store.ErrNoProfile)
	}
	return nil
}

const banColumns = "ip, reason, failures, since, until"

// Bans returns the bans in force at now, oldest first.
func (db *DB) Bans(ctx context.Context, now time.Time) ([]acl.Ban, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	return db.queryBans(ctx, `SELECT `+banColumns+` FROM bans WHERE until = 0 OR until > $1 ORDER BY since, ip COLLATE "C"`, now.UnixMilli())
}

// BansOf returns the stored bans of ips, expired or not.
func (db *DB) BansOf(ctx context.Context, ips []netip.Addr) ([]acl.Ban, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if len(ips) == 0 {
		return nil, nil
	}
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.Unmap().String()
	}
	return db.queryBans(ctx, "SELECT "+banColumns+" FROM bans WHERE ip = ANY($1::text[])", s)
}

func (db *DB) queryBans(ctx context.Context, q string, args ...any) ([]acl.Ban, error) {
	rows, err := db.pool.Query(ctx, q, args...)
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
	ctx, cancel := db.bound(ctx)
	defer cancel()
	row := db.pool.QueryRow(ctx, "SELECT "+banColumns+" FROM bans WHERE ip = $1 AND (until = 0 OR until > $2)",
		ip.Unmap().String(), now.UnixMilli())
	b, err := scanBan(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return acl.Ban{}, fmt.Errorf("ban of %s: %w", ip, store.ErrNoBan)
	}
	return b, err
}

func scanBan(r interface{ Scan(...any) error }) (acl.Ban, error) {
	var ip string
	var b acl.Ban
	var since, until int64
	if err := r.Scan(&ip, &b.Reason, &b.Failures, &since, &until); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
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
	ctx, cancel := db.bound(ctx)
	defer cancel()
	_, err := db.pool.Exec(ctx, `INSERT INTO bans(ip, reason, failures, since, until) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT(ip) DO UPDATE SET reason = excluded.reason, failures = excluded.failures, since = excluded.since, until = excluded.until`,
		b.IP.Unmap().String(), b.Reason, b.Failures, b.Since.UnixMilli(), unixMs(b.Until))
	if err != nil {
		return fmt.Errorf("write ban of %s: %w", b.IP, err)
	}
	return nil
}

// DeleteBan deletes the ban of ip, expired or not.
func (db *DB) DeleteBan(ctx context.Context, ip netip.Addr) (bool, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, "DELETE FROM bans WHERE ip = $1", ip.Unmap().String())
	if err != nil {
		return false, fmt.Errorf("remove ban of %s: %w", ip, err)
	}
	return tag.RowsAffected() > 0, nil
}

// PruneBans deletes bans that expired at now and returns how many.
func (db *DB) PruneBans(ctx context.Context, now time.Time) (int64, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, "DELETE FROM bans WHERE until <> 0 AND until <= $1", now.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune bans: %w", err)
	}
	return tag.RowsAffected(), nil
}
