package digest

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVerifyBinary: VerifyBinary agrees with Verify on the hex form of the
// HA1 it is given, and rejects an HA1 of the wrong length.
func TestVerifyBinary(t *testing.T) {
	for _, alg := range []Algorithm{MD5, SHA256} {
		for _, qop := range []string{"", "auth"} {
			c, ha1 := validCreds(alg, qop)
			bin := unhex(t, ha1)
			if !VerifyBinary(c, "REGISTER", bin) {
				t.Errorf("%s qop=%q: right HA1 rejected", alg, qop)
			}
			if VerifyBinary(c, "INVITE", bin) {
				t.Errorf("%s qop=%q: wrong method accepted", alg, qop)
			}
			wrong := unhex(t, HA1(alg, c.Username, c.Realm, "S3cret"))
			if VerifyBinary(c, "REGISTER", wrong) {
				t.Errorf("%s qop=%q: wrong password accepted", alg, qop)
			}
			for _, n := range []int{0, 1, len(bin) - 1, len(bin) + 1, 48, 64, 65, 200} {
				b := make([]byte, n)
				copy(b, bin)
				if VerifyBinary(c, "REGISTER", b) {
					t.Errorf("%s qop=%q: %d-byte HA1 accepted", alg, qop, n)
				}
			}
		}
	}
	// The SHA-256 HA1 with MD5 credentials, and the other way round.
	c, _ := validCreds(MD5, "auth")
	if VerifyBinary(c, "REGISTER", unhex(t, HA1(SHA256, c.Username, c.Realm, "s3cret"))) {
		t.Error("SHA-256 HA1 accepted for MD5 credentials")
	}
	c, _ = validCreds(SHA256, "auth")
	if VerifyBinary(c, "REGISTER", unhex(t, HA1(MD5, c.Username, c.Realm, "s3cret"))) {
		t.Error("MD5 HA1 accepted for SHA-256 credentials")
	}
}

// TestVerifyBinaryRandom cross-checks VerifyBinary against Verify on random
// inputs, valid and not.
func TestVerifyBinaryRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	str := func(max int) string {
		b := make([]byte, 1+r.IntN(max))
		for i := range b {
			b[i] = byte(0x21 + r.IntN(0x5e))
		}
		return string(b)
	}
	for i := range 1000 {
		alg := []Algorithm{MD5, SHA256}[i%2]
		qop := []string{"", "auth"}[(i/2)%2]
		user, realm, pass, uri, nonce := str(40), str(40), str(40), str(40), str(600)
		nc, cnonce := "", ""
		if qop != "" {
			nc, cnonce = fmt.Sprintf("%08x", r.Uint32()), str(40)
		}
		c := Credentials{Username: user, Realm: realm, Nonce: nonce, URI: uri, Algorithm: string(alg),
			CNonce: cnonce, QOP: qop, NC: nc,
			Response: refResponse(alg, user, realm, pass, "REGISTER", uri, nonce, nc, cnonce, qop)}
		if i%3 == 0 {
			c.Response = flipHex(c.Response, r.IntN(len(c.Response)))
		}
		ha1 := HA1(alg, user, realm, pass)
		if got, want := VerifyBinary(c, "REGISTER", unhex(t, ha1)), Verify(c, "REGISTER", ha1); got != want {
			t.Fatalf("VerifyBinary = %v, Verify = %v for %+v", got, want, c)
		}
	}
}

func TestVerifyBinaryAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	for _, alg := range []Algorithm{MD5, SHA256} {
		c, ha1 := validCreds(alg, "auth")
		bin := unhex(t, ha1)
		if got := testing.AllocsPerRun(1000, func() { VerifyBinary(c, "REGISTER", bin) }); got != 0 {
			t.Errorf("%s: %v allocs/op, want 0", alg, got)
		}
	}
}

func BenchmarkVerifyBinaryMD5(b *testing.B) {
	c, ha1 := validCreds(MD5, "auth")
	bin := unhex(b, ha1)
	b.ReportAllocs()
	for b.Loop() {
		if !VerifyBinary(c, "REGISTER", bin) {
			b.Fatal("verify failed")
		}
	}
}
