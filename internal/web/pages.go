package web

import (
	"net/http"
)

// pages registers the console's pages. This is the placeholder the pages
// work replaces: one overview page at /.
func (s *Server) pages() {
	s.Handle("GET /{$}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, _ := SessionFrom(r.Context())
		s.render(w, http.StatusOK, "placeholder", sess)
	}))
}
