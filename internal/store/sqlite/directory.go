package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Domains lists every domain, by name.
func (db *DB) Domains(ctx context.Context) ([]store.Domain, error) {
	rows, err := db.sql.QueryContext(ctx, "SELECT id, name, realm, enabled, created_at FROM domains ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	defer rows.Close()
	var out []store.Domain
	for rows.Next() {
		var d store.Domain
		var created int64
		if err := rows.Scan(&d.ID, &d.Name, &d.Realm, &d.Enabled, &created); err != nil {
			return nil, fmt.Errorf("list domains: %w", err)
		}
		d.CreatedAt = fromMs(created)
		out = append(out, d)
	}
	return out, rows.Err()
}

// Domain returns one domain by name (case-insensitive), or store.ErrNotFound.
func (db *DB) Domain(ctx context.Context, name string) (store.Domain, error) {
	var d store.Domain
	var created int64
	err := db.sql.QueryRowContext(ctx, "SELECT id, name, realm, enabled, created_at FROM domains WHERE name = ?", name).
		Scan(&d.ID, &d.Name, &d.Realm, &d.Enabled, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("domain %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("read domain %s: %w", name, err)
	}
	d.CreatedAt = fromMs(created)
	return d, nil
}

// EnsureDomain returns the domain, creating it (enabled, its realm its
// name) when missing.
func (db *DB) EnsureDomain(ctx context.Context, name string) (store.Domain, error) {
	return db.AddDomain(ctx, name, "")
}

// AddDomain returns the domain, creating it (enabled) with the given digest
// realm ("" = its name) when missing. An existing domain is returned as it
// is, whatever its realm.
func (db *DB) AddDomain(ctx context.Context, name, realm string) (store.Domain, error) {
	if realm == "" {
		realm = name
	}
	if _, err := db.sql.ExecContext(ctx,
		"INSERT INTO domains(name, realm, enabled, created_at) VALUES (?, ?, 1, ?) ON CONFLICT(name) DO NOTHING",
		name, realm, time.Now().UnixMilli()); err != nil {
		return store.Domain{}, fmt.Errorf("create domain %s: %w", name, err)
	}
	return db.Domain(ctx, name)
}

// RenameDomain gives a domain a new name in one transaction: its
// extensions, its registrations and, when it is the default domain, the
// default follow; its digest realm stays, so every stored password hash
// keeps working. The change feed carries a "domain-renamed" entry keyed
// "OLD NEW" for a running server. It fails with store.ErrNotFound when old
// does not exist and store.ErrDuplicate when new does.
func (db *DB) RenameDomain(ctx context.Context, old, new string) (store.Domain, error) {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return store.Domain{}, fmt.Errorf("rename domain %s: %w", old, err)
	}
	defer tx.Rollback()
	var canon string
	err = tx.QueryRowContext(ctx, "SELECT name FROM domains WHERE name = ?", old).Scan(&canon)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Domain{}, fmt.Errorf("domain %s: %w", old, store.ErrNotFound)
	}
	if err != nil {
		return store.Domain{}, fmt.Errorf("rename domain %s: %w", old, err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE domains SET name = ? WHERE name = ?", new, canon); err != nil {
		if isUnique(err) {
			return store.Domain{}, fmt.Errorf("domain %s: %w", new, store.ErrDuplicate)
		}
		return store.Domain{}, fmt.Errorf("rename domain %s: %w", canon, err)
	}
	for _, q := range []string{
		"UPDATE bindings SET domain = ? WHERE domain = ?",
		"UPDATE meta SET value = ? WHERE key = 'default_domain' AND value = ?",
	} {
		if _, err := tx.ExecContext(ctx, q, new, canon); err != nil {
			return store.Domain{}, fmt.Errorf("rename domain %s: %w", canon, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO changes(kind, key) VALUES ('domain-renamed', ?)", canon+" "+new); err != nil {
		return store.Domain{}, fmt.Errorf("rename domain %s: %w", canon, err)
	}
	if err := tx.Commit(); err != nil {
		return store.Domain{}, fmt.Errorf("rename domain %s: commit: %w", canon, err)
	}
	return db.Domain(ctx, new)
}

// SetDefaultDomain makes an existing domain the default one (requests
// addressed to the server's own names and addresses belong to it), with a
// "default-domain" entry in the change feed for a running server.
func (db *DB) SetDefaultDomain(ctx context.Context, name string) (store.Domain, error) {
	d, err := db.Domain(ctx, name)
	if err != nil {
		return d, err
	}
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return d, fmt.Errorf("set default domain: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "INSERT INTO meta(key, value) VALUES ('default_domain', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", d.Name); err != nil {
		return d, fmt.Errorf("set default domain: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO changes(kind, key) VALUES ('default-domain', ?)", d.Name); err != nil {
		return d, fmt.Errorf("set default domain: %w", err)
	}
	return d, tx.Commit()
}

const extColumns = `e.id, d.name, e.number, e.ha1_md5, e.ha1_sha256, e.enabled, e.cid_name, e.cid_number,
	e.description, e.max_registrations, e.call_timeout, e.acl, e.created_at, e.updated_at`

func scanExt(sc interface{ Scan(...any) error }) (store.Extension, error) {
	var e store.Extension
	var created, updated int64
	err := sc.Scan(&e.ID, &e.Domain, &e.Number, &e.HA1MD5, &e.HA1SHA256, &e.Enabled, &e.CallerIDName,
		&e.CallerIDNumber, &e.Description, &e.MaxRegistrations, &e.CallTimeout, &e.ACL, &created, &updated)
	e.CreatedAt, e.UpdatedAt = fromMs(created), fromMs(updated)
	return e, err
}

// Extensions lists the extensions of a domain ("" = every domain), ordered
// by domain then number (numerically when both are numbers).
func (db *DB) Extensions(ctx context.Context, domain string) ([]store.Extension, error) {
	q := "SELECT " + extColumns + " FROM extensions e JOIN domains d ON d.id = e.domain_id"
	var args []any
	if domain != "" {
		q += " WHERE d.name = ?"
		args = append(args, domain)
	}
	q += " ORDER BY d.name, length(e.number), e.number"
	rows, err := db.sql.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list extensions: %w", err)
	}
	defer rows.Close()
	var out []store.Extension
	for rows.Next() {
		e, err := scanExt(rows)
		if err != nil {
			return nil, fmt.Errorf("list extensions: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Extension returns one extension, or an error wrapping store.ErrNotFound.
func (db *DB) Extension(ctx context.Context, domain, number string) (store.Extension, error) {
	row := db.sql.QueryRowContext(ctx, "SELECT "+extColumns+
		" FROM extensions e JOIN domains d ON d.id = e.domain_id WHERE d.name = ? AND e.number = ?", domain, number)
	e, err := scanExt(row)
	if errors.Is(err, sql.ErrNoRows) {
		return e, fmt.Errorf("extension %s@%s: %w", number, domain, store.ErrNotFound)
	}
	if err != nil {
		return e, fmt.Errorf("read extension %s@%s: %w", number, domain, err)
	}
	return e, nil
}

// AddExtension inserts an extension into an existing domain. It fails with
// store.ErrDuplicate when the number exists in that domain and with
// store.ErrNotFound when the domain does not exist.
func (db *DB) AddExtension(ctx context.Context, e store.Extension) (store.Extension, error) {
	d, err := db.Domain(ctx, e.Domain)
	if err != nil {
		return e, err
	}
	now := time.Now()
	res, err := db.sql.ExecContext(ctx, `INSERT INTO extensions(domain_id, number, ha1_md5, ha1_sha256, enabled,
		cid_name, cid_number, description, max_registrations, call_timeout, acl, created_at, updated_at)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		d.ID, e.Number, e.HA1MD5, e.HA1SHA256, e.Enabled, e.CallerIDName, e.CallerIDNumber, e.Description,
		e.MaxRegistrations, e.CallTimeout, e.ACL, now.UnixMilli(), now.UnixMilli())
	if isUnique(err) {
		return e, fmt.Errorf("extension %s@%s: %w", e.Number, d.Name, store.ErrDuplicate)
	}
	if err != nil {
		return e, fmt.Errorf("add extension %s@%s: %w", e.Number, d.Name, err)
	}
	e.ID, _ = res.LastInsertId()
	e.Domain = d.Name
	e.CreatedAt, e.UpdatedAt = now, now
	return e, nil
}

// UpdateExtension writes every field of an existing extension (found by
// domain and number).
func (db *DB) UpdateExtension(ctx context.Context, e store.Extension) error {
	res, err := db.sql.ExecContext(ctx, `UPDATE extensions SET ha1_md5=?, ha1_sha256=?, enabled=?, cid_name=?,
		cid_number=?, description=?, max_registrations=?, call_timeout=?, acl=?, updated_at=?
		WHERE number = ? AND domain_id = (SELECT id FROM domains WHERE name = ?)`,
		e.HA1MD5, e.HA1SHA256, e.Enabled, e.CallerIDName, e.CallerIDNumber, e.Description, e.MaxRegistrations,
		e.CallTimeout, e.ACL, time.Now().UnixMilli(), e.Number, e.Domain)
	if err != nil {
		return fmt.Errorf("update extension %s@%s: %w", e.Number, e.Domain, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("extension %s@%s: %w", e.Number, e.Domain, store.ErrNotFound)
	}
	return nil
}

// RemoveExtension deletes an extension and its bindings.
func (db *DB) RemoveExtension(ctx context.Context, domain, number string) error {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("remove extension %s@%s: %w", number, domain, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx,
		"DELETE FROM extensions WHERE number = ? AND domain_id = (SELECT id FROM domains WHERE name = ?)", number, domain)
	if err != nil {
		return fmt.Errorf("remove extension %s@%s: %w", number, domain, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("extension %s@%s: %w", number, domain, store.ErrNotFound)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM bindings WHERE domain = ? AND extension = ?", domain, number); err != nil {
		return fmt.Errorf("remove bindings of %s@%s: %w", number, domain, err)
	}
	return tx.Commit()
}

// RemoveDomain deletes a domain with its extensions and their bindings in
// one transaction and returns how many extensions went with it. The
// extensions are deleted before the domain, so the change feed names each
// one and a running server drops their registrations. It fails with
// store.ErrNotFound when the domain does not exist.
func (db *DB) RemoveDomain(ctx context.Context, name string) (int, error) {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("remove domain %s: %w", name, err)
	}
	defer tx.Rollback()
	var id int64
	var canon string
	err = tx.QueryRowContext(ctx, "SELECT id, name FROM domains WHERE name = ?", name).Scan(&id, &canon)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("domain %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("remove domain %s: %w", name, err)
	}
	res, err := tx.ExecContext(ctx, "DELETE FROM extensions WHERE domain_id = ?", id)
	if err != nil {
		return 0, fmt.Errorf("remove extensions of domain %s: %w", canon, err)
	}
	n, _ := res.RowsAffected()
	if _, err := tx.ExecContext(ctx, "DELETE FROM bindings WHERE domain = ?", canon); err != nil {
		return 0, fmt.Errorf("remove bindings of domain %s: %w", canon, err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM domains WHERE id = ?", id); err != nil {
		return 0, fmt.Errorf("remove domain %s: %w", canon, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("remove domain %s: commit: %w", canon, err)
	}
	return int(n), nil
}

// ImportError says which input row made an import fail.
type ImportError struct {
	Index int // 0-based index into the slice given to ImportExtensions
	Err   error
}

func (e *ImportError) Error() string { return e.Err.Error() }
func (e *ImportError) Unwrap() error { return e.Err }

// ImportExtensions inserts every extension in one transaction: all or
// nothing. Domains must exist. A failure is an *ImportError naming the row.
func (db *DB) ImportExtensions(ctx context.Context, exts []store.Extension) error {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO extensions(domain_id, number, ha1_md5, ha1_sha256, enabled,
		cid_name, cid_number, description, max_registrations, call_timeout, acl, created_at, updated_at)
		VALUES ((SELECT id FROM domains WHERE name = ?),?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer stmt.Close()
	now := time.Now().UnixMilli()
	for i, e := range exts {
		_, err := stmt.ExecContext(ctx, e.Domain, e.Number, e.HA1MD5, e.HA1SHA256, e.Enabled, e.CallerIDName,
			e.CallerIDNumber, e.Description, e.MaxRegistrations, e.CallTimeout, e.ACL, now, now)
		if isUnique(err) {
			return &ImportError{Index: i, Err: fmt.Errorf("extension %s@%s: %w", e.Number, e.Domain, store.ErrDuplicate)}
		}
		if err != nil && stringsContains(err.Error(), "NOT NULL constraint failed: extensions.domain_id") {
			return &ImportError{Index: i, Err: fmt.Errorf("domain %s: %w", e.Domain, store.ErrNotFound)}
		}
		if err != nil {
			return &ImportError{Index: i, Err: fmt.Errorf("extension %s@%s: %w", e.Number, e.Domain, err)}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("import: commit: %w", err)
	}
	return nil
}

// Counts returns how many domains and extensions exist.
func (db *DB) Counts(ctx context.Context) (domains, extensions int, err error) {
	err = db.sql.QueryRowContext(ctx, "SELECT (SELECT count(*) FROM domains), (SELECT count(*) FROM extensions)").
		Scan(&domains, &extensions)
	if err != nil {
		err = fmt.Errorf("count directory: %w", err)
	}
	return
}

// ChangesSince returns up to limit change-feed entries after seq.
func (db *DB) ChangesSince(ctx context.Context, seq int64, limit int) ([]store.Change, error) {
	rows, err := db.sql.QueryContext(ctx, "SELECT seq, kind, key FROM changes WHERE seq > ? ORDER BY seq LIMIT ?", seq, limit)
	if err != nil {
		return nil, fmt.Errorf("read changes: %w", err)
	}
	defer rows.Close()
	var out []store.Change
	for rows.Next() {
		var c store.Change
		if err := rows.Scan(&c.Seq, &c.Kind, &c.Key); err != nil {
			return nil, fmt.Errorf("read changes: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// LastChange returns the newest change-feed sequence number (0 when empty).
func (db *DB) LastChange(ctx context.Context) (int64, error) {
	var seq sql.NullInt64
	if err := db.sql.QueryRowContext(ctx, "SELECT max(seq) FROM changes").Scan(&seq); err != nil {
		return 0, fmt.Errorf("read changes: %w", err)
	}
	return seq.Int64, nil
}

// PruneChanges deletes change-feed entries up to and including seq.
func (db *DB) PruneChanges(ctx context.Context, seq int64) error {
	if _, err := db.sql.ExecContext(ctx, "DELETE FROM changes WHERE seq <= ?", seq); err != nil {
		return fmt.Errorf("prune changes: %w", err)
	}
	return nil
}

// Notify appends a change-feed entry for kinds without triggers.
func (db *DB) Notify(ctx context.Context, kind, key string) error {
	if _, err := db.sql.ExecContext(ctx, "INSERT INTO changes(kind, key) VALUES (?, ?)", kind, key); err != nil {
		return fmt.Errorf("notify %s change: %w", kind, err)
	}
	return nil
}

// ListExtensions returns one page of the extensions q selects and how many
// it selects (see store.ExtensionQuery). Each domain's rows are read
// through the index extensions_order (domain, length of the number,
// number), so a cursor page costs the same at any depth; the total is a
// count.
func (db *DB) ListExtensions(ctx context.Context, q store.ExtensionQuery) ([]store.Extension, int, error) {
	var doms []store.Domain
	if q.Domain != "" {
		d, err := db.Domain(ctx, q.Domain)
		if err != nil {
			return nil, 0, err
		}
		doms = []store.Domain{d}
	} else {
		var err error
		if doms, err = db.Domains(ctx); err != nil {
			return nil, 0, err
		}
	}
	search, args := "", []any{}
	if q.Search != "" {
		p := store.LikePattern(q.Search)
		search = ` AND (e.number LIKE ? ESCAPE '\' OR e.cid_name LIKE ? ESCAPE '\' OR e.description LIKE ? ESCAPE '\')`
		args = append(args, p, p, p)
	}
	cq, cargs := "SELECT e.domain_id, count(*) FROM extensions e WHERE 1=1", args
	if q.Domain != "" {
		cq, cargs = "SELECT e.domain_id, count(*) FROM extensions e WHERE e.domain_id = ?", append([]any{doms[0].ID}, args...)
	}
	counts := map[int64]int{}
	fast := false
	if q.Search == "" {
		// With one domain (the usual case) the count is the table's:
		// SQLite counts a table's rows without decoding them, several
		// times faster than counting an index range.
		var ndom, n int
		err := db.sql.QueryRowContext(ctx, "SELECT (SELECT count(*) FROM domains), (SELECT count(*) FROM extensions)").Scan(&ndom, &n)
		if err != nil {
			return nil, 0, fmt.Errorf("count extensions: %w", err)
		}
		if fast = ndom == 1; fast {
			counts[doms[0].ID] = n
		}
	}
	if !fast {
		rows, err := db.sql.QueryContext(ctx, cq+search+" GROUP BY e.domain_id", cargs...)
		if err != nil {
			return nil, 0, fmt.Errorf("count extensions: %w", err)
		}
		for rows.Next() {
			var id int64
			var n int
			if err := rows.Scan(&id, &n); err != nil {
				rows.Close()
				return nil, 0, fmt.Errorf("count extensions: %w", err)
			}
			counts[id] = n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, 0, fmt.Errorf("count extensions: %w", err)
		}
	}
	return store.PageExtensions(q, doms, counts, func(d store.Domain, r store.NumberRange, offset, limit int) ([]store.Extension, error) {
		pq := "SELECT " + extColumns + " FROM extensions e JOIN domains d ON d.id = e.domain_id WHERE e.domain_id = ?" + search
		pargs := append([]any{d.ID}, args...)
		switch {
		case r.Longer:
			pq += " AND length(e.number) > ? ORDER BY length(e.number), e.number"
			pargs = append(pargs, r.Length)
		case r.After != "":
			pq += " AND length(e.number) = ? AND e.number > ? ORDER BY e.number"
			pargs = append(pargs, r.Length, r.After)
		default:
			pq += " ORDER BY length(e.number), e.number"
		}
		pq += " LIMIT ? OFFSET ?"
		pargs = append(pargs, limit, offset)
		rows, err := db.sql.QueryContext(ctx, pq, pargs...)
		if err != nil {
			return nil, fmt.Errorf("list extensions of %s: %w", d.Name, err)
		}
		defer rows.Close()
		var out []store.Extension
		for rows.Next() {
			e, err := scanExt(rows)
			if err != nil {
				return nil, fmt.Errorf("list extensions of %s: %w", d.Name, err)
			}
			out = append(out, e)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("list extensions of %s: %w", d.Name, err)
		}
		return out, nil
	})
}
