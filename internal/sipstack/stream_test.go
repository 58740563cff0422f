package sipstack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/switchboard-pbx/switchboard/internal/tlscert"
)

func TestOriginAllowed(t *testing.T) {
	for _, c := range []struct {
		origin, host string
		allowed      []string
		want         bool
	}{
		{"https://pbx.example.com", "pbx.example.com:7443", nil, true},
		{"https://pbx.example.com:8443", "PBX.example.com:7443", nil, true},
		{"http://localhost:3000", "pbx.example.com:7443", nil, true},
		{"http://127.0.0.5", "pbx.example.com:7443", nil, true},
		{"http://[::1]:8080", "pbx.example.com:7443", nil, true},
		{"https://evil.example", "pbx.example.com:7443", nil, false},
		{"https://phone.example.com", "pbx.example.com:7443", []string{"https://phone.example.com"}, true},
		{"https://phone.example.com", "pbx.example.com:7443", []string{"https://other.example.com"}, false},
		{"https://evil.example", "pbx.example.com:7443", []string{"*"}, true},
		{"null", "pbx.example.com:7443", nil, false},
		{"https://pbx.example.com.evil.example", "pbx.example.com", nil, false},
	} {
		if got := OriginAllowed(c.origin, c.host, c.allowed); got != c.want {
			t.Errorf("OriginAllowed(%q, %q, %v) = %v, want %v", c.origin, c.host, c.allowed, got, c.want)
		}
	}
}

// flowLog collects FlowClosed calls.
type flowLog struct {
	mu     sync.Mutex
	closed []string
}

func (f *flowLog) add(proto, remote string) {
	f.mu.Lock()
	f.closed = append(f.closed, proto+" "+remote)
	f.mu.Unlock()
}

func (f *flowLog) has(s string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.closed {
		if c == s {
			return true
		}
	}
	return false
}

// reasons returns the HandshakeError reasons reported so far.
func (e *events) reasons() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.evs {
		var he *HandshakeError
		if ev.Kind == HandshakeFailed && errors.As(ev.Err, &he) {
			out = append(out, ev.Proto+":"+he.Reason)
		}
	}
	return out
}

func (e *events) errContains(sub string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.evs {
		if ev.Err != nil && strings.Contains(ev.Err.Error(), sub) {
			return true
		}
	}
	return false
}

func (e *events) waitReason(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range e.reasons() {
			if r == want {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %s event; got %v", want, e.reasons())
}

func streamStack(t *testing.T) (*Stack, *events, *flowLog, *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	m, _, err := tlscert.Open(dir, "", "", []string{"pbx.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var evs events
	var fl flowLog
	st, logs := startStack(t, Options{ConnEvent: evs.add, FlowClosed: fl.add, Streams: StreamOptions{
		TLS: "127.0.0.1:0", WS: "127.0.0.1:0", WSS: "127.0.0.1:0", TLSConfig: m.Config(),
		HandshakeTimeout: 400 * time.Millisecond}}, answerOptions)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	pool, err := tlscertPool(filepath.Join(dir, tlscert.SelfCertFile))
	if err != nil {
		t.Fatal(err)
	}
	return st, &evs, &fl, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

func listenerOf(t testing.TB, st *Stack, proto string) string {
	t.Helper()
	for _, l := range st.Listeners {
		if l.Proto == proto {
			return l.Addr
		}
	}
	t.Fatalf("no %s listener in %+v", proto, st.Listeners)
	return ""
}

const upgradeHead = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

// httpStatus sends req on a new connection to addr and returns the status
// line answered.
func httpStatus(t *testing.T, addr, req string) string {
	t.Helper()
	c := dialFrom(t, "127.0.0.1", addr)
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1024)
	n, _ := c.Read(buf)
	line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
	return line
}

// TestWebSocketUpgradeChecks: an upgrade without the sip subprotocol gets
// 400, one from a foreign page's Origin 403, each reported with its
// reason; a browser page on the same host, with sip, registers a flow
// that carries SIP (OPTIONS answered over the WebSocket) and whose close
// is reported as a closed WS flow.
func TestWebSocketUpgradeChecks(t *testing.T) {
	st, evs, fl, _ := streamStack(t)
	addr := listenerOf(t, st, "ws")
	if got := httpStatus(t, addr, upgradeHead+"\r\n"); !strings.HasPrefix(got, "HTTP/1.1 400") {
		t.Errorf("upgrade without sip: %q", got)
	}
	evs.waitReason(t, "WS:"+ReasonNoSubprotocol)
	if got := httpStatus(t, addr, upgradeHead+"Sec-WebSocket-Protocol: sip\r\nOrigin: https://evil.example\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 403") {
		t.Errorf("foreign origin: %q", got)
	}
	evs.waitReason(t, "WS:"+ReasonOrigin)
	if got := httpStatus(t, addr, "OPTIONS sip:x SIP/2.0\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 400") {
		t.Errorf("SIP on the WS port: %q", got)
	}
	evs.waitReason(t, "WS:"+ReasonBadUpgrade)

	d := ws.Dialer{Protocols: []string{"sip"}, Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": []string{"http://127.0.0.1:8080"}})}
	c, _, hs, err := d.Dial(context.Background(), "ws://"+addr+"/")
	if err != nil {
		t.Fatalf("upgrade with sip from a loopback page: %v", err)
	}
	if hs.Protocol != "sip" {
		t.Errorf("subprotocol answered: %q", hs.Protocol)
	}
	msg := strings.Replace(string(options("ws1")), "SIP/2.0/UDP", "SIP/2.0/WS", 1)
	if err := wsutil.WriteClientText(c, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, err := wsutil.ReadServerText(c)
	if err != nil || !strings.HasPrefix(string(b), "SIP/2.0 200") {
		t.Fatalf("OPTIONS over WS: %q %v", b, err)
	}
	local := c.LocalAddr().String()
	if !st.FlowOpen("WS", local) {
		t.Errorf("FlowOpen(WS, %s) = false while open", local)
	}
	c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for !fl.has("WS "+local) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !fl.has("WS " + local) {
		t.Fatalf("FlowClosed not called for WS %s", local)
	}
	if st.FlowOpen("WS", local) {
		t.Errorf("FlowOpen(WS, %s) = true after close", local)
	}
}

// TestTLSHandshakeFailures: garbage on the TLS port and a handshake that
// stalls are closed and reported (tls_handshake_failed, handshake_timeout);
// a client trusting the certificate gets SIP over TLS and WSS.
func TestTLSHandshakeFailures(t *testing.T) {
	st, evs, _, ccfg := streamStack(t)
	tlsAddr, wssAddr := listenerOf(t, st, "tls"), listenerOf(t, st, "wss")

	g := dialFrom(t, "127.0.0.1", tlsAddr)
	_, _ = g.Write([]byte("OPTIONS sip:x SIP/2.0\r\n\r\n"))
	if !closedByServer(g, 3*time.Second) {
		t.Error("garbage on the TLS port: connection kept open")
	}
	evs.waitReason(t, "TLS:"+ReasonTLS)

	slow := dialFrom(t, "127.0.0.1", wssAddr)
	_, _ = slow.Write([]byte{0x16}) // the first byte of a ClientHello, then nothing
	start := time.Now()
	if !closedByServer(slow, 3*time.Second) {
		t.Error("stalled handshake: connection kept open")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stalled handshake closed after %s (timeout 400ms)", d)
	}
	evs.waitReason(t, "WSS:"+ReasonTimeout)

	// A client that does not trust the certificate sends an alert: the
	// event carries it (what the journal tells the admin).
	if c, err := tls.Dial("tcp", tlsAddr, &tls.Config{ServerName: "127.0.0.1"}); err == nil {
		c.Close()
		t.Fatal("a client without the self-signed certificate accepted it")
	}
	deadline := time.Now().Add(3 * time.Second)
	for !evs.errContains("remote error: tls: ") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !evs.errContains("remote error: tls: ") {
		t.Errorf("the client's alert is not in the handshake events: %v", evs.reasons())
	}

	// TLS 1.2 is the minimum.
	old := ccfg.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if c, err := tls.Dial("tcp", tlsAddr, old); err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 handshake succeeded")
	} else if !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("TLS 1.1 refused for another reason: %v", err)
	}

	c, err := tls.Dial("tcp", tlsAddr, ccfg)
	if err != nil {
		t.Fatalf("TLS dial trusting the certificate: %v", err)
	}
	defer c.Close()
	msg := strings.Replace(string(options("tls1")), "SIP/2.0/UDP", "SIP/2.0/TLS", 1)
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
		t.Fatalf("OPTIONS over TLS: %q %v", buf[:n], err)
	}

	d := ws.Dialer{Protocols: []string{"sip"}, TLSConfig: ccfg}
	wc, _, _, err := d.Dial(context.Background(), "wss://"+wssAddr+"/")
	if err != nil {
		t.Fatalf("WSS dial: %v", err)
	}
	defer wc.Close()
	// A frame over the 64 KiB limit ends the connection.
	hdr := ws.Header{Fin: true, OpCode: ws.OpText, Length: 1 << 20, Masked: true, Mask: [4]byte{1, 2, 3, 4}}
	if err := ws.WriteHeader(wc, hdr); err != nil {
		t.Fatal(err)
	}
	_, _ = wc.Write(make([]byte, 4096))
	if !closedByServer(wc, 3*time.Second) {
		t.Error("oversized WebSocket frame: connection kept open")
	}
	evs.waitReason(t, "WSS:"+ReasonFrameTooLarge)
}

func tlscertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, errors.New("no PEM certificate in " + path)
	}
	return p, nil
}

// FuzzCheckUpgrade: any bytes as a WebSocket upgrade request get an
// answer or an error, never a panic, and a refusal is a *HandshakeError.
func FuzzCheckUpgrade(f *testing.F) {
	f.Add([]byte(upgradeHead + "Sec-WebSocket-Protocol: sip\r\n\r\n"))
	f.Add([]byte(upgradeHead + "Sec-WebSocket-Protocol: sip\r\nOrigin: https://evil.example\r\n\r\n"))
	f.Add([]byte(upgradeHead + "\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("OPTIONS sip:x SIP/2.0\r\n\r\n"))
	f.Add([]byte("\x16\x03\x01\x00"))
	f.Fuzz(func(t *testing.T, req []byte) {
		srv, cli := net.Pipe()
		defer cli.Close()
		go func() { _, _ = io.Copy(io.Discard, cli) }() // the answer
		go func() {
			_, _ = cli.Write(append(append([]byte{}, req...), "\r\n\r\n"...)) // end the head whatever it was
		}()
		_ = srv.SetDeadline(time.Now().Add(2 * time.Second))
		c, err := checkUpgrade(srv, nil)
		if err != nil {
			var he *HandshakeError
			if !errors.As(err, &he) && !errors.Is(err, errPlainPage) {
				t.Fatalf("error %v is not a HandshakeError", err)
			}
		} else if c == nil {
			t.Fatal("no connection and no error")
		}
		srv.Close()
	})
}
