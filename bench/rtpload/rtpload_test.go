package main

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestBencodeRoundTrip(t *testing.T) {
	in := map[string]any{
		"command": "offer", "call-id": "abc", "sdp": "v=0\r\nc=IN IP4 127.0.0.1\r\n",
		"replace": []any{"origin", "session-connection"}, "n": int64(-42),
		"nested": map[string]any{"x": []any{int64(1), "two", map[string]any{}}},
	}
	b, err := bencode(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := bdecode(b)
	if err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("round trip:\n got %#v\nwant %#v", out, in)
	}
}

func TestBencodeCanonical(t *testing.T) {
	// Keys sorted, lengths in bytes, integers as i..e ([]string as a list).
	b, err := bencode(nil, map[string]any{"sdp": "é", "command": "ping", "l": []string{"a"}, "i": 7})
	if err != nil {
		t.Fatal(err)
	}
	if want := "d7:command4:ping1:ii7e1:ll1:ae3:sdp2:\xc3\xa9e"; string(b) != want {
		t.Fatalf("got %q want %q", b, want)
	}
	if _, err := bencode(nil, 1.5); err == nil {
		t.Fatal("a float encoded")
	}
}

func TestBdecodeMalformed(t *testing.T) {
	for _, in := range []string{"", "i12", "ie", "ixe", "5:abc", "-1:a", "l", "d3:abc", "di1ei2ee", "x", "4:spamX",
		strings.Repeat("l", 100) + strings.Repeat("e", 100), "99999999999999999999:a"} {
		if v, err := bdecode([]byte(in)); err == nil || !errors.Is(err, errBencode) {
			t.Errorf("%q: got %#v, %v; want a malformed-bencode error", in, v, err)
		}
	}
}

func TestNGResult(t *testing.T) {
	d, err := ngResult("offer", []byte("d6:result2:ok3:sdp5:v=0\r\ne"))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := ngSDP(d); err != nil || s != "v=0\r\n" {
		t.Fatalf("sdp %q %v", s, err)
	}
	_, err = ngResult("answer", []byte("d12:error-reason15:Unknown call-id6:result5:errore"))
	if err == nil || !strings.Contains(err.Error(), "Unknown call-id") {
		t.Fatalf("error answer: %v", err)
	}
	if _, err := ngResult("x", []byte("li1ee")); err == nil {
		t.Fatal("a list accepted as an answer")
	}
}

func TestSDPAudioAddr(t *testing.T) {
	cases := []struct{ sdp, want, err string }{
		{buildSDP(netip.MustParseAddrPort("127.0.0.1:4000"), 1), "127.0.0.1:4000", ""},
		// media-level c= wins over the session's; the first audio m= line counts
		{"v=0\r\nc=IN IP4 127.0.0.9\r\nm=video 5000 RTP/AVP 96\r\nc=IN IP4 127.0.0.8\r\nm=audio 6000 RTP/AVP 0\r\nc=IN IP4 127.0.0.2\r\nm=audio 7000 RTP/AVP 0\r\n", "127.0.0.2:6000", ""},
		{"v=0\nc=IN IP4 127.0.0.3\nm=audio 8000 RTP/AVP 0\n", "127.0.0.3:8000", ""},
		{"v=0\r\nc=IN IP6 ::1\r\nm=audio 9000/2 RTP/AVP 0\r\n", "[::1]:9000", ""},
		{"v=0\r\nm=audio 9000 RTP/AVP 0\r\n", "", "connection address"},
		{"v=0\r\nc=IN IP4 127.0.0.1\r\nm=video 9000 RTP/AVP 0\r\n", "", "without an audio"},
		{"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 70000 RTP/AVP 0\r\n", "", "port"},
		{"v=0\r\nc=IN IP4 pbx.example\r\nm=audio 7000 RTP/AVP 0\r\n", "", "connection address"},
	}
	for _, c := range cases {
		got, err := sdpAudioAddr(c.sdp)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: got %v, %v; want error with %q", c.sdp, got, err, c.err)
			}
			continue
		}
		if err != nil || got.String() != c.want {
			t.Errorf("%q: got %v, %v; want %s", c.sdp, got, err, c.want)
		}
	}
}

func TestStampParse(t *testing.T) {
	p := make([]byte, packetSize)
	stamp(p, 77, 5, 70000, 123456789)
	id, seq, ns, ok := parse(p, 77)
	if !ok || id != 5 || seq != 70000 || ns != 123456789 {
		t.Fatalf("parse: %d %d %d %v", id, seq, ns, ok)
	}
	if p[0] != 0x80 || p[1] != 0 || p[2] != byte(70000>>8&0xff) || p[3] != byte(70000&0xff) {
		t.Fatalf("RTP header % x", p[:4])
	}
	if _, _, _, ok := parse(p, 78); ok {
		t.Fatal("a packet of another run accepted")
	}
	if _, _, _, ok := parse(p[:100], 77); ok {
		t.Fatal("a short packet accepted")
	}
	p[rtpHeader] = 'X'
	if _, _, _, ok := parse(p, 77); ok {
		t.Fatal("a packet without the magic accepted")
	}
}

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for _, ns := range []int64{0, 1, 255, 256, 257, 511, 512, 1000, 65_000, 1_000_000, 123_456_789, 1 << 40} {
		i := bucketOf(ns)
		if i < prev {
			t.Fatalf("bucket of %d (%d) below the previous (%d)", ns, i, prev)
		}
		prev = i
		lo, hi := bucketLow(i), bucketLow(i+1)
		if ns < lo || ns >= hi {
			t.Fatalf("%d ns in bucket %d = [%d, %d)", ns, i, lo, hi)
		}
		if ns >= 256 && float64(hi-lo)/float64(lo) > 1.0/256+1e-9 {
			t.Fatalf("bucket %d [%d, %d) wider than 1/256", i, lo, hi)
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	h := &histogram{}
	if h.quantile(0.5) != 0 {
		t.Fatal("empty histogram has a median")
	}
	// 1..1000 µs: p50 about 500 µs, p99 about 990 µs, within 0.4 %.
	for i := int64(1); i <= 1000; i++ {
		h.add(i * 1000)
	}
	for q, want := range map[float64]float64{0.5: 500_000, 0.99: 990_000, 0: 1000, 1: 1_000_000} {
		got := float64(h.quantile(q))
		if d := (got - want) / want; d > 0.004 || d < -0.004 {
			t.Errorf("q%.2f = %.0f ns, want %.0f", q, got, want)
		}
	}
	if h.max.Load() != 1_000_000 || h.count.Load() != 1000 {
		t.Fatalf("max %d count %d", h.max.Load(), h.count.Load())
	}
}

// TestStreamAccounting streams over loopback between two real sockets
// (call 0, direct) and towards a socket nobody reads for call 1's callee
// (so its caller's stream is lost): loss and counts must say exactly that.
func TestStreamAccounting(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	var ps []*party
	for i := 0; i < 4; i++ {
		p, err := openParty(lo)
		if err != nil {
			t.Fatal(err)
		}
		defer p.conn.Close()
		p.out, p.in = uint32(i), uint32(i^1)
		ps = append(ps, p)
	}
	sink, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ps[0].dest, ps[1].dest = ps[1].addr, ps[0].addr
	ps[2].dest = sink.LocalAddr().(*net.UDPAddr).AddrPort() // lost
	ps[3].dest = ps[2].addr
	const count = 10
	start := time.Now().Add(10 * time.Millisecond)
	end := start.Add(count * packetGap)
	tot := stream(ps, 9, start, start, end.Add(300*time.Millisecond), count)
	if tot.sent != 4*count || tot.sendErr != 0 {
		t.Fatalf("sent %d (errors %d), want %d", tot.sent, tot.sendErr, 4*count)
	}
	if tot.received != 3*count || tot.dup != 0 || tot.foreign != 0 {
		t.Fatalf("received %d dup %d foreign %d, want %d 0 0", tot.received, tot.dup, tot.foreign, 3*count)
	}
	if ps[3].rs.received != 0 || ps[2].rs.received != count {
		t.Fatalf("per party: %d %d", ps[2].rs.received, ps[3].rs.received)
	}
	if n := tot.lat.count.Load(); n != 3*count {
		t.Fatalf("latency samples %d", n)
	}
	if p99 := tot.lat.quantile(0.99); p99 <= 0 || p99 > time.Second {
		t.Fatalf("p99 %s", p99)
	}
	if tot.userStamped != 0 {
		t.Fatalf("%d samples without a kernel timestamp", tot.userStamped)
	}
}

func TestStreamDuplicatesAndForeign(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	rx, err := openParty(lo)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.conn.Close()
	rx.in, rx.out = 1, 0
	rx.dest = rx.addr // it sends to itself: stream 0 arrives on a socket expecting 1
	tx, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	base := time.Now()
	p := make([]byte, packetSize)
	go func() {
		time.Sleep(50 * time.Millisecond)
		for _, seq := range []uint32{0, 1, 1, 2, 500} { // 500: beyond the count
			stamp(p, 3, 1, seq, time.Now().UnixNano())
			_, _ = tx.WriteToUDPAddrPort(p, rx.addr)
		}
	}()
	const count = 5
	tot := stream([]*party{rx}, 3, base, base, base.Add(count*packetGap+300*time.Millisecond), count)
	if tot.received != 3 || tot.dup != 1 || tot.foreign != count+1 {
		t.Fatalf("received %d dup %d foreign %d, want 3 1 %d", tot.received, tot.dup, tot.foreign, count+1)
	}
}

func TestParseStatTicks(t *testing.T) {
	line := "1234 (rtp engine) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 3 0 100 1000000 500 18446744073709551615"
	n, err := parseStatTicks([]byte(line))
	if err != nil || n != 325 {
		t.Fatalf("got %d %v, want 325", n, err)
	}
	if _, err := parseStatTicks([]byte("1 (x) S 1 2")); err == nil {
		t.Fatal("short line accepted")
	}
}

func TestFlagsLoopbackOnly(t *testing.T) {
	for _, args := range [][]string{
		{"-sip", "192.0.2.1:5060"}, {"-ng", "10.0.0.1:2223"}, {"-bind", "0.0.0.0"},
		{"-calls", "0"}, {"-duration", "2m"}, {"-target", "kamailio"}, {"extra"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	c, err := parseFlags([]string{"-sip", "127.0.0.2:5070", "-ng", "[::1]:2223"})
	if err != nil || c.sip.String() != "127.0.0.2:5070" || c.label != "direct" {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestSIPHelpers(t *testing.T) {
	inv := "INVITE sip:101000@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:4000;branch=z9hG4bK2\r\nRecord-Route: <sip:127.0.0.1:5070;lr;sb=x,y>, <sip:127.0.0.2;lr>\r\n" +
		"f: <sip:100000@127.0.0.1>;tag=a1\r\nTo: <sip:101000@127.0.0.1>\r\ni: c1\r\nCSeq: 2 INVITE\r\n\r\nv=0\r\n"
	r := response(inv, "200 OK", "b1", "<sip:101000@127.0.0.1:4001>", "v=0\r\n")
	for _, want := range []string{"SIP/2.0 200 OK\r\n", "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP 127.0.0.1:4000",
		"Record-Route: <sip:127.0.0.1:5070;lr;sb=x,y>, <sip:127.0.0.2;lr>\r\n", "To: <sip:101000@127.0.0.1>;tag=b1\r\n",
		"Call-ID: c1\r\n", "CSeq: 2 INVITE\r\n", "Content-Length: 5\r\n\r\nv=0\r\n"} {
		if !strings.Contains(r, want) {
			t.Errorf("200 lacks %q:\n%s", want, r)
		}
	}
	if got := splitRoutes(header(r, "Record-Route")); len(got) != 2 || got[0] != "<sip:127.0.0.1:5070;lr;sb=x,y>" {
		t.Fatalf("routes %q", got)
	}
	if statusCode(r) != 200 || cseqMethod(r) != "INVITE" || body(r) != "v=0\r\n" {
		t.Fatalf("status %d method %q", statusCode(r), cseqMethod(r))
	}
	ch := "SIP/2.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Digest realm=\"127.0.0.1\", nonce=\"n1\", qop=\"auth\", opaque=\"o\"\r\n\r\n"
	a, err := authorize(ch, "INVITE", "100000", "pw100000", "sip:101000@127.0.0.1")
	if err != nil || !strings.HasPrefix(a, "Proxy-Authorization: Digest username=\"100000\"") || !strings.Contains(a, "qop=auth") {
		t.Fatalf("authorize: %q %v", a, err)
	}
	if _, err := authorize("SIP/2.0 401 Unauthorized\r\nWWW-Authenticate: Digest\r\n\r\n", "REGISTER", "u", "p", "sip:x"); err == nil {
		t.Fatal("a challenge without nonce accepted")
	}
}

func TestKernelStamp(t *testing.T) {
	msg := func(level, typ uint32, payload []byte) []byte {
		b := make([]byte, 16, 16+len(payload)+8)
		binary.NativeEndian.PutUint64(b[0:8], uint64(16+len(payload)))
		binary.NativeEndian.PutUint32(b[8:12], level)
		binary.NativeEndian.PutUint32(b[12:16], typ)
		b = append(b, payload...)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		return b
	}
	ts := make([]byte, 16)
	binary.NativeEndian.PutUint64(ts[0:8], 1796296345)
	binary.NativeEndian.PutUint64(ts[8:16], 123456789)
	other := msg(syscall.SOL_IP, 8, []byte{1, 2, 3, 4}) // e.g. IP_PKTINFO-ish: skipped
	oob := append(other, msg(syscall.SOL_SOCKET, unix.SCM_TIMESTAMPNS, ts)...)
	ns, ok := kernelStamp(oob)
	if !ok || ns != 1796296345*1e9+123456789 {
		t.Fatalf("got %d %v", ns, ok)
	}
	for _, bad := range [][]byte{nil, oob[:10], other, msg(syscall.SOL_SOCKET, unix.SCM_TIMESTAMPNS, ts[:8])} {
		if _, ok := kernelStamp(bad); ok {
			t.Errorf("% x: accepted", bad)
		}
	}
	// A length beyond the buffer is refused, not read past.
	broken := append([]byte(nil), oob...)
	binary.NativeEndian.PutUint64(broken[0:8], 1000)
	if _, ok := kernelStamp(broken); ok {
		t.Fatal("a control message longer than the buffer accepted")
	}
}
