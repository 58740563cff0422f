// Package media is switchboard's embedded RTP relay: it anchors the media of
// a call on the server so that two parties that cannot reach each other
// directly (NAT, a SIP ALG, a browser and a desk phone) still hear each other.
//
// # Sessions, legs and ports
//
// The proxy opens one Session per relayed call (Relay.Open). A session has two
// legs, Caller and Callee; each leg is a pair of UDP sockets facing one party:
// an even RTP port and the next odd port for RTCP, taken from
// [Config.PortMin, Config.PortMax] (serve --rtp-ports, default 16384-32768,
// the FreeSWITCH default; a call uses 4 ports, so the default range holds
// 4096 calls). Allocation goes round the range so that a freed pair is not
// reused at once; a pair that another program holds (EADDRINUSE) is skipped.
// When no pair is left Open fails with ErrPortsExhausted. Every socket is
// closed by Session.Close, by Relay.Close, by a media timeout and when Open
// fails half-way: a relay never leaks a port.
//
// A packet that arrives on leg X comes from party X and leaves from the other
// leg's socket towards the other party, so each party sees the relay's
// address as the source of everything it receives (symmetric RTP). The
// relay only copies: no transcoding, payloads and headers are untouched
// (SRTP passes through).
//
// # Latching (which source a leg accepts and where it sends)
//
// SetPeer records the party's media address from its SDP (the "signalled"
// RTP and RTCP addresses) and the IP its SIP came from. The first packet
// that arrives on the leg latches its source address:port if
//
//   - (a) it comes from the signalled address:port, or
//   - (b) it comes from the SIP source IP, any port (a NAT that rewrote the port), or
//   - (c) nothing has latched yet and it arrives within LatchWindow (default
//     3 s) after SetPeer, from any address (a SIP ALG or a NAT that also
//     changed the IP).
//
// Once latched, packets from any other source are dropped and counted as
// Stray (with the last such source in StraySource): a third party can never
// redirect media after latching, and can hijack a leg only in the window of
// rule (c) and only before the party's own first packet. A packet that
// matches none of the rules before latching is dropped and counted as Stray
// too. Packets that arrive before SetPeer are dropped (counted in Early).
//
// Packets for a party go to its latched address; before anything latched
// they go to the signalled address. Nothing is forwarded to a leg that has
// no SetPeer yet. A re-INVITE (SetPeer again) reopens latching with a new
// window. RTP and RTCP latch separately, RTCP by the same rules against the
// signalled RTCP address (a=rtcp, else RTP port + 1); while RTCP has not
// latched but RTP has latched to another address than the signalled one,
// RTCP goes to the latched RTP IP and its port + 1. With rtcp-mux (RFC
// 5761) RTCP travels on the RTP port: the relay tells the two apart by the
// packet type (RTCP: second byte 192-223) and sends RTCP for a muxing party
// from its RTP socket to its RTP address.
//
// Datagrams are checked before anything else (see Classify): runts, other
// versions than 2, headers that do not fit, and datagrams larger than 2047
// bytes (the read buffer is 2048; a full buffer may be a truncated datagram)
// are dropped and counted as Malformed. Packets whose source is one of the
// relay's own ports (an SDP that points a leg at the relay) are dropped as
// Stray, so packets cannot loop between two legs.
//
// # Timeouts
//
// A session whose two legs have accepted no packet for Config.Timeout
// (serve --media-timeout, default 60 s) since the last packet, Open, SetPeer
// or Touch is closed by the relay (ports released), then Config.OnTimeout runs
// in its own goroutine. Stray, early and malformed packets do not keep a
// session alive. One ticker per Relay checks all sessions (period
// Timeout/8, between 10 ms and 1 s). A call on hold that sends nothing
// ("a=inactive") times out too; the proxy calls Session.Touch on
// re-INVITEs.
//
// # Statistics
//
// Per leg, "in" is from the party to the relay and "out" from the relay to
// the party: packets, bytes, first and last packet in, RFC 3550 A.3 loss of
// the in stream (sequence wrap, reordering and duplicates are handled;
// packets more than 64 behind the newest count as lost), A.8 interarrival
// jitter and an estimated MOS (see MOS).
//
// # WebRTC
//
// Leg.External hands a leg to the WebRTC bridge (package wrtc): the bridge
// reads the leg's RTP socket itself (DTLS-SRTP with rtcp-mux), passes the
// decrypted packets to Leg.Receive and gets what the other party sends
// through its Endpoint.
package media

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Defaults for a zero Config field.
const (
	DefaultPortMin     = 16384
	DefaultPortMax     = 32768
	DefaultTimeout     = 60 * time.Second
	DefaultLatchWindow = 3 * time.Second
)

// bufSize is the read buffer of every socket; a datagram that fills it may
// have been truncated and is dropped as Malformed.
const bufSize = 2048

// ErrPortsExhausted is returned (wrapped) by Open when the range has no free
// pair left.
var ErrPortsExhausted = errors.New("media: no free RTP port pair in the range")

// ErrClosed is returned (wrapped) by Open after Relay.Close.
var ErrClosed = errors.New("media: relay closed")

// ErrSessionExists is returned (wrapped) by Open when the call already has a session.
var ErrSessionExists = errors.New("media: call already has a media session")

// Config of the relay; zero values get defaults.
type Config struct {
	BindIP      netip.Addr    // address the RTP sockets bind to (default: unspecified = all)
	AdvertiseIP netip.Addr    // the address written into SDP (serve --media-ip); required
	PortMin     int           // --rtp-ports low end (default 16384); rounded up to even
	PortMax     int           // --rtp-ports high end (default 32768), inclusive
	Timeout     time.Duration // --media-timeout (default 60s): a session whose legs have
	// both received nothing for this long ends (OnTimeout); negative disables it
	LatchWindow time.Duration // default 3s, see "latching" in the package doc
	Log         *slog.Logger
	// OnTimeout is called once per session that timed out, in its own goroutine,
	// after its ports were released. The proxy ends the call (BYE both sides).
	// Relay.Close waits for it to return, so it must not call Relay.Close.
	OnTimeout func(s *Session)
}

// Relay owns the port range and every session. Its methods are safe for
// concurrent use.
type Relay struct {
	cfg     Config
	log     *slog.Logger
	network string // "udp4", "udp6" or "udp" (dual stack)
	first   int    // first even port
	start   time.Time

	// mu guards everything below.
	mu       sync.Mutex
	closed   bool
	sessions map[string]*Session
	used     []bool // per pair: held by a session
	next     int    // pair index where the next search starts
	sockets  int    // sockets held (PortsInUse)

	wg   sync.WaitGroup // ticker and OnTimeout goroutines
	stop chan struct{}
}

// New checks cfg, fills in defaults and starts the timeout ticker. It
// binds nothing: ports are bound per session by Open.
func New(cfg Config) (*Relay, error) {
	if !cfg.AdvertiseIP.IsValid() || cfg.AdvertiseIP.IsUnspecified() {
		return nil, errors.New("media: AdvertiseIP (--media-ip) is required and must be a specific address")
	}
	cfg.AdvertiseIP = cfg.AdvertiseIP.Unmap()
	if cfg.PortMin == 0 {
		cfg.PortMin = DefaultPortMin
	}
	if cfg.PortMax == 0 {
		cfg.PortMax = DefaultPortMax
	}
	if cfg.PortMin < 1 || cfg.PortMax > 65535 || cfg.PortMin > cfg.PortMax {
		return nil, fmt.Errorf("media: RTP port range %d-%d: want 1 <= low <= high <= 65535", cfg.PortMin, cfg.PortMax)
	}
	first := cfg.PortMin + cfg.PortMin%2
	pairs := (cfg.PortMax - first + 1) / 2
	if pairs < 1 {
		return nil, fmt.Errorf("media: RTP port range %d-%d holds no even/odd port pair", cfg.PortMin, cfg.PortMax)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.LatchWindow <= 0 {
		cfg.LatchWindow = DefaultLatchWindow
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	network := "udp"
	if cfg.BindIP.IsValid() {
		cfg.BindIP = cfg.BindIP.Unmap()
		if cfg.BindIP.Is4() {
			network = "udp4"
		} else if !cfg.BindIP.IsUnspecified() {
			network = "udp6"
		}
	}
	r := &Relay{
		cfg:      cfg,
		log:      cfg.Log,
		network:  network,
		first:    first,
		start:    time.Now(),
		sessions: make(map[string]*Session),
		used:     make([]bool, pairs),
		stop:     make(chan struct{}),
	}
	if cfg.Timeout > 0 {
		period := min(max(cfg.Timeout/8, 10*time.Millisecond), time.Second)
		r.wg.Add(1)
		go r.tick(period)
	}
	return r, nil
}

// Open creates the session of a call: two legs, each an even RTP port and
// the next odd port for RTCP, and starts reading them. Ports that another
// program holds are skipped. It fails with ErrPortsExhausted (wrapped) when
// the range has no two free pairs, ErrSessionExists when the call has a
// session, ErrClosed after Close; on failure nothing stays bound.
func (r *Relay) Open(callID string) (*Session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fmt.Errorf("media: open session for %q: %w", callID, ErrClosed)
	}
	if _, ok := r.sessions[callID]; ok {
		return nil, fmt.Errorf("media: open session for %q: %w", callID, ErrSessionExists)
	}
	s := newSession(r, callID)
	for i := range s.legs {
		if err := r.bindLeg(&s.legs[i]); err != nil {
			for j := range i {
				r.releaseLeg(&s.legs[j])
			}
			return nil, fmt.Errorf("media: open session for %q: %w", callID, err)
		}
	}
	r.sessions[callID] = s
	s.startReaders()
	return s, nil
}

// bindLeg finds a free pair and binds both of its sockets. r.mu is held.
func (r *Relay) bindLeg(l *Leg) error {
	n := len(r.used)
	for k := range n {
		i := (r.next + k) % n
		if r.used[i] {
			continue
		}
		port := r.first + 2*i
		rtp, err := r.listen(port)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			return err
		}
		rtcp, err := r.listen(port + 1)
		if err != nil {
			rtp.Close()
			if errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			return err
		}
		r.used[i] = true
		r.next = (i + 1) % n
		r.sockets += 2
		l.pair = i
		l.port = uint16(port)
		l.conns = [2]*net.UDPConn{rtp, rtcp}
		return nil
	}
	return fmt.Errorf("%w (%d-%d, %d sessions open)", ErrPortsExhausted, r.cfg.PortMin, r.cfg.PortMax, len(r.sessions))
}

// releaseLeg closes the leg's sockets and frees its pair. r.mu is held.
func (r *Relay) releaseLeg(l *Leg) {
	for k, c := range l.conns {
		if c != nil && !l.connClosed[k] {
			c.Close()
			l.connClosed[k] = true
			r.sockets--
		}
	}
	if l.pair >= 0 {
		r.used[l.pair] = false
		l.pair = -1
	}
}

func (r *Relay) listen(port int) (*net.UDPConn, error) {
	a := &net.UDPAddr{Port: port}
	if r.cfg.BindIP.IsValid() {
		a.IP = r.cfg.BindIP.AsSlice()
	}
	c, err := net.ListenUDP(r.network, a)
	if err != nil {
		return nil, fmt.Errorf("bind RTP port %d: %w", port, err)
	}
	return c, nil
}

// ownPort reports whether a is (possibly) one of the relay's own sockets:
// a port of the range on a local address.
func (r *Relay) ownPort(a netip.AddrPort) bool {
	p := int(a.Port())
	if p < r.first || p > r.cfg.PortMax {
		return false
	}
	ip := a.Addr()
	return ip == r.cfg.AdvertiseIP || ip.IsLoopback() || ip.IsUnspecified() ||
		(r.cfg.BindIP.IsValid() && ip == r.cfg.BindIP)
}

// Session returns the call's session, nil when none.
func (r *Relay) Session(callID string) *Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sessions[callID]
}

// Active returns a snapshot of the open sessions, ordered by call ID.
func (r *Relay) Active() []*Session {
	r.mu.Lock()
	out := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		out = append(out, s)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b *Session) int {
		switch {
		case a.callID < b.callID:
			return -1
		case a.callID > b.callID:
			return 1
		}
		return 0
	})
	return out
}

// PortsInUse returns the number of sockets the relay holds (4 per session,
// 3 when a leg was handed to the WebRTC bridge, which muxes RTCP).
func (r *Relay) PortsInUse() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sockets
}

// Close closes every session, stops the ticker and returns when every
// goroutine of the relay (readers, ticker, OnTimeout callbacks) has ended.
// Open fails afterwards. Close is idempotent.
func (r *Relay) Close() error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.stop)
	}
	r.mu.Unlock()
	for _, s := range r.Active() {
		s.Close()
	}
	r.wg.Wait()
	return nil
}

// tick closes the sessions that timed out. It is the relay's only timer.
func (r *Relay) tick(period time.Duration) {
	defer r.wg.Done()
	t := time.NewTicker(period)
	defer t.Stop()
	var expired []*Session
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		limit := sinceNS(r.start, now) - int64(r.cfg.Timeout)
		expired = expired[:0]
		r.mu.Lock()
		for _, s := range r.sessions {
			if s.active.Load() < limit {
				expired = append(expired, s)
			}
		}
		r.mu.Unlock()
		for _, s := range expired {
			if !s.closeOnce(true) {
				continue // closed by someone else meanwhile
			}
			r.log.Info("media timeout: session closed", "call_id", s.callID, "timeout", r.cfg.Timeout)
			if r.cfg.OnTimeout != nil {
				r.wg.Add(1)
				go func() {
					defer r.wg.Done()
					r.cfg.OnTimeout(s)
				}()
			}
		}
		clear(expired)
	}
}
