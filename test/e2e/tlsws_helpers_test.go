package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/switchboard-pbx/switchboard/internal/tlscert"
)

// Helpers for the TLS, WS and WSS listeners (shared with the WebRTC tests).

// ListenerAddr returns the address of the server's listener proto ("tls",
// "ws" or "wss") from its start line; "" when that listener is off.
func (s *Server) ListenerAddr(proto string) string {
	re := regexp.MustCompile(`msg="switchboard started".* ` + regexp.QuoteMeta(proto) + `=(\S+)`)
	if m := re.FindStringSubmatch(s.Log()); m != nil {
		return m[1]
	}
	return ""
}

// CertPEM returns the PEM of the self-signed certificate the server
// created in its data directory (what a test trusts).
func (s *Server) CertPEM(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Data, "tls-cert.pem"))
	if err != nil {
		t.Fatalf("the server's certificate: %v", err)
	}
	return b
}

// ClientTLS returns a TLS client configuration that trusts the server's
// self-signed certificate.
func (s *Server) ClientTLS(t testing.TB) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CertPEM(t)) {
		t.Fatal("the server's certificate is not PEM")
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// wsUA is a raw SIP-over-WebSocket client (RFC 7118), one message per
// text frame, as a browser phone would send them.
type wsUA struct {
	t     testing.TB
	conn  net.Conn
	proto string // "WS" or "WSS"
	n     int
}

// dialWS opens a WebSocket to addr ("ws" or "wss" scheme) with the sip
// subprotocol and the given Origin ("" for none).
func dialWS(t testing.TB, s *Server, scheme, addr, origin string, protocols ...string) (*wsUA, error) {
	t.Helper()
	if protocols == nil {
		protocols = []string{"sip"}
	}
	d := ws.Dialer{Protocols: protocols, Timeout: 5 * time.Second}
	if origin != "" {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{"Origin": []string{origin}})
	}
	if scheme == "wss" {
		d.TLSConfig = s.ClientTLS(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, _, err := d.Dial(ctx, scheme+"://"+addr+"/")
	if err != nil {
		return nil, err
	}
	u := &wsUA{t: t, conn: c, proto: strings.ToUpper(scheme)}
	t.Cleanup(func() { c.Close() })
	return u, nil
}

func (u *wsUA) write(msg string) {
	u.t.Helper()
	_ = u.conn.SetWriteDeadline(time.Now().Add(3 * time.Second))
	if err := wsutil.WriteClientText(u.conn, []byte(msg)); err != nil {
		u.t.Fatalf("ws write: %v", err)
	}
}

// read returns the next SIP message, or "" after timeout.
func (u *wsUA) read(timeout time.Duration) string {
	_ = u.conn.SetReadDeadline(time.Now().Add(timeout))
	b, err := wsutil.ReadServerText(u.conn)
	if err != nil {
		return ""
	}
	return string(b)
}

// final waits for a final response and returns it (status 0: none).
func (u *wsUA) final(timeout time.Duration) rawReply {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		m := u.read(time.Until(deadline))
		f := strings.Fields(strings.SplitN(m, "\r\n", 2)[0])
		if len(f) >= 2 && f[0] == "SIP/2.0" {
			if code, _ := strconv.Atoi(f[1]); code >= 200 {
				return rawReply{Status: code, Raw: m}
			}
		}
	}
	return rawReply{}
}

// register registers user@127.0.0.1 with a JsSIP-like contact
// (sip:user@xyz.invalid;transport=ws), answering the digest challenge.
func (u *wsUA) register(user, password string, expires int) rawReply {
	u.t.Helper()
	callID := fmt.Sprintf("ws-%d", time.Now().UnixNano())
	msg := func(cseq int, auth string) string {
		u.n++
		if auth != "" {
			auth = "Authorization: " + auth + "\r\n"
		}
		return fmt.Sprintf("REGISTER sip:127.0.0.1 SIP/2.0\r\n"+
			"Via: SIP/2.0/%s xyz.invalid;branch=z9hG4bK-ws-%d-%d\r\n"+
			"Max-Forwards: 70\r\n"+
			"From: <sip:%s@127.0.0.1>;tag=ws%d\r\n"+
			"To: <sip:%s@127.0.0.1>\r\n"+
			"Call-ID: %s\r\nCSeq: %d REGISTER\r\n"+
			"Contact: <sip:%s@xyz.invalid;transport=ws>;expires=%d\r\n"+
			"User-Agent: ws e2e test\r\n%sContent-Length: 0\r\n\r\n",
			u.proto, time.Now().UnixNano(), u.n, user, u.n, user, callID, cseq, user, expires, auth)
	}
	u.write(msg(1, ""))
	r := u.final(3 * time.Second)
	if r.Status != 401 {
		return r
	}
	www := r.header("WWW-Authenticate")
	nonce, realm := rawNonceRE.FindStringSubmatch(www)[1], rawRealmRE.FindStringSubmatch(www)[1]
	u.write(msg(2, digestAnswer(user, realm, password, nonce, "sip:127.0.0.1", "auth", "00000001")))
	return u.final(3 * time.Second)
}

// answerCall waits for an INVITE, answers 200 with an SDP, waits for the
// ACK, then answers the BYE; it returns the INVITE.
func (u *wsUA) answerCall(timeout time.Duration) (invite string, err error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		m := u.read(time.Until(deadline))
		if m == "" {
			break
		}
		switch {
		case strings.HasPrefix(m, "INVITE "):
			invite = m
			sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
			u.write(reply(m, "200 OK", ";tag=wsans", "Contact: <sip:ans@xyz.invalid;transport=ws>\r\nContent-Type: application/sdp\r\n", sdp))
		case strings.HasPrefix(m, "BYE "):
			u.write(reply(m, "200 OK", "", "", ""))
			return invite, nil
		}
	}
	if invite == "" {
		return "", fmt.Errorf("no INVITE came over the WebSocket")
	}
	return invite, fmt.Errorf("no BYE came over the WebSocket")
}

// reply builds a response to req: its Via, From, To (plus toTag when it has
// none), Call-ID, CSeq and Record-Route, extra headers and a body.
func reply(req, status, toTag, extra, body string) string {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + status + "\r\n")
	head, _, _ := strings.Cut(req, "\r\n\r\n")
	for _, l := range strings.Split(head, "\r\n")[1:] {
		name, _, _ := strings.Cut(l, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "v", "from", "f", "call-id", "i", "cseq", "record-route":
			b.WriteString(l + "\r\n")
		case "to", "t":
			if !strings.Contains(l, ";tag=") {
				l += toTag
			}
			b.WriteString(l + "\r\n")
		}
	}
	b.WriteString(extra)
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	return b.String()
}

// CertSPKIHash returns the base64 SHA-256 of the server certificate's
// public key (SubjectPublicKeyInfo): what Chromium's
// --ignore-certificate-errors-spki-list takes to trust it.
func (s *Server) CertSPKIHash(t testing.TB) string {
	t.Helper()
	blk, _ := pem.Decode(s.CertPEM(t))
	if blk == nil {
		t.Fatal("the server's certificate is not PEM")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// CertFingerprint returns the SHA-256 fingerprint of the server's
// certificate as the server logs it (AA:BB:...).
func (s *Server) CertFingerprint(t testing.TB) string {
	t.Helper()
	blk, _ := pem.Decode(s.CertPEM(t))
	if blk == nil {
		t.Fatal("the server's certificate is not PEM")
	}
	return tlscert.Fingerprint(blk.Bytes)
}
