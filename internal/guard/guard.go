// Package guard is the packet guard in front of the SIP stack and the
// stateless path behind it: everything switchboard does with raw bytes
// before sipgo parses them.
//
//   - Filter (the sipstack raw-packet filter) checks every UDP datagram and
//     TCP read without allocating in the common case: size limits, framing
//     of TCP streams by Content-Length, the syntax checks of RFC 3261 that
//     sipgo's parser would trip on (RFC 4475's torture messages are the
//     test), normalization of valid syntax sipgo misreads (line folding,
//     white space around ';' and '='), and stateless answers (400, 505,
//     416, 501, 420, 513) built from whatever Via, From, To, Call-ID and
//     CSeq can be salvaged.
//   - Stateless answers REGISTER over UDP and the 407 of a new call's
//     first INVITE without a sipgo server transaction; everything else
//     goes on to sipgo.
//
// The guard decides nothing about addresses: who is trusted, banned, over
// the rate limit or a scanner is asked of a Policy (package security
// implements it), which also counts and journals what the guard drops.
package guard

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Transport is the part of the SIP stack the guard answers through.
type Transport interface {
	// Reply sends raw bytes to remote: for UDP from the listening socket,
	// for TCP on the connection remote came in on.
	Reply(transport string, remote net.Addr, b []byte) error
	// CloseConn closes the TCP connection from remote.
	CloseConn(remote net.Addr) error
}

// Policy decides about addresses for the guard. Its methods are called on
// the read path of every message, so they must be fast and safe for
// concurrent use; msg, data, head and ua are valid only during the call.
// ip is ap's address, unmapped and without zone.
type Policy interface {
	// Trusted reports whether ip is exempt from bans and rate limits.
	Trusted(ip netip.Addr) bool
	// Banned reports whether ip is banned (it is not asked for trusted
	// addresses). The guard drops the data; the policy counts and
	// journals it.
	Banned(ip netip.Addr, ap netip.AddrPort, transport string, data []byte) bool
	// RateLimited counts one message from ip against its rate limit and
	// reports whether it is over it (it is not asked for trusted
	// addresses). The guard drops the message; the policy counts and
	// journals it.
	RateLimited(ip netip.Addr, ap netip.AddrPort, transport string, msg []byte) bool
	// Scanner reports whether ua is a scanner's user agent. The guard
	// drops the message; the policy counts, journals and bans.
	Scanner(ip netip.Addr, ap netip.AddrPort, transport string, msg, ua []byte) bool
	// Refused records a message the guard refused: status is the answer
	// it sent (0: none), head the message's header section, detail why.
	Refused(ip netip.Addr, ap netip.AddrPort, transport string, status int, head []byte, detail string)
}

// Config holds the guard's settings.
type Config struct {
	// Allow is the Allow header value of 501 Not Implemented answers
	// (default DefaultAllow).
	Allow string
	// StreamTimeout is how long a TCP connection may hold an incomplete
	// message before the guard closes it (default DefaultStreamTimeout).
	StreamTimeout time.Duration
}

// Defaults of Config.
const (
	DefaultStreamTimeout = 10 * time.Second
	// DefaultAllow is the Allow header of 501 answers.
	DefaultAllow = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, REFER, NOTIFY, PRACK"
)

// Deps are what a Guard works with.
type Deps struct {
	Policy Policy
	// Registrar answers the REGISTERs of the stateless path (nil: none
	// take it).
	Registrar Registrar
	Log       *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Guard is the packet guard and the stateless path. Create with New, then
// SetTransport (and SetCalls) before serving, and Run. All methods are
// safe for concurrent use.
type Guard struct {
	policy        Policy
	allow         string
	streamTimeout time.Duration
	log           *slog.Logger
	now           func() time.Time
	parser        *sip.Parser
	tr            atomic.Pointer[transportBox]
	streams       streams
	stateless     *Stateless
}

type transportBox struct{ t Transport }

// New returns a Guard deciding with d.Policy.
func New(cfg Config, d Deps) *Guard {
	if cfg.Allow == "" {
		cfg.Allow = DefaultAllow
	}
	if cfg.StreamTimeout <= 0 {
		cfg.StreamTimeout = DefaultStreamTimeout
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	g := &Guard{policy: d.Policy, allow: cfg.Allow, streamTimeout: cfg.StreamTimeout, log: d.Log, now: d.Now,
		parser: sip.NewParser()}
	g.streams.m = map[netip.AddrPort]*stream{}
	g.stateless = newStateless(g, d.Registrar)
	return g
}

// SetTransport sets where the guard's answers go. Call before serving.
func (g *Guard) SetTransport(t Transport) { g.tr.Store(&transportBox{t}) }

// SetCalls sets who answers a new call's first INVITE on the stateless
// path (the proxy, which is built after the SIP stack). Until it is set,
// INVITEs go to sipgo.
func (g *Guard) SetCalls(c Calls) { g.stateless.calls.Store(&callsBox{c}) }

// Stateless returns the stateless path.
func (g *Guard) Stateless() *Stateless { return g.stateless }

// Run closes TCP connections stalled mid-message for longer than
// StreamTimeout, until ctx ends.
func (g *Guard) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			g.expireStreams()
		}
	}
}

// Wait waits for the requests the stateless path is handling (at
// shutdown, once the listeners are closed and no new ones start).
func (g *Guard) Wait() { g.stateless.wg.Wait() }
