package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// lowerFileLimit sets the running server's file limit (soft and hard) to
// n with prlimit(1): more TCP connections than that cannot be accepted.
func lowerFileLimit(t *testing.T, s *Server, n int) {
	t.Helper()
	Need(t, "prlimit")
	pid := strconv.Itoa(s.cmd.Process.Pid)
	lim := fmt.Sprintf("--nofile=%d:%d", n, n)
	if out, err := exec.Command("prlimit", "--pid", pid, lim).CombinedOutput(); err != nil {
		t.Fatalf("prlimit: %v\n%s", err, out)
	}
	out, err := exec.Command("prlimit", "--pid", pid, "--nofile", "--raw", "--noheadings").CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("%d %d", n, n)) {
		t.Fatalf("file limit not lowered: %v %q", err, out)
	}
}

// idleFlood opens idle TCP connections (they never send a byte) from one
// loopback address and keeps want of them open, dialing again for each
// the server closes, until stop. It records how long each lived.
type idleFlood struct {
	src, addr string
	want      int
	maxDials  int

	stop     chan struct{}
	wg       sync.WaitGroup
	dials    atomic.Int64
	open     atomic.Int64
	mu       sync.Mutex
	lifetime []time.Duration // of connections the server closed
	conns    []net.Conn
}

func startFlood(t *testing.T, src, addr string, want int) *idleFlood {
	f := &idleFlood{src: src, addr: addr, want: want, maxDials: 20 * want, stop: make(chan struct{})}
	f.wg.Add(1)
	go f.run()
	t.Cleanup(f.close)
	return f
}

func (f *idleFlood) run() {
	defer f.wg.Done()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(f.src)}, Timeout: 2 * time.Second}
	for f.dials.Load() < int64(f.maxDials) {
		select {
		case <-f.stop:
			return
		default:
		}
		if f.open.Load() >= int64(f.want) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		c, err := d.Dial("tcp", f.addr)
		f.dials.Add(1)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		f.open.Add(1)
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			start := time.Now()
			buf := make([]byte, 64)
			for {
				if _, err := c.Read(buf); err != nil {
					break
				}
			}
			f.open.Add(-1)
			f.mu.Lock()
			f.lifetime = append(f.lifetime, time.Since(start))
			f.mu.Unlock()
		}()
	}
}

// halt stops dialing; the open connections stay open.
func (f *idleFlood) halt() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
}

// close stops dialing and closes every connection.
func (f *idleFlood) close() {
	f.halt()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// lived returns how many connections the server closed after at least d.
func (f *idleFlood) lived(d time.Duration) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, l := range f.lifetime {
		if l >= d {
			n++
		}
	}
	return n
}

// registerBoth registers 2002 over UDP from udpIP and 2003 over TCP from
// tcpIP; both must get 200.
func registerBoth(t *testing.T, s *Server, udpIP, tcpIP string) {
	t.Helper()
	secPhone{IP: udpIP, User: "2002", Password: "secret-2002-x"}.mustRun(t, s, "register.xml", 1)
	tcp := secPhone{IP: tcpIP, User: "2003", Password: "secret-2003-x"}
	if r := tcp.sipp(t, s, "register.xml", 1, "-t", "t1"); r.Code != 0 {
		t.Fatalf("REGISTER over TCP from %s failed (exit %d):\n%s\nserver log:\n%s", tcpIP, r.Code, r.Output, tail(s.Log(), 4000))
	}
}

// alive fails the test if the server process has exited.
func alive(t *testing.T, s *Server) {
	t.Helper()
	select {
	case <-s.done:
		t.Fatalf("switchboard serve exited:\n%s", tail(s.Log(), 4000))
	default:
	}
	if strings.Contains(s.Log(), "switchboard stopped") {
		t.Fatalf("switchboard stopped:\n%s", tail(s.Log(), 4000))
	}
}

const connIdle = 2 * time.Second

// connServer starts a server with a 2 s TCP idle timeout and loopback
// untrusted (trusted networks are exempt from the per-address cap), and
// lowers its file limit to 256.
func connServer(t *testing.T, extra ...string) *Server {
	t.Helper()
	Need(t, "sipp", "prlimit")
	s := Start(t, "", append([]string{"--tcp-idle-timeout", connIdle.String()}, extra...)...)
	s.AddExt("2002", "secret-2002-x")
	s.AddExt("2003", "secret-2003-x")
	s.CLI("profile", "set", "internal", "--trusted-acl", "")
	lowerFileLimit(t, s, 256)
	return s
}

// TestIdleTCPFloodOneAddress: one address opens more idle TCP connections
// than the server's file limit (256) allows and keeps redialing. The
// per-address cap closes the extra ones at once; registrations over UDP
// and TCP from other addresses get 200 throughout; the server stays up;
// the idle connections are closed by the idle timeout (the client reads
// EOF), and the refusals are journaled.
//
// Serial: it floods the server with 400 TCP connections on purpose and
// bounds the dials to 10 s.
func TestIdleTCPFloodOneAddress(t *testing.T) {
	// 192 is what the server derives from a 256 file limit; the limit is
	// lowered after start, so the test passes it.
	s := connServer(t, "--tcp-max-conns", "192")
	f := startFlood(t, "127.0.0.20", s.Addr, 400)
	WaitFor(t, 10*time.Second, "400 dials", func() bool { return f.dials.Load() >= 400 })
	for i := range 3 {
		registerBoth(t, s, fmt.Sprint("127.0.0.", 30+i), fmt.Sprint("127.0.0.", 40+i))
		alive(t, s)
	}
	f.halt()
	// Every connection is closed by the server: over the cap at once, the
	// admitted ones by the idle timeout.
	WaitFor(t, 4*connIdle+5*time.Second, "the server to close every idle connection", func() bool { return f.open.Load() == 0 })
	if n := f.lived(connIdle - 500*time.Millisecond); n < 100 {
		t.Fatalf("only %d connections lived until the idle timeout; want the ~128 the per-address cap admits", n)
	}
	alive(t, s)
	registerBoth(t, s, "127.0.0.33", "127.0.0.43")
	ev := waitJournalWith(t, s, "the connection_limit event", map[string]string{"cause": "connection_limit", "source": "127.0.0.20:*"})
	if d := fmt.Sprint(ev["detail"]); !strings.Contains(d, "--tcp-max-per-ip 128") {
		t.Fatalf("detail %q", d)
	}
	if strings.Contains(s.Log(), "too many open files") {
		t.Fatalf("the caps let accept run out of files:\n%s", tail(s.Log(), 4000))
	}
	checkLog(t, s)
}

// TestIdleTCPFloodManyAddresses: four addresses each open idle
// connections up to their per-address cap, together more than the total
// cap and the file limit. New connections evict the oldest ones that sent
// nothing, so TCP registrations from another address still get 200, UDP
// too, and the server stays up.
//
// Serial: it floods the server with 600 TCP connections on purpose and
// bounds the dials to 10 s.
func TestIdleTCPFloodManyAddresses(t *testing.T) {
	s := connServer(t, "--tcp-max-conns", "192", "--tcp-max-per-ip", "100")
	var floods []*idleFlood
	for i := 21; i <= 24; i++ {
		floods = append(floods, startFlood(t, fmt.Sprint("127.0.0.", i), s.Addr, 150))
	}
	WaitFor(t, 10*time.Second, "600 dials", func() bool {
		n := int64(0)
		for _, f := range floods {
			n += f.dials.Load()
		}
		return n >= 600
	})
	for i := range 3 {
		registerBoth(t, s, fmt.Sprint("127.0.0.", 50+i), fmt.Sprint("127.0.0.", 60+i))
		alive(t, s)
	}
	for _, f := range floods {
		f.halt()
	}
	WaitFor(t, 4*connIdle+5*time.Second, "the server to close every idle connection", func() bool {
		for _, f := range floods {
			if f.open.Load() != 0 {
				return false
			}
		}
		return true
	})
	alive(t, s)
	waitJournalWith(t, s, "the total cap in the journal", map[string]string{"cause": "connection_limit", "detail": "~--tcp-max-conns 192"})
	checkLog(t, s)
}

// TestIdleTCPFloodFileLimit: with the caps above the file limit, accept
// itself fails (EMFILE). The server survives it: it logs the failing
// accepts once, journals them, keeps answering UDP, and once the idle
// timeout has freed descriptors accepts TCP again.
//
// Serial: it floods the server with TCP connections on purpose until accept
// fails.
func TestIdleTCPFloodFileLimit(t *testing.T) {
	s := connServer(t, "--tcp-max-conns", "100000", "--tcp-max-per-ip", "0")
	f := startFlood(t, "127.0.0.25", s.Addr, 400)
	WaitFor(t, 10*time.Second, "the failing accept in the log", func() bool {
		return strings.Contains(s.Log(), "accepting TCP connections fails")
	})
	if !strings.Contains(s.Log(), "too many open files") {
		t.Fatalf("the log does not name the error:\n%s", tail(s.Log(), 4000))
	}
	for i := range 3 {
		secPhone{IP: fmt.Sprint("127.0.0.", 70+i), User: "2002", Password: "secret-2002-x"}.mustRun(t, s, "register.xml", 1)
		alive(t, s)
	}
	f.halt()
	WaitFor(t, 10*connIdle+10*time.Second, "the server to close every idle connection", func() bool { return f.open.Load() == 0 })
	alive(t, s)
	registerBoth(t, s, "127.0.0.73", "127.0.0.74")
	if n := strings.Count(s.Log(), "accepting TCP connections fails"); n > 3 {
		t.Fatalf("the failing accepts were logged %d times; want one line per burst", n)
	}
	waitJournalWith(t, s, "the accept_failed event", map[string]string{"cause": "accept_failed"})
}

// TestBannedTCPClosedAtAccept: a banned address's TCP connection is closed
// at once (well before the idle timeout), and journaled.
func TestBannedTCPClosedAtAccept(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.CLI("profile", "set", "internal", "--trusted-acl", "")
	s.CLI("ban", "add", "127.0.0.45", "--reason", "test")
	waitBanned(t, s, "127.0.0.45")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.45")}, Timeout: 2 * time.Second}
	// The ban reaches the running server through the change feed: poll.
	WaitFor(t, 10*time.Second, "the banned address's connection closed at accept", func() bool {
		c, err := d.Dial("tcp", s.Addr)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 16))
		return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	})
	// An address that is not banned keeps its connection.
	ok := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.46")}, Timeout: 2 * time.Second}
	c, err := ok.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 16)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection from an address that is not banned: %v", err)
	}
	waitJournalWith(t, s, "the refused connection in the journal", map[string]string{"cause": "ip_banned", "transport": "TCP", "source": "127.0.0.45:*"})
}

// established reports whether a TCP connection between the two ip:port
// addresses is established (ss(8)).
func established(t *testing.T, a, b string) bool {
	t.Helper()
	out, err := exec.Command("ss", "-Htn", "state", "established", "src", a, "dst", b).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out)) != ""
}

// TestRegisteredTCPFlowKept: the idle timeout does not close a connection
// a phone (baresip) registered over: it stays open until the binding
// expires, so requests reach the phone on it.
func TestRegisteredTCPFlowKept(t *testing.T) {
	t.Parallel()
	Need(t, "ss")
	s := Start(t, "", "--tcp-idle-timeout", "1s")
	s.AddExt("2001", "secret-2001")
	b := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2001", "secret-2001", s.Addr, "tcp")}})
	b.WaitRegistered("2001@127.0.0.1", 15*time.Second)
	var src string
	WaitFor(t, 5*time.Second, "the TCP binding", func() bool {
		regs := s.Regs("2001")
		if len(regs) == 1 && regs[0].Transport == "TCP" {
			src = regs[0].Source
			return true
		}
		return false
	})
	if !established(t, src, s.Addr) {
		t.Fatalf("no established connection %s -> %s", src, s.Addr)
	}
	// Four idle timeouts pass without a message from the phone (it
	// refreshes every 60 s).
	time.Sleep(4 * time.Second)
	if !established(t, src, s.Addr) {
		t.Fatalf("the registered flow %s was closed by the idle timeout:\n%s", src, tail(s.Log(), 3000))
	}
	if regs := s.Regs("2001"); len(regs) != 1 || regs[0].Source != src {
		t.Fatalf("binding changed: %+v (was from %s)", regs, src)
	}
}

// TestLowFileLimitWarning: started under a hard file limit of 256, serve
// warns once at start how to raise it and derives its TCP connection cap
// from it (192); bad connection flags are refused with one line.
func TestLowFileLimitWarning(t *testing.T) {
	t.Parallel()
	Need(t, "prlimit")
	cmd := exec.Command("prlimit", "--nofile=256:256", Binary(t), "serve", "--data", t.TempDir(),
		"--sip", "127.0.0.1:0", "--domain", "127.0.0.1", "--http", "127.0.0.1:0")
	cmd.Env = ChildEnv("SWITCHBOARD_DATA=")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // prlimit execs serve: same PID
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	WaitFor(t, 20*time.Second, "serve to start", func() bool { return strings.Contains(out.String(), "switchboard started") })
	log := out.String()
	if n := strings.Count(log, "the file limit is low"); n != 1 || !strings.Contains(log, "LimitNOFILE=") || !strings.Contains(log, "ulimit -n") {
		t.Fatalf("want one warning saying how to raise the limit:\n%s", log)
	}
	if !strings.Contains(log, "max_conns=192") || !strings.Contains(log, "max_per_ip=128") || !strings.Contains(log, "idle_timeout=30s") {
		t.Fatalf("limits in force not logged as derived from 256:\n%s", log)
	}
	for _, bad := range [][]string{{"--tcp-max-per-ip", "-1"}, {"--tcp-max-conns", "-5"}, {"--tcp-idle-timeout", "1ms"}} {
		_, errOut, code := serveOnce(t, append([]string{"--data", t.TempDir(), "--sip", "127.0.0.1:0"}, bad...)...)
		if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, bad[0]) {
			t.Errorf("%v: exit %d, stderr %q", bad, code, errOut)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
