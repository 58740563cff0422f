package sipstack

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/switchboard-pbx/switchboard/internal/tlscert"
)

// waitParked polls until the stack's poller holds n connections.
func waitParked(t *testing.T, st *Stack, n int) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("connections are parked with epoll (Linux)")
	}
	if st.poll == nil {
		t.Fatal("the stack has no poller: idle connections are not parked")
	}
	deadline := time.Now().Add(parkAfter + 3*time.Second)
	for st.poll.count() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections parked, want %d", st.poll.count(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// serverConn returns the server's side of the connection from local (the
// client's address) in sipgo's pool of proto.
func serverConn(t *testing.T, st *Stack, proto string, local net.Addr) any {
	t.Helper()
	c := st.UA.TransportLayer().Pool(proto).Get(local.String())
	if c == nil {
		t.Fatalf("no %s connection from %s in the pool", proto, local)
	}
	c.TryClose() // Get took a reference
	return c
}

// TestIdleConnHoldsNoBuffers: a WSS or TLS connection that has carried a
// message and now idles is parked, with no reader goroutine, no message
// buffer and none of crypto/tls's read buffers (the record buffer and the
// handshake buffer grown by the ClientHello, 3.5 KiB, were kept for the
// connection's life before); a message after that is read and answered,
// and the connection is parked again, still holding nothing.
func TestIdleConnHoldsNoBuffers(t *testing.T) {
	st, _, _, ccfg := streamStack(t)
	held := func(c any) (int, bool) {
		switch x := c.(type) {
		case *wsConn:
			return tlsHeld(x.tlsc), x.src.has || x.src.err != nil
		case *tlsConn:
			return tlsHeld(x.tlsc), false
		}
		t.Fatalf("server connection %T", c)
		return 0, false
	}
	check := func(proto string, c any) {
		t.Helper()
		// Under the poller's lock, so the reader a wake-up starts comes
		// after (as it does for the stack: the claim takes the lock).
		st.poll.mu.Lock()
		n, pending := held(c)
		st.poll.mu.Unlock()
		if n != 0 || pending {
			t.Fatalf("idle %s connection: crypto/tls holds %d bytes of read buffers (want 0), a probed byte or error pending: %v", proto, n, pending)
		}
	}

	wc, _, _, err := ws.Dialer{Protocols: []string{"sip"}, TLSConfig: ccfg, Timeout: 3 * time.Second}.Dial(t.Context(), "wss://"+listenerOf(t, st, "wss")+"/")
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	_ = wc.SetDeadline(time.Now().Add(5 * time.Second))
	wsOptions := func(branch string) {
		t.Helper()
		msg := strings.Replace(string(options(branch)), "SIP/2.0/UDP", "SIP/2.0/WSS", 1)
		if err := wsutil.WriteClientText(wc, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if b, err := wsutil.ReadServerText(wc); err != nil || !strings.HasPrefix(string(b), "SIP/2.0 200") {
			t.Fatalf("answer to %s: %q %v", branch, b, err)
		}
	}
	wsOptions("park1")
	waitParked(t, st, 1)
	sc := serverConn(t, st, "WSS", wc.LocalAddr())
	check("WSS", sc)
	wsOptions("park2") // woken by the bytes
	waitParked(t, st, 1)
	check("WSS", sc)

	tc, err := tls.Dial("tcp", listenerOf(t, st, "tls"), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(tc)
	tlsOptions := func(branch string) {
		t.Helper()
		if _, err := tc.Write([]byte(strings.Replace(string(options(branch)), "SIP/2.0/UDP", "SIP/2.0/TLS", 1))); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "SIP/2.0 200") {
			t.Fatalf("answer to %s: %q %v", branch, line, err)
		}
		for l := ""; l != "\r\n"; {
			if l, err = r.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
		}
	}
	tlsOptions("tpark1")
	waitParked(t, st, 2)
	tsc := serverConn(t, st, "TLS", tc.LocalAddr())
	check("TLS", tsc)
	tlsOptions("tpark2")
	waitParked(t, st, 2)
	check("TLS", tsc)
}

// TestParkedConnEnds: a parked connection still ends when the peer closes
// it (its flow is reported closed at once), and when its idle deadline
// passes with nothing read (the server closes it).
func TestParkedConnEnds(t *testing.T) {
	dir := t.TempDir()
	m, _, err := tlscert.Open(dir, "", "", []string{"pbx.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var fl flowLog
	st, _ := startStack(t, Options{FlowClosed: fl.add, TCPIdleTimeout: parkAfter + time.Second,
		Streams: StreamOptions{WS: "127.0.0.1:0", WSS: "127.0.0.1:0", TLSConfig: m.Config()}}, answerOptions)
	addr := listenerOf(t, st, "ws")
	send := func(c net.Conn, branch string) {
		t.Helper()
		msg := strings.Replace(string(options(branch)), "SIP/2.0/UDP", "SIP/2.0/WS", 1)
		if err := wsutil.WriteClientText(c, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if b, err := wsutil.ReadServerText(c); err != nil || !strings.HasPrefix(string(b), "SIP/2.0 200") {
			t.Fatalf("answer: %q %v", b, err)
		}
	}

	// The peer closes a parked connection.
	a := wsDial(t, addr)
	send(a, "end1")
	waitParked(t, st, 1)
	a.Close()
	start := time.Now()
	for !fl.has("WS " + a.LocalAddr().String()) {
		if time.Since(start) > time.Second {
			t.Fatalf("flow of a closed parked connection not reported within 1 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	waitParked(t, st, 0)

	// A parked connection idles past its deadline.
	b := wsDial(t, addr)
	defer b.Close()
	send(b, "end2")
	waitParked(t, st, 1)
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	start = time.Now()
	if _, err := io.ReadAll(b); err != nil {
		t.Fatalf("idle parked connection: %v (want the server to close it)", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("idle parked connection closed %s after it was parked (idle timeout %s)", d, parkAfter+time.Second)
	}
	for start = time.Now(); !fl.has("WS " + b.LocalAddr().String()); time.Sleep(2 * time.Millisecond) {
		if time.Since(start) > time.Second {
			t.Fatal("flow of the idle connection not reported closed")
		}
	}
	waitParked(t, st, 0)
}

// TestWSSIdleServerMemory: what the server holds per idle WSS connection
// that carried a message (clients in a child process, so only the server
// is counted): live heap and stacks stay under 8 KiB (about 5 KiB with
// the connections parked and crypto/tls's empty buffers released; 12.7
// KiB with a parked reader goroutine each and those buffers kept).
func TestWSSIdleServerMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 400 WSS connections")
	}
	if runtime.GOOS != "linux" {
		t.Skip("connections are parked with epoll (Linux)")
	}
	m := idleServerMemory(t, "wss", 400)
	t.Logf("server memory per idle WSS connection: %.0f B live heap + %.0f B stacks; %.2f goroutines", m.live, m.stack, m.goroutines)
	if m.live+m.stack > 8<<10 {
		t.Fatalf("an idle WSS connection holds %.0f bytes of heap and stacks in the server, want under 8 KiB", m.live+m.stack)
	}
}

// TestParkedConnCarriesAnswers: a request the server sends on a parked
// connection (a qualify OPTIONS to a browser) gets its answer read: the
// answer's bytes wake the connection.
func TestParkedConnCarriesAnswers(t *testing.T) {
	st, _, _, _ := streamStack(t)
	c := wsDial(t, listenerOf(t, st, "ws"))
	defer c.Close()
	msg := strings.Replace(string(options("ans1")), "SIP/2.0/UDP", "SIP/2.0/WS", 1)
	if err := wsutil.WriteClientText(c, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := wsutil.ReadServerText(c); err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		waitParked(t, st, 1)
		req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", User: "b", Host: "xyz.invalid"})
		req.SetTransport("WS")
		req.SetDestination(c.LocalAddr().String())
		tx, err := st.Client.TransactionRequest(t.Context(), req, sipgo.ClientRequestBuild)
		if err != nil {
			t.Fatal(err)
		}
		b, err := wsutil.ReadServerText(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := sip.ParseMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		res := sip.NewResponseFromRequest(got.(*sip.Request), 200, "OK", nil)
		if err := wsutil.WriteClientText(c, []byte(res.String())); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-tx.Responses():
			if r.StatusCode != 200 {
				t.Fatalf("round %d: %d", round, r.StatusCode)
			}
		case <-tx.Done():
			t.Fatalf("round %d: transaction ended: %v", round, tx.Err())
		case <-time.After(3 * time.Second):
			t.Fatalf("round %d: the answer was not read in 3 s (parked: %d)", round, st.poll.count())
		}
		tx.Terminate()
	}
}
