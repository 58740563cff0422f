package guard

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/sipreply"
)

// maxStatelessInFlight bounds the requests handled at once on the
// stateless path (enough to keep both cores busy while each REGISTER
// waits for its group commit). Beyond it the socket's reader waits for a
// place, up to shedWait, so that under overload the kernel's receive
// buffer is the queue, as in Kamailio: the work in hand stays small and
// throughput stays at what the cores can do instead of collapsing under
// thousands of requests half-done. The socket's readers drop the
// REGISTERs that waited in that queue past their limit before they get
// here (see internal/sipstack's staleFresh), so the queue holds a few
// hundred milliseconds of work. A REGISTER still without a place after
// shedWait (nothing finished: the storage stalls) is shed (503 with
// Retry-After, see shedRetryAfter), and so are the next ones at once until
// one in hand finishes. An INVITE beyond it takes sipgo's transaction path.
// A REGISTER with credentials (the second half of a registration whose
// challenge was already paid for) may use credentialReserve more.
const maxStatelessInFlight = 1024

// shedWait is how long a socket's reader waits for a place in hand for a
// REGISTER before shedding it.
const shedWait = time.Second

// credentialReserve is the room kept for REGISTERs with credentials.
const credentialReserve = 1024

// shedRetryAfter is the Retry-After (seconds) of the 503 that sheds a
// REGISTER.
const shedRetryAfter = 5

// shedLogEvery is how often, at most, shedding is logged (with the count).
const shedLogEvery = 10 * time.Second

// Registrar answers a REGISTER through reply, which sends the answer's
// bytes (Answer.Bytes) and keeps them (for retransmissions).
type Registrar interface {
	Serve(req *sip.Request, reply func(*sipreply.Answer) error)
}

// Calls decides and answers, without a transaction, the first INVITE of a
// call whose only answer is a 407 challenge (the proxy).
type Calls interface {
	// Stateless reports whether req is such an INVITE.
	Stateless(req *sip.Request) bool
	// ChallengeStateless answers an INVITE Stateless accepted through
	// send (which sends the answer's bytes).
	ChallengeStateless(req *sip.Request, send func(*sipreply.Answer) error)
}

type callsBox struct{ c Calls }

// Stateless is the one entry of the stateless path: the guard hands it
// every UDP message it passed (and the requests sipgo cannot key to a
// transaction: RFC 2543 ones without a branch or a From tag), and it
// decides: a REGISTER goes to the registrar, a call's first INVITE
// without credentials to the proxy's 407 challenge, anything else on to
// sipgo. A transaction would be kept for 32 s after the answer (timer J)
// only to absorb retransmissions, which the registrar handles idempotently
// anyway: at 10,000 registrations/s that is 640,000 live transactions for
// nothing. This is how Kamailio's registrar answers too (stateless
// replies).
type Stateless struct {
	g      *Guard
	reg    Registrar
	calls  atomic.Pointer[callsBox]
	parser *sip.Parser
	sem    chan struct{} // one per request in hand
	// reserve is how much of sem only REGISTERs with credentials use:
	// fresh holds one place per REGISTER without credentials in hand, and
	// has cap(sem)-reserve places.
	reserve int
	fresh   chan struct{}
	// stalled is set when a reader waited shedWait in vain, and cleared
	// when a request in hand finishes: meanwhile REGISTERs are shed
	// without waiting.
	stalled atomic.Bool
	wg      sync.WaitGroup // in-flight requests; waited for at shutdown
	rtx     *retrans       // REGISTERs in hand and answered lately

	shed       atomic.Int64 // REGISTERs shed with 503 so far
	absorbed   atomic.Int64 // retransmissions dropped or answered from rtx
	shedLogged atomic.Int64 // unix ns of the last shedding log line
}

func newStateless(g *Guard, reg Registrar) *Stateless {
	return &Stateless{g: g, reg: reg, parser: sip.NewParser(), sem: make(chan struct{}, maxStatelessInFlight+credentialReserve),
		reserve: credentialReserve, fresh: make(chan struct{}, maxStatelessInFlight),
		rtx: newRetrans(time.Now)}
}

// InHand returns how many requests the stateless path is handling now.
func (st *Stateless) InHand() int { return len(st.sem) }

// Stats returns how many REGISTERs were shed (503, overload) and how many
// retransmissions were absorbed (dropped while their original was in
// hand, or answered again with its answer) so far.
func (st *Stateless) Stats() (shed, absorbed int64) {
	return st.shed.Load(), st.absorbed.Load()
}

var (
	registerPrefix = []byte("REGISTER ")
	invitePrefix   = []byte("INVITE ")
)

// take reports whether the stateless path took msg (over UDP: a REGISTER,
// or an INVITE whose only answer is a 407); false hands it to sipgo. msg
// is only valid during the call.
//
// A REGISTER is never handed to sipgo: a retransmission of one in hand is
// dropped (its original's answer is coming), a retransmission of one
// answered in the last two to four seconds gets that same answer again (not a
// new challenge, whose fresh nonce a phone that moved on would take for
// an unexpected message), and beyond maxStatelessInFlight a new one gets
// 503 with Retry-After at once (one with credentials only beyond the
// credentialReserve more): under overload the socket readers keep
// draining the sockets, each retransmission costs a map lookup instead of
// becoming new work, and throughput stays at what the cores can do.
func (st *Stateless) take(transport string, remote net.Addr, data []byte) bool {
	if transport != "UDP" && transport != "udp" {
		return false
	}
	var inv *sip.Request
	var calls Calls
	switch {
	case bytes.HasPrefix(data, registerPrefix) && st.reg != nil:
	case bytes.HasPrefix(data, invitePrefix) && !hasCredentials(data):
		b := st.calls.Load()
		if b == nil {
			return false
		}
		calls = b.c
		// Decide here, while sipgo can still take it: parse, and keep only
		// a dialog-creating INVITE without credentials.
		msg, err := st.parser.ParseSIP(append([]byte(nil), data...))
		req, ok := msg.(*sip.Request)
		if err != nil || !ok {
			return false
		}
		req.SetTransport("UDP")
		req.SetSource(sourceString(remote))
		if !calls.Stateless(req) {
			return false
		}
		inv = req
	default:
		return false
	}
	if inv != nil {
		if len(st.sem) >= cap(st.sem)-st.reserve {
			return false // saturated: sipgo's transaction path takes it
		}
		select {
		case st.sem <- struct{}{}:
		default:
			return false // saturated: sipgo's transaction path takes it
		}
		st.wg.Add(1)
		go st.challenge(calls, inv, remote)
		return true
	}
	key := st.rtx.key(addrPort(remote), data)
	e, answer, isNew := st.rtx.begin(key)
	if !isNew {
		st.absorbed.Add(1)
		if answer != nil {
			st.send(remote, answer)
		}
		return true
	}
	fresh := !hasAuthorization(data)
	st.wg.Add(1)
	if !st.admit(fresh) {
		st.wg.Done()
		st.rtx.end(key, e)
		st.shedOne(remote, data)
		return true
	}
	buf := append([]byte(nil), data...)
	// On its own goroutine: the registrar's 200 waits for the binding's
	// commit, which must not hold up the socket's reader.
	go st.register(buf, remote, key, e, fresh)
	return true
}

// admit takes a place in hand for a REGISTER (fresh: one without
// credentials, which leaves the reserve to the others), waiting up to
// shedWait for one; false: shed it. The wait holds up the socket's
// reader, on purpose (see maxStatelessInFlight).
func (st *Stateless) admit(fresh bool) bool {
	if fresh {
		select {
		case st.fresh <- struct{}{}:
		default:
			if !st.wait(st.fresh) {
				return false
			}
		}
	}
	select {
	case st.sem <- struct{}{}:
		return true
	default:
	}
	if st.wait(st.sem) {
		return true
	}
	if fresh {
		<-st.fresh
	}
	return false
}

// wait takes a place of sem within shedWait, unless the path is stalled.
func (st *Stateless) wait(sem chan struct{}) bool {
	if st.stalled.Load() {
		return false
	}
	t := time.NewTimer(shedWait)
	defer t.Stop()
	select {
	case sem <- struct{}{}:
		return true
	case <-t.C:
		st.stalled.Store(true)
		return false
	}
}

// release gives back the places of a request in hand.
func (st *Stateless) release(fresh bool) {
	<-st.sem
	if fresh {
		<-st.fresh
	}
	if st.stalled.Load() {
		st.stalled.Store(false)
	}
}

// shedOne answers a REGISTER 503 with Retry-After without parsing it.
func (st *Stateless) shedOne(remote net.Addr, data []byte) {
	n := st.shed.Add(1)
	head := data
	if i := bytes.Index(data, crlfcrlf); i >= 0 {
		head = data[:i+4]
	}
	if reply := buildReply(head, 503, "Service Unavailable", "overloaded, try again later",
		"Retry-After: "+strconv.Itoa(shedRetryAfter)+"\r\n"); reply != nil {
		st.send(remote, reply)
	}
	now := time.Now().UnixNano()
	if last := st.shedLogged.Load(); now-last >= int64(shedLogEvery) && st.shedLogged.CompareAndSwap(last, now) {
		st.g.log.Warn("overloaded: REGISTERs answered 503 with Retry-After instead of being handled",
			"in_hand", len(st.sem), "shed_so_far", n)
	}
}

func (st *Stateless) send(remote net.Addr, b []byte) {
	t := st.g.tr.Load()
	if t == nil {
		return
	}
	if err := t.t.Reply("UDP", remote, b); err != nil {
		st.g.log.Debug("stateless: send", "to", remote, "error", err)
	}
}

// hasAuthorization is a cheap look for an Authorization header (in its
// usual spellings): a REGISTER answering our challenge.
func hasAuthorization(data []byte) bool {
	return bytes.Contains(data, []byte("\nAuthorization:")) || bytes.Contains(data, []byte("\nauthorization:"))
}

// hasCredentials is a cheap look for a Proxy-Authorization header (in its
// usual spellings), so an authenticated INVITE is not parsed twice; one it
// misses is still recognised by Calls.Stateless after the parse.
func hasCredentials(data []byte) bool {
	return bytes.Contains(data, []byte("\nProxy-Authorization:")) || bytes.Contains(data, []byte("\nproxy-authorization:"))
}

func (st *Stateless) reply(remote net.Addr) func(*sipreply.Answer) error {
	return func(a *sipreply.Answer) error {
		b := a.Bytes()
		t := st.g.tr.Load()
		if t == nil {
			return errNoTransport
		}
		return t.t.Reply("UDP", remote, b)
	}
}

func (st *Stateless) challenge(calls Calls, req *sip.Request, remote net.Addr) {
	defer st.wg.Done()
	defer func() { <-st.sem }()
	defer st.recover(remote)
	calls.ChallengeStateless(req, st.reply(remote))
}

func (st *Stateless) recover(remote net.Addr) {
	if r := recover(); r != nil {
		st.g.log.Error("stateless: panic handling a message; the server goes on", "panic", r,
			"source", remote.String(), "stack", string(debug.Stack()))
	}
}

func (st *Stateless) register(buf []byte, remote net.Addr, key rtxKey, e *rtxEntry, fresh bool) {
	defer st.wg.Done()
	defer st.release(fresh)
	defer st.rtx.end(key, e)
	defer st.recover(remote)
	msg, err := st.parser.ParseSIP(buf)
	if err != nil {
		st.g.log.Debug("register: unparsable", "source", remote.String(), "error", err)
		return
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return
	}
	req.SetTransport("UDP")
	req.SetSource(sourceString(remote))
	st.reg.Serve(req, func(a *sipreply.Answer) error {
		b := a.Bytes()
		// Kept before it is sent, so a retransmission arriving after the
		// answer finds it.
		st.rtx.answered(e, b)
		t := st.g.tr.Load()
		if t == nil {
			return errNoTransport
		}
		return t.t.Reply("UDP", remote, b)
	})
}

// sourceString is remote.String() for a request's Source, in one
// allocation instead of three for a *net.UDPAddr (the same text: an
// IPv4-mapped address as IPv4, an IPv6 one in brackets; one with a zone
// takes remote.String()).
func sourceString(remote net.Addr) string {
	if a, ok := remote.(*net.UDPAddr); ok && a.IP != nil && a.Zone == "" {
		ap := a.AddrPort()
		if ip := ap.Addr(); ip.Is4In6() {
			ap = netip.AddrPortFrom(ip.Unmap(), ap.Port())
		}
		if ap.Addr().IsValid() {
			return ap.String()
		}
	}
	return remote.String()
}

// errNoTransport: SetTransport was not called.
var errNoTransport = errors.New("guard: no transport to answer through (SetTransport)")
