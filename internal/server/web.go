package server

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/metrics"
	"github.com/switchboard-pbx/switchboard/internal/web"
)

// newWeb builds the web console from the server's own services and binds
// --http, so that a taken port or bad TLS files stop the start.
func (s *Server) newWeb(cfg config.Config) error {
	w, err := web.New(web.Config{Addr: cfg.HTTP, CertFile: cfg.HTTPCert, KeyFile: cfg.HTTPKey, DataDir: cfg.DataDir,
		OpenMetrics: config.HTTPLoopback(cfg.HTTP)},
		web.Deps{DB: s.DB, Dir: s.Dir, Loc: s.Loc, Journal: s.Journal, Calls: s.Calls, Sec: s.Sec, Trace: s.Trace,
			Backend: s, Ready: s.ready, Metrics: s.Metrics.Handler(), Log: s.Log, Stderr: os.Stderr})
	if err != nil {
		return err
	}
	if err := w.Listen(); err != nil {
		return err
	}
	s.Web = w
	return nil
}

// ready reports whether the server serves: SIP listeners bound and the
// database writable (a write that changes nothing).
func (s *Server) ready(ctx context.Context) error {
	if s.Stack == nil || len(s.Stack.Listeners) == 0 {
		return errors.New("SIP listeners not bound")
	}
	// A write that changes nothing: the default domain written back.
	dom, ok, err := s.DB.Meta(ctx, "default_domain")
	if err == nil && ok {
		err = s.DB.SetMeta(ctx, "default_domain", dom)
	}
	if err != nil {
		return fmt.Errorf("database not writable: %w", err)
	}
	return nil
}

// newMetrics makes the metric registry; its gauges read the services
// (made after it) at scrape time.
func (s *Server) newMetrics() *metrics.Metrics {
	return metrics.New(metrics.Sources{
		RegistrationsByDomain: func() map[string]int { return s.Loc.CountByDomain() },
		ActiveBans:            func() int { return len(s.Sec.Guard().List()) },
		ActiveCalls: func() int {
			if s.Proxy == nil {
				return 0
			}
			return s.Proxy.ActiveDialogs()
		},
		Extensions: func() int { return s.Dir.Count() },
		InHand:     func() int { return s.Guard.Stateless().InHand() },
		Shed: func() int64 {
			shed, _ := s.Guard.Stateless().Stats()
			return shed
		},
		Absorbed: func() int64 {
			_, absorbed := s.Guard.Stateless().Stats()
			return absorbed
		},
		Stale: func() int64 {
			if s.Stack == nil {
				return 0
			}
			return s.Stack.StaleDropped()
		},
		JournalQueue:   func() int { return s.Journal.Queued() },
		CallsQueue:     func() int { return s.Calls.Queued() },
		JournalDropped: func() int64 { return s.Journal.Dropped() },
		CallsDropped:   func() int64 { return s.Calls.Dropped() },
		BannedDropped:  func() int64 { return s.Sec.Stats().BannedDropped.Load() },
		RateLimited:    func() int64 { return s.Sec.Stats().RateLimited.Load() },
		Scanners:       func() int64 { return s.Sec.Stats().Scanners.Load() },
		Malformed:      func() int64 { return s.Sec.Stats().Malformed.Load() },
		BansImposed:    func() int64 { return s.Sec.Stats().Bans.Load() },
	})
}
