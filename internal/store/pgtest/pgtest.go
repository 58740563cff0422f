// Package pgtest gives tests a real PostgreSQL server: the one named by
// $SWITCHBOARD_TEST_PG (a URL whose user may create databases), or else a
// private one started from Debian's postgresql binaries (initdb, pg_ctl in
// /usr/lib/postgresql/*/bin) into a temporary directory, listening only on
// a unix socket in that directory. When running as root, the server runs as
// the "postgres" OS user (initdb refuses root). A package's tests share one
// server, started in TestMain and stopped (pg_ctl stop -m fast) at the end:
//
//	var pg *pgtest.Server
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pg)) }
//
//	func TestX(t *testing.T) { url := pg.NewDB(t) ... }
//
// Each NewDB is a fresh, empty database, dropped when the test ends. When
// no server can be had (binaries missing), NewDB skips the test, or fails
// it when CI=true.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env names the variable holding the URL of an existing server.
const Env = "SWITCHBOARD_TEST_PG"

// ErrNoPostgres: neither $SWITCHBOARD_TEST_PG nor the postgresql binaries.
var ErrNoPostgres = errors.New("no PostgreSQL: set " + Env + " to a server's URL or install postgresql (initdb, pg_ctl)")

// Server is a PostgreSQL server for tests. Its methods are safe for
// concurrent use; a Server whose start failed (Err) skips or fails the
// tests that ask it for a database.
type Server struct {
	// Err is why there is no server (nil when there is one).
	Err error
	// AdminURL connects to the server's "postgres" database as a superuser
	// (or as $SWITCHBOARD_TEST_PG's user).
	AdminURL string

	bin     string // directory of initdb and pg_ctl ("" for an external server)
	dir     string // temporary directory: data/, the socket and the log
	cred    *syscall.Credential
	counter atomic.Int64
}

// Main starts a server (or records why there is none in its Err), stores
// it in *srv, runs the tests and stops the server. Use it from TestMain.
func Main(m *testing.M, srv **Server) int {
	s, err := Start()
	if err != nil {
		s = &Server{Err: err}
	}
	*srv = s
	code := m.Run()
	if err := s.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Start returns the server of $SWITCHBOARD_TEST_PG, or starts a private
// one; ErrNoPostgres when there is neither.
func Start() (*Server, error) {
	if u := os.Getenv(Env); u != "" {
		if _, err := pgx.ParseConfig(u); err != nil {
			return nil, fmt.Errorf("%s: %w", Env, err)
		}
		return &Server{AdminURL: u}, nil
	}
	bin := findBin()
	if bin == "" {
		return nil, ErrNoPostgres
	}
	dir, err := os.MkdirTemp("", "switchboard-pg-*")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{bin: bin, dir: dir}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: running as root needs the OS user postgres: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	if out, err := s.run("initdb", "-D", s.dataDir(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: initdb: %w: %s", err, out)
	}
	q := url.Values{"host": {dir}}
	s.AdminURL = "postgres://postgres@/postgres?" + q.Encode()
	if err := s.StartServer(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// findBin returns the newest /usr/lib/postgresql/N/bin holding initdb and
// pg_ctl, or the directory of initdb on PATH; "" when there is none.
func findBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		b, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return a > b
	})
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if d := filepath.Dir(p); isExec(filepath.Join(d, "pg_ctl")) {
			return d
		}
	}
	return ""
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }

// SocketDir is the directory of the private server's unix socket ("" for
// an external server).
func (s *Server) SocketDir() string { return s.dir }

// run runs one of the server's programs as the server's OS user, bounded
// in time.
func (s *Server) run(prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, prog), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// StartServer starts the private server (again, after StopServer). It
// listens only on a unix socket in its directory; fsync is off (a test
// server's data need not survive a machine crash, only a server crash).
func (s *Server) StartServer() error {
	if s.bin == "" {
		return errors.New("pgtest: an external server (" + Env + ") cannot be started")
	}
	opts := fmt.Sprintf("-c listen_addresses='' -k %s -c fsync=off -c max_connections=200", s.dir)
	if out, err := s.run("pg_ctl", "-D", s.dataDir(), "-o", opts, "-l", filepath.Join(s.dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		return fmt.Errorf("pgtest: pg_ctl start: %w: %s\n%s", err, out, log)
	}
	return nil
}

// StopServer stops the private server with pg_ctl's mode ("fast",
// "immediate", "smart").
func (s *Server) StopServer(mode string) error {
	if s.bin == "" {
		return errors.New("pgtest: an external server (" + Env + ") cannot be stopped")
	}
	if out, err := s.run("pg_ctl", "-D", s.dataDir(), "-m", mode, "-w", "-t", "60", "stop"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %w: %s", err, out)
	}
	return nil
}

// Stop stops a private server and removes its directory; nothing for an
// external one.
func (s *Server) Stop() error {
	if s == nil || s.bin == "" {
		return nil
	}
	err := s.StopServer("fast")
	if rerr := os.RemoveAll(s.dir); err == nil {
		err = rerr
	}
	return err
}

// Need skips t when there is no server, or fails it when CI=true.
func (s *Server) Need(t testing.TB) {
	t.Helper()
	if s == nil {
		t.Fatal("pgtest: no Server (call pgtest.Main from TestMain)")
	}
	if s.Err == nil {
		return
	}
	if os.Getenv("CI") == "true" || (!errors.Is(s.Err, ErrNoPostgres)) {
		t.Fatalf("PostgreSQL needed: %v", s.Err)
	}
	t.Skipf("PostgreSQL needed: %v", s.Err)
}

// NewDB creates a fresh, empty database for t (dropped when t ends) and
// returns its URL.
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	s.Need(t)
	name := fmt.Sprintf("sbtest_%d_%d", os.Getpid(), s.counter.Add(1))
	if err := s.admin(fmt.Sprintf("CREATE DATABASE %s", name)); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.admin(fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name)); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	u, err := s.URLOf(name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

// URLOf returns the URL of database name on the server.
func (s *Server) URLOf(name string) (string, error) {
	u, err := url.Parse(s.AdminURL)
	if err != nil {
		return "", fmt.Errorf("server URL: %w", err)
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

// admin runs one statement on the server's administrative database.
func (s *Server) admin(stmt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.AdminURL)
	if err != nil {
		return fmt.Errorf("connect to the server: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}

// Lazy starts a Server on first use, for packages where few tests need
// one (the e2e tests): declare one in the test package, call Stop from
// TestMain after m.Run.
type Lazy struct {
	once sync.Once
	s    *Server
}

// Get returns the server, starting it on the first call (a Server with Err
// set when it cannot be had).
func (l *Lazy) Get() *Server {
	l.once.Do(func() {
		s, err := Start()
		if err != nil {
			s = &Server{Err: err}
		}
		l.s = s
	})
	return l.s
}

// NewDB is Get().NewDB(t).
func (l *Lazy) NewDB(t testing.TB) string {
	t.Helper()
	return l.Get().NewDB(t)
}

// Stop stops the server if Get started one.
func (l *Lazy) Stop() error {
	done := false
	l.once.Do(func() { done = true }) // never started: nothing to stop, and no start after this
	if done || l.s == nil {
		return nil
	}
	return l.s.Stop()
}
