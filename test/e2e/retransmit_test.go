package e2e

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// udpPhone is a raw SIP-over-UDP client: it sends exact bytes, so a test
// can retransmit a request verbatim.
type udpPhone struct {
	t    *testing.T
	conn *net.UDPConn
	srv  *net.UDPAddr
}

func newUDPPhone(t *testing.T, server string) *udpPhone {
	t.Helper()
	srv, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpPhone{t: t, conn: c, srv: srv}
}

func (p *udpPhone) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

// roundTrip sends msg and returns the first response's status line and text.
func (p *udpPhone) roundTrip(msg string) (string, string) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDP([]byte(msg), p.srv); err != nil {
		p.t.Fatal(err)
	}
	buf := make([]byte, 65535)
	_ = p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := p.conn.ReadFromUDP(buf)
	if err != nil {
		p.t.Fatalf("no answer: %v", err)
	}
	resp := string(buf[:n])
	return strings.SplitN(resp, "\r\n", 2)[0], resp
}

func (p *udpPhone) register(callID string, cseq int, auth string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "REGISTER sip:%s SIP/2.0\r\n", p.srv)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP 127.0.0.1:%d;rport;branch=z9hG4bK-%s-%d\r\n", p.port(), callID, cseq)
	fmt.Fprintf(&b, "From: <sip:2001@127.0.0.1>;tag=t%s\r\nTo: <sip:2001@127.0.0.1>\r\n", callID)
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d REGISTER\r\n", callID, cseq)
	fmt.Fprintf(&b, "Contact: <sip:2001@127.0.0.1:%d>\r\nExpires: 600\r\nMax-Forwards: 70\r\n", p.port())
	if auth != "" {
		b.WriteString("Authorization: " + auth + "\r\n")
	}
	b.WriteString("User-Agent: raw-udp-test\r\nContent-Length: 0\r\n\r\n")
	return b.String()
}

var nonceValueRE = regexp.MustCompile(`nonce="([^"]+)"`)
var realmRE = regexp.MustCompile(`realm="([^"]+)"`)

// TestRegisterRetransmission: REGISTER over UDP is answered without a
// transaction, so the registrar itself must treat a verbatim retransmission
// of an authenticated REGISTER (same Call-ID, CSeq and nonce count) as the
// same request: it gets 200 again, not a challenge. Reusing that nonce count
// in another request is still a replay and gets a fresh challenge.
func TestRegisterRetransmission(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "secret-2001")
	p := newUDPPhone(t, s.Addr)

	status, resp := p.roundTrip(p.register("rtx1", 1, ""))
	if !strings.HasPrefix(status, "SIP/2.0 401") {
		t.Fatalf("first REGISTER: %s", status)
	}
	nonce, realm := nonceValueRE.FindStringSubmatch(resp)[1], realmRE.FindStringSubmatch(resp)[1]
	uri := "sip:" + s.Addr
	ha1 := md5hex("2001:" + realm + ":secret-2001")
	ha2 := md5hex("REGISTER:" + uri)
	answer := md5hex(ha1 + ":" + nonce + ":00000001:c0ffee:auth:" + ha2)
	auth := fmt.Sprintf(`Digest username="2001", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"`,
		realm, nonce, uri, answer)

	authed := p.register("rtx1", 2, auth)
	if status, resp := p.roundTrip(authed); !strings.HasPrefix(status, "SIP/2.0 200") {
		t.Fatalf("authenticated REGISTER: %s\n%s", status, resp)
	}
	if status, resp := p.roundTrip(authed); !strings.HasPrefix(status, "SIP/2.0 200") {
		t.Fatalf("retransmitted REGISTER: %s (want the same 200)\n%s", status, resp)
	}
	if regs := s.Regs("2001"); len(regs) != 1 || regs[0].CallID != "rtx1" {
		t.Fatalf("registrations after a retransmission: %+v", regs)
	}
	// The same credentials in another request (new Call-ID) are a replay.
	if status, _ := p.roundTrip(p.register("rtx2", 2, auth)); !strings.HasPrefix(status, "SIP/2.0 401") {
		t.Fatalf("replayed nonce count in a new request: %s, want 401", status)
	}
}

// TestRegisterRetransmittedChallenge: a retransmitted first REGISTER (the
// same datagram again, as a phone sends it when the 401 is late) gets the
// very same 401, not a second challenge with a fresh nonce, which a phone
// that already answered the first would take for an unexpected message.
// A new request (next CSeq) gets a challenge of its own.
func TestRegisterRetransmittedChallenge(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "secret-2001")
	p := newUDPPhone(t, s.Addr)
	first := p.register("rtxc", 1, "")
	status, resp := p.roundTrip(first)
	if !strings.HasPrefix(status, "SIP/2.0 401") {
		t.Fatalf("first REGISTER: %s", status)
	}
	status, again := p.roundTrip(first)
	if again != resp {
		t.Fatalf("retransmitted REGISTER got another answer (%s):\n%s\nwant the same as:\n%s", status, again, resp)
	}
	_, other := p.roundTrip(p.register("rtxc", 2, ""))
	if nonceValueRE.FindStringSubmatch(other)[1] == nonceValueRE.FindStringSubmatch(resp)[1] {
		t.Fatal("a new REGISTER got the nonce of the earlier one's challenge")
	}
}
