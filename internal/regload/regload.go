// Package regload is the Go REGISTER load client of the TLS benchmarks
// (bench/tls.sh through bench/regload, and test/e2e's TestBenchRegisterTLS):
// Debian's SIPp is built without OpenSSL, so this client drives TLS and, for
// a like-for-like comparison, UDP too. Each client holds one persistent TLS
// connection (as a desk phone keeps it) or one UDP socket and registers a
// new user each time: REGISTER, 401, REGISTER with an MD5 digest (qop=auth
// when the challenge offers it), 200. It works against any registrar that
// challenges in the To domain's realm (switchboard, Kamailio).
//
// Every run is bounded: by its Duration, by the users each client may use,
// and by a per-answer timeout. It sends only to Config.Addr.
package regload

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MaxMessage caps one SIP message the client reads (a stream that sends a
// larger one is broken for this client).
const MaxMessage = 64 << 10

// Config describes one run.
type Config struct {
	// Transport is "UDP" or "TLS".
	Transport string
	// Addr is the registrar's host:port.
	Addr string
	// TLS is the client configuration for TLS (trusted roots, server name).
	TLS *tls.Config
	// Domain is the registrar's domain: Request-URI sip:Domain, To and From
	// sip:user@Domain, and the digest realm expected.
	Domain string
	// Clients is the number of concurrent clients (connections or sockets).
	Clients int
	// First and Users are the user range: client w registers First +
	// w*(Users/Clients) + i, i = 0, 1, ... (a new user each time) and stops
	// when its share is used up.
	First, Users int
	// Password returns a user's password.
	Password func(user int) string
	// Duration bounds the run: no registration starts after it.
	Duration time.Duration
	// Timeout bounds the wait for each answer (UDP: a lost datagram fails
	// that registration; TLS: the connection is given up).
	Timeout time.Duration
}

// Result is what a run did.
type Result struct {
	// OK counts registrations answered 200; Failed the others.
	OK, Failed int64
	// Elapsed is the wall time from the first REGISTER to the last answer.
	Elapsed time.Duration
	// Exhausted counts clients that used up their users before Duration.
	Exhausted int64
	// FirstError describes the first failure ("" when none).
	FirstError string
}

// PerSecond is OK registrations per second of Elapsed.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// Run performs the load of c until its Duration is over (or ctx ends) and
// every client has its last answer. A configuration error, or a client
// that cannot connect at all, is an error; failed registrations are
// counted in the Result.
func Run(ctx context.Context, c Config) (Result, error) {
	if c.Transport != "UDP" && c.Transport != "TLS" {
		return Result{}, fmt.Errorf("regload: transport %q: want UDP or TLS", c.Transport)
	}
	if c.Clients <= 0 || c.Users < c.Clients || c.Duration <= 0 || c.Password == nil || c.Domain == "" {
		return Result{}, fmt.Errorf("regload: need clients > 0, users >= clients, a duration, a password function and a domain")
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	// Connect every client first: the handshakes are not the measure.
	conns := make([]client, c.Clients)
	defer func() {
		for _, cl := range conns {
			if cl != nil {
				cl.Close()
			}
		}
	}()
	for w := range conns {
		cl, err := dial(ctx, c)
		if err != nil {
			return Result{}, fmt.Errorf("regload: client %d: %w", w, err)
		}
		conns[w] = cl
	}
	var (
		ok, failed, exhausted atomic.Int64
		firstErr              atomic.Value
		wg                    sync.WaitGroup
	)
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)
	per := c.Users / c.Clients
	start := time.Now()
	stop := start.Add(c.Duration)
	for w, cl := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := 0
			i := 0
			for ; i < per && time.Now().Before(stop) && ctx.Err() == nil; i++ {
				user := c.First + w*per + i
				err := register(cl, c, user, tag, &seq)
				if err == nil {
					ok.Add(1)
					continue
				}
				failed.Add(1)
				firstErr.CompareAndSwap(nil, fmt.Sprintf("user %d: %v", user, err))
				var rerr *rejected
				if c.Transport == "TLS" && !errors.As(err, &rerr) {
					return // the stream is out of step or closed
				}
			}
			if i == per {
				exhausted.Add(1)
			}
		}()
	}
	wg.Wait()
	r := Result{OK: ok.Load(), Failed: failed.Load(), Elapsed: time.Since(start), Exhausted: exhausted.Load()}
	if v, _ := firstErr.Load().(string); v != "" {
		r.FirstError = v
	}
	return r, nil
}

// client sends SIP messages and returns the next one received.
type client interface {
	send(msg []byte) error
	recv(timeout time.Duration) ([]byte, error)
	local() string
	Close() error
}

func dial(ctx context.Context, c Config) (client, error) {
	dctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	if c.Transport == "TLS" {
		d := tls.Dialer{Config: c.TLS}
		conn, err := d.DialContext(dctx, "tcp", c.Addr)
		if err != nil {
			return nil, fmt.Errorf("TLS connection to %s: %w", c.Addr, err)
		}
		return &streamClient{c: conn, r: bufio.NewReaderSize(conn, 16<<10)}, nil
	}
	var d net.Dialer
	conn, err := d.DialContext(dctx, "udp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("UDP socket to %s: %w", c.Addr, err)
	}
	return &udpClient{c: conn, buf: make([]byte, MaxMessage)}, nil
}

type udpClient struct {
	c   net.Conn
	buf []byte
}

func (u *udpClient) send(m []byte) error { _, err := u.c.Write(m); return err }
func (u *udpClient) local() string       { return u.c.LocalAddr().String() }
func (u *udpClient) Close() error        { return u.c.Close() }
func (u *udpClient) recv(timeout time.Duration) ([]byte, error) {
	_ = u.c.SetReadDeadline(time.Now().Add(timeout))
	n, err := u.c.Read(u.buf)
	if err != nil {
		return nil, err
	}
	return u.buf[:n], nil
}

// streamClient frames SIP messages on a TLS stream by Content-Length.
type streamClient struct {
	c net.Conn
	r *bufio.Reader
}

func (s *streamClient) send(m []byte) error {
	_ = s.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := s.c.Write(m)
	return err
}
func (s *streamClient) local() string { return s.c.LocalAddr().String() }
func (s *streamClient) Close() error  { return s.c.Close() }
func (s *streamClient) recv(timeout time.Duration) ([]byte, error) {
	_ = s.c.SetReadDeadline(time.Now().Add(timeout))
	return ReadMessage(s.r)
}

// ReadMessage reads one SIP message from a stream: the head up to the
// blank line (CRLF keepalives before it are skipped), then Content-Length
// bytes of body. A message over MaxMessage, or a Content-Length that is
// not a number, is an error.
func ReadMessage(r *bufio.Reader) ([]byte, error) {
	var msg []byte
	cl := 0
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, fmt.Errorf("header line longer than %d bytes", r.Size())
			}
			return nil, err
		}
		if len(msg) == 0 && (len(line) == 2 && line[0] == '\r' || len(line) == 1) {
			continue // keepalive
		}
		msg = append(msg, line...)
		if len(msg) > MaxMessage {
			return nil, fmt.Errorf("SIP message larger than %d bytes", MaxMessage)
		}
		if len(line) == 2 && line[0] == '\r' || len(line) == 1 {
			break
		}
		if name, v, ok := bytes.Cut(line, []byte(":")); ok {
			n := string(bytes.TrimSpace(name))
			if strings.EqualFold(n, "Content-Length") || n == "l" {
				cl, err = strconv.Atoi(string(bytes.TrimSpace(v)))
				if err != nil || cl < 0 {
					return nil, fmt.Errorf("bad Content-Length %q", bytes.TrimSpace(v))
				}
			}
		}
	}
	if len(msg)+cl > MaxMessage {
		return nil, fmt.Errorf("SIP message larger than %d bytes", MaxMessage)
	}
	body := make([]byte, cl)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return append(msg, body...), nil
}

// rejected is a final answer other than the one expected (the stream is
// still in step).
type rejected struct{ status string }

func (e *rejected) Error() string { return "got " + e.status }

var (
	nonceRE = regexp.MustCompile(`(?i)nonce="([^"]+)"`)
	realmRE = regexp.MustCompile(`(?i)realm="([^"]+)"`)
	qopRE   = regexp.MustCompile(`(?i)qop=("[^"]*"|[^,\s]+)`)
	opaqRE  = regexp.MustCompile(`(?i)opaque="([^"]*)"`)
)

// Challenge is what a 401/407 asks: its realm, nonce, opaque and "auth"
// when it offers qop=auth ("" otherwise).
type Challenge struct{ Realm, Nonce, Opaque, Qop string }

// ParseChallenge reads the digest challenge in text (a whole answer or
// its WWW-/Proxy-Authenticate value); ok is false without a nonce or a
// realm.
func ParseChallenge(text string) (ch Challenge, ok bool) {
	nonce, realm := nonceRE.FindStringSubmatch(text), realmRE.FindStringSubmatch(text)
	if nonce == nil || realm == nil {
		return ch, false
	}
	ch.Nonce, ch.Realm = nonce[1], realm[1]
	if m := qopRE.FindStringSubmatch(text); m != nil {
		for _, q := range strings.Split(strings.Trim(m[1], `"`), ",") {
			if strings.TrimSpace(q) == "auth" {
				ch.Qop = "auth"
			}
		}
	}
	if m := opaqRE.FindStringSubmatch(text); m != nil {
		ch.Opaque = m[1]
	}
	return ch, true
}

// register runs one registration of user on cl.
func register(cl client, c Config, user int, tag string, seq *int) error {
	u := strconv.Itoa(user)
	callID := "rl-" + tag + "-" + u
	proto := c.Transport
	local := cl.local()
	msg := func(cseq int, auth string) []byte {
		*seq++
		if auth != "" {
			auth = "Authorization: " + auth + "\r\n"
		}
		return []byte("REGISTER sip:" + c.Domain + " SIP/2.0\r\n" +
			"Via: SIP/2.0/" + proto + " " + local + ";rport;branch=z9hG4bK-rl" + tag + "-" + strconv.Itoa(*seq) + "\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sip:" + u + "@" + c.Domain + ">;tag=rl" + u + "\r\n" +
			"To: <sip:" + u + "@" + c.Domain + ">\r\n" +
			"Call-ID: " + callID + "\r\n" +
			"CSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" +
			"Contact: <sip:" + u + "@" + local + ";transport=" + strings.ToLower(proto) + ">\r\n" +
			"Expires: 3600\r\nUser-Agent: regload\r\n" + auth + "Content-Length: 0\r\n\r\n")
	}
	// final waits for the final answer of this registration (provisional
	// answers and stray answers of earlier, timed-out ones are skipped).
	final := func(cseq int) (string, error) {
		deadline := time.Now().Add(c.Timeout)
		want := strconv.Itoa(cseq) + " REGISTER"
		for {
			left := time.Until(deadline)
			if left <= 0 {
				return "", fmt.Errorf("no answer within %s", c.Timeout)
			}
			b, err := cl.recv(left)
			if err != nil {
				return "", err
			}
			m := string(b)
			if !strings.HasPrefix(m, "SIP/2.0 ") || strings.HasPrefix(m, "SIP/2.0 1") ||
				!strings.Contains(m, callID) || !strings.Contains(m, want) {
				continue
			}
			return m, nil
		}
	}
	if err := cl.send(msg(1, "")); err != nil {
		return err
	}
	r, err := final(1)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(r, "SIP/2.0 401") {
		return &rejected{status: firstLine(r) + " to the first REGISTER"}
	}
	ch, ok := ParseChallenge(r)
	if !ok {
		return &rejected{status: "a 401 without nonce or realm"}
	}
	if err := cl.send(msg(2, Digest(u, ch.Realm, c.Password(user), ch.Nonce, ch.Opaque, "sip:"+c.Domain, ch.Qop))); err != nil {
		return err
	}
	if r, err = final(2); err != nil {
		return err
	}
	if !strings.HasPrefix(r, "SIP/2.0 200") {
		return &rejected{status: firstLine(r) + " to the REGISTER with credentials"}
	}
	return nil
}

func firstLine(m string) string {
	l, _, _ := strings.Cut(m, "\r\n")
	return l
}

// Digest is an MD5 Authorization header value for a REGISTER of uri
// (RFC 2617; qop "" gives an RFC 2069 answer, "auth" one with nc
// 00000001 and a fixed cnonce).
func Digest(user, realm, password, nonce, opaque, uri, qop string) string {
	return DigestFor("REGISTER", user, realm, password, nonce, opaque, uri, qop)
}

// DigestFor is Digest for a request of any method (an INVITE answering a
// 407 puts it in Proxy-Authorization).
func DigestFor(method, user, realm, password, nonce, opaque, uri, qop string) string {
	ha1 := md5Hex(user + ":" + realm + ":" + password)
	ha2 := md5Hex(method + ":" + uri)
	op := ""
	if opaque != "" {
		op = `, opaque="` + opaque + `"`
	}
	if qop == "" {
		return `Digest username="` + user + `", realm="` + realm + `", nonce="` + nonce + `", uri="` + uri +
			`", response="` + md5Hex(ha1+":"+nonce+":"+ha2) + `", algorithm=MD5` + op
	}
	resp := md5Hex(ha1 + ":" + nonce + ":00000001:0a4f113b:" + qop + ":" + ha2)
	return `Digest username="` + user + `", realm="` + realm + `", nonce="` + nonce + `", uri="` + uri +
		`", response="` + resp + `", algorithm=MD5, qop=` + qop + `, nc=00000001, cnonce="0a4f113b"` + op
}

func md5Hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}
