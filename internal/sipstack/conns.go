package sipstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/trace"
)

// Reply writes b, a complete SIP message, to remote: for UDP from the
// listening socket, for TCP on the accepted connection from remote (or
// sipgo's own connection to it). It is how the raw-packet filter answers
// messages it refuses before sipgo parses them.
func (s *Stack) Reply(transport string, remote net.Addr, b []byte) error {
	switch strings.ToUpper(transport) {
	case "UDP":
		_, err := s.udp.WriteTo(b, remote)
		if err != nil {
			return fmt.Errorf("reply to %s over udp: %w", remote, err)
		}
		return nil
	case "TCP":
		if c := s.tcp.get(remote.String()); c != nil {
			_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, err := c.Write(b)
			_ = c.SetWriteDeadline(time.Time{})
			if err != nil {
				return fmt.Errorf("reply to %s over tcp: %w", remote, err)
			}
			return nil
		}
		conn, err := s.UA.TransportLayer().GetConnection("tcp", remote.String())
		if err != nil {
			return fmt.Errorf("reply to %s over tcp: %w", remote, err)
		}
		// GetConnection took a reference: give it back.
		defer conn.TryClose()
		if w, ok := conn.(interface{ Write([]byte) (int, error) }); ok {
			s.tr.Record(trace.Out, "TCP", conn.LocalAddr(), remote, b)
			_, err = w.Write(b)
			return err
		}
		return fmt.Errorf("reply to %s over tcp: connection not writable", remote)
	case "TLS", "WS", "WSS":
		// sipgo's connection frames (WebSocket) and encrypts.
		conn, err := s.UA.TransportLayer().GetConnection(strings.ToLower(transport), remote.String())
		if err != nil || conn == nil {
			return fmt.Errorf("reply to %s over %s: no connection: %v", remote, transport, err)
		}
		defer conn.TryClose()
		if w, ok := conn.(interface{ Write([]byte) (int, error) }); ok {
			s.tr.Record(trace.Out, strings.ToUpper(transport), conn.LocalAddr(), remote, b)
			_, err = w.Write(b)
			return err
		}
		return fmt.Errorf("reply to %s over %s: connection not writable", remote, transport)
	}
	return fmt.Errorf("reply over %s: unsupported transport", transport)
}

// CloseConn closes the TCP connection from remote, if there is one.
func (s *Stack) CloseConn(remote net.Addr) error {
	if c := s.tcp.get(remote.String()); c != nil {
		return c.Close()
	}
	for _, l := range s.streams {
		if c := l.get(remote.String()); c != nil {
			return c.Close()
		}
	}
	conn, err := s.UA.TransportLayer().GetConnection("tcp", remote.String())
	if err != nil || conn == nil {
		return err
	}
	return conn.Close()
}

// OnRequest registers h for requests of method, contained by Safe: a
// panic while handling one message is logged and answered with 500, and
// the server keeps serving. Register handlers on the Stack (OnRequest,
// OnInvite, ...), not on Server directly, to get this containment.
func (s *Stack) OnRequest(method sip.RequestMethod, h sipgo.RequestHandler) {
	s.Server.OnRequest(method, Safe(s.log, h))
}

// OnInvite registers a contained INVITE handler (see OnRequest).
func (s *Stack) OnInvite(h sipgo.RequestHandler) { s.OnRequest(sip.INVITE, h) }

// OnAck registers a contained ACK handler (see OnRequest).
func (s *Stack) OnAck(h sipgo.RequestHandler) { s.OnRequest(sip.ACK, h) }

// OnCancel registers a contained CANCEL handler (see OnRequest).
func (s *Stack) OnCancel(h sipgo.RequestHandler) { s.OnRequest(sip.CANCEL, h) }

// OnRegister registers a contained REGISTER handler (see OnRequest).
func (s *Stack) OnRegister(h sipgo.RequestHandler) { s.OnRequest(sip.REGISTER, h) }

// OnOptions registers a contained OPTIONS handler (see OnRequest).
func (s *Stack) OnOptions(h sipgo.RequestHandler) { s.OnRequest(sip.OPTIONS, h) }

// NotAllowed answers requests no handler is registered for with 405
// Method Not Allowed and the given Allow list, quietly (sipgo's default
// logs a warning for each, which phones sending SUBSCRIBE every minute
// turn into noise). Unknown methods never get here: the filter answers
// them 501.
func (s *Stack) NotAllowed(allow string) {
	s.Server.OnNoRoute(Safe(s.log, func(req *sip.Request, tx sip.ServerTransaction) {
		if req.IsAck() {
			return
		}
		res := sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil)
		res.AppendHeader(sip.NewHeader("Allow", allow))
		res.AppendHeader(sip.NewHeader("Server", "switchboard"))
		if err := tx.Respond(res); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Debug("respond 405", "error", err)
		}
	}))
}

// panicLogEvery bounds how often a handler panic is logged with its stack.
const panicLogEvery = 10 * time.Second

// Safe wraps a handler so that a panic while handling one request is
// recovered: the request gets 500 Server Internal Error (when it was not
// answered yet and is not an ACK), the panic is logged with its stack (at
// most once per 10 s; others are counted in the next report), and the
// process goes on.
func Safe(log *slog.Logger, h sipgo.RequestHandler) sipgo.RequestHandler {
	if log == nil {
		log = slog.Default()
	}
	pl := &panicLog{log: log}
	return func(req *sip.Request, tx sip.ServerTransaction) {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			if !req.IsAck() && tx != nil {
				res := sip.NewResponseFromRequest(req, 500, "Server Internal Error", nil)
				if err := tx.Respond(res); err != nil && !errors.Is(err, context.Canceled) {
					log.Debug("respond 500 after panic", "error", err)
				}
			}
			pl.report("handling a SIP request (it got 500)", r, "method", string(req.Method), "source", req.Source())
		}()
		h(req, tx)
	}
}

// panicLog rate-limits the log lines of recovered panics to one per
// panicLogEvery; the others are counted in the next line.
type panicLog struct {
	log              *slog.Logger
	last, suppressed atomic.Int64
}

func (p *panicLog) report(what string, r any, attrs ...any) {
	now := time.Now().UnixNano()
	last := p.last.Load()
	if now-last < int64(panicLogEvery) || !p.last.CompareAndSwap(last, now) {
		p.suppressed.Add(1)
		return
	}
	attrs = append(attrs, "panic", fmt.Sprint(r), "suppressed_since_last", p.suppressed.Swap(0), "stack", string(debug.Stack()))
	p.log.Error("panic while "+what+"; the server goes on", attrs...)
}

// safeFilter contains a panic in the raw-packet filter (it runs in
// sipgo's read loop, where a panic would end the process): the data is
// dropped and the panic logged.
func safeFilter(log *slog.Logger, f Filter) Filter {
	pl := &panicLog{log: log}
	return func(transport string, remote net.Addr, data []byte) (out []byte) {
		defer func() {
			if r := recover(); r != nil {
				out = nil
				pl.report("filtering a packet", r, "transport", transport, "remote", fmt.Sprint(remote), "bytes", len(data))
			}
		}()
		return f(transport, remote, data)
	}
}

// safeResponse contains a panic in the unhandled-response handler.
func safeResponse(log *slog.Logger, h func(*sip.Response)) func(*sip.Response) {
	pl := &panicLog{log: log}
	return func(res *sip.Response) {
		defer func() {
			if r := recover(); r != nil {
				pl.report("handling a response", r, "status", res.StatusCode, "source", res.Source())
			}
		}()
		h(res)
	}
}

// clipHandler shortens long string attributes (sipgo logs whole messages
// on some errors) to maxLogAttr bytes.
type clipHandler struct{ slog.Handler }

const maxLogAttr = 200

func (c clipHandler) Handle(ctx context.Context, r slog.Record) error {
	if (r.Level == slog.LevelError && (r.Message == "Read error" || r.Message == "Got TCP error" || r.Message == "Fail to upgrade")) ||
		r.Message == "TCP ref went negative" {
		// (The WebSocket reader logs "Got TCP error" for a peer's reset or
		// an oversized frame, "Fail to upgrade" for a bad handshake: a
		// client could fill the log with either; the listener journals
		// them once a minute per address instead.)
		// A peer resetting its TCP connection is not a server error; at
		// ERROR a client could fill the log by connecting and resetting.
		// sipgo's pool hard-closes a connection (reference count 0) that
		// server transactions still hold; their later releases take the
		// count below 0, which is harmless (nothing is closed twice).
		if !c.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		d := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
		r.Attrs(func(a slog.Attr) bool { d.AddAttrs(a); return true })
		r = d
	}
	long := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() == slog.KindString && len(a.Value.String()) > maxLogAttr {
			long = true
			return false
		}
		return true
	})
	if !long {
		return c.Handler.Handle(ctx, r)
	}
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() == slog.KindString {
			if v := a.Value.String(); len(v) > maxLogAttr {
				a = slog.String(a.Key, fmt.Sprintf("%q... (%d bytes)", v[:maxLogAttr], len(v)))
			}
		}
		nr.AddAttrs(a)
		return true
	})
	return c.Handler.Handle(ctx, nr)
}

func (c clipHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return clipHandler{c.Handler.WithAttrs(as)}
}
func (c clipHandler) WithGroup(name string) slog.Handler {
	return clipHandler{c.Handler.WithGroup(name)}
}
