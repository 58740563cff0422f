package server

import (
	"net/netip"
	"slices"

	"github.com/switchboard-pbx/switchboard/internal/registrar"
)

// liveFrom reports whether number@domain has a live binding registered
// from ip: that extension's failed authentications from there are its own
// phone's, which never count toward a ban.
func (s *Server) liveFrom(ip netip.Addr, domain, number string) bool {
	ip = ip.Unmap()
	for _, b := range s.Loc.Lookup(domain, number) {
		if registrar.SourceAddr(b.Source) == ip {
			return true
		}
	}
	return false
}

// liveAt lists, sorted, the extensions (number, or number@domain outside
// the default domain) with a live binding registered from ip. It walks the
// whole table: called only when an address with registrations is banned.
func (s *Server) liveAt(ip netip.Addr) []string {
	ip = ip.Unmap()
	var out []string
	for _, b := range s.Loc.All() {
		if registrar.SourceAddr(b.Source) != ip {
			continue
		}
		name := b.Extension
		if b.Domain != s.Domain {
			name += "@" + b.Domain
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
