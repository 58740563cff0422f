package proxy

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// streamPhone is a scripted phone reached over TCP: the proxy connects to
// its listener, and it answers and sends requests on that connection.
type streamPhone struct {
	t    *testing.T
	addr string
	in   chan sip.Message
	conn chan net.Conn
}

func newStreamPhone(t *testing.T) *streamPhone {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ph := &streamPhone{t: t, addr: ln.Addr().String(), in: make(chan sip.Message, 64), conn: make(chan net.Conn, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		ph.conn <- c
		r := bufio.NewReader(c)
		for {
			m, err := readStream(r)
			if err != nil {
				return
			}
			ph.in <- m
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		select {
		case c := <-ph.conn:
			c.Close()
		default:
		}
		<-done
	})
	return ph
}

// readStream reads one SIP message framed by Content-Length.
func readStream(r *bufio.Reader) (sip.Message, error) {
	var head strings.Builder
	n := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if strings.TrimSpace(line) == "" && head.Len() == 0 {
			continue // keep-alive CRLF
		}
		head.WriteString(line)
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Content-Length") {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if line == "\r\n" {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return sip.ParseMessage(append([]byte(head.String()), body...))
}

func (ph *streamPhone) next(what string, match func(sip.Message) bool) sip.Message {
	ph.t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case m := <-ph.in:
			if match(m) {
				return m
			}
		case <-timer.C:
			ph.t.Fatalf("TCP phone %s: no %s", ph.addr, what)
			return nil
		}
	}
}

func (ph *streamPhone) send(m sip.Message) {
	ph.t.Helper()
	var c net.Conn
	select {
	case c = <-ph.conn:
		ph.conn <- c
	case <-time.After(wait):
		ph.t.Fatal("TCP phone: no connection from the proxy")
	}
	if _, err := c.Write([]byte(m.String())); err != nil {
		ph.t.Fatal(err)
	}
}

// TestTransportChangeRecordRoute: a call from a UDP phone to a phone
// registered over TCP carries two Record-Routes (RFC 5658), the callee's
// side first with transport=tcp, then the caller's UDP side, both on
// the SIP port; our Via names TCP. The ACK and BYE of each side, routed along its route set, cross
// to the other transport: the caller's ACK reaches the TCP phone and the
// TCP phone's BYE reaches the UDP phone, and the 200 goes back over TCP.
func TestTransportChangeRecordRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastConfig())
	a := e.phone("127.0.0.1")
	b := newStreamPhone(t)
	now := time.Now()
	if _, err := e.loc.Update(e.ctx, testDomain, "2002", func(cur []store.Binding) ([]store.Binding, error) {
		return append(cur, store.Binding{Domain: testDomain, Extension: "2002", Contact: "sip:2002@" + b.addr + ";transport=tcp",
			Source: b.addr, Transport: "TCP", CallID: "reg-tcp", RegisteredAt: now, ExpiresAt: now.Add(time.Hour)}), nil
	}); err != nil {
		t.Fatal(err)
	}

	inv := a.call("2001", "2002", "call-udp-tcp")
	binv := b.next("INVITE", func(m sip.Message) bool { r, ok := m.(*sip.Request); return ok && r.Method == sip.INVITE }).(*sip.Request)
	rrs := binv.GetHeaders("Record-Route")
	if len(rrs) != 2 {
		t.Fatalf("Record-Route %v, want two entries", routeSet(rrs))
	}
	udpPort := strconv.Itoa(e.addr.Port)
	if v := rrs[0].Value(); !strings.HasPrefix(v, "<sip:127.0.0.1:"+udpPort+";transport=tcp;lr;sb=") {
		t.Fatalf("callee-side Record-Route %s", v)
	}
	if v := rrs[1].Value(); !strings.HasPrefix(v, "<sip:127.0.0.1:"+udpPort+";lr;sb=") {
		t.Fatalf("caller-side Record-Route %s", v)
	}
	if v := binv.Via(); v.Transport != "TCP" || v.Port != e.addr.Port {
		t.Fatalf("top Via %s", v.Value())
	}

	ok := sip.NewResponseFromRequest(binv, 200, "OK", []byte("v=0\r\n"))
	ok.To().Params.Add("tag", "tcp-callee")
	ok.AppendHeader(sip.NewHeader("Contact", "<sip:2002@"+b.addr+";transport=tcp>"))
	if len(ok.GetHeaders("Record-Route")) != 2 {
		for _, h := range rrs {
			ok.AppendHeader(h)
		}
	}
	b.send(ok)
	res := a.response(sip.INVITE, 200)
	if n := len(res.GetHeaders("Record-Route")); n != 2 {
		t.Fatalf("the caller got %d Record-Routes", n)
	}
	aLeg := callerLeg(inv, res)
	a.send(aLeg.request(a, sip.ACK))
	b.next("ACK", func(m sip.Message) bool { r, ok := m.(*sip.Request); return ok && r.Method == sip.ACK })

	// The TCP phone hangs up along its route set (Record-Route order).
	bLeg := calleeLeg(binv, "tcp-callee", a)
	bye := bLeg.request(a, sip.BYE)
	v := bye.Via()
	v.Transport, v.Host, v.Port = "TCP", host(b.addr), port(b.addr)
	b.send(bye)
	got := a.request(sip.BYE)
	if got.CallID().Value() != "call-udp-tcp" {
		t.Fatalf("BYE of %s", got.CallID().Value())
	}
	a.send(a.reply(got, 200, ""))
	b.next("200 to BYE", func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.StatusCode == 200 && r.CSeq().MethodName == sip.BYE
	})
}
