package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/digest"
)

// runExt runs `switchboard ext ARGS --data dir` in-process.
func runExt(t *testing.T, dir, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	env := Env{Stdin: strings.NewReader(stdin), Stdout: &o, Stderr: &e}
	err = Ext(context.Background(), env, append(args, "--data", dir))
	return o.String(), e.String(), err
}

func TestExtExportSecrets(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	if _, _, err := runExt(t, dir, "", "add", "2001", "--password", "a long secret 1"); err != nil {
		t.Fatal(err)
	}
	// Standard output: no hashes unless asked.
	out, _, err := runExt(t, dir, "", "export")
	if err != nil {
		t.Fatal(err)
	}
	head := strings.SplitN(out, "\n", 2)[0]
	if head != "extension,password,name,caller_id_number,description,enabled,max_registrations,call_timeout_s,acl,domain" ||
		strings.Count(out, "\n") != 2 || strings.Contains(out, "ha1") {
		t.Fatalf("export without --with-hashes:\n%s", out)
	}
	out, _, _ = runExt(t, dir, "", "export", "--json")
	if strings.Contains(out, "ha1") {
		t.Fatalf("export --json without --with-hashes:\n%s", out)
	}
	out, _, _ = runExt(t, dir, "", "export", "--with-hashes")
	if !strings.HasSuffix(strings.SplitN(out, "\n", 2)[0], ",ha1_md5,ha1_sha256,realm") {
		t.Fatalf("export --with-hashes:\n%s", out)
	}
	// A file: 0600, never overwritten without --force.
	file := filepath.Join(t.TempDir(), "exts.csv")
	if _, msg, err := runExt(t, dir, "", "export", file, "--with-hashes"); err != nil || !strings.Contains(msg, "password-equivalent") {
		t.Fatalf("export to a file: %v %q", err, msg)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("export file mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	first, _ := os.ReadFile(file)
	_, _, err = runExt(t, dir, "", "export", file)
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("export over an existing file: %v", err)
	}
	if now, _ := os.ReadFile(file); !bytes.Equal(now, first) {
		t.Fatal("existing file changed without --force")
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runExt(t, dir, "", "export", file, "--force"); err != nil {
		t.Fatal(err)
	}
	now, _ := os.ReadFile(file)
	st, _ = os.Stat(file)
	if bytes.Contains(now, []byte("ha1")) || st.Mode().Perm() != 0o600 {
		t.Fatalf("--force: mode %v\n%s", st.Mode().Perm(), now)
	}
	// The hashes import back; the export without them asks for passwords.
	dir2 := t.TempDir()
	if _, _, err := runExt(t, dir2, string(first), "import", "-"); err != nil {
		t.Fatalf("import of an export with hashes: %v", err)
	}
	if _, _, err := runExt(t, t.TempDir(), string(now), "import", "-"); err == nil || !strings.Contains(err.Error(), "no password") {
		t.Fatalf("import of an export without hashes: %v", err)
	}
}

func TestPasswordFromStdin(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"a long secret 1\n", "a long secret 1", ""},
		{"a long secret 2\r\nignored\n", "a long secret 2", ""},
		{"no line break at all", "no line break at all", ""},
		{"", "", "standard input is empty"},
	} {
		pw, err := passwordArg(Env{Stdin: strings.NewReader(tc.in)}, "2001", "-")
		if pw != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: %q, %v; want %q, %q", tc.in, pw, err, tc.want, tc.err)
		}
	}
	if pw, err := passwordArg(Env{}, "2001", "literal-password"); pw != "literal-password" || err != nil {
		t.Errorf("a literal password: %q %v", pw, err)
	}
	// ext add and ext set take it.
	dir := t.TempDir()
	if _, _, err := runExt(t, dir, "a long secret 3\n", "add", "2002", "--password", "-"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runExt(t, dir, "a long secret 4\n", "set", "2002", "--password", "-"); err != nil {
		t.Fatal(err)
	}
	out, _, _ := runExt(t, dir, "", "export", "--with-hashes")
	if !strings.Contains(out, digest.HA1(digest.MD5, "2002", domainOf(t, out), "a long secret 4")) {
		t.Fatalf("the password read from stdin is not the extension's:\n%s", out)
	}
}

// domainOf returns the domain column of the first row of an export.
func domainOf(t *testing.T, csv string) string {
	t.Helper()
	rows := strings.Split(strings.TrimSpace(csv), "\n")
	if len(rows) < 2 {
		t.Fatalf("no rows:\n%s", csv)
	}
	return strings.Split(rows[1], ",")[9]
}
