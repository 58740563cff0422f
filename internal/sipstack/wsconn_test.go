package sipstack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// clientFrame is one frame as a browser sends it (masked).
func clientFrame(op ws.OpCode, fin bool, payload []byte) []byte {
	h := ws.Header{Fin: fin, OpCode: op, Length: int64(len(payload)), Masked: true, Mask: [4]byte{0x11, 0x22, 0x33, 0x44}}
	var b bytes.Buffer
	_ = ws.WriteHeader(&b, h)
	p := bytes.Clone(payload)
	ws.Cipher(p, h.Mask, 0)
	b.Write(p)
	return b.Bytes()
}

type ctrl struct {
	op      byte
	payload string
}

// readAll reads messages from stream until an error.
func readAll(r io.Reader) (msgs []string, ctrls []ctrl, err error) {
	w := wsReader{r: r, bufs: newBufPool(), control: func(op byte, p []byte) error {
		ctrls = append(ctrls, ctrl{op, string(p)})
		if op == opClose {
			return errWSClosed
		}
		return nil
	}}
	for {
		m, err := w.next()
		if err != nil {
			return msgs, ctrls, err
		}
		msgs = append(msgs, string(*m))
		w.put(m)
	}
}

// TestWSReaderFraming: messages come out whole however the bytes arrive
// (one byte per read, a few, all at once): single frames with 7- and
// 16-bit lengths, text and binary, unmasked, and a message fragmented in
// three frames with a ping (answered through control) between fragments.
func TestWSReaderFraming(t *testing.T) {
	sipMsg := string(options("frag"))
	long := strings.Repeat("x", 300)
	big := strings.Repeat("y", 20000) // several payload chunks
	var stream []byte
	stream = append(stream, clientFrame(ws.OpText, true, []byte(sipMsg))...)
	stream = append(stream, clientFrame(ws.OpText, false, []byte(sipMsg[:10]))...)
	stream = append(stream, clientFrame(ws.OpPing, true, []byte("hi"))...)
	stream = append(stream, clientFrame(ws.OpContinuation, false, []byte(sipMsg[10:50]))...)
	stream = append(stream, clientFrame(ws.OpContinuation, true, []byte(sipMsg[50:]))...)
	stream = append(stream, clientFrame(ws.OpBinary, true, []byte(long))...)
	stream = append(stream, clientFrame(ws.OpText, true, []byte(big))...)
	var unmasked bytes.Buffer
	_ = ws.WriteFrame(&unmasked, ws.NewTextFrame([]byte("plain")))
	stream = append(stream, unmasked.Bytes()...)
	stream = append(stream, clientFrame(ws.OpText, true, nil)...)
	want := []string{sipMsg, sipMsg, long, big, "plain", ""}
	for name, r := range map[string]io.Reader{
		"one byte per read": iotest.OneByteReader(bytes.NewReader(stream)),
		"half reads":        iotest.HalfReader(bytes.NewReader(stream)),
		"whole":             bytes.NewReader(stream),
	} {
		msgs, ctrls, err := readAll(r)
		if !errors.Is(err, io.EOF) {
			t.Errorf("%s: ended with %v, want io.EOF", name, err)
		}
		if len(msgs) != len(want) {
			t.Fatalf("%s: %d messages, want %d", name, len(msgs), len(want))
		}
		for i := range want {
			if msgs[i] != want[i] {
				t.Errorf("%s: message %d = %.40q (%d bytes), want %.40q (%d bytes)", name, i, msgs[i], len(msgs[i]), want[i], len(want[i]))
			}
		}
		if len(ctrls) != 1 || ctrls[0] != (ctrl{opPing, "hi"}) {
			t.Errorf("%s: control frames %+v, want one ping \"hi\"", name, ctrls)
		}
	}
}

// TestWSReaderRefuses: a frame or a fragmented message over 64 KiB, and
// broken framing, end the stream with the reason; a close frame is handed
// to control; a stream cut inside a frame is an unexpected EOF.
func TestWSReaderRefuses(t *testing.T) {
	half := make([]byte, 40000)
	cases := []struct {
		name   string
		stream []byte
		check  func(error) bool
	}{
		{"one big frame", clientFrame(ws.OpText, true, make([]byte, 70000)), func(err error) bool {
			var e *tooLargeError
			return errors.As(err, &e) && e.size == 70000
		}},
		{"big fragmented message", append(clientFrame(ws.OpText, false, half), clientFrame(ws.OpContinuation, true, half)...), func(err error) bool {
			var e *tooLargeError
			return errors.As(err, &e) && e.size == 80000
		}},
		{"continuation first", clientFrame(ws.OpContinuation, true, []byte("x")), isProto},
		{"text inside a fragmented message", append(clientFrame(ws.OpText, false, []byte("a")), clientFrame(ws.OpText, true, []byte("b"))...), isProto},
		{"reserved opcode", clientFrame(ws.OpCode(3), true, []byte("x")), isProto},
		{"reserved control opcode", clientFrame(ws.OpCode(0xB), true, nil), isProto},
		{"long ping", clientFrame(ws.OpPing, true, make([]byte, 126)), isProto},
		{"fragmented ping", clientFrame(ws.OpPing, false, nil), isProto},
		{"rsv bits", append([]byte{0x80 | 0x40 | 0x1, 0x80}, 1, 2, 3, 4), isProto},
		{"64-bit length with the high bit", []byte{0x81, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}, isProto},
		{"close", clientFrame(ws.OpClose, true, []byte{0x03, 0xe8}), func(err error) bool { return errors.Is(err, errWSClosed) }},
		{"cut in a header", clientFrame(ws.OpText, true, make([]byte, 300))[:3], func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"cut in a payload", clientFrame(ws.OpText, true, make([]byte, 300))[:100], func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"cut between fragments", clientFrame(ws.OpText, false, []byte("a")), func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
	}
	for _, c := range cases {
		msgs, _, err := readAll(bytes.NewReader(c.stream))
		if len(msgs) != 0 || !c.check(err) {
			t.Errorf("%s: %d messages, error %v", c.name, len(msgs), err)
		}
	}
}

func isProto(err error) bool { return errors.Is(err, errWSProtocol) }

// FuzzWSReader: any byte stream ends in an error (never a panic), and no
// message returned is over the limit.
func FuzzWSReader(f *testing.F) {
	f.Add(clientFrame(ws.OpText, true, options("fz")))
	f.Add(append(clientFrame(ws.OpText, false, []byte("OPT")), clientFrame(ws.OpContinuation, true, []byte("IONS"))...))
	f.Add(clientFrame(ws.OpPing, true, []byte("p")))
	f.Add(clientFrame(ws.OpClose, true, []byte{0x03, 0xe8}))
	f.Add([]byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0})
	f.Add([]byte{0x81, 126, 0xff, 0xff, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, _, err := readAll(iotest.HalfReader(bytes.NewReader(b)))
		if err == nil {
			t.Fatal("stream ended without an error")
		}
		for _, m := range msgs {
			if len(m) > maxFrame {
				t.Fatalf("message of %d bytes", len(m))
			}
		}
	})
}

// TestTransportDeliver: the linked sipgo method runs the handlers
// registered with the transport layer's OnMessage.
func TestTransportDeliver(t *testing.T) {
	tl := sip.NewTransportLayer(noDNS(), sip.NewParser(), nil)
	var got []string
	tl.OnMessage(func(m sip.Message) { got = append(got, "a:"+m.Source()) })
	tl.OnMessage(func(m sip.Message) { got = append(got, "b:"+m.Transport()) })
	m, err := sip.NewParser().ParseSIP(options("d"))
	if err != nil {
		t.Fatal(err)
	}
	m.SetSource("127.0.0.1:5")
	m.SetTransport("WS")
	transportDeliver(tl, m)
	if strings.Join(got, ",") != "a:127.0.0.1:5,b:WS" {
		t.Fatalf("handlers saw %v", got)
	}
}

// wsDial opens a WebSocket with sip to addr.
func wsDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := ws.Dialer{Protocols: []string{"sip"}, Timeout: 3 * time.Second}
	c, _, _, err := d.Dial(context.Background(), "ws://"+addr+"/")
	if err != nil {
		t.Fatalf("WS dial: %v", err)
	}
	return c
}

// TestWSFragmentedOverStack: over a real WS connection, an OPTIONS sent in
// three fragments with a ping between them, written a few bytes at a
// time, is answered (200) after the pong with the ping's payload; a
// double-CRLF keep-alive gets a CRLF. (sipgo's reader dropped the
// continuation frames and read the ping's payload as a frame header.)
func TestWSFragmentedOverStack(t *testing.T) {
	st, _, _, _ := streamStack(t)
	c := wsDial(t, listenerOf(t, st, "ws"))
	defer c.Close()
	msg := []byte(strings.Replace(string(options("frag1")), "SIP/2.0/UDP", "SIP/2.0/WS", 1))
	var stream []byte
	stream = append(stream, clientFrame(ws.OpText, true, []byte("\r\n\r\n"))...)
	stream = append(stream, clientFrame(ws.OpText, false, msg[:20])...)
	stream = append(stream, clientFrame(ws.OpPing, true, []byte("are you there"))...)
	stream = append(stream, clientFrame(ws.OpContinuation, false, msg[20:70])...)
	stream = append(stream, clientFrame(ws.OpContinuation, true, msg[70:])...)
	go func() {
		for i := 0; i < len(stream); i += 7 {
			if _, err := c.Write(stream[i:min(i+7, len(stream))]); err != nil {
				return
			}
			time.Sleep(time.Millisecond) // separate reads on the server
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	var got []string
	for len(got) < 3 {
		f, err := ws.ReadFrame(c)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, map[ws.OpCode]string{ws.OpText: "text", ws.OpPong: "pong"}[f.Header.OpCode]+":"+string(f.Payload))
	}
	if got[0] != "text:\r\n" || got[1] != "pong:are you there" || !strings.HasPrefix(got[2], "text:SIP/2.0 200") {
		t.Fatalf("server sent %q", got)
	}
}

// TestWSIdleMemory: a WS connection that carried a message and now idles
// holds no read buffer: heap and stacks per connection (both ends, so an
// upper bound) stay well under sipgo's 32 KiB buffer alone.
func TestWSIdleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 500 connections")
	}
	const n = 500
	st, _ := startStack(t, Options{TCPMaxPerAddress: -1, TCPMaxConns: 2 * n, Streams: StreamOptions{WS: "127.0.0.1:0"}}, answerOptions)
	addr := listenerOf(t, st, "ws")
	conns := make([]net.Conn, 0, n)
	var mu sync.Mutex
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		c := wsDial(t, addr)
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		msg := strings.Replace(string(options("idle"+strconv.Itoa(i))), "SIP/2.0/UDP", "SIP/2.0/WS", 1)
		if err := wsutil.WriteClientText(c, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if b, err := wsutil.ReadServerText(c); err != nil || !bytes.HasPrefix(b, []byte("SIP/2.0 200")) {
			t.Fatalf("connection %d: %q %v", i, b, err)
		}
	}
	time.Sleep(TxLinger + time.Second) // the OPTIONS transactions end
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := func(m *runtime.MemStats) int64 { return int64(m.HeapInuse + m.StackInuse) }
	per := (used(&after) - used(&before)) / n
	t.Logf("memory per idle WS connection that carried a message (heap + stacks, both ends): %d bytes", per)
	if per > 16<<10 {
		t.Fatalf("an idle WS connection costs %d bytes, want under 16 KiB", per)
	}
}

// TestTLSSplitOverStack: over SIP over TLS, a message cut across two TLS
// records is answered, two messages in one record both are, and a
// double-CRLF keep-alive gets a CRLF.
func TestTLSSplitOverStack(t *testing.T) {
	st, _, _, ccfg := streamStack(t)
	c, err := tls.Dial("tcp", listenerOf(t, st, "tls"), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := func(b string) []byte {
		return []byte(strings.Replace(string(options(b)), "SIP/2.0/UDP", "SIP/2.0/TLS", 1))
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	expect := func(what, prefix string) {
		t.Helper()
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, prefix) {
			t.Fatalf("%s: got %q %v", what, line, err)
		}
		if prefix == "\r\n" {
			return
		}
		for { // the rest of the response head (no body)
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if l == "\r\n" {
				return
			}
		}
	}
	if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	expect("keep-alive", "\r\n")
	m := msg("split1")
	if _, err := c.Write(m[:30]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // a separate read on the server
	if _, err := c.Write(m[30:]); err != nil {
		t.Fatal(err)
	}
	expect("split message", "SIP/2.0 200")
	if _, err := c.Write(append(msg("two1"), msg("two2")...)); err != nil {
		t.Fatal(err)
	}
	expect("first of two", "SIP/2.0 200")
	expect("second of two", "SIP/2.0 200")
}

// TestTLSIdleMemory: a SIP-over-TLS connection that carried a message and
// now idles holds no read buffer (sipgo's reader held 32 KiB): heap and
// stacks per connection, both ends with their TLS state (about 23 KiB),
// stay under 40 KiB (about 58 KiB with sipgo's reader).
func TestTLSIdleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 120 connections")
	}
	const n = 120 // under the per-address cap of 128
	st, _, _, ccfg := streamStack(t)
	addr := listenerOf(t, st, "tls")
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	buf := make([]byte, 4096)
	for i := range n {
		c, err := tls.Dial("tcp", addr, ccfg)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte(strings.Replace(string(options("tidle"+strconv.Itoa(i))), "SIP/2.0/UDP", "SIP/2.0/TLS", 1))); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if k, err := c.Read(buf); err != nil || !bytes.HasPrefix(buf[:k], []byte("SIP/2.0 200")) {
			t.Fatalf("connection %d: %q %v", i, buf[:k], err)
		}
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := func(m *runtime.MemStats) int64 { return int64(m.HeapInuse + m.StackInuse) }
	per := (used(&after) - used(&before)) / n
	t.Logf("memory per idle TLS connection that carried a message (heap + stacks, both ends): %d bytes", per)
	if per > 40<<10 {
		t.Fatalf("an idle TLS connection costs %d bytes, want under 40 KiB", per)
	}
}
