// Package console is the web console's pages: server-rendered HTML
// (html/template) with one embedded stylesheet and one plain-JavaScript
// file (no framework, no build step), and the one live channel, an SSE
// stream fed in-process by the journal (see Hub).
//
// The console reads the same services as the CLI and the doctor (the
// store, the directory cache, the location table, the journal) and changes
// things through them; every change is journaled with the admin's name.
// Authentication, sessions, CSRF protection and the JSON API belong to
// package web, which mounts these pages behind its login (Register).
//
// Every page handler renders the whole page, or only its main block when
// the request asks for a fragment (header X-Fragment: 1, or HX-Request),
// which is how app.js swaps parts of a page after a live event.
package console

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/control"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/doctor"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/location"
	"github.com/switchboard-pbx/switchboard/internal/security"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// DB is what the console reads and writes in the store (store/sqlite.DB
// implements it).
type DB interface {
	store.Directory
	store.Journal
	store.Calls
	store.Changes
	security.Backend
	doctor.Store
}

// Server is what the console asks of the running server (server.Server
// implements it): its runtime facts, removing registrations, flushing
// queued writes and applying directory edits at once.
type Server interface {
	Runtime() control.Runtime
	RemoveRegistrations(ctx context.Context, domain, ext, contact, by string) ([]store.Binding, error)
	Flush(ctx context.Context) error
	Sync(ctx context.Context, change int64) (int64, error)
}

// Deps are the services the console uses. DB, Dir, Loc and Server are
// required.
type Deps struct {
	DB      DB
	Dir     *directory.Cache
	Loc     *location.Table
	Journal *journal.Writer
	Server  Server
	Log     *slog.Logger
	// Version and Started are shown on the Overview (zero: the server's
	// Runtime).
	Version string
	Started time.Time
	// Admin returns the name of the admin who made the request ("" when
	// unknown); package web sets it from the session.
	Admin func(r *http.Request) string
	// Audit journals a change the admin made: its cause (e.g.
	// cause.ExtensionChanged) and what changed in plain words (package
	// web's Server.Audit). nil records a KindAdmin event in Journal naming
	// the admin.
	Audit func(r *http.Request, c cause.Code, what string)
	// Admins runs the Admins page (package web); nil: the page answers 404.
	Admins AdminService
	// Import imports a CSV of extensions (see ImportWithCLI); nil: the
	// Extensions page says to use the CLI.
	Import ImportFunc
	// Zone is the time zone of the doctor's text, as the CLI's (nil =
	// time.Local).
	Zone *time.Location
	// Now is the clock (nil = time.Now).
	Now func() time.Time
}

// Console serves the pages. Create with New.
type Console struct {
	d     Deps
	hub   *Hub
	seen  *tracker
	idx   index
	pages map[string]*template.Template

	countsMu      sync.Mutex // guards the counts cache
	countsAt      time.Time
	countsDomains []domainCounts
	countsTotal   domainCounts
}

// New returns the console. It subscribes to the directory cache (call it
// before the server starts watching the change feed) and taps the journal,
// so it must be created once per server.
func New(d Deps) (*Console, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Zone == nil {
		d.Zone = time.Local
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	c := &Console{d: d, hub: NewHub(), seen: newTracker()}
	if err := c.parse(); err != nil {
		return nil, err
	}
	if d.Dir != nil {
		d.Dir.Subscribe(func(directory.Event) { c.idx.invalidate() })
	}
	if d.Journal != nil {
		d.Journal.Tap(c.observe)
	}
	return c, nil
}

// Seed reads the last 24 hours of the journal (at most 20,000 events) so
// that failures before a restart still show. Errors are logged.
func (c *Console) Seed(ctx context.Context) {
	if err := c.seen.seed(ctx, c.d.DB, c.d.Now().Add(-24*time.Hour), 20000); err != nil {
		c.d.Log.Warn("console: read the journal", "error", err)
	}
}

// observe is the journal's tap: remember, then tell the browsers.
func (c *Console) observe(e store.Event) {
	c.seen.observe(e)
	c.hub.Publish(e)
}

// Hub returns the live channel.
func (c *Console) Hub() *Hub { return c.hub }

// Close removes the journal tap and ends the live streams.
func (c *Console) Close() {
	if c.d.Journal != nil {
		c.d.Journal.Tap(nil)
	}
	c.hub.Close()
}

// Register mounts the pages with handle (package web's Handle, which puts
// them behind the login). Patterns use Go 1.22 method and wildcard syntax.
func (c *Console) Register(handle func(pattern string, h http.Handler)) {
	hf := func(p string, f http.HandlerFunc) { handle(p, f) }
	hf("GET /{$}", c.overview)
	hf("GET /extensions", c.extensions)
	hf("GET /extensions/row", c.extensionRow)
	hf("GET /extensions/export.csv", c.exportCSV)
	hf("POST /extensions/add", c.addExtension)
	hf("POST /extensions/bulk", c.bulkExtensions)
	hf("POST /extensions/import", c.importCSV)
	hf("GET /extensions/{domain}/{number}", c.extension)
	hf("POST /extensions/{domain}/{number}", c.editExtension)
	hf("POST /extensions/{domain}/{number}/password", c.newPassword)
	hf("POST /extensions/{domain}/{number}/delete", c.deleteExtension)
	hf("GET /registrations", c.registrations)
	hf("POST /registrations/remove", c.removeRegistrations)
	hf("GET /failed", c.failed)
	hf("POST /bans/remove", c.unban)
	hf("GET /acls", c.acls)
	hf("POST /acls", c.aclEdit)
	hf("GET /calls", c.calls)
	hf("GET /calls/export.csv", c.exportCalls)
	hf("GET /doctor", c.doctorPage)
	hf("GET /journal", c.journalPage)
	hf("GET /admins", c.admins)
	hf("POST /admins", c.adminAction)
	handle("GET /events", c.hub)
	handle("GET /assets/", Assets())
}

// Assets serves the embedded stylesheet and script under /assets/.
func Assets() http.Handler {
	sub, err := fs.Sub(assetFS, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/assets/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

func (c *Console) funcs() template.FuncMap {
	return template.FuncMap{
		"ago":    func(t time.Time) string { return agoAt(t, c.d.Now()) },
		"until":  func(t time.Time) string { return untilAt(t, c.d.Now()) },
		"clock":  clock,
		"lower":  strings.ToLower,
		"extkey": func(domain, number string) string { return strings.ToLower(domain) + "/" + number },
		"join":   strings.Join,
	}
}

// pageNames are the templates in templates/, each defining "title" and
// "main" and rendered inside layout.html.
var pageNames = []string{"overview", "extensions", "extension", "registrations", "failed", "acls", "calls",
	"doctor", "journal", "password", "admins"}

func (c *Console) parse() error {
	c.pages = map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(c.funcs()).ParseFS(templateFS, "templates/layout.html",
			"templates/parts.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("console: parse %s: %w", name, err)
		}
		c.pages[name] = t
	}
	return nil
}

// page is what every page template sees.
type page struct {
	Title  string
	Nav    string // the nav entry to mark as current
	Name   string // the page's template (app.js reads it from data-page)
	Admin  string
	Live   bool // the page listens to the live stream
	Flash  string
	Error  string
	Data   any
	Domain string
}

// fragment reports whether the request asks for the main block only.
func fragment(r *http.Request) bool {
	return r.Header.Get("X-Fragment") != "" || r.Header.Get("HX-Request") != ""
}

// render writes the page name (whole, or its main block for a fragment
// request) with status.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	t := c.pages[name]
	if r != nil && c.d.Admin != nil {
		p.Admin = c.d.Admin(r)
	}
	if p.Nav == "" {
		p.Nav = name
	}
	p.Name = name
	block := "layout.html"
	if r != nil && fragment(r) {
		block = "main"
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, block, p); err != nil {
		c.d.Log.Error("console: render", "page", name, "error", err)
		http.Error(w, "the page could not be rendered: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// admin returns the request's admin name, "admin" when unknown.
func (c *Console) admin(r *http.Request) string {
	if c.d.Admin != nil {
		if n := c.d.Admin(r); n != "" {
			return n
		}
	}
	return "admin"
}

// audit journals a change made by the request's admin.
func (c *Console) audit(r *http.Request, code cause.Code, what string) {
	if c.d.Audit != nil {
		c.d.Audit(r, code, what)
		return
	}
	who := c.admin(r)
	c.d.Journal.Record(store.Event{Kind: journal.KindAdmin, Cause: code, AuthUser: who, Detail: what + " by " + who + " (console)"})
}

// sync makes the running server apply the directory edits just written.
func (c *Console) sync(ctx context.Context) {
	c.idx.invalidate()
	seq, err := c.d.DB.LastChange(ctx)
	if err != nil {
		c.d.Log.Warn("console: read the change feed", "error", err)
		return
	}
	if _, err := c.d.Server.Sync(ctx, seq); err != nil {
		c.d.Log.Warn("console: apply directory change", "error", err)
	}
	c.idx.invalidate()
}

func agoAt(t, now time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func untilAt(t, now time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := t.Sub(now)
	if d < 0 {
		return "expired"
	}
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(d.Seconds()))
	}
	return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}
