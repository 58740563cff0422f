package server

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/sipstack"
)

// lowFileLimit is the file limit under which serve warns at start.
const lowFileLimit = 4096

// checkFileLimit logs the TCP connection limits in force and warns when
// the file limit is low. The soft limit has been raised to the hard one
// (Go's runtime at start, sipstack.RaiseFileLimit), so only the hard
// limit can be too low.
func (s *Server) checkFileLimit() {
	idle, perAddr, total := s.Stack.TCPLimits()
	soft, hard, err := sipstack.FileLimit()
	if err != nil {
		s.Log.Warn("cannot read the file limit", "error", err)
		return
	}
	s.Log.Info("tcp connection limits", "idle_timeout", idle.String(), "max_per_ip", perAddr, "max_conns", total,
		"file_limit", soft)
	if soft < lowFileLimit {
		s.Log.Warn(fmt.Sprintf("the file limit is low (%d open files; hard limit %d): it bounds the TCP connections to %d; raise it, e.g. LimitNOFILE=65536 in the systemd unit or `ulimit -n 65536` before switchboard serve",
			soft, hard, total))
	}
}

// connEvent journals connections the SIP stack refused or evicted (once
// a minute per address and kind) and failing accepts (once per burst;
// the stack logs them too).
func (s *Server) connEvent(ev sipstack.ConnEvent) {
	ip := ev.Remote.Addr()
	if ev.Kind == sipstack.HandshakeFailed {
		s.handshakeEvent(ev)
		return
	}
	e := journal.Event{Kind: journal.KindRequest, Transport: "TCP", Cause: cause.ConnectionLimit}
	if ev.Proto != "" && ev.Proto != "TCP" {
		e.Transport = ev.Proto
	}
	if ev.Remote.IsValid() {
		e.Source = ev.Remote.String()
	}
	var kind string
	switch ev.Kind {
	case sipstack.ConnOverPerAddress:
		kind = "per-ip"
		e.Detail = fmt.Sprintf("TCP connection closed at accept: %s already holds %d connections (--tcp-max-per-ip %d)", ip, ev.Held, ev.Limit)
	case sipstack.ConnOverTotal:
		kind = "total"
		e.Detail = fmt.Sprintf("TCP connection closed at accept: %d connections open, all in use (--tcp-max-conns %d)", ev.Held, ev.Limit)
	case sipstack.ConnEvicted:
		kind = "evicted"
		e.Detail = fmt.Sprintf("TCP connection closed before it sent a complete message, for a new one: %d connections open (--tcp-max-conns %d)", ev.Held, ev.Limit)
	case sipstack.AcceptFailing:
		e.Cause = cause.AcceptFailed
		e.Detail = fmt.Sprintf("accepting TCP connections fails (%v) with %d connections open; retrying with back-off", ev.Err, ev.Held)
		s.Journal.Record(e)
		return
	default:
		return
	}
	if e.Transport != "TCP" {
		kind = e.Transport + " " + kind
		e.Detail = e.Transport + strings.TrimPrefix(e.Detail, "TCP")
	}
	if s.connNotes.First(s.connNotes.Key(ip, kind)) {
		s.Journal.Record(e)
	}
}

// bindingSlack is how long past its binding's expiry a registered TCP
// flow stays open (the phone's refresh may come late).
const bindingSlack = 30 * time.Second

// keepFlow wraps a REGISTER's answer: when a 200 goes back over TCP, the
// connection stays open until the longest expiry it lists (plus
// bindingSlack), so the phone's flow outlives the idle timeout for as
// long as it is registered.
func (s *Server) keepFlow(req *sip.Request, send func(*sip.Response) error) func(*sip.Response) error {
	if !strings.EqualFold(req.Transport(), "TCP") {
		return send
	}
	return func(res *sip.Response) error {
		if res.StatusCode == 200 {
			if exp := longestExpiry(res); exp > 0 {
				s.Stack.KeepAlive(req.Source(), time.Now().Add(time.Duration(exp)*time.Second+bindingSlack))
			}
		}
		return send(res)
	}
}

// longestExpiry returns the largest expires of a REGISTER 200's Contacts
// (or its Expires header), in seconds; 0 when it lists none.
func longestExpiry(res *sip.Response) int {
	best := 0
	for _, h := range res.GetHeaders("Contact") {
		// The registrar writes `<uri>;expires=N`, one Contact per binding.
		v := strings.ToLower(h.Value())
		if i := strings.LastIndexByte(v, '>'); i >= 0 {
			v = v[i:]
		}
		if _, rest, ok := strings.Cut(v, ";expires="); ok {
			end := 0
			for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
				end++
			}
			if n, err := strconv.Atoi(rest[:end]); err == nil && n > best {
				best = n
			}
		}
	}
	if best == 0 {
		if h := res.GetHeader("Expires"); h != nil {
			if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > 0 {
				best = n
			}
		}
	}
	return best
}

// handshakeEvent journals a failed TLS handshake or a refused WebSocket
// upgrade, once a minute per address and reason.
func (s *Server) handshakeEvent(ev sipstack.ConnEvent) {
	var he *sipstack.HandshakeError
	reason, detail := sipstack.ReasonTLS, fmt.Sprint(ev.Err)
	if errors.As(ev.Err, &he) {
		reason, detail = he.Reason, he.Error()
	}
	c := cause.Code(reason)
	switch c {
	case cause.TLSHandshakeFailed, cause.HandshakeTimeout, cause.WSOriginRefused, cause.WSNoSIPSubprotocol, cause.WSBadUpgrade,
		cause.WSFrameTooLarge:
	default:
		c = cause.TLSHandshakeFailed
	}
	ip := ev.Remote.Addr()
	if !s.connNotes.First(s.connNotes.Key(ip, "hs-"+reason)) {
		return
	}
	e := journal.Event{Kind: journal.KindRequest, Transport: ev.Proto, Cause: c, Source: ev.Remote.String(),
		Detail: ev.Proto + " connection from " + ip.String() + " refused: " + detail + "; " + handshakeFix(c, detail)}
	s.Journal.Record(e)
}

// handshakeFix says what the admin can do about a refused TLS or
// WebSocket connection.
func handshakeFix(c cause.Code, detail string) string {
	switch c {
	case cause.TLSHandshakeFailed:
		if strings.Contains(detail, "remote error") {
			return "fix: the client does not accept the certificate: give it the server's tls-cert.pem to trust (or turn verification off), " +
				"accept the certificate once in the browser (https://HOST:WSS-PORT/), or serve a real one with --tls-cert/--tls-key"
		}
		return "fix: the client does not speak TLS here (plain SIP on the TLS port?): set its transport to TLS, or point it at the UDP/TCP port; scanners also land here"
	case cause.HandshakeTimeout:
		return "fix: nothing if it is a scanner; a real client on a slow or lossy link should retry"
	case cause.WSOriginRefused:
		return "fix: if that page is your WebRTC phone, add its origin with --ws-origins (e.g. --ws-origins https://phone.example.com)"
	case cause.WSNoSIPSubprotocol:
		return "fix: the WebSocket client must ask for the sip subprotocol (RFC 7118): JsSIP and SIP.js do; check the client's WebSocket settings"
	case cause.WSFrameTooLarge:
		return "fix: no SIP message needs 64 KiB; a real client sending one is broken"
	}
	return "fix: point the client at the port of its transport (UDP/TCP --sip, TLS --tls, WSS --wss)"
}
