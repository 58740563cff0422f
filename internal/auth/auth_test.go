package auth

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/digest"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

const realm = "pbx.test"

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func setup(t *testing.T) (*Authenticator, *clock) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.EnsureDomain(ctx, realm); err != nil {
		t.Fatal(err)
	}
	for _, e := range []store.Extension{
		{Domain: realm, Number: "2001", Enabled: true, MaxRegistrations: 5, CallTimeout: 30},
		{Domain: realm, Number: "2009", Enabled: false, MaxRegistrations: 5, CallTimeout: 30},
		{Domain: realm, Number: "2010", Enabled: true, MaxRegistrations: 5, CallTimeout: 30}, // SHA-256 HA1 only
	} {
		e.HA1MD5 = digest.HA1(digest.MD5, e.Number, realm, "right-password")
		e.HA1SHA256 = digest.HA1(digest.SHA256, e.Number, realm, "right-password")
		if e.Number == "2010" {
			e.HA1MD5 = ""
		}
		if _, err := db.AddExtension(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	dir := directory.New(db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := dir.Load(ctx); err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	return &Authenticator{Dir: dir, Nonces: digest.NewNonces(nil, time.Minute, c.now),
		Algorithms: []digest.Algorithm{digest.MD5}}, c
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// register builds a REGISTER carrying an RFC 7616 qop=auth answer computed
// here independently of package digest.
func register(user, password, nonce, nc, authRealm string) *sip.Request {
	return registerHA1(user, md5hex(user+":"+authRealm+":"+password), nonce, nc, authRealm)
}

// registerHA1 is register with the answer computed from ha1 (hex).
func registerHA1(user, ha1, nonce, nc, authRealm string) *sip.Request {
	uri := sip.Uri{Scheme: "sip", Host: realm}
	req := sip.NewRequest(sip.REGISTER, uri)
	ha2 := md5hex("REGISTER:sip:" + realm)
	resp := md5hex(ha1 + ":" + nonce + ":" + nc + ":abc:auth:" + ha2)
	req.AppendHeader(sip.NewHeader("Authorization", fmt.Sprintf(
		`Digest username="%s", realm="%s", nonce="%s", uri="sip:%s", response="%s", algorithm=MD5, qop=auth, nc=%s, cnonce="abc"`,
		user, authRealm, nonce, realm, resp, nc)))
	return req
}

func TestCheck(t *testing.T) {
	a, c := setup(t)
	fresh := a.Nonces.NewFor(realm)
	c.t = c.t.Add(2 * time.Minute) // fresh is now past its 1-minute lifetime
	tests := []struct {
		name   string
		req    *sip.Request
		domain string
		served bool
		want   cause.Code
	}{
		{"no credentials", sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: realm}), realm, true, cause.Challenged},
		{"right password", register("2001", "right-password", a.Nonces.NewFor(realm), "00000001", realm), realm, true, ""},
		{"wrong password", register("2001", "wrong", a.Nonces.NewFor(realm), "00000001", realm), realm, true, cause.WrongPassword},
		{"unknown user", register("2999", "right-password", a.Nonces.NewFor(realm), "00000001", realm), realm, true, cause.ExtensionMissing},
		{"disabled", register("2009", "right-password", a.Nonces.NewFor(realm), "00000001", realm), realm, true, cause.ExtensionDisabled},
		{"realm differs", register("2001", "right-password", a.Nonces.NewFor(realm), "00000001", "other"), realm, true, cause.WrongDomain},
		{"domain not served", register("2001", "right-password", a.Nonces.NewFor("x.example"), "00000001", "x.example"), "x.example", false, cause.WrongDomain},
		{"forged nonce", register("2001", "right-password", "AAAA"+a.Nonces.NewFor(realm)[4:], "00000001", realm), realm, true, cause.BadNonce},
		{"stale nonce, right password", register("2001", "right-password", fresh, "00000001", realm), realm, true, cause.StaleNonce},
		{"stale nonce, wrong password", register("2001", "wrong", fresh, "00000001", realm), realm, true, cause.WrongPassword},
		{"nonce of another realm", register("2001", "right-password", a.Nonces.NewFor("other.example"), "00000001", realm), realm, true, cause.BadNonce},
		{"nonce of no realm", register("2001", "right-password", a.Nonces.New(), "00000001", realm), realm, true, cause.BadNonce},
		{"no qop, right password", register2069("2001", "right-password", a.Nonces.NewFor(realm), "sip:"+realm), realm, true, cause.DigestNoQOP},
		{"no qop, wrong password", register2069("2001", "wrong", a.Nonces.NewFor(realm), "sip:"+realm), realm, true, cause.WrongPassword},
		{"digest uri of another host", withURI("2001", "right-password", a.Nonces.NewFor(realm), "sip:other.example"), realm, true, cause.DigestURIMismatch},
		{"digest uri with a user", withURI("2001", "right-password", a.Nonces.NewFor(realm), "sip:2001@"+realm), realm, true, cause.DigestURIMismatch},
		{"digest uri unparsable", withURI("2001", "right-password", a.Nonces.NewFor(realm), "sip:"), realm, true, cause.DigestURIMismatch},
		{"digest uri, other case and default port", withURI("2001", "right-password", a.Nonces.NewFor(realm), "SIP:PBX.test:5060"), realm, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := a.Check(tc.req, "Authorization", tc.domain, tc.served)
			if r.Cause != tc.want {
				t.Fatalf("cause = %q (%s), want %q", r.Cause, r.Detail, tc.want)
			}
			if tc.want == "" && (r.Ext == nil || r.Ext.Number() != "2001") {
				t.Fatalf("want extension 2001 authenticated, got %+v", r.Ext)
			}
			if tc.want != "" && r.Ext != nil {
				t.Fatalf("failed check returned an extension")
			}
			if got := r.NeedsChallenge(); got != (tc.want == cause.Challenged || tc.want == cause.StaleNonce || tc.want == cause.BadNonce) {
				t.Fatalf("NeedsChallenge = %v for %q", got, tc.want)
			}
		})
	}
}

// register2069 builds a REGISTER whose answer has no qop (RFC 2069:
// response = MD5(HA1:nonce:HA2)) for digest uri uri.
func register2069(user, password, nonce, uri string) *sip.Request {
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: realm})
	ha1 := md5hex(user + ":" + realm + ":" + password)
	resp := md5hex(ha1 + ":" + nonce + ":" + md5hex("REGISTER:"+uri))
	req.AppendHeader(sip.NewHeader("Authorization", fmt.Sprintf(
		`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5`,
		user, realm, nonce, uri, resp)))
	return req
}

// withURI builds a REGISTER for sip:pbx.test whose qop=auth answer is
// correct for digest uri uri.
func withURI(user, password, nonce, uri string) *sip.Request {
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: realm})
	ha1 := md5hex(user + ":" + realm + ":" + password)
	resp := md5hex(ha1 + ":" + nonce + ":00000001:abc:auth:" + md5hex("REGISTER:"+uri))
	req.AppendHeader(sip.NewHeader("Authorization", fmt.Sprintf(
		`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="abc"`,
		user, realm, nonce, uri, resp)))
	return req
}

// TestAllowRFC2069: with AllowRFC2069 an answer without qop is accepted,
// once per nonce: the same answer again (a replay) gets a new challenge,
// and so does the nonce used with a count afterwards.
func TestAllowRFC2069(t *testing.T) {
	a, _ := setup(t)
	a.AllowRFC2069 = true
	n := a.Nonces.NewFor(realm)
	req := register2069("2001", "right-password", n, "sip:"+realm)
	if r := a.Check(req, "Authorization", realm, true); r.Cause != "" {
		t.Fatalf("first use: %q (%s)", r.Cause, r.Detail)
	}
	if r := a.Check(req, "Authorization", realm, true); r.Cause != cause.NonceReplay || !r.NeedsChallenge() {
		t.Fatalf("replay: got %q, want %q", r.Cause, cause.NonceReplay)
	}
	if r := a.Check(register("2001", "right-password", n, "00000001", realm), "Authorization", realm, true); r.Cause != cause.NonceReplay {
		t.Fatalf("same nonce with a count: got %q, want %q", r.Cause, cause.NonceReplay)
	}
	if r := a.Check(register2069("2001", "wrong", a.Nonces.NewFor(realm), "sip:"+realm), "Authorization", realm, true); r.Cause != cause.WrongPassword {
		t.Fatalf("wrong password without qop: got %q", r.Cause)
	}
}

func TestURIMatches(t *testing.T) {
	for _, tt := range []struct {
		uri, reqURI string
		want        bool
	}{
		{"sip:pbx.test", "sip:pbx.test", true},
		{"sip:PBX.Test", "sip:pbx.test", true},
		{"SIP:pbx.test", "sip:pbx.test", true},
		{"sip:pbx.test:5060", "sip:pbx.test", true},
		{"sip:pbx.test", "sip:pbx.test:5060", true},
		{"sips:pbx.test:5061", "sips:pbx.test", true},
		{"sip:pbx.test;transport=tcp", "sip:pbx.test", true},
		{"sip:2002@pbx.test", "sip:2002@pbx.test;user=phone", true},
		{"sip:127.0.0.1:5070", "sip:127.0.0.1:5070", true},
		{"sip:[::1]:5070", "sip:[::1]:5070", true},
		{"sip:pbx.test:5070", "sip:pbx.test", false},
		{"sip:other.example", "sip:pbx.test", false},
		{"sip:2003@pbx.test", "sip:2002@pbx.test", false},
		{"sip:2002@pbx.test", "sip:pbx.test", false},
		{"sip:pbx.test", "sip:2002@pbx.test", true}, // SIPp's default: sip:SERVER:PORT
		{"sip:pbx.test:5070", "sip:2002@pbx.test", false},
		{"sip:other.example", "sip:2002@pbx.test", false},
		{"sip:2002@pbx.test", "sip:2002@PBX.test", true},
		{"sip:ABC@pbx.test", "sip:abc@pbx.test", false}, // users are case-sensitive
		{"sips:pbx.test", "sip:pbx.test", false},
		{"sip:", "sip:pbx.test", false},
		{"", "sip:pbx.test", false},
		{"*", "sip:pbx.test", false},
	} {
		var r sip.Uri
		if err := sip.ParseUri(tt.reqURI, &r); err != nil {
			t.Fatalf("parse %q: %v", tt.reqURI, err)
		}
		if got := URIMatches(tt.uri, r); got != tt.want {
			t.Errorf("URIMatches(%q, %q) = %v, want %v", tt.uri, tt.reqURI, got, tt.want)
		}
	}
}

func TestReplayedNonceCount(t *testing.T) {
	a, _ := setup(t)
	n := a.Nonces.NewFor(realm)
	if r := a.Check(register("2001", "right-password", n, "00000001", realm), "Authorization", realm, true); r.Cause != "" {
		t.Fatalf("first use: %q", r.Cause)
	}
	if r := a.Check(register("2001", "right-password", n, "00000001", realm), "Authorization", realm, true); r.Cause != cause.NonceReplay {
		t.Fatalf("replay: got %q, want %q", r.Cause, cause.NonceReplay)
	}
	if r := a.Check(register("2001", "right-password", n, "00000002", realm), "Authorization", realm, true); r.Cause != "" {
		t.Fatalf("next nc: %q", r.Cause)
	}
}

func TestChallengeOrder(t *testing.T) {
	a, _ := setup(t)
	a.Algorithms = []digest.Algorithm{digest.SHA256, digest.MD5}
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: realm})
	res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
	a.Challenge(res, "WWW-Authenticate", realm, true)
	hs := res.GetHeaders("WWW-Authenticate")
	if len(hs) != 2 {
		t.Fatalf("want 2 challenges, got %d", len(hs))
	}
	for i, alg := range []string{"SHA-256", "MD5"} {
		c, err := digest.ParseCredentials(hs[i].Value() + `, username="x", uri="sip:x", response="00"`)
		if err != nil {
			t.Fatalf("challenge %d unparsable: %v", i, err)
		}
		if c.Algorithm != alg || c.Realm != realm {
			t.Fatalf("challenge %d: algorithm %q realm %q", i, c.Algorithm, c.Realm)
		}
	}
}

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// registerSHA256 is register with algorithm SHA-256.
func registerSHA256(user, password, nonce string) *sip.Request {
	uri := sip.Uri{Scheme: "sip", Host: realm}
	req := sip.NewRequest(sip.REGISTER, uri)
	ha1 := sha256hex(user + ":" + realm + ":" + password)
	ha2 := sha256hex("REGISTER:sip:" + realm)
	resp := sha256hex(ha1 + ":" + nonce + ":00000001:abc:auth:" + ha2)
	req.AppendHeader(sip.NewHeader("Authorization", fmt.Sprintf(
		`Digest username="%s", realm="%s", nonce="%s", uri="sip:%s", response="%s", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="abc"`,
		user, realm, nonce, realm, resp)))
	return req
}

// TestCheckSHA256AndMissingHA1: SHA-256 credentials are checked against the
// SHA-256 HA1, and an extension without an HA1 for the algorithm refuses
// every password.
func TestCheckSHA256AndMissingHA1(t *testing.T) {
	a, _ := setup(t)
	a.Algorithms = []digest.Algorithm{digest.SHA256, digest.MD5}
	for _, tc := range []struct {
		name string
		req  *sip.Request
		want cause.Code
	}{
		{"sha-256 right password", registerSHA256("2001", "right-password", a.Nonces.NewFor(realm)), ""},
		{"sha-256 wrong password", registerSHA256("2001", "wrong", a.Nonces.NewFor(realm)), cause.WrongPassword},
		{"sha-256 unknown user", registerSHA256("2999", "right-password", a.Nonces.NewFor(realm)), cause.ExtensionMissing},
		{"no md5 ha1", register("2010", "right-password", a.Nonces.NewFor(realm), "00000001", realm), cause.WrongPassword},
		{"no md5 ha1, empty password", register("2010", "", a.Nonces.NewFor(realm), "00000001", realm), cause.WrongPassword},
		{"no md5 ha1, answer made with a zero ha1", registerHA1("2010", strings.Repeat("0", 32), a.Nonces.NewFor(realm), "00000001", realm), cause.WrongPassword},
		{"sha-256 only", registerSHA256("2010", "right-password", a.Nonces.NewFor(realm)), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := a.Check(tc.req, "Authorization", realm, true); r.Cause != tc.want {
				t.Fatalf("cause = %q (%s), want %q", r.Cause, r.Detail, tc.want)
			}
		})
	}
}
