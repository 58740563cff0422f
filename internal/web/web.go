// Package web is switchboard's HTTP side: the web console (server-rendered
// pages), the JSON API under /api/v1/, /metrics, /healthz and /readyz. It
// reads and changes the same services the SIP side uses (directory,
// location table, journal, call records, security); it never touches SIP.
//
// Security contract:
//   - No default password: while no admin exists a one-time setup URL
//     (random token, 30 minutes) is printed on stderr; GET /setup is 404
//     once an admin exists.
//   - Console sessions live in memory (a restart logs every admin out):
//     256-bit ids, cookie HttpOnly, SameSite=Strict, Secure under TLS, idle
//     timeout 30 min, absolute 12 h, a new id at each login; logout deletes
//     the session. A session ends too when its admin is removed or the
//     password changes.
//   - The API takes `Authorization: Bearer TOKEN` (see webauth) or a
//     session cookie.
//   - Cross-origin state changes are refused (http.CrossOriginProtection);
//     logins are limited per client address and per name.
//   - Every response carries CSP default-src 'self', frame-ancestors
//     'none', nosniff and no-referrer; bodies, headers, connections and
//     times are bounded.
package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/control"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/location"
	"github.com/switchboard-pbx/switchboard/internal/security"
	storeopen "github.com/switchboard-pbx/switchboard/internal/store/open"
	"github.com/switchboard-pbx/switchboard/internal/trace"
)

// Config is the HTTP side's configuration (from serve's --http flags).
type Config struct {
	// Addr is the listen address, e.g. 127.0.0.1:8080 (port 0: a free one).
	Addr string
	// CertFile and KeyFile, when set, serve HTTPS.
	CertFile, KeyFile string
	// MaxConns caps the connections served at once (0 = 256); further
	// ones wait in the kernel's backlog.
	MaxConns int
	// Now is the clock (nil = time.Now); tests move it.
	Now func() time.Time
	// DataDir is the data directory, shown by /api/v1/status.
	DataDir string
	// OpenMetrics serves /metrics without a token (serve does when the
	// console listens on loopback only).
	OpenMetrics bool
}

// Deps are the services the HTTP side reads and changes: the running
// server's own.
type Deps struct {
	// DB is the database: admins, API tokens, and the listings (journal,
	// call records, extensions, bans).
	DB      storeopen.Backend
	Dir     *directory.Cache
	Loc     *location.Table
	Journal *journal.Writer
	Calls   *calls.Writer
	Sec     *security.Service
	Trace   *trace.Tracer
	// Backend is the running server's control interface: runtime facts,
	// flush, registrations removal, call hangup (nil in some tests).
	Backend control.Backend
	// Ready reports whether the server can serve (listeners bound,
	// database writable), for /readyz; nil means ready.
	Ready func(ctx context.Context) error
	// Metrics serves /metrics (nil: 404). Off loopback it needs an API
	// token or a session, like the API.
	Metrics http.Handler
	// Log gets errors; Stderr gets the one-time setup URL.
	Log    *slog.Logger
	Stderr io.Writer
}

// Limits of the HTTP side.
const (
	// maxBody is the largest request body a handler reads unless it asks
	// for more (HandleWithLimit).
	maxBody = 1 << 20
	// maxFormBody bounds the login and setup forms.
	maxFormBody = 16 << 10
	// maxHeaderBytes bounds the request line (with its query string) and
	// headers; larger ones get 431.
	maxHeaderBytes  = 32 << 10
	defaultMaxConns = 256
)

// Server is the HTTP side. Create with New, bind with Listen, run with
// Serve; Handler serves without a listener (tests).
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	now     func() time.Time
	mux     *http.ServeMux
	handler http.Handler
	tls     bool

	sessions *sessions
	limiter  *loginLimiter
	setup    setupState
	// hashing bounds the bcrypt comparisons running at once (each takes
	// ~50-100 ms of a core): a login flood cannot take the CPU from SIP.
	hashing chan struct{}
	// lockNotes journals a locked-out client once a minute per address
	// and name.
	lockNotes *journal.Throttle

	mu sync.Mutex
	ln net.Listener
}

// New builds the HTTP side and its routes; it binds nothing.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.DB == nil {
		return nil, errors.New("web: no database")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Stderr == nil {
		deps.Stderr = io.Discard
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = defaultMaxConns
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Log, now: now, mux: http.NewServeMux(),
		tls:       cfg.CertFile != "",
		sessions:  newSessions(now),
		limiter:   newLoginLimiter(now),
		hashing:   make(chan struct{}, 2),
		lockNotes: journal.NewThrottle(time.Minute, now),
	}
	if err := s.initSetup(context.Background()); err != nil {
		return nil, err
	}
	s.routes()
	s.handler = s.secure(s.mux)
	return s, nil
}

// Handler is the whole HTTP side as one handler, security headers and
// cross-origin protection included.
func (s *Server) Handler() http.Handler { return s.handler }

// TLS reports whether the console is served over HTTPS.
func (s *Server) TLS() bool { return s.tls }

// Listen binds the configured address (and loads the TLS material), so
// that a mistake stops serve at start with one line.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("--http %s: %w (choose another address with --http ADDR, or --http \"\" to turn the console off)", s.cfg.Addr, err)
	}
	if s.tls {
		cert, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("--http-cert %s / --http-key %s: %w", s.cfg.CertFile, s.cfg.KeyFile, err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	s.mu.Lock()
	s.ln = &limitListener{Listener: ln, sem: make(chan struct{}, s.cfg.MaxConns), done: make(chan struct{})}
	s.mu.Unlock()
	return nil
}

// Addr is the bound address ("" before Listen).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL is the console's base URL, e.g. http://127.0.0.1:8080 (an
// unspecified host is written as 127.0.0.1).
func (s *Server) URL() string {
	addr := s.Addr()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	if s.tls {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// Announce prints the one-time setup URL on Stderr while no admin exists
// (serve calls it once the listener is bound, before serving).
func (s *Server) Announce() {
	if u := s.SetupURL(); u != "" {
		fmt.Fprintf(s.deps.Stderr, "switchboard: no admin yet: open %s within 30 minutes to create the first one (or run: switchboard admin add NAME)\n", u)
	}
}

// Serve serves on the bound listener until ctx ends, then shuts down,
// giving requests in flight 5 s.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln == nil {
		return errors.New("web: Serve before Listen")
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      0, // the live stream (SSE) writes for hours; handlers bound their own work
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}()
	err := srv.Serve(ln)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("web: %w", err)
}

// limitListener accepts at most cap(sem) connections at once; Accept
// waits for one to close.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// clientIP is the address of the request's peer (no proxy header is
// trusted).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// trim cuts s to at most n bytes (for journaling untrusted input).
func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// Close releases the listener of a Server that will not Serve (a start
// that failed after Listen).
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Close()
}
