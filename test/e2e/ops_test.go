package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/control"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

// TestBackupRestoreUnderLoad: `backup` taken while SIPp registers phones
// gives a file that passes integrity_check and that `restore` turns into a
// data directory `serve` starts from, with the extensions and the
// registrations the backup reported. `restore` refuses while a server runs
// on the data directory, and a backup never overwrites without --force.
//
// Serial: it loads the server on purpose (600 REGISTERs at 150/s while
// backups are taken).
func TestBackupRestoreUnderLoad(t *testing.T) {
	Need(t, "sipp")
	s := Start(t, "")
	const n = 600
	var csv strings.Builder
	csv.WriteString("extension,password\n")
	rows := make([][]string, 0, n)
	for i := range n {
		user, pw := fmt.Sprint(30000+i), fmt.Sprintf("backup-pw-%d", i)
		fmt.Fprintf(&csv, "%s,%s\n", user, pw)
		rows = append(rows, AuthRow(user, pw))
	}
	if out, errOut, code := RunCLI(t, s.Data, csv.String(), "ext", "import", "-"); code != 0 {
		t.Fatalf("import: %d %s %s", code, out, errOut)
	}
	users := CSV(t, "SEQUENTIAL", rows...)
	done := make(chan SIPpResult, 1)
	go func() { done <- SIPp(t, s.Addr, "register.xml", n, "-inf", users, "-r", "150") }()

	dir := t.TempDir()
	var backups []string
loop:
	for i := 0; ; i++ {
		file := filepath.Join(dir, fmt.Sprintf("b%d.db", i))
		var res struct {
			Registrations int `json:"registrations"`
			Extensions    int `json:"extensions"`
		}
		s.JSON(&res, "backup", file)
		if res.Extensions != n {
			t.Fatalf("backup %d reports %d extensions, want %d", i, res.Extensions, n)
		}
		st, err := os.Stat(file)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("backup file %s: %v mode %v, want 0600", file, err, st.Mode())
		}
		if err := sqlite.CheckFile(context.Background(), file); err != nil {
			t.Fatalf("backup %d taken under load fails its check: %v", i, err)
		}
		backups = append(backups, file)
		select {
		case r := <-done:
			if r.Code != 0 {
				t.Fatalf("sipp: %d\n%s", r.Code, r.Output)
			}
			break loop
		default:
		}
	}
	if len(backups) < 2 {
		t.Logf("only %d backup(s) were taken while SIPp ran", len(backups))
	}
	// The last one after the load: every registration is in it.
	final := filepath.Join(dir, "final.db")
	var res struct {
		Registrations int `json:"registrations"`
	}
	s.JSON(&res, "backup", final)
	if res.Registrations != n {
		t.Fatalf("backup after the load holds %d registrations, want %d", res.Registrations, n)
	}
	if _, errOut, code := s.TryCLI("backup", final); code != 1 || !strings.Contains(errOut, "--force") {
		t.Fatalf("backup over an existing file: exit %d, %q", code, errOut)
	}
	if _, errOut, code := s.TryCLI("restore", final); code != 1 || !strings.Contains(errOut, "is running") {
		t.Fatalf("restore while the server runs: exit %d, %q", code, errOut)
	}
	s.Stop()

	// Restore into a new data directory and into the old one.
	fresh := t.TempDir()
	if out, errOut, code := RunCLI(t, fresh, "", "restore", final); code != 0 || !strings.Contains(out, "restored") {
		t.Fatalf("restore into a new directory: exit %d, %q %q", code, out, errOut)
	}
	if out, errOut, code := RunCLI(t, s.Data, "", "restore", backups[0]); code != 0 || !strings.Contains(out, ".replaced-") {
		t.Fatalf("restore over the old database: exit %d, %q %q", code, out, errOut)
	}
	notDB := filepath.Join(dir, "not.db")
	os.WriteFile(notDB, []byte("hello, this is not sqlite at all, just text padding padding padding padding padding padding padding"), 0o600)
	if _, errOut, code := RunCLI(t, fresh, "", "restore", notDB); code != 1 || !strings.Contains(errOut, "not a switchboard backup") {
		t.Fatalf("restore of a non-database: exit %d, %q", code, errOut)
	}
	r := Start(t, fresh)
	if regs := r.Regs(); len(regs) != n {
		t.Fatalf("restored server has %d registrations, want %d", len(regs), n)
	}
	var exts []map[string]any
	r.JSON(&exts, "ext", "list")
	if len(exts) != n {
		t.Fatalf("restored server has %d extensions, want %d", len(exts), n)
	}
	// A restored password still works.
	reg(t, r, "reg-ok.xml", regCall{User: "30007", Password: "backup-pw-7", Expires: 3600})
}

// TestVersionAndGlobalFlags: --version/-v/version print the version; --data
// and --json may come before the command; a mistyped command gets a
// suggestion.
func TestVersionAndGlobalFlags(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	for _, args := range [][]string{{"--version"}, {"-v"}, {"version"}} {
		out, errOut, code := RunCLI(t, data, "", args...)
		if code != 0 || !strings.HasPrefix(out, "switchboard ") || !strings.Contains(out, "go1.") {
			t.Fatalf("%v: exit %d, %q %q", args, code, out, errOut)
		}
	}
	out, _, code := RunCLI(t, data, "", "version", "--json")
	var v map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v["version"] == "" || v["go"] == nil {
		t.Fatalf("version --json: %d %q", code, out)
	}
	s := Start(t, "")
	s.AddExt("2001", "goodpass-2001")
	out, errOut, code := runArgs(t, "--data", s.Data, "--json", "ext", "list")
	if code != 0 || !strings.Contains(out, `"2001"`) {
		t.Fatalf("global flags before the command: exit %d, %q %q", code, out, errOut)
	}
	out, errOut, code = runArgs(t, "--data="+s.Data, "status")
	if code != 0 || !strings.Contains(out, "running") {
		t.Fatalf("--data=DIR before the command: exit %d, %q %q", code, out, errOut)
	}
	for cmd, want := range map[string]string{"stauts": "did you mean `switchboard status`", "bakup": "did you mean `switchboard backup`"} {
		_, errOut, code := RunCLI(t, data, "", cmd)
		if code != 1 || !strings.Contains(errOut, want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Fatalf("%s: exit %d, %q", cmd, code, errOut)
		}
	}
	if _, errOut, code := runArgs(t, "--data"); code != 1 || !strings.Contains(errOut, "needs a value") {
		t.Fatalf("--data without a value: exit %d, %q", code, errOut)
	}
}

// TestSystemdUnitVerifies: the shipped unit passes systemd-analyze verify
// (with ExecStart pointed at the binary under test).
func TestSystemdUnitVerifies(t *testing.T) {
	t.Parallel()
	Need(t, "systemd-analyze")
	unit, err := os.ReadFile(filepath.Join("..", "..", "packaging", "switchboard.service"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/switchboard", Binary(t))
	p := filepath.Join(t.TempDir(), "switchboard.service")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", p).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// runArgs runs the CLI with exactly args (no --data appended).
func runArgs(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = ChildEnv("SWITCHBOARD_DATA=" + filepath.Join(t.TempDir(), "not-here"))
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// TestReadCommandsCreateNothing: a read command pointed at a data directory
// without a database (a mistyped --data) creates nothing and says where the
// data should be; an edit command creates the database and says so.
func TestReadCommandsCreateNothing(t *testing.T) {
	t.Parallel()
	typo := filepath.Join(t.TempDir(), "typo")
	for _, args := range [][]string{{"reg"}, {"status"}, {"journal"}, {"calls"}, {"doctor", "2001"},
		{"ext", "list"}, {"ext", "show", "2001"}, {"ext", "export"}, {"acl", "list"}, {"ban", "list"},
		{"profile", "show"}, {"domain", "list"}, {"backup", filepath.Join(t.TempDir(), "b.db")}} {
		out, errOut, code := RunCLI(t, typo, "", args...)
		want := "switchboard: no switchboard data in " + typo + " (start it with switchboard serve --data " + typo
		if code != 1 || out != "" || !strings.HasPrefix(errOut, want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
		if _, err := os.Stat(typo); !os.IsNotExist(err) {
			t.Fatalf("%v created %s (%v)", args, typo, err)
		}
	}
	out, errOut, code := RunCLI(t, typo, "", "ext", "add", "2001", "--password", "goodpass-2001")
	if code != 0 || !strings.Contains(out, "added extension 2001") || !strings.Contains(errOut, "created a new database in "+typo) {
		t.Fatalf("ext add on a new directory: exit %d, %q %q", code, out, errOut)
	}
	if out, errOut, code := RunCLI(t, typo, "", "ext", "list"); code != 0 || !strings.Contains(out, "2001") || errOut != "" {
		t.Fatalf("ext list after the add: exit %d, %q %q", code, out, errOut)
	}
}

// TestControlSocketNoSignals: the CLI reaches the running server over the
// control socket (0600, gone after a stop), never with a signal (strace
// sees no kill()), and an edit is live when the command returns: a phone
// registers with the extension at once.
func TestControlSocketNoSignals(t *testing.T) {
	t.Parallel()
	Need(t, "strace", "sipp")
	s := Start(t, "")
	sock := filepath.Join(s.Data, "switchboard.sock")
	if st, err := os.Stat(sock); err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("control socket %s: %v %v, want a 0600 socket", sock, err, st)
	}
	trace := filepath.Join(t.TempDir(), "strace.out")
	for i, args := range [][]string{
		{"ext", "add", "2001", "--password", "goodpass-2001"},
		{"reg"}, {"journal"}, {"status"}, {"calls"}, {"doctor", "2001"},
	} {
		full := append([]string{"-f", "-e", "trace=kill", "-o", fmt.Sprintf("%s.%d", trace, i), Binary(t)}, append(args, "--data", s.Data)...)
		cmd := exec.Command("strace", full...)
		cmd.Env = ChildEnv("SWITCHBOARD_DATA=")
		out, err := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 0 && !(args[0] == "doctor" && code == 1) {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		b, err := os.ReadFile(fmt.Sprintf("%s.%d", trace, i))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "kill(") {
			t.Fatalf("%v sent a signal:\n%s", args, b)
		}
		if i == 0 {
			// Live at once: no wait before the phone registers.
			reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "goodpass-2001", Expires: 3600})
		}
	}
	var st struct {
		State    string `json:"state"`
		PID      int    `json:"pid"`
		Profiles []struct {
			Listeners []struct{ Protocol, Address string }
		}
		Registrations int `json:"registrations"`
	}
	s.JSON(&st, "status")
	if st.State != "running" || st.PID == 0 || st.Registrations != 1 || len(st.Profiles) != 1 || len(st.Profiles[0].Listeners) < 2 {
		t.Fatalf("status over the socket: %+v", st)
	}
	s.Stop()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("the control socket outlived the server: %v", err)
	}
	s.JSON(&st, "status")
	if st.State != "stopped" {
		t.Fatalf("status after the stop: %+v", st)
	}
}

// TestRegRemove: `reg rm` drops a live registration through the running
// server (the next call to it gets 480 and the doctor names who removed
// it), `reg rm EXT CONTACT` only that contact, `reg flush` every one; with
// the server stopped they edit the database and journal it too.
func TestRegRemove(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "secret-2001")
	s.AddExt("2002", "secret-2002")
	s.AddExt("2003", "secret-2003")
	reg(t, s, "reg-ok.xml", regCall{User: "2002", Password: "secret-2002", Expires: 3600})
	reg(t, s, "reg-ok.xml", regCall{User: "2002", Password: "secret-2002", Expires: 3600})
	reg(t, s, "reg-ok.xml", regCall{User: "2003", Password: "secret-2003", Expires: 3600})
	regs := s.Regs("2002")
	if len(regs) != 2 {
		t.Fatalf("want two registrations of 2002, got %+v", regs)
	}
	// One contact of two.
	out := s.CLI("reg", "rm", "2002", regs[0].Contact)
	if !strings.Contains(out, "removed 2002@127.0.0.1 "+regs[0].Contact) || len(s.Regs("2002")) != 1 {
		t.Fatalf("reg rm EXT CONTACT: %q, left %+v", out, s.Regs("2002"))
	}
	if _, errOut, code := s.TryCLI("reg", "rm", "2002", "sip:nobody@192.0.2.1"); code != 1 || !strings.Contains(errOut, "no registration with contact") {
		t.Fatalf("reg rm of an unknown contact: exit %d, %q", code, errOut)
	}
	out = s.CLI("reg", "rm", "2002")
	if !strings.Contains(out, "removed 2002@127.0.0.1") || len(s.Regs("2002")) != 0 {
		t.Fatalf("reg rm EXT: %q, left %+v", out, s.Regs("2002"))
	}
	// The next call to 2002 finds nobody: 480.
	r := SIPp(t, s.Addr, "doctor-call-480.xml", 1, "-i", "127.0.0.16", "-inf", CSV(t, "SEQUENTIAL",
		[]string{"2001", "2002", "[authentication username=2001 password=secret-2001]"}))
	if r.Code != 0 {
		t.Fatalf("call to the removed extension did not get 480 (%d):\n%s", r.Code, r.Output)
	}
	var rep struct {
		Cause   string `json:"cause"`
		Verdict string `json:"verdict"`
	}
	dout, _, _ := s.TryCLI("doctor", "2002", "--json")
	if err := json.Unmarshal([]byte(dout), &rep); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, dout)
	}
	me := control.UserName(os.Getuid(), "")
	if rep.Cause != "removed_by_admin" || !strings.Contains(rep.Verdict, "was removed by "+me) {
		t.Fatalf("doctor after reg rm: %+v (want removed_by_admin by %s)", rep, me)
	}
	var evs []struct {
		Cause, Detail string
	}
	s.JSON(&evs, "journal", "--ext", "2002", "--cause", "removed_by_admin")
	if len(evs) != 2 || !strings.Contains(evs[0].Detail, "removed by "+me) {
		t.Fatalf("journal of the removals: %+v", evs)
	}
	// flush: every registration; nothing left to flush afterwards.
	out = s.CLI("reg", "flush")
	if !strings.Contains(out, "removed 2003@127.0.0.1") || len(s.Regs()) != 0 {
		t.Fatalf("reg flush: %q, left %+v", out, s.Regs())
	}
	if out := s.CLI("reg", "flush"); !strings.Contains(out, "nothing to remove") {
		t.Fatalf("second flush: %q", out)
	}
	// Server stopped: the database is edited and the journal says so.
	reg(t, s, "reg-ok.xml", regCall{User: "2003", Password: "secret-2003", Expires: 3600})
	s.Stop()
	out = s.CLI("reg", "rm", "2003")
	if !strings.Contains(out, "removed 2003@127.0.0.1") {
		t.Fatalf("reg rm with the server stopped: %q", out)
	}
	s.Restart()
	if regs := s.Regs("2003"); len(regs) != 0 {
		t.Fatalf("a registration removed while stopped came back: %+v", regs)
	}
	s.JSON(&evs, "journal", "--ext", "2003", "--cause", "removed_by_admin")
	if len(evs) != 2 || !strings.Contains(evs[1].Detail, "(server stopped)") { // oldest first
		t.Fatalf("journal of the removal while stopped: %+v", evs)
	}
}

// TestRestartedPhoneReplacesItsGhost: a baresip phone killed (no
// unregistration) and started again on the same address and port
// registers again although its extension allows one registration (the old
// binding is the same phone's), leaves one binding, and is called: no
// 403, no ringing a ghost.
func TestRestartedPhoneReplacesItsGhost(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	s.CLI("ext", "set", "2002", "--max-registrations", "1")
	port := freeTCPAndUDPPort(t)
	phone := func() *Baresip {
		b := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2002", "secret-2002", s.Addr, "udp", "answermode=auto")},
			Config: []string{"sip_listen 127.0.0.1:" + strconv.Itoa(port), "ausrc_srate 48000", "ausrc_channels 2"}})
		b.WaitRegistered("2002@127.0.0.1", 15*time.Second)
		return b
	}
	first := phone()
	before := s.Regs("2002")
	if len(before) != 1 {
		t.Fatalf("registrations of 2002: %+v", before)
	}
	// Killed: no unregistration.
	_ = first.cmd.Process.Kill()
	<-first.done
	second := phone()
	after := s.Regs("2002")
	if len(after) != 1 || after[0].CallID == before[0].CallID || after[0].Source != before[0].Source {
		t.Fatalf("after the restart 2002 has %+v (before: %+v); want the restarted phone's one binding", after, before)
	}
	var evs []struct{ Cause, Detail string }
	s.JSON(&evs, "journal", "--ext", "2002", "--kind", "register")
	found := false
	for _, e := range evs {
		found = found || strings.Contains(e.Detail, "replaced the binding of a restarted phone")
	}
	if !found {
		t.Fatalf("the journal does not say the binding was replaced: %+v", evs)
	}
	caller := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2001", "secret-2001", s.Addr, "udp")},
		Config: []string{"ausrc_srate 48000", "ausrc_channels 2"}})
	caller.WaitRegistered("2001@127.0.0.1", 15*time.Second)
	if err := caller.Dial("sip:2002@" + s.Addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("callee log:\n%s\ncaller log:\n%s\nserver log:\n%s", second.Log(), caller.Log(), s.Log())
		}
	})
	second.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	caller.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	if err := caller.Hangup(); err != nil {
		t.Fatal(err)
	}
	second.WaitEvent("CALL_CLOSED", 0, 10*time.Second)
}

// TestCallsHangup: `calls hangup ID` ends a live call between two baresip
// phones: both see the BYE, the record ends NORMAL_CLEARING hung up by the
// admin (named in its detail); a ringing, ended or unknown call is refused
// with a line that says why.
func TestCallsHangup(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	audio := []string{"ausrc_srate 48000", "ausrc_channels 2"}
	a := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2001", "secret-2001", s.Addr, "udp")}, Config: audio})
	b := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2002", "secret-2002", s.Addr, "udp", "answermode=auto")}, Config: audio})
	a.WaitRegistered("2001@127.0.0.1", 15*time.Second)
	b.WaitRegistered("2002@127.0.0.1", 15*time.Second)
	if err := a.Dial("sip:2002@" + s.Addr); err != nil {
		t.Fatal(err)
	}
	a.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	b.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	var act []CallRecord
	WaitFor(t, 5*time.Second, "the call in `calls --active`", func() bool {
		act = s.Calls("--active")
		return len(act) == 1 && act[0].State == "up"
	})
	out := s.CLI("calls", "hangup", strconv.FormatInt(act[0].ID, 10))
	if !strings.Contains(out, "BYE to 2002 answered 200, to 2001 answered 200") {
		t.Fatalf("calls hangup: %q", out)
	}
	a.WaitEvent("CALL_CLOSED", 0, 5*time.Second)
	b.WaitEvent("CALL_CLOSED", 0, 5*time.Second)
	c := waitCall(t, s, "NORMAL_CLEARING", func(c CallRecord) bool { return c.Cause == "NORMAL_CLEARING" })
	me := control.UserName(os.Getuid(), "")
	if c.HangupBy != "admin" || !strings.Contains(c.Detail, "hung up by "+me) {
		t.Fatalf("call record after the hangup: %+v", c)
	}
	if len(s.Calls("--active")) != 0 {
		t.Fatal("the call is still active")
	}
	for _, c := range []struct{ id, want string }{
		{strconv.FormatInt(act[0].ID, 10), "already ended"},
		{"99999", "no call 99999"},
	} {
		if _, errOut, code := s.TryCLI("calls", "hangup", c.id); code != 1 || !strings.Contains(errOut, c.want) {
			t.Fatalf("calls hangup %s: exit %d, %q (want %q)", c.id, code, errOut, c.want)
		}
	}
}
