// Package proxy routes calls between extensions: a transaction-stateful SIP
// proxy (RFC 3261 §16) on top of sipgo.
//
// An INVITE from an extension is authenticated with a 407 challenge (the
// same digest and nonce rules as REGISTER; an unknown user and a wrong
// password get the same 403), the authenticated user must be the From user,
// and the router (package router) picks the callee's bindings. The proxy
// then forks the INVITE to every binding in parallel, each sent over the
// transport the phone registered with, to the address router.Destination
// picks: the address the REGISTER came from when the phone is behind NAT
// (so it is reached through its pinhole) or uses TCP, its contact
// otherwise. It answers 100 Trying at once, relays 180/183
// with their SDP, relays the first 2xx and CANCELs the other branches, and
// otherwise answers the best final response (§16.7) with a Q.850 Reason
// header naming the cause (USER_BUSY, CALL_REJECTED, ...). A callee that
// rings longer than its call timeout is cancelled (480 NO_ANSWER); a callee
// none of whose phones answers anything is 408 RECOVERY_ON_TIMER_EXPIRE and
// its silent bindings are marked unreachable in the location table.
//
// Every forwarded INVITE carries a Record-Route (loose routing, ;lr) with a
// route token (a random nonce and an HMAC of the Call-ID and the caller's
// tag), so ACK, BYE, re-INVITE, UPDATE, INFO, REFER, NOTIFY, MESSAGE and
// PRACK of the dialog come back through the proxy. They are forwarded
// without authentication, but only within a dialog the proxy set up and
// still knows (an in-memory table: early from a 1xx with a To tag,
// confirmed by the 2xx, gone DialogLinger after the BYE and at a restart),
// only from one of its two parties (by source address, and subject to the
// inbound ACL unless from the callee), carrying the dialog's own token and
// recorded route set, and only to the other party, at the address and
// transport recorded at setup: a Route or Request-URI naming anything else
// is refused (403, or 481 for an unknown dialog; cause
// route_token_refused, journaled once a minute per address). The proxy is
// no relay: nothing the request names is ever contacted.
//
// Every INVITE decision is journaled (journal.KindInvite) and every
// authenticated call attempt gets a call record (package calls), written
// asynchronously. Nothing on the request path touches the database.
//
// Access control is a seam: Policy (AllowAll by default) decides whether a
// source may place calls and counts authentication failures.
//
// Several nodes (Deps.Nodes set): a binding another node owns is rung
// through that node, at the address of its Path, with the Request-URI set
// to the phone's contact and a cluster.Header signed with the nodes'
// secret. The owning node verifies it, skips authentication and the
// inbound ACL (the forwarding node did both) and rings its own binding of
// that contact only; a header that does not verify is removed and the
// INVITE is treated as any other (it must authenticate). Both nodes
// Record-Route, so in-dialog requests take the same path.
package proxy

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/auth"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/media"
	wrtc "github.com/switchboard-pbx/switchboard/internal/media/webrtc"
	"github.com/switchboard-pbx/switchboard/internal/router"
	"github.com/switchboard-pbx/switchboard/internal/sipreply"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Policy is the access-control seam for calls: inbound ACLs, bans and
// brute-force accounting. AllowAll is the default.
type Policy interface {
	// AllowInvite decides whether src may place calls at all; list names the
	// ACL (or ban) that denied.
	AllowInvite(src netip.Addr) (ok bool, list string)
	// AuthFailed counts a failed authentication from src for number@domain,
	// the account whose password was tried.
	AuthFailed(src netip.Addr, domain, number, reason string)
	// AuthSucceeded records that number@domain authenticated from src.
	AuthSucceeded(src netip.Addr, domain, number string)
}

// AllowAll is a Policy that allows every source and counts nothing.
type AllowAll struct{}

// AllowInvite allows everything.
func (AllowAll) AllowInvite(netip.Addr) (bool, string) { return true, "" }

// AuthFailed does nothing.
func (AllowAll) AuthFailed(netip.Addr, string, string, string) {}

// AuthSucceeded does nothing.
func (AllowAll) AuthSucceeded(netip.Addr, string, string) {}

// Locator is what the proxy needs from the location table
// (location.Table satisfies it).
type Locator interface {
	Lookup(domain, ext string) []store.Binding
	SetPing(key store.BindingKey, reachable bool, rtt time.Duration) (prev string, b store.Binding, ok bool)
}

// Config configures a Proxy.
type Config struct {
	// Host is the address the proxy puts in Via and Record-Route; an
	// unspecified address (0.0.0.0, ::, "") is replaced by AdvertiseHost.
	Host string
	// AdvertiseHost is used when Host is unspecified (e.g. the primary IPv4).
	AdvertiseHost string
	// Port is the SIP port (UDP and TCP listen on the same port).
	Port int
	// StreamPorts are the ports of the TLS, WS and WSS listeners (keys
	// "TLS", "WS", "WSS"), put in Via and Record-Route for those
	// transports; a transport missing uses Port.
	StreamPorts map[string]int
	// UDPLocal is the UDP listener's local address exactly as bound
	// ("127.0.0.1:5060"): UDP requests leave from this socket.
	UDPLocal string
	// OwnHosts are the names and addresses that mean this server (to
	// recognise our own Route entries).
	OwnHosts []string
	// Key signs the Record-Route tokens (any secret). Tokens route nothing
	// by themselves: dialogs live in memory and do not survive a restart.
	Key []byte
	// NoResponseTimeout is how long a branch may stay silent (not even 100
	// Trying) before it is given up as dead (408) and its binding marked
	// unreachable. Default 8 s.
	NoResponseTimeout time.Duration
	// DefaultRingTimeout is the ring timeout of extensions without a call
	// timeout. Default router.DefaultTimeout (30 s).
	DefaultRingTimeout time.Duration
	// DialogIdle ends the record of an answered call after this long without
	// any in-dialog request (a lost BYE). Default 12 h.
	DialogIdle time.Duration
	// MaxDialogs bounds the dialogs tracked (default 1,000,000): in-dialog
	// requests are routed only for tracked dialogs, so new calls get 503
	// while the table is full.
	MaxDialogs int
	// ServerName is sent in the Server header of our own answers.
	ServerName string
	// MaxSetups bounds the calls forwarded whose callees have not
	// answered anything yet, not even 100 Trying (default 2,000). A phone
	// answers within milliseconds, so such calls pile up only when the
	// server falls behind its sockets: further calls then get a fast 503
	// with Retry-After (cause NORMAL_TEMPORARY_FAILURE) instead of adding
	// forwarded INVITEs, ACKs and BYEs, and retransmissions of all of
	// them, to the backlog.
	MaxSetups int
	// Node is this node's name (serve --node): bindings of other nodes
	// are reached through their node (Deps.Nodes).
	Node string
	// MediaRelay is when calls' media go through Deps.Media (serve
	// --media-relay): RelayAuto (default), RelayAlways or RelayNever.
	// MediaTimeout is the relay's media timeout (for messages and to keep
	// a ringing call's session alive).
	MediaRelay   string
	MediaTimeout time.Duration
}

// Deps are the services the proxy uses.
type Deps struct {
	Dir     router.Directory
	Auth    *auth.Authenticator
	Loc     Locator
	Journal *journal.Writer
	Calls   *calls.Writer
	Client  *sipgo.Client
	Server  *sipgo.Server
	Policy  Policy // nil: AllowAll
	Log     *slog.Logger
	// Nodes signs the calls forwarded to other nodes and checks those
	// forwarded here (nil: a single node; other nodes' bindings are not
	// rung).
	Nodes Nodes
	// Media is the media relay (nil: no call is relayed; see relay.go).
	// Its Config.OnTimeout must call Proxy.MediaTimeout.
	Media *media.Relay
}

// Proxy is the call proxy. Create with New, register its handlers with
// Register, run Run, and call Shutdown after the SIP stack stopped.
type Proxy struct {
	cfg     Config
	host    string
	port    int
	own     map[string]struct{}
	udpAddr sip.Addr
	rr      *router.Router
	d       Deps
	log     *slog.Logger
	now     func() time.Time
	dialogs *dialogTable

	// challenged journals a plain challenge once a minute per phone and
	// user.
	challenged *journal.Throttle
	// answers writes the 407 challenges as bytes.
	answers sipreply.Writer
	// refused journals refused in-dialog requests once a minute per source
	// address and cause.
	refused *journal.Throttle
	// setups counts the forwarded calls none of whose callees answered
	// anything yet (see Config.MaxSetups); shed journals the calls refused
	// for it once a minute per phone and user.
	setups atomic.Int64
	shed   *journal.Throttle
	// relayed maps a Call-ID to its *callMedia while its media are relayed.
	relayed sync.Map
	// bridge carries browser <-> plain phone calls through the relay (nil without one).
	bridge *wrtc.Gateway
}

// New returns a proxy.
func New(cfg Config, d Deps) *Proxy {
	if d.Policy == nil {
		d.Policy = AllowAll{}
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if cfg.NoResponseTimeout <= 0 {
		cfg.NoResponseTimeout = 8 * time.Second
	}
	if cfg.DialogIdle <= 0 {
		cfg.DialogIdle = 12 * time.Hour
	}
	if cfg.MaxDialogs <= 0 {
		cfg.MaxDialogs = 1_000_000
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "switchboard"
	}
	if cfg.MediaTimeout <= 0 {
		cfg.MediaTimeout = 60 * time.Second
	}
	if cfg.MaxSetups <= 0 {
		cfg.MaxSetups = 2000
	}
	host := strings.Trim(cfg.Host, "[]")
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		host = cfg.AdvertiseHost
		if host == "" {
			host = "127.0.0.1"
		}
	}
	p := &Proxy{cfg: cfg, host: host, port: cfg.Port, own: map[string]struct{}{}, d: d, log: d.Log,
		now: time.Now, challenged: journal.NewThrottle(time.Minute, nil),
		refused: journal.NewThrottle(time.Minute, nil), shed: journal.NewThrottle(time.Minute, nil)}
	if d.Media != nil {
		// The relay legs' advertised address (--media-ip) is the browser's candidate.
		p.bridge, _ = wrtc.NewGateway(wrtc.Config{Log: d.Log})
	}
	for _, h := range append([]string{host, cfg.Host}, cfg.OwnHosts...) {
		if h = strings.ToLower(strings.Trim(h, "[]")); h != "" {
			p.own[h] = struct{}{}
		}
	}
	if h, port, err := net.SplitHostPort(cfg.UDPLocal); err == nil {
		n, _ := strconv.Atoi(port)
		p.udpAddr = sip.Addr{IP: net.ParseIP(h), Port: n, Hostname: h}
	}
	p.rr = &router.Router{Dir: d.Dir, Loc: d.Loc, DefaultTimeout: cfg.DefaultRingTimeout}
	p.dialogs = newDialogTable(cfg.MaxDialogs)
	return p
}

// Mux is where request handlers are registered: a *sipstack.Stack (which
// contains a panic in one request's handling) or a bare *sipgo.Server.
type Mux interface {
	OnInvite(sipgo.RequestHandler)
	OnAck(sipgo.RequestHandler)
	OnCancel(sipgo.RequestHandler)
	OnRequest(sip.RequestMethod, sipgo.RequestHandler)
}

// Register installs the proxy's handlers on srv: INVITE, ACK, CANCEL and
// the in-dialog methods.
func (p *Proxy) Register(srv Mux) {
	srv.OnInvite(p.ServeINVITE)
	srv.OnAck(p.ServeACK)
	srv.OnCancel(p.ServeCANCEL)
	for _, m := range []sip.RequestMethod{sip.BYE, sip.UPDATE, sip.INFO, sip.REFER, sip.NOTIFY, sip.MESSAGE, sip.PRACK} {
		srv.OnRequest(m, p.ServeInDialog)
	}
}

// Run sweeps dialogs that saw no request for Config.DialogIdle (their BYE
// was lost), ends those whose BYE forwarded without a transaction got no
// final answer within Timer F, and forgets ended ones after DialogLinger,
// until ctx ends (once a minute).
func (p *Proxy) Run(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.dialogs.sweep(p.now())
			p.endUnansweredBYEs(p.now())
			for _, d := range p.dialogs.expire(p.now().Add(-p.cfg.DialogIdle)) {
				p.endDialog(d, cause.NormalClearing, calls.ByServer,
					"no request seen in the dialog for "+p.cfg.DialogIdle.String()+"; the BYE was probably lost")
			}
		}
	}
}

// Shutdown ends the records of the calls still up (cause SYSTEM_SHUTDOWN):
// once the proxy stops it cannot see their end. Call it after the SIP stack
// stopped and before the calls writer stops.
func (p *Proxy) Shutdown() {
	for _, d := range p.dialogs.expire(time.Time{}) {
		p.endDialog(d, cause.SystemShutdown, calls.ByServer,
			"switchboard stopped while this call was in progress; its real end time is unknown")
	}
}

// ActiveDialogs returns how many dialogs (answered calls, and early
// dialogs of calls ringing) the proxy is tracking.
func (p *Proxy) ActiveDialogs() int { return p.dialogs.len() }

// isOwnURI reports whether u addresses this server.
func (p *Proxy) isOwnURI(u *sip.Uri) bool {
	if _, ok := p.own[strings.ToLower(strings.Trim(u.Host, "[]"))]; !ok {
		return false
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if u.IsEncrypted() {
			port = 5061
		}
	}
	return p.ownPort(port)
}

// ownPort reports whether port is one of our listeners' (SIP, TLS, WS, WSS).
func (p *Proxy) ownPort(port int) bool {
	if port == p.port {
		return true
	}
	for _, n := range p.cfg.StreamPorts {
		if n == port {
			return true
		}
	}
	return false
}

// branchPrefix marks the Via branches this proxy generates.
const branchPrefix = sip.RFC3261BranchMagicCookie + "-sb"

// isOwnVia reports whether v is a Via this proxy added.
func (p *Proxy) isOwnVia(v *sip.ViaHeader) bool {
	if v == nil || !p.ownPort(v.Port) || !strings.EqualFold(strings.Trim(v.Host, "[]"), p.host) {
		return false
	}
	b, _ := v.Params.Get("branch")
	return strings.HasPrefix(b, branchPrefix)
}

// Host is the address the proxy advertises in Via and Record-Route.
func (p *Proxy) Host() string { return p.host }
