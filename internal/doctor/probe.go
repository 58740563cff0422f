package doctor

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/tlscert"
)

// ProbeListener tries one listener of a running server and returns it with
// Probed, OK and Detail filled: a UDP port must answer a SIP OPTIONS (any
// response counts), a TCP port must accept a connection. An unspecified
// bind address (0.0.0.0, ::) is probed on loopback. timeout bounds the
// whole probe (0 = 1 s). The probe talks plain text over a socket; it does
// not use the SIP stack.
func ProbeListener(ctx context.Context, l Listener, timeout time.Duration) Listener {
	if timeout <= 0 {
		timeout = time.Second
	}
	l.Probed = true
	host, port, err := net.SplitHostPort(l.Addr)
	if err != nil {
		l.Detail = "bad address " + l.Addr
		return l
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if ip != nil && ip.To4() == nil {
			host = "::1"
		} else {
			host = "127.0.0.1"
		}
	}
	target := net.JoinHostPort(host, port)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	switch strings.ToLower(l.Proto) {
	case "tcp":
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			l.Detail = shortNetErr(err)
			return l
		}
		c.Close()
		l.OK, l.Detail = true, fmt.Sprintf("accepts connections (%s)", ms(time.Since(start)))
	case "udp":
		status, err := optionsUDP(ctx, target)
		if err != nil {
			l.Detail = err.Error()
			return l
		}
		l.OK, l.Detail = true, fmt.Sprintf("answers OPTIONS (%s, %s)", status, ms(time.Since(start)))
	case "tls", "ws", "wss":
		probeStream(ctx, &l, target, host, start)
	default:
		l.Probed, l.Detail = false, "not probed"
	}
	return l
}

// probeStream probes a TLS, WS or WSS listener: a TLS handshake (the
// certificate is read, not verified: that is the check's job) and, for
// WebSocket, an upgrade with the sip subprotocol.
func probeStream(ctx context.Context, l *Listener, target, host string, start time.Time) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		l.Detail = shortNetErr(err)
		return
	}
	defer raw.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	conn := raw
	proto := strings.ToLower(l.Proto)
	var how []string
	if proto != "ws" {
		tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, ServerName: host}) // #nosec: the doctor reads the certificate
		if err := tc.HandshakeContext(ctx); err != nil {
			l.Detail = "TLS handshake failed: " + shortNetErr(err)
			return
		}
		st := tc.ConnectionState()
		if len(st.PeerCertificates) > 0 {
			l.Cert = certFacts(st.PeerCertificates)
		}
		how = append(how, "TLS handshake ("+tls.VersionName(st.Version)+")")
		conn = tc
	}
	if proto != "tls" {
		req := "GET / HTTP/1.1\r\nHost: " + target + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: c3dpdGNoYm9hcmQtZG9jdG9y\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n"
		if _, err := conn.Write([]byte(req)); err != nil {
			l.Detail = "WebSocket upgrade: " + shortNetErr(err)
			return
		}
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		line := firstLine(string(buf[:n]))
		if err != nil && n == 0 {
			l.Detail = "WebSocket upgrade: no answer: " + shortNetErr(err)
			return
		}
		if !strings.HasPrefix(line, "HTTP/1.1 101") {
			l.Detail = "WebSocket upgrade refused: " + line
			return
		}
		how = append(how, "WebSocket upgrade with sip")
	}
	l.OK, l.Detail = true, fmt.Sprintf("accepts %s (%s)", strings.Join(how, " and "), ms(time.Since(start)))
}

func certFacts(chain []*x509.Certificate) *CertFacts {
	leaf := chain[0]
	f := &CertFacts{Subject: leaf.Subject.CommonName, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}
	if f.Subject == "" {
		f.Subject = leaf.Subject.String()
	}
	f.Names = append(f.Names, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		f.Names = append(f.Names, ip.String())
	}
	f.SelfSigned = bytes.Equal(leaf.RawIssuer, leaf.RawSubject) &&
		leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Intermediates: inter})
	f.Trusted = err == nil
	return f
}

// Covers reports whether the certificate names host (one leading wildcard
// label allowed for names).
func (f *CertFacts) Covers(host string) bool {
	return tlscert.NamesCover(f.Names, host)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

func shortNetErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// optionsUDP sends an OPTIONS to target (retransmitting like a SIP client)
// and returns the status line of the first answer.
func optionsUDP(ctx context.Context, target string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", target)
	if err != nil {
		return "", fmt.Errorf("%s", shortNetErr(err))
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	rnd := make([]byte, 8)
	_, _ = rand.Read(rnd)
	tag := hex.EncodeToString(rnd)
	local := c.LocalAddr().String()
	msg := "OPTIONS sip:" + target + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-doctor-" + tag + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:doctor@" + hostOf(local) + ">;tag=" + tag + "\r\n" +
		"To: <sip:" + target + ">\r\n" +
		"Call-ID: " + tag + "@switchboard-doctor\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"User-Agent: switchboard-doctor\r\n" +
		"Content-Length: 0\r\n\r\n"
	buf := make([]byte, 4096)
	got := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		for {
			n, err := c.Read(buf)
			if err != nil {
				errc <- err
				return
			}
			if s := string(buf[:n]); strings.HasPrefix(s, "SIP/2.0 ") {
				got <- strings.TrimSpace(strings.TrimPrefix(firstLine(s), "SIP/2.0 "))
				return
			}
		}
	}()
	interval := 100 * time.Millisecond
	for {
		if _, err := c.Write([]byte(msg)); err != nil {
			return "", fmt.Errorf("%s", shortNetErr(err))
		}
		select {
		case s := <-got:
			return s, nil
		case err := <-errc:
			if ctx.Err() != nil {
				return "", fmt.Errorf("no answer to OPTIONS")
			}
			return "", fmt.Errorf("%s", shortNetErr(err))
		case <-ctx.Done():
			return "", fmt.Errorf("no answer to OPTIONS")
		case <-time.After(interval):
			interval *= 2
		}
	}
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		if strings.Contains(h, ":") {
			return "[" + h + "]"
		}
		return h
	}
	return addr
}
