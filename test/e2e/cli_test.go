package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/config"
)

// oneLineError asserts a failed command: exit 1, nothing on stdout, and one
// line on stderr, "switchboard: ..." containing want.
func oneLineError(t *testing.T, stdout, stderr string, code int, want string) {
	t.Helper()
	if code != 1 {
		t.Errorf("want exit 1, got %d (stdout %q, stderr %q)", code, stdout, stderr)
		return
	}
	if stdout != "" {
		t.Errorf("a failed command printed on stdout: %q", stdout)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "switchboard: ") || !strings.Contains(lines[0], want) {
		t.Errorf("want one line \"switchboard: ...%s...\" on stderr, got %q", want, stderr)
	}
}

func jsonKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedCopy(s ...string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

var extKeys = []string{"extension", "domain", "enabled", "name", "caller_id_number", "description",
	"max_registrations", "call_timeout_s", "acl", "created_at", "updated_at"}

// TestCLIExtAddGeneratedPassword: without --password, ext add prints a strong
// generated password once, and a phone registers with it.
func TestCLIExtAddGeneratedPassword(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	out := s.CLI("ext", "add", "2001")
	m := regexp.MustCompile(`(?m)^password: (\S+)$`).FindStringSubmatch(out)
	if m == nil || len(m[1]) < 16 {
		t.Fatalf("ext add should print a generated password of 16+ characters:\n%s", out)
	}
	reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: m[1], Expires: 3600})
	if n := len(s.Regs("2001")); n != 1 {
		t.Fatalf("want 2001 registered with the generated password, got %d registrations", n)
	}

	var added map[string]any
	s.JSON(&added, "ext", "add", "2002")
	pw, _ := added["password"].(string)
	if len(pw) < 16 || pw == m[1] {
		t.Fatalf("ext add --json: want a new generated password, got %v", added)
	}
	if want := sortedCopy(append(extKeys, "password")...); !slices.Equal(jsonKeys(added), want) {
		t.Fatalf("ext add --json keys: got %v, want %v", jsonKeys(added), want)
	}
	// Shown once: never again, in no output.
	for _, args := range [][]string{{"ext", "show", "2002", "--json"}, {"ext", "list", "--json"}, {"ext", "export"}, {"ext", "show", "2002"}} {
		if out := s.CLI(args...); strings.Contains(out, pw) || strings.Contains(out, `"password"`) {
			t.Errorf("switchboard %v shows the password:\n%s", args, out)
		}
	}
	if strings.Contains(s.Log(), pw) || strings.Contains(s.Log(), m[1]) {
		t.Errorf("the server log contains a password:\n%s", s.Log())
	}
	reg(t, s, "reg-fail.xml", regCall{User: "2002", Password: "wrong-" + pw, Expires: 3600})
	WaitFor(t, 5*time.Second, "wrong_password in the journal", func() bool { return journalCount(t, s, "wrong_password", "2002") == 1 })
	var n int
	err := serverDB(t, s).SQL().QueryRow("SELECT count(*) FROM journal WHERE detail LIKE ?1 OR detail LIKE ?2 OR auth_user LIKE ?1",
		"%"+pw+"%", "%"+m[1]+"%").Scan(&n)
	if err != nil || n != 0 {
		t.Fatalf("the journal contains a password (%d events, %v)", n, err)
	}
}

// TestCLIErrors: every mistake is one line on stderr, exit 1, and changes
// nothing.
func TestCLIErrors(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	run := func(args ...string) (string, string, int) { return RunCLI(t, data, "", args...) }
	if _, e, code := run("domain", "add", "pbx.test"); code != 0 {
		t.Fatalf("domain add: %s", e)
	}
	if _, e, code := run("ext", "add", "2001", "--password", "goodpass-2001", "--domain", "pbx.test"); code != 0 {
		t.Fatalf("ext add: %s", e)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ext", "add", "2001", "--password", "other-pass-2001", "--domain", "pbx.test"}, "extension 2001 already exists in pbx.test"},
		{[]string{"ext", "show", "9999", "--domain", "pbx.test"}, "unknown extension 9999 in pbx.test"},
		{[]string{"ext", "set", "9999", "--name", "x", "--domain", "pbx.test"}, "unknown extension 9999"},
		{[]string{"ext", "passwd", "9999", "--domain", "pbx.test"}, "unknown extension 9999"},
		{[]string{"ext", "rm", "9999", "--domain", "pbx.test"}, "unknown extension 9999"},
		{[]string{"ext", "add", "2002", "--domain", "nope.example"}, "unknown domain nope.example"},
		{[]string{"ext", "list", "--domain", "nope.example"}, "unknown domain nope.example"},
		{[]string{"reg", "--domain", "nope.example"}, "unknown domain nope.example"},
		{[]string{"ext", "add", "20 02", "--domain", "pbx.test"}, `invalid extension number "20 02"`},
		{[]string{"ext", "add", "2002;x", "--domain", "pbx.test"}, "invalid extension number"},
		{[]string{"ext", "show", "a/b", "--domain", "pbx.test"}, "invalid extension number"},
		{[]string{"ext", "add", "2002", "--password", "", "--domain", "pbx.test"}, "password is empty"},
		{[]string{"ext", "add", "2002", "--password", "short", "--domain", "pbx.test"}, "password is too weak"},
		{[]string{"ext", "add", "2002", "--password", "password", "--domain", "pbx.test"}, "password is too weak"},
		{[]string{"ext", "add", "2002", "--password", "x2002xyz", "--domain", "pbx.test"}, "password is too weak"},
		{[]string{"ext", "set", "2001", "--password", "11111111", "--domain", "pbx.test"}, "password is too weak"},
		{[]string{"ext", "set", "2001", "--domain", "pbx.test"}, "nothing to change"},
		{[]string{"ext", "add", "2002", "--max-registrations", "0", "--domain", "pbx.test"}, "--max-registrations must be 1..100"},
		{[]string{"ext", "add", "2002", "--bogus"}, "unknown flag --bogus"},
		{[]string{"ext", "add"}, "takes one extension number"},
		{[]string{"ext", "frobnicate"}, "unknown command `ext frobnicate`"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"domain", "add", "bad domain!"}, "invalid domain name"},
		{[]string{"domain", "add", "pbx.test"}, "domain pbx.test already exists"},
		{[]string{"ext", "import", filepath.Join(data, "missing.csv")}, "cannot read"},
	} {
		o, e, code := run(c.args...)
		t.Run(strings.Join(c.args, " "), func(t *testing.T) { oneLineError(t, o, e, code, c.want) })
	}
	var exts []map[string]any
	o, _, _ := run("ext", "list", "--json")
	if err := json.Unmarshal([]byte(o), &exts); err != nil || len(exts) != 1 || exts[0]["extension"] != "2001" {
		t.Fatalf("the failed commands changed the directory: %s", o)
	}
}

// TestCLIJSONShapes: list prints one array, show one object, with stable
// snake_case fields; flags work before and after positionals; text output
// is an aligned table without color codes.
func TestCLIJSONShapes(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.CLI("ext", "add", "2001", "--password", "goodpass-2001", "--name", "Front desk")
	s.CLI("ext", "add", "--name", "Back office", "--password", "goodpass-2002", "2002", "--max-registrations", "3")

	var list []map[string]any
	s.JSON(&list, "ext", "list")
	if len(list) != 2 || list[0]["extension"] != "2001" || list[1]["extension"] != "2002" {
		t.Fatalf("ext list --json: %v", list)
	}
	for _, e := range list {
		if !slices.Equal(jsonKeys(e), sortedCopy(extKeys...)) {
			t.Fatalf("ext list --json keys: got %v, want %v", jsonKeys(e), sortedCopy(extKeys...))
		}
	}
	if list[0]["name"] != "Front desk" || list[1]["max_registrations"] != 3.0 || list[0]["domain"] != "127.0.0.1" ||
		list[0]["enabled"] != true || list[0]["caller_id_number"] != "2001" || list[0]["call_timeout_s"] != 30.0 {
		t.Fatalf("ext list --json values: %v", list)
	}

	for _, args := range [][]string{{"ext", "show", "2001", "--json"}, {"ext", "show", "--json", "2001"}} {
		out := s.CLI(args...)
		var one map[string]any
		if err := json.Unmarshal([]byte(out), &one); err != nil {
			t.Fatalf("%v: not one JSON object: %v\n%s", args, err, out)
		}
		if want := sortedCopy(append(extKeys, "registrations")...); !slices.Equal(jsonKeys(one), want) {
			t.Fatalf("%v keys: got %v, want %v", args, jsonKeys(one), want)
		}
	}

	var set map[string]any
	s.JSON(&set, "ext", "set", "2002", "--enabled=false", "--name", "Store room", "--description", "by the door")
	if set["enabled"] != false || set["name"] != "Store room" || set["description"] != "by the door" {
		t.Fatalf("ext set --json: %v", set)
	}
	var shown map[string]any
	s.JSON(&shown, "ext", "show", "2002")
	if shown["enabled"] != false || shown["name"] != "Store room" || shown["max_registrations"] != 3.0 {
		t.Fatalf("ext show after set: %v", shown)
	}

	text := s.CLI("ext", "list")
	if strings.Contains(text, "\x1b[") {
		t.Errorf("color codes in non-TTY output:\n%s", text)
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	col := strings.Index(lines[0], "DOMAIN")
	for _, l := range lines[1:3] {
		if !strings.HasPrefix(l[col:], "127.0.0.1 ") {
			t.Errorf("ext list columns are not aligned:\n%s", text)
		}
	}

	var rm map[string]any
	s.JSON(&rm, "ext", "rm", "2002")
	if rm["extension"] != "2002" || rm["removed"] != true || rm["domain"] != "127.0.0.1" {
		t.Fatalf("ext rm --json: %v", rm)
	}
	s.CLI("ext", "rm", "2001")
	for _, args := range [][]string{{"ext", "list", "--json"}, {"reg", "--json"}} {
		if out := strings.TrimSpace(s.CLI(args...)); out != "[]" {
			t.Errorf("%v on nothing: want [], got %q", args, out)
		}
	}

	var doms []map[string]any
	s.JSON(&doms, "domain", "list")
	if len(doms) == 0 || !slices.Equal(jsonKeys(doms[0]), []string{"created_at", "default", "enabled", "name", "realm"}) {
		t.Fatalf("domain list --json: %v", doms)
	}
}

// TestCLIImportAllOrNothing: a bad row anywhere rejects the whole file and
// names its line; a good file imports every row.
func TestCLIImportAllOrNothing(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "goodpass-2001")
	write := func(body string) string {
		p := filepath.Join(t.TempDir(), "exts.csv")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct{ csv, want string }{
		{"extension,password,name\n3001,goodpass-3001,A\n3002,goodpass-3002,B\n3003,goodpass-3003,C\n30 04,goodpass-3004,D\n",
			"exts.csv line 5: invalid extension number"},
		{"extension,password\n3001,goodpass-3001\n2001,goodpass-2001\n", "exts.csv line 3: extension 2001 already exists"},
		{"extension,password\n3001,goodpass-3001\n3002,goodpass-3002\n3001,goodpass-3005\n", "exts.csv line 4: extension 3001 appears again (first on line 2)"},
		{"extension,password\n3001,goodpass-3001\n3002,short\n", "exts.csv line 3: extension 3002: password is too weak"},
		{"extension,password,enabled\n3001,goodpass-3001,true\n3002,goodpass-3002,maybe\n", "exts.csv line 3: enabled must be yes or no"},
		{"extension,password,domain\n3001,goodpass-3001,nope.example\n", "exts.csv line 2: unknown domain nope.example"},
		{"extension,secret\n3001,goodpass-3001\n", `exts.csv line 1: unknown column "secret"`},
		{"extension,name\n3001,A\n", `need a "password" column`},
	} {
		o, e, code := s.TryCLI("ext", "import", write(c.csv))
		oneLineError(t, o, e, code, c.want)
		if strings.Contains(c.want, " line ") && !strings.Contains(c.want, " line 1:") && !strings.Contains(e, "nothing was imported") {
			t.Errorf("a bad row's error should say nothing was imported: %q", e)
		}
	}
	var list []map[string]any
	s.JSON(&list, "ext", "list")
	if len(list) != 1 {
		t.Fatalf("rejected imports added extensions: %v", list)
	}

	// A good file, from standard input, in one go; the server knows the new
	// extensions at once.
	out, errOut, code := RunCLI(t, s.Data, "extension,password,name\n3001,goodpass-3001,A\n3002,goodpass-3002,B\n\n3003,goodpass-3003,C\n",
		"ext", "import", "-")
	if code != 0 || strings.TrimSpace(out) != "imported 3 extension(s)" {
		t.Fatalf("ext import -: exit %d, %q %q", code, out, errOut)
	}
	reg(t, s, "reg-ok.xml", regCall{User: "3003", Password: "goodpass-3003", Expires: 3600})
}

// TestCLIExportImportRoundTrip: an export imported into a fresh data
// directory gives the same directory, and the phones' passwords still work
// (the HA1 hashes travel, the passwords never do).
func TestCLIExportImportRoundTrip(t *testing.T) {
	t.Parallel()
	a := Start(t, "")
	a.AddExt("2001", "goodpass-2001", "--name", "Front desk", "--description", "lobby, left")
	a.AddExt("2002", "goodpass-2002", "--enabled=false", "--max-registrations", "3", "--call-timeout", "45")
	a.CLI("domain", "add", "acme.test")
	a.AddExt("2001", "goodpass-acme", "--domain", "acme.test")
	file := filepath.Join(t.TempDir(), "export.csv")
	a.CLI("ext", "export", file, "--with-hashes")
	stdout := a.CLI("ext", "export", "--with-hashes")
	if b, _ := os.ReadFile(file); string(b) != stdout {
		t.Fatalf("export to a file and to stdout differ:\n%s\n---\n%s", b, stdout)
	}
	if strings.Contains(stdout, "goodpass") {
		t.Fatalf("the export contains a password:\n%s", stdout)
	}
	// The file is private and is not overwritten without --force.
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v %v, want mode 0600", st, err)
	}
	if _, e, code := a.TryCLI("ext", "export", file); code != 1 || !strings.Contains(e, "--force") {
		t.Fatalf("export over an existing file: exit %d, stderr %q", code, e)
	}
	if b, _ := os.ReadFile(file); string(b) != stdout {
		t.Fatal("the export file changed without --force")
	}
	// Without --with-hashes the password-equivalent hashes stay out.
	for _, args := range [][]string{{"ext", "export"}, {"ext", "export", "--json"}} {
		if out := a.CLI(args...); strings.Contains(out, "ha1") || strings.Contains(out, "ha1_md5") {
			t.Fatalf("%v without --with-hashes:\n%s", args, out)
		}
	}
	plain := filepath.Join(t.TempDir(), "plain.csv")
	a.CLI("ext", "export", plain)
	if b, _ := os.ReadFile(plain); strings.Contains(string(b), "ha1") || len(b) == 0 {
		t.Fatalf("export file without --with-hashes:\n%s", b)
	}
	var asJSON []map[string]any
	a.JSON(&asJSON, "ext", "export", "--with-hashes")
	if len(asJSON) != 3 || !slices.Equal(jsonKeys(asJSON[0]), sortedCopy("extension", "name", "caller_id_number", "description", "enabled",
		"max_registrations", "call_timeout_s", "acl", "domain", "ha1_md5", "ha1_sha256", "realm")) {
		t.Fatalf("ext export --json: %v", asJSON)
	}

	fresh := t.TempDir()
	for _, args := range [][]string{{"domain", "add", "127.0.0.1"}, {"domain", "add", "acme.test"}, {"ext", "import", file}} {
		if o, e, code := RunCLI(t, fresh, "", args...); code != 0 {
			t.Fatalf("%v: exit %d %s %s", args, code, o, e)
		}
	}
	b := Start(t, fresh)
	var la, lb []map[string]any
	a.JSON(&la, "ext", "list")
	b.JSON(&lb, "ext", "list")
	if len(la) != 3 || len(lb) != 3 {
		t.Fatalf("want 3 extensions on both sides, got %d and %d", len(la), len(lb))
	}
	for i := range la {
		for _, k := range []string{"created_at", "updated_at"} {
			delete(la[i], k)
			delete(lb[i], k)
		}
		if fmt.Sprint(la[i]) != fmt.Sprint(lb[i]) {
			t.Errorf("extension differs after the round trip:\nbefore %v\nafter  %v", la[i], lb[i])
		}
	}
	reg(t, b, "reg-ok.xml", regCall{User: "2001", Password: "goodpass-2001", Expires: 3600})
	reg(t, b, "reg-ok.xml", regCall{User: "2001", Password: "goodpass-acme", Domain: "acme.test", Expires: 3600})
	reg(t, b, "reg-fail.xml", regCall{User: "2002", Password: "goodpass-2002", Expires: 3600}) // disabled
}

// TestCLILiveChanges: edits reach the running server before the command
// returns.
func TestCLILiveChanges(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	c := regCall{User: "2001", Password: "goodpass-2001", Expires: 3600, Port: FreeUDPPort(t)}
	s.AddExt("2001", c.Password)
	reg(t, s, "reg-ok.xml", c) // at once, no wait

	s.CLI("ext", "set", "2001", "--enabled=false")
	reg(t, s, "reg-fail.xml", c)
	s.CLI("ext", "set", "--enabled=true", "2001")
	reg(t, s, "reg-ok.xml", c)

	out := s.CLI("ext", "passwd", "2001")
	m := regexp.MustCompile(`new password for 2001@127\.0\.0\.1: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ext passwd printed no password:\n%s", out)
	}
	reg(t, s, "reg-fail.xml", c) // the old password
	c.Password = m[1]
	reg(t, s, "reg-ok.xml", c)

	s.CLI("ext", "set", "2001", "--password", "another-pass-2001")
	reg(t, s, "reg-fail.xml", c)
	c.Password = "another-pass-2001"
	reg(t, s, "reg-ok.xml", c)

	// Removing an extension removes its registrations, in the server too.
	s.CLI("ext", "rm", "2001")
	if regs := s.Regs(); len(regs) != 0 {
		t.Fatalf("registrations of a removed extension: %+v", regs)
	}
	reg(t, s, "reg-fail.xml", c)
}

// serveOnce runs `switchboard serve` expecting it to fail at start.
func serveOnce(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), append([]string{"serve", "--http", "127.0.0.1:0"}, args...)...)
	cmd.Env = ChildEnv("SWITCHBOARD_DATA=")
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("serve %v did not fail at start:\n%s", args, e.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// TestServeStartErrors: a taken port, an unusable data directory, a data
// directory in use and bad settings each end serve with one line and exit 1.
func TestServeStartErrors(t *testing.T) {
	t.Parallel()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	uport := strconv.Itoa(udp.LocalAddr().(*net.UDPAddr).Port)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tport := strconv.Itoa(tcp.Addr().(*net.TCPAddr).Port)
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	running := Start(t, "")
	badCfg := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(badCfg, []byte(`{"sip": "127.0.0.1:0", "colour": "blue"}`), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--sip", "127.0.0.1:" + uport, "--data", t.TempDir()}, "cannot listen on udp 127.0.0.1:" + uport + ": address already in use"},
		{[]string{"--sip", "127.0.0.1:" + tport, "--data", t.TempDir()}, "cannot listen on tcp 127.0.0.1:" + tport + ": address already in use"},
		{[]string{"--sip", "127.0.0.1:0", "--data", file}, "data directory " + file + " is unusable: not a directory"},
		{[]string{"--sip", "127.0.0.1:0", "--data", filepath.Join(file, "sub")}, "is unusable"},
		{[]string{"--sip", "127.0.0.1:0", "--data", running.Data}, "already using data directory " + running.Data},
		{[]string{"--sip", "127.0.0.1:0", "--data", t.TempDir(), "--digest", "sha1"}, `--digest "sha1"`},
		{[]string{"--sip", "127.0.0.1:0", "--data", t.TempDir(), "--min-expires", "0"}, "expires bounds are inconsistent"},
		{[]string{"--sip", "localhost:5060", "--data", t.TempDir()}, "host must be an IP address"},
		{[]string{"--sip", "127.0.0.1:0", "--data", t.TempDir(), "--config", badCfg}, "config file " + badCfg},
		{[]string{"--sip", "127.0.0.1:0", "--data", t.TempDir(), "extra"}, "takes no arguments"},
		{[]string{"--sip", "127.0.0.1:0", "--data", t.TempDir(), "--ban-after-registered", "101"}, "--ban-after-registered 101: give 1..100"},
		{[]string{"--sip", "127.0.0.1:0", "--data", t.TempDir(), "--memory-limit", "lots"}, `--memory-limit "lots"`},
	} {
		o, e, code := serveOnce(t, c.args...)
		t.Run(strings.Join(c.args, " "), func(t *testing.T) { oneLineError(t, o, e, code, c.want) })
	}
	if os.Getenv("CI") == "" && os.Geteuid() != 0 {
		ro := t.TempDir()
		if err := os.Chmod(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		o, e, code := serveOnce(t, "--sip", "127.0.0.1:0", "--data", ro)
		oneLineError(t, o, e, code, "is not writable")
	}
}

// TestServeGracefulStop: SIGTERM and SIGINT stop serve cleanly with exit 0,
// and the data written before survives.
func TestServeGracefulStop(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		s := Start(t, "")
		s.AddExt("2001", "goodpass-2001")
		reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "goodpass-2001", Expires: 3600})
		s.stopped = true
		if err := s.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
			t.Fatalf("serve did not stop within 10 s of %v:\n%s", sig, s.Log())
		}
		if code := s.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("serve exited %d on %v:\n%s", code, sig, s.Log())
		}
		if !strings.Contains(s.Log(), `msg="switchboard stopped"`) {
			t.Errorf("no graceful stop in the log after %v:\n%s", sig, s.Log())
		}
		if regs := s.Regs("2001"); len(regs) != 1 {
			t.Errorf("registration lost after a graceful stop (%v): %+v", sig, regs)
		}
	}
}

// TestStatus: status --json shows the running server, its listeners and
// the counts; after a stop it says stopped.
func TestStatus(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "goodpass-2001")
	s.AddExt("2002", "goodpass-2002")
	reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "goodpass-2001", Expires: 3600})

	type listener struct{ Protocol, Address, State string }
	var st struct {
		State         string `json:"state"`
		PID           int    `json:"pid"`
		Version       string `json:"version"`
		DataDir       string `json:"data_dir"`
		DefaultDomain string `json:"default_domain"`
		UptimeS       *int64 `json:"uptime_s"`
		Domains       int    `json:"domains"`
		Extensions    int    `json:"extensions"`
		Registrations int    `json:"registrations"`
		Profiles      []struct {
			Name      string     `json:"name"`
			State     string     `json:"state"`
			Listeners []listener `json:"listeners"`
		} `json:"profiles"`
	}
	s.JSON(&st, "status")
	if st.State != "running" || st.PID != s.cmd.Process.Pid || st.DefaultDomain != "127.0.0.1" || st.UptimeS == nil ||
		st.Extensions != 2 || st.Registrations != 1 || st.Domains < 1 || st.Version == "" || st.DataDir != s.Data {
		t.Fatalf("status --json: %+v", st)
	}
	if len(st.Profiles) != 1 || st.Profiles[0].State != "RUNNING" {
		t.Fatalf("status --json profiles: %+v", st.Profiles)
	}
	got := st.Profiles[0].Listeners
	want := []listener{{"udp", s.Addr, "listening"}, {"tcp", s.Addr, "listening"},
		{"tls", s.ListenerAddr("tls"), "listening"}, {"wss", s.ListenerAddr("wss"), "listening"}} // TLS and WSS are on by default
	if !slices.Equal(got, want) {
		t.Fatalf("status --json listeners: got %+v, want %+v", got, want)
	}
	text := s.CLI("status")
	for _, w := range []string{"running (pid " + strconv.Itoa(st.PID), "extensions:", "registrations:", s.Addr} {
		if !strings.Contains(text, w) {
			t.Errorf("status text lacks %q:\n%s", w, text)
		}
	}
	s.Stop()
	s.JSON(&st, "status")
	if st.State != "stopped" || st.Registrations != 1 {
		t.Fatalf("status --json after stop: %+v", st)
	}
}

// TestServeConfigAndEnv: --config FILE.json sets the same options as the
// flags; SWITCHBOARD_DATA is the default data directory; on a fresh data
// directory the default domain is the host's primary IPv4 address.
func TestServeConfigAndEnv(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "switchboard.json")
	if err := os.WriteFile(cfg, []byte(`{"min_expires": 120, "max_expires": 900, "default_expires": 600, "nonce_lifetime": "30s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := Start(t, "", "--config", cfg)
	s.AddExt("2001", "goodpass-2001")
	rs := reg(t, s, "reg-brief.xml", regCall{User: "2001", Password: "goodpass-2001", Expires: 90})
	if got := rs[len(rs)-1].Get("Min-Expires"); !slices.Equal(got, []string{"120"}) {
		t.Fatalf("min_expires from the config file: want Min-Expires 120, got %q", got)
	}

	// A read command creates nothing (TestReadCommandsCreateNothing), so an
	// edit makes the database first.
	data := filepath.Join(t.TempDir(), "envdata")
	add := exec.Command(Binary(t), "ext", "add", "2001")
	add.Env = ChildEnv("SWITCHBOARD_DATA=" + data)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ext add with SWITCHBOARD_DATA: %v\n%s", err, out)
	}
	cmd := exec.Command(Binary(t), "domain", "list", "--json")
	cmd.Env = ChildEnv("SWITCHBOARD_DATA=" + data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("domain list with SWITCHBOARD_DATA: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "switchboard.db")); err != nil {
		t.Fatalf("SWITCHBOARD_DATA not used as the data directory: %v", err)
	}
	var doms []struct {
		Name    string `json:"name"`
		Default bool   `json:"default"`
	}
	if err := json.Unmarshal(out, &doms); err != nil || len(doms) != 1 || !doms[0].Default || doms[0].Name != config.PrimaryIPv4() {
		t.Fatalf("fresh data directory: want the primary IPv4 %s as the default domain, got %s", config.PrimaryIPv4(), out)
	}
}

// TestCLIImport100k: 100,000 rows import in one transaction within seconds.
// Under the race detector SQLite runs many times slower, so the race run
// imports 5,000 rows (same path, same checks); the plain run
// (go test ./test/e2e/) and BenchmarkImport100k in internal/cli measure the
// full 100,000.
//
// Serial: it asserts how long the import takes.
func TestCLIImport100k(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	rows, limit := 100_000, 20*time.Second
	if raceEnabled {
		rows, limit = 5_000, 45*time.Second
	}
	var b strings.Builder
	b.WriteString("extension,password,name\n")
	for i := range rows {
		fmt.Fprintf(&b, "%d,pw-%d-secret,User %d\n", 100000+i, i, i)
	}
	file := filepath.Join(t.TempDir(), "big.csv")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	start := time.Now()
	out, errOut, code := RunCLI(t, data, "", "ext", "import", file)
	took := time.Since(start)
	if code != 0 || strings.TrimSpace(out) != fmt.Sprintf("imported %d extension(s)", rows) {
		t.Fatalf("import: exit %d %q %q", code, out, errOut)
	}
	t.Logf("imported %d extensions in %s (race detector: %v)", rows, took.Round(time.Millisecond), raceEnabled)
	if took > limit {
		t.Fatalf("import of %d rows took %s, over %s", rows, took, limit)
	}
	out, _, _ = RunCLI(t, data, "", "status", "--json")
	if !strings.Contains(out, fmt.Sprintf(`"extensions": %d`, rows)) {
		t.Fatalf("status after import: %s", out)
	}
}

// TestCLIConsistency: the binary's command line is uniform: one alias set
// for subcommands, did-you-mean for mistyped ones, --flag in help, a clear
// line for `--enabled false`, old export columns and yes/no accepted by
// import, an unknown --cause rejected, no arguments print the help.
func TestCLIConsistency(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	run := func(stdin string, args ...string) (string, string, int) { return RunCLI(t, data, stdin, args...) }
	ok := func(args ...string) string {
		t.Helper()
		o, e, code := run("", args...)
		if code != 0 {
			t.Fatalf("%v: exit %d, %q %q", args, code, o, e)
		}
		return o
	}
	ok("ext", "add", "2004", "--password", "goodpass-2004")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ext", "set", "2004", "--enabled", "false"}, "--enabled takes no separate value: write --enabled=false"},
		{[]string{"ext", "delet", "2004"}, "did you mean `switchboard ext rm`?"},
		{[]string{"acl", "shwo", "x"}, "did you mean `switchboard acl show`?"},
		{[]string{"journal", "--cause", "nosuchcause"}, `--cause "nosuchcause" is unknown: use one of registered,`},
		{[]string{"ext", "show", "2004", "--bogus"}, "unknown flag --bogus"},
	} {
		o, e, code := run("", c.args...)
		oneLineError(t, o, e, code, c.want)
	}
	if help := ok("ext", "set", "--help"); !strings.Contains(help, "  --max-registrations N ") || strings.Contains(help, "(default 5)") ||
		strings.Contains(help, "\n  -data") {
		t.Errorf("ext set --help:\n%s", help)
	}
	if _, e, code := runArgs(t); code != 2 || !strings.Contains(e, "\n  journal ") {
		t.Errorf("no arguments: exit %d, stderr %q", code, e)
	}
	o, e, code := run("extension,password,cid_number,call_timeout,enabled\n3001,goodpass-3001,555,45,no\n", "ext", "import", "-")
	if code != 0 {
		t.Fatalf("import of old column names: exit %d %q %q", code, o, e)
	}
	var shown map[string]any
	if err := json.Unmarshal([]byte(ok("ext", "get", "3001", "--json")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown["caller_id_number"] != "555" || shown["call_timeout_s"] != 45.0 || shown["enabled"] != false {
		t.Fatalf("ext get 3001 after import: %v", shown)
	}
	if head, _, _ := strings.Cut(ok("ext", "export"), "\n"); !strings.Contains(head, ",caller_id_number,") || !strings.Contains(head, ",call_timeout_s,") {
		t.Errorf("export header %q does not use the names of ext show", head)
	}
	for _, rm := range []string{"delete", "remove", "del"} {
		ok("ext", "add", "2005", "--password", "goodpass-2005")
		ok("ext", rm, "2005")
	}
	if list := ok("ext", "ls"); strings.Contains(list, "2005") || !strings.Contains(list, "2004") {
		t.Errorf("ext ls after rm aliases:\n%s", list)
	}
}

// TestJournalFollowAligned: `journal --follow` rows printed after the
// first batch line up under the header the first batch sized, even when
// that batch held wider values (a long domain) than the new rows.
func TestJournalFollowAligned(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	long := "a-rather-long-tenant-name.example.test"
	s.CLI("domain", "add", long)
	s.AddExt("2001", "goodpass-2001")
	s.AddExt("2001", "goodpass-long", "--domain", long)
	reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "goodpass-long", Domain: long, Expires: 3600})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), "journal", "--follow", "--kind", "register", "--data", s.Data)
	cmd.Env = ChildEnv("SWITCHBOARD_DATA=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("journal --follow ended before %s", what)
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatalf("journal --follow printed no %s within 10 s", what)
		}
		return ""
	}
	header := next("header")
	var first []string
	for len(first) == 0 || !strings.Contains(first[len(first)-1], "registered") {
		first = append(first, next("first batch"))
	}
	// The first batch is out, so the follower has read the journal's end:
	// a registration now is a new batch.
	reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "goodpass-2001", Expires: 3600})
	var later string
	for !strings.Contains(later, "registered") {
		later = next("new row")
	}
	for _, col := range []string{"SOURCE", "TRANSPORT", "USER-AGENT"} {
		at := strings.Index(header, col)
		for _, l := range append(first, later) {
			if at >= len(l) || l[at-1] != ' ' || l[at] == ' ' {
				t.Fatalf("column %s does not line up:\n%s\n%s\n%s", col, header, strings.Join(first, "\n"), later)
			}
		}
	}
}
