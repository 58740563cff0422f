package config

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serveOnly are serve flags that are not settings (they name where the
// settings come from).
var serveOnly = map[string]bool{"config": true}

// TestREADMEServeTable: the README's serve flags table lists exactly the
// settings (and --config), each with the default the flag has: the
// default cell's first `code` span is the value (durations compared as
// durations), or the cell is the setting's DefaultDoc.
func TestREADMEServeTable(t *testing.T) {
	t.Setenv("SWITCHBOARD_DATA", "")
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "`switchboard serve` flags")
	if i < 0 {
		t.Fatal("README: no \"`switchboard serve` flags\" table")
	}
	rowRE := regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)[^`]*` *\\|([^|]*)\\|")
	rows := map[string]string{}
	var order []string
	for _, line := range strings.Split(text[i:], "\n")[1:] {
		if strings.HasPrefix(line, "#") {
			break
		}
		m := rowRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if _, dup := rows[m[1]]; dup {
			t.Errorf("README lists --%s twice", m[1])
		}
		rows[m[1]] = strings.TrimSpace(m[2])
		order = append(order, m[1])
	}
	def := Default()
	for _, s := range Settings() {
		cell, ok := rows[s.Name]
		if !ok {
			t.Errorf("README serve table misses --%s", s.Name)
			continue
		}
		delete(rows, s.Name)
		if err := sameDefault(s, &def, cell); err != nil {
			t.Errorf("README serve table, --%s: %v", s.Name, err)
		}
	}
	for name := range rows {
		if !serveOnly[name] {
			t.Errorf("README serve table lists --%s, which is no serve setting", name)
		}
	}
	if len(order) == 0 {
		t.Fatal("README serve table: no rows parsed")
	}
}

var codeSpan = regexp.MustCompile("`([^`]*)`")

// sameDefault checks the README's default cell against s's default in def.
func sameDefault(s Setting, def *Config, cell string) error {
	m := codeSpan.FindStringSubmatch(cell)
	if m == nil {
		if cell != s.DefaultDoc {
			return fmt.Errorf("default %q, want %q", cell, s.DefaultDoc)
		}
		if p, ok := s.field(def).(*string); cell == "" && (!ok || *p != "") {
			return fmt.Errorf("no default written; the flag's is %v", reflect.ValueOf(s.field(def)).Elem())
		}
		return nil
	}
	if s.DefaultDoc != "" {
		return fmt.Errorf("default %q, want %q", cell, s.DefaultDoc)
	}
	v := m[1]
	switch p := s.field(def).(type) {
	case *string:
		if v != *p {
			return fmt.Errorf("default %q, the flag's is %q", v, *p)
		}
	case *int:
		if n, err := strconv.Atoi(v); err != nil || n != *p {
			return fmt.Errorf("default %q, the flag's is %d", v, *p)
		}
	case *bool:
		if x, err := strconv.ParseBool(v); err != nil || x != *p {
			return fmt.Errorf("default %q, the flag's is %v", v, *p)
		}
	case *time.Duration:
		if d, err := time.ParseDuration(v); err != nil || d != *p {
			return fmt.Errorf("default %q, the flag's is %v", v, *p)
		}
	}
	return nil
}

// TestSettingsDefineFlags: every setting is a flag whose default is the
// Config default and which sets its field; names are unique.
func TestSettingsDefineFlags(t *testing.T) {
	t.Setenv("SWITCHBOARD_DATA", "")
	c := Default()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	c.DefineFlags(fs)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if len(names) != len(Settings()) {
		t.Fatalf("%d flags for %d settings", len(names), len(Settings()))
	}
	if err := fs.Parse([]string{"--min-expires", "90", "--ban-for", "2h", "--journal=false", "--sip", "127.0.0.1:5070"}); err != nil {
		t.Fatal(err)
	}
	if c.MinExpires != 90 || c.BanFor != 2*time.Hour || c.Journal || c.SIP != "127.0.0.1:5070" || c.MaxExpires != 7200 {
		t.Fatalf("flags did not set their fields: %+v", c)
	}
}

// TestLoadFile: the config file's keys are the flag names in snake_case;
// durations are Go durations or seconds; settings given on the command
// line keep their value; unknown keys and wrong types are errors naming
// the file and the key.
func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	n := 0
	write := func(body string) string {
		n++
		p := filepath.Join(dir, strconv.Itoa(n)+".json")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := Default()
	c.MaxExpires = 1000 // given on the command line
	p := write(`{"min_expires": 120, "max_expires": 900, "nonce_lifetime": "30s", "ban_for": 90, "journal": false, "log_level": "warn", "tcp_max_per_ip": 0}`)
	if err := c.LoadFile(p, map[string]bool{"max-expires": true}); err != nil {
		t.Fatal(err)
	}
	if c.MinExpires != 120 || c.MaxExpires != 1000 || c.NonceLifetime != 30*time.Second || c.BanFor != 90*time.Second ||
		c.Journal || c.LogLevel != "warn" || c.TCPMaxPerIP != 0 || c.DefaultExpires != 3600 {
		t.Fatalf("after LoadFile: %+v", c)
	}
	for body, want := range map[string]string{
		`{"min_expire": 1}`:        `unknown setting "min_expire"`,
		`{"min_expires": "60"}`:    "min_expires: want a whole number",
		`{"min_expires": 1.5}`:     "min_expires: want a whole number",
		`{"journal": "no"}`:        "journal: want true or false",
		`{"ban_for": "an hour"}`:   "ban_for: time: invalid duration",
		`{"ban_for": [1]}`:         "ban_for: want a duration",
		`{"sip": 5060}`:            "sip: want a string",
		`[1, 2]`:                   "config file",
		`{"min_expires": 1, "x":2`: "config file",
	} {
		p := write(body)
		c := Default()
		err := c.LoadFile(p, nil)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want one naming the file and %q", body, err, want)
		}
	}
	if err := c.LoadFile(filepath.Join(dir, "missing.json"), nil); err == nil || !strings.Contains(err.Error(), "config file") {
		t.Errorf("missing file: %v", err)
	}
	keys := make([]string, 0)
	for _, s := range Settings() {
		keys = append(keys, s.Key())
	}
	if !slices.Contains(keys, "digest_allow_rfc2069") || !slices.Contains(keys, "log_level") {
		t.Errorf("keys: %v", keys)
	}
}

// TestParseSize: sizes are written as GOMEMLIMIT writes them.
func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512MiB": 512 << 20, "1GiB": 1 << 30, "100": 100, "64KiB": 64 << 10, "2TiB": 2 << 40, "7B": 7} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1MiB", "1.5GiB", "12XB", "MiB", "512mb", "99999999999TiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
	c := Default()
	c.MemoryLimit = "lots"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--memory-limit") {
		t.Errorf("Validate: %v", err)
	}
}

// TestValidateMedia: the media relay flags are checked, each mistake in
// one line naming the flag.
func TestValidateMedia(t *testing.T) {
	for _, tc := range []struct {
		set  func(*Config)
		flag string // "" = valid
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { c.MediaRelay, c.RTPPorts, c.MediaIP = "always", "20000-20003", "203.0.113.10" }, ""},
		{func(c *Config) { c.MediaRelay = "sometimes" }, "--media-relay"},
		{func(c *Config) { c.RTPPorts = "16384" }, "--rtp-ports"},
		{func(c *Config) { c.RTPPorts = "0-99999" }, "--rtp-ports"},
		{func(c *Config) { c.RTPPorts = "20000-20001" }, "--rtp-ports"},
		{func(c *Config) { c.RTPPorts = "30000-20000" }, "--rtp-ports"},
		{func(c *Config) { c.MediaIP = "pbx.example.com" }, "--media-ip"},
		{func(c *Config) { c.MediaIP = "0.0.0.0" }, "--media-ip"},
		{func(c *Config) { c.MediaTimeout = 0 }, "--media-timeout"},
	} {
		c := Default()
		tc.set(&c)
		err := c.Validate()
		switch {
		case tc.flag == "" && err != nil:
			t.Errorf("valid config refused: %v", err)
		case tc.flag != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.flag) || strings.Contains(err.Error(), "\n")):
			t.Errorf("want a one-line error about %s, got %v", tc.flag, err)
		}
	}
}
