package sipstack

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/trace"
)

// ConnVerdict is what Options.AcceptConn decides about a new TCP
// connection, before anything is read from it.
type ConnVerdict int

const (
	// ConnAllow admits the connection, subject to the caps.
	ConnAllow ConnVerdict = iota
	// ConnRefuse closes it at once (a banned or rate-limited address).
	ConnRefuse
	// ConnTrusted admits it without the per-address cap (a trusted
	// network, e.g. an SBC that concentrates many phones on one address);
	// the total cap still applies.
	ConnTrusted
)

// ConnEventKind says what a ConnEvent reports.
type ConnEventKind int

const (
	// ConnOverPerAddress: a connection was closed at accept because its
	// address already holds MaxPerAddress connections.
	ConnOverPerAddress ConnEventKind = iota + 1
	// ConnOverTotal: a connection was closed at accept because MaxTotal
	// connections are open and none of them is evictable.
	ConnOverTotal
	// ConnEvicted: at MaxTotal, the oldest connection that had not yet
	// delivered a complete message was closed to admit a new one.
	ConnEvicted
	// AcceptFailing: Accept failed (EMFILE, ENFILE, ENOBUFS, ...); the
	// listener retries with back-off. Reported once per burst of failures.
	AcceptFailing
	// HandshakeFailed: a TLS handshake failed or timed out, or a
	// WebSocket upgrade was refused (Err says why: a *HandshakeError).
	HandshakeFailed
)

// ConnEvent reports a connection the listener closed or refused, or a
// failing Accept. Remote is zero for AcceptFailing; Err is set only then.
type ConnEvent struct {
	Kind   ConnEventKind
	Remote netip.AddrPort
	Held   int // connections held by the address (per-address) or in total
	Limit  int // the cap in force
	Err    error
	// Proto is the listener's transport: "TCP", "TLS", "WS" or "WSS".
	Proto string
}

// Connection defaults (see Options).
const (
	// DefaultTCPIdleTimeout is how long an accepted connection may go
	// without delivering a complete SIP message. Phones send their
	// REGISTER at once after connecting; Asterisk gives an unauthenticated
	// TCP session 30 s (tcpauthtimeout) too.
	DefaultTCPIdleTimeout = 30 * time.Second
	// DefaultTCPMaxPerAddress bounds the connections of one address (one
	// /64 for IPv6): an office of a hundred TCP phones behind one NAT
	// address fits; one address cannot take the server's file descriptors.
	DefaultTCPMaxPerAddress = 128
	// maxAutoTotal caps the total derived from the file limit: about
	// 10 KB of memory each, 65,536 idle connections take under 1 GiB.
	maxAutoTotal = 65536
	// inviteHold keeps a connection that delivered an INVITE open for
	// RFC 3261's Timer C (> 3 min): the caller's answers go back on it
	// while the callee rings, with nothing more from the caller.
	inviteHold = 3 * time.Minute
)

// AutoMaxConns derives the total connection cap from the soft file limit:
// the limit minus a reserve (a quarter of it, between 64 and 1,024
// descriptors, for the database, UDP sockets and the connections the
// server dials), at most 65,536, at least 16.
func AutoMaxConns(nofile uint64) int {
	reserve := min(max(nofile/4, 64), 1024)
	if nofile <= reserve+16 {
		return 16
	}
	return int(min(nofile-reserve, maxAutoTotal))
}

// FileLimit returns the soft RLIMIT_NOFILE (Go's runtime has already
// raised it to the hard limit at start) and the hard limit.
func FileLimit() (soft, hard uint64, err error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, 0, err
	}
	return uint64(l.Cur), uint64(l.Max), nil
}

// RaiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit. Go's
// runtime has already raised it to one below the hard limit at start
// (syscall's init, go.dev/issue/46279); this takes the last one too.
func RaiseFileLimit() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("read the file limit: %w", err)
	}
	if l.Cur >= l.Max {
		return nil
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("raise the file limit to %d: %w", l.Max, err)
	}
	return nil
}

// Accept back-off after a failed Accept, as net/http's Server.Serve.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// trackingListener is the TCP listener sipgo serves. It owns the accept
// loop: an Accept error other than a closed listener is retried with
// back-off and never reaches sipgo (whose accept loop would end). It
// refuses connections (AcceptConn, the per-address and total caps),
// holds each new connection until its first byte arrives (an idle
// connection costs no sipgo read buffer), closes connections that deliver
// no complete message within the idle timeout, and remembers accepted
// connections by remote address so the raw-packet filter can answer on
// them and close them.
type trackingListener struct {
	net.Listener
	// proto is the SIP transport served: "TCP", "TLS", "WS" or "WSS".
	proto string
	// prepare, when set, runs the TLS handshake and/or the WebSocket
	// checks on a connection that has sent its first byte, under the
	// handshake deadline; it returns the connection sipgo reads.
	prepare   func(c net.Conn) (net.Conn, error)
	handshake time.Duration
	// flowClosed, when set, is told about every admitted connection
	// that closes (transport, remote ip:port).
	flowClosed func(proto, remote string)
	onClose    func(net.Addr)
	accept     func(netip.AddrPort) ConnVerdict
	event      func(ConnEvent)
	tr         *trace.Tracer
	log        *slog.Logger
	idle       time.Duration
	perAddr    int // 0: no per-address cap
	total      int

	ready     chan net.Conn // connections with data (prepared), for sipgo's Accept
	done      chan struct{} // closed by Close
	startOnce sync.Once
	closeOnce sync.Once
	loopDone  chan struct{} // closed when the accept loop has returned

	idleClosed atomic.Int64 // connections closed by the idle timeout

	// poll parks the idle connections of a TLS, WS or WSS listener (nil:
	// their readers wait in Read, as TCP's do).
	poll *poller

	mu       sync.Mutex
	conns    map[string]*trackedConn   // guarded by mu; by remote ip:port
	byAddr   map[netip.Addr]*addrConns // guarded by mu; by address key
	n        int                       // guarded by mu; connections held
	unproven int                       // guarded by mu; of them without a complete message
}

// addrConns are one address key's connections. Guarded by the
// listener's mu.
type addrConns struct {
	n        int          // connections held
	unproven int          // of them without a complete message
	old, new *trackedConn // the unproven ones, oldest first
}

// newTrackingListener wraps l with opts' caps and callbacks, defaults applied.
func newTrackingListener(l net.Listener, opts Options, log *slog.Logger) *trackingListener {
	tl := &trackingListener{Listener: l, proto: "TCP", flowClosed: opts.FlowClosed, onClose: opts.ConnClosed, accept: opts.AcceptConn, event: opts.ConnEvent,
		tr: opts.Tracer, log: log, idle: opts.TCPIdleTimeout, perAddr: opts.TCPMaxPerAddress, total: opts.TCPMaxConns,
		ready: make(chan net.Conn), done: make(chan struct{}), loopDone: make(chan struct{}),
		conns: map[string]*trackedConn{}, byAddr: map[netip.Addr]*addrConns{}}
	if tl.idle <= 0 {
		tl.idle = DefaultTCPIdleTimeout
	}
	if tl.perAddr == 0 {
		tl.perAddr = DefaultTCPMaxPerAddress
	} else if tl.perAddr < 0 {
		tl.perAddr = 0
	}
	if tl.total <= 0 {
		soft, _, err := FileLimit()
		if err != nil {
			soft = 1024
		}
		tl.total = AutoMaxConns(soft)
	}
	return tl
}

// Accept returns the next connection that has sent data. It fails only
// when the listener is closed (net.ErrClosed).
func (l *trackingListener) Accept() (net.Conn, error) {
	l.startOnce.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close closes the listener and every connection not yet handed to sipgo.
func (l *trackingListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		err = l.Listener.Close()
		close(l.done)
		l.startOnce.Do(func() { close(l.loopDone) }) // the loop never started
		<-l.loopDone
		for _, c := range l.snapshot() {
			if !c.handed.Load() {
				c.Close()
			}
		}
	})
	return err
}

// closeAll closes every tracked connection (the listener's Close leaves
// the ones sipgo reads; the stack closes them before sipgo's pool) and
// reports how many of them sipgo was reading.
func (l *trackingListener) closeAll() (handed int) {
	for _, c := range l.snapshot() {
		if c.handed.Load() {
			handed++
		}
		c.Close()
	}
	return handed
}

func (l *trackingListener) snapshot() []*trackedConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*trackedConn, 0, len(l.conns))
	for _, c := range l.conns {
		out = append(out, c)
	}
	return out
}

// held returns the number of connections held.
func (l *trackingListener) held() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *trackingListener) acceptLoop() {
	defer close(l.loopDone)
	var delay time.Duration
	var failures int
	var since time.Time
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if failures == 0 {
				since = time.Now()
				l.log.Warn("sip stack: accepting TCP connections fails; retrying with back-off (raise the file limit or lower --tcp-max-conns)",
					"error", err)
				if l.event != nil {
					l.event(ConnEvent{Kind: AcceptFailing, Err: err, Held: l.held(), Limit: l.total, Proto: l.proto})
				}
			}
			failures++
			delay = min(max(delay*2, acceptBackoffMin), acceptBackoffMax)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return
			}
			continue
		}
		if failures > 0 {
			l.log.Info("sip stack: accepting TCP connections again", "failed_accepts", failures,
				"for", time.Since(since).Round(time.Millisecond).String())
			failures, delay = 0, 0
		}
		l.admit(c)
	}
}

// addrKey is what the per-address cap counts: the address, or its /64
// for IPv6 (one subscriber's prefix).
func addrKey(ip netip.Addr) netip.Addr {
	if ip.Is6() && !ip.Is4In6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip.Unmap()
}

func remoteAddrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		if a != nil {
			ap, _ = netip.ParseAddrPort(a.String())
		}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// admit decides about a new connection and, when it is admitted, waits
// (in its own goroutine) for its first byte.
func (l *trackingListener) admit(c net.Conn) {
	ap := remoteAddrPort(c.RemoteAddr())
	verdict := ConnAllow
	if l.accept != nil {
		verdict = l.accept(ap)
	}
	if verdict == ConnRefuse {
		c.Close()
		return
	}
	key := addrKey(ap.Addr())
	tc := &trackedConn{Conn: c, l: l, key: c.RemoteAddr().String(), addr: key}
	tc.deadline.Store(time.Now().Add(l.idle).UnixNano())
	var ev *ConnEvent
	var evict *trackedConn
	l.mu.Lock()
	a := l.byAddr[key]
	switch {
	case verdict != ConnTrusted && l.perAddr > 0 && a != nil && a.n >= l.perAddr:
		ev = &ConnEvent{Kind: ConnOverPerAddress, Remote: ap, Held: a.n, Limit: l.perAddr, Proto: l.proto}
	case l.n >= l.total && l.unproven == 0:
		ev = &ConnEvent{Kind: ConnOverTotal, Remote: ap, Held: l.n, Limit: l.total, Proto: l.proto}
	case l.n >= l.total:
		evict = l.victimLocked()
		l.unlinkLocked(evict)
	}
	if ev == nil {
		if a == nil {
			a = &addrConns{}
			l.byAddr[key] = a
		}
		l.conns[tc.key] = tc
		a.n++
		l.n++
		tc.tracked = true
		l.pushLocked(a, tc)
	}
	l.mu.Unlock()
	if ev != nil {
		c.Close()
		if l.event != nil {
			l.event(*ev)
		}
		return
	}
	if evict != nil {
		evict.Close()
		if l.event != nil {
			l.event(ConnEvent{Kind: ConnEvicted, Remote: remoteAddrPort(evict.Conn.RemoteAddr()), Held: l.total, Limit: l.total, Proto: l.proto})
		}
	}
	go l.wait(tc)
}

// wait hands tc to sipgo once it is readable (data, or the peer's close),
// or closes it when its deadline passes first. A connection that sends
// nothing thus costs a parked goroutine, not sipgo's 32 KiB read buffer.
func (l *trackingListener) wait(tc *trackedConn) {
	if sc, ok := tc.Conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = tc.Conn.SetReadDeadline(time.Unix(0, tc.deadline.Load()))
			// Peek, never consume: sipgo reads the bytes. (A readiness
			// event from before RawRead is reset by it, so each call must
			// look at the socket itself.)
			var b [1]byte
			err := rc.Read(func(fd uintptr) bool {
				_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
				return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK && err != syscall.EINTR
			})
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					l.idleClosed.Add(1)
				}
				tc.Close()
				return
			}
		}
	}
	var out net.Conn = tc
	if l.prepare != nil {
		hs := l.handshake
		if hs <= 0 {
			hs = DefaultHandshakeTimeout
		}
		dl := time.Now().Add(hs)
		tc.deadline.Store(dl.UnixNano())
		_ = tc.Conn.SetWriteDeadline(dl)
		pc, err := l.prepare(tc)
		if err != nil {
			var he *HandshakeError
			if !time.Now().Before(dl) && (!errors.As(err, &he) || he.Reason != ReasonTimeout) {
				// trackedConn's Read reports its deadline as EOF.
				err = &HandshakeError{Reason: ReasonTimeout, Detail: fmt.Sprintf("%s handshake not completed within %s", l.proto, hs), Err: err}
			}
			tc.Close()
			if l.event != nil && !errors.Is(err, errPlainPage) {
				l.event(ConnEvent{Kind: HandshakeFailed, Remote: remoteAddrPort(tc.Conn.RemoteAddr()), Proto: l.proto, Err: err})
			}
			return
		}
		_ = tc.Conn.SetWriteDeadline(time.Time{})
		tc.deadline.Store(time.Now().Add(l.idle).UnixNano())
		out = pc
	}
	tc.handed.Store(true)
	select {
	case l.ready <- out:
	case <-l.done:
		tc.Close()
	}
}

// victimSample is how many addresses with unproven connections an
// eviction compares.
const victimSample = 16

// victimLocked picks the connection to evict at the total cap: the oldest
// unproven connection of the address holding the most unproven ones among
// a random sample of addresses (Go's map order), so a flood from a few
// addresses evicts its own connections, not a phone's that has just
// connected. l.unproven must be > 0; l.mu must be held.
func (l *trackingListener) victimLocked() *trackedConn {
	var best *addrConns
	seen := 0
	for _, a := range l.byAddr {
		if a.unproven == 0 {
			continue
		}
		if best == nil || a.unproven > best.unproven {
			best = a
		}
		if seen++; seen == victimSample {
			break
		}
	}
	return best.old
}

// pushLocked appends c to its address's unproven list. l.mu must be held.
func (l *trackingListener) pushLocked(a *addrConns, c *trackedConn) {
	c.unproven, c.ac = true, a
	c.prev, c.next = a.new, nil
	if a.new != nil {
		a.new.next = c
	} else {
		a.old = c
	}
	a.new = c
	a.unproven++
	l.unproven++
}

// unlinkLocked removes c from its address's unproven list. l.mu must be
// held.
func (l *trackingListener) unlinkLocked(c *trackedConn) {
	if !c.unproven {
		return
	}
	a := c.ac
	c.unproven = false
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		a.old = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		a.new = c.prev
	}
	c.prev, c.next = nil, nil
	a.unproven--
	l.unproven--
}

// forget drops a closed connection from the books.
func (l *trackingListener) forget(c *trackedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !c.tracked {
		return
	}
	c.tracked = false
	if l.conns[c.key] == c {
		delete(l.conns, c.key)
	}
	l.n--
	l.unlinkLocked(c)
	if a := l.byAddr[c.addr]; a != nil {
		if a.n--; a.n <= 0 {
			delete(l.byAddr, c.addr)
		}
	}
}

func (l *trackingListener) get(remote string) *trackedConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns[remote]
}

// delivered records a complete message on the connection from remote: it
// is no longer evictable and stays open at least hold more.
func (l *trackingListener) delivered(remote string, hold time.Duration) {
	c := l.get(remote)
	if c == nil {
		return
	}
	if !c.proven.Load() {
		l.mu.Lock()
		l.unlinkLocked(c)
		l.mu.Unlock()
		c.proven.Store(true)
	}
	c.extend(time.Now().Add(max(hold, l.idle)))
}

// trackedConn is an accepted TCP connection. Only sipgo's read goroutine
// calls Read.
type trackedConn struct {
	net.Conn
	l    *trackingListener
	key  string     // remote ip:port
	addr netip.Addr // per-address cap key

	deadline atomic.Int64 // Unix ns; Read ends (EOF) when it passes
	armed    int64        // the read deadline set on Conn; Read's goroutine only
	handed   atomic.Bool  // given to sipgo
	proven   atomic.Bool  // delivered a complete message
	closed   atomic.Bool
	rearm    atomic.Bool // the read deadline on Conn may have been changed

	// Parking (poller): the reader sets resume before it first parks the
	// connection; rc and probing are the reader's own.
	resume    func()          // starts a reader again after a parking
	rc        syscall.RawConn // the socket, once asked for
	probing   time.Duration   // >0: Read waits this long at most, then fails with errWouldBlock
	watched   bool            // guarded by the poller's mu: registered with epoll
	pfd       int             // guarded by the poller's mu: descriptor + 1 while parked
	idleTimer *time.Timer     // guarded by the poller's mu

	// guarded by l.mu
	tracked    bool
	unproven   bool
	ac         *addrConns // its address's books
	prev, next *trackedConn
}

// extend moves the idle deadline to until unless it is already later.
func (c *trackedConn) extend(until time.Time) {
	u := until.UnixNano()
	for {
		d := c.deadline.Load()
		if d >= u || c.deadline.CompareAndSwap(d, u) {
			return
		}
	}
}

// SetDeadline sets the write deadline; the read deadline stays the idle
// deadline (sipgo's WebSocket upgrade clears deadlines after it).
func (c *trackedConn) SetDeadline(t time.Time) error {
	c.rearm.Store(true)
	return c.Conn.SetWriteDeadline(t)
}

// SetReadDeadline is ignored: reads end at the idle deadline.
func (c *trackedConn) SetReadDeadline(time.Time) error {
	c.rearm.Store(true)
	return nil
}

// Read reads from the connection until its idle deadline, which other
// goroutines may move later meanwhile; when it passes, Read reports EOF
// (sipgo then closes the connection quietly). While the reader probes
// (probe), Read waits at most the probe's grace and then reports
// errWouldBlock.
func (c *trackedConn) Read(b []byte) (int, error) {
	for {
		d := c.deadline.Load()
		wait := d
		if c.probing > 0 {
			wait = min(d, time.Now().Add(c.probing).UnixNano())
		}
		if wait != c.armed || c.rearm.Swap(false) {
			c.armed = wait
			_ = c.Conn.SetReadDeadline(time.Unix(0, wait))
		}
		n, err := c.Conn.Read(b)
		if err != nil && n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			if c.deadline.Load() > time.Now().UnixNano() {
				if c.probing > 0 {
					return 0, errWouldBlock
				}
				continue // extended meanwhile
			}
			c.l.idleClosed.Add(1)
			return 0, io.EOF
		}
		return n, err
	}
}

// errWouldBlock is what Read reports while probing and nothing is there
// to read. It is a net.Error that is temporary (a timeout), so crypto/tls
// keeps the connection usable after it (as after a read deadline).
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "nothing to read yet" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// rawConn returns the socket (reader only).
func (c *trackedConn) rawConn() (syscall.RawConn, error) {
	if c.rc == nil {
		sc, ok := c.Conn.(syscall.Conn)
		if !ok {
			return nil, errors.New("not a socket")
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return nil, err
		}
		c.rc = rc
	}
	return c.rc, nil
}

// probe reads into b, waiting at most grace for the socket: when the
// layers above (crypto/tls, a WebSocket upgrade's pending bytes) hold no
// data and none arrives in time, it reports errWouldBlock, a timeout
// crypto/tls recovers from as from a read deadline (reader only).
func (c *trackedConn) probe(r io.Reader, b []byte, grace time.Duration) (int, error) {
	c.probing = max(grace, time.Nanosecond)
	defer func() { c.probing = 0 }()
	return r.Read(b)
}

// Write hands b to the tracer and writes it.
func (c *trackedConn) Write(b []byte) (int, error) {
	if c.l.prepare == nil { // TLS bytes are not SIP: those listeners trace nothing here
		c.l.tr.Record(trace.Out, c.l.proto, c.Conn.LocalAddr(), c.Conn.RemoteAddr(), b)
	} else {
		// sipgo sets no write timeout on TLS and WebSocket connections: a
		// peer that stops reading would block the writer (and the
		// transaction behind it) for good. The connection fails instead.
		_ = c.Conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	}
	return c.Conn.Write(b)
}

// streamWriteTimeout bounds one write on a TLS, WS or WSS connection.
const streamWriteTimeout = 10 * time.Second

// Close closes the connection once, forgets it and reports it.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		if c.l.poll != nil {
			c.l.poll.unpark(c)
		}
		c.l.forget(c)
		if c.l.onClose != nil {
			c.l.onClose(c.Conn.RemoteAddr())
		}
		if c.l.flowClosed != nil && c.handed.Load() {
			c.l.flowClosed(c.l.proto, c.key)
		}
	}
	return err
}
