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
	fresh := a.Nonces.New()
	c.t = c.t.Add(2 * time.Minute) // fresh is now past its 1-minute lifetime
	tests := []struct {
		name   string
		req    *sip.Request
		domain string
		served bool
		want   cause.Code
	}{
		{"no credentials", sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: realm}), realm, true, cause.Challenged},
		{"right password", register("2001", "right-password", a.Nonces.New(), "00000001", realm), realm, true, ""},
		{"wrong password", register("2001", "wrong", a.Nonces.New(), "00000001", realm), realm, true, cause.WrongPassword},
		{"unknown user", register("2999", "right-password", a.Nonces.New(), "00000001", realm), realm, true, cause.ExtensionMissing},
		{"disabled", register("2009", "right-password", a.Nonces.New(), "00000001", realm), realm, true, cause.ExtensionDisabled},
		{"realm differs", register("2001", "right-password", a.Nonces.New(), "00000001", "other"), realm, true, cause.WrongDomain},
		{"domain not served", register("2001", "right-password", a.Nonces.New(), "00000001", "x.example"), "x.example", false, cause.WrongDomain},
		{"forged nonce", register("2001", "right-password", "AAAA"+a.Nonces.New()[4:], "00000001", realm), realm, true, cause.BadNonce},
		{"stale nonce, right password", register("2001", "right-password", fresh, "00000001", realm), realm, true, cause.StaleNonce},
		{"stale nonce, wrong password", register("2001", "wrong", fresh, "00000001", realm), realm, true, cause.WrongPassword},
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

func TestReplayedNonceCount(t *testing.T) {
	a, _ := setup(t)
	n := a.Nonces.New()
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
		{"sha-256 right password", registerSHA256("2001", "right-password", a.Nonces.New()), ""},
		{"sha-256 wrong password", registerSHA256("2001", "wrong", a.Nonces.New()), cause.WrongPassword},
		{"sha-256 unknown user", registerSHA256("2999", "right-password", a.Nonces.New()), cause.ExtensionMissing},
		{"no md5 ha1", register("2010", "right-password", a.Nonces.New(), "00000001", realm), cause.WrongPassword},
		{"no md5 ha1, empty password", register("2010", "", a.Nonces.New(), "00000001", realm), cause.WrongPassword},
		{"no md5 ha1, answer made with a zero ha1", registerHA1("2010", strings.Repeat("0", 32), a.Nonces.New(), "00000001", realm), cause.WrongPassword},
		{"sha-256 only", registerSHA256("2010", "right-password", a.Nonces.New()), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := a.Check(tc.req, "Authorization", realm, true); r.Cause != tc.want {
				t.Fatalf("cause = %q (%s), want %q", r.Cause, r.Detail, tc.want)
			}
		})
	}
}
