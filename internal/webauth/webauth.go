// Package webauth holds the credentials of the web console and the HTTP
// API, shared by `switchboard admin` and package web: admin names and
// password rules, bcrypt password hashes, and API tokens (256-bit random,
// shown once, stored as their SHA-256 hash).
package webauth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Cost is the bcrypt cost of admin password hashes (about 50-100 ms on a
// small server: slow for a guesser, fine for a login).
const Cost = 11

// MinPassword and MaxPassword bound an admin password's length in bytes
// (bcrypt reads at most 72).
const (
	MinPassword = 10
	MaxPassword = 72
)

// TokenPrefix starts every API token, so that a leaked one is easy to
// recognise (and to search for in code).
const TokenPrefix = "sbt_"

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$`)

// ValidName checks an admin or API token name: 1-64 letters, digits, '.',
// '_', '@' or '-', starting with a letter or digit.
func ValidName(what, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("invalid %s name %q: use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit (e.g. alice)", what, name)
	}
	return nil
}

// CheckPassword rejects an admin password that is too short, too long or
// common, saying why.
func CheckPassword(name, pw string) error {
	switch {
	case len(pw) < MinPassword:
		return fmt.Errorf("password too short: use at least %d characters", MinPassword)
	case len(pw) > MaxPassword:
		return fmt.Errorf("password too long: use at most %d bytes", MaxPassword)
	case strings.EqualFold(pw, name) || strings.Contains(strings.ToLower(pw), "switchboard") ||
		strings.Contains(strings.ToLower(pw), "password") || strings.Trim(pw, pw[:1]) == "":
		return errors.New("password too easy to guess: avoid the name, 'password', 'switchboard' and repeated characters")
	}
	return nil
}

// HashPassword returns the bcrypt hash of pw.
func HashPassword(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), Cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// dummyHash is compared against when the admin does not exist, so that a
// login for an unknown name takes as long as one with a wrong password. It
// is a constant bcrypt hash of cost Cost (of "not a password of anyone";
// the answer is false whatever matches it), not computed at start: hashing
// at package init cost every CLI command a bcrypt round (about 0.1 s, 2 s
// under the race detector). TestDummyHashCost keeps its cost equal to Cost.
const dummyHash = "$2a$11$dfpPhVUZ95eZjRaON087I.5RAVe9rf5hQu.k415FxsXPEXtCIAWjC"

// VerifyPassword reports whether pw matches hash (bcrypt compares in
// constant time). An empty hash (unknown admin) is compared against a
// dummy so that the answer takes as long, and is false.
func VerifyPassword(hash, pw string) bool {
	if hash == "" {
		_ = bcrypt.CompareHashAndPassword([]byte(dummyHash), []byte(pw))
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}

// NewToken returns a new API token (TokenPrefix and 256 random bits,
// base64url), its SHA-256 hash to store and the prefix to list it by.
func NewToken() (token, hash, prefix string, err error) {
	token, err = RandomString(32)
	if err != nil {
		return "", "", "", err
	}
	token = TokenPrefix + token
	return token, HashToken(token), token[:len(TokenPrefix)+6], nil
}

// HashToken returns the hex SHA-256 hash of an API token (or of a session
// id): what is stored and looked up.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// SameHash compares two hashes in constant time.
func SameHash(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// RandomString returns n random bytes, base64url without padding.
func RandomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
