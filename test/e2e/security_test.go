package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// secPhone runs a SIPp scenario from one loopback address (each address is
// a distinct "phone" or attacker to the server's per-address features).
type secPhone struct {
	IP, User, Password, UA string
}

func (p secPhone) sipp(t *testing.T, s *Server, scenario string, calls int, extra ...string) SIPpResult {
	t.Helper()
	ua := p.UA
	if ua == "" {
		ua = "SIPp security"
	}
	args := append([]string{"-inf", CSV(t, "SEQUENTIAL", AuthRow(p.User, p.Password)), "-i", p.IP, "-key", "ua", ua}, extra...)
	return SIPp(t, s.Addr, scenario, calls, args...)
}

// mustRun runs a scenario that must succeed.
func (p secPhone) mustRun(t *testing.T, s *Server, scenario string, calls int) {
	t.Helper()
	if r := p.sipp(t, s, scenario, calls); r.Code != 0 {
		t.Fatalf("sipp %s from %s failed (exit %d):\n%s\nserver log:\n%s", scenario, p.IP, r.Code, r.Output, s.Log())
	}
}

// unanswered runs one REGISTER that must get no answer at all (the address
// is banned: its packets are dropped).
func (p secPhone) unanswered(t *testing.T, s *Server) {
	t.Helper()
	r := p.sipp(t, s, "register.xml", 1, "-timeout", "3")
	if r.Code == 0 {
		t.Fatalf("REGISTER from %s was answered; want it dropped:\n%s", p.IP, r.Output)
	}
	for _, m := range Responses(ParseSIPpMessages(r.Messages)) {
		t.Fatalf("REGISTER from %s got %s; want no answer", p.IP, m.First)
	}
}

// journalWith returns journal events with every field of want (JSON name
// to value; a value ending in "*" matches as a prefix, "~x" as a substring).
func journalWith(t *testing.T, s *Server, want map[string]string, args ...string) []map[string]any {
	t.Helper()
	var evs, out []map[string]any
	s.JSON(&evs, append([]string{"journal"}, args...)...)
next:
	for _, e := range evs {
		for k, v := range want {
			got := fmt.Sprint(e[k])
			switch {
			case strings.HasPrefix(v, "~"):
				if !strings.Contains(got, v[1:]) {
					continue next
				}
			case strings.HasSuffix(v, "*"):
				if !strings.HasPrefix(got, strings.TrimSuffix(v, "*")) {
					continue next
				}
			case got != v:
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}

func waitJournalWith(t *testing.T, s *Server, what string, want map[string]string, args ...string) map[string]any {
	t.Helper()
	var got []map[string]any
	WaitFor(t, 5*time.Second, what, func() bool {
		got = journalWith(t, s, want, args...)
		return len(got) > 0
	})
	return got[0]
}

// checkLog fails the test when the server log shows a data race, a panic
// or a sipgo parse error (the filter must keep unparsable input away).
func checkLog(t *testing.T, s *Server) {
	t.Helper()
	log := s.Log()
	for _, bad := range []string{"DATA RACE", "panic", "failed to parse"} {
		if strings.Contains(log, bad) {
			t.Errorf("server log contains %q:\n%s", bad, log)
		}
	}
}

type banEntry struct {
	IP         string `json:"ip"`
	Reason     string `json:"reason"`
	Failures   int    `json:"failures"`
	Since      string `json:"since"`
	Until      string `json:"until"`
	Permanent  bool   `json:"permanent"`
	ExpiresInS int64  `json:"expires_in_s"`
}

func bans(t *testing.T, s *Server) []banEntry {
	t.Helper()
	var out []banEntry
	s.JSON(&out, "ban", "list")
	return out
}

func waitBanned(t *testing.T, s *Server, ip string) banEntry {
	t.Helper()
	var b banEntry
	WaitFor(t, 5*time.Second, ip+" in ban list", func() bool {
		for _, x := range bans(t, s) {
			if x.IP == ip {
				b = x
				return true
			}
		}
		return false
	})
	return b
}

// TestRegisterACL: with `--register-acl office` allowing only 127.0.0.20, a
// phone there registers and one at 127.0.0.30 gets 403 before any
// challenge; the journal records the list and the address. Allowing .30
// applies to the running server at once.
func TestRegisterACL(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2002", "secret-2002-x")
	s.CLI("acl", "add", "office", "--default", "deny")
	s.CLI("acl", "allow", "office", "127.0.0.20/32")
	s.CLI("profile", "set", "internal", "--register-acl", "office")

	allowed := secPhone{IP: "127.0.0.20", User: "2002", Password: "secret-2002-x"}
	denied := secPhone{IP: "127.0.0.30", User: "2002", Password: "secret-2002-x"}
	allowed.mustRun(t, s, "register.xml", 1)
	denied.mustRun(t, s, "sec-reg-403.xml", 1)
	WaitFor(t, 5*time.Second, "the binding", func() bool { return len(s.Regs("2002")) == 1 })
	if src := s.Regs("2002")[0].Source; !strings.HasPrefix(src, "127.0.0.20:") {
		t.Fatalf("binding from %s, want 127.0.0.20", src)
	}
	ev := waitJournalWith(t, s, "acl_denied event", map[string]string{"cause": "acl_denied", "source": "127.0.0.30:*"}, "--ext", "2002")
	if d := fmt.Sprint(ev["detail"]); !strings.Contains(d, "register acl office") || !strings.Contains(d, "127.0.0.30") {
		t.Fatalf("detail %q does not name the list and the address", d)
	}
	if st := fmt.Sprint(ev["sip_status"]); st != "403" {
		t.Fatalf("journaled status %s, want 403", st)
	}

	// profile show reports the settings.
	var prof struct {
		State       string `json:"state"`
		RegisterACL string `json:"register_acl"`
		TrustedACL  string `json:"trusted_acl"`
		Listeners   []struct {
			Protocol string `json:"protocol"`
			Address  string `json:"address"`
		} `json:"listeners"`
		Registrations int `json:"registrations"`
		Security      struct {
			BanAfter  int     `json:"ban_after"`
			RateLimit float64 `json:"rate_limit"`
		} `json:"security"`
		ACLs map[string]struct {
			Default string `json:"default"`
			Nodes   int    `json:"nodes"`
		} `json:"acls"`
	}
	s.JSON(&prof, "profile", "show", "internal")
	if prof.State != "RUNNING" || prof.RegisterACL != "office" || prof.TrustedACL != "loopback" || len(prof.Listeners) != 4 || // udp, tcp, tls, wss
		prof.Registrations != 1 || prof.Security.BanAfter != 5 || prof.Security.RateLimit != 200 ||
		prof.ACLs["office"].Default != "deny" || prof.ACLs["office"].Nodes != 1 {
		t.Fatalf("profile show: %+v", prof)
	}
	text := s.CLI("profile", "show")
	for _, want := range []string{"Register ACL", "office (default deny, 1 nodes)", "RUNNING", "Registrations"} {
		if !strings.Contains(text, want) {
			t.Errorf("profile show lacks %q:\n%s", want, text)
		}
	}

	// A change applies to the running server before the command returns.
	s.CLI("acl", "allow", "office", "127.0.0.30")
	denied.mustRun(t, s, "register.xml", 1)
	WaitFor(t, 5*time.Second, "two bindings", func() bool { return len(s.Regs("2002")) == 2 })

	// Clearing the register ACL lets anyone register (after digest).
	s.CLI("profile", "set", "internal", "--register-acl", "")
	secPhone{IP: "127.0.0.31", User: "2002", Password: "secret-2002-x"}.mustRun(t, s, "register.xml", 1)
	checkLog(t, s)
}

// TestExtensionACL: an extension's own ACL refuses its credentials from an
// address outside the list (403 after the challenge); referring to a list
// that does not exist is a clear CLI error.
func TestExtensionACL(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2002", "secret-2002-x")
	s.AddExt("2003", "secret-2003-x")
	s.CLI("acl", "add", "desk", "--default", "deny")
	s.CLI("acl", "allow", "desk", "127.0.0.40/32")

	out, errOut, code := s.TryCLI("ext", "set", "2002", "--acl", "dsek")
	if code != 1 || !strings.Contains(errOut, "there is no acl dsek") || !strings.Contains(errOut, "switchboard acl add dsek") ||
		strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("ext set --acl dsek: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	s.CLI("ext", "set", "2002", "--acl", "desk")

	secPhone{IP: "127.0.0.40", User: "2002", Password: "secret-2002-x"}.mustRun(t, s, "register.xml", 1)
	secPhone{IP: "127.0.0.41", User: "2002", Password: "secret-2002-x"}.mustRun(t, s, "sec-reg-auth-403.xml", 1)
	// The ACL is 2002's only: 2003 registers from anywhere.
	secPhone{IP: "127.0.0.41", User: "2003", Password: "secret-2003-x"}.mustRun(t, s, "register.xml", 1)
	ev := waitJournalWith(t, s, "acl_denied event", map[string]string{"cause": "acl_denied"}, "--ext", "2002")
	if d := fmt.Sprint(ev["detail"]); !strings.Contains(d, "acl desk") || !strings.Contains(d, "127.0.0.41") {
		t.Fatalf("detail %q", d)
	}
	// A list in use cannot be removed; the error says by what.
	_, errOut, code = s.TryCLI("acl", "rm", "desk")
	if code != 1 || !strings.Contains(errOut, "in use by extension 2002@127.0.0.1") {
		t.Fatalf("acl rm desk: exit %d, %s", code, errOut)
	}
}

// TestInboundACL: with `--inbound-acl`, a caller outside the list gets 403
// before any challenge.
func TestInboundACL(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2002", "secret-2002-x")
	s.AddExt("2003", "secret-2003-x")
	s.CLI("acl", "add", "office", "--default", "deny")
	s.CLI("acl", "allow", "office", "127.0.0.50/32")
	s.CLI("profile", "set", "internal", "--inbound-acl", "office")
	r := SIPp(t, s.Addr, "sec-invite-403.xml", 1, "-inf", CSV(t, "SEQUENTIAL", []string{"2002", "2003"}), "-i", "127.0.0.51")
	if r.Code != 0 {
		t.Fatalf("INVITE from 127.0.0.51 (exit %d):\n%s", r.Code, r.Output)
	}
	ev := waitJournalWith(t, s, "acl_denied call event", map[string]string{"cause": "acl_denied", "kind": "invite"})
	if d := fmt.Sprint(ev["detail"]); !strings.Contains(d, "inbound acl office") || !strings.Contains(d, "127.0.0.51") {
		t.Fatalf("detail %q", d)
	}
}

// TestBruteForceBan: --ban-after 3 failed authentications ban an address:
// its packets are then dropped unanswered, the ban is listed, journaled,
// survives a restart, and `ban rm` lifts it at once. An address with a
// live registration is never banned.
func TestBruteForceBan(t *testing.T) {
	t.Parallel()
	s := Start(t, "", "--ban-after", "3", "--ban-window", "60s", "--ban-for", "1h")
	s.AddExt("2002", "secret-2002-x")
	s.CLI("profile", "set", "internal", "--trusted-acl", "") // loopback is trusted by default

	phone := secPhone{IP: "127.0.0.2", User: "2002", Password: "secret-2002-x"}
	phone.mustRun(t, s, "register.xml", 1)
	WaitFor(t, 5*time.Second, "the binding", func() bool { return len(s.Regs("2002")) == 1 })

	// The attacker hides its user agent: it is banned by its failures.
	attacker := secPhone{IP: "127.0.0.5", User: "2002", Password: "guess-1234", UA: "Yealink SIP-T46S 66.86.0.15"}
	attacker.mustRun(t, s, "sec-reg-auth-403.xml", 3)
	b := waitBanned(t, s, "127.0.0.5")
	if b.Failures != 3 || b.Permanent || b.ExpiresInS < 3500 || !strings.Contains(b.Reason, "wrong password for 2002") {
		t.Fatalf("ban %+v", b)
	}
	attacker.unanswered(t, s)
	// Even with the right password: the address is banned.
	secPhone{IP: "127.0.0.5", User: "2002", Password: "secret-2002-x"}.unanswered(t, s)
	waitJournalWith(t, s, "the ban in the journal", map[string]string{"kind": "ban", "cause": "ip_banned", "source": "127.0.0.5"})
	drop := waitJournalWith(t, s, "the dropped REGISTER in the journal",
		map[string]string{"cause": "ip_banned", "source": "127.0.0.5:*", "extension": "2002"})
	if d := fmt.Sprint(drop["detail"]); !strings.Contains(d, "banned until") {
		t.Fatalf("drop detail %q", d)
	}

	// The phone with a live registration is exempt however often it fails.
	wrong := secPhone{IP: "127.0.0.2", User: "2002", Password: "not-the-password"}
	wrong.mustRun(t, s, "sec-reg-auth-403.xml", 5)
	phone.mustRun(t, s, "register.xml", 1)
	for _, x := range bans(t, s) {
		if x.IP == "127.0.0.2" {
			t.Fatalf("the registered phone's address was banned: %+v", x)
		}
	}

	// A restart keeps the ban.
	s.Stop()
	s.Restart()
	if got := bans(t, s); len(got) != 1 || got[0].IP != "127.0.0.5" {
		t.Fatalf("bans after restart: %+v", got)
	}
	attacker.unanswered(t, s)

	// ban rm lifts it before the command returns.
	out := s.CLI("ban", "rm", "127.0.0.5")
	if !strings.Contains(out, "lifted the ban of 127.0.0.5") {
		t.Fatalf("ban rm: %q", out)
	}
	secPhone{IP: "127.0.0.5", User: "2002", Password: "secret-2002-x"}.mustRun(t, s, "register.xml", 1)
	if _, errOut, code := s.TryCLI("ban", "rm", "127.0.0.5"); code != 1 || !strings.Contains(errOut, "127.0.0.5 is not banned") {
		t.Fatalf("second ban rm: exit %d %q", code, errOut)
	}
	checkLog(t, s)
}

// TestBanCLI: manual bans, and bad input answered with one line.
func TestBanCLI(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2002", "secret-2002-x")
	if _, errOut, code := s.TryCLI("ban", "add", "127.0.0.9"); code != 1 || !strings.Contains(errOut, "trusted acl loopback") {
		t.Fatalf("banning a trusted address: exit %d %q", code, errOut)
	}
	s.CLI("profile", "set", "internal", "--trusted-acl", "")
	s.CLI("ban", "add", "127.0.0.9", "--for", "0", "--reason", "toll fraud")
	b := waitBanned(t, s, "127.0.0.9")
	if !b.Permanent || b.Until != "" || b.Reason != "toll fraud" {
		t.Fatalf("ban %+v", b)
	}
	secPhone{IP: "127.0.0.9", User: "2002", Password: "secret-2002-x"}.unanswered(t, s)
	for _, bad := range [][]string{{"ban", "add", "300.1.1.1"}, {"ban", "rm", "nope"}, {"ban", "frob"}, {"ban", "list", "--for", "1h"}} {
		_, errOut, code := s.TryCLI(bad...)
		if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.HasPrefix(errOut, "switchboard: ") {
			t.Errorf("%v: exit %d, stderr %q", bad, code, errOut)
		}
	}
	text := s.CLI("ban", "list")
	if !strings.Contains(text, "127.0.0.9") || !strings.Contains(text, "never") || !strings.Contains(text, "toll fraud") {
		t.Fatalf("ban list:\n%s", text)
	}
}

// TestSipvicious: SIPVicious (Debian's sipvicious 0.3.3) against the
// server. Its user agent is friendly-scanner: the filter drops its packets
// and bans the address at once, so svwar finds no extension in a range
// holding real ones, and svcrack, even with the right password in its
// dictionary, finds nothing. sipvicious always sends from 127.0.0.1, so
// loopback is made untrusted and the real phone registers from 127.0.0.2.
func TestSipvicious(t *testing.T) {
	t.Parallel()
	Need(t, "svwar", "svcrack")
	s := Start(t, "")
	s.AddExt("2001", "Str0ng-pass-2001")
	s.AddExt("2002", "Str0ng-pass-2002")
	s.CLI("profile", "set", "internal", "--trusted-acl", "")
	phone := secPhone{IP: "127.0.0.2", User: "2002", Password: "Str0ng-pass-2002"}
	phone.mustRun(t, s, "register.xml", 1)

	// Bound to 127.0.0.1 on a port of its own: by default sipvicious binds
	// 5060 on every address, which other tests use (TestTortureRFC4475).
	local := func() []string { return []string{"-b", "127.0.0.1", "-P", strconv.Itoa(FreeUDPPort(t))} }
	out := runTool(t, "svwar", append(local(), "-e2000-2010", "-m", "REGISTER", "-p", s.Port, "127.0.0.1")...)
	for _, ext := range []string{"2001", "2002"} {
		if strings.Contains(out, ext) {
			t.Errorf("svwar found %s:\n%s", ext, out)
		}
	}
	if !strings.Contains(out, "found nothing") {
		t.Errorf("svwar output:\n%s", out)
	}
	b := waitBanned(t, s, "127.0.0.1")
	if !strings.Contains(b.Reason, "friendly-scanner") {
		t.Fatalf("ban %+v", b)
	}
	waitJournalWith(t, s, "the scanner in the journal", map[string]string{"cause": "scanner", "source": "127.0.0.1:*", "user_agent": "friendly-scanner"})

	// svcrack on a fresh start (lift the ban first).
	s.CLI("ban", "rm", "127.0.0.1")
	dict := filepath.Join(t.TempDir(), "words.txt")
	if err := os.WriteFile(dict, []byte("1234\npassword\n2001\nsecret\nStr0ng-pass-2001\nadmin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out = runTool(t, "svcrack", append(local(), "-u", "2001", "-d", dict, "-p", s.Port, "127.0.0.1")...)
	if strings.Contains(out, "Str0ng-pass-2001") || !strings.Contains(out, "found nothing") {
		t.Errorf("svcrack output:\n%s", out)
	}
	waitBanned(t, s, "127.0.0.1")
	// The real phone is not affected.
	phone.mustRun(t, s, "register.xml", 1)
	if log := s.Log(); strings.Contains(log, "level=ERROR") {
		t.Errorf("errors in the server log:\n%s", log)
	}
	checkLog(t, s)
}

// runTool runs a scanner with a time limit and returns its output.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var mu sync.Mutex
	var b strings.Builder
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return b.Write(p) })
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not finish in 60 s", name)
	}
	mu.Lock()
	defer mu.Unlock()
	return b.String()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestRateLimit: with --rate-limit 20 --rate-burst 20 an address that
// sends 200 OPTIONS at once gets about 20 answers, the rest is dropped and
// journaled; once its network is in the trusted ACL, all are answered.
//
// Serial: it counts the answers an address gets per second; a loaded
// machine answers the flood more slowly, and the bucket refills meanwhile.
func TestRateLimit(t *testing.T) {
	s := Start(t, "", "--rate-limit", "20", "--rate-burst", "20")
	s.CLI("profile", "set", "internal", "--trusted-acl", "")
	flood := func(from string) int {
		t.Helper()
		c, err := net.ListenPacket("udp", from+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		dst, _ := net.ResolveUDPAddr("udp", s.Addr)
		local := c.LocalAddr().String()
		for i := 0; i < 200; i++ {
			msg := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;rport;branch=z9hG4bK-flood-%d\r\n"+
				"From: <sip:flood@%s>;tag=f%d\r\nTo: <sip:%s>\r\nCall-ID: flood-%d@%s\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"+
				"Content-Length: 0\r\n\r\n", s.Addr, local, i, from, i, s.Addr, i, from)
			if _, err := c.WriteTo([]byte(msg), dst); err != nil {
				t.Fatal(err)
			}
		}
		answered := 0
		buf := make([]byte, 65536)
		for {
			_ = c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return answered
			}
			if strings.HasPrefix(string(buf[:n]), "SIP/2.0 200 ") {
				answered++
			}
		}
	}
	if n := flood("127.0.0.7"); n < 15 || n > 80 {
		t.Fatalf("%d of 200 answered with rate 20/s burst 20", n)
	}
	waitJournalWith(t, s, "rate_limited event", map[string]string{"cause": "rate_limited", "source": "127.0.0.7:*"})
	// Another address is not affected by the first one's flood.
	if n := flood("127.0.0.8"); n < 15 {
		t.Fatalf("127.0.0.8: only %d answered", n)
	}
	s.CLI("acl", "add", "lab", "--default", "deny")
	s.CLI("acl", "allow", "lab", "127.0.0.0/24")
	s.CLI("profile", "set", "internal", "--trusted-acl", "lab")
	if n := flood("127.0.0.7"); n < 195 {
		t.Fatalf("trusted: %d of 200 answered", n)
	}
	checkLog(t, s)
}

// TestACLCLI: acl commands, their JSON and their errors.
func TestACLCLI(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.CLI("acl", "add", "office", "--default", "deny")
	s.CLI("acl", "allow", "office", "192.168.1.0/24", "2001:db8::/32")
	s.CLI("acl", "deny", "office", "192.168.1.66")
	var l struct {
		Name    string `json:"name"`
		Default string `json:"default"`
		Nodes   []struct {
			Position int    `json:"position"`
			Action   string `json:"action"`
			CIDR     string `json:"cidr"`
		} `json:"nodes"`
		UsedBy []string `json:"used_by"`
	}
	s.JSON(&l, "acl", "show", "office")
	want := []string{"1 allow 192.168.1.0/24", "2 allow 2001:db8::/32", "3 deny 192.168.1.66/32"}
	if l.Name != "office" || l.Default != "deny" || len(l.Nodes) != 3 || len(l.UsedBy) != 0 {
		t.Fatalf("acl show: %+v", l)
	}
	for i, n := range l.Nodes {
		if got := fmt.Sprintf("%d %s %s", n.Position, n.Action, n.CIDR); got != want[i] {
			t.Errorf("node %d: %s, want %s", i, got, want[i])
		}
	}
	var test struct {
		Allowed  bool   `json:"allowed"`
		Position int    `json:"position"`
		Node     string `json:"node"`
	}
	s.JSON(&test, "acl", "test", "office", "192.168.1.66")
	if test.Allowed || test.Position != 3 {
		t.Fatalf("acl test .66: %+v", test)
	}
	s.JSON(&test, "acl", "test", "office", "2001:db8::5")
	if !test.Allowed || test.Position != 2 {
		t.Fatalf("acl test 2001:db8::5: %+v", test)
	}
	var all []map[string]any
	s.JSON(&all, "acl", "list")
	if len(all) != 2 || all[0]["name"] != "loopback" || all[1]["name"] != "office" {
		t.Fatalf("acl list: %v", all)
	}
	text := s.CLI("acl", "list")
	if !strings.Contains(text, "profile internal trusted-acl") || !strings.Contains(strings.Split(text, "\n")[0], "NAME") {
		t.Fatalf("acl list:\n%s", text)
	}
	s.CLI("acl", "rm", "office", "192.168.1.66/32")
	s.JSON(&l, "acl", "show", "office")
	if len(l.Nodes) != 2 {
		t.Fatalf("after rm node: %+v", l)
	}
	for _, bad := range [][]string{
		{"acl", "add", "Office"}, {"acl", "add", "office"}, {"acl", "allow", "office", "10.0.0.0/33"},
		{"acl", "allow", "nope", "10.0.0.0/8"}, {"acl", "deny", "office"}, {"acl", "rm", "office", "10.9.9.9"},
		{"acl", "add", "x", "--default", "maybe"}, {"profile", "set", "internal", "--trusted-acl", "nope"},
		{"profile", "show", "external"}, {"acl", "test", "office", "not-an-ip"},
	} {
		_, errOut, code := s.TryCLI(bad...)
		if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.HasPrefix(errOut, "switchboard: ") {
			t.Errorf("%v: exit %d, stderr %q", bad, code, errOut)
		}
	}
	s.CLI("acl", "rm", "office")
	s.JSON(&all, "acl", "list")
	if len(all) != 1 {
		t.Fatalf("after acl rm: %v", all)
	}
	var profiles []map[string]any
	s.JSON(&profiles, "profile", "list")
	if b, _ := json.Marshal(profiles); len(profiles) != 1 || profiles[0]["name"] != "internal" || profiles[0]["state"] != "RUNNING" {
		t.Fatalf("profile list: %s", b)
	}
}
