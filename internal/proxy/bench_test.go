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
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/media"
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

func (u *rawUA) sendErr(b []byte) error {
	_, err := u.conn.WriteToUDP(b, u.proxy)
	return err
}

// recvErr is recv returning an error instead of failing the benchmark
// (for callers on goroutines of their own).
func (u *rawUA) recvErr(prefix, want string) ([]byte, error) {
	_ = u.conn.SetReadDeadline(time.Now().Add(wait))
	for {
		n, _, err := u.conn.ReadFromUDP(u.buf)
		if err != nil {
			return nil, fmt.Errorf("%s: waiting for %q %q: %w", u.addr, prefix, want, err)
		}
		m := u.buf[:n]
		if bytes.HasPrefix(m, []byte(prefix)) && bytes.Contains(m, []byte(want)) {
			return m, nil
		}
	}
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

// benchCaller is the UAC of the call benchmarks: caller 2001 calling 2002.
type benchCaller struct {
	ua     *rawUA
	sdp    string // the INVITE's body; "" = "v=0\r\n"
	out    bytes.Buffer
	routes [][]byte
}

var (
	benchRURI = "sip:2002@" + testDomain
	benchHA1  = md5hex("2001:" + testDomain + ":" + testPassword)
	benchHA2  = md5hex("INVITE:" + benchRURI)
)

func (c *benchCaller) invite(callID, branch string, cseq int, auth string) []byte {
	c.out.Reset()
	c.out.WriteString("INVITE " + benchRURI + " SIP/2.0\r\nVia: SIP/2.0/UDP " + c.ua.addr + ";branch=z9hG4bK" + branch +
		";rport\r\nMax-Forwards: 70\r\nFrom: <sip:2001@" + testDomain + ">;tag=a" + callID +
		"\r\nTo: <" + benchRURI + ">\r\nCall-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(cseq) +
		" INVITE\r\nContact: <sip:2001@" + c.ua.addr + ">\r\nUser-Agent: bench\r\n")
	c.out.WriteString(auth)
	body := c.sdp
	if body == "" {
		body = "v=0\r\n"
	}
	c.out.WriteString("Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	return c.out.Bytes()
}

func (c *benchCaller) inDialog(method, callID string, cseq int, toTag, target []byte, branch string) []byte {
	c.out.Reset()
	c.out.WriteString(method + " ")
	c.out.Write(target)
	c.out.WriteString(" SIP/2.0\r\nVia: SIP/2.0/UDP " + c.ua.addr + ";branch=z9hG4bK" + branch + "\r\n")
	for i := len(c.routes) - 1; i >= 0; i-- {
		c.out.WriteString("Route: ")
		c.out.Write(c.routes[i])
		c.out.WriteString("\r\n")
	}
	c.out.WriteString("Max-Forwards: 70\r\nFrom: <sip:2001@" + testDomain + ">;tag=a" + callID + "\r\nTo: <" + benchRURI + ">;tag=")
	c.out.Write(toTag)
	c.out.WriteString("\r\nCall-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(cseq) + " " + method + "\r\nContent-Length: 0\r\n\r\n")
	return c.out.Bytes()
}

// call places one whole call with Call-ID id; atUAS, when set, is called
// after the authenticated INVITE, the ACK and the BYE were sent (the
// sequential benchmark's UAS answers there).
func (c *benchCaller) call(id string, atUAS func(stage string)) error {
	// INVITE -> 407 -> ACK
	if err := c.ua.sendErr(c.invite(id, id+"-1", 1, "")); err != nil {
		return err
	}
	ch, err := c.ua.recvErr("SIP/2.0 407", id)
	if err != nil {
		return err
	}
	pa := headerValue(ch, "Proxy-Authenticate")
	nonce, opaque := string(param(pa, "nonce")), string(param(pa, "opaque"))
	to := headerValue(ch, "To")
	c.out.Reset()
	c.out.WriteString("ACK " + benchRURI + " SIP/2.0\r\nVia: SIP/2.0/UDP " + c.ua.addr + ";branch=z9hG4bK" + id + "-1;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:2001@" + testDomain + ">;tag=a" + id + "\r\nTo: ")
	c.out.Write(to)
	c.out.WriteString("\r\nCall-ID: " + id + "\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
	if err := c.ua.sendErr(c.out.Bytes()); err != nil {
		return err
	}
	// INVITE with credentials, answered 200 by the UAS.
	resp := md5hex(benchHA1 + ":" + nonce + ":00000001:cn:auth:" + benchHA2)
	if err := c.ua.sendErr(c.invite(id, id+"-2", 2, "Proxy-Authorization: Digest username=\"2001\", realm=\""+testDomain+
		"\", nonce=\""+nonce+"\", uri=\""+benchRURI+"\", response=\""+resp+
		"\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"cn\", opaque=\""+opaque+"\"\r\n")); err != nil {
		return err
	}
	if atUAS != nil {
		atUAS("invite")
	}
	ok, err := c.ua.recvErr("SIP/2.0 200", id)
	if err != nil {
		return err
	}
	c.routes = headerValues(c.routes[:0], ok, "Record-Route")
	for j := range c.routes {
		c.routes[j] = append([]byte(nil), c.routes[j]...)
	}
	contact := headerValue(ok, "Contact")
	target := append([]byte(nil), contact[bytes.IndexByte(contact, '<')+1:bytes.IndexByte(contact, '>')]...)
	// ACK, then BYE
	if err := c.ua.sendErr(c.inDialog("ACK", id, 2, []byte("b"+id), target, id+"-3")); err != nil {
		return err
	}
	if atUAS != nil {
		atUAS("ack")
	}
	if err := c.ua.sendErr(c.inDialog("BYE", id, 3, []byte("b"+id), target, id+"-4")); err != nil {
		return err
	}
	if atUAS != nil {
		atUAS("bye")
	}
	_, err = c.ua.recvErr("SIP/2.0 200", "BYE")
	return err
}

func BenchmarkCallFlow(b *testing.B) { benchCallFlow(b, newEnv(b, Config{}), "") }

// BenchmarkCallFlowRelayAuto: BenchmarkCallFlow with the media relay in
// auto mode (the default of serve) and a phone's SDP offer whose address
// is the caller's SIP source: not relayed, so the cost over
// BenchmarkCallFlow is the NAT check of every call.
func BenchmarkCallFlowRelayAuto(b *testing.B) {
	mr, err := media.New(media.Config{AdvertiseIP: netip.MustParseAddr("127.0.0.1"), PortMin: 42000, PortMax: 42099})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mr.Close() })
	benchCallFlow(b, newEnvMedia(b, Config{MediaRelay: RelayAuto}, mr), benchSDP)
}

// benchSDP is a desk phone's offer from 127.0.0.1 (the benchmark's UAC).
const benchSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"

func benchCallFlow(b *testing.B, e *env, sdp string) {
	uac, uas := newRawUA(b, e.addr), newRawUA(b, e.addr)
	// The callee's binding: its contact is the UAS.
	e.register("2002", &phone{addr: uas.addr})
	c := &benchCaller{ua: uac, sdp: sdp}
	var ans bytes.Buffer
	var id string
	atUAS := func(stage string) {
		switch stage {
		case "invite":
			inv := uas.recv("INVITE ", id)
			uas.send(uas.answer(&ans, inv, "200 OK", "b"+id))
		case "ack":
			uas.recv("ACK ", id)
		case "bye":
			bye := uas.recv("BYE ", id)
			uas.send(uas.answer(&ans, bye, "200 OK", ""))
		}
	}
	call := func(i int) {
		id = "bench-" + strconv.Itoa(i)
		if err := c.call(id, atUAS); err != nil {
			b.Fatal(err)
		}
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

// BenchmarkCallFlowParallel: the same call, many at once (8 callers per
// CPU, each with its own socket), to one UAS that answers every INVITE and
// BYE 200 at once: where the proxy's and sipgo's shared locks and queues
// show. ns/op is the wall time per call of the whole load.
func BenchmarkCallFlowParallel(b *testing.B) {
	e := newEnv(b, Config{})
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	_ = conn.SetReadBuffer(4 << 20)
	uas := &rawUA{tb: b, conn: conn, addr: conn.LocalAddr().String(), proxy: e.addr, buf: make([]byte, 65535)}
	e.register("2002", &phone{addr: uas.addr})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ans bytes.Buffer
		for {
			n, _, err := conn.ReadFromUDP(uas.buf)
			if err != nil {
				return
			}
			m := uas.buf[:n]
			var res []byte
			switch {
			case bytes.HasPrefix(m, []byte("INVITE ")):
				res = uas.answer(&ans, m, "200 OK", "b"+string(headerValue(m, "Call-ID")))
			case bytes.HasPrefix(m, []byte("BYE ")):
				res = uas.answer(&ans, m, "200 OK", "")
			default:
				continue
			}
			if _, err := conn.WriteToUDP(res, e.addr); err != nil {
				return
			}
		}
	}()
	b.Cleanup(func() { conn.Close(); <-done })
	var seq atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		c := &benchCaller{ua: newRawUA(b, e.addr)}
		for pb.Next() {
			if err := c.call("par-"+strconv.FormatInt(seq.Add(1), 10), nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
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
