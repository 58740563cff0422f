package sipstack

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// startStack runs a real stack on 127.0.0.1:0 until the test ends; setup
// registers handlers before it serves.
func startStack(t testing.TB, opts Options, setup func(*Stack)) (*Stack, *logSink) {
	t.Helper()
	sink := &logSink{}
	opts.Addr = "127.0.0.1:0"
	opts.Logger = slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := Listen(opts)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = st.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return st, sink
}

// logSink collects log output; safe for concurrent use.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func options(branch string) []byte {
	return []byte("OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bK" + branch + "\r\n" +
		"From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: " + branch + "\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n" +
		"Content-Length: 0\r\n\r\n")
}

func exchange(t *testing.T, addr string, msg []byte) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst, _ := net.ResolveUDPAddr("udp", addr)
	if _, err := c.WriteTo(msg, dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8192)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
	return line
}

// TestPanicContained: a handler that panics gets its request answered 500
// and the server keeps serving; the panic is logged once (rate-limited).
func TestPanicContained(t *testing.T) {
	st, logBuf := startStack(t, Options{}, func(st *Stack) {
		st.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
			var m map[string]int
			m["boom"]++ // nil map write: panics
		})
		st.NotAllowed("INVITE, OPTIONS")
	})
	addr := st.Listeners[0].Addr
	for i, b := range []string{"p1", "p2", "p3"} {
		if got := exchange(t, addr, options(b)); got != "SIP/2.0 500 Server Internal Error" {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	// The 500 goes out before the log line is written: wait for it.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(logBuf.String(), "panic while handling a SIP request") {
			break
		}
	}
	if n := strings.Count(logBuf.String(), "panic while handling a SIP request"); n != 1 {
		t.Errorf("logged %d panics, want 1 (rate-limited):\n%s", n, logBuf)
	}
	// Unregistered methods get a quiet 405 with Allow.
	sub := bytes.Replace(options("p4"), []byte("OPTIONS"), []byte("SUBSCRIBE"), -1)
	if got := exchange(t, addr, sub); got != "SIP/2.0 405 Method Not Allowed" {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
}

// TestReplyAndClose: Reply writes raw bytes to a UDP source and on an
// accepted TCP connection; CloseConn closes it and ConnClosed is told.
func TestReplyAndClose(t *testing.T) {
	closed := make(chan string, 4)
	st, _ := startStack(t, Options{ConnClosed: func(a net.Addr) { closed <- a.String() }}, nil)
	c, err := net.Dial("tcp", st.Listeners[1].Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	remote := c.LocalAddr()
	deadline := time.Now().Add(3 * time.Second)
	for st.tcp.get(remote.String()) == nil {
		if time.Now().After(deadline) {
			t.Fatal("connection not tracked")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := st.Reply("TCP", remote, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q %v", buf, err)
	}
	if err := st.CloseConn(remote); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(buf); err == nil {
		t.Fatal("connection still open")
	}
	select {
	case got := <-closed:
		if got != remote.String() {
			t.Fatalf("ConnClosed(%s), want %s", got, remote)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("ConnClosed not called")
	}
	// UDP.
	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := st.Reply("UDP", u.LocalAddr(), []byte("pong")); err != nil {
		t.Fatal(err)
	}
	_ = u.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, from, err := u.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "pong" || from.String() != st.Listeners[0].Addr {
		t.Fatalf("UDP reply %q from %v: %v", buf[:n], from, err)
	}
}

func TestClipHandler(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(clipHandler{slog.NewTextHandler(&b, nil)})
	log.Error("failed to parse", "data", strings.Repeat("x", 5000), "n", 3)
	if b.Len() > 600 || !strings.Contains(b.String(), "(5000 bytes)") || !strings.Contains(b.String(), "n=3") {
		t.Fatalf("log line %d bytes: %s", b.Len(), b.String())
	}
}

func TestReadErrorQuiet(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(clipHandler{slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})})
	log.Error("Read error", "error", "connection reset by peer")
	if !strings.Contains(b.String(), "level=DEBUG") || !strings.Contains(b.String(), "connection reset by peer") {
		t.Fatalf("got %s", b.String())
	}
	b.Reset()
	slog.New(clipHandler{slog.NewTextHandler(&b, nil)}).Error("Read error", "error", "x")
	if b.Len() != 0 {
		t.Fatalf("logged at info level: %s", b.String())
	}
}

func TestFilterPanicContained(t *testing.T) {
	var sink logSink
	f := safeFilter(slog.New(slog.NewTextHandler(&sink, nil)), func(string, net.Addr, []byte) []byte { panic("boom") })
	if out := f("UDP", &net.UDPAddr{}, []byte("x")); out != nil {
		t.Fatalf("out %q", out)
	}
	if !strings.Contains(sink.String(), "panic while filtering a packet") {
		t.Fatalf("log %s", sink.String())
	}
}
