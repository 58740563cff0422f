package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/registrar"
)

// prebuilt tells sipgo the request is complete (no header is added).
func prebuilt(*sipgo.Client, *sip.Request) error { return nil }

// newVia returns a Via for a request this proxy forwards over transport.
func (p *Proxy) newVia(transport string) *sip.ViaHeader { return p.newViaBranch(transport, "") }

// newViaBranch is newVia with branch as its branch ("": a fresh random
// one).
func (p *Proxy) newViaBranch(transport, branch string) *sip.ViaHeader {
	if branch == "" {
		branch = branchPrefix + sip.GenerateTagN(20)
	}
	params := sip.NewParams()
	params.Add("branch", branch)
	return &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: transport, Host: p.host,
		Port: p.portFor(transport), Params: params}
}

// portFor is the port of our listener for transport: Config.StreamPorts'
// for TLS, WS and WSS, else the SIP port.
func (p *Proxy) portFor(transport string) int {
	if n := p.cfg.StreamPorts[strings.ToUpper(transport)]; n > 0 {
		return n
	}
	return p.port
}

// recordRoute returns our Record-Route for a dialog, carrying its token.
func (p *Proxy) recordRoute(transport, token string) *sip.RecordRouteHeader {
	params := sip.NewParams()
	if transport != "UDP" {
		params.Add("transport", strings.ToLower(transport))
	}
	params.Add("lr", "")
	params.Add("sb", token)
	return &sip.RecordRouteHeader{Address: sip.Uri{Scheme: "sip", Host: p.host, Port: p.portFor(transport), UriParams: params}}
}

// stampVia adds received (and rport when asked for, or always on stream
// transports) to the sender's Via of a request we forward (RFC 3261
// §18.2.1, RFC 3581), so responses find their way back through NAT.
func stampVia(req *sip.Request) {
	v := req.Via()
	if v == nil {
		return
	}
	host, port, err := net.SplitHostPort(req.Source())
	if err != nil {
		return
	}
	rport, asked := v.Params.Get("rport")
	if (asked && rport == "") || sip.IsReliable(req.Transport()) {
		v.Params.Add("rport", port)
		v.Params.Add("received", host)
		return
	}
	if strings.Trim(v.Host, "[]") != host {
		v.Params.Add("received", host)
	}
}

// viaTarget returns where a response to the request that carried v goes:
// received/rport when present, else the sent-by, and the Via's transport.
func viaTarget(v *sip.ViaHeader) (addr, transport string) {
	host, port := v.Host, v.Port
	if r, ok := v.Params.Get("received"); ok && r != "" {
		host = r
	}
	if r, ok := v.Params.Get("rport"); ok && r != "" {
		if n, err := strconv.Atoi(r); err == nil {
			port = n
		}
	}
	transport = strings.ToUpper(v.Transport)
	if port == 0 {
		port = 5060
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port)), transport
}

// upstream turns a response from a branch into the response for the
// caller: our Via removed, sent to dest over transport. The result is a
// new response whose header list shares res's header values (relaying
// adds, removes and replaces headers of it, and its body with SetBody,
// but changes none in place), so res is unchanged and may still be read
// by the goroutines of the stack that received it.
func upstream(res *sip.Response, dest, transport string) *sip.Response {
	r := sip.NewResponse(res.StatusCode, res.Reason)
	r.SipVersion = res.SipVersion
	ours := true
	for _, h := range res.Headers() {
		if _, ok := h.(*sip.ViaHeader); ok && ours {
			ours = false // the top Via: ours
			continue
		}
		r.AppendHeader(h)
	}
	r.SetBody(res.Body())
	r.SetSource(res.Source())
	r.SetDestination(dest)
	r.SetTransport(transport)
	return r
}

// writeResponse sends a response outside any transaction. UDP leaves from
// the listening socket; stream transports use the connection to the peer.
func (p *Proxy) writeResponse(res *sip.Response) error {
	if strings.EqualFold(res.Transport(), "UDP") && p.cfg.UDPLocal != "" {
		conn, err := p.d.Server.TransportLayer().GetConnection("udp", p.cfg.UDPLocal)
		if err == nil {
			defer conn.TryClose()
			return conn.WriteMsg(res)
		}
	}
	return p.d.Server.WriteResponse(res)
}

// ForwardResponse forwards statelessly a 2xx to an INVITE whose
// transaction is gone: retransmissions of the 2xx of an answered call or
// re-INVITE (RFC 3261 §16.7 step 5, RFC 6026). It is relayed only when it
// matches a dialog the proxy knows (its Call-ID and tags; an ended one
// within DialogLinger), comes from an address of the party that answered
// and has our Via on top, and it goes to the other party at the address
// recorded at setup, not to the Via it names. Anything else is dropped and
// journaled (route_token_refused, once a minute per address). Install it
// as the stack's unhandled response handler.
func (p *Proxy) ForwardResponse(res *sip.Response) {
	if !res.IsSuccess() || res.CSeq() == nil || res.CSeq().MethodName != sip.INVITE {
		return
	}
	dest, tp, r := p.responseHop(res)
	if r != nil {
		src := registrar.SourceAddr(res.Source())
		if p.refused.First(p.refused.Key(src, string(r.cause))) {
			ev := journal.Event{Kind: journal.KindRequest, Cause: r.cause, Source: res.Source(),
				Transport: strings.ToUpper(res.Transport()),
				Detail: fmt.Sprintf("%d response to INVITE not relayed: %s (further refusals of this address are journaled once a minute)",
					res.StatusCode, r.detail)}
			if id := res.CallID(); id != nil {
				ev.CallID = id.Value()
			}
			p.d.Journal.Record(ev)
		}
		return
	}
	out := res.Clone()
	out.RemoveHeader("Via")
	out.SetDestination(dest)
	out.SetTransport(tp)
	p.relayResponse(out)
	if err := p.writeResponse(out); err != nil {
		p.log.Debug("proxy: forward response", "status", out.StatusCode, "to", dest, "error", err)
	}
}

// responseHop decides where a 2xx retransmission outside any transaction
// goes (see ForwardResponse).
func (p *Proxy) responseHop(res *sip.Response) (dest, transport string, r *refusal) {
	if !p.isOwnVia(res.Via()) || res.CallID() == nil || res.From() == nil || res.To() == nil {
		return "", "", &refusal{cause: cause.RouteTokenRefused, detail: "not an answer to a request this server forwarded"}
	}
	// From and To are the request's: a request from the caller is answered
	// by the callee, and the other way round.
	d, fromCaller, _ := p.dialogs.find(res.CallID().Value(), tagOf(res.From().Params), tagOf(res.To().Params), p.now())
	if d == nil {
		return "", "", &refusal{cause: cause.RouteTokenRefused, detail: "no dialog with this Call-ID and tags"}
	}
	answerer, requester := &d.callee, &d.caller
	if !fromCaller {
		answerer, requester = requester, answerer
	}
	if src := registrar.SourceAddr(res.Source()); !d.hasIP(answerer, src) {
		return "", "", &refusal{cause: cause.RouteTokenRefused, detail: "sender " + src.String() + " is not the party of the dialog that answered"}
	}
	return requester.dest, requester.transport, nil
}

func (p *Proxy) forwardStateless(res *sip.Response) {
	if !p.isOwnVia(res.Via()) {
		return
	}
	r := res.Clone()
	r.RemoveHeader("Via")
	next := r.Via()
	if next == nil {
		return
	}
	dest, tp := viaTarget(next)
	r.SetDestination(dest)
	r.SetTransport(tp)
	p.relayResponse(r)
	if err := p.writeResponse(r); err != nil {
		p.log.Debug("proxy: forward response", "status", r.StatusCode, "to", dest, "error", err)
	}
}

// respond sends res on tx with our Server header, logging failures.
func (p *Proxy) respond(tx sip.ServerTransaction, res *sip.Response) {
	if err := tx.Respond(res); err != nil && !errors.Is(err, context.Canceled) {
		p.log.Debug("proxy: respond", "status", res.StatusCode, "error", err)
	}
}

// answerCause answers req with the SIP status of cause c, with a Q.850
// Reason header for call causes and the headers hdrs, and returns the
// status.
func (p *Proxy) answerCause(req *sip.Request, tx sip.ServerTransaction, c cause.Code, hdrs ...sip.Header) int {
	a, ok := cause.AnswerFor(c)
	if !ok {
		a = cause.Answer{Status: 500, Reason: "Server Internal Error"}
	}
	res := sip.NewResponseFromRequest(req, a.Status, a.Reason, nil)
	if rh := cause.ReasonHeader(c); rh != "" {
		res.AppendHeader(sip.NewHeader("Reason", rh))
	}
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if c == cause.WebRTCNeedsMediaRelay {
		// RFC 3261 §20.43: 305 incompatible media format, in words a
		// softphone's log shows.
		res.AppendHeader(sip.NewHeader("Warning", `305 `+p.host+` "a WebRTC browser and a plain-RTP phone need the media relay (off, or no SDP offer in the INVITE)"`))
	}
	res.AppendHeader(sip.NewHeader("Server", p.cfg.ServerName))
	p.respond(tx, res)
	return a.Status
}

// answer replies with a bare status.
func (p *Proxy) answer(req *sip.Request, tx sip.ServerTransaction, status int, reason string, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, status, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	res.AppendHeader(sip.NewHeader("Server", p.cfg.ServerName))
	p.respond(tx, res)
}

// forwardCopy returns a copy of req to forward: a header list of its own
// that shares req's header values, except copies of the top Via and
// Max-Forwards, the only ones forwarding changes in place (stampVia,
// prepareForward). Adding, removing or replacing a header of the copy
// (SetBody replaces Content-Length) leaves req as it was; its body is
// shared and only ever replaced (SetBody), never changed in place. It
// costs a fraction of req.Clone, which copies every header.
func forwardCopy(req *sip.Request) *sip.Request {
	r := sip.NewRequest(req.Method, req.Recipient)
	r.SipVersion = req.SipVersion
	top := true
	for _, h := range req.Headers() {
		switch v := h.(type) {
		case *sip.ViaHeader:
			if top {
				h, top = v.Clone(), false
			}
		case *sip.MaxForwardsHeader:
			mf := *v
			h = &mf
		}
		r.AppendHeader(h)
	}
	r.SetBody(req.Body())
	r.SetTransport(req.Transport())
	r.SetSource(req.Source())
	r.SetDestination(req.Destination())
	r.Laddr = req.Laddr
	return r
}

// popOwnRoutes removes the Route entries at the top that address us and
// returns how many it removed and the route tokens (sb=) they carried.
func (p *Proxy) popOwnRoutes(req *sip.Request) (n int, tokens []string) {
	for {
		r := req.Route()
		if r == nil || !p.isOwnURI(&r.Address) {
			return n, tokens
		}
		if tok, ok := r.Address.UriParams.Get("sb"); ok {
			tokens = append(tokens, tok)
		}
		req.RemoveHeader("Route")
		n++
	}
}

// prepareForward applies the per-hop rules of RFC 3261 §16.6 shared by
// every forwarded request: Max-Forwards decremented (ok=false at 0), the
// sender's Via stamped, our Via on top, destination and transport set, and
// UDP sent from the listening socket.
func (p *Proxy) prepareForward(r *sip.Request, dest, transport string) bool {
	return p.prepareForwardBranch(r, dest, transport, "")
}

// prepareForwardBranch is prepareForward with the branch of our Via ("":
// a fresh random one; see statelessBranch).
func (p *Proxy) prepareForwardBranch(r *sip.Request, dest, transport, branch string) bool {
	if mf := r.MaxForwards(); mf != nil {
		if mf.Val() == 0 {
			return false
		}
		mf.Dec()
	} else {
		m := sip.MaxForwardsHeader(70)
		r.AppendHeader(&m)
	}
	stampVia(r)
	transport = strings.ToUpper(transport)
	if transport == "" {
		transport = "UDP"
	}
	r.PrependHeader(p.newViaBranch(transport, branch))
	r.SetTransport(transport)
	r.SetDestination(dest)
	if transport == "UDP" {
		r.Laddr = p.udpAddr
	} else {
		r.Laddr = sip.Addr{}
	}
	return true
}

// uriDest returns host:port and transport to reach a URI.
func uriDest(u *sip.Uri) (dest, transport string) {
	transport = "UDP"
	if t, ok := u.UriParams.Get("transport"); ok && t != "" {
		transport = strings.ToUpper(t)
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if u.IsEncrypted() {
			port = 5061
		}
	}
	return net.JoinHostPort(strings.Trim(u.Host, "[]"), strconv.Itoa(port)), transport
}

// hasToTag reports whether a request belongs to a dialog.
func hasToTag(req *sip.Request) bool {
	to := req.To()
	return to != nil && to.Params.Has("tag")
}

func tagOf(params sip.HeaderParams) string {
	t, _ := params.Get("tag")
	return t
}

func userAgent(req *sip.Request) string {
	if h := req.GetHeader("User-Agent"); h != nil {
		return h.Value()
	}
	return ""
}
