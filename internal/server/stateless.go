package server

import (
	"bytes"
	"net"
	"runtime/debug"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// maxStatelessInFlight bounds the REGISTERs handled at once on the
// stateless path; beyond it they take sipgo's transaction path.
const maxStatelessInFlight = 8192

// stateless answers REGISTER over UDP, and the 407 challenge of a new
// call's first INVITE, without a sipgo server transaction.
// A transaction would be kept for 32 s after the answer (timer J) only to
// absorb retransmissions, which the registrar handles idempotently anyway:
// at 10,000 registrations/s that is 640,000 live transactions for nothing.
// This is how Kamailio's registrar answers too (stateless replies).
type stateless struct {
	srv    *Server
	parser *sip.Parser
	sem    chan struct{}
	wg     sync.WaitGroup // in-flight requests; waited for at shutdown
}

func newStateless(s *Server) *stateless {
	return &stateless{srv: s, parser: sip.NewParser(), sem: make(chan struct{}, maxStatelessInFlight)}
}

var (
	registerPrefix = []byte("REGISTER ")
	invitePrefix   = []byte("INVITE ")
)

// intercept takes, over UDP, REGISTER requests and the INVITEs whose only
// answer is a 407 challenge (the security filter has already passed them).
// data is only valid during the call.
func (st *stateless) intercept(transport string, remote net.Addr, data []byte) bool {
	if transport != "UDP" && transport != "udp" {
		return false
	}
	var inv *sip.Request
	switch {
	case bytes.HasPrefix(data, registerPrefix):
	case bytes.HasPrefix(data, invitePrefix) && st.srv.Proxy != nil && !hasCredentials(data):
		// Decide here, while sipgo can still take it: parse, and keep only
		// a dialog-creating INVITE without credentials.
		msg, err := st.parser.ParseSIP(append([]byte(nil), data...))
		req, ok := msg.(*sip.Request)
		if err != nil || !ok {
			return false
		}
		req.SetTransport("UDP")
		req.SetSource(remote.String())
		if !st.srv.Proxy.Stateless(req) {
			return false
		}
		inv = req
	default:
		return false
	}
	select {
	case st.sem <- struct{}{}:
	default:
		return false // saturated: sipgo's transaction path takes it
	}
	st.wg.Add(1)
	if inv != nil {
		go st.challenge(inv, remote)
		return true
	}
	buf := append([]byte(nil), data...)
	// On its own goroutine: the registrar's 200 waits for the binding's
	// commit, which must not hold up the socket's reader.
	go st.handle(buf, remote)
	return true
}

// hasCredentials is a cheap look for a Proxy-Authorization header (in its
// usual spellings), so an authenticated INVITE is not parsed twice; one it
// misses is still recognised by Proxy.Stateless after the parse.
func hasCredentials(data []byte) bool {
	return bytes.Contains(data, []byte("\nProxy-Authorization:")) || bytes.Contains(data, []byte("\nproxy-authorization:"))
}

func (st *stateless) reply(remote net.Addr) func(*sip.Response) error {
	return func(res *sip.Response) error {
		return st.srv.Stack.Reply("UDP", remote, []byte(res.String()))
	}
}

func (st *stateless) challenge(req *sip.Request, remote net.Addr) {
	defer st.wg.Done()
	defer func() { <-st.sem }()
	defer st.recover(remote)
	st.srv.Proxy.ChallengeStateless(req, st.reply(remote))
}

func (st *stateless) recover(remote net.Addr) {
	if r := recover(); r != nil {
		st.srv.Log.Error("stateless: panic handling a message; the server goes on", "panic", r,
			"source", remote.String(), "stack", string(debug.Stack()))
	}
}

func (st *stateless) handle(buf []byte, remote net.Addr) {
	defer st.wg.Done()
	defer func() { <-st.sem }()
	defer st.recover(remote)
	msg, err := st.parser.ParseSIP(buf)
	if err != nil {
		st.srv.Log.Debug("register: unparsable", "source", remote.String(), "error", err)
		return
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return
	}
	req.SetTransport("UDP")
	req.SetSource(remote.String())
	st.srv.Reg.Serve(req, st.reply(remote))
}
