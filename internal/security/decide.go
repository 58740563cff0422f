package security

import (
	"net/netip"
	"time"
	"unsafe"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/guard"
	"github.com/switchboard-pbx/switchboard/internal/sipstack"
)

// Service is the packet guard's Policy: it decides, the guard acts.
var _ guard.Policy = (*Service)(nil)

// Banned implements guard.Policy: it reports whether ip is banned, and
// then counts and journals the dropped data (at most once per address
// per NoteEvery).
func (s *Service) Banned(ip netip.Addr, ap netip.AddrPort, transport string, data []byte) bool {
	if !s.guard.Banned(ip) {
		return false
	}
	s.stats.BannedDropped.Add(1)
	s.noteBanned(ip, ap, transport, data)
	return true
}

// RateLimited implements guard.Policy: it counts one message against ip's
// token bucket and, over the limit, counts and journals the drop.
func (s *Service) RateLimited(ip netip.Addr, ap netip.AddrPort, transport string, msg []byte) bool {
	if s.limiter.Allow(ip) {
		return false
	}
	s.stats.RateLimited.Add(1)
	s.note(ip, ap, transport, cause.RateLimited, 0, msg, "over the rate limit; messages dropped")
	return true
}

// Scanner implements guard.Policy: a known scanner user agent (see
// acl.IsScanner) gets its message dropped and its address banned at once
// (unless exempt).
func (s *Service) Scanner(ip netip.Addr, ap netip.AddrPort, transport string, msg, ua []byte) bool {
	if len(ua) == 0 || !acl.IsScanner(unsafe.String(&ua[0], len(ua))) {
		return false
	}
	s.scanner(ip, ap, transport, msg, ua)
	return true
}

// Refused implements guard.Policy: it counts a malformed message and
// journals it (cause bad_request), at most once per address per NoteEvery.
func (s *Service) Refused(ip netip.Addr, ap netip.AddrPort, transport string, status int, head []byte, detail string) {
	s.stats.Malformed.Add(1)
	s.note(ip, ap, transport, cause.BadRequest, status, head, detail)
}

// scanner drops a message from a scanner user agent and bans its address
// at once (unless exempt): no phone sends such a user agent, and scanners
// give up after one unanswered probe, so counting to BanAfter would never
// ban them.
func (s *Service) scanner(ip netip.Addr, ap netip.AddrPort, transport string, msg, ua []byte) {
	s.stats.Scanners.Add(1)
	reason := "scanner user agent " + guard.Printable(ua)
	s.note(ip, ap, transport, cause.Scanner, 0, msg, reason+"; dropped")
	if s.exempt(ip) || s.guard.Banned(ip) {
		return
	}
	now := s.now()
	b := acl.Ban{IP: ip, Reason: reason, Failures: 1, Since: now, Until: now.Add(s.cfg.BanFor)}
	s.guard.Add(b)
	s.banned(b, transport)
}

func (s *Service) noteBanned(ip netip.Addr, ap netip.AddrPort, transport string, data []byte) {
	now := s.now()
	if !s.notes.ok(ip, cause.IPBanned, now, s.cfg.NoteEvery) {
		return
	}
	detail := "dropped: the address is banned"
	for _, b := range s.guard.List() {
		if b.IP == ip {
			if b.Until.IsZero() {
				detail += " permanently"
			} else {
				detail += " until " + b.Until.Format(time.RFC3339)
			}
			if b.Reason != "" {
				detail += " (" + b.Reason + ")"
			}
			break
		}
	}
	ev := eventFor(now, ap, transport, cause.IPBanned, detail)
	s.describe(&ev, data)
	s.d.Journal.Record(ev)
}

// AcceptConn decides about a new TCP connection before anything is read
// from it (the sipstack calls it at accept): a banned address is refused,
// and so is one over its rate limit (each connection counts as one
// message against it); trusted networks are exempt from both and from
// the per-address connection cap. Refusals are journaled at most once a
// minute per address and cause.
func (s *Service) AcceptConn(remote netip.AddrPort) sipstack.ConnVerdict {
	ip := remote.Addr().Unmap()
	if s.trusted(ip) {
		return sipstack.ConnTrusted
	}
	if s.guard.Banned(ip) {
		s.stats.BannedDropped.Add(1)
		s.noteBanned(ip, remote, "TCP", nil)
		return sipstack.ConnRefuse
	}
	if !s.limiter.Allow(ip) {
		s.stats.RateLimited.Add(1)
		s.note(ip, remote, "TCP", cause.RateLimited, 0, nil, "over the rate limit; TCP connection closed at accept")
		return sipstack.ConnRefuse
	}
	return sipstack.ConnAllow
}
