package digest

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// refResponse is an independent, straightforward reference implementation of
// the digest response (RFC 7616 section 3.4.1), used to cross-check Verify.
func refResponse(alg Algorithm, user, realm, password, method, uri, nonce, nc, cnonce, qop string) string {
	var newHash func() hash.Hash
	switch alg {
	case MD5:
		newHash = md5.New
	case SHA256:
		newHash = sha256.New
	default:
		panic("bad alg")
	}
	h := func(s string) string {
		x := newHash()
		x.Write([]byte(s))
		return hex.EncodeToString(x.Sum(nil))
	}
	ha1 := h(user + ":" + realm + ":" + password)
	ha2 := h(method + ":" + uri)
	if qop == "" {
		return h(ha1 + ":" + nonce + ":" + ha2)
	}
	return h(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":" + qop + ":" + ha2)
}

type rfcVector struct {
	name, alg, user, password, realm, method, uri, nonce, cnonce, nc, qop, opaque string
	want                                                                          string
}

var rfcVectors = []rfcVector{
	{
		name: "RFC7616 3.9.1 MD5", alg: "MD5",
		user: "Mufasa", password: "Circle of Life", realm: "http-auth@example.org",
		method: "GET", uri: "/dir/index.html",
		nonce:  "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
		cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
		nc:     "00000001", qop: "auth",
		opaque: "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
		want:   "8ca523f5e9506fed4657c9700eebdbec",
	},
	{
		// RFC 8760 (SIP) uses the same SHA-256 computation as RFC 7616.
		name: "RFC7616 3.9.1 SHA-256", alg: "SHA-256",
		user: "Mufasa", password: "Circle of Life", realm: "http-auth@example.org",
		method: "GET", uri: "/dir/index.html",
		nonce:  "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
		cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
		nc:     "00000001", qop: "auth",
		opaque: "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
		want:   "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
	},
	{
		name: "RFC2617 3.5", alg: "MD5",
		user: "Mufasa", password: "Circle Of Life", realm: "testrealm@host.com",
		method: "GET", uri: "/dir/index.html",
		nonce:  "dcd98b7102dd2f0e8b11d0f600bfb0c093",
		cnonce: "0a4f113b", nc: "00000001", qop: "auth",
		opaque: "5ccc069c403ebaf9f0171e9517f40e41",
		want:   "6629fae49393a05397450978507c4ef1",
	},
	{
		// RFC 2069 section 2.4 example, no qop. The response printed in the
		// RFC is wrong; this is the corrected value from the errata.
		name: "RFC2069 2.4 (errata)", alg: "MD5",
		user: "Mufasa", password: "CircleOfLife", realm: "testrealm@host.com",
		method: "GET", uri: "/dir/index.html",
		nonce:  "dcd98b7102dd2f0e8b11d0f600bfb0c093",
		opaque: "5ccc069c403ebaf9f0171e9517f40e41",
		want:   "1949323746fe6a43ef61f9606e7febea",
	},
}

func (v rfcVector) header() string {
	h := fmt.Sprintf(`Digest username="%s", realm="%s", uri="%s", algorithm=%s, nonce="%s"`,
		v.user, v.realm, v.uri, v.alg, v.nonce)
	if v.qop != "" {
		h += fmt.Sprintf(`, nc=%s, cnonce="%s", qop=%s`, v.nc, v.cnonce, v.qop)
	}
	return h + fmt.Sprintf(`, response="%s", opaque="%s"`, v.want, v.opaque)
}

func TestRFCVectors(t *testing.T) {
	for _, v := range rfcVectors {
		t.Run(v.name, func(t *testing.T) {
			alg := Algorithm(v.alg)
			// The reference implementation agrees with the published value.
			if got := refResponse(alg, v.user, v.realm, v.password, v.method, v.uri, v.nonce, v.nc, v.cnonce, v.qop); got != v.want {
				t.Fatalf("reference response = %s, want %s", got, v.want)
			}
			ha1 := HA1(alg, v.user, v.realm, v.password)

			// Through the parser, as received on the wire.
			c, err := ParseCredentials(v.header())
			if err != nil {
				t.Fatalf("ParseCredentials: %v", err)
			}
			want := Credentials{
				Username: v.user, Realm: v.realm, Nonce: v.nonce, URI: v.uri, Response: v.want,
				Algorithm: v.alg, CNonce: v.cnonce, QOP: v.qop, NC: v.nc, Opaque: v.opaque,
			}
			if c != want {
				t.Fatalf("ParseCredentials =\n%+v\nwant\n%+v", c, want)
			}
			if !Verify(c, v.method, ha1) {
				t.Fatalf("Verify rejected the RFC example")
			}
			// Any other response must be rejected.
			for i := range len(v.want) {
				b := []byte(v.want)
				if b[i] == '0' {
					b[i] = '1'
				} else {
					b[i] = '0'
				}
				c.Response = string(b)
				if Verify(c, v.method, ha1) {
					t.Fatalf("Verify accepted response tampered at %d: %s", i, c.Response)
				}
			}
		})
	}
}

func TestHA1(t *testing.T) {
	sha := sha256.Sum256([]byte("Mufasa:http-auth@example.org:Circle of Life"))
	tests := []struct {
		alg                   Algorithm
		user, realm, password string
		want                  string
	}{
		{MD5, "Mufasa", "testrealm@host.com", "Circle Of Life", "939e7578ed9e3c518a452acee763bce9"},
		{MD5, "Mufasa", "http-auth@example.org", "Circle of Life", "3d78807defe7de2157e2b0b6573a855f"},
		{SHA256, "Mufasa", "http-auth@example.org", "Circle of Life", "7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232"},
		{SHA256, "Mufasa", "http-auth@example.org", "Circle of Life", hex.EncodeToString(sha[:])},
		{"sha-256", "Mufasa", "http-auth@example.org", "Circle of Life", hex.EncodeToString(sha[:])},
		{"md5", "Mufasa", "testrealm@host.com", "Circle Of Life", "939e7578ed9e3c518a452acee763bce9"},
		{MD5, strings.Repeat("u", 300), "r", "p", hex.EncodeToString(func() []byte { s := md5.Sum([]byte(strings.Repeat("u", 300) + ":r:p")); return s[:] }())},
		{"MD5-sess", "Mufasa", "r", "p", ""},
		{"SHA-512-256", "Mufasa", "r", "p", ""},
		{"", "Mufasa", "r", "p", ""},
	}
	for _, tt := range tests {
		if got := HA1(tt.alg, tt.user, tt.realm, tt.password); got != tt.want {
			t.Errorf("HA1(%q, %.10q, %q, %q) = %q, want %q", tt.alg, tt.user, tt.realm, tt.password, got, tt.want)
		}
	}
}

func TestParseAlgorithms(t *testing.T) {
	tests := []struct {
		in      string
		want    []Algorithm
		wantErr bool
	}{
		{"sha-256,md5", []Algorithm{SHA256, MD5}, false},
		{"MD5", []Algorithm{MD5}, false},
		{" md5 ,\tSHA-256 ", []Algorithm{MD5, SHA256}, false},
		{"Sha-256", []Algorithm{SHA256}, false},
		{"", nil, true},
		{"   ", nil, true},
		{",", nil, true},
		{"md5,", nil, true},
		{"md5,,sha-256", nil, true},
		{"sha256", nil, true},
		{"md5-sess", nil, true},
		{"sha-512-256", nil, true},
		{"md5,MD5", nil, true},
		{"md5 sha-256", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseAlgorithms(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseAlgorithms(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("ParseAlgorithms(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// validCreds returns credentials for a SIP REGISTER with a correct response.
func validCreds(alg Algorithm, qop string) (Credentials, string) {
	c := Credentials{
		Username: "2001", Realm: "pbx.example.com", Nonce: "abcdefghijklmnop",
		URI: "sip:pbx.example.com", Algorithm: string(alg), Opaque: "o",
	}
	if qop != "" {
		c.QOP, c.CNonce, c.NC = qop, "0a4f113b", "00000001"
	}
	c.Response = refResponse(alg, c.Username, c.Realm, "s3cret", "REGISTER", c.URI, c.Nonce, c.NC, c.CNonce, c.QOP)
	return c, HA1(alg, c.Username, c.Realm, "s3cret")
}

func TestVerify(t *testing.T) {
	type mut func(c *Credentials, method, ha1 *string)
	tests := []struct {
		name string
		alg  Algorithm
		qop  string
		mut  mut
		want bool
	}{
		{"md5 auth ok", MD5, "auth", nil, true},
		{"sha256 auth ok", SHA256, "auth", nil, true},
		{"md5 no-qop ok", MD5, "", nil, true},
		{"sha256 no-qop ok", SHA256, "", nil, true},
		{"empty algorithm means MD5", MD5, "auth", func(c *Credentials, _, _ *string) { c.Algorithm = "" }, true},
		{"algorithm case-insensitive", SHA256, "auth", func(c *Credentials, _, _ *string) { c.Algorithm = "sha-256" }, true},
		{"uppercase response", MD5, "auth", func(c *Credentials, _, _ *string) { c.Response = strings.ToUpper(c.Response) }, true},
		{"uppercase ha1", SHA256, "auth", func(_ *Credentials, _, h *string) { *h = strings.ToUpper(*h) }, true},
		{"no-qop ignores cnonce/nc", MD5, "", func(c *Credentials, _, _ *string) { c.CNonce, c.NC = "zzz", "junk" }, true},

		{"wrong password", MD5, "auth", func(c *Credentials, _, h *string) { *h = HA1(MD5, c.Username, c.Realm, "S3cret") }, false},
		{"wrong password sha256", SHA256, "auth", func(c *Credentials, _, h *string) { *h = HA1(SHA256, c.Username, c.Realm, "x") }, false},
		{"wrong password no-qop", MD5, "", func(c *Credentials, _, h *string) { *h = HA1(MD5, c.Username, c.Realm, "x") }, false},
		{"wrong method", MD5, "auth", func(_ *Credentials, m, _ *string) { *m = "INVITE" }, false},
		{"method is case-sensitive", MD5, "auth", func(_ *Credentials, m, _ *string) { *m = "register" }, false},
		{"wrong method no-qop", MD5, "", func(_ *Credentials, m, _ *string) { *m = "INVITE" }, false},
		{"tampered response", MD5, "auth", func(c *Credentials, _, _ *string) { c.Response = flipHex(c.Response, 7) }, false},
		{"tampered response sha256", SHA256, "", func(c *Credentials, _, _ *string) { c.Response = flipHex(c.Response, 63) }, false},
		{"wrong uri", MD5, "auth", func(c *Credentials, _, _ *string) { c.URI = "sip:evil.example.com" }, false},
		{"wrong nonce", MD5, "auth", func(c *Credentials, _, _ *string) { c.Nonce += "x" }, false},
		{"wrong cnonce", MD5, "auth", func(c *Credentials, _, _ *string) { c.CNonce = "0a4f113c" }, false},
		{"wrong nc", MD5, "auth", func(c *Credentials, _, _ *string) { c.NC = "00000002" }, false},
		{"missing cnonce", MD5, "auth", func(c *Credentials, _, _ *string) { c.CNonce = "" }, false},
		{"missing nc", MD5, "auth", func(c *Credentials, _, _ *string) { c.NC = "" }, false},
		{"short nc", MD5, "auth", func(c *Credentials, _, _ *string) { c.NC = "0000001" }, false},
		{"non-hex nc", MD5, "auth", func(c *Credentials, _, _ *string) { c.NC = "0000000g" }, false},
		{"qop dropped", MD5, "auth", func(c *Credentials, _, _ *string) { c.QOP = "" }, false},
		{"qop auth-int", MD5, "auth", func(c *Credentials, _, _ *string) { c.QOP = "auth-int" }, false},
		{"qop list", MD5, "auth", func(c *Credentials, _, _ *string) { c.QOP = "auth,auth-int" }, false},
		{"qop auth-int with no-qop response", MD5, "", func(c *Credentials, _, _ *string) { c.QOP, c.CNonce, c.NC = "auth-int", "c", "00000001" }, false},
		{"qop auth-int with auth-style response", MD5, "auth", func(c *Credentials, _, _ *string) {
			c.QOP = "auth-int"
			c.Response = refResponse(MD5, c.Username, c.Realm, "s3cret", "REGISTER", c.URI, c.Nonce, c.NC, c.CNonce, c.QOP)
		}, false},
		{"qop AUTH accepted", MD5, "auth", func(c *Credentials, _, _ *string) {
			c.QOP = "AUTH"
			c.Response = refResponse(MD5, c.Username, c.Realm, "s3cret", "REGISTER", c.URI, c.Nonce, c.NC, c.CNonce, c.QOP)
		}, true},
		{"MD5-sess", MD5, "auth", func(c *Credentials, _, _ *string) { c.Algorithm = "MD5-sess" }, false},
		{"unknown algorithm", MD5, "auth", func(c *Credentials, _, _ *string) { c.Algorithm = "SHA-512" }, false},
		{"algorithm mismatch (sha256 creds, md5 ha1)", SHA256, "auth", func(c *Credentials, _, h *string) { *h = HA1(MD5, c.Username, c.Realm, "s3cret") }, false},
		{"algorithm switched to md5", SHA256, "auth", func(c *Credentials, _, _ *string) { c.Algorithm = "MD5" }, false},
		{"empty ha1", MD5, "auth", func(_ *Credentials, _, h *string) { *h = "" }, false},
		{"empty response", MD5, "auth", func(c *Credentials, _, _ *string) { c.Response = "" }, false},
		{"short response", MD5, "auth", func(c *Credentials, _, _ *string) { c.Response = c.Response[:31] }, false},
		{"long response", MD5, "auth", func(c *Credentials, _, _ *string) { c.Response += "0" }, false},
		{"ha1 used as response", MD5, "auth", func(c *Credentials, _, h *string) { c.Response = *h }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ha1 := validCreds(tt.alg, tt.qop)
			method := "REGISTER"
			if tt.mut != nil {
				tt.mut(&c, &method, &ha1)
			}
			if got := Verify(c, method, ha1); got != tt.want {
				t.Fatalf("Verify(%+v, %q, %q) = %v, want %v", c, method, ha1, got, tt.want)
			}
		})
	}
}

func flipHex(s string, i int) string {
	b := []byte(s)
	if b[i] == 'a' {
		b[i] = 'b'
	} else {
		b[i] = 'a'
	}
	return string(b)
}

// TestVerifyRandom cross-checks Verify against the reference implementation
// on random inputs, including ones longer than the internal stack buffer.
func TestVerifyRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	str := func(max int) string {
		b := make([]byte, 1+r.IntN(max))
		for i := range b {
			b[i] = byte(0x21 + r.IntN(0x5e))
		}
		return string(b)
	}
	for i := range 2000 {
		alg := []Algorithm{MD5, SHA256}[i%2]
		qop := []string{"", "auth"}[(i/2)%2]
		max := 40
		if i%10 == 0 {
			max = 700
		}
		user, realm, pass, method, uri, nonce := str(max), str(max), str(max), str(10), str(max), str(max)
		nc, cnonce := "", ""
		if qop != "" {
			nc, cnonce = fmt.Sprintf("%08x", r.Uint32()), str(max)
		}
		c := Credentials{
			Username: user, Realm: realm, Nonce: nonce, URI: uri, Algorithm: string(alg),
			CNonce: cnonce, QOP: qop, NC: nc,
			Response: refResponse(alg, user, realm, pass, method, uri, nonce, nc, cnonce, qop),
		}
		ha1 := HA1(alg, user, realm, pass)
		if !Verify(c, method, ha1) {
			t.Fatalf("Verify rejected valid %+v", c)
		}
		if Verify(c, method, HA1(alg, user, realm, pass+"x")) {
			t.Fatalf("Verify accepted wrong password for %+v", c)
		}
	}
}

func TestChallenge(t *testing.T) {
	tests := []struct {
		realm, nonce, opaque string
		alg                  Algorithm
		stale                bool
		want                 string
	}{
		{"R", "N", "O", MD5, false, `Digest realm="R", nonce="N", opaque="O", algorithm=MD5, qop="auth"`},
		{"R", "N", "O", SHA256, true, `Digest realm="R", nonce="N", opaque="O", algorithm=SHA-256, qop="auth", stale=TRUE`},
		{"pbx.example.com", "abc-_", "", MD5, false, `Digest realm="pbx.example.com", nonce="abc-_", algorithm=MD5, qop="auth"`},
		{"R", "N", "O", "", false, `Digest realm="R", nonce="N", opaque="O", algorithm=MD5, qop="auth"`},
		{"R", "N", "O", "sha-256", false, `Digest realm="R", nonce="N", opaque="O", algorithm=SHA-256, qop="auth"`},
		{`a"b\c`, "N", "O", MD5, false, `Digest realm="a\"b\\c", nonce="N", opaque="O", algorithm=MD5, qop="auth"`},
		{"evil\r\nX-Injected: 1", "N", "O", "MD5\r\nX: y", false, `Digest realm="evilX-Injected: 1", nonce="N", opaque="O", algorithm=MD5Xy, qop="auth"`},
	}
	for _, tt := range tests {
		if got := Challenge(tt.realm, tt.nonce, tt.opaque, tt.alg, tt.stale); got != tt.want {
			t.Errorf("Challenge(%q, %q, %q, %q, %v) =\n%s\nwant\n%s", tt.realm, tt.nonce, tt.opaque, tt.alg, tt.stale, got, tt.want)
		}
	}
}

func TestParseCredentials(t *testing.T) {
	base := Credentials{Username: "2001", Realm: "r", Nonce: "n", URI: "sip:x", Response: "abc", Algorithm: "MD5"}
	with := func(f func(c *Credentials)) Credentials { c := base; f(&c); return c }
	const req = `username="2001", realm="r", nonce="n", uri="sip:x", response="abc"`
	tests := []struct {
		name string
		in   string
		want Credentials
		err  error
	}{
		{"minimal", "Digest " + req, base, nil},
		{"scheme lower", "digest " + req, base, nil},
		{"scheme upper", "DIGEST " + req, base, nil},
		{"leading whitespace", " \tDigest " + req, base, nil},
		{"all unquoted", `Digest username=2001,realm=r,nonce=n,uri=sip:x,response=abc`, base, nil},
		{"extra spaces and tabs", "Digest   username = \"2001\" ,realm=\"r\",\t nonce =\t\"n\" ,  uri= \"sip:x\",response =\"abc\"   ", base, nil},
		{"empty list elements", "Digest ,, " + req + " ,,", base, nil},
		{"param names case-insensitive", `Digest UserName="2001", REALM="r", Nonce="n", URI="sip:x", Response="abc"`, base, nil},
		{"quoted commas", `Digest username="a,b", realm="r, with comma", nonce="n", uri="sip:x;p=1,2", response="abc"`,
			with(func(c *Credentials) { c.Username, c.Realm, c.URI = "a,b", "r, with comma", "sip:x;p=1,2" }), nil},
		{"quoted escapes", `Digest username="a\"b\\c", realm="\r", nonce="n", uri="sip:x", response="abc"`,
			with(func(c *Credentials) { c.Username, c.Realm = `a"b\c`, "r" }), nil},
		{"quoted equals and spaces", `Digest username="a = b", realm="r", nonce="n==", uri="sip:x", response="abc"`,
			with(func(c *Credentials) { c.Username, c.Nonce = "a = b", "n==" }), nil},
		{"unquoted algorithm qop nc", "Digest " + req + `, algorithm=SHA-256, qop=auth, nc=00000001, cnonce="c"`,
			with(func(c *Credentials) { c.Algorithm, c.QOP, c.NC, c.CNonce = "SHA-256", "auth", "00000001", "c" }), nil},
		{"quoted algorithm qop nc", "Digest " + req + `, algorithm="SHA-256", qop="auth", nc="00000001"`,
			with(func(c *Credentials) { c.Algorithm, c.QOP, c.NC = "SHA-256", "auth", "00000001" }), nil},
		{"algorithm normalised", "Digest " + req + `, algorithm=sha-256`, with(func(c *Credentials) { c.Algorithm = "SHA-256" }), nil},
		{"algorithm md5 normalised", "Digest " + req + `, algorithm=md5`, base, nil},
		{"unknown algorithm kept", "Digest " + req + `, algorithm=MD5-sess`, with(func(c *Credentials) { c.Algorithm = "MD5-sess" }), nil},
		{"opaque", "Digest " + req + `, opaque="xyz"`, with(func(c *Credentials) { c.Opaque = "xyz" }), nil},
		{"unknown params ignored", `Digest foo=bar, username="2001", userhash=false, realm="r", nonce="n", x="y,z", uri="sip:x", response="abc"`, base, nil},
		{"utf-8 username", `Digest username="Jürgen", realm="r", nonce="n", uri="sip:x", response="abc"`,
			with(func(c *Credentials) { c.Username = "Jürgen" }), nil},

		{"Basic", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", Credentials{}, ErrNotDigest},
		{"basic lower", "basic xyz", Credentials{}, ErrNotDigest},
		{"Basic xyz", "Basic xyz", Credentials{}, ErrNotDigest},
		{"Bearer", "Bearer abc.def.ghi", Credentials{}, ErrNotDigest},
		{"made-up scheme", "Frobnicate " + req, Credentials{}, ErrNotDigest},
		{"scheme only other", "NTLM", Credentials{}, ErrNotDigest},
		{"Digestive", "Digestive " + req, Credentials{}, ErrNotDigest},

		{"empty", "", Credentials{}, ErrMalformed},
		{"blank", "  \t ", Credentials{}, ErrMalformed},
		{"scheme only", "Digest", Credentials{}, ErrMalformed},
		{"scheme and space", "Digest  ", Credentials{}, ErrMalformed},
		{"no scheme", req, Credentials{}, ErrMalformed},
		{"scheme glued", "Digest," + req, Credentials{}, ErrMalformed},
		{"missing username", `Digest realm="r", nonce="n", uri="sip:x", response="abc"`, Credentials{}, ErrMalformed},
		{"missing realm", `Digest username="2001", nonce="n", uri="sip:x", response="abc"`, Credentials{}, ErrMalformed},
		{"missing nonce", `Digest username="2001", realm="r", uri="sip:x", response="abc"`, Credentials{}, ErrMalformed},
		{"missing uri", `Digest username="2001", realm="r", nonce="n", response="abc"`, Credentials{}, ErrMalformed},
		{"missing response", `Digest username="2001", realm="r", nonce="n", uri="sip:x"`, Credentials{}, ErrMalformed},
		{"empty username", `Digest username="", realm="r", nonce="n", uri="sip:x", response="abc"`, Credentials{}, ErrMalformed},
		{"empty response", `Digest username="2001", realm="r", nonce="n", uri="sip:x", response=""`, Credentials{}, ErrMalformed},
		{"bare empty value", `Digest username=, realm="r", nonce="n", uri="sip:x", response="abc"`, Credentials{}, ErrMalformed},
		{"value at end missing", "Digest " + req + ", qop=", Credentials{}, ErrMalformed},
		{"missing comma", `Digest username="2001" realm="r", nonce="n", uri="sip:x", response="abc"`, Credentials{}, ErrMalformed},
		{"unterminated quote", `Digest username="2001, realm="r", nonce="n", uri="sip:x", response="abc`, Credentials{}, ErrMalformed},
		{"trailing backslash", "Digest " + req + `, opaque="x\`, Credentials{}, ErrMalformed},
		{"no equals", "Digest " + req + ", stale", Credentials{}, ErrMalformed},
		{"no name", "Digest " + req + `, ="x"`, Credentials{}, ErrMalformed},
		{"duplicate username", "Digest " + req + `, username="evil"`, Credentials{}, ErrMalformed},
		{"duplicate case-insensitive", "Digest " + req + `, Response="evil"`, Credentials{}, ErrMalformed},
		{"control char in quoted", "Digest " + req + ", opaque=\"a\r\nb\"", Credentials{}, ErrMalformed},
		{"NUL in quoted", "Digest " + req + ", opaque=\"a\x00b\"", Credentials{}, ErrMalformed},
		{"NUL after scheme", "Digest\x00" + req, Credentials{}, ErrMalformed},
		{"quote in bare value", "Digest " + req + `, opaque=a"b"`, Credentials{}, ErrMalformed},
		{"garbage after quoted", "Digest " + req + `, opaque="a"b`, Credentials{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCredentials(tt.in)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ParseCredentials(%q) error = %v, want %v", tt.in, err, tt.err)
				}
				if tt.err == ErrMalformed && errors.Is(err, ErrNotDigest) || tt.err == ErrNotDigest && errors.Is(err, ErrMalformed) {
					t.Fatalf("error %v matches both sentinels", err)
				}
				if got != (Credentials{}) {
					t.Fatalf("ParseCredentials(%q) returned non-zero credentials %+v with error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCredentials(%q) error: %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseCredentials(%q) =\n%+v\nwant\n%+v", tt.in, got, tt.want)
			}
		})
	}
}

// checkParse asserts the ParseCredentials contract on arbitrary input.
func checkParse(t *testing.T, in string) {
	t.Helper()
	c, err := ParseCredentials(in)
	if err != nil {
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNotDigest) {
			t.Fatalf("ParseCredentials(%q): unexpected error %v", in, err)
		}
		return
	}
	if c.Username == "" || c.Realm == "" || c.Nonce == "" || c.URI == "" || c.Response == "" || c.Algorithm == "" {
		t.Fatalf("ParseCredentials(%q) succeeded with missing fields: %+v", in, c)
	}
	// Re-serialising with every value quoted must parse back identically.
	again, err := ParseCredentials(formatCreds(c))
	if err != nil || again != c {
		t.Fatalf("round trip of %q:\n%s\n-> %+v, %v\nwant %+v", in, formatCreds(c), again, err, c)
	}
}

func formatCreds(c Credentials) string {
	var b strings.Builder
	b.WriteString("Digest")
	for i, name := range paramNames {
		v := *c.field(i)
		if v == "" {
			continue
		}
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(" " + name + "=")
		writeQuoted(&b, v)
	}
	return b.String()
}

func TestParseCredentialsGarbage(t *testing.T) {
	valid := rfcVectors[0].header()
	// Every truncation and every single-byte corruption of a valid header.
	for i := range len(valid) + 1 {
		checkParse(t, valid[:i])
		checkParse(t, valid[i:])
	}
	for i := range len(valid) {
		for _, c := range []byte{'"', '\\', ',', '=', ' ', 0, '\r', 0xff} {
			b := []byte(valid)
			b[i] = c
			checkParse(t, string(b))
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte("Digest =,\"\\ \tabcrnu\x00\xff")
	for range 20000 {
		b := make([]byte, r.IntN(64))
		for i := range b {
			if r.IntN(2) == 0 {
				b[i] = byte(r.Uint32())
			} else {
				b[i] = alphabet[r.IntN(len(alphabet))]
			}
		}
		checkParse(t, string(b))
		checkParse(t, "Digest "+string(b))
	}
	checkParse(t, "Digest "+strings.Repeat(`a="`, 100000))
	checkParse(t, "Digest "+strings.Repeat(`\`, 100000))
	checkParse(t, strings.Repeat("Digest ", 100000))
}

func FuzzParseCredentials(f *testing.F) {
	for _, v := range rfcVectors {
		f.Add(v.header())
	}
	f.Add(`Digest username="a,b", realm="r\"x", nonce=n, uri="sip:x", response=abc, algorithm=sha-256`)
	f.Add("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
	f.Add("Digest ,,username=\"\\")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		checkParse(t, in)
	})
}

// clock is a goroutine-safe injectable clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestNonceFormat(t *testing.T) {
	clk := newClock()
	n := NewNonces(testKey, time.Minute, clk.now)
	seen := map[string]bool{}
	for range 1000 {
		s := n.New()
		if len(s) != NonceLen || len(s) > 48 {
			t.Fatalf("nonce %q has length %d", s, len(s))
		}
		if strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			t.Fatalf("nonce %q is not base64url", s)
		}
		if seen[s] {
			t.Fatalf("duplicate nonce %q", s)
		}
		seen[s] = true
	}
	// The tag is standard HMAC-SHA256 over time||random, and the time is the clock's.
	for _, key := range [][]byte{testKey, []byte("sixteen bytes!!!"), []byte(strings.Repeat("long key ", 20))} {
		n := NewNonces(key, time.Minute, clk.now)
		raw, err := base64.RawURLEncoding.DecodeString(n.New())
		if err != nil || len(raw) != 36 {
			t.Fatalf("decode: %v, len %d", err, len(raw))
		}
		if got := int64(binary.BigEndian.Uint64(raw[:8])); got != clk.ns.Load() {
			t.Errorf("issue time = %d, want %d", got, clk.ns.Load())
		}
		m := hmac.New(sha256.New, key)
		m.Write(raw[:20])
		if want := m.Sum(nil)[:16]; !hmac.Equal(raw[20:], want) {
			t.Errorf("key len %d: tag %x, want HMAC-SHA256 %x", len(key), raw[20:], want)
		}
	}
}

func TestNonceCheck(t *testing.T) {
	const life = 5 * time.Minute
	clk := newClock()
	n := NewNonces(testKey, life, clk.now)
	other := NewNonces([]byte("another key, 16+ bytes"), life, clk.now)

	issued := n.New()
	if got := n.Check(issued); got != NonceValid {
		t.Fatalf("fresh nonce: %v", got)
	}
	if got := other.Check(issued); got != NonceInvalid {
		t.Errorf("nonce from another key: %v, want invalid", got)
	}
	if got := NewNonces(nil, life, clk.now).Check(issued); got != NonceInvalid {
		t.Errorf("nonce checked by random-key instance: %v, want invalid", got)
	}
	if got := other.Check(other.New()); got != NonceValid {
		t.Errorf("other's own nonce: %v", got)
	}

	// Every single-character change is detected.
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range len(issued) {
		for _, c := range []byte{b64[(strings.IndexByte(b64, issued[i])+1)%64], b64[(strings.IndexByte(b64, issued[i])+32)%64], '+', '/', '=', ' '} {
			b := []byte(issued)
			b[i] = c
			if got := n.Check(string(b)); got != NonceInvalid {
				t.Fatalf("nonce with char %d changed to %q: %v, want invalid", i, c, got)
			}
		}
	}

	garbage := []string{
		"", "x", "====", issued[:47], issued + "A", issued + "=", " " + issued, issued[:47] + "\n",
		strings.Repeat("A", 48), strings.Repeat("!", 48), strings.Repeat("é", 24), strings.Repeat("A", 1<<20),
		"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "dcd98b7102dd2f0e8b11d0f600bfb0c093",
		strings.ToUpper(issued), base64.StdEncoding.EncodeToString(make([]byte, 36)),
	}
	for _, g := range garbage {
		if got := n.Check(g); got != NonceInvalid {
			t.Errorf("Check(%.60q) = %v, want invalid", g, got)
		}
	}

	// Lifetime boundary via the injected clock.
	clk.advance(life)
	if got := n.Check(issued); got != NonceValid {
		t.Errorf("at exactly lifetime: %v, want valid", got)
	}
	clk.advance(time.Nanosecond)
	if got := n.Check(issued); got != NonceStale {
		t.Errorf("after lifetime: %v, want stale", got)
	}
	clk.advance(365 * 24 * time.Hour)
	if got := n.Check(issued); got != NonceStale {
		t.Errorf("a year later: %v, want stale", got)
	}
	if got := other.Check(issued); got != NonceInvalid {
		t.Errorf("stale nonce from another key: %v, want invalid", got)
	}

	// Issued in the future (e.g. by a server whose clock is ahead).
	future := newClock()
	future.advance(time.Hour)
	fromFuture := NewNonces(testKey, life, future.now).New()
	checker := NewNonces(testKey, life, newClock().now)
	if got := checker.Check(fromFuture); got != NonceInvalid {
		t.Errorf("nonce issued 1h in the future: %v, want invalid", got)
	}
	slight := newClock()
	slight.advance(MaxClockSkew)
	if got := checker.Check(NewNonces(testKey, life, slight.now).New()); got != NonceValid {
		t.Errorf("nonce issued MaxClockSkew in the future: %v, want valid", got)
	}
	slight.advance(time.Nanosecond)
	if got := checker.Check(NewNonces(testKey, life, slight.now).New()); got != NonceInvalid {
		t.Errorf("nonce issued just beyond MaxClockSkew in the future: %v, want invalid", got)
	}
}

func TestNewNoncesDefaults(t *testing.T) {
	n := NewNonces(nil, 0, nil)
	if n.Lifetime() != DefaultLifetime {
		t.Errorf("lifetime = %v, want %v", n.Lifetime(), DefaultLifetime)
	}
	if got := n.Check(n.New()); got != NonceValid {
		t.Errorf("real clock, random key: %v", got)
	}
	if NewNonces(nil, 0, nil).Check(n.New()) != NonceInvalid {
		t.Errorf("two random-key instances accept each other's nonces")
	}
	// The key is copied.
	key := append([]byte(nil), testKey...)
	m := NewNonces(key, 0, nil)
	s := m.New()
	key[0] ^= 1
	if m.Check(s) != NonceValid {
		t.Errorf("mutating the caller's key slice changed the Nonces key")
	}
	for _, k := range [][]byte{{}, []byte("fifteen bytes!!")} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewNonces with %d-byte key did not panic", len(k))
				}
			}()
			NewNonces(k, 0, nil)
		}()
	}
}

// TestNonceRealm: a nonce is bound to the realm it was issued for (case
// aside): another realm, or none, finds it invalid, stale or not.
func TestNonceRealm(t *testing.T) {
	clk := newClock()
	n := NewNonces(testKey, time.Minute, clk.now)
	pbx, plain := n.NewFor("pbx.test"), n.New()
	for _, tt := range []struct {
		nonce, realm string
		want         NonceStatus
	}{
		{pbx, "pbx.test", NonceValid},
		{pbx, "PBX.Test", NonceValid},
		{pbx, "other.example", NonceInvalid},
		{pbx, "", NonceInvalid},
		{plain, "", NonceValid},
		{plain, "pbx.test", NonceInvalid},
		{n.NewFor(strings.Repeat("a", 300)), strings.Repeat("A", 300), NonceValid},
		{n.NewFor(strings.Repeat("a", 300)), strings.Repeat("a", 299), NonceInvalid},
	} {
		if got := n.CheckFor(tt.nonce, tt.realm); got != tt.want {
			t.Errorf("CheckFor(%.12q, %.20q) = %v, want %v", tt.nonce, tt.realm, got, tt.want)
		}
	}
	if got := n.Check(pbx); got != NonceInvalid {
		t.Errorf("Check(realm nonce) = %v, want invalid", got)
	}
	clk.advance(2 * time.Minute)
	if got, other := n.CheckFor(pbx, "pbx.test"), n.CheckFor(pbx, "other.example"); got != NonceStale || other != NonceInvalid {
		t.Errorf("after the lifetime: own realm %v (want stale), other realm %v (want invalid)", got, other)
	}
}

func TestUseCount(t *testing.T) {
	clk := newClock()
	n := NewNonces(testKey, time.Minute, clk.now)
	a, b, c := n.New(), n.New(), n.New()
	steps := []struct {
		nonce, nc string
		want      bool
	}{
		{a, "00000001", true},
		{a, "00000001", false}, // replay
		{a, "00000002", true},
		{a, "00000001", false}, // lower
		{b, "00000001", true},  // independent nonce
		{a, "00000005", true},  // gaps are fine
		{a, "00000003", false}, // out of order
		{a, "00000005", false},
		{a, "0000000a", true},
		{a, "0000000A", false}, // same count, other case
		{a, "0000000B", true},
		{b, "00000002", true},
		{a, "", false}, // no qop on a nonce already used with counts
		{c, "", true},  // no qop: accepted once...
		{c, "", false}, // ...then the nonce is used up
		{c, "00000001", false},
		{c, "ffffffff", false},
		{a, "00000000", false}, // not greater than anything
		{n.New(), "00000000", false},
		{a, "1", false},         // malformed
		{a, "000000010", false}, // malformed
		{a, "0000000g", false},
		{a, " 0000000c", false},
		{a, "ffffffff", true},
		{a, "ffffffff", false},
		{"not-our-nonce", "00000001", true}, // foreign strings are tracked too
		{"not-our-nonce", "00000001", false},
		{strings.Repeat("x", 1000), "00000001", true},
		{strings.Repeat("x", 1000), "00000001", false},
		{strings.Repeat("x", 999), "00000001", true},
	}
	for i, s := range steps {
		if got := n.UseCount(s.nonce, s.nc); got != s.want {
			t.Fatalf("step %d: UseCount(%.12q, %q) = %v, want %v", i, s.nonce, s.nc, got, s.want)
		}
	}
}

func (n *Nonces) entries() int {
	total := 0
	for i := range n.shards {
		s := &n.shards[i]
		s.mu.Lock()
		total += len(s.m)
		s.mu.Unlock()
	}
	return total
}

func TestUseCountForgets(t *testing.T) {
	const life = time.Minute
	clk := newClock()
	n := NewNonces(testKey, life, clk.now)

	// An entry survives for as long as its nonce can be fresh.
	a := n.New()
	if !n.UseCount(a, "00000001") {
		t.Fatal("first use rejected")
	}
	clk.advance(life)
	for range 1000 { // hit every shard so that all of them prune
		n.UseCount(n.New(), "00000001")
	}
	if n.Check(a) != NonceValid {
		t.Fatal("nonce should still be valid at exactly its lifetime")
	}
	if n.UseCount(a, "00000001") {
		t.Fatal("replay accepted while nonce still valid: entry forgotten too early")
	}

	// After a burst, everything older than the lifetime is forgotten.
	const burst = 20000
	for range burst {
		n.UseCount(n.New(), "00000001")
	}
	if got := n.entries(); got < burst {
		t.Fatalf("entries = %d, want >= %d", got, burst)
	}
	clk.advance(life + MaxClockSkew + n.pruneInterval() + time.Second)
	fresh := 0
	hit := map[byte]bool{}
	for len(hit) < numShards {
		s := n.New()
		hit[makeNCKey(s)[0]%numShards] = true
		if !n.UseCount(s, "00000001") {
			t.Fatal("fresh nonce rejected")
		}
		fresh++
	}
	if got := n.entries(); got != fresh {
		t.Fatalf("entries after expiry = %d, want %d (only the fresh ones)", got, fresh)
	}
	if n.Check(a) != NonceStale {
		t.Fatal("forgotten nonce must already be stale")
	}
}

// TestUseCountPrunesPartially covers the in-place deletion path, where only
// a minority of a shard's entries have expired.
func TestUseCountPrunesPartially(t *testing.T) {
	const life = time.Minute
	clk := newClock()
	n := NewNonces(testKey, life, clk.now)
	old := make([]string, 1000)
	for i := range old {
		old[i] = n.New()
		n.UseCount(old[i], "00000001")
	}
	clk.advance(life / 2)
	young := make([]string, 3000)
	for i := range young {
		young[i] = n.New()
		n.UseCount(young[i], "00000001")
	}
	clk.advance(life/2 + MaxClockSkew + 5*time.Second) // old expired, young not
	fresh := 0
	hit := map[byte]bool{}
	for len(hit) < numShards {
		s := n.New()
		hit[makeNCKey(s)[0]%numShards] = true
		n.UseCount(s, "00000001")
		fresh++
	}
	if got, want := n.entries(), len(young)+fresh; got != want {
		t.Fatalf("entries = %d, want %d", got, want)
	}
	for _, s := range young[:100] {
		if n.UseCount(s, "00000001") {
			t.Fatal("young entry forgotten")
		}
	}
	for _, s := range old[:100] {
		if n.Check(s) != NonceStale {
			t.Fatal("forgotten nonce not stale")
		}
	}
}

func TestUseCountConcurrent(t *testing.T) {
	n := NewNonces(testKey, time.Minute, nil)
	const goroutines, counts = 16, 300

	// Shared nonce: each count is accepted at most once across goroutines and
	// accepted counts are strictly increasing per goroutine.
	shared := n.New()
	var accepted [counts + 1]atomic.Int32
	var total atomic.Int32
	// Private nonces: every count is accepted.
	var wg sync.WaitGroup
	errs := make(chan string, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := n.New()
			for i := 1; i <= counts; i++ {
				nc := fmt.Sprintf("%08x", i)
				if n.UseCount(shared, nc) {
					accepted[i].Add(1)
					total.Add(1)
				}
				if !n.UseCount(own, nc) {
					errs <- fmt.Sprintf("goroutine %d: private nonce count %d rejected", g, i)
					return
				}
				if n.Check(own) != NonceValid {
					errs <- "private nonce invalid"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for i := range accepted {
		if c := accepted[i].Load(); c > 1 {
			t.Errorf("count %d accepted %d times", i, c)
		}
	}
	if total.Load() == 0 || accepted[counts].Load() != 1 {
		t.Errorf("shared nonce: %d counts accepted, highest accepted %d", total.Load(), accepted[counts].Load())
	}
}

// TestEndToEnd runs a registrar-style exchange: challenge, answer, verify,
// replay, and a stale nonce.
func TestEndToEnd(t *testing.T) {
	const realm, user, pass = "pbx.example.com", "2001", "hunter2"
	clk := newClock()
	nonces := NewNonces(testKey, 5*time.Minute, clk.now)
	store := map[Algorithm]string{MD5: HA1(MD5, user, realm, pass), SHA256: HA1(SHA256, user, realm, pass)}

	authenticate := func(hdr string) (ok bool, stale bool) {
		c, err := ParseCredentials(hdr)
		if err != nil || c.Realm != realm || c.Username != user {
			return false, false
		}
		st := nonces.CheckFor(c.Nonce, c.Realm)
		if st == NonceInvalid || !Verify(c, "REGISTER", store[Algorithm(c.Algorithm)]) {
			return false, false
		}
		if st == NonceStale {
			return false, true
		}
		return nonces.UseCount(c.Nonce, c.NC), false
	}
	answer := func(alg Algorithm, nonce, nc, password string) string {
		resp := refResponse(alg, user, realm, password, "REGISTER", "sip:"+realm, nonce, nc, "cn0nce", "auth")
		return fmt.Sprintf(`Digest username="%s",realm="%s",nonce="%s",uri="sip:%s",response="%s",algorithm=%s,cnonce="cn0nce",qop=auth,nc=%s,opaque="op"`,
			user, realm, nonce, realm, resp, alg, nc)
	}
	for _, alg := range []Algorithm{MD5, SHA256} {
		ch := Challenge(realm, nonces.NewFor(realm), "op", alg, false)
		nonce := ch[strings.Index(ch, `nonce="`)+7:]
		nonce = nonce[:strings.IndexByte(nonce, '"')]

		if ok, _ := authenticate(answer(alg, nonce, "00000001", pass)); !ok {
			t.Fatalf("%s: valid REGISTER rejected", alg)
		}
		if ok, _ := authenticate(answer(alg, nonce, "00000001", pass)); ok {
			t.Fatalf("%s: replayed REGISTER accepted", alg)
		}
		if ok, _ := authenticate(answer(alg, nonce, "00000002", pass)); !ok {
			t.Fatalf("%s: next nc rejected", alg)
		}
		if ok, _ := authenticate(answer(alg, nonce, "00000003", "wrong")); ok {
			t.Fatalf("%s: wrong password accepted", alg)
		}
		forged := nonces.NewFor(realm)
		if forged[47] == 'A' {
			forged = forged[:47] + "B"
		} else {
			forged = forged[:47] + "A"
		}
		if ok, _ := authenticate(answer(alg, forged, "00000001", pass)); ok {
			t.Fatalf("%s: forged nonce accepted", alg)
		}
		if ok, _ := authenticate(answer(alg, nonces.NewFor("other.example"), "00000001", pass)); ok {
			t.Fatalf("%s: nonce of another realm accepted", alg)
		}
		clk.advance(6 * time.Minute)
		if ok, stale := authenticate(answer(alg, nonce, "00000004", pass)); ok || !stale {
			t.Fatalf("%s: expired nonce: ok=%v stale=%v, want stale", alg, ok, stale)
		}
	}
}

func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	v := rfcVectors[1]
	hdr := v.header()
	c, _ := ParseCredentials(hdr)
	ha1 := HA1(SHA256, v.user, v.realm, v.password)
	n := NewNonces(testKey, time.Minute, nil)
	nonce := n.New()
	realmNonce := n.NewFor("pbx.test")
	nc := 0
	ncs := make([]string, 2000)
	for i := range ncs {
		ncs[i] = fmt.Sprintf("%08x", i+1)
	}
	n.UseCount(nonce, ncs[0])
	tests := []struct {
		name string
		max  float64
		f    func()
	}{
		{"ParseCredentials", 0, func() { ParseCredentials(hdr) }},
		{"Verify", 0, func() { Verify(c, "GET", ha1) }},
		{"Check", 0, func() { n.Check(nonce) }},
		{"CheckFor", 0, func() { n.CheckFor(realmNonce, "PBX.test") }},
		{"New", 1, func() { n.New() }},
		{"NewFor", 1, func() { n.NewFor("pbx.test") }},
		{"UseCount", 0, func() { nc++; n.UseCount(nonce, ncs[nc]) }},
		{"Challenge", 1, func() { Challenge(v.realm, nonce, v.opaque, SHA256, true) }},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(1000, tt.f); got > tt.max {
			t.Errorf("%s: %v allocs/op, want <= %v", tt.name, got, tt.max)
		}
	}
}

func BenchmarkVerifyMD5(b *testing.B) {
	v := rfcVectors[0]
	c, err := ParseCredentials(v.header())
	if err != nil {
		b.Fatal(err)
	}
	ha1 := HA1(MD5, v.user, v.realm, v.password)
	b.ReportAllocs()
	for b.Loop() {
		if !Verify(c, v.method, ha1) {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkVerifySHA256(b *testing.B) {
	v := rfcVectors[1]
	c, err := ParseCredentials(v.header())
	if err != nil {
		b.Fatal(err)
	}
	ha1 := HA1(SHA256, v.user, v.realm, v.password)
	b.ReportAllocs()
	for b.Loop() {
		if !Verify(c, v.method, ha1) {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkParseCredentials(b *testing.B) {
	hdr := rfcVectors[0].header()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCredentials(hdr); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNonceNewCheck(b *testing.B) {
	n := NewNonces(testKey, time.Minute, nil)
	b.ReportAllocs()
	for b.Loop() {
		if n.Check(n.New()) != NonceValid {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkUseCountParallel(b *testing.B) {
	n := NewNonces(testKey, time.Minute, nil)
	ncs := make([]string, 1<<12)
	for i := range ncs {
		ncs[i] = fmt.Sprintf("%08x", i+1)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		nonce, i := n.New(), 0
		for pb.Next() {
			if i == len(ncs) {
				nonce, i = n.New(), 0
			}
			if !n.UseCount(nonce, ncs[i]) {
				b.Fatal("rejected")
			}
			i++
		}
	})
}

func TestLookupParam(t *testing.T) {
	for i, name := range paramNames {
		for _, s := range []string{name, strings.ToUpper(name)} {
			if got := lookupParam(s); got != i {
				t.Errorf("lookupParam(%q) = %d, want %d", s, got, i)
			}
		}
	}
	for _, s := range []string{"", "n", "ncx", "userhash", "domain", "stale", "auth-param", "usernamex"} {
		if got := lookupParam(s); got != -1 {
			t.Errorf("lookupParam(%q) = %d, want -1", s, got)
		}
	}
}

func BenchmarkNonceNewCheckRealm(b *testing.B) {
	n := NewNonces(testKey, time.Minute, nil)
	b.ReportAllocs()
	for b.Loop() {
		if n.CheckFor(n.NewFor("pbx.example.com"), "PBX.example.com") != NonceValid {
			b.Fatal("invalid")
		}
	}
}
