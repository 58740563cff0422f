package server

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/web"
)

// newWeb builds the web console from the server's own services and binds
// --http, so that a taken port or bad TLS files stop the start.
func (s *Server) newWeb(cfg config.Config) error {
	w, err := web.New(web.Config{Addr: cfg.HTTP, CertFile: cfg.HTTPCert, KeyFile: cfg.HTTPKey, DataDir: cfg.DataDir},
		web.Deps{DB: s.DB, Dir: s.Dir, Loc: s.Loc, Journal: s.Journal, Calls: s.Calls, Sec: s.Sec, Trace: s.Trace,
			Backend: s, Ready: s.ready, Log: s.Log, Stderr: os.Stderr})
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
	if _, err := s.DB.SQL().ExecContext(ctx, "UPDATE meta SET value = value WHERE key = 'default_domain'"); err != nil {
		return fmt.Errorf("database not writable: %w", err)
	}
	return nil
}
