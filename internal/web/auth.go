package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/webauth"
)

// setupLifetime is how long the one-time setup URL works.
const setupLifetime = 30 * time.Minute

// setupState is the one-time setup token, made at start while no admin
// exists.
type setupState struct {
	create  sync.Mutex // held while the first admin is made
	mu      sync.Mutex
	token   string
	expires time.Time
}

func (s *Server) initSetup(ctx context.Context) error {
	n, err := s.deps.DB.CountAdmins(ctx)
	if err != nil {
		return fmt.Errorf("web: %w", err)
	}
	if n > 0 {
		return nil
	}
	tok, err := webauth.RandomString(32)
	if err != nil {
		return err
	}
	s.setup.mu.Lock()
	s.setup.token, s.setup.expires = tok, s.now().Add(setupLifetime)
	s.setup.mu.Unlock()
	return nil
}

// SetupURL is the one-time setup URL while no admin exists and its token
// is fresh, else "". Before Listen it is a path only.
func (s *Server) SetupURL() string {
	s.setup.mu.Lock()
	tok, exp := s.setup.token, s.setup.expires
	s.setup.mu.Unlock()
	if tok == "" || !s.now().Before(exp) {
		return ""
	}
	return s.URL() + "/setup?token=" + tok
}

// setupOpen reports whether tok is the fresh setup token and no admin
// exists.
func (s *Server) setupOpen(ctx context.Context, tok string) bool {
	s.setup.mu.Lock()
	want, exp := s.setup.token, s.setup.expires
	s.setup.mu.Unlock()
	if want == "" || tok == "" || !s.now().Before(exp) || !webauth.SameHash(tok, want) {
		return false
	}
	n, err := s.deps.DB.CountAdmins(ctx)
	return err == nil && n == 0
}

func (s *Server) closeSetup() {
	s.setup.mu.Lock()
	s.setup.token = ""
	s.setup.mu.Unlock()
}

// cookieName is the session cookie's name: under TLS with the __Host-
// prefix (Secure, no Domain, Path=/ enforced by browsers).
func (s *Server) cookieName() string {
	if s.tls {
		return "__Host-switchboard_session"
	}
	return "switchboard_session"
}

func (s *Server) setSessionCookie(w http.ResponseWriter, secret string) {
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(), Value: secret, Path: "/", HttpOnly: true, Secure: s.tls,
		SameSite: http.SameSiteStrictMode, MaxAge: int(absoluteTimeout / time.Second)})
}

func (s *Server) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(), Value: "", Path: "/", HttpOnly: true, Secure: s.tls,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

// authenticate returns the session of r: a Bearer token (when api is
// true) or the session cookie. The admin must still exist and not have
// changed the password since the session began.
func (s *Server) authenticate(r *http.Request, api bool) (Session, bool) {
	if api {
		if h := r.Header.Get("Authorization"); h != "" {
			return s.tokenSession(r, h)
		}
	}
	c, err := r.Cookie(s.cookieName())
	if err != nil {
		return Session{}, false
	}
	sess, ok := s.sessions.get(c.Value)
	if !ok {
		return Session{}, false
	}
	a, err := s.deps.DB.Admin(r.Context(), sess.Admin)
	if err != nil || a.PasswordChangedAt.After(sess.Created) {
		s.sessions.remove(c.Value)
		return Session{}, false
	}
	return sess, true
}

// tokenSession checks an Authorization header: Bearer and a token whose
// SHA-256 hash is stored (compared in constant time).
func (s *Server) tokenSession(r *http.Request, h string) (Session, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || len(tok) > 200 || !strings.HasPrefix(tok, webauth.TokenPrefix) {
		return Session{}, false
	}
	hash := webauth.HashToken(strings.TrimSpace(tok))
	t, err := s.deps.DB.APITokenByHash(r.Context(), hash)
	if err != nil || !webauth.SameHash(t.Hash, hash) {
		return Session{}, false
	}
	now := s.now()
	if now.Sub(t.LastUsedAt) > time.Minute { // at most one write a minute per token
		_ = s.deps.DB.TouchAPIToken(r.Context(), t.Name, now)
	}
	return Session{Admin: "token " + t.Name, Token: t.Name, Created: now, LastSeen: now, RemoteIP: clientIP(r),
		UserAgent: trim(r.UserAgent(), 200)}, true
}

// requireSession lets authenticated requests through to h; others are
// sent to the login page (GET, HEAD) or refused with 401.
func (s *Server) requireSession(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.authenticate(r, false)
		if !ok {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "not logged in: log in at /login", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r.WithContext(withSession(r.Context(), sess)))
	})
}

// safeNext returns next when it is a path on this site, else "/".
func safeNext(next string) string {
	if next == "" || len(next) > 2000 || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") ||
		strings.ContainsAny(next, "\\\r\n") || strings.HasPrefix(next, "/login") || strings.HasPrefix(next, "/setup") {
		return "/"
	}
	return next
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authenticate(r, false); ok {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.render(w, http.StatusOK, "login", loginData{Next: safeNext(r.URL.Query().Get("next")), Setup: s.SetupURL() != ""})
}

type loginData struct {
	Next, Name, Error string
	Setup             bool
}

// login checks a name and password: per-address and per-name limits,
// bcrypt, then a new session (a new id at each login).
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		s.render(w, http.StatusBadRequest, "login", loginData{Error: "The form could not be read: " + formError(err)})
		return
	}
	name, pw := trim(r.PostFormValue("name"), 64), r.PostFormValue("password")
	next := safeNext(r.PostFormValue("next"))
	ip := clientIP(r)
	keys := []string{"ip " + limitKey(ip), "name " + name}
	data := loginData{Next: next, Name: name}
	if locked, until := s.limiter.locked(keys...); locked {
		s.loginRefused(r, name, cause.LoginLocked, "too many failed logins; locked until "+until.UTC().Format(time.RFC3339))
		w.Header().Set("Retry-After", fmt.Sprint(int(until.Sub(s.now())/time.Second)+1))
		data.Error = fmt.Sprintf("Too many failed logins from this address or for this name: try again in %d minutes, or reset the password with: switchboard admin passwd NAME",
			int(until.Sub(s.now())/time.Minute)+1)
		s.render(w, http.StatusTooManyRequests, "login", data)
		return
	}
	a, err := s.deps.DB.Admin(r.Context(), name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("login: read admin", "error", err)
		data.Error = "The database cannot be read; see the server's log."
		s.render(w, http.StatusServiceUnavailable, "login", data)
		return
	}
	if !s.checkPassword(r.Context(), a.PasswordHash, pw) {
		c, why := cause.WrongPassword, "wrong password"
		if a.Name == "" {
			c, why = cause.UnknownAdmin, "no admin of that name"
		}
		s.loginRefused(r, name, c, why)
		if s.limiter.fail(keys...) {
			data.Error = "Wrong name or password. Too many failures: logins from this address and for this name are locked for 15 minutes."
			s.render(w, http.StatusTooManyRequests, "login", data)
			return
		}
		data.Error = "Wrong name or password."
		s.render(w, http.StatusUnauthorized, "login", data)
		return
	}
	s.limiter.succeed(keys...)
	if c, err := r.Cookie(s.cookieName()); err == nil {
		s.sessions.remove(c.Value) // a new id at each login
	}
	secret, err := s.sessions.create(a.Name, ip, r.UserAgent())
	if err != nil {
		http.Error(w, "cannot start a session: "+err.Error(), http.StatusInternalServerError)
		return
	}
	s.setSessionCookie(w, secret)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// checkPassword runs the bcrypt comparison with at most cap(s.hashing)
// running at once; a request that waits longer than 5 s is refused.
func (s *Server) checkPassword(ctx context.Context, hash, pw string) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	select {
	case s.hashing <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	defer func() { <-s.hashing }()
	return webauth.VerifyPassword(hash, pw)
}

// loginRefused journals a refused console login (kind console, the name
// tried, the client's address); a locked-out client once a minute.
func (s *Server) loginRefused(r *http.Request, name string, c cause.Code, why string) {
	if c == cause.LoginLocked {
		if !s.lockNotes.First(s.lockNotes.Key(parseAddr(clientIP(r)), name)) {
			return
		}
	}
	s.record(journal.Event{Time: s.now(), Kind: journal.KindConsole, Cause: c, AuthUser: name, Source: clientIP(r),
		Transport: s.scheme(), UserAgent: trim(r.UserAgent(), 200), Detail: "console login refused: " + why})
}

func (s *Server) scheme() string {
	if s.tls {
		return "https"
	}
	return "http"
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(s.cookieName()); err == nil {
		s.sessions.remove(c.Value)
	}
	s.clearSessionCookie(w)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

type setupData struct {
	Token, Name, Error string
}

func (s *Server) setupPage(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	if !s.setupOpen(r.Context(), tok) {
		s.setupGone(w)
		return
	}
	s.render(w, http.StatusOK, "setup", setupData{Token: tok})
}

// setupGone answers a setup request once an admin exists, or with a token
// that is wrong or expired: 404.
func (s *Server) setupGone(w http.ResponseWriter) {
	http.Error(w, "404 not found: setup is over or this link expired; create an admin with: switchboard admin add NAME (or restart serve for a new link while no admin exists)", http.StatusNotFound)
}

// setup creates the first admin from the one-time setup URL and logs it
// in.
func (s *Server) setupSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form could not be read: "+formError(err), http.StatusBadRequest)
		return
	}
	tok := r.PostFormValue("token")
	name, pw, pw2 := r.PostFormValue("name"), r.PostFormValue("password"), r.PostFormValue("password2")
	s.setup.create.Lock() // one first admin, even if two forms are sent at once
	defer s.setup.create.Unlock()
	if !s.setupOpen(r.Context(), tok) {
		s.setupGone(w)
		return
	}
	data := setupData{Token: tok, Name: trim(name, 64)}
	problem := ""
	if err := webauth.ValidName("admin", name); err != nil {
		problem = err.Error()
	} else if err := webauth.CheckPassword(name, pw); err != nil {
		problem = err.Error()
	} else if pw != pw2 {
		problem = "the two passwords differ"
	}
	if problem != "" {
		data.Error = problem
		s.render(w, http.StatusBadRequest, "setup", data)
		return
	}
	hash, err := webauth.HashPassword(pw)
	if err == nil {
		err = s.deps.DB.AddAdmin(r.Context(), store.Admin{Name: name, PasswordHash: hash, CreatedAt: s.now()})
	}
	if err != nil {
		data.Error = "cannot create the admin: " + err.Error()
		s.render(w, http.StatusInternalServerError, "setup", data)
		return
	}
	s.closeSetup()
	secret, err := s.sessions.create(name, clientIP(r), r.UserAgent())
	if err != nil {
		http.Error(w, "admin created; cannot start a session: "+err.Error(), http.StatusInternalServerError)
		return
	}
	s.record(journal.Event{Time: s.now(), Kind: journal.KindAdmin, Cause: cause.AdminChanged, AuthUser: name,
		Source: clientIP(r), Transport: s.scheme(), Detail: "admin " + name + " created with the setup link by " + name})
	s.setSessionCookie(w, secret)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func formError(err error) string {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fmt.Sprintf("it is larger than %d bytes", mbe.Limit)
	}
	return err.Error()
}

// limitKey is the address a login limit counts: IPv4 as is, IPv6 by its
// /64 (one host usually holds a whole /64).
func limitKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Unmap().Is4() {
		return ip
	}
	p, _ := a.Prefix(64)
	return p.String()
}
