// Package sipstack is the thin wrapper around github.com/emiago/sipgo: it
// binds the profile's UDP and TCP listeners, shares one sipgo.UserAgent
// between the server and the client side (so requests and replies leave from
// the listening socket, which phones behind NAT require), and installs the
// raw-packet filter (package guard's) that drops traffic before parsing.
package sipstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/trace"
)

// Filter inspects a raw message before it is parsed. Returning nil drops it
// silently. transport is "UDP" or "TCP".
type Filter func(transport string, remote net.Addr, data []byte) []byte

// Listener is one bound socket of the profile.
type Listener struct {
	Proto string `json:"protocol"` // "udp" or "tcp"
	Addr  string `json:"address"`  // bound ip:port
}

// Options configure a Stack.
type Options struct {
	// Addr is host:port; port 0 picks a free port, the same for UDP and TCP.
	Addr      string
	UserAgent string
	// Filter, when set, sees every UDP datagram, TCP read and WebSocket
	// message before it is parsed (package guard's: it also takes the
	// messages answered without a transaction).
	Filter Filter
	Logger *slog.Logger
	// UnhandledResponse receives responses that match no client
	// transaction (2xx retransmissions of a proxied INVITE).
	UnhandledResponse func(*sip.Response)
	// ConnClosed, when set, is told about every accepted TCP connection
	// that closes (filters keep per-connection framing state).
	ConnClosed func(remote net.Addr)
	// UDPReaders is how many sockets (SO_REUSEPORT, Linux) read the UDP
	// port, each with its own read loops (readLoopsPerSocket); 0 means
	// one per CPU, at most 4.
	UDPReaders int

	// TCPIdleTimeout closes an accepted TCP connection that has not
	// delivered a complete SIP message for this long (0: the default,
	// DefaultTCPIdleTimeout). Each message keeps it open that long again
	// (an INVITE for 3 minutes, Timer C); KeepAlive keeps a registered
	// flow open until its binding expires.
	TCPIdleTimeout time.Duration
	// TCPMaxPerAddress caps the connections of one address (IPv6: one
	// /64); over it a new connection is closed at once. 0: the default,
	// DefaultTCPMaxPerAddress; negative: no cap.
	TCPMaxPerAddress int
	// TCPMaxConns caps the accepted connections in all. At the cap, the
	// oldest connection that has not delivered a complete message yet is
	// closed to admit a new one; with none, the new one is closed. 0:
	// AutoMaxConns of the file limit.
	TCPMaxConns int
	// AcceptConn, when set, decides about each new TCP connection before
	// anything is read from it (bans, rate limits, trusted networks).
	AcceptConn func(remote netip.AddrPort) ConnVerdict
	// ConnEvent, when set, is told about connections closed by the caps
	// and about failing Accepts (once per burst). It must not block.
	ConnEvent func(ConnEvent)
	// Streams configures the TLS, WS and WSS listeners (all off when
	// zero). They share the TCP settings above (idle timeout, caps per
	// address and in all, each listener counting its own) and
	// AcceptConn, ConnClosed and ConnEvent.
	Streams StreamOptions
	// FlowClosed, when set, is told about every connection of the TCP,
	// TLS, WS and WSS listeners that closes after it was handed to sipgo
	// (transport "TCP", "TLS", "WS" or "WSS"; remote ip:port as
	// sip.Request.Source). It must not block.
	FlowClosed func(transport, remote string)
	// Tracer, when set, is handed every message received (before the
	// Filter, so also those it drops) and every write on the UDP sockets,
	// on accepted TCP connections, on WS and WSS connections (each
	// message, unframed) and by Reply, just before the write (so that the
	// trace keeps the order of cause and effect). Writes on TCP
	// connections sipgo dials itself are not seen.
	Tracer *trace.Tracer
}

// Stack is the running SIP stack of the internal profile.
type Stack struct {
	UA        *sipgo.UserAgent
	Server    *sipgo.Server
	Client    *sipgo.Client
	Listeners []Listener
	udp       net.PacketConn   // the first UDP socket (also used to send)
	udpMore   []net.PacketConn // more sockets on the same port, one reader each
	udpNext   atomic.Uint32    // Reply's next socket (see udpWriter)
	stale     *staleStats      // requests dropped unread (see staleLimit)
	tcp       *trackingListener
	streams   []*trackingListener // TLS, WS, WSS (those on)
	log       *slog.Logger
	tr        *trace.Tracer
	// WS and WSS connections are read by serveWS (wsconn.go): the read
	// filter sipgo's readers apply, a parser, the message buffers.
	readFilter sip.TransportReadFilter
	parser     *sip.Parser
	bufs       *sync.Pool
	// poll parks the idle TLS, WS and WSS connections (poller); nil when
	// none listens or the system has no epoll.
	poll *poller
}

// readLoopsPerSocket is how many of sipgo's read loops read each UDP
// socket. A loop filters and parses every datagram it reads before it
// reads the next, and the kernel puts all of one peer's datagrams on one
// socket (SO_REUSEPORT hashes the sender's address): with one loop, a busy
// peer (a trunk, a SIPp load, a NAT gateway in front of many phones) is
// read by one goroutine, which falls behind while the other cores idle.
// Two loops take turns on the socket; the order of one peer's messages was
// never kept anyway (sipgo hands each message to a goroutine of its own).
const readLoopsPerSocket = 2

// ErrAddrInUse is returned (wrapped) when the SIP port is taken.
var ErrAddrInUse = errors.New("address already in use")

// Listen binds UDP and TCP on opts.Addr and builds the sipgo stack. Serve
// must be called to start reading.
func Listen(opts Options) (*Stack, error) {
	setSipgoGlobals(opts.Logger)
	host, portStr, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("sip address %q: %w", opts.Addr, err)
	}
	port, _ := strconv.Atoi(portStr)
	readers := opts.UDPReaders
	if readers <= 0 {
		readers = min(runtime.GOMAXPROCS(0), 4)
	}
	if !haveReusePort {
		readers = 1
	}
	lc := net.ListenConfig{}
	if readers > 1 {
		lc.Control = reusePort
	}
	var udp net.PacketConn
	var tcp net.Listener
	for attempt := 0; ; attempt++ {
		udp, err = lc.ListenPacket(context.Background(), "udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, bindErr("udp", opts.Addr, err)
		}
		uport := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err = net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(uport)))
		if err == nil {
			break
		}
		udp.Close()
		if port != 0 || attempt > 20 {
			return nil, bindErr("tcp", opts.Addr, err)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	// More readers on the same port: a read loop reads, filters and
	// parses each datagram before the next (readLoopsPerSocket loops per
	// socket), so one socket caps the message rate at what a few
	// goroutines parse.
	var more []net.PacketConn
	for i := 1; i < readers; i++ {
		c, err := lc.ListenPacket(context.Background(), "udp", udp.LocalAddr().String())
		if err != nil {
			log.Warn("sip stack: one UDP reader only", "error", err)
			break
		}
		more = append(more, c)
	}
	for _, c := range append([]net.PacketConn{udp}, more...) {
		if uc, ok := c.(*net.UDPConn); ok {
			_ = uc.SetReadBuffer(8 << 20)
			_ = uc.SetWriteBuffer(8 << 20)
		}
	}
	// Sends without Go's one-write-at-a-time lock per socket (see
	// directUDP), and reads that drop stale REGISTERs (see staleFresh).
	stale := &staleStats{log: log}
	udp = stampedWrites(udp, stale)
	for i, c := range more {
		more[i] = stampedWrites(c, stale)
	}
	if opts.Tracer != nil {
		// Every datagram sipgo or Reply sends goes through these.
		udp = tracedPacketConn{udp, opts.Tracer}
		for i, c := range more {
			more[i] = tracedPacketConn{c, opts.Tracer}
		}
	}
	closeUDP := func() {
		udp.Close()
		for _, c := range more {
			c.Close()
		}
	}
	stackLog := log
	// sipgo logs some errors with the whole message; a flood of bad
	// messages must not become a flood of log bytes.
	log = slog.New(clipHandler{log.Handler()})
	tpOpts := []sip.TransportLayerOption{sip.WithTransportLayerLogger(log)}
	var readFilter sip.TransportReadFilter
	if opts.Filter != nil || opts.Tracer != nil {
		tr := opts.Tracer
		var f Filter
		if opts.Filter != nil {
			f = safeFilter(stackLog, opts.Filter)
		}
		readFilter = func(p sip.TransportReadProps, data []byte) ([]byte, error) {
			// Recorded before the filter, so that an answer the filter
			// sends comes after it in the trace.
			tr.Record(trace.In, p.Transport, p.LocalAddr, p.RemoteAddr, data)
			if f != nil {
				if data = f(p.Transport, p.RemoteAddr, data); data == nil {
					return nil, nil
				}
			}
			return data, nil
		}
		tpOpts = append(tpOpts, sip.WithTransportLayerReadFilter(readFilter))
	}
	txOpts := []sip.TransactionLayerOption{sip.WithTransactionLayerLogger(log)}
	if opts.UnhandledResponse != nil {
		txOpts = append(txOpts, sip.WithTransactionLayerUnhandledResponseHandler(safeResponse(stackLog, opts.UnhandledResponse)))
	}
	name := opts.UserAgent
	if name == "" {
		name = "switchboard"
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(name), sipgo.WithUserAgentDNSResolver(noDNS()),
		sipgo.WithUserAgentTransportLayerOptions(tpOpts...),
		sipgo.WithUserAgentTransactionLayerOptions(txOpts...))
	if err != nil {
		closeUDP()
		tcp.Close()
		return nil, fmt.Errorf("sip stack: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		ua.Close()
		return nil, fmt.Errorf("sip stack: %w", err)
	}
	la := udp.LocalAddr().(*net.UDPAddr)
	clientHost := la.IP.String()
	if la.IP.IsUnspecified() {
		clientHost = ""
	}
	copts := []sipgo.ClientOption{sipgo.WithClientLogger(log), sipgo.WithClientPort(la.Port)}
	if clientHost != "" {
		copts = append(copts, sipgo.WithClientHostname(clientHost))
	}
	cli, err := sipgo.NewClient(ua, copts...)
	if err != nil {
		ua.Close()
		return nil, fmt.Errorf("sip stack: %w", err)
	}
	tl := newTrackingListener(tcp, opts, stackLog)
	streams, sls, err := listenStreams(opts, stackLog)
	if err != nil {
		closeUDP()
		tcp.Close()
		ua.Close()
		return nil, err
	}
	st := &Stack{UA: ua, Server: srv, Client: cli, udp: udp, udpMore: more, tcp: tl, streams: streams, log: stackLog, tr: opts.Tracer,
		stale: stale, readFilter: readFilter, parser: sip.NewParser(), bufs: newBufPool(), Listeners: []Listener{
			{Proto: "udp", Addr: boundAddr(host, udp.LocalAddr())},
			{Proto: "tcp", Addr: boundAddr(host, tcp.Addr())},
		}}
	st.Listeners = append(st.Listeners, sls...)
	if len(streams) > 0 {
		if p, err := newPoller(stackLog); err == nil {
			st.poll = p
			for _, l := range streams {
				l.poll = p
			}
			go p.run()
		} else {
			stackLog.Debug("sip stack: idle TLS/WS/WSS connections keep a reader goroutine each", "reason", err)
		}
	}
	// Every complete message over a connection keeps it open (and no
	// longer evictable); sipgo calls this in the connection's read loop.
	ua.TransportLayer().OnMessage(func(m sip.Message) {
		l := st.listener(m.Transport())
		if l == nil {
			return
		}
		hold := l.idle
		if req, ok := m.(*sip.Request); ok && req.IsInvite() {
			hold = inviteHold
		}
		l.delivered(m.Source(), hold)
	})
	return st, nil
}

// listener returns the connection listener of a transport ("TCP", "TLS",
// "WS", "WSS", any case), nil for UDP or one that is off.
func (s *Stack) listener(transport string) *trackingListener {
	switch transport {
	case "UDP", "udp":
		return nil
	case "TCP", "tcp":
		return s.tcp
	}
	for _, l := range s.streams {
		if strings.EqualFold(l.proto, transport) {
			return l
		}
	}
	return nil
}

// boundAddr names a bound socket as the operator asked for it: Go reports
// a socket bound to 0.0.0.0 (dual stack) as [::], so the requested host is
// kept when it is a wildcard, with the port actually bound.
func boundAddr(host string, a net.Addr) string {
	_, port, err := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); err == nil && ip != nil && ip.IsUnspecified() {
		return net.JoinHostPort(host, port)
	}
	return a.String()
}

func bindErr(proto, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("cannot listen on %s %s: %w (another SIP server, e.g. FreeSWITCH or a second switchboard, is using it; stop it or pass --sip with another port)", proto, addr, ErrAddrInUse)
	}
	if errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("cannot listen on %s %s: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)", proto, addr)
	}
	return fmt.Errorf("cannot listen on %s %s: %w", proto, addr, err)
}

// ErrNoDNS is returned when a destination is a host name: switchboard
// reaches phones at the IP addresses they registered from and never asks DNS
// on a peer's behalf (a message could otherwise make it look up, and then
// connect to, any host a Via, Contact or Route names).
var ErrNoDNS = errors.New("sipstack: host names are not resolved (no DNS)")

// noDNS returns a resolver that answers from /etc/hosts only: its DNS
// client cannot dial.
func noDNS() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, ErrNoDNS
	}}
}

// Serve reads both listeners until ctx ends, then closes everything.
func (s *Stack) Serve(ctx context.Context) error {
	socks := append([]net.PacketConn{s.udp}, s.udpMore...)
	errc := make(chan error, 1+readLoopsPerSocket*len(socks)+len(s.streams))
	for _, l := range s.streams {
		switch l.proto {
		case "TLS":
			go func() { errc <- s.serveTLS(l) }()
		case "WS", "WSS":
			go func() { errc <- s.serveWS(l) }()
		}
	}
	for _, c := range socks {
		for range readLoopsPerSocket {
			go func() { errc <- s.Server.ServeUDP(c) }()
		}
	}
	go func() { errc <- s.Server.ServeTCP(s.tcp) }()
	select {
	case <-ctx.Done():
		s.Close()
		return nil
	case err := <-errc:
		s.Close()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		return err
	}
}

// Close stops the listeners and the stack. The accepted TCP connections
// are closed first and sipgo's readers given a moment to drop them, so
// sipgo's pool does not hard-close them under their readers (each such
// connection would log "TCP ref went negative").
func (s *Stack) Close() error {
	s.udp.Close()
	for _, c := range s.udpMore {
		c.Close()
	}
	s.tcp.Close()
	for _, l := range s.streams {
		l.Close()
	}
	handed := s.tcp.closeAll()
	for _, l := range s.streams {
		handed += l.closeAll()
	}
	if s.poll != nil {
		s.poll.close() // after closeAll: the parked connections are closed and woken
	}
	pool := s.UA.TransportLayer().Pool("tcp")
	for deadline := time.Now().Add(time.Second); handed > 0 && pool != nil && pool.Size() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	s.Client.Close()
	return s.UA.Close()
}

// KeepAlive keeps the TCP connection from remote ("ip:port", as
// sip.Request.Source) open at least until until; it reports whether there
// is such a connection. The server calls it when a REGISTER over the
// connection succeeds, with the binding's expiry, so a registered phone's
// flow stays open for requests to it.
func (s *Stack) KeepAlive(remote string, until time.Time) bool {
	c := s.tcp.get(remote)
	if c == nil {
		return false
	}
	c.extend(until)
	return true
}

// KeepAliveFlow is KeepAlive for a connection of any listener (transport
// "TCP", "TLS", "WS" or "WSS").
func (s *Stack) KeepAliveFlow(transport, remote string, until time.Time) bool {
	l := s.listener(transport)
	if l == nil {
		return false
	}
	c := l.get(remote)
	if c == nil {
		return false
	}
	c.extend(until)
	return true
}

// FlowOpen reports whether the connection from remote on the listener of
// transport is open (always true for UDP). A binding made over a
// connection is reachable only through it: a phone behind NAT, or a
// browser, cannot be dialled back.
func (s *Stack) FlowOpen(transport, remote string) bool {
	if transport == "" || strings.EqualFold(transport, "UDP") {
		return true
	}
	l := s.listener(transport)
	return l != nil && l.get(remote) != nil
}

// StreamConns returns the connections held per listener of TLS, WS and
// WSS that are on (key: "tls", "ws", "wss").
func (s *Stack) StreamConns() map[string]int {
	out := map[string]int{}
	for _, l := range s.streams {
		out[strings.ToLower(l.proto)] = l.held()
	}
	return out
}

// TCPConns returns the number of accepted TCP connections held and the
// number closed so far by the idle timeout.
func (s *Stack) TCPConns() (held int, idleClosed int64) {
	return s.tcp.held(), s.tcp.idleClosed.Load()
}

// TCPLimits returns the connection settings in force (defaults applied):
// the idle timeout, the per-address cap (0: none) and the total cap.
func (s *Stack) TCPLimits() (idle time.Duration, perAddress, total int) {
	return s.tcp.idle, s.tcp.perAddr, s.tcp.total
}

// tracedPacketConn hands every datagram written to the tracer (sipgo
// takes any net.PacketConn; it reads through ReadFrom and writes through
// WriteTo).
type tracedPacketConn struct {
	net.PacketConn
	tr *trace.Tracer
}

// WriteTo writes b to addr and records what was written.
func (c tracedPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.tr.Record(trace.Out, "UDP", c.PacketConn.LocalAddr(), addr, b)
	return c.PacketConn.WriteTo(b, addr)
}

// WaitServing returns once Serve has handed the UDP socket to sipgo, so
// that requests the stack sends leave from the listening socket (before
// that, sipgo would try to open another socket on the same port and fail),
// or when ctx ends. It probes the stack's own UDP port with OPTIONS from
// loopback until anything answers.
func (s *Stack) WaitServing(ctx context.Context) error {
	la := s.udp.LocalAddr().(*net.UDPAddr)
	dst := &net.UDPAddr{IP: la.IP, Port: la.Port}
	if la.IP.IsUnspecified() {
		dst.IP = net.IPv4(127, 0, 0, 1) // Go's wildcard sockets are dual-stack
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: dst.IP})
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 2048)
	for i := 0; ; i++ {
		branch := "z9hG4bK-ready-" + strconv.Itoa(i)
		msg := "OPTIONS sip:" + dst.String() + " SIP/2.0\r\nVia: SIP/2.0/UDP " + c.LocalAddr().String() + ";branch=" + branch +
			"\r\nFrom: <sip:ready@switchboard>;tag=ready\r\nTo: <sip:" + dst.String() + ">\r\nCall-ID: ready-" + branch +
			"\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nUser-Agent: switchboard\r\nContent-Length: 0\r\n\r\n"
		if _, err := c.WriteToUDP([]byte(msg), dst); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, _, err := c.ReadFromUDP(buf); err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 ") {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
