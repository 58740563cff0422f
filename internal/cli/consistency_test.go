package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// run runs a command line in-process, as main does, on data.
func run(t *testing.T, data, stdin string, args ...string) (stdout string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut}
	if data != "" {
		args = append(args, "--data", data)
	}
	err = Dispatch(context.Background(), env, args)
	return out.String(), err
}

// mustRun is run that fails the test on an error.
func mustRun(t *testing.T, data string, args ...string) string {
	t.Helper()
	out, err := run(t, data, "", args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out
}

// wantUsage asserts err is a one-line usage error containing want.
func wantUsage(t *testing.T, args []string, err error, want string) {
	t.Helper()
	var ue *UsageError
	if !errors.As(err, &ue) {
		t.Fatalf("%v: want a usage error containing %q, got %v", args, want, err)
	}
	if !strings.Contains(ue.Msg, want) || strings.Contains(ue.Msg, "\n") {
		t.Fatalf("%v: want one line containing %q, got %q", args, want, ue.Msg)
	}
}

// TestHelpGolden: the top-level help comes from the command table and
// lists every command; command help writes flags as --flag (one dash only
// for one-letter flags), aligned, and ext set shows no default it does not
// apply. Regenerate with: go test ./internal/cli -run TestHelpGolden -update
func TestHelpGolden(t *testing.T) {
	t.Setenv("SWITCHBOARD_DATA", "")
	for name, args := range map[string][]string{
		"top":      {"--help"},
		"ext-add":  {"ext", "add", "--help"},
		"ext-set":  {"ext", "set", "--help"},
		"ban":      {"ban", "--help"},
		"journal":  {"journal", "--help"},
		"calls":    {"calls", "--help"},
		"ext-list": {"ext", "list", "--help"},
		"trace":    {"trace", "--help"},
		"serve":    {"serve", "--help"},
		"admin":    {"admin", "--help"},
	} {
		out := mustRun(t, "", args...)
		golden := filepath.Join("testdata", "help-"+name+".golden")
		if *update {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%s (run with -update to create it): %v", golden, err)
		}
		if out != string(want) {
			t.Errorf("%v: help differs from %s (run with -update if intended):\n%s", args, golden, out)
		}
		if m := regexp.MustCompile(`(?m)^\s+-[a-z][a-z-]+`).FindString(out); m != "" {
			t.Errorf("%v: Go-style single-dash flag %q in help:\n%s", args, m, out)
		}
	}
	top := mustRun(t, "", "help")
	for _, c := range commands() {
		if !strings.Contains(top, "\n  "+c.name+" ") {
			t.Errorf("top-level help misses %s:\n%s", c.name, top)
		}
	}
	set := mustRun(t, "", "ext", "set", "--help")
	for _, l := range strings.Split(set, "\n") {
		if strings.Contains(l, "(default ") && !strings.HasPrefix(strings.TrimSpace(l), "--data ") {
			t.Errorf("ext set --help shows a default set does not apply: %q", l)
		}
	}
	if add := mustRun(t, "", "ext", "add", "--help"); !strings.Contains(add, "(default 30)") || !strings.Contains(add, "(default true)") {
		t.Errorf("ext add --help lost the defaults add applies:\n%s", add)
	}
}

// TestSubcommandAliases: every command with subcommands takes the same
// aliases: ls = list, get = show, del = delete = remove = rm; top-level
// plurals name their command.
func TestSubcommandAliases(t *testing.T) {
	data := t.TempDir()
	mustRun(t, data, "domain", "add", "example.test")
	mustRun(t, data, "acl", "add", "office")
	for _, rm := range []string{"rm", "del", "delete", "remove"} {
		mustRun(t, data, "ext", "add", "2001", "--password", "goodpass-2001")
		for _, list := range []string{"list", "ls"} {
			if out := mustRun(t, data, "ext", list); !strings.Contains(out, "2001") {
				t.Fatalf("ext %s: %q", list, out)
			}
		}
		for _, show := range []string{"show", "get"} {
			if out := mustRun(t, data, "ext", show, "2001"); !strings.Contains(out, "2001") {
				t.Fatalf("ext %s: %q", show, out)
			}
		}
		mustRun(t, data, "ext", rm, "2001")
		mustRun(t, data, "domain", "add", "t-"+rm+".test")
		mustRun(t, data, "domain", rm, "t-"+rm+".test")
		mustRun(t, data, "acl", "add", "l-"+rm)
		mustRun(t, data, "acl", rm, "l-"+rm)
		mustRun(t, data, "ban", "add", "203.0.113.7")
		mustRun(t, data, "ban", rm, "203.0.113.7")
	}
	mustRun(t, data, "ban", "add", "203.0.113.8")
	mustRun(t, data, "ban", "lift", "203.0.113.8") // ban's own alias stays
	for _, args := range [][]string{{"domain", "ls"}, {"acl", "ls"}, {"acl", "get", "office"}, {"ban", "ls"},
		{"profile", "ls"}, {"profile", "get"}, {"profile", "status"}, {"extensions", "ls"}, {"domains", "list"},
		{"reg", "ls"}, {"reg", "list"}, {"calls", "ls"}, {"calls", "list"}} {
		mustRun(t, data, args...)
	}
	if out := mustRun(t, data, "ext", "ls", "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("ext rm aliases left extensions: %s", out)
	}
}

// TestUnknownSubcommand: a mistyped subcommand gets one line with the
// nearest one, before any database is opened or created.
func TestUnknownSubcommand(t *testing.T) {
	data := filepath.Join(t.TempDir(), "nothing-here")
	for args, want := range map[string]string{
		"ext delet":       "did you mean `switchboard ext rm`?",
		"ext shwo":        "did you mean `switchboard ext show`?",
		"acl lsit":        "did you mean `switchboard acl list`?",
		"domain ad":       "did you mean `switchboard domain add`?",
		"ban lst":         "did you mean `switchboard ban list`?",
		"profile st":      "did you mean `switchboard profile set`?",
		"ext frobnicate":  "use add, list, show, set, passwd, rm, import or export",
		"acl frobnicate":  "unknown command `acl frobnicate`: use list, show, add, set, allow, deny, rm or test",
		"domain zzzzzzzz": "unknown command `domain zzzzzzzz`: use add, list, rm, rename or default",
	} {
		a := strings.Fields(args)
		_, err := run(t, data, "", a...)
		wantUsage(t, a, err, want)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("a mistyped subcommand created %s (%v)", data, err)
	}
}

// TestBoolFlagSeparateValue: `ext set 2004 --enabled false` is a clear
// one-line mistake naming the form to write, not a confusing count of
// arguments; --enabled=false works.
func TestBoolFlagSeparateValue(t *testing.T) {
	data := t.TempDir()
	mustRun(t, data, "ext", "add", "2004", "--password", "goodpass-2004")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ext", "set", "2004", "--enabled", "false"}, "--enabled takes no separate value: write --enabled=false"},
		{[]string{"ext", "set", "2004", "--enabled", "no"}, "write --enabled=false"},
		{[]string{"ext", "set", "--enabled", "true", "2004"}, "write --enabled=true"},
		{[]string{"ext", "list", "--json", "true"}, "--json takes no separate value: write --json=true"},
		// Go's own flag errors name the flag as the help does, --name.
		{[]string{"ext", "show", "2004", "--bogus"}, "unknown flag --bogus (see: switchboard ext show --help)"},
		{[]string{"ext", "set", "2004", "--max-registrations=x"}, `invalid value "x" for flag --max-registrations`},
	} {
		_, err := run(t, data, "", c.args...)
		wantUsage(t, c.args, err, c.want)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, data, "ext", "set", "2004", "--enabled=false", "--json")), &v); err != nil || v["enabled"] != false {
		t.Fatalf("--enabled=false: %v %v", v, err)
	}
}

// TestExtVocabulary: ext show, ext list, ext export (CSV header and JSON)
// and ext import use one set of names; import still takes the column names
// of older exports and enabled as yes/no, true/false or 1/0.
func TestExtVocabulary(t *testing.T) {
	data := t.TempDir()
	csv := "extension,password,cid_number,call_timeout,enabled\n" +
		"3001,goodpass-3001,555,45,yes\n3002,goodpass-3002,,20,no\n3003,goodpass-3003,,,1\n3004,goodpass-3004,,,0\n" +
		"3005,goodpass-3005,,,False\n3006,goodpass-3006,,,TRUE\n"
	if _, err := run(t, data, csv, "ext", "import", "-"); err != nil {
		t.Fatal(err)
	}
	var show map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, data, "ext", "show", "3001", "--json")), &show); err != nil {
		t.Fatal(err)
	}
	if show["caller_id_number"] != "555" || show["call_timeout_s"] != 45.0 || show["enabled"] != true {
		t.Fatalf("old column names did not import: %v", show)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, data, "ext", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	enabled := map[string]bool{}
	for _, e := range list {
		enabled[e["extension"].(string)] = e["enabled"].(bool)
	}
	if want := map[string]bool{"3001": true, "3002": false, "3003": true, "3004": false, "3005": false, "3006": true}; !mapsEqual(enabled, want) {
		t.Fatalf("enabled column: got %v, want %v", enabled, want)
	}
	var exp []map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, data, "ext", "export", "--json")), &exp); err != nil {
		t.Fatal(err)
	}
	header := strings.Split(strings.SplitN(mustRun(t, data, "ext", "export"), "\n", 2)[0], ",")
	for k := range exp[0] {
		if _, inShow := show[k]; !inShow && !strings.HasPrefix(k, "ha1_") {
			t.Errorf("ext export --json key %q is not a key of ext show --json (%v)", k, keys(show))
		}
		if !slices.Contains(header, k) {
			t.Errorf("ext export --json key %q is not a CSV column (%v)", k, header)
		}
	}
	for _, c := range header {
		if _, inShow := show[c]; !inShow && c != "password" && !strings.HasPrefix(c, "ha1_") {
			t.Errorf("CSV column %q is not a key of ext show --json (%v)", c, keys(show))
		}
	}
	// An export in today's names imports unchanged into a fresh directory
	// (whose default domain is the same host address).
	fresh := t.TempDir()
	if _, err := run(t, fresh, mustRun(t, data, "ext", "export", "--with-hashes"), "ext", "import", "-"); err != nil {
		t.Fatalf("re-import of an export: %v", err)
	}
	_, err := run(t, t.TempDir(), "extension,password,enabled\n3001,goodpass-3001,maybe\n", "ext", "import", "-")
	wantUsage(t, []string{"import"}, err, `enabled must be yes or no (or true/false, 1/0), not "maybe"`)
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// textTime is the one time format of text output.
var textTime = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`)

// TestTextTimes: text output writes times as local "2006-01-02 15:04:05"
// (ban list, ban add, ext show), JSON as RFC 3339.
func TestTextTimes(t *testing.T) {
	data := t.TempDir()
	mustRun(t, data, "ext", "add", "2001", "--password", "goodpass-2001")
	for _, args := range [][]string{{"ban", "add", "203.0.113.9", "--for", "2h"}, {"ban", "list"}, {"ext", "show", "2001"}} {
		out := mustRun(t, data, args...)
		if !textTime.MatchString(out) || regexp.MustCompile(`\dT\d\d:\d\d:\d\d`).MatchString(out) {
			t.Errorf("%v: want local times like 2026-01-15 14:02:05, got:\n%s", args, out)
		}
	}
	var bans []map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, data, "ban", "list", "--json")), &bans); err != nil || len(bans) != 1 {
		t.Fatalf("ban list --json: %v %v", bans, err)
	}
	if _, err := time.Parse(time.RFC3339, bans[0]["since"].(string)); err != nil {
		t.Errorf("ban list --json since is not RFC 3339: %v", err)
	}
}

// TestJournalCause: --cause is checked like --kind: an unknown cause is
// one line listing the causes (with the nearest one), a known one in any
// case is accepted.
func TestJournalCause(t *testing.T) {
	data := t.TempDir()
	mustRun(t, data, "ext", "add", "2001", "--password", "goodpass-2001")
	_, err := run(t, data, "", "journal", "--cause", "nosuchcause")
	wantUsage(t, nil, err, `--cause "nosuchcause" is unknown: use one of registered, unregistered`)
	wantUsage(t, nil, err, "NORMAL_CLEARING")
	_, err = run(t, data, "", "journal", "--cause", "wrong_pasword")
	wantUsage(t, nil, err, "did you mean --cause wrong_password?")
	for _, c := range []string{"wrong_password", "WRONG_PASSWORD", "user_not_registered"} {
		if out := mustRun(t, data, "journal", "--cause", c); !strings.Contains(out, "no journal events match") {
			t.Errorf("--cause %s: %q", c, out)
		}
	}
}

// TestEventTableFollowAligned: successive --follow batches keep the
// columns of the first one, so every row lines up under the header even
// when the first batch had wider values than a later one.
func TestEventTableFollowAligned(t *testing.T) {
	now := time.Date(2026, 1, 15, 14, 2, 5, 0, time.Local)
	ev := func(ext, dom, src string) journal.Event {
		return journal.Event{Time: now, Kind: journal.KindRegister, Cause: "registered", Status: 200, Extension: ext,
			Domain: dom, Source: src, Transport: "udp", UserAgent: "Yealink SIP-T46S 66.86.0.15", Detail: "ok"}
	}
	var b bytes.Buffer
	tab := &eventTable{}
	if err := tab.write(&b, []journal.Event{ev("2001", "pbx.a-long-domain.example.com", "[2001:db8::1234:5678]:50600")}, true); err != nil {
		t.Fatal(err)
	}
	if err := tab.write(&b, []journal.Event{ev("2002", "10.0.0.1", "10.0.0.2:5060")}, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 rows:\n%s", b.String())
	}
	for _, col := range []string{"SOURCE", "TRANSPORT", "DETAIL"} {
		at := strings.Index(lines[0], col)
		for _, l := range lines[1:] {
			if at >= len(l) || l[at-1] != ' ' || l[at-2] != ' ' || l[at] == ' ' {
				t.Fatalf("column %s does not line up:\n%s", col, b.String())
			}
		}
	}
}

// TestRegPingTime: a binding never pinged shows Ping-Time "-" (not 0.00 ms)
// and "pinged": false in JSON; a pinged one its round-trip time.
func TestRegPingTime(t *testing.T) {
	data := t.TempDir()
	mustRun(t, data, "ext", "add", "2001", "--password", "goodpass-2001")
	mustRun(t, data, "ext", "add", "2002", "--password", "goodpass-2002")
	ctx := context.Background()
	db, err := openExisting(ctx, data, "")
	if err != nil {
		t.Fatal(err)
	}
	dom, err := defaultDomain(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	bind := func(ext, port string) store.Binding {
		return store.Binding{Domain: dom, Extension: ext, Contact: "sip:" + ext + "@127.0.0.1:" + port, Source: "127.0.0.1:" + port,
			Transport: "udp", CallID: "c-" + ext, RegisteredAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	pinged := bind("2002", "5072")
	pinged.PingStatus, pinged.PingRTT, pinged.PingAt = "reachable", 12.345, now
	if err := db.ApplyBindings(ctx, []store.Binding{bind("2001", "5071"), pinged}, nil); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if out := mustRun(t, data, "reg", "2001"); !regexp.MustCompile(`(?m)^Ping-Time:\s+-$`).MatchString(out) || strings.Contains(out, "0.00 ms") {
		t.Errorf("never pinged: want Ping-Time -, got:\n%s", out)
	}
	if out := mustRun(t, data, "reg", "2002"); !strings.Contains(out, "12.35 ms") {
		t.Errorf("pinged: want its RTT, got:\n%s", out)
	}
	var regs []map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, data, "reg", "--json")), &regs); err != nil || len(regs) != 2 {
		t.Fatalf("reg --json: %v %v", regs, err)
	}
	for _, r := range regs {
		if want := r["extension"] == "2002"; r["pinged"] != want || (r["ping_rtt_ms"] == 0.0) == want {
			t.Errorf("reg --json: %v", r)
		}
	}
}

// TestPrintFlags: the flag printer writes --name with a placeholder,
// aligned; one-letter flags get one dash; zero defaults are left out and
// durations read as people write them.
func TestPrintFlags(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Duration("every", 30*time.Second, "how often")
	fs.Duration("window", time.Minute, "window")
	fs.Duration("ban-for", time.Hour, "ban length")
	fs.Duration("off", 0, "zero duration")
	fs.Bool("f", false, "short for --follow")
	fs.Bool("enabled", true, "on or off")
	fs.String("reason", "banned by the operator", "why")
	fs.String("file", "", "read `FILE`")
	fs.Int("limit", 0, "at most")
	var b bytes.Buffer
	printFlags(&b, fs)
	want := `  --ban-for DURATION  ban length (default 1h)
  --enabled           on or off (default true)
  --every DURATION    how often (default 30s)
  -f                  short for --follow
  --file FILE         read FILE
  --limit N           at most
  --off DURATION      zero duration
  --reason TEXT       why (default "banned by the operator")
  --window DURATION   window (default 1m)
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
