package tlscert

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSelfSigned: the first Open creates an ECDSA P-256 certificate for the
// names (plus loopback) with a private key file of mode 0600; a second Open
// keeps it.
func TestSelfSigned(t *testing.T) {
	dir := t.TempDir()
	m, created, err := Open(dir, "", "", []string{"pbx.example.com", "192.0.2.10", "0.0.0.0"}, nil)
	if err != nil || !created {
		t.Fatalf("Open: created=%v err=%v", created, err)
	}
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"pbx.example.com", "192.0.2.10", "127.0.0.1", "::1"} {
		if !info.Covers(n) {
			t.Errorf("certificate does not cover %s: %v", n, info.Names)
		}
	}
	if info.Covers("0.0.0.0") || info.Covers("other.example.com") {
		t.Errorf("certificate covers too much: %v", info.Names)
	}
	if !info.SelfSigned || len(strings.Split(info.Fingerprint, ":")) != 32 {
		t.Errorf("info: %+v", info)
	}
	st, err := os.Stat(filepath.Join(dir, SelfKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st.Mode(), err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, SelfCertFile))
	blk, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || cert.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("certificate: %v %v", cert.PublicKeyAlgorithm, err)
	}
	m2, created, err := Open(dir, "", "", []string{"pbx.example.com"}, nil)
	if err != nil || created {
		t.Fatalf("second Open: created=%v err=%v", created, err)
	}
	if i2, _ := m2.Info(); i2.Fingerprint != info.Fingerprint {
		t.Error("second Open replaced the certificate")
	}
}

// TestReload: a certificate replaced on disk is noticed (Changed) and
// served after Reload; a broken file leaves the old one in force and
// reports the error.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := CreateSelfSigned(cert, key, []string{"a.example.com"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	m, _, err := Open(dir, cert, key, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := m.GetCertificate(nil)
	if m.Changed() {
		t.Fatal("Changed right after Open")
	}
	time.Sleep(10 * time.Millisecond) // a later mtime
	if err := CreateSelfSigned(cert, key, []string{"b.example.com"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !m.Changed() {
		t.Fatal("Changed = false after the files were replaced")
	}
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	after, _ := m.GetCertificate(nil)
	if string(after.Certificate[0]) == string(before.Certificate[0]) {
		t.Fatal("GetCertificate serves the old certificate after Reload")
	}
	if info, _ := m.Info(); !info.Covers("b.example.com") {
		t.Errorf("names after reload: %v", info.Names)
	}
	if err := os.WriteFile(cert, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(); err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	still, _ := m.GetCertificate(nil)
	if still != after {
		t.Error("a failed reload replaced the certificate in force")
	}
	if _, err := m.Info(); err == nil {
		t.Error("Info does not report the failed reload")
	}
	if _, _, err := Open(dir, cert, "", nil, nil); err == nil {
		t.Error("Open with a certificate and no key succeeded")
	}
}
