package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDomainRenameKeepsPasswords: a domain renamed while a phone is
// registered keeps its realm, so the phone's registration moves with it and
// its password keeps working; the default domain follows the rename and can
// be changed; a hash-only export imported where the realm differs is
// refused with the rows named, and accepted into a domain with that realm.
func TestDomainRenameKeepsPasswords(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "goodpass-2001")
	c := regCall{User: "2001", Password: "goodpass-2001", Expires: 3600, Port: FreeUDPPort(t)}
	reg(t, s, "reg-ok.xml", c)

	out := s.CLI("domain", "rename", "127.0.0.1", "pbx.test")
	if !strings.Contains(out, "renamed domain 127.0.0.1 to pbx.test; its realm stays 127.0.0.1") {
		t.Fatalf("domain rename: %q", out)
	}
	// The live registration moved with the domain.
	regs := s.Regs("2001")
	if len(regs) != 1 || regs[0].Domain != "pbx.test" {
		t.Fatalf("registrations after the rename: %+v", regs)
	}
	var doms []struct {
		Name, Realm string
		Default     bool
	}
	s.JSON(&doms, "domain", "list")
	if len(doms) != 1 || doms[0].Name != "pbx.test" || doms[0].Realm != "127.0.0.1" || !doms[0].Default {
		t.Fatalf("domain list after the rename: %+v", doms)
	}
	// The phone addresses the server by its IP (the default domain) and is
	// challenged in the kept realm: the password still works.
	reg(t, s, "reg-ok.xml", c)
	// ... and a new password is made for that realm too.
	s.CLI("ext", "set", "2001", "--password", "newpass-2001x")
	reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "newpass-2001x", Expires: 3600, Port: c.Port})

	// The default domain can be changed, live.
	s.CLI("domain", "add", "other.test")
	s.CLI("domain", "default", "other.test")
	if got := strings.TrimSpace(s.CLI("domain", "default")); got != "other.test" {
		t.Fatalf("domain default: %q", got)
	}
	var st struct {
		DefaultDomain string `json:"default_domain"`
	}
	s.JSON(&st, "status")
	if st.DefaultDomain != "other.test" {
		t.Fatalf("status default_domain %q", st.DefaultDomain)
	}
	// Requests to the server's address now belong to other.test, where 2001
	// does not exist.
	reg(t, s, "reg-fail.xml", regCall{User: "2001", Password: "newpass-2001x", Expires: 3600})
	s.CLI("domain", "default", "pbx.test")
	reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "newpass-2001x", Expires: 3600, Port: c.Port})

	// domain rm asks for --yes when extensions go with it.
	s.AddExt("3001", "goodpass-3001", "--domain", "other.test")
	if _, errOut, code := s.TryCLI("domain", "rm", "other.test"); code != 1 || !strings.Contains(errOut, "has 1 extension(s)") || !strings.Contains(errOut, "--yes") {
		t.Fatalf("domain rm without --yes: exit %d, %q", code, errOut)
	}
	s.CLI("domain", "rm", "other.test", "--yes")

	// Hash-only rows move only to a domain with their realm.
	export := filepath.Join(t.TempDir(), "exts.csv")
	s.CLI("ext", "export", export, "--with-hashes")
	b, _ := os.ReadFile(export)
	if !strings.Contains(string(b), ",pbx.test,") || !strings.HasSuffix(strings.TrimSpace(string(b)), ",127.0.0.1") {
		t.Fatalf("the export does not name domain and realm:\n%s", b)
	}
	fresh := t.TempDir()
	RunCLI(t, fresh, "", "domain", "add", "pbx.test")
	_, errOut, code := RunCLI(t, fresh, "", "ext", "import", export)
	if code != 1 || !strings.Contains(errOut, "line 2 (2001) carry password hashes made for realm 127.0.0.1, which cannot log in to domain pbx.test") {
		t.Fatalf("import into a domain of another realm: exit %d, %q", code, errOut)
	}
	// Rows without a realm or domain column cannot be placed at all.
	noRealm := filepath.Join(t.TempDir(), "norealm.csv")
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var cut []string
	for _, l := range lines {
		f := strings.Split(l, ",")
		cut = append(cut, strings.Join(append(append([]string{}, f[0]), f[10:12]...), ","))
	}
	os.WriteFile(noRealm, []byte(strings.Join(cut, "\n")+"\n"), 0o600)
	if _, errOut, code := RunCLI(t, fresh, "", "ext", "import", noRealm); code != 1 || !strings.Contains(errOut, "no realm or domain column") {
		t.Fatalf("import of hashes without realm: exit %d, %q (file %q)", code, errOut, cut)
	}
	other := t.TempDir()
	RunCLI(t, other, "", "domain", "add", "pbx.test", "--realm", "127.0.0.1")
	if out, errOut, code := RunCLI(t, other, "", "ext", "import", export); code != 0 {
		t.Fatalf("import into a domain with the hashes' realm: exit %d, %q %q", code, out, errOut)
	}
	o := Start(t, other, "--domain", "pbx.test")
	reg(t, o, "reg-ok.xml", regCall{User: "2001", Password: "newpass-2001x", Expires: 3600})

	// serve refuses a --domain that cannot be a domain, in one line.
	_, errOut, code = RunCLI(t, t.TempDir(), "", "serve", "--sip", "127.0.0.1:0", "--domain", "bad domain!")
	if code != 1 || !strings.Contains(errOut, `invalid domain name "bad domain!"`) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("serve --domain 'bad domain!': exit %d, %q", code, errOut)
	}
}
