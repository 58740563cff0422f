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
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/auth"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/digest"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/location"
	"github.com/switchboard-pbx/switchboard/internal/proxy"
	"github.com/switchboard-pbx/switchboard/internal/qualify"
	"github.com/switchboard-pbx/switchboard/internal/registrar"
	"github.com/switchboard-pbx/switchboard/internal/secret"
	"github.com/switchboard-pbx/switchboard/internal/security"
	"github.com/switchboard-pbx/switchboard/internal/sipstack"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

// Version is the server version, set at build time with -ldflags.
var Version = "0.1.0-dev"

// Allow lists the methods the server answers.
const Allow = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, REFER, NOTIFY, MESSAGE, PRACK"

// Runtime is what a running server publishes in the database for `status`.
type Runtime struct {
	PID       int                 `json:"pid"`
	StartedAt time.Time           `json:"started_at"`
	Version   string              `json:"version"`
	Domain    string              `json:"domain"`
	Listeners []sipstack.Listener `json:"listeners"`
}

// Server is a running switchboard.
type Server struct {
	Cfg     config.Config
	Log     *slog.Logger
	DB      *sqlite.DB
	Dir     *directory.Cache
	Loc     *location.Table
	Journal *journal.Writer
	Stack   *sipstack.Stack
	Auth    *auth.Authenticator
	Reg     *registrar.Registrar
	// Sec is access control: ACLs, bans, flood protection, the packet filter.
	Sec *security.Service
	// Calls records call attempts; Proxy routes calls; Qualify pings bindings.
	Calls   *calls.Writer
	Proxy   *proxy.Proxy
	Qualify *qualify.Pinger
	Domain  string
	Started time.Time

	lock      *os.File
	wg        sync.WaitGroup
	stateless *stateless
}

// writerQueue is the queue length of the journal and call-record writers:
// they flush every 50 ms, so 16,384 holds over 300,000 events/s, and a
// preallocated queue costs its full size in memory from the start.
const writerQueue = 16384

// LockFile is the file a running server holds locked in the data directory.
const LockFile = "switchboard.lock"

// New opens the data directory, takes its lock, binds the SIP listeners and
// wires the handlers. Errors are one line, fit for the operator.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	db, err := sqlite.Open(ctx, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Server{Cfg: cfg, Log: log, DB: db, Started: time.Now()}
	fail := func(err error) (*Server, error) {
		s.closeStorage()
		return nil, err
	}
	if s.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return fail(err)
	}
	// The database holds password hashes and the key file signs nonces:
	// nobody but the server's user may read them. Said once the start
	// succeeded (a start that fails prints nothing but its error).
	var tightened []slog.Attr
	var tightenErr error
	if fixed, err := sqlite.Tighten(cfg.DataDir, secret.FileName, LockFile); err != nil {
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
	s.Journal = journal.NewWriter(db.SQL(), log, journal.Retention{MaxAge: cfg.JournalMaxAge, MaxEvents: cfg.JournalMaxEvents}, writerQueue)
	if !cfg.Journal {
		s.Journal.Disable()
		log.Warn("journal disabled (--journal=false): decisions are not recorded and the doctor cannot explain them")
	}
	s.Calls = calls.NewWriter(db.SQL(), log, calls.Retention{}, writerQueue)
	if ended, err := s.Calls.Init(ctx); err != nil {
		return fail(err)
	} else if ended > 0 {
		log.Warn("calls left in progress by the previous run ended as SYSTEM_SHUTDOWN", "calls", ended)
	}
	s.Loc = location.New(db, log, nil)
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
	s.Dir.OnChange("ext-removed", func(key string) {
		if d, n, ok := cutSlash(key); ok {
			s.Loc.RemoveExtension(ctx, d, n)
		}
	})

	s.Sec = security.New(security.Config{BanAfter: cfg.BanAfter, BanWindow: cfg.BanWindow, BanFor: cfg.BanFor,
		RateLimit: float64(cfg.RateLimit), RateBurst: cfg.RateBurst, Allow: Allow},
		security.Deps{Store: security.NewStore(db.SQL()), Dir: s.Dir, Live: s.Loc.HasSource, Journal: s.Journal, Log: log})
	if err := s.Sec.Load(ctx); err != nil {
		return fail(err)
	}
	s.Sec.Watch(ctx, s.Dir)

	s.Auth = &auth.Authenticator{Dir: s.Dir, Nonces: digest.NewNonces(key, cfg.NonceLifetime, nil), Algorithms: algs}
	s.Reg = registrar.New(registrar.Config{MinExpires: cfg.MinExpires, MaxExpires: cfg.MaxExpires,
		DefaultExpires: cfg.DefaultExpires}, s.Dir, s.Auth, s.Loc, s.Journal, s.Sec, log)

	s.stateless = newStateless(s)
	// Requests sipgo cannot match to a transaction (RFC 2543 ones without
	// a From tag) may still be answered without one.
	s.Sec.SetStateless(s.stateless.intercept)
	s.Stack, err = sipstack.Listen(sipstack.Options{Addr: cfg.SIP, UserAgent: "switchboard", Logger: log,
		Filter: s.Sec.Filter, ConnClosed: s.Sec.ConnClosed, Intercept: s.stateless.intercept,
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
	s.Dir.SetLocal(directory.Local{DefaultDomain: s.Domain, Hosts: ownHosts(s.Stack, s.Domain)})
	s.Sec.SetTransport(s.Stack)
	// Handlers go through the Stack, which contains panics (500, log, go on).
	s.Stack.OnRegister(s.Reg.ServeREGISTER)
	s.Stack.OnOptions(s.serveOPTIONS)
	s.Stack.NotAllowed(Allow)
	udpAddr := s.Stack.Listeners[0].Addr
	sipHost, sipPort, _ := net.SplitHostPort(udpAddr)
	port, _ := strconv.Atoi(sipPort)
	s.Proxy = proxy.New(proxy.Config{Host: sipHost, AdvertiseHost: config.PrimaryIPv4(), Port: port, UDPLocal: udpAddr,
		OwnHosts: ownHosts(s.Stack, s.Domain), Key: key},
		proxy.Deps{Dir: s.Dir, Auth: s.Auth, Loc: s.Loc, Journal: s.Journal, Calls: s.Calls, Client: s.Stack.Client,
			Server: s.Stack.Server, Policy: s.Sec, Log: log})
	s.Proxy.Register(s.Stack)
	s.Qualify = qualify.New(qualify.Config{Interval: cfg.QualifyInterval, Host: s.Proxy.Host(), Port: port,
		UDPLocal: udpAddr}, s.Loc, s.Stack.Client, s.Journal, log)
	return s, nil
}

func cutSlash(key string) (string, string, bool) {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '/' {
			return key[:i], key[i+1:], true
		}
	}
	return "", "", false
}

func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory %s is unusable: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("another switchboard serve (pid %s) is already using data directory %s; stop it or pass another --data",
			string(trimSpace(b)), dir)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())), 0)
	return f, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// Running reports whether a server holds the data directory's lock, and its pid.
func Running(dir string) (bool, int) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false, 0
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		pid, _ := strconv.Atoi(string(trimSpace(b)))
		return true, pid
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, 0
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
	s.Go(func() { s.Sec.Run(bg) })
	if err := s.Sec.Publish(ctx); err != nil {
		s.Log.Warn("publish security settings", "error", err)
	}
	s.Go(func() { s.Calls.Run(bg) })
	s.Go(func() { s.Proxy.Run(bg) })
	s.Go(func() { s.Qualify.Run(bg) })
	kick := make(chan struct{}, 1)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	s.Go(func() {
		for {
			select {
			case <-bg.Done():
				return
			case <-sigs:
				// The CLI asks (SIGUSR1) before it reads or after it writes:
				// commit the queued binding writes, journal events (held
				// ones too) and call records, say so, and re-read the change
				// feed at once.
				s.Journal.Flush(bg)
				s.Calls.Flush(bg)
				if err := s.Loc.Flush(bg); err == nil {
					_ = s.DB.SetMeta(bg, "flushed_at", strconv.FormatInt(time.Now().UnixNano(), 10))
				}
				select {
				case kick <- struct{}{}:
				default:
				}
			}
		}
	})
	s.Go(func() {
		s.Dir.Watch(bg, 250*time.Millisecond, kick, func(seq int64) {
			if err := s.DB.SetMeta(bg, "applied_seq", strconv.FormatInt(seq, 10)); err != nil && bg.Err() == nil {
				s.Log.Warn("record applied change", "error", err)
			}
		})
	})
	rt := Runtime{PID: os.Getpid(), StartedAt: s.Started, Version: Version, Domain: s.Domain, Listeners: s.Stack.Listeners}
	if b, err := json.Marshal(rt); err == nil {
		_ = s.DB.SetMeta(ctx, "runtime", string(b))
	}
	s.Log.Info("switchboard started", "version", Version, "domain", s.Domain, "udp", s.Stack.Listeners[0].Addr,
		"tcp", s.Stack.Listeners[1].Addr, "data", s.Cfg.DataDir)
	err := s.Stack.Serve(ctx)
	s.stateless.wg.Wait() // listeners are closed: no new ones start
	s.Proxy.Shutdown()
	stopBg()
	s.wg.Wait()
	s.Log.Info("switchboard stopped")
	return err
}

func (s *Server) closeStorage() {
	if s.DB != nil {
		s.DB.Close()
		s.DB = nil
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
