package registrar_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/digest"
	"github.com/switchboard-pbx/switchboard/internal/server"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

const (
	domain   = "127.0.0.1"
	password = "secret-2001"
)

// startServer runs a real switchboard in-process on 127.0.0.1:0 with the
// given digest algorithms and extension 2001, until the test ends. It
// returns the server and its SIP address.
func startServer(t *testing.T, algorithms string) (*server.Server, string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.EnsureDomain(ctx, domain); err != nil {
		t.Fatal(err)
	}
	e := store.Extension{Domain: domain, Number: "2001", Enabled: true, MaxRegistrations: 5, CallTimeout: 30,
		HA1MD5:    digest.HA1(digest.MD5, "2001", domain, password),
		HA1SHA256: digest.HA1(digest.SHA256, "2001", domain, password)}
	if _, err := db.AddExtension(ctx, e); err != nil {
		t.Fatal(err)
	}
	db.Close()

	cfg := config.Default()
	cfg.DataDir, cfg.SIP, cfg.Domain, cfg.Digest = dir, "127.0.0.1:0", domain, algorithms
	cfg.QualifyInterval = 0
	cfg.HTTP = "" // no console: tests run side by side
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	runCtx, cancel := context.WithCancel(ctx)
	srv, err := server.New(runCtx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server stopped with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("server did not stop within 10 s")
		}
	})
	return srv, srv.Stack.Listeners[0].Addr
}

// newClient is a sipgo UAC on 127.0.0.1.
func newClient(t *testing.T) *sipgo.Client {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("registrar-test"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); ua.Close() })
	return c
}

func registerRequest(t *testing.T, addr, user string, expires int) *sip.Request {
	t.Helper()
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portStr)
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Host: host, Port: port})
	aor := sip.Uri{User: user, Host: domain}
	req.AppendHeader(&sip.ToHeader{Address: aor})
	from := &sip.FromHeader{Address: aor}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(sip.NewHeader("Contact", "<sip:"+user+"@127.0.0.1:5099;transport=udp>"))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	req.AppendHeader(sip.NewHeader("User-Agent", "registrar-test"))
	req.SetTransport("UDP")
	return req
}

func do(t *testing.T, c *sipgo.Client, req *sip.Request) *sip.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.Do(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", req.Method, err)
	}
	return res
}

func challenges(res *sip.Response) []string {
	var out []string
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		out = append(out, h.Value())
	}
	return out
}

// TestSHA256Registration: with --digest sha-256,md5 the 401 offers SHA-256
// first and MD5 second, and a client answering the SHA-256 challenge
// registers.
func TestSHA256Registration(t *testing.T) {
	srv, addr := startServer(t, "sha-256,md5")
	c := newClient(t)
	req := registerRequest(t, addr, "2001", 600)
	res := do(t, c, req)
	if res.StatusCode != 401 {
		t.Fatalf("want 401, got %d %s", res.StatusCode, res.Reason)
	}
	ch := challenges(res)
	if len(ch) != 2 || !strings.Contains(ch[0], "algorithm=SHA-256") || !strings.Contains(ch[1], "algorithm=MD5") {
		t.Fatalf("want a SHA-256 challenge then an MD5 one, got %q", ch)
	}
	for _, v := range ch {
		if !strings.HasPrefix(v, `Digest realm="127.0.0.1", nonce="`) || !strings.Contains(v, `qop="auth"`) {
			t.Fatalf("challenge %q: want realm 127.0.0.1 and qop=auth", v)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: "2001", Password: password})
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("SHA-256 answer: want 200, got %d %s", res.StatusCode, res.Reason)
	}
	authz := req.GetHeader("Authorization")
	if authz == nil || !strings.Contains(authz.Value(), "algorithm=SHA-256") {
		t.Fatalf("the client did not answer with SHA-256: %v", authz)
	}
	if got := res.GetHeaders("Contact"); len(got) != 1 || !strings.HasSuffix(got[0].Value(), ";expires=600") {
		t.Fatalf("200 should list the contact with expires=600, got %v", got)
	}
	bs := srv.Loc.Lookup(domain, "2001")
	if len(bs) != 1 || bs[0].AuthUser != "2001" || bs[0].Realm != domain || bs[0].Transport != "UDP" ||
		!strings.HasPrefix(bs[0].Source, "127.0.0.1:") || bs[0].UserAgent != "registrar-test" {
		t.Fatalf("binding after SHA-256 registration: %+v", bs)
	}

	// The same credentials with a wrong password are refused like MD5 ones.
	bad := registerRequest(t, addr, "2001", 600)
	res = do(t, c, bad)
	res, err = c.DoDigestAuth(ctx, bad, res, sipgo.DigestAuth{Username: "2001", Password: "wrong-password"})
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 403 {
		t.Fatalf("SHA-256 with a wrong password: want 403, got %d %s", res.StatusCode, res.Reason)
	}
}

// TestMD5OnlyByDefault: the default offers exactly one MD5 challenge.
func TestMD5OnlyByDefault(t *testing.T) {
	_, addr := startServer(t, config.Default().Digest)
	c := newClient(t)
	req := registerRequest(t, addr, "2001", 600)
	res := do(t, c, req)
	ch := challenges(res)
	if res.StatusCode != 401 || len(ch) != 1 || !strings.HasSuffix(ch[0], `, algorithm=MD5, qop="auth"`) {
		t.Fatalf("want 401 with one MD5 challenge, got %d %q", res.StatusCode, ch)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: "2001", Password: password})
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("MD5 registration: %v %v", res, err)
	}
}

// TestNonceCountReplay: an Authorization header replayed with the same
// nonce count in a new transaction is challenged again, not accepted.
func TestNonceCountReplay(t *testing.T) {
	srv, addr := startServer(t, "md5")
	c := newClient(t)
	req := registerRequest(t, addr, "2001", 600)
	res := do(t, c, req)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: "2001", Password: password})
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("first registration: %v %v", res, err)
	}
	authz := req.GetHeader("Authorization").Value()

	// Unregister with the captured credentials: a replay must not work.
	replay := registerRequest(t, addr, "2001", 0)
	replay.AppendHeader(sip.NewHeader("Authorization", authz))
	res = do(t, c, replay)
	if res.StatusCode != 401 {
		t.Fatalf("replayed Authorization: want 401, got %d %s", res.StatusCode, res.Reason)
	}
	if n := len(srv.Loc.Lookup(domain, "2001")); n != 1 {
		t.Fatalf("a replayed request changed the bindings: %d left", n)
	}
}

// TestWireAnswers: the registrar's 401 and 200 on the wire are what sipgo's
// NewResponseFromRequest and StringWrite would write for the request (its
// compact header forms and two Vias included), byte for byte: every Via,
// the first with received and rport, From, To with a new tag, Call-ID,
// CSeq, Content-Length: 0, then the challenge (or the contacts with their
// expiry and the Date), and Server.
func TestWireAnswers(t *testing.T) {
	_, addr := startServer(t, "md5")
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr().String()
	register := func(cseq int, branch, extra string) (*sip.Request, *sip.Response, []byte) {
		t.Helper()
		raw := "REGISTER sip:" + addr + " SIP/2.0\r\n" +
			"v:  SIP/2.0/UDP " + local + ";rport;branch=z9hG4bK" + branch + "\r\n" +
			"Via:SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bK-older\r\n" +
			"f: \"Two\"  <sip:2001@" + domain + ">;tag=wire\r\nt:<sip:2001@" + domain + ">\r\n" +
			"i: wire-answers\r\nCSeq:   " + strconv.Itoa(cseq) + " REGISTER\r\n" +
			"m: <sip:2001@" + local + ">\r\nExpires: 600\r\n" + extra + "l: 0\r\n\r\n"
		if _, err := conn.WriteTo([]byte(raw), raddr); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		req := msg.(*sip.Request)
		req.SetSource(local)
		got, err := sip.ParseMessage(bytes.Clone(buf[:n]))
		if err != nil {
			t.Fatalf("answer does not parse: %v\n%s", err, buf[:n])
		}
		return req, got.(*sip.Response), buf[:n]
	}
	// want is sipgo's answer with the answer's To tag and the extra headers
	// (nonces and times) it carries.
	want := func(req *sip.Request, res *sip.Response, names ...string) string {
		w := sip.NewResponseFromRequest(req, res.StatusCode, res.Reason, nil)
		tag, _ := res.To().Params.Get("tag")
		w.To().Params.Add("tag", tag)
		for _, name := range names {
			for _, h := range res.GetHeaders(name) {
				w.AppendHeader(sip.NewHeader(name, h.Value()))
			}
		}
		w.AppendHeader(sip.NewHeader("Server", "switchboard"))
		return w.String()
	}

	req, res, b := register(1, "-w1", "")
	if res.StatusCode != 401 || string(b) != want(req, res, "WWW-Authenticate") {
		t.Fatalf("401:\n%s\nwant:\n%s", b, want(req, res, "WWW-Authenticate"))
	}
	port := local[strings.LastIndexByte(local, ':')+1:]
	if !strings.Contains(string(b), ";rport="+port+";branch=z9hG4bK-w1;received=127.0.0.1\r\n") {
		t.Errorf("401: the first Via lacks received and rport:\n%s", b)
	}
	var realm, nonce string
	for _, p := range strings.Split(strings.TrimPrefix(res.GetHeader("WWW-Authenticate").Value(), "Digest "), ", ") {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "realm":
			realm = strings.Trim(v, `"`)
		case "nonce":
			nonce = strings.Trim(v, `"`)
		}
	}
	md5hex := func(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }
	uri := "sip:" + addr
	ha1 := digest.HA1(digest.MD5, "2001", realm, password)
	response := md5hex(ha1 + ":" + nonce + ":00000001:c0ffee:auth:" + md5hex("REGISTER:"+uri))
	authz := `Authorization: Digest username="2001", realm="` + realm + `", nonce="` + nonce + `", uri="` + uri +
		`", response="` + response + `", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"` + "\r\n"

	req, res, b = register(2, "-w2", authz)
	if res.StatusCode != 200 || string(b) != want(req, res, "Contact", "Date") {
		t.Fatalf("200:\n%s\nwant:\n%s", b, want(req, res, "Contact", "Date"))
	}
	if !strings.Contains(string(b), "\r\nContact: <sip:2001@"+local+">;expires=600\r\n") {
		t.Errorf("200: want the contact with expires=600:\n%s", b)
	}
	date, err := time.Parse(time.RFC1123, res.GetHeader("Date").Value())
	if err != nil || time.Since(date).Abs() > 5*time.Second {
		t.Errorf("200: Date %v (%v): want now", res.GetHeader("Date"), err)
	}
}
