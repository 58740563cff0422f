// Package e2e holds black-box tests: the real switchboard binary started on
// 127.0.0.1 with a free port, driven by real SIP clients from Debian (SIPp,
// baresip, sipsak, sipvicious) and by its own CLI.
//
// Tools the tests need are installed by .ci/run. When one is missing the test
// is skipped locally, but fails under CI (CI=true), so a missing install step
// cannot hide behind a skip.
//
// # Parallel tests
//
// The tests run in parallel (DefaultParallel at a time unless go test is
// given -parallel), and TestEveryTestParallelOrSerialWhy enforces the rule
// every test follows:
//
//   - Call t.Parallel() at the start of the test, unless it must run alone:
//     then its doc comment has a line "Serial: why" instead. Serial tests
//     run one at a time before the parallel ones, and add their whole time
//     to the run: only tests that assert a time bound tight enough that a
//     loaded machine can break it (a rate limit, an expiry of a second or
//     two checked from outside, a speed), or that load the machine on
//     purpose, are serial.
//   - Each test starts its own server (Start: 127.0.0.1 port 0, its own data
//     directory) and its own clients; nothing is shared between tests but
//     the binary and the PostgreSQL server (pg.NewDB gives each test its own
//     database; a test that stops PostgreSQL starts its own with
//     pgtest.Start).
//   - Ports come from FreeUDPPort (or freeTCPPort, freePorts), never fixed:
//     they are never handed out twice in a run. A test that must bind a
//     fixed port (e.g. 5060) binds it on an address from LoopbackIP, which
//     no other test gets. Fixed source addresses 127.0.0.x are fine with a
//     port from FreeUDPPort (each test talks to its own server), but a tool
//     that binds 5060 or every address by default (sipvicious) is given
//     -b 127.0.0.1 and a port.
//   - Files only under t.TempDir(); no t.Setenv or os.Chdir (they panic in
//     parallel tests): pass environment to a child with ChildEnv.
//   - Wait with WaitFor (a poll with a deadline), never a fixed sleep; give
//     deadlines room for a loaded machine (several seconds), and assert
//     behaviour, not speed.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/switchboard once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "switchboard-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "switchboard")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/switchboard-pbx/switchboard/cmd/switchboard")
		cmd := exec.Command("go", args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// ChildEnv is the environment for a switchboard process the tests start:
// this process's, plus extra ("NAME=value"), plus atexit_sleep_ms=0 for the
// race detector, which otherwise sleeps 1 s at every successful exit (a
// second per CLI call under -race).
func ChildEnv(extra ...string) []string {
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	return append(append(os.Environ(), extra...), "GORACE="+gorace)
}

// Need skips the test when a tool is missing, except under CI where it fails.
func Need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed: .ci/run must install it", tool)
			}
			t.Skipf("%s is not installed (apt-get install it, or run .ci/run)", tool)
		}
	}
}

// Server is a switchboard serve process.
type Server struct {
	t       testing.TB
	Data    string // data directory
	Addr    string // SIP address ip:port (UDP and TCP)
	Host    string
	Port    string
	Domain  string
	cmd     *exec.Cmd
	logMu   sync.Mutex
	log     bytes.Buffer
	done    chan struct{}
	args    []string
	stopped bool

	// DB, when set, is passed as --db to the CLI commands run through
	// CLI and TryCLI (serve gets its --db from Start's extra args).
	DB string
}

var startedRE = regexp.MustCompile(`msg="switchboard started".* udp=(\S+)`)

// Start runs `switchboard serve --data DIR --sip 127.0.0.1:0 --domain
// 127.0.0.1` plus extra args in a new data directory (or Data of an earlier
// server when data != "") and waits until it listens.
func Start(t testing.TB, data string, extra ...string) *Server {
	t.Helper()
	if data == "" {
		data = t.TempDir()
	}
	s := &Server{t: t, Data: data, Domain: "127.0.0.1"}
	args := []string{"serve", "--data", data, "--sip", "127.0.0.1:0", "--domain", "127.0.0.1", "--http", "127.0.0.1:0"}
	s.args = append(args, extra...)
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// Restart starts the server again on the same data directory and port.
func (s *Server) Restart() {
	s.t.Helper()
	args := append([]string(nil), s.args...)
	for i := range args {
		if args[i] == "127.0.0.1:0" && i > 0 && args[i-1] == "--sip" {
			args[i] = s.Addr
		}
	}
	s.args = args
	s.start()
}

func (s *Server) start() {
	t := s.t
	t.Helper()
	cmd := exec.Command(Binary(t), s.args...)
	cmd.Env = ChildEnv("SWITCHBOARD_DATA=")
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	cmd.Stdout = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd, s.stopped = cmd, false
	s.done = make(chan struct{})
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.logMu.Lock()
			s.log.WriteString(line + "\n")
			s.logMu.Unlock()
			if m := startedRE.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
	}()
	go func() {
		cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	select {
	case a := <-addrc:
		s.Addr = a
		s.Host, s.Port, _ = net.SplitHostPort(a)
		reservePort(s.Port) // Restart binds it again: FreeUDPPort must not hand it out
	case <-s.done:
		t.Fatalf("switchboard serve exited at start:\n%s", s.Log())
	case <-time.After(20 * time.Second):
		s.Kill()
		t.Fatalf("switchboard serve did not start in 20 s:\n%s", s.Log())
	}
}

// Log returns what the server printed so far.
func (s *Server) Log() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// Stop sends SIGTERM and waits for a graceful exit (SIGKILL after 10 s).
func (s *Server) Stop() {
	if s.stopped || s.cmd == nil {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("switchboard serve did not stop on SIGTERM within 10 s")
	}
}

// Kill sends SIGKILL (kill -9) and waits.
func (s *Server) Kill() {
	if s.stopped || s.cmd == nil {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Kill()
	<-s.done
}

// CLI runs a switchboard command against this server's data directory and
// returns stdout; it fails the test on a non-zero exit.
func (s *Server) CLI(args ...string) string {
	s.t.Helper()
	out, errOut, code := s.TryCLI(args...)
	if code != 0 {
		s.t.Fatalf("switchboard %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// TryCLI runs a command and returns stdout, stderr and the exit code.
func (s *Server) TryCLI(args ...string) (stdout, stderr string, code int) {
	s.t.Helper()
	if s.DB != "" {
		args = append(append([]string(nil), args...), "--db", s.DB)
	}
	return RunCLI(s.t, s.Data, "", args...)
}

// RunCLI runs `switchboard ARGS --data DATA` with stdin.
func RunCLI(t testing.TB, data, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append(append([]string(nil), args...), "--data", data)
	cmd := exec.CommandContext(ctx, Binary(t), full...)
	cmd.Env = ChildEnv("SWITCHBOARD_DATA=")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	code = 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			t.Fatalf("switchboard %v: %v", args, err)
		}
	}
	return o.String(), e.String(), code
}

// JSON runs a CLI command with --json and decodes its output into v.
func (s *Server) JSON(v any, args ...string) {
	s.t.Helper()
	out := s.CLI(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		s.t.Fatalf("switchboard %v --json: %v\n%s", args, err, out)
	}
}

// AddExt adds an extension with a known password.
func (s *Server) AddExt(number, password string, extra ...string) {
	s.t.Helper()
	s.CLI(append([]string{"ext", "add", number, "--password", password}, extra...)...)
}

// Registration is the subset of `reg --json` the tests read.
type Registration struct {
	Extension  string `json:"extension"`
	Domain     string `json:"domain"`
	Contact    string `json:"contact"`
	Source     string `json:"source"`
	Transport  string `json:"transport"`
	UserAgent  string `json:"user_agent"`
	CallID     string `json:"call_id"`
	ExpiresIn  int    `json:"expires_in"`
	AuthUser   string `json:"auth_user"`
	PingStatus string `json:"ping_status"`
	Connection string `json:"connection"` // "open", "closed" or "" (UDP)
}

// Regs returns `switchboard reg [ext] --json`.
func (s *Server) Regs(ext ...string) []Registration {
	s.t.Helper()
	var out []Registration
	s.JSON(&out, append([]string{"reg"}, ext...)...)
	return out
}

// WaitFor polls cond every 50 ms until it is true or timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FreeUDPPort returns a currently free UDP port on 127.0.0.1, never one
// handed to another test of this process (see ledger).
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	return freePorts(t, 1, "udp")
}
