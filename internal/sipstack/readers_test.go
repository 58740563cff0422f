package sipstack

import (
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestUDPReaders: the port is read by the requested number of sockets
// (SO_REUSEPORT on Linux), all on the listener's address, and every one of
// them is served: requests from many source ports (which the kernel spreads
// over the sockets) are all answered.
func TestUDPReaders(t *testing.T) {
	if !haveReusePort {
		t.Skip("SO_REUSEPORT readers are Linux only")
	}
	st, _ := startStack(t, Options{UDPReaders: 3}, func(st *Stack) {
		st.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	})
	if len(st.udpMore) != 2 {
		t.Fatalf("%d extra UDP sockets, want 2", len(st.udpMore))
	}
	addr := st.Listeners[0].Addr
	for _, c := range st.udpMore {
		if c.LocalAddr().String() != addr {
			t.Fatalf("extra socket on %s, want %s", c.LocalAddr(), addr)
		}
	}
	// With 3 sockets and 40 senders, a socket nobody reads would leave
	// some request unanswered (all 40 avoid one socket with p < 1e-6).
	for i := range 40 {
		if got := exchange(t, addr, options("r"+strconv.Itoa(i))); got != "SIP/2.0 200 OK" {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	if def, _ := startStack(t, Options{}, nil); len(def.udpMore) != min(runtime.GOMAXPROCS(0), 4)-1 {
		t.Errorf("default: %d extra sockets, want one per CPU up to 4 in all", len(def.udpMore))
	}
}

// TestTxLinger: transactions with a final answer linger TxLinger, not
// RFC 3261's 64*T1 (sipgo's package timers; see setSipgoGlobals).
func TestTxLinger(t *testing.T) {
	startStack(t, Options{}, nil)
	if sip.Timer_L != TxLinger || sip.Timer_M != TxLinger || sip.Timer_J != TxLinger {
		t.Fatalf("Timers L, M, J = %v, %v, %v; want %v", sip.Timer_L, sip.Timer_M, sip.Timer_J, TxLinger)
	}
}

func TestBoundAddrKeepsTheWildcardAsked(t *testing.T) {
	for _, c := range []struct{ host, got, want string }{
		{"0.0.0.0", "[::]:5060", "0.0.0.0:5060"},
		{"::", "[::]:5061", "[::]:5061"},
		{"127.0.0.1", "127.0.0.1:5062", "127.0.0.1:5062"},
	} {
		a, err := net.ResolveUDPAddr("udp", c.got)
		if err != nil {
			t.Fatal(err)
		}
		if got := boundAddr(c.host, a); got != c.want {
			t.Errorf("boundAddr(%q, %s) = %s, want %s", c.host, c.got, got, c.want)
		}
	}
}

// TestTxLingerEnds: a retransmitted request is absorbed by its completed
// transaction (answered again, the handler not called), and once TxLinger
// has passed the transaction is gone: the same request reaches the handler
// again. With sipgo's default Timer J that takes 32 s, past the deadline.
// It waits TxLinger (8 s), so it runs in parallel and not with -short.
func TestTxLingerEnds(t *testing.T) {
	if testing.Short() {
		t.Skip("waits TxLinger (8 s)")
	}
	t.Parallel()
	var calls atomic.Int32
	st, _ := startStack(t, Options{UDPReaders: 1}, func(st *Stack) {
		st.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
			calls.Add(1)
			_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	})
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst, _ := net.ResolveUDPAddr("udp", st.Listeners[0].Addr)
	msg := options("linger")
	send := func() string {
		t.Helper()
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
	if got := send(); got != "SIP/2.0 200 OK" || calls.Load() != 1 {
		t.Fatalf("first: %q, %d handler calls", got, calls.Load())
	}
	if got := send(); got != "SIP/2.0 200 OK" || calls.Load() != 1 {
		t.Fatalf("a retransmission must be answered by the transaction: %q, %d handler calls", got, calls.Load())
	}
	deadline := time.Now().Add(TxLinger + 4*time.Second)
	for calls.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the transaction still absorbs the request %v after its answer (sipgo's default is 32 s)", TxLinger+4*time.Second)
		}
		time.Sleep(250 * time.Millisecond)
		send()
	}
}

// TestLargeUDPMessage: an answer longer than sipgo's default UDP limit
// (1300 bytes; a 200 with a WebRTC SDP) is sent whole over UDP.
func TestLargeUDPMessage(t *testing.T) {
	body := []byte("v=0\r\n" + strings.Repeat("a=candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host\r\n", 70))
	st, _ := startStack(t, Options{}, func(st *Stack) {
		st.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
			res := sip.NewResponseFromRequest(req, 200, "OK", body)
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			_ = tx.Respond(res)
		})
	})
	if len(body) < 3000 {
		t.Fatalf("body of %d bytes; the test needs more than 1300", len(body))
	}
	if got := exchange(t, st.Listeners[0].Addr, options("large")); got != "SIP/2.0 200 OK" {
		t.Fatalf("got %q", got)
	}
}

// TestWaitServing: before Serve nothing answers the probe (WaitServing
// returns with ctx's error); once Serve runs it returns nil.
func TestWaitServing(t *testing.T) {
	st, err := Listen(Options{Addr: "127.0.0.1:0", UDPReaders: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := st.WaitServing(ctx); err == nil {
		t.Fatal("WaitServing returned nil before Serve")
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Serve(runCtx) }()
	defer func() { stop(); <-done }()
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := st.WaitServing(wctx); err != nil {
		t.Fatalf("WaitServing after Serve: %v", err)
	}
}

// TestSlowDatagramDoesNotStallItsSocket: a datagram whose handling on the
// read path is slow (here the filter holds it) does not stop its socket
// from being read: another loop reads and answers the next one.
func TestSlowDatagramDoesNotStallItsSocket(t *testing.T) {
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	st, _ := startStack(t, Options{UDPReaders: 1, Filter: func(_ string, _ net.Addr, data []byte) []byte {
		if strings.Contains(string(data), "Call-ID: slow") {
			held <- struct{}{}
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		}
		return data
	}}, func(st *Stack) {
		st.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	})
	t.Cleanup(func() { close(release) }) // before the stack stops
	addr := st.Listeners[0].Addr
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst, _ := net.ResolveUDPAddr("udp", addr)
	if _, err := c.WriteTo(options("slow"), dst); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow datagram never reached the filter")
	}
	if got := exchange(t, addr, options("next")); got != "SIP/2.0 200 OK" {
		t.Fatalf("the next request while one is held: %q", got)
	}
}
