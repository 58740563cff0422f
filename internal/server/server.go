// Package server assembles a running switchboard: the database, the
// directory cache, the location table, the journal, the SIP stack and the
// request handlers, and stops them in order.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/auth"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/cluster"
	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/control"
	"github.com/switchboard-pbx/switchboard/internal/digest"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/guard"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/location"
	"github.com/switchboard-pbx/switchboard/internal/media"
	"github.com/switchboard-pbx/switchboard/internal/metrics"
	"github.com/switchboard-pbx/switchboard/internal/proxy"
	"github.com/switchboard-pbx/switchboard/internal/qualify"
	"github.com/switchboard-pbx/switchboard/internal/registrar"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/security"
	"github.com/switchboard-pbx/switchboard/internal/sipreply"
	"github.com/switchboard-pbx/switchboard/internal/sipstack"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/open"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
	"github.com/switchboard-pbx/switchboard/internal/tlscert"
	"github.com/switchboard-pbx/switchboard/internal/trace"
	"github.com/switchboard-pbx/switchboard/internal/version"
	"github.com/switchboard-pbx/switchboard/internal/web"
)

// Allow lists the methods the server answers (MESSAGE is relayed within a
// call only; outside one it gets 405, so it is not listed).
const Allow = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, REFER, NOTIFY, PRACK"

// Server is a running switchboard.
type Server struct {
	// Trace captures SIP messages while `switchboard trace` runs.
	Trace   *trace.Tracer
	Cfg     config.Config
	Log     *slog.Logger
	DB      open.Backend
	Dir     *directory.Cache
	Loc     *location.Table
	Journal *journal.Writer
	Stack   *sipstack.Stack
	Auth    *auth.Authenticator
	Reg     *registrar.Registrar
	// Sec is access control: ACLs, bans, flood protection, scanners.
	Sec *security.Service
	// Guard is the packet guard and the stateless path (REGISTER, a
	// call's first 407), deciding about addresses with Sec.
	Guard *guard.Guard
	// Calls records call attempts; Proxy routes calls; Qualify pings bindings.
	Calls   *calls.Writer
	Proxy   *proxy.Proxy
	Qualify *qualify.Pinger
	Domain  string
	Started time.Time
	// Node is this node's name; Lease renews its row in the nodes table;
	// Signer proves the calls it forwards to the other nodes.
	Node   string
	Lease  *cluster.Lease
	Signer *cluster.Signer
	// Web is the web console, HTTP API and /metrics (nil with --http "").
	Web *web.Server
	// Metrics counts what /metrics shows; the batched writers' stores go
	// through it.
	Metrics *metrics.Metrics
	// Media is the media relay (nil with --media-relay never), closed when
	// Run returns.
	Media *media.Relay
	// mediaIP is the address the relay writes into SDP.
	mediaIP string

	lock    *os.File
	ctl     net.Listener     // the control socket, served by Run
	applied control.Progress // the directory change applied (for control's Sync)
	kick    chan struct{}    // makes the directory watcher poll at once
	wg      sync.WaitGroup
	// connNotes journals connection refusals once a minute per address.
	connNotes *journal.Throttle
	// Cert is the TLS/WSS certificate (nil when both are off).
	Cert *tlscert.Manager
	// certNotice, when set, announces the self-signed certificate this
	// start created (after the listeners are bound).
	certNotice func()
	// flows marks bindings unreachable when their connection closes.
	flows *flows
	// certPoll is how often the certificate files are checked (0: default).
	certPoll time.Duration
}

// writerQueue is the queue length of the journal and call-record writers:
// they flush every 50 ms, so 16,384 holds over 300,000 events/s, and a
// preallocated queue costs its full size in memory from the start.
const writerQueue = 16384

// New opens the data directory, takes its lock, binds the SIP listeners and
// wires the handlers. Errors are one line, fit for the operator.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	target, err := open.Parse(cfg.DB, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("--db: %w", err)
	}
	if target.Kind != open.SQLite {
		// The data directory keeps this machine's files (secret.key, the
		// lock and control socket) whatever the database.
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data directory %s is unusable: %w", cfg.DataDir, err)
		}
	}
	db, err := open.Open(ctx, target)
	if err != nil {
		return nil, err
	}
	s := &Server{Cfg: cfg, Log: log, DB: db, Started: time.Now(), kick: make(chan struct{}, 1)}
	fail := func(err error) (*Server, error) {
		s.closeStorage()
		return nil, err
	}
	if s.lock, err = control.Lock(cfg.DataDir); err != nil {
		return fail(err)
	}
	if s.ctl, err = control.Listen(cfg.DataDir); err != nil {
		return fail(err)
	}
	// The database holds password hashes and the key file signs nonces:
	// nobody but the server's user may read them. Said once the start
	// succeeded (a start that fails prints nothing but its error).
	var tightened []slog.Attr
	var tightenErr error
	if fixed, err := sqlite.Tighten(cfg.DataDir, secret.FileName, control.LockFile); err != nil {
		tightenErr = err
	} else if len(fixed) > 0 {
		list := make([]string, len(fixed))
		for i, f := range fixed {
			list[i] = f.String()
		}
		tightened = append(tightened, slog.String("changed", strings.Join(list, ", ")))
	}
	s.Domain = cfg.Domain
	if s.Domain == "" {
		if v, ok, _ := db.Meta(ctx, "default_domain"); ok {
			s.Domain = v
		} else {
			s.Domain = config.PrimaryIPv4()
		}
	}
	if cfg.Domain == "" {
		warnLoopbackDomain(log, s.Domain)
	}
	if _, err := db.EnsureDomain(ctx, s.Domain); err != nil {
		return fail(err)
	}
	if err := db.SetMeta(ctx, "default_domain", s.Domain); err != nil {
		return fail(err)
	}
	key, origin, err := secret.Load(ctx, cfg.DataDir, db)
	if err != nil {
		return fail(err)
	}
	algs, _ := digest.ParseAlgorithms(cfg.Digest)

	s.Dir = directory.New(db, log)
	if err := s.Dir.Load(ctx); err != nil {
		return fail(err)
	}
	s.Metrics = s.newMetrics()
	s.Journal = journal.NewWriter(s.Metrics.Journal(db), log, journal.Retention{MaxAge: cfg.JournalMaxAge, MaxEvents: cfg.JournalMaxEvents}, writerQueue)
	if !cfg.Journal {
		s.Journal.Disable()
		log.Warn("journal disabled (--journal=false): decisions are not recorded and the doctor cannot explain them")
	}
	s.Calls = calls.NewWriter(s.Metrics.Calls(db), log, calls.Retention{}, writerQueue)
	if s.shared() {
		// Several nodes write call records: each run takes ids of a range
		// of its own.
		first, err := db.ReserveIDs(ctx, callIDRange, callIDRangeSize)
		if err != nil {
			return fail(err)
		}
		if err := s.Calls.InitRange(ctx, first); err != nil {
			return fail(err)
		}
	} else if ended, err := s.Calls.Init(ctx); err != nil {
		return fail(err)
	} else if ended > 0 {
		log.Warn("calls left in progress by the previous run ended as SYSTEM_SHUTDOWN", "calls", ended)
	}
	s.Node = cfg.Node
	if s.Node == "" {
		s.Node = defaultNode()
	}
	s.Loc = location.New(s.Metrics.Bindings(db), log, nil)
	s.Loc.SetNode(s.Node, "") // the Path once the listener is bound, below
	// On a database shared by nodes, a refresh that only moves the expiry
	// is written every half interval, not per REGISTER; on SQLite every
	// refresh is (see README, Durability).
	s.Loc.SetLazyRefresh(s.shared())
	if s.shared() {
		// A database restarting or unreachable: registrations are answered
		// from memory and saved once it is back, up to this many.
		s.Loc.SetBacklog(nodeBacklog)
	}
	n, err := s.Loc.Load(ctx)
	if err != nil {
		return fail(err)
	}
	// Loading the directory and the bindings left their database rows as
	// garbage: hand that memory back before serving.
	debug.FreeOSMemory()
	s.Loc.OnExpire(func(b store.Binding) {
		s.Journal.Record(journal.Event{Kind: journal.KindBinding, Cause: cause.Expired, Extension: b.Extension,
			Domain: b.Domain, Source: b.Source, Transport: b.Transport, UserAgent: b.UserAgent, CallID: b.CallID,
			AuthUser: b.AuthUser, Realm: b.Realm,
			Detail: "contact " + b.Contact + " expired; last registered " + b.RegisteredAt.Format(time.RFC3339)})
	})
	s.Dir.Subscribe(func(e directory.Event) {
		switch e := e.(type) {
		case directory.DomainRenamed:
			n, err := s.Loc.RenameDomain(ctx, e.Old, e.New)
			log.Info("domain renamed", "old", e.Old, "new", e.New, "registrations_moved", n, "error", err)
		case directory.ExtensionRemoved:
			s.Loc.RemoveExtension(ctx, e.Domain, e.Number)
		}
	})

	s.Sec = security.New(security.Config{BanAfter: cfg.BanAfter, BanAfterRegistered: cfg.BanAfterRegistered,
		BanWindow: cfg.BanWindow, BanFor: cfg.BanFor, RateLimit: float64(cfg.RateLimit), RateBurst: cfg.RateBurst},
		security.Deps{Store: security.NewStore(db), Dir: s.Dir, Live: s.Loc.HasSource,
			LiveFrom: s.liveFrom, LiveAt: s.liveAt, Journal: s.Journal, Log: log})
	if err := s.Sec.Load(ctx); err != nil {
		return fail(err)
	}
	s.Sec.Watch(ctx, s.Dir)

	s.Auth = &auth.Authenticator{Dir: s.Dir, Nonces: digest.NewNonces(key, cfg.NonceLifetime, nil), Algorithms: algs,
		AllowRFC2069: cfg.DigestAllowRFC2069}
	s.Reg = registrar.New(registrar.Config{MinExpires: cfg.MinExpires, MaxExpires: cfg.MaxExpires,
		DefaultExpires: cfg.DefaultExpires}, s.Dir, s.Auth, s.Loc, s.Journal, s.Sec, log)

	s.Guard = guard.New(guard.Config{Allow: Allow, StreamTimeout: s.Sec.Config().StreamTimeout},
		guard.Deps{Policy: s.Sec, Registrar: s.Reg, Log: log})
	if cfg.HTTP != "" {
		if err := s.newWeb(cfg); err != nil {
			return fail(err)
		}
		// The console read the day's journal to know which extensions
		// fail: hand that garbage back too.
		debug.FreeOSMemory()
	}
	if err := sipstack.RaiseFileLimit(); err != nil {
		log.Warn("file limit", "error", err)
	}
	perIP := cfg.TCPMaxPerIP
	if perIP == 0 {
		perIP = -1 // no cap
	}
	s.connNotes = journal.NewThrottle(time.Minute, nil)
	s.Trace = trace.New(0, 0)
	s.flows = newFlows()
	streams, err := s.streamOptions(cfg)
	if err != nil {
		return fail(err)
	}
	s.Stack, err = sipstack.Listen(sipstack.Options{Addr: cfg.SIP, UserAgent: "switchboard", Logger: log, Tracer: s.Trace,
		Filter: s.sipFilter, ConnClosed: s.Guard.ConnClosed, Streams: streams, FlowClosed: s.flows.closed,
		TCPIdleTimeout: cfg.TCPIdleTimeout, TCPMaxPerAddress: perIP, TCPMaxConns: cfg.TCPMaxConns,
		AcceptConn: s.Sec.AcceptConn, ConnEvent: s.connEvent,
		// s.Proxy is set below, before Serve starts reading.
		UnhandledResponse: func(r *sip.Response) { s.Proxy.ForwardResponse(r) }})
	if err != nil {
		return fail(err)
	}
	// Logged only now, so a start that fails prints nothing but its error.
	if tightenErr != nil {
		log.Warn("data directory: cannot make it private; fix its permissions (chmod 700 DIR, chmod 600 its files)", "error", tightenErr)
	} else if tightened != nil {
		log.LogAttrs(ctx, slog.LevelWarn, "data directory was readable by other users; made private (it holds password hashes and the signing key)", tightened...)
	}
	if origin == secret.Migrated {
		log.Info("signing key moved from the database to its own file", "path", secret.Path(cfg.DataDir))
	}
	log.Info("bindings restored", "count", n)
	s.checkFileLimit()
	s.Dir.SetLocal(directory.Local{DefaultDomain: s.Domain, Hosts: ownHosts(s.Stack, s.Domain)})
	s.Guard.SetTransport(s.Stack)
	// Handlers go through the Stack, which contains panics (500, log, go on).
	s.Stack.OnRegister(func(req *sip.Request, tx sip.ServerTransaction) {
		s.Reg.Serve(req, sipreply.ForTransaction(s.keepStreamFlow(req, s.keepFlow(req, tx.Respond))))
	})
	s.Stack.OnOptions(s.serveOPTIONS)
	s.Stack.NotAllowed(Allow)
	udpAddr := s.Stack.Listeners[0].Addr
	sipHost, sipPort, _ := net.SplitHostPort(udpAddr)
	port, _ := strconv.Atoi(sipPort)
	if err := s.joinNodes(ctx, udpAddr); err != nil {
		s.Stack.Close()
		return fail(err)
	}
	streamPorts := map[string]int{}
	for _, l := range s.Stack.Listeners[2:] {
		if _, p, err := net.SplitHostPort(l.Addr); err == nil {
			streamPorts[strings.ToUpper(l.Proto)], _ = strconv.Atoi(p)
		}
	}
	if s.Media, s.mediaIP, err = newMediaRelay(cfg, sipHost, func(ms *media.Session) { s.Proxy.MediaTimeout(ms) }, log); err != nil {
		s.Stack.Close()
		return fail(err)
	}
	s.Proxy = proxy.New(proxy.Config{Host: sipHost, AdvertiseHost: config.PrimaryIPv4(), Port: port, UDPLocal: udpAddr, StreamPorts: streamPorts,
		OwnHosts: ownHosts(s.Stack, s.Domain), Key: key, Node: s.Node, MediaRelay: cfg.MediaRelay, MediaTimeout: cfg.MediaTimeout},
		proxy.Deps{Dir: s.Dir, Auth: s.Auth, Loc: flowLocator{s}, Journal: s.Journal, Calls: s.Calls, Client: s.Stack.Client,
			Server: s.Stack.Server, Policy: s.Sec, Log: log, Nodes: s.nodesSeam(), Media: s.Media})
	s.Proxy.Register(s.Stack)
	s.Guard.SetCalls(s.Proxy)
	s.Qualify = qualify.New(qualify.Config{Interval: cfg.QualifyInterval, Host: s.Proxy.Host(), Port: port,
		UDPLocal: udpAddr}, flowLocator{s}, s.Stack.Client, s.Journal, log)
	return s, nil
}

// warnLoopbackDomain warns when the default domain is a loopback address
// (chosen at a first start before the network was up) while the host has
// another: phones on the network cannot use it.
func warnLoopbackDomain(log *slog.Logger, domain string) {
	ip, err := netip.ParseAddr(domain)
	if err != nil || !ip.IsLoopback() {
		return
	}
	if primary := config.PrimaryIPv4(); primary != domain && !strings.HasPrefix(primary, "127.") {
		log.Warn("the default domain is a loopback address: phones on the network address this server as "+primary+
			"; rename it (passwords keep working): switchboard domain rename "+domain+" "+primary, "domain", domain)
	}
}

// ownHosts lists the names and addresses that mean "this server".
func ownHosts(st *sipstack.Stack, domain string) []string {
	hosts := []string{"localhost", domain}
	if hn, err := os.Hostname(); err == nil {
		hosts = append(hosts, hn)
	}
	for _, l := range st.Listeners {
		if h, _, err := net.SplitHostPort(l.Addr); err == nil {
			hosts = append(hosts, h)
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				hosts = append(hosts, ipn.IP.String())
			}
		}
	}
	return hosts
}

// Go starts fn in a goroutine the server waits for on shutdown.
func (s *Server) Go(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// Run serves until ctx ends, then stops gracefully: the listeners first,
// then the writers flush.
func (s *Server) Run(ctx context.Context) error {
	defer s.closeStorage()
	bg, stopBg := context.WithCancel(context.Background())
	if s.Cfg.Pprof != "" {
		s.servePprof(bg)
	}
	s.Go(func() { s.releaseMemory(bg) })
	s.Go(func() { s.Journal.Run(bg) })
	s.Go(func() { s.Loc.Run(bg) })
	s.Go(func() { s.Lease.Run(bg) })
	if s.shared() {
		s.Go(func() { s.Loc.RunRemote(bg, s.DB, location.RemoteConfig{Lease: s.Cfg.NodeLease}) })
	}
	s.Go(func() { s.Sec.Run(bg) })
	s.Go(func() { s.Guard.Run(bg) })
	if err := s.Sec.Publish(ctx); err != nil {
		s.Log.Warn("publish security settings", "error", err)
	}
	s.Go(func() { s.Calls.Run(bg) })
	s.Go(func() { s.Proxy.Run(bg) })
	s.Go(func() {
		// Pings leave from the listening socket only once Serve runs; give
		// up waiting after 2 s (e.g. loopback banned) and ping anyway.
		wctx, cancel := context.WithTimeout(bg, 2*time.Second)
		_ = s.Stack.WaitServing(wctx)
		cancel()
		s.Qualify.Run(bg)
	})
	s.Go(func() { s.runFlows(bg) })
	s.Go(func() { s.runCert(bg) })
	s.Go(func() { s.Dir.Watch(bg, 250*time.Millisecond, s.kick, s.applied.Set) })
	s.listenChanges(bg)
	if s.Web != nil {
		s.Log.Info("web console", "url", s.Web.URL())
		s.Web.Announce()
		s.Go(func() {
			if err := s.Web.Serve(bg); err != nil {
				s.Log.Error("web console stopped", "error", err)
			}
		})
	}
	// The last run's facts stay in the database for commands that read
	// while no server runs (which listeners to check, since when).
	if b, err := json.Marshal(s.Runtime()); err == nil {
		_ = s.DB.SetMeta(ctx, "runtime", string(b))
	}
	s.Go(func() {
		if err := control.Serve(bg, s.ctl, s, s.Log); err != nil {
			s.Log.Error("control socket stopped", "error", err)
		}
	})
	if s.certNotice != nil {
		s.certNotice()
	}
	started := []any{"version", version.Get().String(), "domain", s.Domain, "udp", s.Stack.Listeners[0].Addr,
		"tcp", s.Stack.Listeners[1].Addr}
	for _, l := range s.Stack.Listeners[2:] {
		started = append(started, l.Proto, l.Addr) // tls, ws, wss
	}
	s.Log.Info("switchboard started", append(started, "data", s.Cfg.DataDir, "db", s.DB.Path())...)
	err := s.Stack.Serve(ctx)
	s.Guard.Wait() // listeners are closed: no new stateless requests start
	s.Proxy.Shutdown()
	if s.Media != nil {
		_ = s.Media.Close() // every port released
	}
	stopBg()
	s.wg.Wait()
	s.Log.Info("switchboard stopped")
	return err
}

// Tracer returns the server's SIP capture (control.TraceBackend).
func (s *Server) Tracer() *trace.Tracer { return s.Trace }

// Runtime describes the running server (control.Backend).
func (s *Server) Runtime() control.Runtime {
	rt := control.Runtime{PID: os.Getpid(), StartedAt: s.Started, Version: version.Get().String(), Domain: s.Dir.DefaultDomain()}
	for _, l := range s.Stack.Listeners {
		rt.Listeners = append(rt.Listeners, control.Listener{Proto: l.Proto, Addr: l.Addr})
	}
	rt.Media = &control.MediaRelay{Mode: s.Cfg.MediaRelay, RTPPorts: s.Cfg.RTPPorts}
	if s.Media != nil {
		rt.Media.MediaIP, rt.Media.PortsInUse = s.mediaIP, s.Media.PortsInUse()
	}
	return rt
}

// RemoveRegistrations drops the live registrations that match ("" matches
// any domain, extension or contact) and journals each with who asked
// (control.Backend). Nothing is sent to the phones: each registers again
// at its next refresh.
func (s *Server) RemoveRegistrations(ctx context.Context, domain, ext, contact, by string) ([]store.Binding, error) {
	gone, err := s.Loc.Remove(ctx, domain, ext, contact)
	for _, b := range gone {
		s.Journal.Record(journal.Event{Kind: journal.KindBinding, Cause: cause.RemovedByAdmin, Extension: b.Extension,
			Domain: b.Domain, Source: b.Source, Transport: b.Transport, UserAgent: b.UserAgent, CallID: b.CallID,
			AuthUser: b.AuthUser, Realm: b.Realm,
			Detail: "contact " + b.Contact + " removed by " + by + "; the phone registers again at its next refresh"})
	}
	if err != nil {
		return gone, err
	}
	s.Journal.Flush(ctx)
	return gone, s.Loc.Flush(ctx)
}

// HangupCall ends an answered call (control.Backend): a BYE to both
// parties, the call record ended as hung up by the admin.
func (s *Server) HangupCall(ctx context.Context, callID, by string) (control.HangupResult, error) {
	res, err := s.Proxy.Hangup(ctx, callID, by)
	if errors.Is(err, proxy.ErrNoSuchCall) {
		return control.HangupResult{}, fmt.Errorf("%w: %s", control.ErrNoSuchCall, callID)
	}
	s.Calls.Flush(ctx)
	return control.HangupResult{Caller: res.Caller, Callee: res.Callee}, err
}

// Flush commits the queued binding writes, journal events (held ones too)
// and call records (control.Backend): a command reads after it.
func (s *Server) Flush(ctx context.Context) error {
	s.Journal.Flush(ctx)
	s.Calls.Flush(ctx)
	return s.Loc.Flush(ctx)
}

// Sync makes the directory watcher apply the change feed up to change,
// waiting at most 3 s (control.Backend): a command that edited the
// directory returns once its edit is live.
func (s *Server) Sync(ctx context.Context, change int64) (int64, error) {
	select {
	case s.kick <- struct{}{}:
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return s.applied.Wait(ctx, change)
}

func (s *Server) closeStorage() {
	if s.Web != nil && s.Web.Addr() != "" && s.Stack == nil {
		s.Web.Close() // New failed after binding --http
	}
	if s.DB != nil {
		s.DB.Close()
		s.DB = nil
	}
	if s.ctl != nil {
		s.ctl.Close()
		s.ctl = nil
	}
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

// serveOPTIONS answers OPTIONS addressed to the server (keepalives,
// monitoring): 200 with Allow.
func (s *Server) serveOPTIONS(req *sip.Request, tx sip.ServerTransaction) {
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Allow", Allow))
	res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	res.AppendHeader(sip.NewHeader("Supported", "path, replaces"))
	res.AppendHeader(sip.NewHeader("Server", "switchboard"))
	if err := tx.Respond(res); err != nil && !errors.Is(err, context.Canceled) {
		s.Log.Debug("options: respond", "error", err)
	}
}

// newMediaRelay creates the media relay of --media-relay auto or always
// (nil for never): ports from --rtp-ports, bound on the --sip host when it
// is a specific address (else on every address), advertising --media-ip
// (default: that host, else the primary IPv4).
func newMediaRelay(cfg config.Config, sipHost string, onTimeout func(*media.Session), log *slog.Logger) (*media.Relay, string, error) {
	if cfg.MediaRelay == "never" {
		return nil, "", nil
	}
	low, high, err := config.ParsePortRange(cfg.RTPPorts)
	if err != nil {
		return nil, "", fmt.Errorf("--rtp-ports: %w", err)
	}
	var bind netip.Addr
	if ip, err := netip.ParseAddr(sipHost); err == nil && !ip.IsUnspecified() {
		bind = ip.Unmap()
	}
	adv := bind
	if cfg.MediaIP != "" {
		adv, err = netip.ParseAddr(cfg.MediaIP)
		if err != nil {
			return nil, "", fmt.Errorf("--media-ip %q: %w", cfg.MediaIP, err)
		}
	} else if !adv.IsValid() {
		adv, _ = netip.ParseAddr(config.PrimaryIPv4())
	}
	r, err := media.New(media.Config{BindIP: bind, AdvertiseIP: adv.Unmap(), PortMin: low, PortMax: high,
		Timeout: cfg.MediaTimeout, Log: log, OnTimeout: onTimeout})
	if err != nil {
		return nil, "", fmt.Errorf("media relay: %w", err)
	}
	log.Info("media relay", "mode", cfg.MediaRelay, "ports", cfg.RTPPorts, "media_ip", adv.String())
	return r, adv.Unmap().String(), nil
}
