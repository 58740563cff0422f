package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// baresipModules is where Debian's baresip-core installs its modules.
const baresipModules = "/usr/lib/baresip/modules"

// BaresipOptions configure a headless baresip (baresip-core 1.0) run by
// StartBaresip.
type BaresipOptions struct {
	// Accounts are the lines of the accounts file, e.g. from BaresipAccount.
	Accounts []string
	// Modules are extra modules to load, by name ("sndfile", "aufile",
	// ...), after the defaults (g711, ausine, aubridge, account, menu,
	// ctrl_tcp).
	Modules []string
	// Config lines are added to the config file. A line whose key (first
	// word) is one of the defaults replaces that default, e.g.
	// "audio_source ausine,440" or "rtp_ports 30000-30019".
	Config []string
	// Args are extra command-line arguments for baresip.
	Args []string
}

// BaresipEvent is one event baresip reported over ctrl_tcp, e.g.
// {"event":true,"class":"register","type":"REGISTER_OK",...}.
type BaresipEvent struct {
	Type       string `json:"type"`
	Class      string `json:"class"`
	AccountAOR string `json:"accountaor"`
	Direction  string `json:"direction"`
	PeerURI    string `json:"peeruri"`
	ID         string `json:"id"`
	Param      string `json:"param"`
	Raw        string `json:"-"`
}

// BaresipResponse answers a ctrl_tcp command.
type BaresipResponse struct {
	OK    bool   `json:"ok"`
	Data  string `json:"data"`
	Token string `json:"token"`
}

// Baresip is a running baresip process bound to 127.0.0.1: SIP on SIPAddr
// (UDP and TCP), its ctrl_tcp JSON interface on CtrlAddr, media ports on
// loopback only, DNS pointed at 127.0.0.1 so nothing leaves the machine.
type Baresip struct {
	t        testing.TB
	Dir      string // config directory (config, accounts)
	SIPAddr  string // 127.0.0.1:port baresip listens on for SIP
	CtrlAddr string // 127.0.0.1:port of ctrl_tcp

	cmd  *exec.Cmd
	done chan struct{}

	mu      sync.Mutex // guards log, events, replies, conn, stopped
	cond    *sync.Cond // signalled when log, events or replies grow
	log     bytes.Buffer
	events  []BaresipEvent
	replies map[string]BaresipResponse
	conn    net.Conn
	nextTok int
	stopped bool
}

// BaresipAccount returns an accounts-file line registering user at the
// server addr (ip:port) over transport ("udp" or "tcp"), with a 60 s
// registration interval; params are added as further ";name=value" address
// parameters (e.g. "answermode=auto").
func BaresipAccount(user, password, addr, transport string, params ...string) string {
	host, port, _ := net.SplitHostPort(addr)
	line := fmt.Sprintf("<sip:%s@%s:%s;transport=%s>;auth_pass=%s;regint=60", user, host, port, transport, password)
	for _, p := range params {
		line += ";" + p
	}
	return line
}

// freeTCPAndUDPPort returns a port free for UDP and TCP on 127.0.0.1, with
// the next port free for TCP too (baresip also listens for TLS on port+1).
func freeTCPAndUDPPort(t testing.TB) int {
	t.Helper()
	for range 50 {
		p := freePorts(t, 2, "udp", "tcp")
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		if err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no free port pair for baresip")
	return 0
}

func freeTCPPort(t testing.TB) int {
	t.Helper()
	return freePorts(t, 1, "tcp")
}

// StartBaresip writes a config directory, starts `baresip -f DIR`, connects
// to its ctrl_tcp interface, and stops baresip (SIGTERM, by PID) when the
// test ends. It skips the test when baresip is missing (fails under CI).
//
// Ports are picked free and then handed to baresip, so another process can
// take one in between: then baresip says "Address already in use" and it
// is started again on other ports (at most three times).
func StartBaresip(t testing.TB, opts BaresipOptions) *Baresip {
	t.Helper()
	for attempt := 1; ; attempt++ {
		b := startBaresip(t, opts)
		// Module load errors are printed before "baresip is ready.".
		b.WaitLog(regexp.MustCompile(`baresip is ready`), 10*time.Second)
		if !strings.Contains(b.Log(), "Address already in use") {
			return b
		}
		b.Stop()
		if attempt == 3 {
			t.Fatalf("baresip: a port was taken three times in a row:\n%s", b.Log())
		}
		t.Logf("baresip: a port was taken between picking and binding; starting again")
	}
}

func startBaresip(t testing.TB, opts BaresipOptions) *Baresip {
	t.Helper()
	Need(t, "baresip")
	if _, err := os.Stat(filepath.Join(baresipModules, "ctrl_tcp.so")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("baresip modules are missing in %s: .ci/run must install baresip-core", baresipModules)
		}
		t.Skipf("baresip modules are missing in %s (apt-get install baresip-core)", baresipModules)
	}
	dir := t.TempDir()
	sipPort := freeTCPAndUDPPort(t)
	ctrlPort := freeTCPPort(t)
	rtp := freePorts(t, 20, "udp")
	b := &Baresip{t: t, Dir: dir, SIPAddr: "127.0.0.1:" + strconv.Itoa(sipPort),
		CtrlAddr: "127.0.0.1:" + strconv.Itoa(ctrlPort), replies: map[string]BaresipResponse{}, done: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)

	defaults := [][2]string{
		{"poll_method", "epoll"},
		{"sip_listen", b.SIPAddr},
		{"net_interface", "127.0.0.1"},
		{"dns_server", "127.0.0.1:53"},
		{"rtp_ports", fmt.Sprintf("%d-%d", rtp, rtp+19)},
		{"call_local_timeout", "120"},
		{"audio_player", "aubridge,nil"},
		{"audio_source", "ausine,440"},
		{"audio_alert", "aubridge,nil"},
		{"module_path", baresipModules},
		{"ctrl_tcp_listen", b.CtrlAddr},
	}
	overridden := map[string]bool{}
	for _, l := range opts.Config {
		if f := strings.Fields(l); len(f) > 0 {
			overridden[f[0]] = true
		}
	}
	var cfg strings.Builder
	cfg.WriteString("# written by test/e2e StartBaresip\n")
	for _, kv := range defaults {
		if !overridden[kv[0]] {
			fmt.Fprintf(&cfg, "%s\t%s\n", kv[0], kv[1])
		}
	}
	for _, m := range append([]string{"g711", "ausine", "aubridge"}, opts.Modules...) {
		fmt.Fprintf(&cfg, "module\t%s.so\n", strings.TrimSuffix(m, ".so"))
	}
	cfg.WriteString("module_tmp\taccount.so\nmodule_app\tmenu.so\nmodule_app\tctrl_tcp.so\n")
	for _, l := range opts.Config {
		cfg.WriteString(l + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	accounts := strings.Join(opts.Accounts, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(accounts), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "contacts"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	args := append([]string{"-4", "-f", dir}, opts.Args...)
	cmd := exec.Command("baresip", args...)
	cmd.Dir = dir
	cmd.Stdin = nil
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start baresip: %v", err)
	}
	b.cmd = cmd
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			b.mu.Lock()
			b.log.WriteString(sc.Text() + "\n")
			b.cond.Broadcast()
			b.mu.Unlock()
		}
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		b.mu.Lock()
		b.stopped = true
		b.cond.Broadcast()
		b.mu.Unlock()
		close(b.done)
	}()
	t.Cleanup(b.Stop)

	// Connect to ctrl_tcp (it listens once the modules are loaded).
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.CtrlAddr, time.Second)
		if err == nil {
			b.mu.Lock()
			b.conn = c
			b.mu.Unlock()
			go b.readCtrl(c)
			break
		}
		select {
		case <-b.done:
			t.Fatalf("baresip exited at start:\n%s\nconfig:\n%s", b.Log(), cfg.String())
		default:
		}
		if strings.Contains(b.Log(), "Address already in use") {
			return b // StartBaresip starts it again on other ports
		}
		if time.Now().After(deadline) {
			t.Fatalf("baresip ctrl_tcp did not listen on %s within 10 s:\n%s", b.CtrlAddr, b.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return b
}

// readCtrl reads netstrings ("LEN:JSON,") from ctrl_tcp.
func (b *Baresip) readCtrl(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		lenStr, err := r.ReadString(':')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(lenStr, ":")))
		if err != nil || n < 0 || n > 1<<20 {
			return
		}
		buf := make([]byte, n+1)
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		msg := buf[:n]
		var probe struct {
			Event    bool `json:"event"`
			Response bool `json:"response"`
		}
		if json.Unmarshal(msg, &probe) != nil {
			continue
		}
		b.mu.Lock()
		switch {
		case probe.Event:
			var ev BaresipEvent
			if json.Unmarshal(msg, &ev) == nil {
				ev.Raw = string(msg)
				b.events = append(b.events, ev)
			}
		case probe.Response:
			var res BaresipResponse
			if json.Unmarshal(msg, &res) == nil {
				b.replies[res.Token] = res
			}
		}
		b.cond.Broadcast()
		b.mu.Unlock()
	}
}

// Log returns what baresip printed so far.
func (b *Baresip) Log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.log.String()
}

// Events returns the ctrl_tcp events received so far.
func (b *Baresip) Events() []BaresipEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]BaresipEvent(nil), b.events...)
}

// waitUntil waits (holding no lock in between) until cond, evaluated with
// b.mu held, is true; false on timeout or when baresip exited.
func (b *Baresip) waitUntil(timeout time.Duration, cond func() bool) bool {
	timer := time.AfterFunc(timeout, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	b.mu.Lock()
	defer b.mu.Unlock()
	for !cond() {
		if b.stopped || time.Now().After(deadline) {
			return cond()
		}
		b.cond.Wait()
	}
	return true
}

// WaitLog waits until baresip's output matches re and returns the match.
func (b *Baresip) WaitLog(re *regexp.Regexp, timeout time.Duration) string {
	b.t.Helper()
	var m string
	if !b.waitUntil(timeout, func() bool {
		m = re.FindString(b.log.String())
		return m != ""
	}) {
		b.t.Fatalf("baresip: no output matching %q within %s:\n%s", re, timeout, b.Log())
	}
	return m
}

// WaitEvent waits for a ctrl_tcp event of type typ (e.g. "CALL_ESTABLISHED")
// after the first skip such events, and returns it.
func (b *Baresip) WaitEvent(typ string, skip int, timeout time.Duration) BaresipEvent {
	b.t.Helper()
	var ev BaresipEvent
	if !b.waitUntil(timeout, func() bool {
		n := 0
		for _, e := range b.events {
			if e.Type == typ {
				if n == skip {
					ev = e
					return true
				}
				n++
			}
		}
		return false
	}) {
		b.t.Fatalf("baresip: no %s event within %s; events: %+v\nlog:\n%s", typ, timeout, b.Events(), b.Log())
	}
	return ev
}

// WaitRegistered waits until the account aor (user@host, as baresip prints
// it) registered: baresip prints "AOR: {0/UDP/v4} 200 OK ..." for the first
// registration (before ctrl_tcp is connected) and sends REGISTER_OK events
// for later ones. It fails the test at once when the registrar refuses
// ("reg: sip:AOR...: 403 Forbidden") or baresip reports REGISTER_FAIL.
func (b *Baresip) WaitRegistered(aor string, timeout time.Duration) {
	b.t.Helper()
	okRE := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(aor) + `: \{[^}]*\} 200 OK`)
	// e.g. "reg: sip:2001@127.0.0.1:5060: 403 Forbidden (switchboard)"
	failRE := regexp.MustCompile(`reg: sip:` + regexp.QuoteMeta(aor) + `\S*: [3-6]\d\d [^\n]*`)
	var failed string
	ok := b.waitUntil(timeout, func() bool {
		log := b.log.String()
		if okRE.MatchString(log) {
			return true
		}
		for _, e := range b.events {
			if e.Type == "REGISTER_OK" && strings.Contains(e.AccountAOR, aor) {
				return true
			}
			if e.Type == "REGISTER_FAIL" && strings.Contains(e.AccountAOR, aor) {
				failed = e.Raw
				return true
			}
		}
		if m := failRE.FindString(log); m != "" {
			failed = m
			return true
		}
		return false
	})
	if !ok {
		b.t.Fatalf("baresip: %s did not register within %s:\n%s", aor, timeout, b.Log())
	}
	if failed != "" {
		b.t.Fatalf("baresip: %s failed to register: %s\n%s", aor, failed, b.Log())
	}
}

// Command sends a ctrl_tcp command (the menu module's commands: "dial",
// "hangup", "accept", ...) and waits up to 10 s for its response.
func (b *Baresip) Command(command, params string) (BaresipResponse, error) {
	b.mu.Lock()
	c := b.conn
	b.nextTok++
	tok := "t" + strconv.Itoa(b.nextTok)
	b.mu.Unlock()
	if c == nil {
		return BaresipResponse{}, errors.New("baresip: ctrl_tcp not connected")
	}
	msg, _ := json.Marshal(map[string]string{"command": command, "params": params, "token": tok})
	frame := strconv.Itoa(len(msg)) + ":" + string(msg) + ","
	if _, err := c.Write([]byte(frame)); err != nil {
		return BaresipResponse{}, fmt.Errorf("baresip: send %s: %w", command, err)
	}
	var res BaresipResponse
	if !b.waitUntil(10*time.Second, func() bool {
		var ok bool
		res, ok = b.replies[tok]
		return ok
	}) {
		return res, fmt.Errorf("baresip: no response to %s within 10 s", command)
	}
	if !res.OK {
		return res, fmt.Errorf("baresip: %s %s: %s", command, params, strings.TrimSpace(res.Data))
	}
	return res, nil
}

// Stop ends baresip gracefully (SIGTERM: it unregisters its accounts first)
// and waits; after 10 s it kills it. Safe to call twice.
func (b *Baresip) Stop() {
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	select {
	case <-b.done:
	default:
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
			_ = b.cmd.Process.Kill()
			<-b.done
		}
	}
	b.mu.Lock()
	if b.conn != nil {
		b.conn.Close()
		b.conn = nil
	}
	b.mu.Unlock()
}
