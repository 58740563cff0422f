package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Domain names are compared case-insensitively (lower(name), whose unique
// index is domains_name); bindings and the journal keep the exact name,
// as in store/sqlite.

// Domains lists every domain, by name.
func (db *DB) Domains(ctx context.Context) ([]store.Domain, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	rows, err := db.pool.Query(ctx, `SELECT id, name, realm, enabled, created_at FROM domains ORDER BY lower(name) COLLATE "C"`)
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
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	return out, nil
}

// Domain returns one domain by name (case-insensitive), or store.ErrNotFound.
func (db *DB) Domain(ctx context.Context, name string) (store.Domain, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var d store.Domain
	var created int64
	err := db.pool.QueryRow(ctx, "SELECT id, name, realm, enabled, created_at FROM domains WHERE lower(name) = lower($1)", name).
		Scan(&d.ID, &d.Name, &d.Realm, &d.Enabled, &created)
	if errors.Is(err, pgx.ErrNoRows) {
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
	ctx, cancel := db.bound(ctx)
	defer cancel()
	return db.AddDomain(ctx, name, "")
}

// AddDomain returns the domain, creating it (enabled) with the given digest
// realm ("" = its name) when missing. An existing domain is returned as it
// is, whatever its realm.
func (db *DB) AddDomain(ctx context.Context, name, realm string) (store.Domain, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if realm == "" {
		realm = name
	}
	if _, err := db.pool.Exec(ctx,
		"INSERT INTO domains(name, realm, enabled, created_at) VALUES ($1, $2, TRUE, $3) ON CONFLICT ((lower(name))) DO NOTHING",
		name, realm, time.Now().UnixMilli()); err != nil {
		return store.Domain{}, fmt.Errorf("create domain %s: %w", name, err)
	}
	return db.Domain(ctx, name)
}

// RenameDomain gives a domain a new name in one transaction: its
// extensions, its registrations and, when it is the default domain, the
// default follow; its digest realm stays. The change feed carries a
// "domain-renamed" entry keyed "OLD NEW". It fails with store.ErrNotFound
// when old does not exist and store.ErrDuplicate when new does.
func (db *DB) RenameDomain(ctx context.Context, old, new string) (store.Domain, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return store.Domain{}, fmt.Errorf("rename domain %s: %w", old, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var canon string
	err = tx.QueryRow(ctx, "SELECT name FROM domains WHERE lower(name) = lower($1)", old).Scan(&canon)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Domain{}, fmt.Errorf("domain %s: %w", old, store.ErrNotFound)
	}
	if err != nil {
		return store.Domain{}, fmt.Errorf("rename domain %s: %w", old, err)
	}
	if _, err := tx.Exec(ctx, "UPDATE domains SET name = $1 WHERE name = $2", new, canon); err != nil {
		if isUnique(err) {
			return store.Domain{}, fmt.Errorf("domain %s: %w", new, store.ErrDuplicate)
		}
		return store.Domain{}, fmt.Errorf("rename domain %s: %w", canon, err)
	}
	for _, q := range []string{
		"UPDATE bindings SET domain = $1 WHERE domain = $2",
		"UPDATE meta SET value = $1 WHERE key = 'default_domain' AND value = $2",
	} {
		if _, err := tx.Exec(ctx, q, new, canon); err != nil {
			return store.Domain{}, fmt.Errorf("rename domain %s: %w", canon, err)
		}
	}
	if _, err := tx.Exec(ctx, "SELECT sb_change('domain-renamed', $1)", canon+" "+new); err != nil {
		return store.Domain{}, fmt.Errorf("rename domain %s: %w", canon, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return store.Domain{}, fmt.Errorf("rename domain %s: commit: %w", canon, err)
	}
	return db.Domain(ctx, new)
}

// SetDefaultDomain makes an existing domain the default one, with a
// "default-domain" entry in the change feed for a running server.
func (db *DB) SetDefaultDomain(ctx context.Context, name string) (store.Domain, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	d, err := db.Domain(ctx, name)
	if err != nil {
		return d, err
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return d, fmt.Errorf("set default domain: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "INSERT INTO meta(key, value) VALUES ('default_domain', $1) ON CONFLICT(key) DO UPDATE SET value = excluded.value", d.Name); err != nil {
		return d, fmt.Errorf("set default domain: %w", err)
	}
	if _, err := tx.Exec(ctx, "SELECT sb_change('default-domain', $1)", d.Name); err != nil {
		return d, fmt.Errorf("set default domain: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return d, fmt.Errorf("set default domain: commit: %w", err)
	}
	return d, nil
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
	ctx, cancel := db.bound(ctx)
	defer cancel()
	q := "SELECT " + extColumns + " FROM extensions e JOIN domains d ON d.id = e.domain_id"
	var args []any
	if domain != "" {
		q += " WHERE lower(d.name) = lower($1)"
		args = append(args, domain)
	}
	q += ` ORDER BY lower(d.name) COLLATE "C", length(e.number), e.number COLLATE "C"`
	rows, err := db.pool.Query(ctx, q, args...)
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
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list extensions: %w", err)
	}
	return out, nil
}

// Extension returns one extension, or an error wrapping store.ErrNotFound.
func (db *DB) Extension(ctx context.Context, domain, number string) (store.Extension, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	row := db.pool.QueryRow(ctx, "SELECT "+extColumns+
		" FROM extensions e JOIN domains d ON d.id = e.domain_id WHERE lower(d.name) = lower($1) AND e.number = $2", domain, number)
	e, err := scanExt(row)
	if errors.Is(err, pgx.ErrNoRows) {
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
	ctx, cancel := db.bound(ctx)
	defer cancel()
	d, err := db.Domain(ctx, e.Domain)
	if err != nil {
		return e, err
	}
	now := time.Now()
	err = db.pool.QueryRow(ctx, `INSERT INTO extensions(domain_id, number, ha1_md5, ha1_sha256, enabled,
		cid_name, cid_number, description, max_registrations, call_timeout, acl, created_at, updated_at)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) RETURNING id`,
		d.ID, e.Number, e.HA1MD5, e.HA1SHA256, e.Enabled, e.CallerIDName, e.CallerIDNumber, e.Description,
		e.MaxRegistrations, e.CallTimeout, e.ACL, now.UnixMilli(), now.UnixMilli()).Scan(&e.ID)
	if isUnique(err) {
		return e, fmt.Errorf("extension %s@%s: %w", e.Number, d.Name, store.ErrDuplicate)
	}
	if pgCode(err) == "23503" { // the domain went meanwhile
		return e, fmt.Errorf("domain %s: %w", e.Domain, store.ErrNotFound)
	}
	if err != nil {
		return e, fmt.Errorf("add extension %s@%s: %w", e.Number, d.Name, err)
	}
	e.Domain = d.Name
	e.CreatedAt, e.UpdatedAt = now, now
	return e, nil
}

// UpdateExtension writes every field of an existing extension (found by
// domain and number).
func (db *DB) UpdateExtension(ctx context.Context, e store.Extension) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, `UPDATE extensions SET ha1_md5=$1, ha1_sha256=$2, enabled=$3, cid_name=$4,
		cid_number=$5, description=$6, max_registrations=$7, call_timeout=$8, acl=$9, updated_at=$10
		WHERE number = $11 AND domain_id = (SELECT id FROM domains WHERE lower(name) = lower($12))`,
		e.HA1MD5, e.HA1SHA256, e.Enabled, e.CallerIDName, e.CallerIDNumber, e.Description, e.MaxRegistrations,
		e.CallTimeout, e.ACL, time.Now().UnixMilli(), e.Number, e.Domain)
	if err != nil {
		return fmt.Errorf("update extension %s@%s: %w", e.Number, e.Domain, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("extension %s@%s: %w", e.Number, e.Domain, store.ErrNotFound)
	}
	return nil
}

// RemoveExtension deletes an extension and its bindings.
func (db *DB) RemoveExtension(ctx context.Context, domain, number string) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("remove extension %s@%s: %w", number, domain, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	tag, err := tx.Exec(ctx,
		"DELETE FROM extensions WHERE number = $1 AND domain_id = (SELECT id FROM domains WHERE lower(name) = lower($2))", number, domain)
	if err != nil {
		return fmt.Errorf("remove extension %s@%s: %w", number, domain, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("extension %s@%s: %w", number, domain, store.ErrNotFound)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM bindings WHERE domain = $1 AND extension = $2", domain, number); err != nil {
		return fmt.Errorf("remove bindings of %s@%s: %w", number, domain, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("remove extension %s@%s: commit: %w", number, domain, err)
	}
	return nil
}

// RemoveDomain deletes a domain with its extensions and their bindings in
// one transaction and returns how many extensions went with it. It fails
// with store.ErrNotFound when the domain does not exist.
func (db *DB) RemoveDomain(ctx context.Context, name string) (int, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("remove domain %s: %w", name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var id int64
	var canon string
	err = tx.QueryRow(ctx, "SELECT id, name FROM domains WHERE lower(name) = lower($1)", name).Scan(&id, &canon)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("domain %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("remove domain %s: %w", name, err)
	}
	tag, err := tx.Exec(ctx, "DELETE FROM extensions WHERE domain_id = $1", id)
	if err != nil {
		return 0, fmt.Errorf("remove extensions of domain %s: %w", canon, err)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM bindings WHERE domain = $1", canon); err != nil {
		return 0, fmt.Errorf("remove bindings of domain %s: %w", canon, err)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM domains WHERE id = $1", id); err != nil {
		return 0, fmt.Errorf("remove domain %s: %w", canon, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("remove domain %s: commit: %w", canon, err)
	}
	return int(tag.RowsAffected()), nil
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
// The rows go in one batch (one round trip) after a check of the domains
// and of duplicates.
func (db *DB) ImportExtensions(ctx context.Context, exts []store.Extension) error {
	if len(exts) == 0 {
		return nil
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	now := time.Now().UnixMilli()
	b := &pgx.Batch{}
	for _, e := range exts {
		b.Queue(`INSERT INTO extensions(domain_id, number, ha1_md5, ha1_sha256, enabled,
		cid_name, cid_number, description, max_registrations, call_timeout, acl, created_at, updated_at)
		VALUES ((SELECT id FROM domains WHERE lower(name) = lower($1)),$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)`,
			e.Domain, e.Number, e.HA1MD5, e.HA1SHA256, e.Enabled, e.CallerIDName,
			e.CallerIDNumber, e.Description, e.MaxRegistrations, e.CallTimeout, e.ACL, now, now)
	}
	res := tx.SendBatch(ctx, b)
	for i, e := range exts {
		_, err := res.Exec()
		switch {
		case err == nil:
			continue
		case isUnique(err):
			err = fmt.Errorf("extension %s@%s: %w", e.Number, e.Domain, store.ErrDuplicate)
		case isNotNull(err):
			err = fmt.Errorf("domain %s: %w", e.Domain, store.ErrNotFound)
		default:
			err = fmt.Errorf("extension %s@%s: %w", e.Number, e.Domain, err)
		}
		res.Close()
		return &ImportError{Index: i, Err: err}
	}
	if err := res.Close(); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("import: commit: %w", err)
	}
	return nil
}

// Counts returns how many domains and extensions exist.
func (db *DB) Counts(ctx context.Context) (domains, extensions int, err error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	err = db.pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM domains), (SELECT count(*) FROM extensions)").
		Scan(&domains, &extensions)
	if err != nil {
		err = fmt.Errorf("count directory: %w", err)
	}
	return
}

// ChangesSince returns up to limit change-feed entries after seq.
func (db *DB) ChangesSince(ctx context.Context, seq int64, limit int) ([]store.Change, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	rows, err := db.pool.Query(ctx, "SELECT seq, kind, key FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2", seq, limit)
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
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read changes: %w", err)
	}
	return out, nil
}

// LastChange returns the newest change-feed sequence number (0 when empty).
func (db *DB) LastChange(ctx context.Context) (int64, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var seq int64
	if err := db.pool.QueryRow(ctx, "SELECT coalesce(max(seq), 0) FROM changes").Scan(&seq); err != nil {
		return 0, fmt.Errorf("read changes: %w", err)
	}
	return seq, nil
}

// PruneChanges deletes change-feed entries up to and including seq.
func (db *DB) PruneChanges(ctx context.Context, seq int64) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if _, err := db.pool.Exec(ctx, "DELETE FROM changes WHERE seq <= $1", seq); err != nil {
		return fmt.Errorf("prune changes: %w", err)
	}
	return nil
}

// Notify appends a change-feed entry for kinds without triggers.
func (db *DB) Notify(ctx context.Context, kind, key string) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if _, err := db.pool.Exec(ctx, "SELECT sb_change($1, $2)", kind, key); err != nil {
		return fmt.Errorf("notify %s change: %w", kind, err)
	}
	return nil
}

// ExtensionNumbers returns the numbers of domain's extensions.
func (db *DB) ExtensionNumbers(ctx context.Context, domain string) ([]string, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	return db.column(ctx, `SELECT e.number FROM extensions e JOIN domains d ON d.id = e.domain_id
		WHERE lower(d.name) = lower($1)`, domain)
}

// DomainsWithExtension returns the other domains that have number, sorted.
func (db *DB) DomainsWithExtension(ctx context.Context, number, except string) ([]string, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	return db.column(ctx, `SELECT d.name FROM extensions e JOIN domains d ON d.id = e.domain_id
		WHERE e.number = $1 AND lower(d.name) <> lower($2) ORDER BY lower(d.name) COLLATE "C"`, number, except)
}

// CountRegistrations returns how many bindings are unexpired at now.
func (db *DB) CountRegistrations(ctx context.Context, now time.Time) (int, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var n int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM bindings WHERE expires_at > $1", now.UnixMilli()).Scan(&n); err != nil {
		return 0, fmt.Errorf("count registrations: %w", err)
	}
	return n, nil
}

// column runs a query that returns one text column.
func (db *DB) column(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read directory: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read directory: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read directory: %w", err)
	}
	return out, nil
}

// ListExtensions returns one page of the extensions q selects and how many
// it selects (see store.ExtensionQuery). Each domain's rows are read
// through the index extensions_order (domain, length of the number,
// number), so a cursor page costs the same at any depth; the total is a
// count. The search is ILIKE.
func (db *DB) ListExtensions(ctx context.Context, q store.ExtensionQuery) ([]store.Extension, int, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
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
	// $1 is the domain ID (0: every domain, in the count), $2 the pattern.
	search, pattern := "", ""
	if q.Search != "" {
		pattern = store.LikePattern(q.Search)
		search = ` AND (e.number ILIKE $2 ESCAPE '\' OR e.cid_name ILIKE $2 ESCAPE '\' OR e.description ILIKE $2 ESCAPE '\')`
	}
	var only int64
	if q.Domain != "" {
		only = doms[0].ID
	}
	args := []any{only}
	if search != "" {
		args = append(args, pattern)
	}
	rows, err := db.pool.Query(ctx, "SELECT e.domain_id, count(*) FROM extensions e WHERE ($1::bigint = 0 OR e.domain_id = $1::bigint)"+search+
		" GROUP BY e.domain_id", args...)
	if err != nil {
		return nil, 0, fmt.Errorf("count extensions: %w", err)
	}
	counts := map[int64]int{}
	for rows.Next() {
		var id, n int64
		if err := rows.Scan(&id, &n); err != nil {
			rows.Close()
			return nil, 0, fmt.Errorf("count extensions: %w", err)
		}
		counts[id] = int(n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("count extensions: %w", err)
	}
	return store.PageExtensions(q, doms, counts, func(d store.Domain, r store.NumberRange, offset, limit int) ([]store.Extension, error) {
		pargs := []any{d.ID}
		if search != "" {
			pargs = append(pargs, pattern)
		}
		pq := "SELECT " + extColumns + " FROM extensions e JOIN domains d ON d.id = e.domain_id WHERE e.domain_id = $1" + search
		last := func() string { return fmt.Sprintf("$%d", len(pargs)) } // the newest argument
		switch {
		case r.Longer:
			pargs = append(pargs, r.Length)
			pq += " AND length(e.number) > " + last() + ` ORDER BY length(e.number), e.number COLLATE "C"`
		case r.After != "":
			pargs = append(pargs, r.Length)
			pq += " AND length(e.number) = " + last()
			pargs = append(pargs, r.After)
			pq += ` AND e.number COLLATE "C" > ` + last() + ` ORDER BY e.number COLLATE "C"`
		default:
			pq += ` ORDER BY length(e.number), e.number COLLATE "C"`
		}
		pargs = append(pargs, limit)
		pq += " LIMIT " + last()
		pargs = append(pargs, offset)
		pq += " OFFSET " + last()
		rows, err := db.pool.Query(ctx, pq, pargs...)
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
