package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	setupRE   = regexp.MustCompile(`open (http://\S+/setup\?token=\S+) within 30 minutes`)
	consoleRE = regexp.MustCompile(`msg="web console" url=(\S+)`)
)

// TestWebConsoleAndAPI: the real binary with --http on a free loopback
// port prints a one-time setup URL; the first admin is made through it
// and logged in; `admin token add` makes an API token that creates an
// extension over the API. Then the HTTP side is abused — 2,000 idle
// connections and a slow header — while sipsak registers the extension
// over SIP and gets its 200: the connections the server holds stay
// bounded, and once the abuse ends the API answers again and lists the
// registration.
func TestWebConsoleAndAPI(t *testing.T) {
	t.Parallel()
	Need(t, "sipsak")
	s := Start(t, "")
	m := setupRE.FindStringSubmatch(s.Log())
	c := consoleRE.FindStringSubmatch(s.Log())
	if m == nil || c == nil {
		t.Fatalf("no setup URL or console address on stderr:\n%s", s.Log())
	}
	base, setup := c[1], m[1]
	// 60 s: creating the admin hashes its password with bcrypt (cost 11),
	// seconds under -race on a loaded machine.
	client := &http.Client{Timeout: 60 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	res, err := client.Get(setup)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("setup page: %v %v", err, res)
	}
	res.Body.Close()
	u, _ := url.Parse(setup)
	form := url.Values{"token": {u.Query().Get("token")}, "name": {"alice"}, "password": {"a long secret!"}, "password2": {"a long secret!"}}
	res, err = client.PostForm(base+"/setup", form)
	if err != nil || res.StatusCode != http.StatusSeeOther || len(res.Cookies()) == 0 {
		t.Fatalf("setup: %v %v", err, res)
	}
	res.Body.Close()
	if res, err := client.Get(setup); err != nil || res.StatusCode != 404 {
		t.Fatalf("setup URL still works after the first admin: %v %v", err, res)
	}
	if out := s.CLI("admin", "list"); !strings.Contains(out, "alice") {
		t.Fatalf("admin list: %q", out)
	}

	tok := strings.TrimSpace(s.CLI("admin", "token", "add", "e2e"))
	api := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := api("POST", "/api/v1/extensions", `{"extension":"2001","password":"secret-2001-x"}`); code != 201 {
		t.Fatalf("create 2001 over the API: %d %s", code, body)
	}
	if code, body := api("POST", "/api/v1/extensions", `{"extension":"2002","oops":1}`); code != 400 || !strings.Contains(body, `"error"`) {
		t.Fatalf("unknown field: %d %s", code, body)
	}

	// Abuse: 2,000 idle connections (the server serves 256 at once; the
	// rest wait in the kernel's backlog) and one that sends half a header.
	addr := strings.TrimPrefix(base, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 2000 {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			break // the backlog is full: that is the bound too
		}
		conns = append(conns, c)
	}
	if len(conns) < 300 {
		t.Fatalf("only %d connections opened: the abuse did not happen", len(conns))
	}
	if _, err := conns[0].Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")); err != nil {
		t.Fatal(err)
	}

	// SIP keeps working meanwhile.
	cmd := exec.Command("sipsak", "-U", "-C", "sip:2001@127.0.0.47:5999", "-x", "300",
		"-s", "sip:2001@"+s.Addr, "-u", "2001", "-a", "secret-2001-x")
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("sipsak did not finish in 30 s while HTTP was abused:\n%s", out)
	}
	if err != nil {
		t.Fatalf("sipsak REGISTER while HTTP was abused: %v\n%s", err, out)
	}
	if fds, err := os.ReadDir("/proc/" + strconv.Itoa(s.cmd.Process.Pid) + "/fd"); err == nil && len(fds) > 600 {
		t.Fatalf("the server holds %d file descriptors with %d HTTP connections open: not bounded", len(fds), len(conns))
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil

	var regs []map[string]any
	WaitFor(t, 20*time.Second, "the API to answer again and list 2001's registration", func() bool {
		code, body := api("GET", "/api/v1/registrations?ext=2001", "")
		return code == 200 && json.Unmarshal([]byte(body), &regs) == nil && len(regs) == 1
	})
	if regs[0]["contact"] != "sip:2001@127.0.0.47:5999" {
		t.Fatalf("registration: %+v", regs[0])
	}
	if code, body := api("GET", "/metrics", ""); code != 200 || !strings.Contains(body, `switchboard_auth_outcomes_total{cause="registered"}`) {
		t.Fatalf("metrics: %d %.300s", code, body)
	}
}

// TestWebPublicBindRefused: serve refuses a non-loopback --http without
// TLS or --http-insecure, in one line, before binding anything.
func TestWebPublicBindRefused(t *testing.T) {
	t.Parallel()
	_, errOut, code := RunCLI(t, t.TempDir(), "", "serve", "--sip", "127.0.0.1:0", "--http", "0.0.0.0:0")
	if code != 1 || !strings.Contains(errOut, "--http-cert") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}
