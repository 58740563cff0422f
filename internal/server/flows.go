package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/proxy"
	"github.com/switchboard-pbx/switchboard/internal/sipstack"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/tlscert"
)

// Flow reuse (RFC 5626 style): a binding made over a connection (TCP,
// TLS, WS, WSS) is reached only through that connection. The router's
// destination of such a binding is its source address; sipgo's connection
// pool finds the connection by it, whatever the Contact names (a browser's
// Contact host is "*.invalid"). When the connection closes, the flows
// tracker marks its bindings unreachable at once and journals why, and
// the Locator the proxy and qualify read leaves them out, so a call gets
// 480 USER_NOT_REGISTERED instead of the server dialling the phone.

// flows remembers which connections carry a registration.
type flows struct {
	mu         sync.Mutex
	registered map[string]time.Time // guarded by mu; "TRANSPORT|ip:port" -> registered at
	pending    []closedFlow         // guarded by mu; closed, not yet applied
	wake       chan struct{}
}

type closedFlow struct {
	key string
	at  time.Time
}

func newFlows() *flows {
	return &flows{registered: map[string]time.Time{}, wake: make(chan struct{}, 1)}
}

func flowKey(transport, remote string) string { return strings.ToUpper(transport) + "|" + remote }

// isStream reports whether transport is a connection transport.
func isStream(transport string) bool {
	switch strings.ToUpper(transport) {
	case "TCP", "TLS", "WS", "WSS":
		return true
	}
	return false
}

// registeredOver records a successful REGISTER over a connection.
func (f *flows) registeredOver(transport, remote string) {
	f.mu.Lock()
	f.registered[flowKey(transport, remote)] = time.Now()
	f.mu.Unlock()
}

// closed is sipstack's FlowClosed: it queues the flow when it carried a
// registration. It does not block.
func (f *flows) closed(transport, remote string) {
	k := flowKey(transport, remote)
	f.mu.Lock()
	_, ok := f.registered[k]
	if ok {
		delete(f.registered, k)
		f.pending = append(f.pending, closedFlow{key: k, at: time.Now()})
	}
	f.mu.Unlock()
	if ok {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

// runFlows applies closed flows until ctx ends: one pass over the
// bindings per batch of closed connections.
func (s *Server) runFlows(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.flows.wake:
		}
		s.flows.mu.Lock()
		batch := s.flows.pending
		s.flows.pending = nil
		s.flows.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		at := make(map[string]time.Time, len(batch))
		for _, c := range batch {
			at[c.key] = c.at
		}
		for _, b := range s.Loc.All() {
			when, ok := at[flowKey(b.Transport, b.Source)]
			if !ok {
				continue
			}
			_, nb, ok := s.Loc.SetPing(b.Key(), false, 0)
			if !ok {
				continue
			}
			s.Journal.Record(journal.Event{Kind: journal.KindBinding, Cause: cause.ConnectionClosed, Extension: nb.Extension,
				Domain: nb.Domain, Source: nb.Source, Transport: nb.Transport, UserAgent: nb.UserAgent, CallID: nb.CallID,
				AuthUser: nb.AuthUser, Realm: nb.Realm, Detail: closedDetail(nb, when)})
		}
	}
}

// closedDetail explains a binding whose connection closed.
func closedDetail(b store.Binding, at time.Time) string {
	tp := strings.ToUpper(b.Transport)
	what, why := "the "+tp+" connection", "the phone closed it, restarted or lost network"
	switch tp {
	case "WS", "WSS":
		what, why = "the WebSocket", "the browser tab was probably closed or lost network"
	}
	host, _, _ := net.SplitHostPort(b.Source)
	return fmt.Sprintf("registered over %s from %s; %s closed at %s (%s); contact %s is unreachable: calls get 480 until it registers again",
		tp, host, what, at.Format("15:04:05"), why, b.Contact)
}

// flowLocator is the location table as the proxy and qualify see it: a
// binding whose connection closed is left out.
// The proxy finds a forwarded call's callee among this node's own bindings
// through LookupLocal: a Locator without it answers every forwarded call
// with 480.
var (
	_ proxy.Locator      = flowLocator{}
	_ proxy.LocalLocator = flowLocator{}
)

type flowLocator struct {
	s *Server
}

func (l flowLocator) open(b store.Binding) bool {
	if b.Node != "" && b.Node != l.s.Node {
		return true // another node's binding: its connection is that node's
	}
	return !isStream(b.Transport) || l.s.Stack.FlowOpen(strings.ToUpper(b.Transport), b.Source)
}

// reachable returns the bindings of bs that can be reached: bs itself
// when all can (no copy), else a new slice (bs belongs to the table).
func (l flowLocator) reachable(bs []store.Binding) []store.Binding {
	out := bs[:0:0]
	for _, b := range bs {
		if l.open(b) {
			out = append(out, b)
		}
	}
	if len(out) == len(bs) {
		return bs
	}
	return out
}

// Lookup returns the bindings of an extension that can be reached.
func (l flowLocator) Lookup(domain, ext string) []store.Binding {
	return l.reachable(l.s.Loc.Lookup(domain, ext))
}

// LookupLocal returns this node's own bindings of an extension that can
// be reached (the proxy's forwarded calls from other nodes ask for these).
func (l flowLocator) LookupLocal(domain, ext string) []store.Binding {
	return l.reachable(l.s.Loc.LookupLocal(domain, ext))
}

// All returns every binding that can be reached.
func (l flowLocator) All() []store.Binding {
	bs := l.s.Loc.All()
	out := bs[:0]
	for _, b := range bs {
		if l.open(b) {
			out = append(out, b)
		}
	}
	return out
}

// SetPing is the table's.
func (l flowLocator) SetPing(key store.BindingKey, reachable bool, rtt time.Duration) (string, store.Binding, bool) {
	return l.s.Loc.SetPing(key, reachable, rtt)
}

// streamOptions resolves the TLS/WS/WSS settings and loads (or creates)
// the certificate when TLS or WSS is on.
func (s *Server) streamOptions(cfg config.Config) (sipstack.StreamOptions, error) {
	var so sipstack.StreamOptions
	// An explicit address that cannot bind fails the start; an automatic
	// one is left off with a warning (the port may be FreeSWITCH's).
	so.TLS, so.OptionalTLS = cfg.StreamAddr("tls")
	so.WS, so.OptionalWS = cfg.StreamAddr("ws")
	so.WSS, so.OptionalWSS = cfg.StreamAddr("wss")
	if cfg.WSOrigins != "" {
		for _, o := range strings.Split(cfg.WSOrigins, ",") {
			if o = strings.TrimSpace(o); o != "" {
				so.Origins = append(so.Origins, o)
			}
		}
	}
	if so.TLS == "" && so.WSS == "" {
		return so, nil
	}
	names := []string{s.Domain}
	if hn, err := os.Hostname(); err == nil {
		names = append(names, hn)
	}
	names = append(names, "localhost")
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				names = append(names, ipn.IP.String())
			}
		}
	}
	m, created, err := tlscert.Open(cfg.DataDir, cfg.TLSCert, cfg.TLSKey, names, s.Log)
	if err != nil {
		return so, err
	}
	s.Cert = m
	so.TLSConfig = m.Config()
	info, _ := m.Info()
	if !created {
		s.Log.Info("tls certificate", "cert", info.CertFile, "self_signed", info.SelfSigned, "subject", info.Subject,
			"not_after", info.NotAfter.Format(time.RFC3339), "sha256", info.Fingerprint)
	}
	if created {
		// Said once the listeners are bound (Run), so that a start that
		// fails says only why it failed.
		s.certNotice = func() {
			s.Log.Warn("created a self-signed TLS certificate for TLS and WSS: desk phones must trust it (import the cert file) or skip verification, "+
				"and each browser must accept it once: open https://"+s.Domain+":PORT/ (the --wss port, 7443 by default) and accept the warning; "+
				"or give a real certificate with --tls-cert/--tls-key (e.g. certbot's fullchain.pem and privkey.pem)",
				"cert", info.CertFile, "sha256", info.Fingerprint, "names", strings.Join(info.Names, ","))
		}
	}
	return so, nil
}

// runCert reloads the certificate when its files change or on SIGHUP.
func (s *Server) runCert(ctx context.Context) {
	if s.Cert == nil {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	s.Cert.Run(ctx.Done(), hup, s.certPoll)
}

// keepStreamFlow is keepFlow for TLS, WS and WSS (and TCP): a REGISTER
// answered 200 over a connection keeps it open until the binding expires
// and records it, so its closing marks the bindings unreachable.
func (s *Server) keepStreamFlow(req *sip.Request, send func(*sip.Response) error) func(*sip.Response) error {
	tp := strings.ToUpper(req.Transport())
	if !isStream(tp) {
		return send
	}
	return func(res *sip.Response) error {
		if res.StatusCode == 200 {
			if exp := longestExpiry(res); exp > 0 {
				s.Stack.KeepAliveFlow(tp, req.Source(), time.Now().Add(time.Duration(exp)*time.Second+bindingSlack))
				s.flows.registeredOver(tp, req.Source())
			}
		}
		return send(res)
	}
}
