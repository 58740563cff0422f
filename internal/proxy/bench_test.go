package proxy

// BenchmarkCallFlow: one whole authenticated call per iteration through
// the real proxy (newEnv: sipstack on 127.0.0.1 UDP, directory, digest,
// location table, journal and call writers on SQLite), between a UAC and
// a UAS with their own UDP sockets:
//
//	UAC INVITE -> 407 -> ACK -> INVITE(auth) -> (100) -> UAS 200 -> UAC ACK
//	-> UAS, UAC BYE -> UAS 200 -> UAC
//
// The UAC and UAS are written to cost little (byte templates, no SIP
// parser), so allocs/op is mostly the server's. The first INVITE takes the
// transaction path here; the server's packet guard answers it statelessly
// instead (internal/guard), which this benchmark does not include.
//
//	go test -run '^$' -bench CallFlow -benchmem ./internal/proxy/

import (
	"bytes"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// rawUA is a minimal SIP endpoint for the benchmark.
type rawUA struct {
	tb    testing.TB
	conn  *net.UDPConn
	addr  string
	proxy *net.UDPAddr
	buf   []byte
}

func newRawUA(tb testing.TB, proxy *net.UDPAddr) *rawUA {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	_ = c.SetReadBuffer(1 << 20)
	return &rawUA{tb: tb, conn: c, addr: c.LocalAddr().String(), proxy: proxy, buf: make([]byte, 65535)}
}

func (u *rawUA) send(b []byte) {
	if _, err := u.conn.WriteToUDP(b, u.proxy); err != nil {
		u.tb.Fatal(err)
	}
}

// recv returns the next datagram whose first line starts with prefix and
// that contains want (skipping others, such as 100 Trying). The result is
// valid until the next recv.
func (u *rawUA) recv(prefix, want string) []byte {
	_ = u.conn.SetReadDeadline(time.Now().Add(wait))
	for {
		n, _, err := u.conn.ReadFromUDP(u.buf)
		if err != nil {
			u.tb.Fatalf("%s: waiting for %q %q: %v", u.addr, prefix, want, err)
		}
		m := u.buf[:n]
		if bytes.HasPrefix(m, []byte(prefix)) && bytes.Contains(m, []byte(want)) {
			return m
		}
	}
}

// headerValues appends the values of every header named name (case
// sensitive, full form) in m.
func headerValues(dst [][]byte, m []byte, name string) [][]byte {
	key := []byte("\r\n" + name + ": ")
	for {
		i := bytes.Index(m, key)
		if i < 0 {
			return dst
		}
		m = m[i+len(key):]
		end := bytes.Index(m, []byte("\r\n"))
		dst = append(dst, m[:end])
		m = m[end:]
	}
}

func headerValue(m []byte, name string) []byte {
	v := headerValues(nil, m, name)
	if len(v) == 0 {
		return nil
	}
	return v[0]
}

// param returns the value of name="..." in a header value.
func param(v []byte, name string) []byte {
	i := bytes.Index(v, []byte(name+`="`))
	if i < 0 {
		return nil
	}
	v = v[i+len(name)+2:]
	return v[:bytes.IndexByte(v, '"')]
}

// answer builds the UAS's response to req: its Vias, Record-Routes, From,
// To (with tag when tag is set), Call-ID and CSeq, and a Contact.
func (u *rawUA) answer(b *bytes.Buffer, req []byte, status string, tag string) []byte {
	b.Reset()
	b.WriteString("SIP/2.0 " + status + "\r\n")
	var hs [][]byte
	for _, name := range []string{"Via", "Record-Route", "From", "To", "Call-ID", "CSeq"} {
		hs = headerValues(hs[:0], req, name)
		for _, v := range hs {
			b.WriteString(name)
			b.WriteString(": ")
			b.Write(v)
			if name == "To" && tag != "" && !bytes.Contains(v, []byte(";tag=")) {
				b.WriteString(";tag=")
				b.WriteString(tag)
			}
			b.WriteString("\r\n")
		}
	}
	b.WriteString("Contact: <sip:callee@" + u.addr + ">\r\nContent-Length: 0\r\n\r\n")
	return b.Bytes()
}

func BenchmarkCallFlow(b *testing.B) {
	e := newEnv(b, Config{})
	uac, uas := newRawUA(b, e.addr), newRawUA(b, e.addr)
	// The callee's binding: its contact is the UAS.
	ph := &phone{addr: uas.addr}
	e.register("2002", ph)
	ruri := "sip:2002@" + testDomain
	ha1 := md5hex("2001:" + testDomain + ":" + testPassword)
	ha2 := md5hex("INVITE:" + ruri)
	var out, ans bytes.Buffer
	var routes [][]byte
	invite := func(callID, branch string, cseq int, auth string) []byte {
		out.Reset()
		out.WriteString("INVITE " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP " + uac.addr + ";branch=z9hG4bK" + branch +
			";rport\r\nMax-Forwards: 70\r\nFrom: <sip:2001@" + testDomain + ">;tag=a" + callID +
			"\r\nTo: <" + ruri + ">\r\nCall-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(cseq) +
			" INVITE\r\nContact: <sip:2001@" + uac.addr + ">\r\nUser-Agent: bench\r\n")
		out.WriteString(auth)
		out.WriteString("Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n")
		return out.Bytes()
	}
	inDialog := func(method, callID string, cseq int, toTag []byte, target []byte, routes [][]byte, branch string) []byte {
		out.Reset()
		out.WriteString(method + " ")
		out.Write(target)
		out.WriteString(" SIP/2.0\r\nVia: SIP/2.0/UDP " + uac.addr + ";branch=z9hG4bK" + branch + "\r\n")
		for i := len(routes) - 1; i >= 0; i-- {
			out.WriteString("Route: ")
			out.Write(routes[i])
			out.WriteString("\r\n")
		}
		out.WriteString("Max-Forwards: 70\r\nFrom: <sip:2001@" + testDomain + ">;tag=a" + callID + "\r\nTo: <" + ruri + ">;tag=")
		out.Write(toTag)
		out.WriteString("\r\nCall-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(cseq) + " " + method + "\r\nContent-Length: 0\r\n\r\n")
		return out.Bytes()
	}
	call := func(i int) {
		id := "bench-" + strconv.Itoa(i)
		// INVITE -> 407 -> ACK
		uac.send(invite(id, id+"-1", 1, ""))
		ch := uac.recv("SIP/2.0 407", id)
		pa := headerValue(ch, "Proxy-Authenticate")
		nonce, opaque := string(param(pa, "nonce")), string(param(pa, "opaque"))
		to := headerValue(ch, "To")
		out.Reset()
		out.WriteString("ACK " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP " + uac.addr + ";branch=z9hG4bK" + id + "-1;rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:2001@" + testDomain + ">;tag=a" + id + "\r\nTo: ")
		out.Write(to)
		out.WriteString("\r\nCall-ID: " + id + "\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
		uac.send(out.Bytes())
		// INVITE with credentials
		resp := md5hex(ha1 + ":" + nonce + ":00000001:cn:auth:" + ha2)
		uac.send(invite(id, id+"-2", 2, "Proxy-Authorization: Digest username=\"2001\", realm=\""+testDomain+
			"\", nonce=\""+nonce+"\", uri=\""+ruri+"\", response=\""+resp+
			"\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"cn\", opaque=\""+opaque+"\"\r\n"))
		// The UAS answers 200.
		inv := uas.recv("INVITE ", id)
		uas.send(uas.answer(&ans, inv, "200 OK", "b"+id))
		ok := uac.recv("SIP/2.0 200", id)
		routes = headerValues(routes[:0], ok, "Record-Route")
		for j := range routes {
			routes[j] = append([]byte(nil), routes[j]...)
		}
		contact := headerValue(ok, "Contact")
		target := append([]byte(nil), contact[bytes.IndexByte(contact, '<')+1:bytes.IndexByte(contact, '>')]...)
		// ACK, then BYE
		uac.send(inDialog("ACK", id, 2, []byte("b"+id), target, routes, id+"-3"))
		uas.recv("ACK ", id)
		uac.send(inDialog("BYE", id, 3, []byte("b"+id), target, routes, id+"-4"))
		bye := uas.recv("BYE ", id)
		uas.send(uas.answer(&ans, bye, "200 OK", ""))
		uac.recv("SIP/2.0 200", "BYE")
	}
	call(-1) // warm up
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := range b.N {
		call(i)
	}
	// Process CPU (user+system, every goroutine: the proxy, its writers,
	// and the cheap UAC and UAS) per call.
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-us/call")
}

// processCPU is the CPU time (user+system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
