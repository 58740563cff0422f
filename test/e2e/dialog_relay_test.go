package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// sinks are a UDP and a TCP listener on 127.0.0.29 that count whatever
// reaches them: the targets an attacker wants the proxy to relay to.
type sinks struct {
	udp      *net.UDPConn
	tcp      *net.TCPListener
	got      atomic.Int64
	UDPPort  int
	TCPPort  int
	received atomic.Value // string: the first thing received
}

func newSinks(t *testing.T) *sinks {
	t.Helper()
	s := &sinks{}
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 29)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 29)})
	if err != nil {
		u.Close()
		t.Fatal(err)
	}
	s.udp, s.tcp = u, l
	s.UDPPort, s.TCPPort = u.LocalAddr().(*net.UDPAddr).Port, l.Addr().(*net.TCPAddr).Port
	t.Cleanup(func() { u.Close(); l.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, _, err := u.ReadFromUDP(buf)
			if err != nil {
				return
			}
			s.note("UDP: " + string(buf[:n]))
		}
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.note("TCP connection from " + c.RemoteAddr().String())
			c.Close()
		}
	}()
	return s
}

func (s *sinks) note(what string) {
	s.got.Add(1)
	s.received.CompareAndSwap(nil, what)
}

// assertNothing fails the test when anything reached a sink. The proxy
// decides before it sends anything, so by the time every request was
// answered a relay would be on its way; a short grace period catches it.
func (s *sinks) assertNothing(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && s.got.Load() == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	if n := s.got.Load(); n != 0 {
		t.Fatalf("the sink on 127.0.0.29 received %d messages or connections; first: %v", n, s.received.Load())
	}
}

// dialogIDs are what an attacker learns from a callee's view of a call.
type dialogIDs struct {
	callID, callerTag, calleeTag, route string
	contact                             string // the callee's Contact URI
}

// calleeView reads the Call-ID, both tags and the Record-Route of the call
// from the callee's SIPp message trace (what any callee sees).
func calleeView(t *testing.T, msgs string) dialogIDs {
	t.Helper()
	var ids dialogIDs
	for _, m := range ParseSIPpMessages(msgs) {
		if m.Received && strings.HasPrefix(m.First, "INVITE ") && ids.route == "" {
			ids.route = strings.Join(m.Get("Record-Route"), ", ")
			ids.callID = strings.Join(m.Get("Call-ID"), "")
			ids.callerTag = tagParam(strings.Join(m.Get("From"), ""))
		}
		if !m.Received && strings.HasPrefix(m.First, "SIP/2.0 200") && ids.calleeTag == "" {
			ids.calleeTag = tagParam(strings.Join(m.Get("To"), ""))
			ids.contact = strings.Trim(strings.Join(m.Get("Contact"), ""), "<>")
		}
	}
	if ids.route == "" || !strings.Contains(ids.route, "sb=") || ids.calleeTag == "" || ids.callerTag == "" {
		t.Fatalf("no Record-Route token, Call-ID or tags in the callee's trace: %+v\n%s", ids, tail(msgs, 4000))
	}
	return ids
}

func tagParam(h string) string {
	_, after, ok := strings.Cut(h, ";tag=")
	if !ok {
		return ""
	}
	tag, _, _ := strings.Cut(after, ";")
	return strings.TrimSpace(tag)
}

// attacker sends in-dialog requests from an address that never
// authenticated, over UDP and TCP, and reads their answers.
type attacker struct {
	t    *testing.T
	ip   string
	srv  string
	udp  *net.UDPConn
	tcp  net.Conn
	tcpR *bufio.Reader
	cseq int
}

func newAttacker(t *testing.T, ip, srv string) *attacker {
	t.Helper()
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", srv)
	if err != nil {
		u.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close(); c.Close() })
	return &attacker{t: t, ip: ip, srv: srv, udp: u, tcp: c, tcpR: bufio.NewReader(c)}
}

// request builds an in-dialog request of the dialog ids whose Request-URI
// and second Route name the sink; with sinkPort 0, a request exactly as the
// caller would send it (to the callee's Contact, our Route only).
func (a *attacker) request(method string, ids dialogIDs, transport string, sinkPort int) string {
	a.cseq++
	local := a.udp.LocalAddr().String()
	ruri := fmt.Sprintf("sip:2002@127.0.0.29:%d", sinkPort)
	if method == "INVITE" {
		ruri = fmt.Sprintf("sip:0044123456789@127.0.0.29:%d", sinkPort)
	}
	sinkRoute := fmt.Sprintf("<sip:127.0.0.29:%d;lr>", sinkPort)
	if transport == "TCP" {
		local = a.tcp.LocalAddr().String()
		ruri += ";transport=tcp"
		sinkRoute = fmt.Sprintf("<sip:127.0.0.29:%d;transport=tcp;lr>", sinkPort)
	}
	routes := ids.route + "\r\nRoute: " + sinkRoute
	if sinkPort == 0 {
		ruri, routes = ids.contact, ids.route
	}
	body := ""
	ctype := ""
	switch method {
	case "MESSAGE":
		body, ctype = "relay me, 11 times if you can", "text/plain"
	case "INFO":
		body, ctype = "Signal=1\r\nDuration=160\r\n", "application/dtmf-relay"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, ruri)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s;branch=z9hG4bK-relay-%d-%s;rport\r\n", transport, local, a.cseq, transport)
	fmt.Fprintf(&b, "Route: %s\r\n", routes)
	fmt.Fprintf(&b, "From: <sip:2001@127.0.0.1>;tag=%s\r\nTo: <sip:2002@127.0.0.1>;tag=%s\r\n", ids.callerTag, ids.calleeTag)
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d %s\r\nMax-Forwards: 70\r\n", ids.callID, a.cseq, method)
	fmt.Fprintf(&b, "Contact: <sip:2001@%s>\r\n", local)
	if ctype != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", ctype)
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

// send sends one request and returns the status line of its final answer
// ("" for ACK, which is never answered).
func (a *attacker) send(method string, ids dialogIDs, transport string, sinkPort int) string {
	a.t.Helper()
	msg := a.request(method, ids, transport, sinkPort)
	cseq := fmt.Sprintf("CSeq: %d %s", a.cseq, method)
	if transport == "TCP" {
		if _, err := io.WriteString(a.tcp, msg); err != nil {
			a.t.Fatal(err)
		}
	} else {
		dst, err := net.ResolveUDPAddr("udp", a.srv)
		if err != nil {
			a.t.Fatal(err)
		}
		if _, err := a.udp.WriteToUDP([]byte(msg), dst); err != nil {
			a.t.Fatal(err)
		}
	}
	if method == "ACK" {
		return ""
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := a.read(transport, deadline)
		if res == "" {
			a.t.Fatalf("%s over %s: no answer within 5 s", method, transport)
		}
		first, _, _ := strings.Cut(res, "\r\n")
		if strings.Contains(res, cseq) && !strings.HasPrefix(first, "SIP/2.0 1") {
			return first
		}
	}
}

// sendRaw sends msg over UDP as it is.
func (a *attacker) sendRaw(msg string) {
	a.t.Helper()
	dst, err := net.ResolveUDPAddr("udp", a.srv)
	if err != nil {
		a.t.Fatal(err)
	}
	if _, err := a.udp.WriteToUDP([]byte(msg), dst); err != nil {
		a.t.Fatal(err)
	}
}

// read returns the next message from the server, "" at the deadline.
func (a *attacker) read(transport string, deadline time.Time) string {
	if transport != "TCP" {
		_ = a.udp.SetReadDeadline(deadline)
		buf := make([]byte, 65535)
		n, _, err := a.udp.ReadFromUDP(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}
	_ = a.tcp.SetReadDeadline(deadline)
	var b strings.Builder
	length := 0
	for {
		line, err := a.tcpR.ReadString('\n')
		if err != nil {
			return ""
		}
		b.WriteString(line)
		if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if line == "\r\n" && b.Len() > 2 {
			break
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(a.tcpR, body); err != nil {
		return ""
	}
	return b.String() + string(body)
}

// replay sends BYE, MESSAGE, INVITE, INFO and ACK of the dialog over UDP
// and TCP towards the sinks and checks every answered one got one of want.
func (a *attacker) replay(ids dialogIDs, sk *sinks, want ...string) {
	a.t.Helper()
	for _, tp := range []string{"UDP", "TCP"} {
		port := sk.UDPPort
		if tp == "TCP" {
			port = sk.TCPPort
		}
		for _, m := range []string{"BYE", "MESSAGE", "INVITE", "INFO", "ACK"} {
			st := a.send(m, ids, tp, port)
			if m == "ACK" {
				continue
			}
			ok := false
			for _, w := range want {
				ok = ok || strings.HasPrefix(st, "SIP/2.0 "+w+" ")
			}
			if !ok {
				a.t.Errorf("%s over %s from %s: %q, want one of %v", m, tp, a.ip, st, want)
			}
		}
	}
}

// TestRouteTokenReplayRefused: a route token is no pass to relay. After a
// call between 2001 and 2002 has ended, an address that never
// authenticated replays the token the callee saw (Call-ID, both tags,
// Record-Route) with BYE, MESSAGE, INVITE to 0044123456789@127.0.0.29,
// INFO and ACK, each with a second Route to a sink on 127.0.0.29, over UDP
// and TCP: every request is refused (481: the dialog is over), the sinks
// receive nothing, and the journal says route_token_refused. During a
// live call, a third address gets 403 with the live dialog's token, and
// the call still ends normally with the caller's BYE. With an inbound ACL
// denying the sender, the refusal is acl_denied.
func TestRouteTokenReplayRefused(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	sk := newSinks(t)

	// One legitimate call, ended by the caller's BYE.
	callee := NewPhone(t, s, "2002", "secret-2002")
	callee.Start("call-phone-answer.xml", "-d", "100")
	r := SIPp(t, s.Addr, "call-uac.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")), "-d", "200")
	if r.Code != 0 {
		t.Fatalf("caller failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	ended := calleeView(t, callee.MustSucceed(10*time.Second))
	waitCall(t, s, "NORMAL_CLEARING", func(c CallRecord) bool { return c.Cause == "NORMAL_CLEARING" })

	a := newAttacker(t, "127.0.0.30", s.Addr)
	a.replay(ended, sk, "481", "403")
	// A forged 2xx "retransmission" with the proxy's Via on top and the
	// sink's below is not relayed either.
	a.sendRaw(fmt.Sprintf("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-sbforged0001\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.29:%d;branch=z9hG4bK-sink\r\nFrom: <sip:2001@127.0.0.1>;tag=%s\r\n"+
		"To: <sip:2002@127.0.0.1>;tag=%s\r\nCall-ID: %s\r\nCSeq: 2 INVITE\r\nContent-Type: text/plain\r\n"+
		"Content-Length: 9\r\n\r\nrelay me!", s.Addr, sk.UDPPort, ended.callerTag, ended.calleeTag, ended.callID))
	sk.assertNothing(t)
	ev := waitJournalWith(t, s, "route_token_refused from 127.0.0.30",
		map[string]string{"cause": "route_token_refused", "source": "127.0.0.30*", "kind": "request"})
	if d := fmt.Sprint(ev["detail"]); !strings.Contains(d, "not routed") {
		t.Fatalf("journal detail %q", d)
	}
	if n := len(journalWith(t, s, map[string]string{"cause": "route_token_refused", "source": "127.0.0.30*"})); n != 1 {
		t.Fatalf("%d route_token_refused events for 127.0.0.30, want 1 (once a minute per address)", n)
	}

	// During a live call: the token and tags of the live dialog, from a
	// third address.
	live := NewPhone(t, s, "2002", "secret-2002")
	live.Start("call-phone-answer.xml", "-d", "100")
	done := make(chan SIPpResult, 1)
	go func() {
		done <- SIPp(t, s.Addr, "call-uac.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")),
			"-d", "10000")
	}()
	WaitFor(t, 10*time.Second, "the call to be up", func() bool {
		act := s.Calls("--active")
		return len(act) == 1 && act[0].State == "up"
	})
	var ids dialogIDs
	WaitFor(t, 5*time.Second, "the callee's trace of the live call", func() bool {
		b, _ := os.ReadFile(filepath.Join(live.dir, "messages.log"))
		msgs := string(b)
		return strings.Contains(msgs, "Record-Route") && strings.Contains(msgs, "SIP/2.0 200")
	})
	b, _ := os.ReadFile(filepath.Join(live.dir, "messages.log"))
	ids = calleeView(t, string(b))
	b3 := newAttacker(t, "127.0.0.31", s.Addr)
	b3.replay(ids, sk, "403")
	// Even exactly as the caller would send it, a BYE from a third address
	// is refused: the call stays up.
	for _, tp := range []string{"UDP", "TCP"} {
		if st := b3.send("BYE", ids, tp, 0); !strings.HasPrefix(st, "SIP/2.0 403 ") {
			t.Fatalf("BYE from a third address over %s, as the caller would send it: %q, want 403", tp, st)
		}
	}
	if act := s.Calls("--active"); len(act) != 1 || act[0].CallID != ids.callID {
		t.Fatalf("the live call did not survive a third address's BYE: %+v", act)
	}
	sk.assertNothing(t)
	waitJournalWith(t, s, "route_token_refused from 127.0.0.31",
		map[string]string{"cause": "route_token_refused", "source": "127.0.0.31*", "sip_status": "403"})
	if res := <-done; res.Code != 0 {
		t.Fatalf("the live call's caller failed (%d):\n%s\nserver log:\n%s", res.Code, res.Output, s.Log())
	}
	live.MustSucceed(10 * time.Second)
	c := waitCall(t, s, "the live call ended by the caller", func(c CallRecord) bool {
		return c.CallID == ids.callID && c.Cause == "NORMAL_CLEARING"
	})
	if c.HangupBy != "caller" {
		t.Fatalf("the live call's record: %+v", c)
	}

	// An inbound ACL denying the sender: acl_denied.
	s.CLI("acl", "add", "callers", "--default", "allow")
	s.CLI("acl", "deny", "callers", "127.0.0.32/32")
	s.CLI("profile", "set", "internal", "--inbound-acl", "callers")
	denied := newAttacker(t, "127.0.0.32", s.Addr)
	WaitFor(t, 5*time.Second, "the inbound ACL to apply", func() bool {
		return strings.HasPrefix(denied.send("INFO", ended, "UDP", sk.UDPPort), "SIP/2.0 403 ")
	})
	denied.replay(ended, sk, "403")
	sk.assertNothing(t)
	ev = waitJournalWith(t, s, "acl_denied from 127.0.0.32",
		map[string]string{"cause": "acl_denied", "source": "127.0.0.32*", "kind": "request"})
	if d := fmt.Sprint(ev["detail"]); !strings.Contains(d, "inbound acl callers") {
		t.Fatalf("journal detail %q", d)
	}
}

// TestCalleeHangsUpDespiteInboundACL: the inbound ACL says who may place
// calls; it lists only the caller's address (127.0.0.40), yet the callee
// (a phone registered from 127.0.0.1) still hangs up the call: its BYE
// follows the Record-Route back to the caller, and the record says the
// callee hung up.
func TestCalleeHangsUpDespiteInboundACL(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	s.CLI("acl", "add", "callers", "--default", "deny")
	s.CLI("acl", "allow", "callers", "127.0.0.40/32")
	s.CLI("profile", "set", "internal", "--inbound-acl", "callers")
	callee := NewPhone(t, s, "2002", "secret-2002")
	callee.Start("call-phone-hangup.xml", "-d", "100")
	r := SIPp(t, s.Addr, "call-uac-wait-bye.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")),
		"-i", "127.0.0.40")
	if r.Code != 0 {
		t.Fatalf("caller failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	callee.MustSucceed(10 * time.Second)
	c := waitCall(t, s, "NORMAL_CLEARING", func(c CallRecord) bool { return c.Cause == "NORMAL_CLEARING" })
	if c.HangupBy != "callee" || !strings.HasPrefix(c.CallerSource, "127.0.0.40:") {
		t.Fatalf("call record %+v, want hung up by the callee, caller at 127.0.0.40", c)
	}
}
