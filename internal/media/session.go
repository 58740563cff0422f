package media

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Side names a leg of a session.
type Side int

const (
	Caller Side = 0
	Callee Side = 1
)

// String returns "caller" or "callee".
func (s Side) String() string {
	switch s {
	case Caller:
		return "caller"
	case Callee:
		return "callee"
	}
	return "side?"
}

// Socket indexes in Leg.conns and latch slots.
const (
	sockRTP  = 0
	sockRTCP = 1
)

// Session is the media of one call: two legs. Its methods are safe for
// concurrent use.
type Session struct {
	r      *Relay
	callID string

	// active is the last time (ns since r.start) a packet was accepted on
	// either leg, or the session was opened, SetPeer or touched.
	active atomic.Int64

	// mu guards legs' mutable state (see Leg) and the fields below.
	mu        sync.Mutex
	closed    bool
	timedOut  bool
	haveFinal bool
	final     [2]LegStats
	legs      [2]Leg

	once    sync.Once
	readers sync.WaitGroup // the sockets' reader goroutines
}

// Leg is the relay's pair of sockets facing one party. Packets received on
// leg X come from party X and are sent out of the other leg's socket to the
// other party.
type Leg struct {
	s    *Session
	side Side

	// Set by Open, then changed only under r.mu (releaseLeg).
	pair       int
	port       uint16
	conns      [2]*net.UDPConn
	connClosed [2]bool // guarded by r.mu

	stopRead [2]atomic.Bool // External asks the reader to return
	done     [2]chan struct{}

	// Guarded by s.mu.
	hasPeer  bool
	peer     Peer
	peerAtNS int64 // SetPeer time, ns since r.start
	latched  [2]netip.AddrPort
	external bool
	ep       Endpoint
	rates    [128]uint32 // clock rate per payload type, 0 = 8000
	in       inStream

	packetsIn, bytesIn uint64
	firstIn, lastIn    time.Time
	stray              uint64
	straySource        netip.AddrPort
	malformed          uint64
	early              uint64

	// Counted after a successful write, without s.mu.
	packetsOut, bytesOut, writeErrors atomic.Uint64
}

// Peer is a party's media address from its SDP and the IP its SIP came from.
type Peer struct {
	RTP, RTCP netip.AddrPort // RTCP: a=rtcp, or RTP port + 1; zero = RTP port + 1 (or RTP with RTCPMux)
	RTCPMux   bool
	SIPSource netip.Addr
}

// Endpoint is a party reached by another way than plain RTP.
type Endpoint interface {
	WriteRTP(pkt []byte) error // plain RTP, the bridge encrypts
	WriteRTCP(pkt []byte) error
	Close() error
}

// LegStats: "in" = from the party to the relay, "out" = from the relay to the party.
type LegStats struct {
	Signalled                                netip.AddrPort // from SDP (zero until SetPeer)
	SIPSource                                netip.Addr
	Latched                                  netip.AddrPort // where packets for this party go; zero when never latched
	PacketsIn, BytesIn, PacketsOut, BytesOut uint64
	FirstIn, LastIn                          time.Time // zero when nothing arrived
	Lost                                     int64     // RTP sequence gaps of the in stream (RFC 3550 A.3)
	JitterMS                                 float64   // RFC 3550 interarrival jitter of the in stream, in ms
	MOS                                      float64   // estimated from loss and jitter (see MOS); 0 when no packets
	Stray                                    uint64    // packets from a source that was not latched (dropped)
	StraySource                              netip.AddrPort
	Malformed                                uint64 // too short / not RTP v2 / bad RTCP / oversized (dropped)
	External                                 bool   // leg handed to the WebRTC bridge

	// Additions to the contract.
	Side        Side
	Port        uint16 // the relay's RTP port for this leg (RTCP: Port+1)
	LatchedRTCP netip.AddrPort
	Early       uint64 // packets that arrived before SetPeer (dropped)
	WriteErrors uint64 // packets for this party that could not be sent
}

func newSession(r *Relay, callID string) *Session {
	s := &Session{r: r, callID: callID}
	s.active.Store(sinceNS(r.start, time.Now()))
	for i := range s.legs {
		l := &s.legs[i]
		l.s = s
		l.side = Side(i)
		l.pair = -1
	}
	return s
}

func (s *Session) startReaders() {
	for i := range s.legs {
		l := &s.legs[i]
		for k, c := range l.conns {
			l.done[k] = make(chan struct{})
			s.readers.Add(1)
			go l.read(k, c)
		}
	}
}

// CallID returns the call the session belongs to.
func (s *Session) CallID() string { return s.callID }

// Leg returns the leg facing side (Caller or Callee); nil for another value.
func (s *Session) Leg(side Side) *Leg {
	if side != Caller && side != Callee {
		return nil
	}
	return &s.legs[side]
}

// Touch restarts the session's media timeout (a re-INVITE, a call put on hold).
func (s *Session) Touch() { s.active.Store(sinceNS(s.r.start, time.Now())) }

// TimedOut reports whether the relay closed the session for lack of media.
func (s *Session) TimedOut() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.timedOut
}

// Close releases the ports, closes the endpoints of external legs, waits for
// the session's reader goroutines and returns the final stats. It is
// idempotent: later calls return the same stats.
func (s *Session) Close() [2]LegStats {
	s.closeOnce(false)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.final
}

// closeOnce closes the session; it reports whether this call did it.
func (s *Session) closeOnce(timeout bool) bool {
	did := false
	s.once.Do(func() {
		did = true
		r := s.r
		s.mu.Lock()
		s.closed = true
		s.timedOut = timeout
		var eps []Endpoint
		for i := range s.legs {
			if ep := s.legs[i].ep; ep != nil {
				eps = append(eps, ep)
			}
		}
		s.mu.Unlock()
		r.mu.Lock()
		for i := range s.legs {
			r.releaseLeg(&s.legs[i])
		}
		if r.sessions[s.callID] == s {
			delete(r.sessions, s.callID)
		}
		r.mu.Unlock()
		for _, ep := range eps {
			ep.Close()
		}
		s.readers.Wait()
		s.mu.Lock()
		s.final = s.statsLocked()
		s.haveFinal = true
		s.mu.Unlock()
	})
	return did
}

// Stats returns a live snapshot of both legs (the final stats after Close).
func (s *Session) Stats() [2]LegStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.haveFinal {
		return s.final
	}
	return s.statsLocked()
}

func (s *Session) statsLocked() [2]LegStats {
	var out [2]LegStats
	for i := range s.legs {
		l := &s.legs[i]
		st := &out[i]
		st.Side = l.side
		st.Port = l.port
		if l.hasPeer {
			st.Signalled = l.peer.RTP
			st.SIPSource = l.peer.SIPSource
		}
		st.Latched = l.latched[sockRTP]
		st.LatchedRTCP = l.latched[sockRTCP]
		st.PacketsIn, st.BytesIn = l.packetsIn, l.bytesIn
		st.PacketsOut, st.BytesOut = l.packetsOut.Load(), l.bytesOut.Load()
		st.FirstIn, st.LastIn = l.firstIn, l.lastIn
		st.Lost = l.in.lost()
		st.JitterMS = l.in.jitterMS()
		if l.packetsIn > 0 {
			lossPct := 0.0
			if e := l.in.expected(); e > 0 {
				lossPct = 100 * float64(st.Lost) / float64(e)
			}
			st.MOS = MOS(lossPct, st.JitterMS)
		}
		st.Stray, st.StraySource = l.stray, l.straySource
		st.Malformed = l.malformed
		st.External = l.external
		st.Early = l.early
		st.WriteErrors = l.writeErrors.Load()
	}
	return out
}

// Addr returns AdvertiseIP:RTP port, for the SDP.
func (l *Leg) Addr() netip.AddrPort { return netip.AddrPortFrom(l.s.r.cfg.AdvertiseIP, l.port) }

// RTCPPort returns the leg's RTCP port (RTP port + 1).
func (l *Leg) RTCPPort() uint16 { return l.port + 1 }

// Side returns which party the leg faces.
func (l *Leg) Side() Side { return l.side }

// SetPeer records the party's media address from its SDP (c= and m= port;
// rtcp from a=rtcp or port+1; rtcpMux when a=rtcp-mux was negotiated) and the
// IP its SIP came from. Calling it again (re-INVITE) resets latching and
// opens a new LatchWindow; statistics are kept.
func (l *Leg) SetPeer(p Peer) {
	p.RTP = unmap(p.RTP)
	p.RTCP = unmap(p.RTCP)
	p.SIPSource = p.SIPSource.Unmap()
	if !p.RTCP.IsValid() && p.RTP.IsValid() {
		if p.RTCPMux {
			p.RTCP = p.RTP
		} else {
			p.RTCP = netip.AddrPortFrom(p.RTP.Addr(), p.RTP.Port()+1)
		}
	}
	now := sinceNS(l.s.r.start, time.Now())
	l.s.mu.Lock()
	l.hasPeer = true
	l.peer = p
	l.peerAtNS = now
	l.latched = [2]netip.AddrPort{}
	l.s.mu.Unlock()
	l.s.active.Store(now)
}

// SetClockRate sets the RTP clock rate of payload type pt for the jitter of
// this leg's in stream (default 8000 Hz for every payload type, right for
// PCMU, PCMA, G.729, G.722 and telephone-event at 8000).
func (l *Leg) SetClockRate(pt uint8, hz int) {
	if pt > 127 || hz <= 0 || hz > 1_000_000 {
		return
	}
	l.s.mu.Lock()
	l.rates[pt] = uint32(hz)
	l.s.mu.Unlock()
}

// External hands this leg to another packet path (the WebRTC bridge). The
// leg stops reading its sockets and returns its RTP socket (RTCP socket
// closed: WebRTC muxes) to the caller, who then owns reading it; the bridge
// passes what the party sent (decrypted) to Receive and the engine sends
// what the other party sent through ep. The relay still closes the socket
// and calls ep.Close in Session.Close: the bridge must not close the socket
// itself. After Close the returned socket is closed (reads fail).
func (l *Leg) External(ep Endpoint) *net.UDPConn {
	s := l.s
	s.mu.Lock()
	if l.external || s.closed {
		s.mu.Unlock()
		return l.conns[sockRTP]
	}
	l.external = true
	l.ep = ep
	l.latched = [2]netip.AddrPort{}
	s.mu.Unlock()

	// Stop both readers: the RTP one with a deadline in the past (the
	// socket stays open for the bridge), the RTCP one by closing it.
	for k, c := range l.conns {
		l.stopRead[k].Store(true)
		c.SetReadDeadline(time.Unix(1, 0))
		<-l.done[k]
	}
	l.conns[sockRTP].SetReadDeadline(time.Time{})
	s.r.mu.Lock()
	if !l.connClosed[sockRTCP] {
		l.conns[sockRTCP].Close()
		l.connClosed[sockRTCP] = true
		s.r.sockets--
	}
	s.r.mu.Unlock()
	return l.conns[sockRTP]
}

// Receive takes a packet the party of an external leg sent (decrypted by the
// bridge): it is checked, counted and forwarded to the other party. pkt is
// not retained. On a leg that is not external it does nothing.
func (l *Leg) Receive(pkt []byte, rtcp bool) {
	l.s.handle(l, -1, pkt, netip.AddrPort{}, false, rtcp)
}

// read is the reader goroutine of one socket.
func (l *Leg) read(k int, c *net.UDPConn) {
	defer l.s.readers.Done()
	defer close(l.done[k])
	buf := make([]byte, bufSize)
	errs := 0
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if l.stopRead[k].Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			// Transient (e.g. ICMP errors reported on the socket): do not spin.
			if errs++; errs > 100 {
				time.Sleep(time.Millisecond)
			}
			continue
		}
		errs = 0
		l.s.handle(l, k, buf[:n], unmap(src), n >= len(buf), false)
	}
}

func unmap(a netip.AddrPort) netip.AddrPort {
	if a.Addr().Is4In6() {
		return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	}
	return a
}

// handle processes one datagram that arrived on leg l: on socket k from src,
// or (k < 0) from the bridge through Receive with wantRTCP saying which.
func (s *Session) handle(l *Leg, k int, pkt []byte, src netip.AddrPort, oversize, wantRTCP bool) {
	kind, h := classify(pkt)
	nowT := time.Now()
	now := sinceNS(s.r.start, nowT)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if k < 0 {
		if !l.external {
			s.mu.Unlock()
			return
		}
		if (kind == RTCP) != wantRTCP {
			kind = Malformed
		}
	} else if l.external {
		s.mu.Unlock()
		return
	}
	if oversize || kind == Malformed || (k == sockRTCP && kind != RTCP) {
		l.malformed++
		s.mu.Unlock()
		return
	}
	slot := sockRTP
	if kind == RTCP {
		slot = sockRTCP
	}
	if k >= 0 {
		if !l.hasPeer {
			l.early++
			s.mu.Unlock()
			return
		}
		if s.r.ownPort(src) {
			l.stray++
			l.straySource = src
			s.mu.Unlock()
			return
		}
		if cur := l.latched[slot]; cur.IsValid() {
			if src != cur {
				l.stray++
				l.straySource = src
				s.mu.Unlock()
				return
			}
		} else {
			signalled := l.peer.RTP
			if slot == sockRTCP {
				signalled = l.peer.RTCP
			}
			if src == signalled || src.Addr() == l.peer.SIPSource ||
				now-l.peerAtNS <= int64(s.r.cfg.LatchWindow) {
				l.latched[slot] = src
			} else {
				l.stray++
				l.straySource = src
				s.mu.Unlock()
				return
			}
		}
	}
	n := uint64(len(pkt))
	l.packetsIn++
	l.bytesIn += n
	if l.firstIn.IsZero() {
		l.firstIn = nowT
	}
	l.lastIn = nowT
	if kind == RTP {
		rate := int(l.rates[h.pt])
		if rate == 0 {
			rate = 8000
		}
		l.in.update(h, now, rate)
	}

	// Where it goes: the other party.
	o := &s.legs[1-l.side]
	var (
		ep   Endpoint
		conn *net.UDPConn
		dst  netip.AddrPort
	)
	switch {
	case o.external:
		ep = o.ep
	case !o.hasPeer:
		// No destination yet: nothing is forwarded.
	case kind == RTP || o.peer.RTCPMux:
		conn = o.conns[sockRTP]
		dst = o.latched[sockRTP]
		if !dst.IsValid() {
			dst = o.peer.RTP
		}
		if kind == RTCP && o.latched[sockRTCP].IsValid() {
			dst = o.latched[sockRTCP]
		}
	default:
		conn = o.conns[sockRTCP]
		dst = o.latched[sockRTCP]
		if !dst.IsValid() {
			dst = o.peer.RTCP
			if lr := o.latched[sockRTP]; lr.IsValid() && lr.Addr() != o.peer.RTP.Addr() && lr.Port() < 65535 {
				dst = netip.AddrPortFrom(lr.Addr(), lr.Port()+1)
			}
		}
	}
	s.mu.Unlock()
	s.active.Store(now)

	var err error
	switch {
	case ep != nil:
		if kind == RTCP {
			err = ep.WriteRTCP(pkt)
		} else {
			err = ep.WriteRTP(pkt)
		}
	case conn != nil && dst.IsValid() && dst.Port() != 0:
		_, err = conn.WriteToUDPAddrPort(pkt, dst)
	default:
		return
	}
	if err != nil {
		o.writeErrors.Add(1)
		return
	}
	o.packetsOut.Add(1)
	o.bytesOut.Add(n)
}
