package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// docPhone is a SIPp "phone" with its own loopback address and model, so
// the doctor's evidence can be checked to name the right one.
type docPhone struct {
	IP       string // local address SIPp binds, e.g. 127.0.0.5
	UA       string // User-Agent header
	User     string // the extension it registers (To user)
	Domain   string // To host; "" = 127.0.0.1
	AuthUser string // digest username; "" = User
	Password string
	Expires  int // 0 = 3600
}

func (p docPhone) csv(t *testing.T) string {
	t.Helper()
	dom, auth, exp := p.Domain, p.AuthUser, p.Expires
	if dom == "" {
		dom = "127.0.0.1"
	}
	if auth == "" {
		auth = p.User
	}
	if exp == 0 {
		exp = 3600
	}
	return CSV(t, "SEQUENTIAL", []string{p.User, dom,
		fmt.Sprintf("[authentication username=%s password=%s]", auth, p.Password), strconv.Itoa(exp), p.UA})
}

// register runs doctor-reg-<want>.xml calls times from the phone and fails
// the test unless every attempt ended with want.
func (p docPhone) register(t *testing.T, s *Server, want, calls int) {
	t.Helper()
	p.run(t, s, fmt.Sprintf("doctor-reg-%d.xml", want), calls)
}

// run runs a doctor-*.xml scenario from the phone; every call must succeed.
func (p docPhone) run(t *testing.T, s *Server, scenario string, calls int) {
	t.Helper()
	r := SIPp(t, s.Addr, scenario, calls, "-inf", p.csv(t), "-i", p.IP)
	if r.Code != 0 {
		t.Fatalf("sipp %s (phone %s) failed (exit %d):\n%s\nserver log:\n%s", scenario, p.IP, r.Code, r.Output, s.Log())
	}
}

// docReport is the doctor's JSON, as a script reads it.
type docReport struct {
	Extension    string       `json:"extension"`
	Domain       string       `json:"domain"`
	Verdict      string       `json:"verdict"`
	Cause        string       `json:"cause"`
	Callable     bool         `json:"callable"`
	ServeRunning bool         `json:"serve_running"`
	Findings     []docFinding `json:"findings"`
}

type docFinding struct {
	Check    string   `json:"check"`
	Status   string   `json:"status"`
	Cause    string   `json:"cause"`
	Evidence []string `json:"evidence"`
	Fix      string   `json:"fix"`
}

// finding returns the last finding with the cause (the one with the
// evidence: the registration and directory checks may repeat the cause
// before it), failing the test when there is none.
func (r docReport) finding(t *testing.T, c string) docFinding {
	t.Helper()
	for i := len(r.Findings) - 1; i >= 0; i-- {
		if f := r.Findings[i]; f.Cause == c {
			return f
		}
	}
	t.Fatalf("no finding with cause %s in %+v", c, r)
	return docFinding{}
}

func (f docFinding) text() string { return strings.Join(f.Evidence, "\n") + "\nfix: " + f.Fix }

// doctor runs `switchboard doctor ARGS --json` and returns the report and
// the exit code (0 or 1; anything else fails the test).
func doctor(t *testing.T, s *Server, args ...string) (docReport, int) {
	t.Helper()
	out, errOut, code := s.TryCLI(append(append([]string{"doctor"}, args...), "--json")...)
	if code != 0 && code != 1 {
		t.Fatalf("doctor %v: exit %d\n%s\n%s", args, code, out, errOut)
	}
	if errOut != "" {
		t.Fatalf("doctor %v wrote to stderr: %s", args, errOut)
	}
	var r docReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("doctor %v --json: %v\n%s", args, err, out)
	}
	return r, code
}

// journalEvents returns `switchboard journal ARGS --json`.
func journalEvents(t *testing.T, s *Server, args ...string) []map[string]any {
	t.Helper()
	var evs []map[string]any
	s.JSON(&evs, append([]string{"journal"}, args...)...)
	return evs
}

// waitJournal waits until the journal holds at least n events of cause for
// ext (the journal writes in batches every 50 ms).
func waitJournal(t *testing.T, s *Server, ext, cause string, n int) {
	t.Helper()
	WaitFor(t, 5*time.Second, fmt.Sprintf("%d %s events for %s in the journal", n, cause, ext), func() bool {
		return len(journalEvents(t, s, "--ext", ext, "--cause", cause)) >= n
	})
}

// wantCause checks the doctor's cause, exit code and that the verdict and
// the finding of that cause name every string in names.
func wantCause(t *testing.T, r docReport, code int, cause string, wantCode int, names ...string) docFinding {
	t.Helper()
	if r.Cause != cause || code != wantCode {
		t.Fatalf("want cause %s exit %d, got %s exit %d:\n%+v", cause, wantCode, r.Cause, code, r)
	}
	f := r.finding(t, cause)
	for _, n := range names {
		if !strings.Contains(r.Verdict, n) {
			t.Errorf("verdict does not name %q: %s", n, r.Verdict)
		}
		if !strings.Contains(f.text(), n) {
			t.Errorf("%s finding does not name %q:\n%s", cause, n, f.text())
		}
	}
	if f.Fix == "" && f.Status != "ok" {
		t.Errorf("%s finding has no fix: %+v", cause, f)
	}
	return f
}

// TestDoctorWrongPassword: a phone at 127.0.0.5 sends a wrong password three
// times; the doctor's verdict names the phone, its model and the count, and
// the journal command finds the same events by extension and by IP.
func TestDoctorWrongPassword(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2002", "secret-2002")
	p := docPhone{IP: "127.0.0.5", UA: "Grandstream GXP1625", User: "2002", Password: "wrong-password"}
	p.register(t, s, 403, 3)
	waitJournal(t, s, "2002", "wrong_password", 3)

	r, code := doctor(t, s, "2002")
	f := wantCause(t, r, code, "wrong_password", 1, "127.0.0.5", "Grandstream GXP1625", "3 times")
	if f.Check != "history" || f.Status != "fail" || !strings.Contains(f.Fix, "switchboard ext passwd 2002") {
		t.Fatalf("unexpected finding %+v", f)
	}
	if !r.ServeRunning || r.Callable || r.Extension != "2002" || r.Domain != "127.0.0.1" {
		t.Fatalf("unexpected report %+v", r)
	}
	if !strings.HasPrefix(r.Verdict, "2002 cannot be called: not registered") {
		t.Fatalf("verdict %q", r.Verdict)
	}

	// The text form: the verdict first, aligned rows, exit 1 without an
	// error line.
	out, errOut, code := s.TryCLI("doctor", "2002")
	if code != 1 || errOut != "" {
		t.Fatalf("doctor 2002: exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(out, "\n")
	if lines[0] != r.Verdict && lines[0] != strings.ReplaceAll(r.Verdict, "—", "-") {
		t.Fatalf("first line %q is not the verdict %q", lines[0], r.Verdict)
	}
	if !strings.Contains(out, "wrong_password") || !strings.Contains(out, "history") {
		t.Fatalf("text output lacks the finding:\n%s", out)
	}

	// journal --ext and --ip find the three refusals, with source and UA.
	for _, args := range [][]string{{"--ext", "2002", "--cause", "wrong_password"}, {"--ip", "127.0.0.5", "--cause", "wrong_password"}} {
		evs := journalEvents(t, s, args...)
		if len(evs) != 3 {
			t.Fatalf("journal %v: want 3 events, got %d: %v", args, len(evs), evs)
		}
		for _, e := range evs {
			if !strings.HasPrefix(e["source"].(string), "127.0.0.5:") || e["user_agent"] != "Grandstream GXP1625" ||
				e["sip_status"].(float64) != 403 || e["kind"] != "register" {
				t.Fatalf("journal %v: unexpected event %v", args, e)
			}
		}
	}
	if evs := journalEvents(t, s, "--ip", "127.0.0.50"); len(evs) != 0 {
		t.Fatalf("journal --ip 127.0.0.50 matched %v", evs)
	}
	if evs := journalEvents(t, s, "--ext", "2002", "--since", "1h"); len(evs) < 3 {
		t.Fatalf("journal --since 1h: %v", evs)
	}
	if evs := journalEvents(t, s, "--ext", "2002", "--since", "2099-01-01"); len(evs) != 0 {
		t.Fatalf("journal --since in the future: %v", evs)
	}
}

// TestDoctorRegistered: a registered phone makes the doctor answer 0 with
// the binding's contact, source and user agent as evidence.
func TestDoctorRegistered(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2002", "secret-2002")
	docPhone{IP: "127.0.0.6", UA: "Yealink SIP-T46U", User: "2002", Password: "secret-2002"}.register(t, s, 200, 1)
	WaitFor(t, 5*time.Second, "the binding to be saved", func() bool { return len(s.Regs("2002")) == 1 })
	r, code := doctor(t, s, "2002")
	f := wantCause(t, r, code, "registered", 0, "127.0.0.6", "Yealink SIP-T46U")
	if f.Check != "registration" || f.Status != "ok" || !r.Callable {
		t.Fatalf("unexpected report %+v", r)
	}
	if !strings.HasPrefix(r.Verdict, "2002 can be called") {
		t.Fatalf("verdict %q", r.Verdict)
	}
}

// TestDoctorAuthUserMismatch: a phone registering 2002 with 2001's
// credentials (its auth ID set to 2001).
func TestDoctorAuthUserMismatch(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "secret-2001")
	s.AddExt("2002", "secret-2002")
	docPhone{IP: "127.0.0.7", UA: "Cisco SPA504G", User: "2002", AuthUser: "2001", Password: "secret-2001"}.register(t, s, 403, 1)
	waitJournal(t, s, "2002", "auth_user_mismatch", 1)
	r, code := doctor(t, s, "2002")
	f := wantCause(t, r, code, "auth_user_mismatch", 1, "127.0.0.7", "Cisco SPA504G", "2001")
	if !strings.Contains(f.Fix, "authentication ID") {
		t.Fatalf("fix %q", f.Fix)
	}
}

// TestDoctorUnknownAuthUser: an auth ID that is no extension at all is
// also reported as the auth user being wrong (the extension exists).
func TestDoctorUnknownAuthUser(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2002", "secret-2002")
	docPhone{IP: "127.0.0.8", UA: "Snom D385", User: "2002", AuthUser: "admin2002", Password: "secret-2002"}.register(t, s, 403, 1)
	waitJournal(t, s, "2002", "extension_missing", 1)
	r, code := doctor(t, s, "2002")
	wantCause(t, r, code, "auth_user_mismatch", 1, "127.0.0.8", "Snom D385", "admin2002")
}

// TestDoctorWrongDomain: a phone registering 2002 at a domain the server
// does not serve.
func TestDoctorWrongDomain(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2002", "secret-2002")
	docPhone{IP: "127.0.0.9", UA: "Polycom VVX 450", User: "2002", Domain: "pbx.example.com", Password: "secret-2002"}.register(t, s, 403, 1)
	waitJournal(t, s, "2002", "wrong_domain", 1)
	r, code := doctor(t, s, "2002")
	f := wantCause(t, r, code, "wrong_domain", 1, "127.0.0.9", "Polycom VVX 450", "pbx.example.com")
	if !strings.Contains(f.text(), "127.0.0.1") {
		t.Fatalf("the finding does not say which domain is right:\n%s", f.text())
	}
}

// TestDoctorIntervalTooBrief: a phone asking for 30 s when 60 s is the
// minimum gets 423; the doctor names both numbers.
func TestDoctorIntervalTooBrief(t *testing.T) {
	t.Parallel()
	s := Start(t, "", "--min-expires", "60")
	s.AddExt("2002", "secret-2002")
	docPhone{IP: "127.0.0.10", UA: "Fanvil X4U", User: "2002", Password: "secret-2002", Expires: 30}.register(t, s, 423, 1)
	waitJournal(t, s, "2002", "interval_too_brief", 1)
	r, code := doctor(t, s, "2002")
	wantCause(t, r, code, "interval_too_brief", 1, "127.0.0.10", "Fanvil X4U", "30 s", "60 s")
}

// TestDoctorMaxRegistrations: with --max-registrations 1, a second phone is
// refused; the extension can still be called (exit 0) but the doctor names
// the refused phone.
func TestDoctorMaxRegistrations(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2002", "secret-2002", "--max-registrations", "1")
	docPhone{IP: "127.0.0.11", UA: "Desk phone A", User: "2002", Password: "secret-2002"}.register(t, s, 200, 1)
	docPhone{IP: "127.0.0.12", UA: "Softphone B", User: "2002", Password: "secret-2002"}.register(t, s, 403, 1)
	waitJournal(t, s, "2002", "max_registrations", 1)
	r, code := doctor(t, s, "2002")
	f := wantCause(t, r, code, "max_registrations", 0, "127.0.0.12", "Softphone B")
	if !r.Callable || f.Status != "warn" || !strings.Contains(f.Fix, "--max-registrations 2") {
		t.Fatalf("unexpected report %+v", r)
	}
	if !strings.Contains(r.Verdict, "can be called") || !strings.Contains(r.Verdict, "127.0.0.11") {
		t.Fatalf("verdict %q", r.Verdict)
	}
}

// TestDoctorACLDenied: with a register ACL that does not allow the phone's
// address, the doctor names the list, the address and the command that
// allows it.
func TestDoctorACLDenied(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2002", "secret-2002")
	s.CLI("acl", "add", "office", "--default", "deny")
	s.CLI("acl", "allow", "office", "127.0.0.1/32")
	s.CLI("profile", "set", "internal", "--register-acl", "office")
	docPhone{IP: "127.0.0.19", UA: "Avaya J179", User: "2002", Password: "secret-2002"}.run(t, s, "doctor-reg-denied.xml", 2)
	waitJournal(t, s, "2002", "acl_denied", 2)
	r, code := doctor(t, s, "2002")
	f := wantCause(t, r, code, "acl_denied", 1, "127.0.0.19", "Avaya J179", "office")
	if !strings.Contains(f.Fix, "switchboard acl allow office 127.0.0.19/32") {
		t.Fatalf("fix %q", f.Fix)
	}
}

// TestDoctorIPBanned: with loopback no longer trusted and --ban-after 3, a
// phone that sends three wrong passwords is banned and its next REGISTER is
// dropped; the doctor says so and gives the command that lifts the ban.
func TestDoctorIPBanned(t *testing.T) {
	t.Parallel()
	s := Start(t, "", "--ban-after", "3")
	s.AddExt("2002", "secret-2002")
	s.CLI("profile", "set", "internal", "--trusted-acl", "")
	p := docPhone{IP: "127.0.0.20", UA: "Grandstream GXP2170", User: "2002", Password: "wrong-password"}
	p.register(t, s, 403, 3)
	WaitFor(t, 5*time.Second, "the ban to be saved", func() bool {
		var bans []map[string]any
		s.JSON(&bans, "ban", "list")
		return len(bans) == 1
	})
	p.Password = "secret-2002" // fixed now, but the address is banned
	p.run(t, s, "doctor-reg-dropped.xml", 1)
	waitJournal(t, s, "2002", "ip_banned", 1)
	r, code := doctor(t, s, "2002")
	f := wantCause(t, r, code, "ip_banned", 1, "127.0.0.20")
	if !strings.Contains(f.Fix, "switchboard ban rm 127.0.0.20") || !strings.Contains(f.text(), "Grandstream GXP2170") {
		t.Fatalf("finding %+v", f)
	}
	// The wrong passwords that caused it are reported too.
	r.finding(t, "wrong_password")

	// Lifting the ban (as the fix says) lets the phone register.
	s.CLI("ban", "rm", "127.0.0.20")
	p.register(t, s, 200, 1)
	WaitFor(t, 5*time.Second, "the binding", func() bool { return len(s.Regs("2002")) == 1 })
	r, code = doctor(t, s, "2002")
	if r.Cause != "registered" || code != 0 {
		t.Fatalf("after ban rm: %+v (exit %d)", r, code)
	}
}

// TestDoctorExpired: a phone that registers for 2 s and stops refreshing.
func TestDoctorExpired(t *testing.T) {
	t.Parallel()
	s := Start(t, "", "--min-expires", "1")
	s.AddExt("2002", "secret-2002")
	docPhone{IP: "127.0.0.13", UA: "Gigaset N510", User: "2002", Password: "secret-2002", Expires: 2}.register(t, s, 200, 1)
	waitJournal(t, s, "2002", "registration_expired", 1)
	r, code := doctor(t, s, "2002")
	f := wantCause(t, r, code, "registration_expired", 1, "127.0.0.13", "Gigaset N510")
	if !strings.Contains(r.Verdict, "stopped refreshing") || f.Status != "fail" {
		t.Fatalf("unexpected report %+v", r)
	}
}

// TestDoctorNeverSeen: nothing ever reached the server for 2002: the
// doctor prints the settings the phone needs, with the real port.
func TestDoctorNeverSeen(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2002", "secret-2002")
	r, code := doctor(t, s, "2002")
	f := wantCause(t, r, code, "never_seen", 1)
	for _, want := range []string{"port " + s.Port, "user name: 2002", "authentication ID (auth user): 2002", "SIP domain / realm: 127.0.0.1"} {
		if !strings.Contains(f.text(), want) {
			t.Errorf("settings lack %q:\n%s", want, f.text())
		}
	}
}

// TestDoctorDirectory: a number that does not exist (with a similar one and
// the same number in another domain), and a disabled extension.
func TestDoctorDirectory(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2002", "secret-2002")
	s.CLI("domain", "add", "example.com")
	s.AddExt("2005", "secret-2005", "--domain", "example.com")

	r, code := doctor(t, s, "2003")
	wantCause(t, r, code, "extension_missing", 1, "2002")
	r, code = doctor(t, s, "2005")
	wantCause(t, r, code, "extension_missing", 1, "example.com")
	r, code = doctor(t, s, "2005", "--domain", "example.com")
	if r.Cause == "extension_missing" || r.Domain != "example.com" {
		t.Fatalf("doctor 2005 --domain example.com: %+v (exit %d)", r, code)
	}

	s.CLI("ext", "set", "2002", "--enabled=false")
	r, code = doctor(t, s, "2002")
	f := wantCause(t, r, code, "extension_disabled", 1)
	if !strings.Contains(f.Fix, "--enabled=true") {
		t.Fatalf("fix %q", f.Fix)
	}

	// Bad input: one clear line, exit 1.
	for _, args := range [][]string{{"doctor"}, {"doctor", "20 02"}, {"doctor", "2002", "--domain", "nowhere.example"},
		{"doctor", "call", "2001"}, {"journal", "--ip", "not-an-ip"}, {"journal", "--since", "yesterday"}, {"journal", "extra"}} {
		out, errOut, code := s.TryCLI(args...)
		if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || errOut == "" || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

// TestDoctorListenerDown: with serve stopped, the doctor still answers from
// the data directory and says the listener is down.
func TestDoctorListenerDown(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2002", "secret-2002")
	docPhone{IP: "127.0.0.14", UA: "Grandstream HT802", User: "2002", Password: "secret-2002"}.register(t, s, 200, 1)
	WaitFor(t, 5*time.Second, "the binding to be saved", func() bool { return len(s.Regs("2002")) == 1 })
	s.Stop()
	r, code := doctor(t, s, "2002")
	f := wantCause(t, r, code, "listener_down", 1)
	if r.ServeRunning || f.Check != "listeners" || !strings.Contains(f.Fix, "switchboard serve") ||
		!strings.Contains(f.text(), s.Addr) {
		t.Fatalf("unexpected report %+v", r)
	}
	if !strings.Contains(r.Verdict, "serve is not running") {
		t.Fatalf("verdict %q", r.Verdict)
	}
	out, _, _ := s.TryCLI("doctor", "2002")
	if !strings.Contains(out, "switchboard serve is not running") {
		t.Fatalf("text output does not say serve is stopped:\n%s", out)
	}
}

// startPhone runs doctor-phone.xml in the background: a phone that
// registers and answers OPTIONS (-aa) until stop kills it.
func startPhone(t *testing.T, s *Server, p docPhone) (stop func()) {
	t.Helper()
	Need(t, "sipp")
	scen, err := filepath.Abs(filepath.Join("testdata", "sipp", "doctor-phone.xml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	cmd := exec.CommandContext(ctx, "sipp", s.Addr, "-sf", scen, "-m", "1", "-i", p.IP, "-p", strconv.Itoa(FreeUDPPort(t)),
		"-inf", p.csv(t), "-aa", "-nostdin", "-timeout", "80")
	cmd.Dir = t.TempDir()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		cancel()
	}
	t.Cleanup(stop)
	return stop
}

// TestDoctorUnreachable: a registered phone that answers OPTIONS is
// reachable; once it is killed (a NAT pinhole closing), qualify marks it
// unreachable and the doctor says so with NAT advice.
func TestDoctorUnreachable(t *testing.T) {
	t.Parallel()
	s := Start(t, "", "--qualify-interval", "1s")
	s.AddExt("2002", "secret-2002")
	p := docPhone{IP: "127.0.0.15", UA: "Obihai OBi202", User: "2002", Password: "secret-2002"}
	stop := startPhone(t, s, p)
	WaitFor(t, 10*time.Second, "the phone to be qualified reachable", func() bool {
		regs := s.Regs("2002")
		return len(regs) == 1 && regs[0].PingStatus == "reachable"
	})
	r, code := doctor(t, s, "2002")
	if r.Cause != "registered" || code != 0 {
		t.Fatalf("reachable phone: %+v (exit %d)", r, code)
	}
	stop()
	WaitFor(t, 20*time.Second, "the phone to be qualified unreachable", func() bool {
		regs := s.Regs("2002")
		return len(regs) == 1 && regs[0].PingStatus == "unreachable"
	})
	r, code = doctor(t, s, "2002")
	f := wantCause(t, r, code, "unreachable", 1, "127.0.0.15", "Obihai OBi202")
	for _, want := range []string{"keepalive", "TCP", "rport", "SIP ALG"} {
		if !strings.Contains(f.Fix, want) {
			t.Errorf("fix lacks %q: %s", want, f.Fix)
		}
	}
}

// TestDoctorCall: 2001 (registered) calls 2002 (never registered): the
// server answers 480 USER_NOT_REGISTERED, and `doctor call` says why, with
// the last call's status and cause.
func TestDoctorCall(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "secret-2001")
	s.AddExt("2002", "secret-2002")
	docPhone{IP: "127.0.0.16", UA: "Caller phone", User: "2001", Password: "secret-2001"}.register(t, s, 200, 1)

	out, errOut, code := s.TryCLI("doctor", "call", "2001", "2002", "--json")
	if code != 1 || errOut != "" {
		t.Fatalf("doctor call: exit %d, stderr %s", code, errOut)
	}
	var before struct {
		Verdict  string          `json:"verdict"`
		Cause    string          `json:"cause"`
		LastCall json.RawMessage `json:"last_call"`
	}
	if err := json.Unmarshal([]byte(out), &before); err != nil {
		t.Fatal(err, out)
	}
	if before.Cause != "never_seen" || !strings.Contains(before.Verdict, "480 USER_NOT_REGISTERED") ||
		string(before.LastCall) != "null" {
		t.Fatalf("before any call: %s", out)
	}

	r := SIPp(t, s.Addr, "doctor-call-480.xml", 1, "-i", "127.0.0.16", "-inf", CSV(t, "SEQUENTIAL",
		[]string{"2001", "2002", "[authentication username=2001 password=secret-2001]"}))
	if r.Code != 0 {
		t.Fatalf("sipp call failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	var rep struct {
		Verdict   string    `json:"verdict"`
		Cause     string    `json:"cause"`
		WouldWork bool      `json:"would_work"`
		Caller    docReport `json:"caller"`
		Callee    docReport `json:"callee"`
		LastCall  *struct {
			Status int    `json:"sip_status"`
			Cause  string `json:"cause"`
		} `json:"last_call"`
	}
	WaitFor(t, 5*time.Second, "the call record", func() bool {
		out, _, _ = s.TryCLI("doctor", "call", "2001", "2002", "--json")
		rep.LastCall = nil
		return json.Unmarshal([]byte(out), &rep) == nil && rep.LastCall != nil
	})
	if rep.WouldWork || rep.LastCall.Status != 480 || rep.LastCall.Cause != "USER_NOT_REGISTERED" ||
		rep.Caller.Cause != "registered" || rep.Callee.Cause != "never_seen" {
		t.Fatalf("after the call: %s", out)
	}
	// The callee's own report lists the failed call.
	rr, _ := doctor(t, s, "2002")
	var calls docFinding
	for _, f := range rr.Findings {
		if f.Check == "calls" {
			calls = f
		}
	}
	if calls.Status != "warn" || !strings.Contains(calls.text(), "480 USER_NOT_REGISTERED") || !strings.Contains(calls.text(), "2001") {
		t.Fatalf("calls finding %+v", calls)
	}

	// Once 2002 registers, the call would work.
	docPhone{IP: "127.0.0.17", UA: "Callee phone", User: "2002", Password: "secret-2002"}.register(t, s, 200, 1)
	WaitFor(t, 5*time.Second, "the binding to be saved", func() bool { return len(s.Regs("2002")) == 1 })
	out, _, code = s.TryCLI("doctor", "call", "2001", "2002")
	if code != 0 || !strings.Contains(out, "should work") {
		t.Fatalf("doctor call after registering: exit %d\n%s", code, out)
	}
}

// docCall is the part of `doctor call --json` the tests read.
type docCall struct {
	Verdict   string    `json:"verdict"`
	Cause     string    `json:"cause"`
	WouldWork bool      `json:"would_work"`
	Caller    docReport `json:"caller"`
}

func doctorCall(t *testing.T, s *Server, from, to string) (docCall, int) {
	t.Helper()
	out, errOut, code := s.TryCLI("doctor", "call", from, to, "--json")
	if (code != 0 && code != 1) || errOut != "" {
		t.Fatalf("doctor call: exit %d, stderr %s", code, errOut)
	}
	var r docCall
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err, out)
	}
	return r, code
}

// TestDoctorCallRefused: the callee is fine but the caller's INVITEs are
// refused, first for a wrong password, then by the inbound ACL; `doctor
// call` names the caller's side with the fix.
func TestDoctorCallRefused(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "secret-2001")
	s.AddExt("2002", "secret-2002")
	docPhone{IP: "127.0.0.24", UA: "Caller phone", User: "2001", Password: "secret-2001"}.register(t, s, 200, 1)
	docPhone{IP: "127.0.0.25", UA: "Callee phone", User: "2002", Password: "secret-2002"}.register(t, s, 200, 1)
	WaitFor(t, 5*time.Second, "both bindings", func() bool { return len(s.Regs()) == 2 })
	if r, code := doctorCall(t, s, "2001", "2002"); code != 0 || !r.WouldWork {
		t.Fatalf("before: %+v (exit %d)", r, code)
	}

	call := func(scenario, password string) {
		t.Helper()
		r := SIPp(t, s.Addr, scenario, 1, "-i", "127.0.0.24", "-inf", CSV(t, "SEQUENTIAL",
			[]string{"2001", "2002", "[authentication username=2001 password=" + password + "]"}))
		if r.Code != 0 {
			t.Fatalf("sipp %s failed (%d):\n%s\nserver log:\n%s", scenario, r.Code, r.Output, s.Log())
		}
	}
	call("doctor-call-403.xml", "not-the-password")
	var r docCall
	var code int
	WaitFor(t, 5*time.Second, "the refused INVITE in the journal", func() bool {
		r, code = doctorCall(t, s, "2001", "2002")
		return r.Cause == "wrong_password"
	})
	if code != 1 || r.WouldWork || !strings.Contains(r.Verdict, "refused with 403: it sent a wrong password") ||
		!strings.Contains(r.Verdict, "127.0.0.24") {
		t.Fatalf("wrong password: %+v (exit %d)", r, code)
	}
	f := r.Caller.finding(t, "wrong_password")
	if !strings.Contains(f.Fix, "switchboard ext passwd 2001") || !strings.Contains(f.text(), "SIPp doctor caller") {
		t.Fatalf("caller finding %+v", f)
	}

	s.CLI("acl", "add", "office", "--default", "deny")
	s.CLI("acl", "allow", "office", "127.0.0.1/32")
	s.CLI("profile", "set", "internal", "--inbound-acl", "office")
	call("doctor-call-denied.xml", "secret-2001")
	WaitFor(t, 5*time.Second, "the denied INVITE in the journal", func() bool {
		r, code = doctorCall(t, s, "2001", "2002")
		return r.Cause == "acl_denied"
	})
	if code != 1 || !strings.Contains(r.Verdict, "may not place calls") {
		t.Fatalf("acl: %+v (exit %d)", r, code)
	}
	if f := r.Caller.finding(t, "acl_denied"); !strings.Contains(f.Fix, "switchboard acl allow office 127.0.0.24/32") {
		t.Fatalf("caller finding %+v", f)
	}
}

// TestJournalFollow: `journal --follow --json` prints one JSON object per
// line as events happen, until it is interrupted.
func TestJournalFollow(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2002", "secret-2002")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), "journal", "--follow", "--json", "--ext", "2002", "--data", s.Data)
	cmd.Env = ChildEnv("SWITCHBOARD_DATA=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(300 * time.Millisecond) // let it read the journal's end first
	docPhone{IP: "127.0.0.18", UA: "Follow phone", User: "2002", Password: "wrong-password"}.register(t, s, 403, 1)
	var got []map[string]any
	deadline := time.After(10 * time.Second)
	for len(got) < 2 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("journal --follow ended early; got %v", got)
			}
			var e map[string]any
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("line %q is not a JSON object: %v", l, err)
			}
			got = append(got, e)
		case <-deadline:
			t.Fatalf("journal --follow printed %v within 10 s", got)
		}
	}
	// The challenge is held until its follow-up settles it (see the
	// journal's hold), so it may be written after the refusal: both must
	// come, in either order.
	byCause := map[any]map[string]any{got[0]["cause"]: got[0], got[1]["cause"]: got[1]}
	if byCause["challenged"] == nil || byCause["wrong_password"] == nil || byCause["wrong_password"]["user_agent"] != "Follow phone" {
		t.Fatalf("unexpected events %v", got)
	}
	_ = cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("journal --follow did not exit cleanly on interrupt: %v", err)
	}
}

// TestJournalDisabled: serve --journal=false (for measuring the journal's
// cost) records nothing, and registration still works.
func TestJournalDisabled(t *testing.T) {
	t.Parallel()
	s := Start(t, "", "--journal=false")
	s.AddExt("2002", "secret-2002")
	docPhone{IP: "127.0.0.26", UA: "Quiet phone", User: "2002", Password: "wrong-password"}.register(t, s, 403, 1)
	docPhone{IP: "127.0.0.26", UA: "Quiet phone", User: "2002", Password: "secret-2002"}.register(t, s, 200, 1)
	WaitFor(t, 5*time.Second, "the binding", func() bool { return len(s.Regs("2002")) == 1 })
	time.Sleep(200 * time.Millisecond) // longer than the journal's batch interval
	if evs := journalEvents(t, s); len(evs) != 0 {
		t.Fatalf("journal disabled but it holds %v", evs)
	}
	if !strings.Contains(s.Log(), "journal disabled") {
		t.Fatalf("the server does not warn that the journal is off:\n%s", s.Log())
	}
}

// cliAs runs a switchboard command like TryCLI with extra environment
// (e.g. SUDO_USER) and fails the test on a non-zero exit.
func cliAs(t *testing.T, s *Server, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), append(args, "--data", s.Data)...)
	cmd.Env = ChildEnv(append([]string{"SWITCHBOARD_DATA="}, env...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("switchboard %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// wantOperator is who the CLI journals as the operator when run with
// SUDO_USER=alice: alice when the tests run as root (as under sudo),
// else the OS user running them.
func wantOperator(t *testing.T) string {
	t.Helper()
	if os.Geteuid() == 0 {
		return "alice"
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

// TestDoctorBanLifted: a phone banned after three wrong passwords, then
// `ban rm` (journaled with who lifted it): before the phone retries, the
// doctor no longer says it is banned nor suggests `ban rm`; it shows the
// lifted ban as history (who, when) and the wrong password as the answer.
func TestDoctorBanLifted(t *testing.T) {
	t.Parallel()
	s := Start(t, "", "--ban-after", "3")
	s.AddExt("2002", "secret-2002")
	s.CLI("profile", "set", "internal", "--trusted-acl", "")
	p := docPhone{IP: "127.0.0.27", UA: "Grandstream GXP2135", User: "2002", Password: "wrong-password"}
	p.register(t, s, 403, 3)
	WaitFor(t, 5*time.Second, "the ban to be saved", func() bool {
		var bans []map[string]any
		s.JSON(&bans, "ban", "list")
		return len(bans) == 1
	})
	p.Password = "secret-2002"
	p.run(t, s, "doctor-reg-dropped.xml", 1)
	waitJournal(t, s, "2002", "ip_banned", 1)
	if r, _ := doctor(t, s, "2002"); r.Cause != "ip_banned" {
		t.Fatalf("while banned: %+v", r)
	}

	cliAs(t, s, []string{"SUDO_USER=alice"}, "ban", "rm", "127.0.0.27")
	who := wantOperator(t)
	evs := journalEvents(t, s, "--kind", "admin", "--cause", "ban_lifted")
	if len(evs) != 1 || evs[0]["auth_user"] != who || !strings.Contains(evs[0]["detail"].(string), "lifted by "+who) ||
		!strings.HasPrefix(evs[0]["source"].(string), "127.0.0.27") {
		t.Fatalf("journal of the lifted ban: %v", evs)
	}
	r, code := doctor(t, s, "2002")
	if code != 1 || r.Cause != "wrong_password" || strings.Contains(r.Verdict, "is banned") ||
		!strings.Contains(r.Verdict, "lifted by "+who) {
		t.Fatalf("after ban rm: %+v (exit %d)", r, code)
	}
	for _, f := range r.Findings {
		if f.Cause == "ip_banned" || strings.Contains(f.Fix, "ban rm") {
			t.Fatalf("after ban rm a finding still says banned: %+v", f)
		}
	}
	if f := r.finding(t, "wrong_password"); !strings.Contains(f.text(), "127.0.0.27 was banned") {
		t.Fatalf("the lifted ban is not shown as history: %s", f.text())
	}
	// The phone, fixed, registers at its next attempt.
	p.register(t, s, 200, 1)
	WaitFor(t, 5*time.Second, "the binding", func() bool { return len(s.Regs("2002")) == 1 })
	if r, code := doctor(t, s, "2002"); r.Cause != "registered" || code != 0 {
		t.Fatalf("registered: %+v (exit %d)", r, code)
	}
}

// TestDoctorCallACLRemoved: the caller's INVITEs are denied by the inbound
// ACL; once the profile no longer applies it (profile set, journaled with
// who did it), `doctor call` no longer blames the ACL: the call would
// work, and the refusal is history naming the change.
func TestDoctorCallACLRemoved(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "secret-2001")
	s.AddExt("2002", "secret-2002")
	docPhone{IP: "127.0.0.28", UA: "Caller phone", User: "2001", Password: "secret-2001"}.register(t, s, 200, 1)
	docPhone{IP: "127.0.0.29", UA: "Callee phone", User: "2002", Password: "secret-2002"}.register(t, s, 200, 1)
	WaitFor(t, 5*time.Second, "both bindings", func() bool { return len(s.Regs()) == 2 })
	s.CLI("acl", "add", "office", "--default", "deny")
	s.CLI("acl", "allow", "office", "127.0.0.1/32")
	s.CLI("profile", "set", "internal", "--inbound-acl", "office")
	r := SIPp(t, s.Addr, "doctor-call-denied.xml", 1, "-i", "127.0.0.28", "-inf", CSV(t, "SEQUENTIAL",
		[]string{"2001", "2002", "[authentication username=2001 password=secret-2001]"}))
	if r.Code != 0 {
		t.Fatalf("sipp failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	var rep docCall
	var code int
	WaitFor(t, 5*time.Second, "the denied INVITE in the journal", func() bool {
		rep, code = doctorCall(t, s, "2001", "2002")
		return rep.Cause == "acl_denied"
	})
	if code != 1 || rep.WouldWork {
		t.Fatalf("denied: %+v (exit %d)", rep, code)
	}

	cliAs(t, s, []string{"SUDO_USER=alice"}, "profile", "set", "internal", "--inbound-acl", "")
	who := wantOperator(t)
	evs := journalEvents(t, s, "--kind", "admin")
	if len(evs) == 0 || evs[len(evs)-1]["cause"] != "profile_changed" || evs[len(evs)-1]["auth_user"] != who ||
		!strings.Contains(evs[len(evs)-1]["detail"].(string), "inbound acl office -> none by "+who) {
		t.Fatalf("journal of the profile change: %v", evs)
	}
	out, errOut, code := s.TryCLI("doctor", "call", "2001", "2002", "--json")
	var full struct {
		docCall
		Callable *bool `json:"callable"`
	}
	if err := json.Unmarshal([]byte(out), &full); err != nil || errOut != "" {
		t.Fatalf("doctor call: %v %s\n%s", err, errOut, out)
	}
	if code != 0 || full.Cause != "registered" || !full.WouldWork || full.Callable == nil || !*full.Callable ||
		strings.Contains(full.Verdict, "ACL") || strings.Contains(full.Verdict, "may not place calls") {
		t.Fatalf("after removing the inbound ACL: exit %d\n%s", code, out)
	}
	for _, f := range full.Caller.Findings {
		if f.Cause == "acl_denied" || strings.Contains(f.Fix, "acl allow") {
			t.Fatalf("a finding still blames the removed ACL: %+v", f)
		}
	}
	if !strings.Contains(out, "the profile applies no inbound acl now (changed by "+who) {
		t.Fatalf("the refusal is not shown as history with the change:\n%s", out)
	}
}
