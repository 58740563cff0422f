// Package webrtc drives JsSIP browser phones in headless Chromium for
// switchboard's end-to-end tests.
//
// The phone page (page/phone.html, page/phone.js) is served by the test's
// own HTTP server on 127.0.0.1; it loads JsSIP bundled at test time from
// the npm package pinned in package.json (npm ci && npm run bundle in this
// directory, as .ci/run does; node_modules is never committed). Chromium
// runs with fake media devices (a beep from a fake microphone), loopback
// allowed in peer connections, and trusts the server's self-signed
// certificate by its public key hash (--ignore-certificate-errors-spki-list,
// which Chromium honours only with a --user-data-dir, as here): no test CA,
// no change to the machine's trust store. The page gives ICE no STUN or
// TURN server and keeps only 127.0.0.1 candidates in its SDP, so media
// stays on loopback.
package webrtc

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"embed"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/switchboard-pbx/switchboard/test/browser"
)

//go:embed page
var pageFS embed.FS

// dir is this package's directory (package.json, node_modules).
func dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Bundle returns the path of the JsSIP bundle, building it with npm when
// node_modules is installed but the bundle is not. Without node_modules the
// test is skipped, or fails under CI (CI set): .ci/run installs it.
func Bundle(t testing.TB) string {
	t.Helper()
	d := dir()
	out := filepath.Join(d, "node_modules", ".bundle", "jssip.js")
	if _, err := os.Stat(out); err == nil {
		return out
	}
	if _, err := os.Stat(filepath.Join(d, "node_modules", "jssip", "package.json")); err != nil {
		msg := "JsSIP is not installed: cd test/webrtc && npm ci && npm run bundle (.ci/run does)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "run", "bundle")
	cmd.Dir = d
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm run bundle: %v\n%s", err, b)
	}
	return out
}

// ServePage serves the phone page and the JsSIP bundle on 127.0.0.1 until
// the test ends, and returns its base URL ("http://127.0.0.1:PORT"), a
// secure context for getUserMedia as every loopback page is.
func ServePage(t testing.TB) string {
	t.Helper()
	bundle := Bundle(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/jssip.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		http.ServeFile(w, r, bundle)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		name := map[string]string{"/phone.html": "page/phone.html", "/phone.js": "page/phone.js"}[r.URL.Path]
		b, err := pageFS.ReadFile(name)
		if name == "" || err != nil {
			http.NotFound(w, r)
			return
		}
		ct := "text/html; charset=utf-8"
		if filepath.Ext(name) == ".js" {
			ct = "text/javascript; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		w.Write(b)
	})
	srv := httptest.NewUnstartedServer(mux)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// SPKIHash returns the base64 SHA-256 of the public key of the certificate
// a TLS server at addr (host:port on loopback) presents: the value
// --ignore-certificate-errors-spki-list takes.
func SPKIHash(t testing.TB, addr string) string {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) // only to read the certificate
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer c.Close()
	certs := c.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		t.Fatalf("%s presented no certificate", addr)
	}
	sum := sha256.Sum256(certs[0].RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Launch starts a headless Chromium (test/browser's flags) for WebRTC:
// fake microphone and camera granted without a prompt, loopback allowed in
// peer connections, and the certificate whose key hashes to spki trusted
// ("" for none). It stops when the test ends or after timeout.
func Launch(t testing.TB, spki string, timeout time.Duration) context.Context {
	t.Helper()
	bin := browser.Need(t)
	opts := append(browser.Options(bin, t.TempDir()),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
	if spki != "" {
		opts = append(opts, chromedp.Flag("ignore-certificate-errors-spki-list", spki))
	}
	ctx, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelTimeout()
	})
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("browser: start %s: %v", bin, err)
	}
	return bctx
}

// State is what a phone page reports (window.phone.state).
type State struct {
	Registered         bool     `json:"registered"`
	RegistrationFailed string   `json:"registration_failed"`
	Connected          bool     `json:"connected"`
	Disconnected       int      `json:"disconnected"`
	Incoming           int      `json:"incoming"`
	Progress           bool     `json:"progress"`
	Confirmed          bool     `json:"confirmed"`
	Ended              bool     `json:"ended"`
	Failed             bool     `json:"failed"`
	Cause              string   `json:"cause"`
	Status             int      `json:"status"`
	Reason             string   `json:"reason"`
	Warning            string   `json:"warning"`
	Originator         string   `json:"originator"`
	Errors             []string `json:"errors"`
	// SDPCandidates are the ICE candidate addresses of the last SDP the
	// phone sent; RecordRoute the Record-Route of the last INVITE it got.
	SDPCandidates []string `json:"sdp_candidates"`
	RecordRoute   []string `json:"record_route"`
}

// Stats are a phone's audio RTP byte counters (getStats).
type Stats struct {
	BytesReceived int64 `json:"bytes_received"`
	BytesSent     int64 `json:"bytes_sent"`
}

// Phone is one browser tab running the phone page.
type Phone struct {
	t      testing.TB
	Name   string
	ctx    context.Context
	cancel context.CancelFunc
}

// Open opens the phone page of user@domain (password) in a new tab of the
// browser bctx, registering over the WebSocket URL wss.
func Open(t testing.TB, bctx context.Context, base, wss, user, password, domain string) *Phone {
	t.Helper()
	ctx, cancel := chromedp.NewContext(bctx)
	t.Cleanup(cancel)
	q := url.Values{"wss": {wss}, "user": {user}, "password": {password}, "domain": {domain}}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/phone.html?"+q.Encode())); err != nil {
		t.Fatalf("phone %s: open page: %v", user, err)
	}
	return &Phone{t: t, Name: user, ctx: ctx, cancel: cancel}
}

// Eval runs a script in the page; its value is discarded.
func (p *Phone) Eval(js string) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, chromedp.Evaluate[chromedp.Void](js)); err != nil {
		p.t.Fatalf("phone %s: %s: %v", p.Name, js, err)
	}
}

// State reads the page's state.
func (p *Phone) State() State {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[State](`window.phone ? window.phone.state : {errors: ["phone.js did not start"]}`))
	if err != nil {
		p.t.Fatalf("phone %s: read state: %v", p.Name, err)
	}
	return s
}

// Stats reads the call's RTP byte counters.
func (p *Phone) Stats() Stats {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[Stats](`window.phone.stats()`, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("phone %s: getStats: %v", p.Name, err)
	}
	return s
}

// Wait polls the state until ok accepts it, failing the test after
// timeout with the last state seen.
func (p *Phone) Wait(what string, timeout time.Duration, ok func(State) bool) State {
	p.t.Helper()
	var s State
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if s = p.State(); ok(s) {
			return s
		}
	}
	p.t.Fatalf("phone %s: not %s within %s; state %+v", p.Name, what, timeout, s)
	return s
}

// Close closes the tab (its WebSocket with it), as a user closing it.
func (p *Phone) Close() {
	p.t.Helper()
	// Cancel closes the tab this context opened, and waits for it.
	if err := chromedp.Cancel(p.ctx); err != nil {
		p.t.Fatalf("phone %s: close tab: %v", p.Name, err)
	}
	p.cancel()
}

// String names the phone.
func (p *Phone) String() string { return fmt.Sprintf("phone %s", p.Name) }
