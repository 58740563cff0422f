package e2e

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fileMode returns the permission bits of path.
func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// privateFiles are the data directory's secret-bearing files.
var privateFiles = []string{"switchboard.db", "switchboard.db-wal", "switchboard.db-shm", "secret.key"}

// TestSecretsDataDirPrivate: serve on a 0755 data directory leaves it 0700
// with its database files and key file 0600, saying so in one warning;
// files an earlier version left 0644 are tightened at the next start; and
// a signing key an earlier version kept in the database moves to
// secret.key (the same key) and out of the database.
//
// Serial: it sets the umask, which is the whole test process's: the
// children of every test running meanwhile would inherit it.
func TestSecretsDataDirPrivate(t *testing.T) {
	old := syscall.Umask(0o022) // the usual umask, whatever the test runner's
	defer syscall.Umask(old)
	data := t.TempDir()
	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}
	s := Start(t, data)
	s.AddExt("2001", "secret-2001-pw")
	checkPrivate := func() {
		t.Helper()
		if m := fileMode(t, data); m != 0o700 {
			t.Errorf("data directory %04o, want 0700", m)
		}
		for _, f := range privateFiles {
			if m := fileMode(t, filepath.Join(data, f)); m != 0o600 {
				t.Errorf("%s %04o, want 0600", f, m)
			}
		}
	}
	checkPrivate()
	logFrom := 0 // where the current run's log starts
	warnings := func() []string {
		var out []string
		for _, l := range strings.Split(s.Log()[logFrom:], "\n") {
			if strings.Contains(l, "made private") {
				out = append(out, l)
			}
		}
		return out
	}
	if w := warnings(); len(w) != 1 || !strings.Contains(w[0], "level=WARN") || !strings.Contains(w[0], data+" 0755->0700") {
		t.Fatalf("want one warning naming the directory 0755->0700, got %q\n%s", w, s.Log())
	}
	key, err := os.ReadFile(filepath.Join(data, "secret.key"))
	if err != nil || len(strings.TrimSpace(string(key))) != 64 {
		t.Fatalf("secret.key: %q %v", key, err)
	}
	s.Stop()

	// As an earlier version left it: files 0644, the key in meta.
	legacy := strings.Repeat("ab", 32)
	db := serverDB(t, s)
	if err := db.SetMeta(context.Background(), "nonce_key", legacy); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := os.Remove(filepath.Join(data, "secret.key")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"switchboard.db", "switchboard.db-wal", "switchboard.db-shm"} {
		if err := os.Chmod(filepath.Join(data, f), 0o644); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}
	logFrom = len(s.Log())
	s.Restart()
	checkPrivate()
	if w := warnings(); len(w) != 1 || !strings.Contains(w[0], "switchboard.db 0644->0600") {
		t.Fatalf("want one warning naming switchboard.db 0644->0600, got %q\n%s", w, s.Log())
	}
	if !strings.Contains(s.Log(), "signing key moved from the database") {
		t.Errorf("no word of the key's move:\n%s", s.Log())
	}
	if b, _ := os.ReadFile(filepath.Join(data, "secret.key")); strings.TrimSpace(string(b)) != legacy {
		t.Fatalf("secret.key holds %q, want the key the database held", b)
	}
	if _, ok, err := serverDB(t, s).Meta(context.Background(), "nonce_key"); ok || err != nil {
		t.Fatalf("the key is still in the database (%v)", err)
	}
	reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "secret-2001-pw", Expires: 60})
}

// TestExtAddPasswordStdin: `ext add --password -` takes the password from
// standard input (never in the process's arguments), and a phone registers
// with it.
func TestExtAddPasswordStdin(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	const pw = "piped-secret-2001" // SIPp's injection keyword takes no spaces
	if out, errOut, code := RunCLI(t, s.Data, pw+"\n", "ext", "add", "2001", "--password", "-"); code != 0 {
		t.Fatalf("ext add --password -: exit %d\n%s%s", code, out, errOut)
	}
	// 200: the line break that ended the input is not part of the password.
	reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: pw, Expires: 60})
	if _, errOut, code := RunCLI(t, s.Data, "", "ext", "add", "2002", "--password", "-"); code != 1 || !strings.Contains(errOut, "standard input is empty") {
		t.Fatalf("ext add --password - without input: exit %d, %q", code, errOut)
	}
}

// TestKeyRotate: `key rotate` writes a new key file; the running server
// keeps its key until it restarts (a nonce it issued stays good, also
// across a plain restart); after the restart that nonce gets a fresh
// challenge and the phone authenticates again.
func TestKeyRotate(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "secret-2001-pw")
	ph := newRawPhone(t, s, "2001", "secret-2001-pw")
	nonce := ph.challenge()
	ph.want(200, nonce)
	s.Stop()
	s.Restart()
	ph.want(200, nonce) // the key survives a restart

	before, _ := os.ReadFile(filepath.Join(s.Data, "secret.key"))
	out := s.CLI("key", "rotate")
	if !strings.Contains(out, "pid") || !strings.Contains(out, "restart") {
		t.Errorf("key rotate with a running server says:\n%s", out)
	}
	after, _ := os.ReadFile(filepath.Join(s.Data, "secret.key"))
	if string(after) == string(before) || len(strings.TrimSpace(string(after))) != 64 {
		t.Fatalf("key file %q after rotate (before %q)", after, before)
	}
	if m := fileMode(t, filepath.Join(s.Data, "secret.key")); m != 0o600 {
		t.Errorf("key file %04o, want 0600", m)
	}
	ph.want(200, nonce) // the running server still uses the old key
	s.Stop()
	s.Restart()
	ph.want(401, nonce) // signed with the old key: a new challenge
	ph.want(200, ph.challenge())
	if _, errOut, code := RunCLI(t, t.TempDir(), "", "key", "rotate"); code != 1 || !strings.Contains(errOut, "no switchboard database") {
		t.Fatalf("key rotate without a database: exit %d %q", code, errOut)
	}
}

// rawPhone sends REGISTERs with hand-made digest credentials from one UDP
// socket, to reuse a nonce the way a phone does.
type rawPhone struct {
	t              *testing.T
	s              *Server
	conn           net.PacketConn
	user, password string
	cseq, nc       int
}

func newRawPhone(t *testing.T, s *Server, user, password string) *rawPhone {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawPhone{t: t, s: s, conn: c, user: user, password: password}
}

var wwwNonceRE = regexp.MustCompile(`(?m)^WWW-Authenticate:.*nonce="([^"]+)"`)

// send sends a REGISTER (with credentials for nonce unless it is "") and
// returns the final status and the nonce of a challenge.
func (p *rawPhone) send(nonce string) (int, string) {
	t := p.t
	t.Helper()
	p.cseq++
	local := p.conn.LocalAddr().String()
	uri := "sip:" + p.s.Domain
	auth := ""
	if nonce != "" {
		p.nc++
		nc, cnonce := fmt.Sprintf("%08x", p.nc), "c0ffee"+strconv.Itoa(p.nc)
		h := func(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }
		ha1 := h(p.user + ":" + p.s.Domain + ":" + p.password)
		resp := h(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":auth:" + h("REGISTER:"+uri))
		auth = fmt.Sprintf("Authorization: Digest username=\"%s\", realm=\"%s\", nonce=\"%s\", uri=\"%s\", response=\"%s\", "+
			"algorithm=MD5, qop=auth, nc=%s, cnonce=\"%s\"\r\n", p.user, p.s.Domain, nonce, uri, resp, nc, cnonce)
	}
	msg := fmt.Sprintf("REGISTER %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;rport;branch=z9hG4bK-raw-%d-%d\r\nMax-Forwards: 70\r\n"+
		"From: <sip:%s@%s>;tag=raw%d\r\nTo: <sip:%s@%s>\r\nCall-ID: raw-%s@127.0.0.1\r\nCSeq: %d REGISTER\r\n"+
		"Contact: <sip:%s@%s>\r\nExpires: 60\r\n%sContent-Length: 0\r\n\r\n",
		uri, local, time.Now().UnixNano(), p.cseq, p.user, p.s.Domain, p.cseq, p.user, p.s.Domain, local, p.cseq, p.user, local, auth)
	raddr, _ := net.ResolveUDPAddr("udp", p.s.Addr)
	if _, err := p.conn.WriteTo([]byte(msg), raddr); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_ = p.conn.SetReadDeadline(deadline)
		n, _, err := p.conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no final answer to REGISTER (%v)\nserver log:\n%s", err, p.s.Log())
		}
		text := string(buf[:n])
		if f := finals(text); len(f) > 0 {
			m := wwwNonceRE.FindStringSubmatch(text)
			if m != nil {
				return f[0], m[1]
			}
			return f[0], ""
		}
	}
}

// challenge returns the nonce of a fresh 401.
func (p *rawPhone) challenge() string {
	p.t.Helper()
	st, nonce := p.send("")
	if st != 401 || nonce == "" {
		p.t.Fatalf("REGISTER without credentials: %d %q, want a 401 challenge", st, nonce)
	}
	return nonce
}

// want sends credentials for nonce and checks the status.
func (p *rawPhone) want(status int, nonce string) {
	p.t.Helper()
	if st, _ := p.send(nonce); st != status {
		p.t.Fatalf("REGISTER with nonce %s: %d, want %d\nserver log:\n%s", nonce, st, status, p.s.Log())
	}
}
