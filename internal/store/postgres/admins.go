package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// The console tables are migration 8's: admins and api_tokens.

var _ store.Admins = (*DB)(nil)

// Admins returns every admin, sorted by name.
func (db *DB) Admins(ctx context.Context) ([]store.Admin, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	rows, err := db.pool.Query(ctx, "SELECT name, password, created_at, password_at FROM admins ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("read admins: %w", err)
	}
	defer rows.Close()
	var out []store.Admin
	for rows.Next() {
		var a store.Admin
		var created, changed int64
		if err := rows.Scan(&a.Name, &a.PasswordHash, &created, &changed); err != nil {
			return nil, fmt.Errorf("read admins: %w", err)
		}
		a.CreatedAt, a.PasswordChangedAt = fromMs(created), fromMs(changed)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read admins: %w", err)
	}
	return out, nil
}

// Admin returns one admin (store.ErrNotFound).
func (db *DB) Admin(ctx context.Context, name string) (store.Admin, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	a := store.Admin{Name: name}
	var created, changed int64
	err := db.pool.QueryRow(ctx, "SELECT password, created_at, password_at FROM admins WHERE name = $1", name).
		Scan(&a.PasswordHash, &created, &changed)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Admin{}, fmt.Errorf("admin %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return store.Admin{}, fmt.Errorf("read admin %s: %w", name, err)
	}
	a.CreatedAt, a.PasswordChangedAt = fromMs(created), fromMs(changed)
	return a, nil
}

// CountAdmins returns how many admins exist.
func (db *DB) CountAdmins(ctx context.Context) (int, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var n int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM admins").Scan(&n); err != nil {
		return 0, fmt.Errorf("count admins: %w", err)
	}
	return n, nil
}

// AddAdmin creates a (store.ErrDuplicate when the name is taken).
func (db *DB) AddAdmin(ctx context.Context, a store.Admin) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	now := time.Now()
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now
	}
	if a.PasswordChangedAt.IsZero() {
		a.PasswordChangedAt = a.CreatedAt
	}
	_, err := db.pool.Exec(ctx, "INSERT INTO admins(name, password, created_at, password_at) VALUES ($1, $2, $3, $4)",
		a.Name, a.PasswordHash, a.CreatedAt.UnixMilli(), a.PasswordChangedAt.UnixMilli())
	if isUnique(err) {
		return fmt.Errorf("admin %s: %w", a.Name, store.ErrDuplicate)
	}
	if err != nil {
		return fmt.Errorf("add admin %s: %w", a.Name, err)
	}
	return nil
}

// SetAdminPassword replaces an admin's password hash (store.ErrNotFound).
func (db *DB) SetAdminPassword(ctx context.Context, name, hash string, at time.Time) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, "UPDATE admins SET password = $1, password_at = $2 WHERE name = $3", hash, at.UnixMilli(), name)
	return affected("set password of admin "+name, tag, err)
}

// RemoveAdmin deletes an admin (store.ErrNotFound).
func (db *DB) RemoveAdmin(ctx context.Context, name string) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, "DELETE FROM admins WHERE name = $1", name)
	return affected("remove admin "+name, tag, err)
}

// APITokens returns every token, sorted by name.
func (db *DB) APITokens(ctx context.Context) ([]store.APIToken, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	rows, err := db.pool.Query(ctx, "SELECT name, hash, prefix, created_at, last_used_at FROM api_tokens ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("read api tokens: %w", err)
	}
	defer rows.Close()
	var out []store.APIToken
	for rows.Next() {
		var t store.APIToken
		var created, used int64
		if err := rows.Scan(&t.Name, &t.Hash, &t.Prefix, &created, &used); err != nil {
			return nil, fmt.Errorf("read api tokens: %w", err)
		}
		t.CreatedAt, t.LastUsedAt = fromMs(created), fromMs(used)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read api tokens: %w", err)
	}
	return out, nil
}

// APITokenByHash returns the token whose hash is hash (store.ErrNotFound).
func (db *DB) APITokenByHash(ctx context.Context, hash string) (store.APIToken, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	t := store.APIToken{Hash: hash}
	var created, used int64
	err := db.pool.QueryRow(ctx, "SELECT name, prefix, created_at, last_used_at FROM api_tokens WHERE hash = $1", hash).
		Scan(&t.Name, &t.Prefix, &created, &used)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.APIToken{}, fmt.Errorf("api token: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.APIToken{}, fmt.Errorf("read api token: %w", err)
	}
	t.CreatedAt, t.LastUsedAt = fromMs(created), fromMs(used)
	return t, nil
}

// AddAPIToken stores t (store.ErrDuplicate when the name is taken).
func (db *DB) AddAPIToken(ctx context.Context, t store.APIToken) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if t.CreatedAt.IsZero() {
		t.CreatedAt = time.Now()
	}
	_, err := db.pool.Exec(ctx, "INSERT INTO api_tokens(name, hash, prefix, created_at) VALUES ($1, $2, $3, $4)",
		t.Name, t.Hash, t.Prefix, t.CreatedAt.UnixMilli())
	if isUnique(err) {
		return fmt.Errorf("api token %s: %w", t.Name, store.ErrDuplicate)
	}
	if err != nil {
		return fmt.Errorf("add api token %s: %w", t.Name, err)
	}
	return nil
}

// TouchAPIToken records that the token was used at at.
func (db *DB) TouchAPIToken(ctx context.Context, name string, at time.Time) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if _, err := db.pool.Exec(ctx, "UPDATE api_tokens SET last_used_at = $1 WHERE name = $2", at.UnixMilli(), name); err != nil {
		return fmt.Errorf("api token %s: %w", name, err)
	}
	return nil
}

// RemoveAPIToken deletes a token (store.ErrNotFound).
func (db *DB) RemoveAPIToken(ctx context.Context, name string) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, "DELETE FROM api_tokens WHERE name = $1", name)
	return affected("remove api token "+name, tag, err)
}

// affected turns an UPDATE or DELETE that touched no row into
// store.ErrNotFound.
func affected(what string, tag pgconn.CommandTag, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}
