package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/tlscert"
)

// TestWSSFlowReuse: a phone registers over WSS with a JsSIP-style contact
// (sip:2002@xyz.invalid;transport=ws) that nothing can reach; `reg` shows
// the binding over WSS from the connection's address. A call from a UDP
// phone (SIPp) reaches it down the WebSocket it registered on, is
// answered and hung up. When the WebSocket closes, the binding is marked
// unreachable within 1 s with a connection_closed journal entry naming
// the WebSocket, and the next call gets 480 USER_NOT_REGISTERED.
//
// Serial: it bounds the time until a closed WebSocket's binding shows
// unreachable to 3 s, CLI polls included.
func TestWSSFlowReuse(t *testing.T) {
	Need(t, "sipp")
	s := Start(t, "", "--wss", "127.0.0.1:0")
	s.AddExt("2001", "secret-2001")
	s.AddExt("2002", "secret-2002")
	addr := s.ListenerAddr("wss")
	if addr == "" {
		t.Fatalf("no wss listener in the start line:\n%s", s.Log())
	}
	u, err := dialWS(t, s, "wss", addr, "https://127.0.0.1")
	if err != nil {
		t.Fatalf("WSS dial: %v\n%s", err, tail(s.Log(), 3000))
	}
	if r := u.register("2002", "secret-2002", 300); r.Status != 200 {
		t.Fatalf("REGISTER over WSS: %d\n%s\nserver log:\n%s", r.Status, r.Raw, tail(s.Log(), 3000))
	}
	if fp := s.CertFingerprint(t); !strings.Contains(s.Log(), "sha256="+fp) || len(s.CertSPKIHash(t)) != 44 {
		t.Errorf("the start log does not print the certificate's fingerprint %s", fp)
	}
	regs := s.Regs("2002")
	if len(regs) != 1 || regs[0].Transport != "WSS" || regs[0].Source != u.conn.LocalAddr().String() || regs[0].Connection != "open" {
		t.Fatalf("binding: %+v, want one over WSS from %s", regs, u.conn.LocalAddr())
	}

	// A call from a UDP phone goes down the WebSocket.
	type result struct {
		invite string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		inv, err := u.answerCall(20 * time.Second)
		got <- result{inv, err}
	}()
	r := SIPp(t, s.Addr, "call-uac-webrtc.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")), "-d", "300")
	res := <-got
	if res.err != nil || r.Code != 0 {
		t.Fatalf("call UDP -> WSS: sipp exit %d, ws side: %v\n%s\nserver log:\n%s", r.Code, res.err, r.Output, tail(s.Log(), 3000))
	}
	if !strings.HasPrefix(res.invite, "INVITE sip:2002@xyz.invalid") || !strings.Contains(res.invite, "Via: SIP/2.0/WSS") {
		t.Fatalf("INVITE over the WebSocket:\n%s", res.invite)
	}

	// Close the WebSocket: unreachable at once (the server marks it within
	// milliseconds; the bound is the CLI polling it, a process start each,
	// slow under -race on a loaded machine), journaled.
	closed := time.Now()
	u.conn.Close()
	WaitFor(t, 3*time.Second, "the binding marked unreachable", func() bool {
		regs := s.Regs("2002")
		return len(regs) == 1 && regs[0].PingStatus == "unreachable" && regs[0].Connection == "closed"
	})
	if d := time.Since(closed); d > 3*time.Second {
		t.Errorf("marked unreachable after %s", d)
	}
	waitJournal(t, s, "2002", "connection_closed", 1)
	ev := journalEvents(t, s, "--ext", "2002", "--cause", "connection_closed")
	if d, _ := ev[0]["detail"].(string); !strings.Contains(d, "registered over WSS from 127.0.0.1") || !strings.Contains(d, "WebSocket closed at") {
		t.Errorf("journal detail: %q", d)
	}

	out, _, _ := s.TryCLI("doctor", "2002")
	if !strings.Contains(out, "registered over WSS from 127.0.0.1") || !strings.Contains(out, "calls get 480 until it registers again") ||
		!strings.Contains(out, "connection_closed") {
		t.Errorf("doctor 2002 does not name the closed WebSocket:\n%s", out)
	}

	// The next call gets 480 without the server dialling the browser.
	r = SIPp(t, s.Addr, "doctor-call-480.xml", 1, "-inf", CSV(t, "SEQUENTIAL", []string{"2001", "2002", "[authentication username=2001 password=secret-2001]"}))
	if r.Code != 0 {
		t.Fatalf("call to the closed WSS binding: want 480, sipp exit %d\n%s", r.Code, r.Output)
	}
	if !strings.Contains(r.Messages, "USER_NOT_REGISTERED") {
		t.Errorf("480 without USER_NOT_REGISTERED:\n%s", tail(r.Messages, 2000))
	}
}

// TestTLSBaresipCall: two baresip phones register over TLS
// (;transport=tls), trusting the server's self-signed certificate through
// baresip's sip_cafile; `reg` shows them over TLS; 2001 calls 2002, the
// call is established on both sides, 2001 hangs up, the BYE reaches 2002
// over its TLS connection and the record says NORMAL_CLEARING.
func TestTLSBaresipCall(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	tlsAddr := s.ListenerAddr("tls")
	if tlsAddr == "" {
		t.Fatalf("no tls listener in the start line:\n%s", s.Log())
	}
	ca := filepath.Join(s.Data, "tls-cert.pem")
	a := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2001", "secret-2001", tlsAddr, "tls")},
		Config: []string{"sip_cafile " + ca, "ausrc_srate 48000", "ausrc_channels 2"}})
	b := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2002", "secret-2002", tlsAddr, "tls", "answermode=auto")},
		Config: []string{"sip_cafile " + ca, "ausrc_srate 48000", "ausrc_channels 2"}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caller log:\n%s\ncallee log:\n%s\nserver log:\n%s", tail(a.Log(), 3000), tail(b.Log(), 3000), tail(s.Log(), 4000))
			t.Logf("journal:\n%s", s.CLI("journal"))
		}
	})
	a.WaitRegistered("2001@127.0.0.1", 15*time.Second)
	b.WaitRegistered("2002@127.0.0.1", 15*time.Second)
	for _, ext := range []string{"2001", "2002"} {
		if regs := s.Regs(ext); len(regs) != 1 || regs[0].Transport != "TLS" {
			t.Fatalf("%s: %+v, want one binding over TLS", ext, regs)
		}
	}
	if err := a.Dial("sip:2002@" + tlsAddr); err != nil {
		t.Fatalf("dial: %v\n%s", err, a.Log())
	}
	a.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	b.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	if err := a.Hangup(); err != nil {
		t.Fatalf("hangup: %v", err)
	}
	b.WaitEvent("CALL_CLOSED", 0, 10*time.Second)
	c := waitCall(t, s, "NORMAL_CLEARING", func(c CallRecord) bool { return c.Cause == "NORMAL_CLEARING" })
	if c.From != "2001" || c.To != "2002" || c.HangupBy != "caller" {
		t.Fatalf("call record %+v", c)
	}
}

// TestTLSWSAbuse: while one address holds 2,000 connection attempts to the
// TLS and WS ports (1,000 each, bounded), and others send garbage to the
// TLS port, a WebSocket upgrade without the sip subprotocol, one from a
// foreign page, and a handshake that stalls, a phone registers over UDP
// and gets 200 each time. Every refusal is journaled with its cause and
// the transport; the server neither panics nor stops.
func TestTLSWSAbuse(t *testing.T) {
	t.Parallel()
	s := Start(t, "", "--ws", "127.0.0.1:0", "--tcp-idle-timeout", "1s")
	s.AddExt("2002", "secret-2002")
	s.CLI("profile", "set", "internal", "--trusted-acl", "")
	tlsAddr, wsAddr, wssAddr := s.ListenerAddr("tls"), s.ListenerAddr("ws"), s.ListenerAddr("wss")
	if tlsAddr == "" || wsAddr == "" || wssAddr == "" {
		t.Fatalf("listeners tls=%q ws=%q wss=%q", tlsAddr, wsAddr, wssAddr)
	}
	register := func() {
		t.Helper()
		u := newRawUA(t, s, "127.0.0.2")
		callID := fmt.Sprintf("abuse-%d", time.Now().UnixNano())
		nonce, realm := u.challenge("2002", "127.0.0.1", callID)
		r := u.send(u.register(regReq{User: "2002", Domain: "127.0.0.1", CallID: callID, CSeq: 2,
			Auth: digestAnswer("2002", realm, "secret-2002", nonce, "sip:"+s.Addr, "auth", "00000001")}))
		if r.Status != 200 {
			t.Fatalf("REGISTER over UDP during the abuse: %d\n%s", r.Status, tail(s.Log(), 3000))
		}
	}
	register()

	// 2,000 idle connections from one address, held open.
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	var wg sync.WaitGroup
	for i, addr := range []string{tlsAddr, wsAddr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}, Timeout: 2 * time.Second}
			for j := 0; j < 1000; j++ {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				if j == 500 && i == 0 {
					register()
				}
			}
		}()
	}
	// Garbage, refused upgrades, a stalled handshake, from other addresses.
	raw := func(src, addr, data string) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Errorf("dial %s: %v", addr, err)
			return
		}
		defer c.Close()
		_, _ = c.Write([]byte(data))
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, _ = io.ReadAll(c)
	}
	raw("127.0.0.3", tlsAddr, "REGISTER sip:x SIP/2.0\r\n\r\n")
	raw("127.0.0.4", wsAddr, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if _, err := dialWS(t, s, "wss", wssAddr, "https://evil.example"); err == nil {
		t.Error("WSS upgrade from a foreign page accepted")
	}
	raw("127.0.0.6", wssAddr, "\x16") // stalls: closed by the handshake timeout
	wg.Wait()
	register()

	want := map[string]string{"tls_handshake_failed": "127.0.0.3", "ws_no_sip_subprotocol": "127.0.0.4",
		"ws_origin_refused": "127.0.0.1", "handshake_timeout": "127.0.0.6", "connection_limit": "127.0.0.9"}
	for c, ip := range want {
		WaitFor(t, 5*time.Second, c+" in the journal", func() bool {
			for _, e := range journalEvents(t, s, "--cause", c) {
				if src, _ := e["source"].(string); strings.HasPrefix(src, ip+":") {
					return true
				}
			}
			return false
		})
	}
	limits := journalEvents(t, s, "--cause", "connection_limit")
	tps := map[string]bool{}
	for _, e := range limits {
		tp, _ := e["transport"].(string)
		tps[tp] = true
	}
	if !tps["TLS"] || !tps["WS"] {
		t.Errorf("connection_limit events by transport: %v, want TLS and WS", tps)
	}
	if len(limits) > 10 {
		t.Errorf("%d connection_limit events for one flood: not rate-limited", len(limits))
	}
	// A phone whose REGISTER never arrives: the doctor points at the
	// refused handshakes.
	s.AddExt("2009", "secret-2009")
	if out, _, _ := s.TryCLI("doctor", "2009"); !strings.Contains(out, "no REGISTER for 2009") || !strings.Contains(out, "switchboard journal --cause") {
		t.Errorf("doctor 2009 does not mention the refused handshakes:\n%s", out)
	}
	alive(t, s)
	if strings.Contains(s.Log(), "panic") {
		t.Fatalf("panic in the server log:\n%s", tail(s.Log(), 3000))
	}
}

// TestTLSCertRotation: with --tls-cert/--tls-key, a certificate replaced
// on disk (as certbot renews) is served to the next TLS handshake without
// a restart; a broken replacement keeps the previous one in force.
func TestTLSCertRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	if err := tlscert.CreateSelfSigned(cert, key, []string{"old.example.com"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	s := Start(t, "", "--tls-cert", cert, "--tls-key", key)
	addr := s.ListenerAddr("tls")
	served := func() string {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := served(); got != "old.example.com" {
		t.Fatalf("served %q, want old.example.com", got)
	}
	time.Sleep(20 * time.Millisecond)
	if err := tlscert.CreateSelfSigned(cert, key, []string{"new.example.com"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 6*time.Second, "the renewed certificate served", func() bool { return served() == "new.example.com" })
	// The log reaches the test through a pipe, possibly after the new
	// certificate is served.
	WaitFor(t, 5*time.Second, "the reload logged", func() bool { return strings.Contains(s.Log(), "tls certificate reloaded") })
	if err := os.WriteFile(cert, []byte("-----BEGIN CERTIFICATE-----\nbroken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 6*time.Second, "the failed reload logged", func() bool { return strings.Contains(s.Log(), "tls certificate not reloaded") })
	if got := served(); got != "new.example.com" {
		t.Fatalf("after a broken file: served %q, want new.example.com still", got)
	}
}

// TestSipsakTCPRegister: sipsak registers over TCP with digest (200); it
// closes its connection right after, so the binding's flow is gone: the
// journal says connection_closed over TCP and `reg` shows the connection
// closed (a call would get 480 rather than a dial to a closed port).
// sipsak picks its own local port: with -l it binds the port on 0.0.0.0,
// which fails when any socket of any test holds it on any local address.
func TestSipsakTCPRegister(t *testing.T) {
	t.Parallel()
	Need(t, "sipsak")
	s := Start(t, "")
	s.AddExt("2001", "secret-2001")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "sipsak", "-U", "-C", "sip:2001@127.0.0.1:5099", "-s", "sip:2001@"+s.Addr,
		"-u", "2001", "-a", "secret-2001", "-E", "tcp", "-x", "120", "-i").CombinedOutput()
	if err != nil {
		t.Fatalf("sipsak REGISTER over TCP: %v\n%s\nserver log:\n%s", err, out, tail(s.Log(), 2000))
	}
	waitJournal(t, s, "2001", "registered", 1)
	if ev := journalEvents(t, s, "--ext", "2001", "--cause", "registered"); ev[0]["transport"] != "TCP" {
		t.Fatalf("registered over %v, want TCP", ev[0]["transport"])
	}
	waitJournal(t, s, "2001", "connection_closed", 1)
	regs := s.Regs("2001")
	if len(regs) != 1 || regs[0].Transport != "TCP" || regs[0].Connection != "closed" {
		t.Fatalf("reg: %+v", regs)
	}
}

// TestWSQualify: the OPTIONS qualify ping of a binding made over a plain
// WebSocket goes down that WebSocket (the contact host xyz.invalid could
// not be reached otherwise); answered, the binding is reachable.
func TestWSQualify(t *testing.T) {
	t.Parallel()
	s := Start(t, "", "--ws", "127.0.0.1:0", "--qualify-interval", "1s")
	s.AddExt("2002", "secret-2002")
	u, err := dialWS(t, s, "ws", s.ListenerAddr("ws"), "")
	if err != nil {
		t.Fatal(err)
	}
	if r := u.register("2002", "secret-2002", 300); r.Status != 200 {
		t.Fatalf("REGISTER over WS: %d %s", r.Status, r.Raw)
	}
	deadline := time.Now().Add(10 * time.Second)
	var opt string
	for time.Now().Before(deadline) && opt == "" {
		if m := u.read(time.Until(deadline)); strings.HasPrefix(m, "OPTIONS ") {
			opt = m
		}
	}
	if !strings.HasPrefix(opt, "OPTIONS sip:2002@xyz.invalid") {
		t.Fatalf("no OPTIONS over the WebSocket (got %q)\n%s", opt, tail(s.Log(), 2000))
	}
	u.write(reply(opt, "200 OK", ";tag=q", "", ""))
	WaitFor(t, 5*time.Second, "the WS binding reachable", func() bool {
		regs := s.Regs("2002")
		return len(regs) == 1 && regs[0].PingStatus == "reachable" && regs[0].Transport == "WS"
	})
}
