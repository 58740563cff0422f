package web

import (
	"context"
	"net/http"
	"path/filepath"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/console"
	"github.com/switchboard-pbx/switchboard/internal/version"
)

// pages registers the console's pages (package console) behind the login.
// A server built without the SIP side (some tests: no directory, table or
// backend) gets a placeholder page at / instead.
func (s *Server) pages() {
	d := s.deps
	if d.Dir == nil || d.Loc == nil || d.Backend == nil {
		s.Handle("GET /{$}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sess, _ := SessionFrom(r.Context())
			s.render(w, http.StatusOK, "placeholder", sess)
		}))
		return
	}
	// Runtime is not asked here: the SIP listeners are bound after the
	// HTTP side is built.
	c, err := console.New(console.Deps{DB: d.DB, Dir: d.Dir, Loc: d.Loc, Journal: d.Journal, Server: d.Backend,
		Log: s.log, Version: version.Get().String(), Now: s.now,
		Admin: AdminName, Admins: consoleAdmins{s}, Import: console.ImportWithCLI(filepath.Dir(d.DB.Path())),
		Audit: func(r *http.Request, c cause.Code, detail string) { s.Audit(r, c, detail) }})
	if err != nil {
		s.log.Error("web: the console's pages cannot be built", "error", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	c.Seed(ctx)
	cancel()
	c.Register(s.Handle)
}
