package store

import (
	"context"
	"time"
)

// Admin is a person who may use the web console and the HTTP API. Only a
// password hash is stored (bcrypt, see package web); the password itself
// never is.
type Admin struct {
	Name         string    `json:"name"`
	PasswordHash string    `json:"-"`
	CreatedAt    time.Time `json:"created_at"`
	// PasswordChangedAt is when the password was last set.
	PasswordChangedAt time.Time `json:"password_changed_at"`
}

// APIToken is a bearer token for the HTTP API (`switchboard admin token
// add NAME`). The token is shown once when made; only its SHA-256 hash is
// stored. Prefix is its first characters, to tell tokens apart in a
// listing.
type APIToken struct {
	Name       string    `json:"name"`
	Hash       string    `json:"-"`
	Prefix     string    `json:"prefix"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
}

// Admins stores console administrators and API tokens. Names are unique
// (case-sensitive). Not-found errors wrap ErrNotFound, taken names
// ErrDuplicate.
type Admins interface {
	// Admins returns every admin, sorted by name.
	Admins(ctx context.Context) ([]Admin, error)
	// Admin returns one admin.
	Admin(ctx context.Context, name string) (Admin, error)
	// CountAdmins returns how many admins exist.
	CountAdmins(ctx context.Context) (int, error)
	// AddAdmin creates a.
	AddAdmin(ctx context.Context, a Admin) error
	// SetAdminPassword replaces an admin's password hash.
	SetAdminPassword(ctx context.Context, name, hash string, at time.Time) error
	// RemoveAdmin deletes an admin.
	RemoveAdmin(ctx context.Context, name string) error

	// APITokens returns every token, sorted by name.
	APITokens(ctx context.Context) ([]APIToken, error)
	// APITokenByHash returns the token whose hash is hash.
	APITokenByHash(ctx context.Context, hash string) (APIToken, error)
	// AddAPIToken stores t.
	AddAPIToken(ctx context.Context, t APIToken) error
	// TouchAPIToken records that the token was used at at.
	TouchAPIToken(ctx context.Context, name string, at time.Time) error
	// RemoveAPIToken deletes a token.
	RemoveAPIToken(ctx context.Context, name string) error
}
