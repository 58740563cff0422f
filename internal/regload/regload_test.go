package regload

import (
	"bufio"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/digest"
)

// TestDigestVerifies: the client's answers (with and without qop, with an
// opaque) are what switchboard's own digest verifier accepts, and a wrong
// password is not.
func TestDigestVerifies(t *testing.T) {
	ha1 := digest.HA1(digest.MD5, "100001", "127.0.0.1", "pw100001")
	for _, qop := range []string{"", "auth"} {
		for _, opaque := range []string{"", "op4"} {
			v := Digest("100001", "127.0.0.1", "pw100001", "n0nce", opaque, "sip:127.0.0.1", qop)
			c, err := digest.ParseCredentials(v)
			if err != nil {
				t.Fatalf("qop %q: %v: %s", qop, err, v)
			}
			if !digest.Verify(c, "REGISTER", ha1) {
				t.Fatalf("qop %q opaque %q: the answer does not verify: %s", qop, opaque, v)
			}
			if c.Opaque != opaque {
				t.Fatalf("opaque %q, want %q", c.Opaque, opaque)
			}
			bad, _ := digest.ParseCredentials(Digest("100001", "127.0.0.1", "wrong", "n0nce", opaque, "sip:127.0.0.1", qop))
			if digest.Verify(bad, "REGISTER", ha1) {
				t.Fatalf("qop %q: a wrong password verifies", qop)
			}
		}
	}
}

// TestReadMessage: messages are split off a stream by Content-Length,
// keepalives are skipped, and oversized or malformed ones are errors.
func TestReadMessage(t *testing.T) {
	a := "SIP/2.0 401 Unauthorized\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"
	b := "SIP/2.0 200 OK\r\nl: 5\r\nCall-ID: y\r\n\r\nhello"
	r := bufio.NewReader(strings.NewReader("\r\n\r\n" + a + b))
	for _, want := range []string{a, b} {
		got, err := ReadMessage(r)
		if err != nil || string(got) != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
	if _, err := ReadMessage(r); err == nil {
		t.Fatal("no error at the end of the stream")
	}
	for name, in := range map[string]string{
		"bad length":  "SIP/2.0 200 OK\r\nContent-Length: x\r\n\r\n",
		"huge body":   "SIP/2.0 200 OK\r\nContent-Length: 99999999\r\n\r\n",
		"short body":  "SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nabc",
		"huge header": "SIP/2.0 200 OK\r\nX: " + strings.Repeat("a", 70000) + "\r\n\r\n",
	} {
		if _, err := ReadMessage(bufio.NewReaderSize(strings.NewReader(in), 16<<10)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestRunConfig: a configuration that cannot run is an error, not a panic
// or an endless loop.
func TestRunConfig(t *testing.T) {
	pw := func(int) string { return "x" }
	for name, c := range map[string]Config{
		"transport": {Transport: "SCTP", Addr: "127.0.0.1:9", Domain: "d", Clients: 1, Users: 1, Duration: time.Second, Password: pw},
		"clients":   {Transport: "UDP", Addr: "127.0.0.1:9", Domain: "d", Clients: 0, Users: 1, Duration: time.Second, Password: pw},
		"users":     {Transport: "UDP", Addr: "127.0.0.1:9", Domain: "d", Clients: 4, Users: 2, Duration: time.Second, Password: pw},
		"duration":  {Transport: "UDP", Addr: "127.0.0.1:9", Domain: "d", Clients: 1, Users: 1, Password: pw},
	} {
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseChallenge(t *testing.T) {
	ch, ok := ParseChallenge("SIP/2.0 407 Proxy Authentication Required\r\n" +
		`Proxy-Authenticate: Digest realm="pbx.test", nonce="n1", opaque="o1", qop="auth-int,auth", algorithm=MD5` + "\r\n\r\n")
	if !ok || ch != (Challenge{Realm: "pbx.test", Nonce: "n1", Opaque: "o1", Qop: "auth"}) {
		t.Fatalf("got %+v %v", ch, ok)
	}
	if ch, ok := ParseChallenge(`Digest realm="r", nonce="n", qop="auth-int"`); !ok || ch.Qop != "" || ch.Opaque != "" {
		t.Fatalf("qop auth-int only: got %+v %v", ch, ok)
	}
	if _, ok := ParseChallenge(`Digest realm="r"`); ok {
		t.Fatal("a challenge without a nonce was accepted")
	}
}
