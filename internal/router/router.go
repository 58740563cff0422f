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
//     call_timeout (DefaultTimeout when unset).
//
// Example:
//
//	r := router.Router{Dir: dirCache, Loc: locTable}
//	d := r.Route(router.Request{CallerDomain: "pbx.example", Host: "pbx.example", User: "2002"})
//	if d.Cause != "" { /* answer cause.AnswerFor(d.Cause) */ }
package router

import (
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// DefaultTimeout is the ring timeout when an extension has none configured.
const DefaultTimeout = 30 * time.Second

// Directory looks up extensions and domains (directory.Cache satisfies it).
type Directory interface {
	// Lookup returns an extension; the pointer is read-only.
	Lookup(domain, number string) (*store.Extension, bool)
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
	Callee *store.Extension
	// Targets are the callee's bindings, oldest registration first.
	Targets []store.Binding
	// Timeout is how long the callee may ring before NO_ANSWER.
	Timeout time.Duration
	// Cause refuses the call when not empty; see cause.AnswerFor.
	Cause cause.Code
	// Detail explains the decision for the journal.
	Detail string
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
	if !ext.Enabled {
		d.Cause, d.Detail = cause.UnallocatedNumber, "extension "+req.User+"@"+req.CallerDomain+" is disabled"
		return d
	}
	d.Timeout = r.DefaultTimeout
	if d.Timeout <= 0 {
		d.Timeout = DefaultTimeout
	}
	if ext.CallTimeout > 0 {
		d.Timeout = time.Duration(ext.CallTimeout) * time.Second
	}
	d.Targets = r.Loc.Lookup(req.CallerDomain, req.User)
	if len(d.Targets) == 0 {
		d.Cause, d.Detail = cause.UserNotRegistered, "extension "+req.User+"@"+req.CallerDomain+
			" exists but has no registration (ask why: switchboard doctor "+req.User+")"
		return d
	}
	return d
}
