package web

import (
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"net/netip"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// routes registers the HTTP side's own routes: authentication, assets,
// health, metrics and the API. Pages are registered with Handle (see
// pages.go).
func (s *Server) routes() {
	s.mux.HandleFunc("GET /login", s.loginPage)
	s.mux.HandleFunc("POST /login", s.login)
	s.mux.HandleFunc("POST /logout", s.logout)
	s.mux.HandleFunc("GET /setup", s.setupPage)
	s.mux.HandleFunc("POST /setup", s.setupSubmit)
	static, _ := fs.Sub(staticFS, "static")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", assets(http.FileServerFS(static))))
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if s.deps.Metrics != nil {
		if s.cfg.OpenMetrics {
			s.mux.Handle("GET /metrics", s.deps.Metrics)
		} else {
			s.mux.Handle("GET /metrics", s.requireAPI(s.deps.Metrics))
		}
	}
	s.apiRoutes()
	s.pages()
}

// assets serves embedded files: no directory listings, cached for an hour.
func assets(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// Handle registers an authenticated page (or form action): requests
// without a session are sent to the login page (GET) or refused (401);
// the handler finds the admin with SessionFrom or AdminName. Bodies are
// limited to 1 MiB. pattern is a net/http ServeMux pattern, e.g.
// "GET /extensions" or "POST /extensions/{number}/delete".
func (s *Server) Handle(pattern string, h http.Handler) {
	s.HandleWithLimit(pattern, maxBody, h)
}

// HandleWithLimit is Handle with another request body limit (e.g. a CSV
// import); a larger body fails to read with *http.MaxBytesError.
func (s *Server) HandleWithLimit(pattern string, limit int64, h http.Handler) {
	s.mux.Handle(pattern, s.requireSession(limitBody(limit, h)))
}

// HandlePublic registers a handler that needs no login (e.g. an asset
// the login page uses). Use sparingly.
func (s *Server) HandlePublic(pattern string, h http.Handler) {
	s.mux.Handle(pattern, limitBody(maxBody, h))
}

func limitBody(limit int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		h.ServeHTTP(w, r)
	})
}

// Audit journals a change an admin made (kind "admin", the admin's name in
// auth_user, the client's address in source): detail says what changed,
// e.g. "extension 2001 disabled"; " by NAME (console)" is appended. c is
// the change's cause, e.g. cause.ExtensionChanged, cause.BanLifted.
func (s *Server) Audit(r *http.Request, c cause.Code, detail string) {
	who := AdminName(r)
	via := "console"
	if sess, _ := SessionFrom(r.Context()); sess.Token != "" {
		via = "API"
	}
	s.record(journal.Event{Time: s.now(), Kind: journal.KindAdmin, Cause: c, AuthUser: who, Source: clientIP(r),
		Transport: s.scheme(), UserAgent: trim(r.UserAgent(), 200), Detail: detail + " by " + who + " (" + via + ")"})
}

// record journals e (nothing when there is no journal).
func (s *Server) record(e journal.Event) {
	if s.deps.Journal != nil {
		s.deps.Journal.Record(e)
	}
}

// Deps returns the services the HTTP side was built with (for pages).
func (s *Server) Deps() Deps { return s.deps }

// Render writes the named template of the console's set with data.
func (s *Server) Render(w http.ResponseWriter, status int, name string, data any) {
	s.render(w, status, name, data)
}

var templates = template.Must(template.New("").ParseFS(templateFS, "templates/*.html"))

func (s *Server) render(w http.ResponseWriter, status int, name string, data any) {
	var b strings.Builder
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		s.log.Error("render", "template", name, "error", err)
		http.Error(w, "the page could not be rendered; see the server's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// secure wraps the whole HTTP side: security headers on every answer,
// cross-origin state changes refused.
func (s *Server) secure(h http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			writeError(w, http.StatusForbidden, "cross-origin request refused: call the API from a script with a Bearer token, or from the console's own pages")
			return
		}
		http.Error(w, "403 forbidden: cross-origin request refused (a form on another site cannot change this server)", http.StatusForbidden)
	}))
	inner := cop.Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		if s.tls {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			hd.Set("Cache-Control", "no-store")
		}
		inner.ServeHTTP(w, r)
	})
}

func parseAddr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}
