package e2e

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawUA sends hand-made SIP requests over UDP from one loopback address, so
// a test controls every byte of the digest answer.
type rawUA struct {
	t    *testing.T
	conn *net.UDPConn
	srv  *net.UDPAddr
	n    int
}

func newRawUA(t *testing.T, s *Server, ip string) *rawUA {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	srv, err := net.ResolveUDPAddr("udp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return &rawUA{t: t, conn: c, srv: srv}
}

func (u *rawUA) local() string { return u.conn.LocalAddr().String() }

// rawReply is a final response: status code and header lines.
type rawReply struct {
	Status int
	Raw    string
}

// header returns the first value of header name (case-insensitive).
func (r rawReply) header(name string) string {
	for _, l := range strings.Split(r.Raw, "\r\n") {
		if n, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(n), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

var (
	rawNonceRE = regexp.MustCompile(`nonce="([^"]+)"`)
	rawRealmRE = regexp.MustCompile(`realm="([^"]+)"`)
)

// send sends msg and returns the first final response (status >= 200), or
// Status 0 when none comes within 3 s.
func (u *rawUA) send(msg string) rawReply {
	u.t.Helper()
	if _, err := u.conn.WriteToUDP([]byte(msg), u.srv); err != nil {
		u.t.Fatal(err)
	}
	buf := make([]byte, 65536)
	deadline := time.Now().Add(3 * time.Second)
	for {
		_ = u.conn.SetReadDeadline(deadline)
		n, _, err := u.conn.ReadFromUDP(buf)
		if err != nil {
			return rawReply{}
		}
		first, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		f := strings.Fields(first)
		if len(f) < 2 || f[0] != "SIP/2.0" {
			continue
		}
		code, _ := strconv.Atoi(f[1])
		if code >= 200 {
			return rawReply{Status: code, Raw: string(buf[:n])}
		}
	}
}

// regReq is a REGISTER to build: user@domain with a contact, and the
// Authorization header value (none when empty).
type regReq struct {
	User, Domain, Contact, CallID, Auth string
	CSeq                                int
}

func (u *rawUA) register(r regReq) string {
	u.n++
	if r.Contact == "" {
		r.Contact = "sip:" + r.User + "@" + u.local()
	}
	auth := ""
	if r.Auth != "" {
		auth = "Authorization: " + r.Auth + "\r\n"
	}
	return fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;rport;branch=z9hG4bK-raw-%d-%d\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:%s@%s>;tag=raw%d\r\n"+
		"To: <sip:%s@%s>\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: %d REGISTER\r\n"+
		"Contact: <%s>\r\n"+
		"Expires: 300\r\n"+
		"User-Agent: raw digest test\r\n"+
		"%s"+
		"Content-Length: 0\r\n\r\n",
		u.srv.String(), u.local(), time.Now().UnixNano(), u.n,
		r.User, r.Domain, u.n, r.User, r.Domain, r.CallID, r.CSeq, r.Contact, auth)
}

// challenge sends an unauthenticated REGISTER for user@domain and returns
// the nonce and realm of the 401.
func (u *rawUA) challenge(user, domain, callID string) (nonce, realm string) {
	u.t.Helper()
	r := u.send(u.register(regReq{User: user, Domain: domain, CallID: callID, CSeq: 1}))
	www := r.header("WWW-Authenticate")
	if r.Status != 401 || !rawNonceRE.MatchString(www) {
		u.t.Fatalf("challenge for %s@%s: got %d %q", user, domain, r.Status, r.Raw)
	}
	return rawNonceRE.FindStringSubmatch(www)[1], rawRealmRE.FindStringSubmatch(www)[1]
}

func md5Hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// digestAnswer is an Authorization header value for REGISTER. qop "" makes
// an RFC 2069 answer (no qop, nc or cnonce).
func digestAnswer(user, realm, password, nonce, uri, qop, nc string) string {
	ha1 := md5Hex(user + ":" + realm + ":" + password)
	ha2 := md5Hex("REGISTER:" + uri)
	if qop == "" {
		return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5`,
			user, realm, nonce, uri, md5Hex(ha1+":"+nonce+":"+ha2))
	}
	resp := md5Hex(ha1 + ":" + nonce + ":" + nc + ":0a4f113b:" + qop + ":" + ha2)
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=%s, nc=%s, cnonce="0a4f113b"`,
		user, realm, nonce, uri, resp, qop, nc)
}

// replayFrom sends captured (a REGISTER with its Authorization header, as
// sent) from another address with another Contact: only the Via (so the
// answer comes back) and the Contact differ.
func (u *rawUA) replayFrom(captured, oldContact, newContact, oldLocal string) rawReply {
	msg := strings.Replace(captured, "Via: SIP/2.0/UDP "+oldLocal+";", "Via: SIP/2.0/UDP "+u.local()+";", 1)
	msg = strings.Replace(msg, "Contact: <"+oldContact+">", "Contact: <"+newContact+">", 1)
	return u.send(msg)
}

// TestDigestRefusals: the registrar accepts only the digest it offers. On a
// server with two domains (127.0.0.1 and other.example), each of these is
// refused, never 200, and journaled with its cause: an answer without qop
// (403 digest_no_qop, although the password is right); a digest uri that is
// not the Request-URI (400 digest_uri_mismatch); a nonce issued for
// other.example presented in 127.0.0.1 (a new challenge, bad_nonce); and a
// captured REGISTER replayed from another address with another Contact
// (a new challenge, nonce_replay), exactly or with a higher nonce count
// (403). The binding stays the original phone's.
func TestDigestRefusals(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.CLI("domain", "add", "other.example")
	s.AddExt("2001", "secret-2001-x")
	s.AddExt("2001", "other-2001-x", "--domain", "other.example")
	rURI := "sip:" + s.Addr

	phone := newRawUA(t, s, "127.0.0.41")
	// The right answer, with qop=auth: 200 (the helper is right).
	nonce, realm := phone.challenge("2001", "127.0.0.1", "good-1")
	if realm != "127.0.0.1" {
		t.Fatalf("realm %q", realm)
	}
	good := phone.register(regReq{User: "2001", Domain: "127.0.0.1", CallID: "good-1", CSeq: 2,
		Auth: digestAnswer("2001", realm, "secret-2001-x", nonce, rURI, "auth", "00000001")})
	if r := phone.send(good); r.Status != 200 {
		t.Fatalf("qop=auth answer: got %d, want 200:\n%s\n%s", r.Status, r.Raw, s.Log())
	}
	contact := "sip:2001@" + phone.local()
	WaitFor(t, 5*time.Second, "the binding", func() bool { return len(s.Regs("2001")) == 1 })

	// No qop (RFC 2069), right password: 403.
	nonce, _ = phone.challenge("2001", "127.0.0.1", "noqop-1")
	noQOP := phone.register(regReq{User: "2001", Domain: "127.0.0.1", CallID: "noqop-1", CSeq: 2,
		Auth: digestAnswer("2001", realm, "secret-2001-x", nonce, rURI, "", "")})
	if r := phone.send(noQOP); r.Status != 403 {
		t.Fatalf("answer without qop: got %d, want 403:\n%s", r.Status, r.Raw)
	}
	waitJournalWith(t, s, "digest_no_qop in the journal", map[string]string{"cause": "digest_no_qop", "extension": "2001",
		"sip_status": "403", "detail": "~the password is right, but qop=auth is required"})

	// A digest uri that is not the Request-URI: 400.
	nonce, _ = phone.challenge("2001", "127.0.0.1", "uri-1")
	wrongURI := phone.register(regReq{User: "2001", Domain: "127.0.0.1", CallID: "uri-1", CSeq: 2,
		Auth: digestAnswer("2001", realm, "secret-2001-x", nonce, "sip:other.example", "auth", "00000001")})
	if r := phone.send(wrongURI); r.Status != 400 {
		t.Fatalf("wrong digest uri: got %d, want 400:\n%s", r.Status, r.Raw)
	}
	waitJournalWith(t, s, "digest_uri_mismatch in the journal", map[string]string{"cause": "digest_uri_mismatch",
		"extension": "2001", "sip_status": "400", "detail": `~digest uri "sip:other.example" is not the Request-URI`})

	// A nonce issued for other.example, answered correctly for 127.0.0.1.
	otherNonce, otherRealm := phone.challenge("2001", "other.example", "foreign-1")
	if otherRealm != "other.example" {
		t.Fatalf("other realm %q", otherRealm)
	}
	foreign := phone.register(regReq{User: "2001", Domain: "127.0.0.1", CallID: "foreign-1", CSeq: 2,
		Auth: digestAnswer("2001", "127.0.0.1", "secret-2001-x", otherNonce, rURI, "auth", "00000001")})
	if r := phone.send(foreign); r.Status != 401 {
		t.Fatalf("nonce of other.example in 127.0.0.1: got %d, want 401 (a new challenge):\n%s", r.Status, r.Raw)
	}
	waitJournalWith(t, s, "bad_nonce in the journal", map[string]string{"cause": "bad_nonce", "extension": "2001",
		"detail": "~nonce not issued by this server for realm 127.0.0.1"})
	// The same nonce in its own domain works: it was refused for its realm.
	own := phone.register(regReq{User: "2001", Domain: "other.example", CallID: "foreign-1", CSeq: 3,
		Auth: digestAnswer("2001", "other.example", "other-2001-x", otherNonce, rURI, "auth", "00000001")})
	if r := phone.send(own); r.Status != 200 {
		t.Fatalf("nonce of other.example in other.example: got %d, want 200:\n%s", r.Status, r.Raw)
	}

	// The captured REGISTER replayed from 127.0.0.42 with its own Contact.
	attacker := newRawUA(t, s, "127.0.0.42")
	evil := "sip:2001@" + attacker.local()
	if r := attacker.replayFrom(good, contact, evil, phone.local()); r.Status == 200 || r.Status == 0 {
		t.Fatalf("replayed REGISTER from another address: got %d, want a refusal:\n%s", r.Status, r.Raw)
	} else if r.Status != 401 {
		t.Fatalf("replayed REGISTER: got %d, want 401 (a new challenge)", r.Status)
	}
	// With the next nonce count the captured response no longer fits.
	bumped := strings.Replace(good, "nc=00000001", "nc=00000002", 1)
	if r := attacker.replayFrom(bumped, contact, evil, phone.local()); r.Status != 403 {
		t.Fatalf("replay with nc bumped: got %d, want 403", r.Status)
	}
	waitJournalWith(t, s, "the replay in the journal", map[string]string{"cause": "nonce_replay", "extension": "2001",
		"source": "127.0.0.42:*"})
	var regs []Registration
	for _, r := range s.Regs("2001") {
		if r.Domain == "127.0.0.1" {
			regs = append(regs, r)
		}
	}
	if len(regs) != 1 || regs[0].Contact != contact {
		t.Fatalf("bindings of 2001@127.0.0.1 after the replays: %+v (want only %s)", regs, contact)
	}
	checkLog(t, s)
}

// TestDigestAllowRFC2069: with --digest-allow-rfc2069 an answer without qop
// registers, but its nonce works once: the same REGISTER replayed from
// another address with another Contact gets a new challenge, never 200.
func TestDigestAllowRFC2069(t *testing.T) {
	t.Parallel()
	s := Start(t, "", "--digest-allow-rfc2069")
	s.AddExt("2001", "secret-2001-x")
	rURI := "sip:" + s.Addr

	phone := newRawUA(t, s, "127.0.0.43")
	nonce, realm := phone.challenge("2001", "127.0.0.1", "old-1")
	old := phone.register(regReq{User: "2001", Domain: "127.0.0.1", CallID: "old-1", CSeq: 2,
		Auth: digestAnswer("2001", realm, "secret-2001-x", nonce, rURI, "", "")})
	if r := phone.send(old); r.Status != 200 {
		t.Fatalf("answer without qop with --digest-allow-rfc2069: got %d, want 200:\n%s\n%s", r.Status, r.Raw, s.Log())
	}
	contact := "sip:2001@" + phone.local()
	attacker := newRawUA(t, s, "127.0.0.44")
	evil := "sip:2001@" + attacker.local()
	if r := attacker.replayFrom(old, contact, evil, phone.local()); r.Status != 401 {
		t.Fatalf("replayed RFC 2069 REGISTER from another address: got %d, want 401", r.Status)
	}
	// The phone's next request needs a new nonce too, and gets one.
	nonce, _ = phone.challenge("2001", "127.0.0.1", "old-1")
	next := phone.register(regReq{User: "2001", Domain: "127.0.0.1", CallID: "old-1", CSeq: 4,
		Auth: digestAnswer("2001", realm, "secret-2001-x", nonce, rURI, "", "")})
	if r := phone.send(next); r.Status != 200 {
		t.Fatalf("second RFC 2069 REGISTER with a new nonce: got %d, want 200", r.Status)
	}
	regs := s.Regs("2001")
	if len(regs) != 1 || regs[0].Contact != contact {
		t.Fatalf("bindings of 2001: %+v (want only %s)", regs, contact)
	}
}

// TestSipsakRegisters: sipsak's digest answer (qop=auth, uri = its
// Request-URI) is accepted.
func TestSipsakRegisters(t *testing.T) {
	t.Parallel()
	Need(t, "sipsak")
	s := Start(t, "")
	s.AddExt("2001", "secret-2001-x")
	cmd := exec.Command("sipsak", "-U", "-C", "sip:2001@127.0.0.45:5999", "-x", "300",
		"-s", "sip:2001@"+s.Addr, "-u", "2001", "-a", "secret-2001-x")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("sipsak did not finish in 30 s:\n%s", out)
	}
	if err != nil {
		t.Fatalf("sipsak: %v\n%s\nserver log:\n%s", err, out, s.Log())
	}
	WaitFor(t, 5*time.Second, "sipsak's binding", func() bool {
		for _, r := range s.Regs("2001") {
			if r.Contact == "sip:2001@127.0.0.45:5999" {
				return true
			}
		}
		return false
	})
}

// TestBanRegisteredAddress: an address with a live registration (2001,
// registered by SIPp from 127.0.0.46) is no longer exempt from bans for
// guessing other extensions. Its own phone's failures (a wrong password for
// 2001) never count, however many; wrong guesses for 2002 from there ban it
// after --ban-after-registered (6), even with 2001 refreshing successfully
// between the guesses. The ban, the journal and the doctor say why.
func TestBanRegisteredAddress(t *testing.T) {
	t.Parallel()
	s := Start(t, "", "--ban-after", "2", "--ban-after-registered", "6", "--ban-window", "60s", "--ban-for", "1h")
	// Each SIPp run registers another port: room for them all.
	s.AddExt("2001", "secret-2001-x", "--max-registrations", "20")
	s.AddExt("2002", "secret-2002-x")
	s.CLI("profile", "set", "internal", "--trusted-acl", "") // loopback is trusted by default

	phone := secPhone{IP: "127.0.0.46", User: "2001", Password: "secret-2001-x"}
	phone.mustRun(t, s, "register.xml", 1)
	WaitFor(t, 5*time.Second, "the binding", func() bool { return len(s.Regs("2001")) == 1 })

	// The registered phone's own failures: more than both thresholds.
	secPhone{IP: "127.0.0.46", User: "2001", Password: "changed-password"}.mustRun(t, s, "sec-reg-auth-403.xml", 8)
	phone.mustRun(t, s, "register.xml", 1)
	if bs := bans(t, s); len(bs) != 0 {
		t.Fatalf("the registered phone's own failures banned: %+v", bs)
	}

	// Guesses for 2002 from the same address, 2001 refreshing in between.
	guess := secPhone{IP: "127.0.0.46", User: "2002", Password: "guess-1234"}
	for i := 0; i < 5; i++ {
		guess.mustRun(t, s, "sec-reg-auth-403.xml", 1)
		phone.mustRun(t, s, "register.xml", 1)
	}
	if bs := bans(t, s); len(bs) != 0 {
		t.Fatalf("banned before the threshold: %+v", bs)
	}
	guess.mustRun(t, s, "sec-reg-auth-403.xml", 1)
	b := waitBanned(t, s, "127.0.0.46")
	want := "brute force from an address with registered phones (2001); threshold 6; last: wrong password for 2002@127.0.0.1"
	if b.Failures != 6 || b.Reason != want {
		t.Fatalf("ban %+v; want 6 failures and reason %q", b, want)
	}
	guess.unanswered(t, s)
	phone.unanswered(t, s)
	waitJournalWith(t, s, "the ban in the journal", map[string]string{"kind": "ban", "cause": "ip_banned", "source": "127.0.0.46",
		"detail": "~brute force from an address with registered phones (2001); threshold 6"})

	// The doctor of the registered extension explains the ban.
	r, _ := doctor(t, s, "2001")
	f := r.finding(t, "ip_banned")
	if txt := f.text(); !strings.Contains(txt, "brute force from an address with registered phones (2001)") ||
		!strings.Contains(txt, "guessed the passwords of other extensions") {
		t.Fatalf("doctor finding:\n%s", txt)
	}
	checkLog(t, s)
}
