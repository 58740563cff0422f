package sipstack

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"

	"github.com/switchboard-pbx/switchboard/internal/trace"
)

// SIP over TLS, read by switchboard rather than by sipgo, for the reason
// given in wsconn.go: sipgo's TransportTCP.readConnection (which its TLS
// transport uses) holds a 32 KiB buffer for each connection's life. An
// idle TLS connection here waits for one byte; only then does it take a
// buffer from the Stack's pool and a stream parser, and gives both back
// once the parser holds no partial message.

// tlsConn is an accepted SIP-over-TLS connection: a sip.Connection in
// sipgo's TLS pool whose messages tlsConn.read hands to sipgo's transport
// layer.
type tlsConn struct {
	net.Conn // the tls.Conn over the trackedConn
	s        *Stack
	l        *trackingListener
	raddr    string
	tc       *trackedConn // the socket under crypto/tls, for parking
	tlsc     *tls.Conn
	first    [1]byte      // the byte an idle connection waits for
	refs     atomic.Int32 // sipgo's references; the reader holds one
	wmu      sync.Mutex
}

// serveTLS reads the connections of the TLS listener until it closes.
func (s *Stack) serveTLS(l *trackingListener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		tc := &tlsConn{Conn: c, s: s, l: l, raddr: c.RemoteAddr().String()}
		tc.tc, tc.tlsc = layersOf(c)
		if tc.tc != nil {
			tc.tc.resume = tc.read
		}
		tc.refs.Store(1)
		if p := s.UA.TransportLayer().Pool("TLS"); p != nil {
			p.Add(tc.raddr, tc)
		}
		go tc.wait() // parked too if its first message does not come at once
	}
}

// read waits for the next byte, then serves the messages it starts.
func (c *tlsConn) read() {
	if _, err := c.Conn.Read(c.first[:]); err != nil {
		c.end()
		return
	}
	c.serve()
}

// serve reads and delivers, from the byte in c.first on, until the
// parser holds no partial message, then leaves the wait for the next byte
// to a fresh goroutine (wait); it ends the connection on a read or
// framing error.
func (c *tlsConn) serve() {
	if !c.burst() {
		c.end()
		return
	}
	go c.wait()
}

// burst reads and delivers, from the byte in c.first on, until the parser
// holds no partial message; false ends the connection.
func (c *tlsConn) burst() bool {
	bp := c.s.bufs.Get().(*[]byte)
	buf := append((*bp)[:0], c.first[0])
	buf = buf[:cap(buf)]
	n := 1
	par := c.s.parser.NewSIPStream()
	ok := true
	for {
		// The rest of the TLS record that brought the byte is there at
		// once; a message cut across records waits for the next one.
		m, err := c.Conn.Read(buf[n:])
		n += m
		if n > 0 {
			ok = c.handle(par, buf[:n])
			n = 0
		}
		if err != nil || !ok {
			ok = false
			break
		}
		if par.Buffer().Len() == 0 {
			break
		}
	}
	par.Close()
	*bp = buf[:0]
	c.s.bufs.Put(bp)
	return ok
}

// wait waits up to parkAfter for the next byte and serves it, or parks
// the connection (see wsConn.wait).
func (c *tlsConn) wait() {
	if c.tc == nil || c.l.poll == nil {
		c.read()
		return
	}
	n, err := c.tc.probe(c.Conn, c.first[:], parkAfter)
	switch {
	case n > 0:
		c.serve()
		return
	case err != nil && !errors.Is(err, errWouldBlock):
		c.end()
		return
	}
	trimTLS(c.tlsc)
	if c.l.poll.park(c.tc) != nil {
		c.read()
	}
}

// handle filters, answers a CRLF keep-alive, and parses one read as
// sipgo's TCP reader would; false ends the connection.
func (c *tlsConn) handle(par *sip.ParserStream, data []byte) bool {
	if len(bytes.Trim(data, "\x00")) == 0 {
		return true
	}
	if f := c.s.readFilter; f != nil {
		out, err := f(sip.TransportReadProps{Transport: "TLS", LocalAddr: c.LocalAddr(), RemoteAddr: c.RemoteAddr()}, data)
		if err != nil {
			return false
		}
		if len(out) == 0 {
			return true
		}
		data = out
	}
	if len(data) <= 4 && par.Buffer().Len() == 0 && len(bytes.Trim(data, "\r\n")) == 0 {
		// RFC 5626 §3.5.1 keep-alive: a double CRLF gets one CRLF back.
		if len(data) == 4 {
			c.wmu.Lock()
			_, err := c.Conn.Write(data[:2])
			c.wmu.Unlock()
			return err == nil
		}
		return true
	}
	tl := c.s.UA.TransportLayer()
	err := par.ParseSIPStream(data, func(msg sip.Message) {
		msg.SetTransport("TLS")
		msg.SetSource(c.raddr)
		transportDeliver(tl, msg)
	})
	if err != nil && !errors.Is(err, sip.ErrParseSipPartial) {
		c.s.log.Info("sip stack: unparsable SIP over TLS; connection closed", "remote", c.raddr, "error", err)
		return false
	}
	return true
}

// end takes the connection out of sipgo's pool and closes it.
func (c *tlsConn) end() {
	if p := c.s.UA.TransportLayer().Pool("TLS"); p != nil {
		_ = p.CloseAndDelete(c, c.raddr)
	}
	c.Close()
}

// WriteMsg writes msg (sip.Connection). The trackedConn's write deadline
// (streamWriteTimeout) bounds a peer that stops reading.
func (c *tlsConn) WriteMsg(msg sip.Message) error {
	var b bytes.Buffer
	b.Grow(2048)
	msg.StringWrite(&b)
	c.s.tr.Record(trace.Out, "TLS", c.LocalAddr(), c.RemoteAddr(), b.Bytes())
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.Conn.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write to TLS %s: %w", c.raddr, err)
	}
	return nil
}

// Ref changes sipgo's reference count (sip.Connection).
func (c *tlsConn) Ref(i int) int { return int(c.refs.Add(int32(i))) }

// TryClose drops one of sipgo's references (sip.Connection); it never
// closes the connection (see wsConn.TryClose).
func (c *tlsConn) TryClose() (int, error) { return int(c.refs.Add(-1)), nil }
