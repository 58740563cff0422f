package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-pbx/switchboard/internal/store/pgtest"
)

// pg is the PostgreSQL server of the tests that need one, started by the
// first of them (initdb, pg_ctl; or $SWITCHBOARD_TEST_PG) and stopped
// after the last test.
var pg pgtest.Lazy

func TestMain(m *testing.M) {
	setDefaultParallel()
	code := m.Run()
	if err := pg.Stop(); err != nil {
		println("postgres:", err.Error())
	}
	removeBinary()
	os.Exit(code)
}

// pgURL returns a fresh PostgreSQL database's URL with a password in it
// (the test server trusts local connections, so any password works), to
// check that the password is never printed.
func pgURL(t *testing.T) string {
	t.Helper()
	u := pg.NewDB(t)
	return strings.Replace(u, "postgres@", "postgres:pw-never-shown@", 1)
}

// sipsakRegister registers ext (password pw) from contact with sipsak and
// fails the test unless it gets 200.
func sipsakRegister(t *testing.T, s *Server, ext, pw, contact string) {
	t.Helper()
	Need(t, "sipsak")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "sipsak", "-U", "-C", contact, "-x", "300",
		"-s", "sip:"+ext+"@"+s.Addr, "-u", ext, "-a", pw).CombinedOutput()
	if err != nil {
		t.Fatalf("sipsak REGISTER %s: %v\n%s\nserver log:\n%s", ext, err, out, s.Log())
	}
}

// pgBindings counts the bindings of ext in the PostgreSQL database.
func pgBindings(t *testing.T, url, ext string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM bindings WHERE extension = $1", ext).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPostgresServe: `serve --db postgres://...` keeps everything in
// PostgreSQL: an extension added by the CLI with --db authenticates a
// sipsak REGISTER (200), the binding is a row in PostgreSQL (no SQLite file
// in the data directory), and it is still there after a restart. The
// URL's password shows nowhere: not in the log, not in db status.
func TestPostgresServe(t *testing.T) {
	t.Parallel()
	Need(t, "sipsak")
	url := pgURL(t)
	data := t.TempDir()
	s := Start(t, data, "--db", url)
	s.DB = url
	s.AddExt("2001", "secret-2001-x")
	sipsakRegister(t, s, "2001", "secret-2001-x", "sip:2001@127.0.0.47:5999")
	WaitFor(t, 5*time.Second, "the binding in PostgreSQL", func() bool { return pgBindings(t, url, "2001") == 1 })
	if _, err := os.Stat(filepath.Join(data, "switchboard.db")); err == nil {
		t.Fatal("serve --db postgres:// created an SQLite database in the data directory")
	}
	if _, err := os.Stat(filepath.Join(data, "secret.key")); err != nil {
		t.Fatalf("the data directory keeps secret.key with PostgreSQL: %v", err)
	}
	s.Stop()
	s.Restart()
	regs := s.Regs("2001")
	if len(regs) != 1 || regs[0].Contact != "sip:2001@127.0.0.47:5999" {
		t.Fatalf("after a restart: %+v", regs)
	}
	var st struct {
		Backend string `json:"backend"`
		Version int    `json:"schema_version"`
		Pending int    `json:"pending_migrations"`
	}
	s.JSON(&st, "db", "status")
	if st.Backend != "postgres" || st.Version == 0 || st.Pending != 0 {
		t.Fatalf("db status: %+v", st)
	}
	out, errOut, code := s.TryCLI("backup", filepath.Join(t.TempDir(), "b.db"))
	if code != 1 || !strings.Contains(errOut, "pg_dump") {
		t.Fatalf("backup on PostgreSQL: exit %d\n%s%s", code, out, errOut)
	}
	dbStatus, _, _ := s.TryCLI("db", "status")
	status := s.CLI("status")
	if !strings.Contains(status, "postgres://postgres:xxxxx@") {
		t.Errorf("status does not name the database:\n%s", status)
	}
	for what, text := range map[string]string{"server log": s.Log(), "db status": dbStatus, "status": status, "backup": errOut} {
		if strings.Contains(text, "pw-never-shown") {
			t.Errorf("the database password shows in the %s:\n%s", what, text)
		}
	}
}

// TestPostgresCopy: `db copy` moves a populated SQLite installation to
// PostgreSQL, all of it, and the phones' passwords still work there; a
// second copy into the now non-empty database is refused.
func TestPostgresCopy(t *testing.T) {
	t.Parallel()
	Need(t, "sipsak")
	s := Start(t, "")
	s.AddExt("2001", "secret-2001-x")
	s.AddExt("2002", "secret-2002-y", "--name", "Front desk")
	s.CLI("acl", "add", "office")
	sipsakRegister(t, s, "2001", "secret-2001-x", "sip:2001@127.0.0.48:5999")
	WaitFor(t, 5*time.Second, "2001 registered", func() bool { return len(s.Regs("2001")) == 1 })
	s.Stop()

	url := pgURL(t)
	out := s.CLI("db", "copy", "--from", "sqlite:"+s.Data, "--to", url)
	if !strings.Contains(out, "copied") || !strings.Contains(out, "extensions  2") || strings.Contains(out, "pw-never-shown") {
		t.Fatalf("db copy printed:\n%s", out)
	}
	if pgBindings(t, url, "2001") != 1 {
		t.Fatal("the binding was not copied")
	}
	_, errOut, code := s.TryCLI("db", "copy", "--from", "sqlite:"+s.Data, "--to", url)
	if code != 1 || !strings.Contains(errOut, "not empty") || !strings.Contains(errOut, "--force") {
		t.Fatalf("second copy: exit %d, %s", code, errOut)
	}

	p := Start(t, t.TempDir(), "--db", url)
	p.DB = url
	var exts []struct {
		Number string `json:"extension"`
		Name   string `json:"name"`
	}
	p.JSON(&exts, "ext", "list")
	if len(exts) != 2 || exts[1].Name != "Front desk" {
		t.Fatalf("extensions on PostgreSQL: %+v", exts)
	}
	sipsakRegister(t, p, "2002", "secret-2002-y", "sip:2002@127.0.0.48:5998")
	sipsakRegister(t, p, "2001", "secret-2001-x", "sip:2001@127.0.0.48:5999")
	WaitFor(t, 5*time.Second, "2002 registered on PostgreSQL", func() bool { return pgBindings(t, url, "2002") == 1 })
	var acls []json.RawMessage
	p.JSON(&acls, "acl", "list")
	if len(acls) != 2 {
		t.Fatalf("ACLs on PostgreSQL: %d, want loopback and office", len(acls))
	}
}

// sipsakTry registers ext from contact with sipsak and returns its output
// and whether it got 200.
func sipsakTry(t *testing.T, s *Server, ext, pw, contact string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "sipsak", "-U", "-C", contact, "-x", "300",
		"-s", "sip:"+ext+"@"+s.Addr, "-u", ext, "-a", pw).CombinedOutput()
	return string(out), err == nil
}

// TestPostgresDownAndBack: with PostgreSQL stopped (pg_ctl stop -m
// immediate, as if it crashed) a REGISTER that needs a write is answered
// 200 from memory (the bounded backlog of "More than one machine"; past
// it, 503) and the doctor says store_unavailable; once PostgreSQL is back
// the same server saves the acknowledged binding, without a restart (the
// pool reconnects). Its own PostgreSQL: stopping the shared one would
// disturb other tests.
func TestPostgresDownAndBack(t *testing.T) {
	t.Parallel()
	Need(t, "sipsak")
	srv, err := pgtest.Start()
	if err != nil {
		(&pgtest.Server{Err: err}).Need(t)
	}
	t.Cleanup(func() { srv.Stop() })
	url := strings.Replace(srv.NewDB(t), "postgres@", "postgres:pw-never-shown@", 1)
	s := Start(t, "", "--db", url)
	s.DB = url
	s.AddExt("2001", "secret-2001-x")
	sipsakRegister(t, s, "2001", "secret-2001-x", "sip:2001@127.0.0.49:5999")

	if err := srv.StopServer("immediate"); err != nil {
		t.Fatal(err)
	}
	up := false
	defer func() {
		if !up {
			srv.StartServer()
		}
	}()
	out, ok := sipsakTry(t, s, "2001", "secret-2001-x", "sip:2001@127.0.0.49:5998")
	if !ok {
		t.Fatalf("REGISTER of a new contact with PostgreSQL down: want 200 from memory, sipsak said:\n%s", out)
	}
	_, errOut, code := s.TryCLI("doctor", "2001")
	if code != 1 || !strings.Contains(errOut, "store_unavailable") || strings.Contains(errOut, "pw-never-shown") {
		t.Fatalf("doctor with PostgreSQL down: exit %d: %s", code, errOut)
	}

	if err := srv.StartServer(); err != nil {
		t.Fatal(err)
	}
	up = true
	WaitFor(t, 40*time.Second, "the binding acknowledged during the outage saved once PostgreSQL is back", func() bool {
		return pgBindings(t, url, "2001") == 2
	})
	sipsakRegister(t, s, "2001", "secret-2001-x", "sip:2001@127.0.0.49:5997")
}
