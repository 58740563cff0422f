package sipstack

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// flakyListener fails its first fails Accepts with err.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
	err   error
}

func (f *flakyListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	if f.fails > 0 {
		f.fails--
		f.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", f.err)}
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

// events collects ConnEvents; safe for concurrent use.
type events struct {
	mu  sync.Mutex
	evs []ConnEvent
}

func (e *events) add(ev ConnEvent) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
}

// wait returns the count of events of kind k once it is n, or after 3 s:
// an event is reported just after the close a client sees.
func (e *events) wait(k ConnEventKind, n int) int {
	deadline := time.Now().Add(3 * time.Second)
	for e.count(k) != n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return e.count(k)
}

func (e *events) count(k ConnEventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.evs {
		if ev.Kind == k {
			n++
		}
	}
	return n
}

func answerOptions(st *Stack) {
	st.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
}

// dialFrom opens a TCP connection to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 3 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// optionsOver sends an OPTIONS on c and returns the status line answered.
func optionsOver(t *testing.T, c net.Conn, branch string) string {
	t.Helper()
	msg := strings.Replace(string(options(branch)), "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer on %s: %v", c.LocalAddr(), err)
	}
	line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
	return line
}

// closedByServer reports whether the server closed c within timeout
// (the client reads EOF or a reset) rather than keeping it open.
func closedByServer(c net.Conn, timeout time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		return !errors.Is(err, os.ErrDeadlineExceeded)
	}
}

// TestAcceptBackoff: Accept failing with EMFILE (and others) does not end
// Serve: the listener backs off and retries, logs the burst once, reports
// it once, and then serves connections as before.
func TestAcceptBackoff(t *testing.T) {
	var evs events
	var flaky *flakyListener
	st, logs := startStack(t, Options{ConnEvent: evs.add}, func(st *Stack) {
		answerOptions(st)
		flaky = &flakyListener{Listener: st.tcp.Listener, fails: 6, err: syscall.EMFILE}
		st.tcp.Listener = flaky
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	c := dialFrom(t, "127.0.0.1", st.Listeners[1].Addr)
	if got := optionsOver(t, c, "b1"); got != "SIP/2.0 200 OK" {
		t.Fatalf("OPTIONS after failing accepts: %q", got)
	}
	if n := strings.Count(logs.String(), "accepting TCP connections fails"); n != 1 {
		t.Fatalf("logged the burst %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "too many open files") || !strings.Contains(logs.String(), "failed_accepts=6") {
		t.Fatalf("log does not name the error and the count:\n%s", logs)
	}
	if n := evs.count(AcceptFailing); n != 1 {
		t.Fatalf("%d AcceptFailing events, want 1", n)
	}
	// A second burst (ENFILE, ECONNABORTED) is survived too.
	flaky.mu.Lock()
	flaky.fails, flaky.err = 3, syscall.ENFILE
	flaky.mu.Unlock()
	c2 := dialFrom(t, "127.0.0.1", st.Listeners[1].Addr)
	if got := optionsOver(t, c2, "b2"); got != "SIP/2.0 200 OK" {
		t.Fatalf("OPTIONS after the second burst: %q", got)
	}
	if n := evs.count(AcceptFailing); n != 2 {
		t.Fatalf("%d AcceptFailing events, want 2", n)
	}
}

// TestConnCaps: the per-address cap closes an address's extra connection
// at once; at the total cap the oldest connection without a complete
// message is evicted for a new one, and when every connection has
// delivered messages the new one is closed; AcceptConn refuses and
// exempts addresses.
func TestConnCaps(t *testing.T) {
	var evs events
	accept := func(ap netip.AddrPort) ConnVerdict {
		switch ap.Addr().String() {
		case "127.0.0.9":
			return ConnRefuse
		case "127.0.0.4":
			return ConnTrusted
		}
		return ConnAllow
	}
	st, _ := startStack(t, Options{TCPMaxPerAddress: 2, TCPMaxConns: 5, AcceptConn: accept, ConnEvent: evs.add}, answerOptions)
	addr := st.Listeners[1].Addr
	waitHeld := func(n int) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			held, _ := st.TCPConns()
			if held == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("holding %d connections, want %d", held, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// A refused address: closed at once.
	if c := dialFrom(t, "127.0.0.9", addr); !closedByServer(c, 3*time.Second) {
		t.Fatal("refused address kept its connection")
	}
	a1 := dialFrom(t, "127.0.0.1", addr)
	waitHeld(1)
	a2 := dialFrom(t, "127.0.0.1", addr)
	waitHeld(2)
	if c := dialFrom(t, "127.0.0.1", addr); !closedByServer(c, 3*time.Second) {
		t.Fatal("third connection from 127.0.0.1 kept over the per-address cap of 2")
	}
	if evs.wait(ConnOverPerAddress, 1) != 1 {
		t.Fatalf("ConnOverPerAddress events: %d", evs.count(ConnOverPerAddress))
	}
	// The trusted address is not capped per address.
	t1 := dialFrom(t, "127.0.0.4", addr)
	t2 := dialFrom(t, "127.0.0.4", addr)
	t3 := dialFrom(t, "127.0.0.4", addr)
	waitHeld(5)
	// At the total cap: a new connection evicts the oldest unproven one
	// (a1), which has sent nothing.
	for i, c := range []net.Conn{a2, t1, t2, t3} {
		if got := optionsOver(t, c, fmt.Sprint("c", i)); got != "SIP/2.0 200 OK" {
			t.Fatalf("conn %d: %q", i, got)
		}
	}
	b1 := dialFrom(t, "127.0.0.2", addr)
	if !closedByServer(a1, 3*time.Second) {
		t.Fatal("the oldest idle connection was not evicted at the total cap")
	}
	if got := optionsOver(t, b1, "b1"); got != "SIP/2.0 200 OK" {
		t.Fatalf("new connection after eviction: %q", got)
	}
	if evs.wait(ConnEvicted, 1) != 1 {
		t.Fatalf("ConnEvicted events: %d", evs.count(ConnEvicted))
	}
	// Every held connection has delivered a message (b1's is marked after
	// sipgo dispatched it, maybe after its answer): a new one is closed.
	unproven := func() int {
		st.tcp.mu.Lock()
		defer st.tcp.mu.Unlock()
		return st.tcp.unproven
	}
	for deadline := time.Now().Add(3 * time.Second); unproven() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if c := dialFrom(t, "127.0.0.3", addr); !closedByServer(c, 3*time.Second) {
		t.Fatal("connection kept over the total cap")
	}
	if evs.wait(ConnOverTotal, 1) != 1 {
		t.Fatalf("ConnOverTotal events: %d", evs.count(ConnOverTotal))
	}
	for i, c := range []net.Conn{a2, t1, t2, t3, b1} {
		if got := optionsOver(t, c, fmt.Sprint("d", i)); got != "SIP/2.0 200 OK" {
			t.Fatalf("held conn %d after the refusals: %q", i, got)
		}
	}
}

// TestIdleTimeout: a connection that sends nothing, or only part of a
// message, is closed after the idle timeout; one that keeps delivering
// messages stays; KeepAlive keeps one open past the timeout.
func TestIdleTimeout(t *testing.T) {
	t.Parallel() // waits for idle timeouts: beside TestTxLingerEnds
	const idle = time.Second
	st, _ := startStack(t, Options{TCPIdleTimeout: idle}, answerOptions)
	addr := st.Listeners[1].Addr
	silent := dialFrom(t, "127.0.0.1", addr)
	partial := dialFrom(t, "127.0.0.1", addr)
	if _, err := partial.Write([]byte("OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKp\r\n")); err != nil {
		t.Fatal(err)
	}
	busy := dialFrom(t, "127.0.0.1", addr)
	kept := dialFrom(t, "127.0.0.1", addr)
	if got := optionsOver(t, kept, "k1"); got != "SIP/2.0 200 OK" {
		t.Fatalf("kept: %q", got)
	}
	if !st.KeepAlive(kept.LocalAddr().String(), time.Now().Add(time.Minute)) {
		t.Fatal("KeepAlive found no connection")
	}
	// busy delivers a message every third of the timeout, for 3 of them.
	for i := range 9 {
		if got := optionsOver(t, busy, fmt.Sprint("busy", i)); got != "SIP/2.0 200 OK" {
			t.Fatalf("busy message %d: %q", i, got)
		}
		time.Sleep(idle / 3)
	}
	if !closedByServer(silent, 5*time.Second) {
		t.Fatal("the silent connection was not closed")
	}
	if !closedByServer(partial, 5*time.Second) {
		t.Fatal("the connection with a partial message was not closed")
	}
	if got := optionsOver(t, kept, "k2"); got != "SIP/2.0 200 OK" {
		t.Fatalf("kept connection after 3 idle timeouts: %q", got)
	}
	if _, closed := st.TCPConns(); closed < 2 {
		t.Fatalf("%d connections counted as closed idle, want 2 or more", closed)
	}
	// Once busy stops, it is closed too.
	if !closedByServer(busy, 5*time.Second) {
		t.Fatal("the busy connection stayed open after it went idle")
	}
	if st.KeepAlive("127.0.0.1:1", time.Now()) {
		t.Fatal("KeepAlive of an unknown connection reported true")
	}
}

// TestIdleConnMemory measures what an idle TCP connection (one that has
// sent nothing) costs the server: the connections are held without a
// sipgo reader and its 32 KiB buffer, so well under 16 KiB each.
func TestIdleConnMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 connections")
	}
	const n = 1000
	st, _ := startStack(t, Options{TCPMaxPerAddress: -1, TCPMaxConns: 2 * n}, nil)
	addr := st.Listeners[1].Addr
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	// The client side's own sockets are counted too (a few hundred bytes
	// each), so the figure is an upper bound.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for held, _ := st.TCPConns(); held < n; held, _ = st.TCPConns() {
		if time.Now().After(deadline) {
			t.Fatalf("holding %d of %d connections", held, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := func(m *runtime.MemStats) int64 { return int64(m.HeapInuse + m.StackInuse) }
	per := (used(&after) - used(&before)) / n
	t.Logf("memory per idle TCP connection (heap + stacks, both ends): %d bytes", per)
	if per > 16<<10 {
		t.Fatalf("an idle connection costs %d bytes, want under 16 KiB", per)
	}
}

func TestAutoMaxConns(t *testing.T) {
	for _, c := range []struct {
		nofile uint64
		want   int
	}{{64, 16}, {256, 192}, {1024, 768}, {20000, 18976}, {1 << 20, 65536}} {
		if got := AutoMaxConns(c.nofile); got != c.want {
			t.Errorf("AutoMaxConns(%d) = %d, want %d", c.nofile, got, c.want)
		}
	}
}
