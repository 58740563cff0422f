package sipstack

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/switchboard-pbx/switchboard/internal/trace"
)

// SIP over WebSocket (RFC 7118), read by switchboard rather than by sipgo.
//
// sipgo v1.7.3's TransportWS.readConnection allocates a read buffer of
// sip.TransportBufferReadSize (32 KiB, one package variable shared with
// UDP and TCP) for each connection's whole life: 10,000 idle browser
// phones held 320 MB of buffers. It also drops continuation frames (a
// fragmented message never arrives) and leaves a ping's payload in the
// stream. serveWS reads instead: frame headers go through a 14-byte
// scratch array, a message's payload into a buffer taken from the
// Stack's pool only once its frame header has arrived, grown only as
// bytes actually arrive (so a peer that announces 64 KiB and sends one
// byte holds about 4 KiB), and given back once sipgo's parser has copied
// the message. Between messages a connection holds no buffer; its reader
// waits for the next message in a fresh goroutine (small stack) for
// parkAfter, then parks the connection (poller_linux.go) and ends.
//
// A parsed message goes to sipgo's transport layer exactly as sipgo's own
// reader hands it (transportDeliver: the transaction layer, then the
// stack's delivered hook), with the transport ("WS"/"WSS") and source
// (the peer's ip:port) set; the connection is in sipgo's pool under the
// peer's address, so responses and requests for the flow (flows.go) are
// written on it by WriteMsg.

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close status codes (RFC 6455 §7.4.1).
const (
	closeProtocolError = 1002
	closeTooBig        = 1009
)

// payloadChunk is how much a message's buffer grows ahead of the bytes
// that have arrived.
const payloadChunk = 4 << 10

// maxPooledBuf: larger message buffers are left to the garbage collector.
const maxPooledBuf = 16 << 10

// errWSProtocol: the peer broke RFC 6455 framing; the connection ends.
var errWSProtocol = errors.New("WebSocket protocol error")

// errWSClosed: the peer sent a close frame.
var errWSClosed = errors.New("WebSocket closed by the peer")

// tooLargeError: a frame, or a fragmented message, over maxFrame.
type tooLargeError struct{ size uint64 }

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("WebSocket message of %d bytes (limit %d)", e.size, maxFrame)
}

// frameHeader is a parsed WebSocket frame header.
type frameHeader struct {
	fin    bool
	op     byte
	masked bool
	mask   [4]byte
	length uint64
}

// wsReader reads the messages of a client's WebSocket (server side): data
// frames (text or binary, fragmented or not) are assembled into one
// message of at most maxFrame bytes; control frames are handed to control
// as they come, between or inside a message's fragments.
type wsReader struct {
	r       io.Reader
	bufs    *sync.Pool // of *[]byte
	control func(op byte, payload []byte) error
	hdr     [14]byte
}

// newBufPool returns the pool of message buffers serveWS reads into.
func newBufPool() *sync.Pool {
	return &sync.Pool{New: func() any {
		b := make([]byte, 0, 2048)
		return &b
	}}
}

func (w *wsReader) get() *[]byte {
	b := w.bufs.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

// put gives a message buffer back.
func (w *wsReader) put(b *[]byte) {
	if cap(*b) <= maxPooledBuf {
		*b = (*b)[:0]
		w.bufs.Put(b)
	}
}

// unexpected turns an EOF inside a frame into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// header reads one frame header. io.EOF: the stream ended between frames.
func (w *wsReader) header() (frameHeader, error) {
	var h frameHeader
	if _, err := io.ReadFull(w.r, w.hdr[:2]); err != nil {
		return h, err
	}
	b0, b1 := w.hdr[0], w.hdr[1]
	if b0&0x70 != 0 {
		return h, fmt.Errorf("%w: reserved bits set (no extension was negotiated)", errWSProtocol)
	}
	h.fin, h.op, h.masked = b0&0x80 != 0, b0&0x0f, b1&0x80 != 0
	l7 := b1 & 0x7f
	need := 0
	switch l7 {
	case 126:
		need = 2
	case 127:
		need = 8
	}
	if h.masked {
		need += 4
	}
	ext := w.hdr[2 : 2+need]
	if _, err := io.ReadFull(w.r, ext); err != nil {
		return h, unexpected(err)
	}
	switch l7 {
	case 126:
		h.length = uint64(ext[0])<<8 | uint64(ext[1])
		ext = ext[2:]
	case 127:
		for _, x := range ext[:8] {
			h.length = h.length<<8 | uint64(x)
		}
		ext = ext[8:]
		if h.length>>63 != 0 {
			return h, fmt.Errorf("%w: 64-bit length with the high bit set", errWSProtocol)
		}
	default:
		h.length = uint64(l7)
	}
	if h.masked {
		copy(h.mask[:], ext)
	}
	return h, nil
}

// unmask applies the frame's mask to its payload p.
func (h *frameHeader) unmask(p []byte) {
	if !h.masked {
		return
	}
	for i := range p {
		p[i] ^= h.mask[i&3]
	}
}

// next returns the next complete message, in a buffer of the pool (give
// it back with put). The error is io.EOF when the stream ended between
// messages, errWSClosed after a close frame (control has answered it),
// a *tooLargeError, an error wrapping errWSProtocol, or the read's.
func (w *wsReader) next() (*[]byte, error) {
	var msg *[]byte
	fail := func(err error) (*[]byte, error) {
		if msg != nil {
			w.put(msg)
		}
		return nil, err
	}
	for {
		h, err := w.header()
		if err != nil {
			if msg != nil {
				err = unexpected(err)
			}
			return fail(err)
		}
		if h.op >= 0x8 { // control frame
			if h.op != opClose && h.op != opPing && h.op != opPong {
				return fail(fmt.Errorf("%w: reserved control opcode %#x", errWSProtocol, h.op))
			}
			if !h.fin || h.length > 125 {
				return fail(fmt.Errorf("%w: control frame fragmented or over 125 bytes", errWSProtocol))
			}
			var p [125]byte
			if _, err := io.ReadFull(w.r, p[:h.length]); err != nil {
				return fail(unexpected(err))
			}
			h.unmask(p[:h.length])
			if err := w.control(h.op, p[:h.length]); err != nil {
				return fail(err)
			}
			continue
		}
		switch {
		case h.op != opContinuation && h.op != opText && h.op != opBinary:
			return fail(fmt.Errorf("%w: reserved data opcode %#x", errWSProtocol, h.op))
		case h.op == opContinuation && msg == nil:
			return fail(fmt.Errorf("%w: continuation frame outside a message", errWSProtocol))
		case h.op != opContinuation && msg != nil:
			return fail(fmt.Errorf("%w: new message inside a fragmented one", errWSProtocol))
		}
		if msg == nil {
			msg = w.get()
		}
		if size := uint64(len(*msg)) + h.length; size > maxFrame {
			return fail(&tooLargeError{size: size})
		}
		start := len(*msg)
		b, err := readPayload(w.r, *msg, h.length)
		*msg = b
		if err != nil {
			return fail(unexpected(err))
		}
		h.unmask(b[start:])
		if h.fin {
			return msg, nil
		}
	}
}

// readPayload appends n bytes from r to buf, growing it at most
// payloadChunk ahead of what has arrived.
func readPayload(r io.Reader, buf []byte, n uint64) ([]byte, error) {
	for n > 0 {
		k := int(min(n, payloadChunk))
		buf = slices.Grow(buf, k)
		m, err := io.ReadFull(r, buf[len(buf):len(buf)+k])
		buf = buf[:len(buf)+m]
		n -= uint64(m)
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// appendFrameHeader appends an unmasked (server) frame header with FIN.
func appendFrameHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xffff:
		return append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		for s := 56; s >= 0; s -= 8 {
			b = append(b, byte(uint64(n)>>s))
		}
		return b
	}
}

// wsConn is an accepted WS or WSS connection: a sip.Connection in sipgo's
// pool (WriteMsg frames a message as one text frame) whose messages
// wsConn.read hands to sipgo's transport layer.
type wsConn struct {
	net.Conn // *upgraded, over the tls.Conn (WSS) or the trackedConn (WS)
	s        *Stack
	l        *trackingListener
	proto    string // "WS" or "WSS"
	raddr    string // the peer's ip:port, the message source and pool key
	rd       wsReader
	src      probed       // what rd reads: a byte more found, then Conn
	tc       *trackedConn // the socket under the layers, for parking
	tlsc     *tls.Conn    // WSS: crypto/tls's state, trimmed while parked
	refs     atomic.Int32 // sipgo's references; the reader holds one
	wmu      sync.Mutex   // one frame at a time
}

// serveWS reads the connections of a WS or WSS listener until it closes.
func (s *Stack) serveWS(l *trackingListener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		u, ok := c.(*upgraded)
		if !ok { // the listener's prepare step always upgrades
			c.Close()
			continue
		}
		wc := &wsConn{Conn: u, s: s, l: l, proto: l.proto, raddr: u.RemoteAddr().String()}
		wc.src.r = u
		wc.rd = wsReader{r: &wc.src, bufs: s.bufs, control: wc.control}
		wc.tc, wc.tlsc = layersOf(u.Conn)
		if wc.tc != nil {
			wc.tc.resume = wc.read
		}
		wc.refs.Store(1)
		if p := s.UA.TransportLayer().Pool(l.proto); p != nil {
			p.Add(wc.raddr, wc)
		}
		go wc.wait() // parked too if its first message does not come at once
	}
}

// read reads and delivers one message (its bytes are there, or coming),
// then leaves the wait for the next to a fresh goroutine (wait), whose
// stack starts small; it ends the connection on a read or protocol error.
func (c *wsConn) read() {
	msg, err := c.rd.next()
	if err != nil {
		c.end(err)
		return
	}
	ok := c.handle(*msg)
	c.rd.put(msg)
	if !ok {
		c.end(nil)
		return
	}
	go c.wait()
}

// parkAfter is how long a reader waits for a connection's next message
// before it parks the connection. The quick turns of a transaction (a
// REGISTER's 401 answered at once, an ACK, a pipelined request) come
// within it and are read exactly as before; a turn that takes longer
// (a remote phone's round trip, a person answering) is read after a
// wake-up from the poller, tens of microseconds that its own wait dwarfs.
// It is short because every reader waiting costs a goroutine: at 2,500
// messages/s, a 1 s wait kept 2,500-5,000 of them, about 3 KiB more
// resident per connection in the 10,000-connection measurement.
const parkAfter = 200 * time.Millisecond

// wait waits up to parkAfter for the next message's first byte and reads
// the message when it comes (or the stream ends); otherwise it parks the
// connection with crypto/tls's empty buffers released (the poller starts
// read when bytes arrive) and ends. Without a poller it reads, waiting as
// long as it takes.
func (c *wsConn) wait() {
	if c.tc == nil || c.l.poll == nil {
		c.read()
		return
	}
	n, err := c.tc.probe(c.Conn, c.src.b[:], parkAfter)
	switch {
	case n > 0:
		c.src.has = true
		c.read()
		return
	case err != nil && !errors.Is(err, errWouldBlock):
		c.src.err = err
		c.read()
		return
	}
	trimTLS(c.tlsc)
	if c.l.poll.park(c.tc) != nil {
		c.read()
	}
}

// handle delivers one message as sipgo's reader would (the read filter
// and tracer, CRLF keep-alives, the parser); false ends the connection.
func (c *wsConn) handle(data []byte) bool {
	if len(bytes.Trim(data, "\x00")) == 0 {
		return true
	}
	if f := c.s.readFilter; f != nil {
		out, err := f(sip.TransportReadProps{Transport: c.proto, LocalAddr: c.LocalAddr(), RemoteAddr: c.RemoteAddr()}, data)
		if err != nil {
			return false
		}
		if len(out) == 0 {
			return true
		}
		data = out
	}
	if len(data) <= 4 && len(bytes.Trim(data, "\r\n")) == 0 {
		// RFC 5626 §3.5.1 keep-alive: a double CRLF gets one CRLF back.
		if string(data) == "\r\n\r\n" {
			return c.writeFrame(opText, data[:2]) == nil
		}
		return true
	}
	msg, err := c.s.parser.ParseSIP(data)
	if err != nil {
		c.s.log.Info("sip stack: unparsable SIP message over a WebSocket; connection closed",
			"transport", c.proto, "remote", c.raddr, "error", err)
		return false
	}
	msg.SetTransport(c.proto)
	msg.SetSource(c.raddr)
	transportDeliver(c.s.UA.TransportLayer(), msg)
	return true
}

// control answers a ping and a close frame.
func (c *wsConn) control(op byte, payload []byte) error {
	switch op {
	case opPing:
		return c.writeFrame(opPong, payload)
	case opClose:
		if len(payload) >= 2 {
			payload = payload[:2] // echo the status code
		} else {
			payload = nil
		}
		_ = c.writeFrame(opClose, payload)
		return errWSClosed
	}
	return nil
}

// end reports an oversized message, tells the peer why the connection
// ends when it broke the protocol, and closes the connection.
func (c *wsConn) end(err error) {
	var big *tooLargeError
	switch {
	case errors.As(err, &big):
		if c.l.event != nil {
			c.l.event(ConnEvent{Kind: HandshakeFailed, Remote: remoteAddrPort(c.RemoteAddr()), Proto: c.proto,
				Err: &HandshakeError{Reason: ReasonFrameTooLarge, Detail: fmt.Sprintf("WebSocket frame or message of %d bytes (limit %d); connection closed", big.size, maxFrame)}})
		}
		_ = c.writeFrame(opClose, []byte{closeTooBig >> 8, closeTooBig & 0xff})
	case errors.Is(err, errWSProtocol):
		c.s.log.Info("sip stack: WebSocket protocol error; connection closed", "transport", c.proto, "remote", c.raddr, "error", err)
		_ = c.writeFrame(opClose, []byte{closeProtocolError >> 8, closeProtocolError & 0xff})
	}
	if p := c.s.UA.TransportLayer().Pool(c.proto); p != nil {
		_ = p.CloseAndDelete(c, c.raddr)
	}
	c.Close()
}

// writeFrame writes one unmasked frame.
func (c *wsConn) writeFrame(op byte, payload []byte) error {
	b := appendFrameHeader(make([]byte, 0, 10+len(payload)), op, len(payload))
	b = append(b, payload...)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.Conn.Write(b)
	return err
}

// WriteMsg writes msg as one text frame (sip.Connection). The connection's
// write deadline (streamWriteTimeout) bounds a peer that stops reading.
func (c *wsConn) WriteMsg(msg sip.Message) error {
	var b bytes.Buffer
	b.Grow(2048)
	b.Write(make([]byte, 10)) // room for the frame header
	msg.StringWrite(&b)
	out := b.Bytes()
	payload := out[10:]
	var hb [10]byte
	h := appendFrameHeader(hb[:0], opText, len(payload))
	start := 10 - len(h)
	copy(out[start:], h)
	c.s.tr.Record(trace.Out, c.proto, c.LocalAddr(), c.RemoteAddr(), payload)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.Conn.Write(out[start:]); err != nil {
		return fmt.Errorf("write to %s %s: %w", c.proto, c.raddr, err)
	}
	return nil
}

// probed reads a byte found by a probe (or the error it met) before the
// rest.
type probed struct {
	b   [1]byte
	has bool
	err error
	r   io.Reader
}

func (p *probed) Read(b []byte) (int, error) {
	switch {
	case len(b) == 0:
		return 0, nil
	case p.has:
		b[0], p.has = p.b[0], false
		return 1, nil
	case p.err != nil:
		err := p.err
		p.err = nil
		return 0, err
	}
	return p.r.Read(b)
}

// layersOf finds the socket (and, over TLS, crypto/tls's connection) under
// a WS, WSS or TLS listener's connection.
func layersOf(c net.Conn) (*trackedConn, *tls.Conn) {
	switch x := c.(type) {
	case *tls.Conn:
		tc, _ := x.NetConn().(*trackedConn)
		return tc, x
	case *trackedConn:
		return x, nil
	}
	return nil, nil
}

// Ref changes sipgo's reference count (sip.Connection).
func (c *wsConn) Ref(i int) int { return int(c.refs.Add(int32(i))) }

// TryClose drops one of sipgo's references (sip.Connection). It never
// closes the connection: the peer, the idle timeout and the stack's
// Close end it.
func (c *wsConn) TryClose() (int, error) { return int(c.refs.Add(-1)), nil }
