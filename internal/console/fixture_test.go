package console

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/control"
	"github.com/switchboard-pbx/switchboard/internal/digest"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/location"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// t0 is the fixture's clock.
var t0 = time.Date(2026, 12, 3, 9, 30, 0, 0, time.UTC)

// fakeServer stands in for server.Server's control methods (pure
// plumbing over the real directory, table and journal).
type fakeServer struct {
	db  *sqlite.DB
	dir *directory.Cache
	loc *location.Table
	jw  *journal.Writer
}

func (f *fakeServer) Runtime() control.Runtime {
	return control.Runtime{PID: 4242, StartedAt: t0.Add(-90 * time.Minute), Version: "v-test", Domain: "pbx.test",
		Listeners: []control.Listener{{Proto: "udp", Addr: "127.0.0.1:5060"}, {Proto: "tcp", Addr: "127.0.0.1:5060"}}}
}
func (f *fakeServer) Flush(ctx context.Context) error {
	f.jw.Flush(ctx)
	return f.loc.Flush(ctx)
}
func (f *fakeServer) Sync(ctx context.Context, change int64) (int64, error) {
	_, err := f.dir.Poll(ctx)
	return change, err
}
func (f *fakeServer) RemoveRegistrations(ctx context.Context, domain, ext, contact, by string) ([]store.Binding, error) {
	return f.loc.Remove(ctx, domain, ext, contact)
}

// fakeAdmins is an in-memory AdminService for the page's tests.
type fakeAdmins struct{ names []string }

func (a *fakeAdmins) Admins(context.Context) ([]store.Admin, error) {
	var out []store.Admin
	for _, n := range a.names {
		out = append(out, store.Admin{Name: n, CreatedAt: t0.Add(-24 * time.Hour), PasswordChangedAt: t0.Add(-24 * time.Hour)})
	}
	return out, nil
}
func (a *fakeAdmins) Sessions(*http.Request) []AdminSession {
	return []AdminSession{{ID: "s1", Admin: "alice", RemoteIP: "127.0.0.1", UserAgent: "Firefox", Created: t0.Add(-time.Hour), LastSeen: t0, Current: true},
		{ID: "s2", Admin: "bob", RemoteIP: "192.0.2.9", UserAgent: "Safari", Created: t0.Add(-2 * time.Hour), LastSeen: t0.Add(-time.Minute)}}
}
func (a *fakeAdmins) Add(r *http.Request, name, pw string) error {
	a.names = append(a.names, name)
	return nil
}
func (a *fakeAdmins) Remove(r *http.Request, name string) error {
	return fmt.Errorf("no admin %s", name)
}
func (a *fakeAdmins) ChangeOwnPassword(r *http.Request, cur, pw string) error { return nil }
func (a *fakeAdmins) Revoke(r *http.Request, id string) bool                  { return id == "s2" }

type fixture struct {
	t   testing.TB
	c   *Console
	db  *sqlite.DB
	loc *location.Table
	jw  *journal.Writer
	h   http.Handler
	now time.Time
}

// newFixture opens a database in a temporary directory with domain
// pbx.test and extensions 2001-2003 (2003 disabled), 2001 registered, a
// wrong_password failure for 2002, and the console's pages on a mux.
func newFixture(t *testing.T, extra int) *fixture { return newFixtureTB(t, extra) }

// newFixtureTB is newFixture for tests and benchmarks.
func newFixtureTB(t testing.TB, extra int) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.EnsureDomain(ctx, "pbx.test"); err != nil {
		t.Fatal(err)
	}
	if err := db.SetMeta(ctx, "default_domain", "pbx.test"); err != nil {
		t.Fatal(err)
	}
	add := func(num, name string, enabled bool) {
		e := store.Extension{Domain: "pbx.test", Number: num, CallerIDName: name, Enabled: enabled, MaxRegistrations: 5}
		e.HA1MD5 = digest.HA1(digest.MD5, num, "pbx.test", "secret-pass")
		e.HA1SHA256 = digest.HA1(digest.SHA256, num, "pbx.test", "secret-pass")
		if _, err := db.AddExtension(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	add("2001", "Reception", true)
	add("2002", "Sales <b>desk</b>", true)
	add("2003", "Old fax", false)
	if extra > 0 {
		exts := make([]store.Extension, extra)
		for i := range exts {
			exts[i] = store.Extension{Domain: "pbx.test", Number: fmt.Sprint(3000 + i), Enabled: true, MaxRegistrations: 5,
				HA1MD5: digest.HA1(digest.MD5, fmt.Sprint(3000+i), "pbx.test", "x")}
		}
		if err := db.ImportExtensions(ctx, exts); err != nil {
			t.Fatal(err)
		}
	}
	dir := directory.New(db, log)
	if err := dir.Load(ctx); err != nil {
		t.Fatal(err)
	}
	dir.SetLocal(directory.Local{DefaultDomain: "pbx.test"})
	now := t0
	loc := location.New(db, log, func() time.Time { return now })
	go loc.Run(ctx)
	jw := journal.NewWriter(db, log, journal.Retention{}, 0)
	go jw.Run(ctx)
	srv := &fakeServer{db: db, dir: dir, loc: loc, jw: jw}
	c, err := New(Deps{DB: db, Dir: dir, Loc: loc, Journal: jw, Server: srv, Log: log, Version: "v-test",
		Started: t0.Add(-90 * time.Minute), Now: func() time.Time { return now }, Zone: time.UTC,
		Admin: func(*http.Request) string { return "alice" }, Admins: &fakeAdmins{names: []string{"alice", "bob"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if _, err := loc.Update(ctx, "pbx.test", "2001", func(cur []store.Binding) ([]store.Binding, error) {
		return []store.Binding{{Domain: "pbx.test", Extension: "2001", Contact: "sip:2001@192.0.2.10:5062", Source: "192.0.2.10:5062",
			Transport: "UDP", UserAgent: "Yealink T46U", CallID: "c1", CSeq: 1, RegisteredAt: t0.Add(-2 * time.Minute),
			ExpiresAt: t0.Add(58 * time.Minute)}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	jw.Record(store.Event{Time: t0.Add(-2 * time.Minute), Kind: journal.KindRegister, Cause: cause.Registered, Extension: "2001",
		Domain: "pbx.test", Source: "192.0.2.10:5062", Transport: "UDP", UserAgent: "Yealink T46U", Status: 200})
	jw.Record(store.Event{Time: t0.Add(-1 * time.Minute), Kind: journal.KindRegister, Cause: cause.WrongPassword, Extension: "2002",
		Domain: "pbx.test", AuthUser: "2002", Source: "198.51.100.7:5060", Transport: "UDP", UserAgent: "friendly-scanner", Status: 403})
	jw.Flush(ctx)
	mux := http.NewServeMux()
	c.Register(func(p string, h http.Handler) { mux.Handle(p, h) })
	return &fixture{t: t, c: c, db: db, loc: loc, jw: jw, h: mux, now: now}
}

// get returns the answer to GET path (fragment: with X-Fragment).
func (f *fixture) get(path string, frag bool) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", path, nil)
	if frag {
		r.Header.Set("X-Fragment", "1")
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

func (f *fixture) post(path string, form string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", path, strings.NewReader(form))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

// golden compares got with testdata/name.golden (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/console/ -update)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from %s (run with -update if the change is intended):\n%s", name, path, got)
	}
}
