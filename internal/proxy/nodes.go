package proxy

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/cluster"
	"github.com/switchboard-pbx/switchboard/internal/router"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Nodes is the seam to the other nodes sharing the database (a
// *cluster.Signer satisfies it); nil in Deps means a single node.
type Nodes interface {
	// Sign returns the cluster.Header value for a forwarded INVITE (its
	// Call-ID, Request-URI and From header value).
	Sign(callID, ruri, from, domain string) string
	// Verify checks a cluster.Header value and returns the signing node
	// and the call's domain.
	Verify(ctx context.Context, value, callID, ruri, from string) (node, domain string, err error)
}

var _ Nodes = (*cluster.Signer)(nil)

// LocalLocator is the part of the location table that answers with this
// node's own bindings only (location.Table satisfies it).
type LocalLocator interface {
	LookupLocal(domain, ext string) []store.Binding
}

// remote reports whether b is owned by another node, and the address
// (host:port) of that node's Path.
func (p *Proxy) remote(b store.Binding) (addr string, ok bool) {
	if p.d.Nodes == nil || b.Node == "" || b.Node == p.cfg.Node || b.Path == "" {
		return "", false
	}
	return pathAddr(b.Path)
}

// pathAddr returns host:port of a Path value "<sip:host:port;lr>".
func pathAddr(path string) (string, bool) {
	var u sip.Uri
	if err := sip.ParseUri(strings.Trim(path, "<> "), &u); err != nil || u.Host == "" {
		return "", false
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return net.JoinHostPort(strings.Trim(u.Host, "[]"), fmt.Sprint(port)), true
}

// nodeCall reports whether req carries a cluster.Header that verifies: an
// INVITE another node forwarded to this one for a phone registered here.
// A header that does not verify is removed (the call then takes the
// ordinary path and must authenticate).
func (p *Proxy) nodeCall(req *sip.Request) (node, domain string, ok bool) {
	h := req.GetHeader(cluster.Header)
	if h == nil {
		return "", "", false
	}
	if p.d.Nodes != nil && req.CallID() != nil {
		node, domain, err := p.d.Nodes.Verify(context.Background(), h.Value(), req.CallID().Value(), req.Recipient.String(),
			fromValue(req))
		if err == nil {
			return node, domain, true
		}
		p.log.Debug("proxy: node header refused", "source", req.Source(), "error", err)
	}
	for req.RemoveHeader(cluster.Header) {
	}
	return "", "", false
}

// serveNodeCall rings this node's binding of the contact the Request-URI
// names, for an INVITE node forwarded (verified by nodeCall): no
// authentication (node did it), no inbound ACL (nodes are trusted), the
// callee checked against the directory as for any call.
func (p *Proxy) serveNodeCall(req *sip.Request, tx sip.ServerTransaction, node, domain string) {
	ev := callEvent(req)
	ev.Domain = domain
	callee := req.To().Address.User
	ev.Extension = callee
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		p.refuse(req, tx, &ev, cause.TooManyHops, "Max-Forwards reached 0 (forwarded by node "+node+")")
		return
	}
	if p.looped(req) {
		p.refuse(req, tx, &ev, cause.LoopDetected, "the INVITE forwarded by node "+node+" already passed through this server")
		return
	}
	if p.dialogs.full() {
		p.refuse(req, tx, &ev, cause.TemporaryFailure,
			fmt.Sprintf("too many calls in progress: %d dialogs followed (the maximum)", p.cfg.MaxDialogs))
		return
	}
	for req.RemoveHeader(cluster.Header) {
	}
	d := p.rr.Route(router.Request{CallerDomain: domain, Host: domain, User: callee})
	if d.Cause == "" || d.Cause == cause.UserNotRegistered {
		d.Cause, d.Detail, d.Targets = "", "", nil
		want := req.Recipient.String()
		var own []store.Binding
		if l, ok := p.d.Loc.(LocalLocator); ok {
			own = l.LookupLocal(domain, callee)
		}
		for _, b := range own {
			var u sip.Uri
			if sip.ParseUri(b.Contact, &u) == nil && u.String() == want {
				d.Targets = append(d.Targets, b)
			}
		}
		if len(d.Targets) == 0 {
			d.Cause, d.Detail = cause.UserNotRegistered, "node "+node+" forwarded a call for "+callee+"@"+domain+
				" to contact "+want+", which is not registered on this node (any more)"
		}
	}
	trying := sip.NewResponseFromRequest(req, 100, "Trying", nil)
	p.respond(tx, trying)
	now := p.now()
	rec := calls.Record{ID: p.d.Calls.NextID(), CallID: ev.CallID, From: req.From().Address.User, To: callee,
		Domain: domain, Source: ev.Source, Transport: ev.Transport, UserAgent: ev.UserAgent, Start: now,
		Detail: "forwarded by node " + node}
	if d.Cause != "" {
		status := p.answerCause(req, tx, d.Cause)
		rec.End, rec.SIPStatus, rec.Cause, rec.Detail = now, status, d.Cause, d.Detail
		p.d.Calls.Save(rec)
		ev.Cause, ev.Status, ev.Detail = d.Cause, status, d.Detail
		p.d.Journal.Record(ev)
		return
	}
	f := &fork{p: p, req: req, tx: tx, rec: rec, ev: ev, decision: d,
		upDest: trying.Destination(), upTransport: req.Transport()}
	f.run()
}

// fromValue is the From header as a node signs it ("" when missing).
func fromValue(req *sip.Request) string {
	if f := req.From(); f != nil {
		return f.Value()
	}
	return ""
}
