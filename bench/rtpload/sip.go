package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/regload"
)

// A minimal SIP user agent over UDP for the switchboard target: one socket
// per party (the callee registers its socket as its Contact; the caller
// places the call from its own), a reader goroutine per socket that answers
// requests (the callee's INVITE, BYE, OPTIONS) and queues responses for the
// flow waiting on them. Everything it sends goes to the server's address,
// or, for answers, to the loopback source of the request.

// maxSIP caps a datagram read.
const maxSIP = 65535

// sipRetrans is the UDP retransmission interval of a request (T1).
const sipRetrans = 500 * time.Millisecond

type sipUA struct {
	conn   *net.UDPConn
	local  netip.AddrPort
	server netip.AddrPort
	resp   chan string
	// onRequest answers a request (nil: 200 without body); set before run.
	onRequest func(req string) string
	// ack, when set, is resent for each retransmitted 2xx to the INVITE.
	ack  atomic.Pointer[string]
	done chan struct{}
}

func newSIPUA(bind netip.Addr, server netip.AddrPort) (*sipUA, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, 0)))
	if err != nil {
		return nil, fmt.Errorf("SIP socket: %w", err)
	}
	return &sipUA{conn: c, local: c.LocalAddr().(*net.UDPAddr).AddrPort(), server: server,
		resp: make(chan string, 16), done: make(chan struct{})}, nil
}

// run reads the socket until it is closed.
func (u *sipUA) run() {
	defer close(u.done)
	buf := make([]byte, maxSIP)
	for {
		n, from, err := u.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !from.Addr().Unmap().IsLoopback() {
			continue
		}
		m := string(buf[:n])
		if strings.HasPrefix(m, "SIP/2.0 ") {
			if strings.HasPrefix(m, "SIP/2.0 2") && cseqMethod(m) == "INVITE" {
				if a := u.ack.Load(); a != nil {
					_, _ = u.conn.WriteToUDPAddrPort([]byte(*a), u.server)
					continue
				}
			}
			select {
			case u.resp <- m:
			default: // nobody waits for that many: drop, as a lost datagram
			}
			continue
		}
		method, _, _ := strings.Cut(m, " ")
		if method == "ACK" {
			continue
		}
		var out string
		if u.onRequest != nil {
			out = u.onRequest(m)
		}
		if out == "" {
			out = response(m, "200 OK", "", "", "")
		}
		_, _ = u.conn.WriteToUDPAddrPort([]byte(out), from)
	}
}

func (u *sipUA) Close() {
	u.conn.Close()
	<-u.done
}

func (u *sipUA) send(m string) error {
	_, err := u.conn.WriteToUDPAddrPort([]byte(m), u.server)
	return err
}

// transact sends req and waits for its final response (same Call-ID and
// CSeq), retransmitting every sipRetrans until the first provisional one.
func (u *sipUA) transact(ctx context.Context, req, callID string, cseq int, timeout time.Duration) (string, error) {
	if err := u.send(req); err != nil {
		return "", err
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	retrans := time.NewTicker(sipRetrans)
	defer retrans.Stop()
	provisional := false
	want := strconv.Itoa(cseq) + " "
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-deadline.C:
			return "", fmt.Errorf("no final answer within %s", timeout)
		case <-retrans.C:
			if !provisional {
				if err := u.send(req); err != nil {
					return "", err
				}
			}
		case m := <-u.resp:
			if header(m, "Call-ID") != callID || !strings.HasPrefix(header(m, "CSeq"), want) {
				continue
			}
			if strings.HasPrefix(m, "SIP/2.0 1") {
				provisional = true
				continue
			}
			return m, nil
		}
	}
}

// compact forms of the headers this agent reads (RFC 3261 7.3.3).
var compact = map[string]string{"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length", "c": "content-type"}

// headerLines returns the values of every header line named name (case
// insensitive, compact forms too) of message m, in order.
func headerLines(m, name string) []string {
	head, _, _ := strings.Cut(m, "\r\n\r\n")
	name = strings.ToLower(name)
	var out []string
	for i, line := range strings.Split(head, "\r\n") {
		if i == 0 {
			continue
		}
		n, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n = strings.ToLower(strings.TrimSpace(n))
		if c, ok := compact[n]; ok {
			n = c
		}
		if n == name {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// header is the first value of header name in m ("" when absent).
func header(m, name string) string {
	if v := headerLines(m, name); len(v) > 0 {
		return v[0]
	}
	return ""
}

func body(m string) string {
	_, b, _ := strings.Cut(m, "\r\n\r\n")
	return b
}

func statusCode(m string) int {
	if !strings.HasPrefix(m, "SIP/2.0 ") || len(m) < 11 {
		return 0
	}
	n, _ := strconv.Atoi(m[8:11])
	return n
}

func cseqMethod(m string) string {
	f := strings.Fields(header(m, "CSeq"))
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

func firstLine(m string) string {
	l, _, _ := strings.Cut(m, "\r\n")
	return l
}

// response builds an answer to request req: its Vias, From, To (with
// toTag added when it has none), Call-ID, CSeq, and for a 2xx to an INVITE
// its Record-Routes, a Contact and the SDP sdp.
func response(req, status, toTag, contact, sdp string) string {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + status + "\r\n")
	for _, name := range []string{"Via", "Record-Route", "From", "To", "Call-ID", "CSeq"} {
		if name == "Record-Route" && contact == "" {
			continue
		}
		for _, v := range headerLines(req, name) {
			b.WriteString(name + ": " + v)
			if name == "To" && toTag != "" && !strings.Contains(v, ";tag=") {
				b.WriteString(";tag=" + toTag)
			}
			b.WriteString("\r\n")
		}
	}
	if contact != "" {
		b.WriteString("Contact: " + contact + "\r\n")
	}
	if sdp != "" {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp)
	return b.String()
}

var (
	tagRE = regexp.MustCompile(`;\s*tag=([^;>\s]+)`)
	uriRE = regexp.MustCompile(`<([^>]+)>`)
)

// authorize answers the challenge of a 401/407 to a method request of uri.
func authorize(challenge, method, user, password, uri string) (string, error) {
	hname := "WWW-Authenticate"
	if statusCode(challenge) == 407 {
		hname = "Proxy-Authenticate"
	}
	h := header(challenge, hname)
	ch, ok := regload.ParseChallenge(h)
	if !ok {
		return "", fmt.Errorf("%s without nonce or realm", firstLine(challenge))
	}
	out := "Authorization: "
	if hname == "Proxy-Authenticate" {
		out = "Proxy-Authorization: "
	}
	return out + regload.DigestFor(method, user, ch.Realm, password, ch.Nonce, ch.Opaque, uri, ch.Qop) + "\r\n", nil
}

// sipCall is one call through the server: caller A calls callee B.
type sipCall struct {
	id             string
	caller, callee string
	a, b           *sipUA
	domain         string
	password       func(user string) string
	aRTP, bRTP     netip.AddrPort // the parties' own RTP addresses (their SDP)

	mu      sync.Mutex
	bDest   netip.AddrPort // from the INVITE B received
	bAnswer string         // B's 200, resent for a retransmitted INVITE

	toTag, target string
	routes        []string
	seq           int
	branch        int
}

func (c *sipCall) nextBranch() string {
	c.branch++
	return "z9hG4bK-rl" + c.id + "-" + strconv.Itoa(c.branch)
}

// register registers the callee's socket as its Contact (REGISTER, 401,
// REGISTER with digest, 200).
func (c *sipCall) register(ctx context.Context, timeout time.Duration) error {
	u := c.b
	uri := "sip:" + c.domain
	callID := "rlreg-" + c.id
	msg := func(cseq int, auth string) string {
		return "REGISTER " + uri + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + u.local.String() + ";rport;branch=" + c.nextBranch() + "\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sip:" + c.callee + "@" + c.domain + ">;tag=r" + c.id + "\r\n" +
			"To: <sip:" + c.callee + "@" + c.domain + ">\r\n" +
			"Call-ID: " + callID + "\r\n" +
			"CSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" +
			"Contact: <sip:" + c.callee + "@" + u.local.String() + ">\r\n" +
			"Expires: 300\r\nUser-Agent: rtpload\r\n" + auth + "Content-Length: 0\r\n\r\n"
	}
	r, err := u.transact(ctx, msg(1, ""), callID, 1, timeout)
	if err != nil {
		return fmt.Errorf("REGISTER %s: %w", c.callee, err)
	}
	if s := statusCode(r); s == 401 || s == 407 {
		auth, err := authorize(r, "REGISTER", c.callee, c.password(c.callee), uri)
		if err != nil {
			return err
		}
		if r, err = u.transact(ctx, msg(2, auth), callID, 2, timeout); err != nil {
			return fmt.Errorf("REGISTER %s with credentials: %w", c.callee, err)
		}
	}
	if statusCode(r) != 200 {
		return fmt.Errorf("REGISTER %s: %s", c.callee, firstLine(r))
	}
	return nil
}

// answerB is the callee's request handler: it answers the INVITE with its
// SDP and records where the relay wants its RTP.
func (c *sipCall) answerB(req string) string {
	method, _, _ := strings.Cut(req, " ")
	if method != "INVITE" {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bAnswer != "" {
		return c.bAnswer
	}
	dest, err := sdpAudioAddr(body(req))
	if err != nil {
		return response(req, "488 Not Acceptable Here", "b"+c.id, "", "")
	}
	c.bDest = dest
	c.bAnswer = response(req, "200 OK", "b"+c.id, "<sip:"+c.callee+"@"+c.b.local.String()+">", buildSDP(c.bRTP, 2))
	return c.bAnswer
}

func (c *sipCall) invite(cseq int, auth string) string {
	sdp := buildSDP(c.aRTP, 1)
	ruri := "sip:" + c.callee + "@" + c.domain
	return "INVITE " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + c.a.local.String() + ";rport;branch=" + c.nextBranch() + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:" + c.caller + "@" + c.domain + ">;tag=a" + c.id + "\r\n" +
		"To: <" + ruri + ">\r\n" +
		"Call-ID: " + c.id + "\r\n" +
		"CSeq: " + strconv.Itoa(cseq) + " INVITE\r\n" +
		"Contact: <sip:" + c.caller + "@" + c.a.local.String() + ">\r\n" +
		"User-Agent: rtpload\r\n" + auth +
		"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp
}

// inDialog builds an ACK or BYE of the established call.
func (c *sipCall) inDialog(method string, cseq int) string {
	var b strings.Builder
	b.WriteString(method + " " + c.target + " SIP/2.0\r\n")
	b.WriteString("Via: SIP/2.0/UDP " + c.a.local.String() + ";rport;branch=" + c.nextBranch() + "\r\n")
	for i := len(c.routes) - 1; i >= 0; i-- {
		b.WriteString("Route: " + c.routes[i] + "\r\n")
	}
	b.WriteString("Max-Forwards: 70\r\n" +
		"From: <sip:" + c.caller + "@" + c.domain + ">;tag=a" + c.id + "\r\n" +
		"To: <sip:" + c.callee + "@" + c.domain + ">;tag=" + c.toTag + "\r\n" +
		"Call-ID: " + c.id + "\r\n" +
		"CSeq: " + strconv.Itoa(cseq) + " " + method + "\r\n" +
		"Content-Length: 0\r\n\r\n")
	return b.String()
}

// setup places the call: INVITE (407, ACK, INVITE with credentials), 200
// with SDP, ACK. It returns where A and B must send their RTP.
func (c *sipCall) setup(ctx context.Context, timeout time.Duration) (aDest, bDest netip.AddrPort, err error) {
	ruri := "sip:" + c.callee + "@" + c.domain
	c.seq = 1
	inv := c.invite(c.seq, "")
	r, err := c.a.transact(ctx, inv, c.id, c.seq, timeout)
	if err != nil {
		return aDest, bDest, fmt.Errorf("INVITE: %w", err)
	}
	if s := statusCode(r); s == 401 || s == 407 {
		// ACK the challenge (same branch as the INVITE, its To tag).
		via := headerLines(inv, "Via")[0]
		_ = c.a.send("ACK " + ruri + " SIP/2.0\r\nVia: " + via + "\r\nMax-Forwards: 70\r\n" +
			"From: <sip:" + c.caller + "@" + c.domain + ">;tag=a" + c.id + "\r\nTo: " + header(r, "To") + "\r\n" +
			"Call-ID: " + c.id + "\r\nCSeq: " + strconv.Itoa(c.seq) + " ACK\r\nContent-Length: 0\r\n\r\n")
		auth, err := authorize(r, "INVITE", c.caller, c.password(c.caller), ruri)
		if err != nil {
			return aDest, bDest, err
		}
		c.seq++
		if r, err = c.a.transact(ctx, c.invite(c.seq, auth), c.id, c.seq, timeout); err != nil {
			return aDest, bDest, fmt.Errorf("INVITE with credentials: %w", err)
		}
	}
	if statusCode(r)/100 != 2 {
		return aDest, bDest, fmt.Errorf("INVITE answered %s", firstLine(r))
	}
	m := tagRE.FindStringSubmatch(header(r, "To"))
	ct := uriRE.FindStringSubmatch(header(r, "Contact"))
	if m == nil || ct == nil {
		return aDest, bDest, fmt.Errorf("200 without To tag or Contact")
	}
	c.toTag, c.target = m[1], ct[1]
	for _, v := range headerLines(r, "Record-Route") {
		for _, one := range splitRoutes(v) {
			c.routes = append(c.routes, one)
		}
	}
	ack := c.inDialog("ACK", c.seq)
	c.a.ack.Store(&ack)
	if err := c.a.send(ack); err != nil {
		return aDest, bDest, fmt.Errorf("ACK: %w", err)
	}
	if aDest, err = sdpAudioAddr(body(r)); err != nil {
		return aDest, bDest, fmt.Errorf("SDP of the 200: %w", err)
	}
	c.mu.Lock()
	bDest = c.bDest
	c.mu.Unlock()
	if !bDest.IsValid() {
		return aDest, bDest, errors.New("the callee's INVITE had no usable SDP")
	}
	return aDest, bDest, nil
}

// bye ends the call from the caller's side.
func (c *sipCall) bye(ctx context.Context, timeout time.Duration) error {
	c.seq++
	r, err := c.a.transact(ctx, c.inDialog("BYE", c.seq), c.id, c.seq, timeout)
	if err != nil {
		return fmt.Errorf("BYE: %w", err)
	}
	if statusCode(r) != 200 {
		return fmt.Errorf("BYE answered %s", firstLine(r))
	}
	return nil
}

// splitRoutes splits a Record-Route value holding several comma-separated
// entries (commas inside <...> do not split).
func splitRoutes(v string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '<':
			depth++
		case '>':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(v[start:i]))
				start = i + 1
			}
		}
	}
	if s := strings.TrimSpace(v[start:]); s != "" {
		out = append(out, s)
	}
	return out
}
