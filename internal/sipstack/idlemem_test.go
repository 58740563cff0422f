package sipstack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/switchboard-pbx/switchboard/internal/tlscert"
)

// The idle-connection memory measurements below count the server's side
// only: the clients run in a child process (this test binary again, as
// TestHelperStreamClients), so their TLS state is not in the figures.

// helperEnv, when set ("proto addr n cafile"), makes TestHelperStreamClients
// the client side of an idle-memory measurement.
const helperEnv = "SIPSTACK_IDLE_CLIENTS"

// TestHelperStreamClients is not a test: run by idleServerMemory in a
// child process, it opens n WSS, WS or TLS connections to addr (loopback),
// sends one OPTIONS on each and reads the 200, prints "ready", and keeps
// the connections open until its stdin closes (at most 2 minutes).
func TestHelperStreamClients(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("helper process only")
	}
	f := strings.Fields(spec)
	proto, addr, caFile := f[0], f[1], f[3]
	n, _ := strconv.Atoi(f[2])
	var ccfg *tls.Config
	if proto != "ws" {
		pool, err := tlscertPool(caFile)
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		ccfg = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := dialStream(proto, addr, ccfg)
		if err != nil {
			fmt.Println("error: dial", i, err)
			return
		}
		conns = append(conns, c)
		msg := []byte(strings.Replace(string(options("mem"+strconv.Itoa(i))), "SIP/2.0/UDP", "SIP/2.0/"+strings.ToUpper(proto), 1))
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var answer []byte
		if proto == "tls" {
			if _, err = c.Write(msg); err == nil {
				answer = make([]byte, 4096)
				var k int
				k, err = c.Read(answer)
				answer = answer[:k]
			}
		} else if err = wsutil.WriteClientText(c, msg); err == nil {
			answer, err = wsutil.ReadServerText(c)
		}
		if err != nil || !strings.HasPrefix(string(answer), "SIP/2.0 200") {
			fmt.Printf("error: connection %d: %q %v\n", i, answer, err)
			return
		}
		_ = c.SetDeadline(time.Time{})
	}
	fmt.Println("ready")
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
	}
}

func dialStream(proto, addr string, ccfg *tls.Config) (net.Conn, error) {
	switch proto {
	case "tls":
		return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, ccfg)
	default:
		d := ws.Dialer{Protocols: []string{"sip"}, TLSConfig: ccfg, Timeout: 5 * time.Second}
		scheme := "ws"
		if proto == "wss" {
			scheme = "wss"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, _, _, err := d.Dial(ctx, scheme+"://"+addr+"/")
		return c, err
	}
}

// idleMem is what the server holds per idle connection.
type idleMem struct {
	live, stack, goroutines float64 // bytes of live heap, bytes of stacks, goroutines
}

// idleServerMemory starts a stack with a proto ("wss", "ws", "tls")
// listener, has a child process open n connections that each carry one
// OPTIONS (answered 200) and then idle, and returns the server's live
// heap (after a collection) and stack bytes per connection, and its
// goroutines per connection.
func idleServerMemory(tb testing.TB, proto string, n int) idleMem {
	tb.Helper()
	dir := tb.TempDir()
	m, _, err := tlscert.Open(dir, "", "", []string{"pbx.test"}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	so := StreamOptions{TLSConfig: m.Config()}
	switch proto {
	case "wss":
		so.WSS = "127.0.0.1:0"
	case "ws":
		so.WS = "127.0.0.1:0"
	case "tls":
		so.TLS = "127.0.0.1:0"
	}
	st, _ := startStack(tb, Options{TCPMaxPerAddress: -1, TCPMaxConns: 2 * n, TCPIdleTimeout: time.Minute, Streams: so}, answerOptions)
	addr := listenerOf(tb, st, proto)
	time.Sleep(TxLinger) // start-up garbage
	before := memNow()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperStreamClients$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d %s", helperEnv, proto, addr, n, filepath.Join(dir, tlscert.SelfCertFile)))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	defer func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if l := sc.Text(); l == "ready" || strings.HasPrefix(l, "error") {
				ready <- l
				return
			}
		}
		ready <- "helper ended"
	}()
	select {
	case l := <-ready:
		if l != "ready" {
			tb.Fatalf("client process: %s", l)
		}
	case <-time.After(90 * time.Second):
		tb.Fatal("client process not ready in 90 s")
	}
	time.Sleep(TxLinger + 500*time.Millisecond) // the OPTIONS transactions end
	for deadline := time.Now().Add(10 * time.Second); st.poll != nil && st.poll.count() < n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // parked once idle for parkAfter
	}
	after := memNow()
	return idleMem{
		live:       float64(int64(after.heap)-int64(before.heap)) / float64(n),
		stack:      float64(int64(after.stack)-int64(before.stack)) / float64(n),
		goroutines: float64(after.goroutines-before.goroutines) / float64(n),
	}
}

type memSample struct {
	heap, stack uint64
	goroutines  int
}

// memNow collects twice (the second frees what the first's finalizers
// released) and reads the live heap and the stacks.
func memNow() memSample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: ms.HeapAlloc, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

// BenchmarkIdleStreamConn reports the server's memory per idle WSS, WS and
// TLS connection that carried one message (clients in a child process; 2,000
// connections, SIPSTACK_BENCH_CONNS to change it). One measurement per run:
//
//	go test -run XXX -bench IdleStreamConn -benchtime 1x ./internal/sipstack/
func BenchmarkIdleStreamConn(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("SIPSTACK_BENCH_CONNS")); err == nil && v > 0 && v <= 20000 {
		n = v
	}
	for _, proto := range []string{"wss", "ws", "tls"} {
		b.Run(proto, func(b *testing.B) {
			var m idleMem
			for range b.N {
				m = idleServerMemory(b, proto, n)
			}
			b.ReportMetric(m.live, "live-B/conn")
			b.ReportMetric(m.stack, "stack-B/conn")
			b.ReportMetric(m.live+m.stack, "B/conn")
			b.ReportMetric(m.goroutines, "goroutines/conn")
		})
	}
}

// BenchmarkStreamRoundTrip measures one OPTIONS -> 200 over one open WSS
// or TLS connection, sent one after the other: each message finds the
// connection idle (parked, where the poller is on), the worst case for
// an active connection.
func BenchmarkStreamRoundTrip(b *testing.B) {
	for _, proto := range []string{"wss", "tls"} {
		b.Run(proto, func(b *testing.B) {
			dir := b.TempDir()
			m, _, err := tlscert.Open(dir, "", "", []string{"pbx.test"}, nil)
			if err != nil {
				b.Fatal(err)
			}
			so := StreamOptions{TLSConfig: m.Config()}
			if proto == "wss" {
				so.WSS = "127.0.0.1:0"
			} else {
				so.TLS = "127.0.0.1:0"
			}
			st, _ := startStack(b, Options{Streams: so}, answerOptions)
			pool, err := tlscertPool(filepath.Join(dir, tlscert.SelfCertFile))
			if err != nil {
				b.Fatal(err)
			}
			c, err := dialStream(proto, listenerOf(b, st, proto), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg := []byte(strings.Replace(string(options("rt")), "SIP/2.0/UDP", "SIP/2.0/"+strings.ToUpper(proto), 1))
			br := bufio.NewReader(c)
			b.ResetTimer()
			for i := range b.N {
				// A new branch each time: a new transaction, not a retransmission.
				m := bytes.Replace(msg, []byte("branch=z9hG4bKrt"), []byte("branch=z9hG4bKrt"+strconv.Itoa(i)+"x"), 1)
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if proto == "wss" {
					if err := wsutil.WriteClientText(c, m); err != nil {
						b.Fatal(err)
					}
					if a, err := wsutil.ReadServerText(c); err != nil || !bytes.HasPrefix(a, []byte("SIP/2.0 200")) {
						b.Fatalf("%q %v", a, err)
					}
					continue
				}
				if _, err := c.Write(m); err != nil {
					b.Fatal(err)
				}
				if err := readTLSAnswer(br); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// readTLSAnswer reads one 200 answer without a body.
func readTLSAnswer(r *bufio.Reader) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "SIP/2.0 200") {
		return fmt.Errorf("answer %q", line)
	}
	for line != "\r\n" {
		if line, err = r.ReadString('\n'); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkStreamWake measures OPTIONS -> 200 over WSS connections that
// have been idle longer than parkAfter (parked, where the poller is on):
// 200 connections used in turn, with a 300 ms pause (not timed) after
// each round, so every timed round trip wakes its connection. The cost of
// the wake-up path.
func BenchmarkStreamWake(b *testing.B) {
	const n = 200
	dir := b.TempDir()
	m, _, err := tlscert.Open(dir, "", "", []string{"pbx.test"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	st, _ := startStack(b, Options{Streams: StreamOptions{WSS: "127.0.0.1:0", TLSConfig: m.Config()}, TCPMaxPerAddress: -1}, answerOptions)
	pool, err := tlscertPool(filepath.Join(dir, tlscert.SelfCertFile))
	if err != nil {
		b.Fatal(err)
	}
	conns := make([]net.Conn, n)
	for i := range conns {
		if conns[i], err = dialStream("wss", listenerOf(b, st, "wss"), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}); err != nil {
			b.Fatal(err)
		}
		defer conns[i].Close()
	}
	msg := []byte(strings.Replace(string(options("wk")), "SIP/2.0/UDP", "SIP/2.0/WSS", 1))
	rt := func(i int) {
		c := conns[i%n]
		m := bytes.Replace(msg, []byte("branch=z9hG4bKwk"), []byte("branch=z9hG4bKwk"+strconv.Itoa(i)+"x"), 1)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if err := wsutil.WriteClientText(c, m); err != nil {
			b.Fatal(err)
		}
		if a, err := wsutil.ReadServerText(c); err != nil || !bytes.HasPrefix(a, []byte("SIP/2.0 200")) {
			b.Fatalf("%q %v", a, err)
		}
	}
	for i := range n {
		rt(i)
	}
	time.Sleep(time.Second) // all idle longer than parkAfter
	b.ResetTimer()
	for i := range b.N {
		if i%n == 0 {
			b.StopTimer()
			time.Sleep(300 * time.Millisecond)
			b.StartTimer()
		}
		rt(n + i)
	}
}
