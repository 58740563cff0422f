package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
	"github.com/switchboard-pbx/switchboard/internal/webauth"
	"golang.org/x/crypto/bcrypt"
)

// clock is a test clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t     *testing.T
	s     *Server
	db    *sqlite.DB
	jw    *journal.Writer
	clock *clock
	ts    *httptest.Server
}

const testPassword = "correct horse battery"

// newFixture starts the HTTP side on a fresh database, served by an
// httptest server; withAdmin creates admin "alice".
func newFixture(t *testing.T, withAdmin bool, cfg Config) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if withAdmin {
		addAdmin(t, db, "alice", testPassword)
	}
	jw := journal.NewWriter(db, slog.New(slog.DiscardHandler), journal.Retention{}, 1024)
	jctx, stop := context.WithCancel(ctx)
	jdone := make(chan struct{})
	go func() { defer close(jdone); jw.Run(jctx) }()
	t.Cleanup(func() { stop(); <-jdone })
	clk := &clock{t: time.Now()}
	cfg.Now = clk.now
	s, err := New(cfg, Deps{DB: db, Journal: jw})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return &fixture{t: t, s: s, db: db, jw: jw, clock: clk, ts: ts}
}

func addAdmin(t *testing.T, db *sqlite.DB, name, pw string) {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost) // fast: tests log in often
	if err != nil {
		t.Fatal(err)
	}
	if err := db.AddAdmin(context.Background(), store.Admin{Name: name, PasswordHash: string(h)}); err != nil {
		t.Fatal(err)
	}
}

// client returns an HTTP client that does not follow redirects.
func (f *fixture) client() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// do sends a request with same-origin browser headers unless hdr says
// otherwise.
func (f *fixture) do(method, path string, body io.Reader, hdr map[string]string) *http.Response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.ts.URL+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := f.client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { res.Body.Close() })
	return res
}

func readBody(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// login logs in and returns the session cookie.
func (f *fixture) login(name, pw string) (*http.Response, *http.Cookie) {
	f.t.Helper()
	form := url.Values{"name": {name}, "password": {pw}, "next": {"/"}}
	res := f.do("POST", "/login", strings.NewReader(form.Encode()), nil)
	for _, c := range res.Cookies() {
		if c.Name == f.s.cookieName() {
			return res, c
		}
	}
	return res, nil
}

func (f *fixture) events(c cause.Code) []journal.Event {
	f.t.Helper()
	f.jw.Flush(context.Background())
	ev, err := journal.Query(context.Background(), f.db, journal.Filter{Cause: c})
	if err != nil {
		f.t.Fatal(err)
	}
	return ev
}

// TestPagesRedirectToLogin: an authenticated page without a session sends
// a GET to the login page with the page to come back to, and refuses a
// POST with 401.
func TestPagesRedirectToLogin(t *testing.T) {
	f := newFixture(t, true, Config{})
	res := f.do("GET", "/?x=1", nil, nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/login?next=%2F%3Fx%3D1" {
		t.Fatalf("GET / without session: %d Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	f.s.Handle("POST /thing", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("handler ran without a session") }))
	res = f.do("POST", "/thing", strings.NewReader("a=1"), nil)
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST without session: %d, want 401", res.StatusCode)
	}
	res = f.do("GET", "/", nil, map[string]string{"Cookie": f.s.cookieName() + "=forged"})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("GET / with a forged cookie: %d, want 303", res.StatusCode)
	}
}

// TestLoginCookieFlagsAndSession: a good login sets an HttpOnly,
// SameSite=Strict cookie holding 256 bits, the page then shows the admin,
// a second login gets a new id, and logout kills the session server-side.
func TestLoginCookieFlagsAndSession(t *testing.T) {
	f := newFixture(t, true, Config{})
	res, c := f.login("alice", testPassword)
	if res.StatusCode != http.StatusSeeOther || c == nil {
		t.Fatalf("login: %d, cookie %v", res.StatusCode, c)
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure {
		t.Errorf("cookie flags: %+v", c)
	}
	if len(c.Value) < 43 { // 32 bytes base64url
		t.Errorf("session id %d characters, want >= 43", len(c.Value))
	}
	cookie := map[string]string{"Cookie": c.Name + "=" + c.Value}
	res = f.do("GET", "/", nil, cookie)
	if body := readBody(t, res); res.StatusCode != 200 || !strings.Contains(body, "alice") {
		t.Fatalf("GET / logged in: %d %q", res.StatusCode, body)
	}
	_, c2 := f.login("alice", testPassword)
	if c2 == nil || c2.Value == c.Value {
		t.Fatal("a second login must get a new session id")
	}
	res = f.do("POST", "/logout", nil, cookie)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", res.StatusCode)
	}
	if res := f.do("GET", "/", nil, cookie); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("the session still works after logout: %d", res.StatusCode)
	}
}

// TestSessionTimeouts: idle 30 minutes ends a session; so does 12 hours
// of use; a password change ends the sessions begun before it.
func TestSessionTimeouts(t *testing.T) {
	f := newFixture(t, true, Config{})
	get := func(c *http.Cookie) int {
		return f.do("GET", "/", nil, map[string]string{"Cookie": c.Name + "=" + c.Value}).StatusCode
	}
	_, c := f.login("alice", testPassword)
	f.clock.add(29 * time.Minute)
	if get(c) != 200 {
		t.Fatal("session ended before 30 idle minutes")
	}
	f.clock.add(30 * time.Minute)
	if get(c) != http.StatusSeeOther {
		t.Fatal("session alive after 30 idle minutes")
	}
	_, c = f.login("alice", testPassword)
	for range 25 { // 12.5 h of activity every 30 min
		f.clock.add(29 * time.Minute)
		get(c)
	}
	if get(c) != http.StatusSeeOther {
		t.Fatal("session alive after 12 h")
	}
	_, c = f.login("alice", testPassword)
	f.clock.add(time.Second)
	h, _ := bcrypt.GenerateFromPassword([]byte("another long password"), bcrypt.MinCost)
	if err := f.db.SetAdminPassword(context.Background(), "alice", string(h), f.clock.now()); err != nil {
		t.Fatal(err)
	}
	if get(c) != http.StatusSeeOther {
		t.Fatal("session alive after the password changed")
	}
}

// TestCrossSitePostRefused: a state change sent from another site (as a
// browser marks it) is refused with 403 before any handler runs; the same
// request from the console's own page passes.
func TestCrossSitePostRefused(t *testing.T) {
	f := newFixture(t, true, Config{})
	_, c := f.login("alice", testPassword)
	ran := 0
	f.s.Handle("POST /change", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran++ }))
	cookie := c.Name + "=" + c.Value
	res := f.do("POST", "/change", strings.NewReader("a=1"), map[string]string{"Cookie": cookie, "Sec-Fetch-Site": "cross-site"})
	if res.StatusCode != http.StatusForbidden || ran != 0 {
		t.Fatalf("cross-site POST: %d, handler ran %d times", res.StatusCode, ran)
	}
	res = f.do("POST", "/change", strings.NewReader("a=1"), map[string]string{"Cookie": cookie, "Origin": "https://evil.example"})
	if res.StatusCode != http.StatusForbidden || ran != 0 {
		t.Fatalf("POST with a foreign Origin: %d, handler ran %d times", res.StatusCode, ran)
	}
	res = f.do("POST", "/login", strings.NewReader("name=alice&password=x"), map[string]string{"Sec-Fetch-Site": "cross-site"})
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site login POST: %d, want 403", res.StatusCode)
	}
	res = f.do("POST", "/change", strings.NewReader("a=1"), map[string]string{"Cookie": cookie, "Sec-Fetch-Site": "same-origin"})
	if res.StatusCode != 200 || ran != 1 {
		t.Fatalf("same-origin POST: %d, handler ran %d times", res.StatusCode, ran)
	}
}

// TestLoginLockout: five wrong passwords lock the name (also from another
// address) and the address for 15 minutes, even with the right password;
// each failure is journaled with its cause and the password never is.
func TestLoginLockout(t *testing.T) {
	f := newFixture(t, true, Config{})
	for i := range 5 {
		res, c := f.login("alice", "wrong password "+string(rune('a'+i)))
		if c != nil || (i < 4 && res.StatusCode != http.StatusUnauthorized) {
			t.Fatalf("attempt %d: %d, cookie %v", i, res.StatusCode, c)
		}
	}
	res, c := f.login("alice", testPassword)
	if res.StatusCode != http.StatusTooManyRequests || c != nil || res.Header.Get("Retry-After") == "" {
		t.Fatalf("right password while locked: %d, cookie %v, Retry-After %q", res.StatusCode, c, res.Header.Get("Retry-After"))
	}
	if res, _ := f.login("nobody", "whatever it is"); res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("another name from the locked address: %d, want 429", res.StatusCode)
	}
	// The per-name lock holds from another address.
	f.s.limiter.succeed("ip 127.0.0.1")
	if res, _ := f.login("alice", testPassword); res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("locked name from a fresh address: %d, want 429", res.StatusCode)
	}
	f.clock.add(16 * time.Minute)
	if _, c := f.login("alice", testPassword); c == nil {
		t.Fatal("no login after the lock expired")
	}
	wrong := f.events(cause.WrongPassword)
	if len(wrong) != 5 || wrong[0].AuthUser != "alice" || wrong[0].Source != "127.0.0.1" || wrong[0].Kind != journal.KindConsole {
		t.Fatalf("journaled wrong passwords: %+v", wrong)
	}
	for _, e := range wrong {
		if strings.Contains(e.Detail, "wrong password a") {
			t.Fatal("the password reached the journal")
		}
	}
	if locked := f.events(cause.LoginLocked); len(locked) == 0 {
		t.Fatal("locked logins not journaled")
	}
	if unk := f.events(cause.UnknownAdmin); len(unk) != 0 {
		t.Fatalf("a locked attempt was checked: %+v", unk)
	}
}

// TestSetupRoute: the one-time URL creates the first admin and logs it
// in; a wrong token is 404; once an admin exists (or the 30 minutes
// passed) the route is gone.
func TestSetupRoute(t *testing.T) {
	f := newFixture(t, false, Config{})
	u := f.s.SetupURL()
	tok := strings.TrimPrefix(u[strings.Index(u, "?"):], "?token=")
	if u == "" || len(tok) < 43 {
		t.Fatalf("setup URL %q", u)
	}
	if res := f.do("GET", "/setup?token=wrong"+tok[5:], nil, nil); res.StatusCode != 404 {
		t.Fatalf("wrong token: %d", res.StatusCode)
	}
	if res := f.do("GET", "/setup?token="+tok, nil, nil); res.StatusCode != 200 {
		t.Fatalf("setup page: %d", res.StatusCode)
	}
	form := url.Values{"token": {tok}, "name": {"root"}, "password": {"short"}, "password2": {"short"}}
	if res := f.do("POST", "/setup", strings.NewReader(form.Encode()), nil); res.StatusCode != 400 {
		t.Fatalf("weak password: %d", res.StatusCode)
	}
	form.Set("password", testPassword)
	form.Set("password2", testPassword)
	res := f.do("POST", "/setup", strings.NewReader(form.Encode()), nil)
	if res.StatusCode != http.StatusSeeOther || len(res.Cookies()) == 0 {
		t.Fatalf("setup: %d %v", res.StatusCode, res.Cookies())
	}
	if a, err := f.db.Admin(context.Background(), "root"); err != nil || !webauth.VerifyPassword(a.PasswordHash, testPassword) {
		t.Fatalf("admin not stored: %v", err)
	}
	if res := f.do("GET", "/setup?token="+tok, nil, nil); res.StatusCode != 404 {
		t.Fatalf("setup after an admin exists: %d", res.StatusCode)
	}
	if res := f.do("POST", "/setup", strings.NewReader(form.Encode()), nil); res.StatusCode != 404 {
		t.Fatalf("setup POST after an admin exists: %d", res.StatusCode)
	}
	if f.s.SetupURL() != "" {
		t.Fatal("setup URL still offered")
	}
	if ev := f.events(cause.AdminChanged); len(ev) != 1 || ev[0].AuthUser != "root" {
		t.Fatalf("setup not journaled: %+v", ev)
	}

	// Expired: a fresh server without admins, 31 minutes later.
	g := newFixture(t, false, Config{})
	tok = g.s.SetupURL()[strings.Index(g.s.SetupURL(), "=")+1:]
	g.clock.add(31 * time.Minute)
	if res := g.do("GET", "/setup?token="+tok, nil, nil); res.StatusCode != 404 {
		t.Fatalf("expired token: %d", res.StatusCode)
	}
}

// TestSecurityHeaders: every answer, a 404 too, carries the CSP, framing,
// nosniff and referrer headers.
func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t, true, Config{})
	for _, p := range []string{"/login", "/nope", "/static/style.css"} {
		res := f.do("GET", p, nil, nil)
		h := res.Header
		if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") ||
			!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
			h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" ||
			h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", p, h)
		}
	}
}

// TestAssetPathTraversal: asset paths cannot leave the embedded folder.
func TestAssetPathTraversal(t *testing.T) {
	f := newFixture(t, true, Config{})
	if res := f.do("GET", "/static/style.css", nil, nil); res.StatusCode != 200 {
		t.Fatalf("style.css: %d", res.StatusCode)
	}
	for _, p := range []string{"/static/../web.go", "/static/%2e%2e/web.go", "/static/..%2fweb.go", "/static/../../../../etc/passwd",
		"/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/static/", "/static/..\\web.go", "/static//etc/passwd"} {
		res := f.do("GET", p, nil, nil)
		body := readBody(t, res)
		if res.StatusCode == 200 || strings.Contains(body, "package web") || strings.Contains(body, "root:") {
			t.Errorf("%s: %d %q", p, res.StatusCode, body[:min(len(body), 80)])
		}
	}
}

// TestOversizedAndHuge: a login body over the limit gets 400 without
// reaching the password check; a query string over the header limit gets
// 431 from a real listener.
func TestOversizedAndHuge(t *testing.T) {
	f := newFixture(t, true, Config{})
	big := "name=alice&password=" + strings.Repeat("x", maxFormBody)
	if res := f.do("POST", "/login", strings.NewReader(big), nil); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("oversized login: %d", res.StatusCode)
	}
	if ev := f.events(cause.WrongPassword); len(ev) != 0 {
		t.Fatal("an oversized body was checked as a login")
	}
	s, err := New(Config{Addr: "127.0.0.1:0"}, Deps{DB: f.db})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	res, err := http.Get(s.URL() + "/login?q=" + strings.Repeat("a", 2*maxHeaderBytes))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("huge query string: %d, want 431", res.StatusCode)
	}
}

// TestSafeNext: the page to return to after login is a path on this site.
func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{"/extensions?q=1": "/extensions?q=1", "//evil.example": "/",
		"https://evil.example": "/", "/\\evil.example": "/", "": "/", "/login": "/"} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTLSCookie: under TLS the session cookie is Secure with the __Host-
// prefix, and HSTS is sent.
func TestTLSCookie(t *testing.T) {
	f := newFixture(t, true, Config{CertFile: "cert.pem", KeyFile: "key.pem"})
	res, c := f.login("alice", testPassword)
	if c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || !strings.HasPrefix(c.Name, "__Host-") {
		t.Fatalf("TLS cookie: %+v (status %d)", c, res.StatusCode)
	}
	if res.Header.Get("Strict-Transport-Security") == "" {
		t.Fatal("no HSTS under TLS")
	}
}

// TestSessionEndsWithAdmin: removing an admin (as `switchboard admin rm`
// does, from another process) ends its sessions at their next request;
// RevokeSession ends one by its public id.
func TestSessionEndsWithAdmin(t *testing.T) {
	f := newFixture(t, true, Config{})
	addAdmin(t, f.db, "bob", testPassword)
	f.clock.add(time.Second) // the test clock stands still; bob was made after it started
	get := func(c *http.Cookie) int {
		return f.do("GET", "/", nil, map[string]string{"Cookie": c.Name + "=" + c.Value}).StatusCode
	}
	_, a := f.login("alice", testPassword)
	_, b := f.login("bob", testPassword)
	if get(a) != 200 || get(b) != 200 {
		t.Fatal("logins failed")
	}
	if err := f.db.RemoveAdmin(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	if get(a) != http.StatusSeeOther {
		t.Fatal("a removed admin's session still works")
	}
	var id string
	for _, s := range f.s.Sessions() {
		if s.Admin == "bob" {
			id = s.ID
		}
	}
	if id == "" || !f.s.RevokeSession(id) || get(b) != http.StatusSeeOther {
		t.Fatalf("revoke of bob's session %q failed", id)
	}
}

// TestReadyz: /readyz answers 503 with the reason while the server cannot
// serve, 200 once it can; /healthz answers 200 regardless.
func TestReadyz(t *testing.T) {
	f := newFixture(t, true, Config{})
	var notReady error = io.ErrClosedPipe
	s, err := New(Config{}, Deps{DB: f.db, Ready: func(context.Context) error { return notReady }})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "io: read/write on closed pipe") {
		t.Fatalf("not ready: %d %q", rec.Code, rec.Body.String())
	}
	notReady = nil
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 200 {
		t.Fatalf("ready: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 {
		t.Fatalf("healthz: %d", rec.Code)
	}
}

// TestLimitKey: IPv6 clients are limited by their /64.
func TestLimitKey(t *testing.T) {
	if a, b := limitKey("2001:db8::1"), limitKey("2001:db8::ffff:1"); a != b || a != "2001:db8::/64" {
		t.Fatalf("limitKey: %q %q", a, b)
	}
	if limitKey("192.0.2.1") != "192.0.2.1" {
		t.Fatal("IPv4 changed")
	}
}
