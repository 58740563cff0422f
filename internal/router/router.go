// Package router decides where a call goes. It is pure logic: given the
// caller's domain, the dialled user and host, the directory and the location
// table, Route returns either the bindings to ring (every registered contact
// of the callee, to be forked in parallel) or the cause that refuses the call.
//
// Rules, in order:
//
//   - The dialled host must be a domain we serve and must be the caller's own
//     domain: calls between tenants and to outside destinations are not
//     routed (UNALLOCATED_NUMBER, 404). A host that names this server (its
//     IP or hostname) means the default domain.
//   - The dialled user must be an extension of that domain and be enabled;
//     a missing or disabled extension is UNALLOCATED_NUMBER (404), as in
//     FusionPBX where the dialplan finds no route.
//   - An extension without a live registration is USER_NOT_REGISTERED (480).
//   - Otherwise every binding is a target; the ring timeout is the callee's
//     call_timeout (DefaultTimeout when unset). Destination says at which
//     address each binding is reached (NAT-aware).
//
// Example:
//
//	r := router.Router{Dir: dirCache, Loc: locTable}
//	d := r.Route(router.Request{CallerDomain: "pbx.example", Host: "pbx.example", User: "2002"})
//	if d.Cause != "" { /* answer cause.AnswerFor(d.Cause) */ }
package router

import (
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// DefaultTimeout is the ring timeout when an extension has none configured.
const DefaultTimeout = 30 * time.Second

// Directory looks up extensions and domains (directory.Cache satisfies it).
type Directory interface {
	// Lookup returns an extension (a read-only entry).
	Lookup(domain, number string) (*directory.Entry, bool)
	// Resolve maps a request host to the domain it belongs to; served is
	// false for a domain we do not serve (unknown or disabled).
	Resolve(host string) (domain string, served bool)
}

// Locator returns the live bindings of an extension (location.Table
// satisfies it).
type Locator interface {
	Lookup(domain, ext string) []store.Binding
}

// Router routes calls. The zero value is not usable: set Dir and Loc.
type Router struct {
	Dir Directory
	Loc Locator
	// DefaultTimeout overrides the package DefaultTimeout when > 0.
	DefaultTimeout time.Duration
}

// Request is what Route needs to know about a call.
type Request struct {
	// CallerDomain is the authenticated caller's domain.
	CallerDomain string
	// Host is the Request-URI host the caller dialled.
	Host string
	// User is the Request-URI user part (the dialled number).
	User string
}

// Decision is the outcome of Route: Cause == "" means ring Targets.
type Decision struct {
	// Domain is the domain the call was routed in (the caller's).
	Domain string
	// Callee is the dialled extension when it exists (read-only).
	Callee *directory.Entry
	// Targets are the callee's bindings, oldest registration first.
	Targets []store.Binding
	// Timeout is how long the callee may ring before NO_ANSWER.
	Timeout time.Duration
	// Cause refuses the call when not empty; see cause.AnswerFor.
	Cause cause.Code
	// Detail explains the decision for the journal.
	Detail string
}

// Destination returns the address (ip:port) requests for a binding are sent
// to, and whether the phone was judged to be behind NAT.
//
// Over TCP (and other stream transports) it is always the source of the
// REGISTER: the phone's open connection. Over UDP it is the source too when
// the contact's host is not the IP the REGISTER came from (a private
// address behind NAT, a name such as WebRTC's *.invalid) — the pinhole the
// phone keeps open — and otherwise the contact's own host and port, which
// the phone chose (it may listen on another port than it sends from), as
// FreeSWITCH does when it detects no NAT.
func Destination(b store.Binding) (addr string, nat bool) {
	if b.Source == "" {
		return contactAddr(b.Contact), false
	}
	if !strings.EqualFold(b.Transport, "UDP") && b.Transport != "" {
		return b.Source, false
	}
	host, _, err := net.SplitHostPort(b.Source)
	if err != nil {
		return b.Source, false
	}
	caddr := contactAddr(b.Contact)
	chost, _, err := net.SplitHostPort(caddr)
	if err != nil {
		return b.Source, true
	}
	src, err1 := netip.ParseAddr(host)
	ctc, err2 := netip.ParseAddr(chost)
	if err1 != nil || err2 != nil || src.Unmap() != ctc.Unmap() {
		return b.Source, caddr != b.Source
	}
	return caddr, false
}

// contactAddr returns host:port of a SIP contact URI (port 5060, or 5061
// for sips, when absent); "" when it cannot be parsed.
func contactAddr(contact string) string {
	s := contact
	if i := strings.IndexByte(s, ':'); i >= 0 {
		scheme := strings.ToLower(s[:i])
		if scheme != "sip" && scheme != "sips" {
			return ""
		}
		s = s[i+1:]
		port := "5060"
		if scheme == "sips" {
			port = "5061"
		}
		if at := strings.LastIndexByte(s, '@'); at >= 0 {
			s = s[at+1:]
		}
		if end := strings.IndexAny(s, ";?>"); end >= 0 {
			s = s[:end]
		}
		if strings.HasPrefix(s, "[") {
			if end := strings.IndexByte(s, ']'); end >= 0 {
				if rest := s[end+1:]; strings.HasPrefix(rest, ":") {
					return s
				}
				return s + ":" + port
			}
			return ""
		}
		if strings.Count(s, ":") == 1 {
			return s
		}
		if strings.Contains(s, ":") {
			return ""
		}
		return net.JoinHostPort(s, port)
	}
	return ""
}

// Route decides where a call goes. It never blocks and never touches the
// database.
func (r *Router) Route(req Request) Decision {
	d := Decision{Domain: req.CallerDomain}
	if req.User == "" {
		d.Cause, d.Detail = cause.UnallocatedNumber, "the request URI has no user part: dial an extension number"
		return d
	}
	host := req.Host
	if host == "" {
		host = req.CallerDomain
	}
	dom, served := r.Dir.Resolve(host)
	if !served {
		d.Cause, d.Detail = cause.UnallocatedNumber, "no route to "+req.User+"@"+host+
			": "+host+" is not a domain served here (calls to outside destinations are not routed)"
		return d
	}
	if !strings.EqualFold(dom, req.CallerDomain) {
		d.Cause, d.Detail = cause.UnallocatedNumber, "no route to "+req.User+"@"+dom+
			" from domain "+req.CallerDomain+": calls between domains are not routed"
		return d
	}
	ext, ok := r.Dir.Lookup(req.CallerDomain, req.User)
	if !ok {
		d.Cause, d.Detail = cause.UnallocatedNumber, "no extension "+req.User+" in "+req.CallerDomain
		return d
	}
	d.Callee = ext
	if !ext.Enabled() {
		d.Cause, d.Detail = cause.UnallocatedNumber, "extension "+req.User+"@"+req.CallerDomain+" is disabled"
		return d
	}
	d.Timeout = r.DefaultTimeout
	if d.Timeout <= 0 {
		d.Timeout = DefaultTimeout
	}
	if ext.CallTimeout() > 0 {
		d.Timeout = time.Duration(ext.CallTimeout()) * time.Second
	}
	d.Targets = r.Loc.Lookup(req.CallerDomain, req.User)
	if len(d.Targets) == 0 {
		d.Cause, d.Detail = cause.UserNotRegistered, "extension "+req.User+"@"+req.CallerDomain+
			" exists but has no registration (ask why: switchboard doctor "+req.User+")"
		return d
	}
	return d
}
