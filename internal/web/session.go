package web

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/webauth"
)

// Session timeouts and cap.
const (
	idleTimeout     = 30 * time.Minute
	absoluteTimeout = 12 * time.Hour
	// maxSessions caps the sessions kept; a login past it ends the
	// oldest.
	maxSessions = 1000
)

// Session is who made a request: an admin logged in to the console, or an
// API token (Token set, Admin "token NAME").
type Session struct {
	// Admin is the admin's name, or "token NAME" for an API token.
	Admin string `json:"admin"`
	// Token is the API token's name when the request came with one.
	Token string `json:"token,omitempty"`
	// ID is a public handle of a console session (to list and revoke
	// it), not the secret cookie value.
	ID        string    `json:"id,omitempty"`
	Created   time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen_at"`
	RemoteIP  string    `json:"remote_ip"`
	UserAgent string    `json:"user_agent"`
	key       string    // SHA-256 of the cookie value
}

type ctxKey struct{}

// SessionFrom returns the session of an authenticated request's context.
func SessionFrom(ctx context.Context) (Session, bool) {
	s, ok := ctx.Value(ctxKey{}).(Session)
	return s, ok
}

// AdminName returns who made an authenticated request (the admin's name,
// or "token NAME"), "" when nobody is logged in.
func AdminName(r *http.Request) string {
	s, _ := SessionFrom(r.Context())
	return s.Admin
}

func withSession(ctx context.Context, s Session) context.Context {
	return context.WithValue(ctx, ctxKey{}, s)
}

// sessions are the console's logins, in memory: a restart logs every admin
// out. Keys are the SHA-256 of the cookie values, so a lookup's timing
// says nothing about a valid id.
type sessions struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*Session
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{now: now, m: map[string]*Session{}}
}

// create starts a session for admin and returns its secret id (256 bits).
func (ss *sessions) create(admin, ip, ua string) (string, error) {
	secret, err := webauth.RandomString(32)
	if err != nil {
		return "", err
	}
	handle, err := webauth.RandomString(9)
	if err != nil {
		return "", err
	}
	now := ss.now()
	sess := &Session{Admin: admin, ID: handle, Created: now, LastSeen: now, RemoteIP: ip, UserAgent: trim(ua, 200),
		key: webauth.HashToken(secret)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.pruneLocked(now)
	if len(ss.m) >= maxSessions {
		var oldest *Session
		for _, s := range ss.m {
			if oldest == nil || s.Created.Before(oldest.Created) {
				oldest = s
			}
		}
		delete(ss.m, oldest.key)
	}
	ss.m[sess.key] = sess
	return secret, nil
}

// get returns the live session of a cookie value and marks it used.
func (ss *sessions) get(secret string) (Session, bool) {
	if secret == "" || len(secret) > 100 {
		return Session{}, false
	}
	key := webauth.HashToken(secret)
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[key]
	if !ok {
		return Session{}, false
	}
	if expired(s, now) {
		delete(ss.m, key)
		return Session{}, false
	}
	s.LastSeen = now
	return *s, true
}

func expired(s *Session, now time.Time) bool {
	return now.Sub(s.LastSeen) >= idleTimeout || now.Sub(s.Created) >= absoluteTimeout
}

// remove ends the session of a cookie value.
func (ss *sessions) remove(secret string) {
	ss.mu.Lock()
	delete(ss.m, webauth.HashToken(secret))
	ss.mu.Unlock()
}

// removeAdmin ends every session of admin except the one with handle keep.
func (ss *sessions) removeAdmin(admin, keep string) int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	n := 0
	for k, s := range ss.m {
		if s.Admin == admin && s.ID != keep {
			delete(ss.m, k)
			n++
		}
	}
	return n
}

// revoke ends the session with the public handle id.
func (ss *sessions) revoke(id string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, s := range ss.m {
		if s.ID == id {
			delete(ss.m, k)
			return true
		}
	}
	return false
}

// list returns the live sessions, newest first.
func (ss *sessions) list() []Session {
	now := ss.now()
	ss.mu.Lock()
	ss.pruneLocked(now)
	out := make([]Session, 0, len(ss.m))
	for _, s := range ss.m {
		out = append(out, *s)
	}
	ss.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out
}

func (ss *sessions) pruneLocked(now time.Time) {
	for k, s := range ss.m {
		if expired(s, now) {
			delete(ss.m, k)
		}
	}
}

// Sessions returns the console sessions in force, newest first (for the
// Admins page).
func (s *Server) Sessions() []Session { return s.sessions.list() }

// RevokeSession ends the console session with the public handle id; it
// reports whether there was one.
func (s *Server) RevokeSession(id string) bool { return s.sessions.revoke(id) }

// EndSessionsOf ends every console session of admin but the one with the
// public handle keep ("" = all); call it after a password change or when
// the admin is removed.
func (s *Server) EndSessionsOf(admin, keep string) int { return s.sessions.removeAdmin(admin, keep) }
