package sipstack

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"
)

// SIP over TLS (RFC 3261), WebSocket (RFC 7118) and secure WebSocket
// listeners. sipgo v1.7.3's own TLS and WS servers have no per-address or
// total cap, no idle timeout for a connection that never sends a message,
// accept any Origin and answer "Sec-WebSocket-Protocol: sip" even to a
// client that did not ask for it; its TLS listener handshakes inside the
// read loop with no deadline. So each of these listeners is a
// trackingListener (the caps, bans at accept, the idle timeout and
// eviction of the TCP listener) whose prepare step runs the TLS handshake
// and checks and answers the WebSocket upgrade request, under a handshake
// deadline. The connections are then read by serveWS (wsconn.go) and
// serveTLS (tlsconn.go), not by sipgo, whose readers hold a 32 KiB buffer
// for each connection's life (and whose WebSocket reader drops
// continuation frames and misreads control frames with a payload); the
// messages go to sipgo's transport layer and the connections into its
// pool, so sipgo's transactions answer on them.

// DefaultHandshakeTimeout bounds a TLS handshake plus a WebSocket upgrade
// request, from the connection's first byte.
const DefaultHandshakeTimeout = 10 * time.Second

// maxUpgradeRequest bounds a WebSocket upgrade request's size.
const maxUpgradeRequest = 8 << 10

// Handshake failure reasons (HandshakeError.Reason).
const (
	ReasonTLS           = "tls_handshake_failed"
	ReasonTimeout       = "handshake_timeout"
	ReasonOrigin        = "ws_origin_refused"
	ReasonNoSubprotocol = "ws_no_sip_subprotocol"
	ReasonBadUpgrade    = "ws_bad_upgrade"
	ReasonFrameTooLarge = "ws_frame_too_large"
)

// maxFrame is the largest WebSocket message accepted, one frame or the
// frames of a fragmented message together (sipgo's limit for a SIP
// message, sip.ParseMaxMessageLength).
const maxFrame = 65535

// HandshakeError says why a TLS handshake or a WebSocket upgrade failed.
type HandshakeError struct {
	Reason string // one of the Reason constants
	Detail string // for the journal: what the client sent or did
	Err    error  // the underlying error, if any
}

func (e *HandshakeError) Error() string {
	if e.Err != nil {
		return e.Detail + ": " + e.Err.Error()
	}
	return e.Detail
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// StreamOptions configure the TLS, WS and WSS listeners (Options.Streams).
type StreamOptions struct {
	// TLS, WS, WSS are listen addresses (host:port; port 0 picks a free
	// one); "" leaves that listener off.
	TLS, WS, WSS string
	// OptionalTLS, OptionalWS, OptionalWSS: that listener, when it cannot
	// bind, is logged and left off instead of failing Listen (addresses
	// that came from defaults).
	OptionalTLS, OptionalWS, OptionalWSS bool
	// TLSConfig serves TLS and WSS (required when either is on).
	TLSConfig *tls.Config
	// Origins are the page origins allowed to open a WebSocket besides
	// the same host and loopback pages ("*": any). A request without an
	// Origin header (not a browser) is allowed.
	Origins []string
	// HandshakeTimeout bounds the TLS handshake and the upgrade request
	// (0: DefaultHandshakeTimeout, or the TCP idle timeout when shorter).
	HandshakeTimeout time.Duration
}

// listenStreams binds the TLS/WS/WSS listeners of opts.Streams.
func listenStreams(opts Options, log *slog.Logger) ([]*trackingListener, []Listener, error) {
	so := opts.Streams
	var tls_ []*trackingListener
	var ls []Listener
	fail := func(err error) ([]*trackingListener, []Listener, error) {
		for _, l := range tls_ {
			l.Close()
		}
		return nil, nil, err
	}
	for _, d := range []struct {
		proto, addr string
		optional    bool
	}{{"TLS", so.TLS, so.OptionalTLS}, {"WS", so.WS, so.OptionalWS}, {"WSS", so.WSS, so.OptionalWSS}} {
		if d.addr == "" {
			continue
		}
		if d.proto != "WS" && so.TLSConfig == nil {
			return fail(fmt.Errorf("sip stack: %s needs a certificate", d.proto))
		}
		host, _, err := net.SplitHostPort(d.addr)
		if err != nil {
			return fail(fmt.Errorf("%s address %q: %w (give host:port, e.g. 0.0.0.0:5061)", strings.ToLower(d.proto), d.addr, err))
		}
		raw, err := net.Listen("tcp", d.addr)
		if err != nil {
			err = bindErr(strings.ToLower(d.proto), d.addr, err)
			if d.optional {
				log.Warn("sip stack: "+d.proto+" listener left off", "error", err)
				continue
			}
			return fail(err)
		}
		tl := newTrackingListener(raw, opts, log)
		tl.proto, tl.onClose, tl.handshake = d.proto, opts.ConnClosed, so.HandshakeTimeout
		if tl.handshake <= 0 {
			tl.handshake = min(DefaultHandshakeTimeout, tl.idle)
		}
		tl.prepare = preparer(d.proto, so)
		tls_ = append(tls_, tl)
		ls = append(ls, Listener{Proto: strings.ToLower(d.proto), Addr: boundAddr(host, raw.Addr())})
	}
	return tls_, ls, nil
}

// preparer returns the handshake step of a listener.
func preparer(proto string, so StreamOptions) func(net.Conn) (net.Conn, error) {
	origins := so.Origins
	switch proto {
	case "TLS":
		return func(c net.Conn) (net.Conn, error) { return tlsHandshake(c, so.TLSConfig) }
	case "WS":
		return func(c net.Conn) (net.Conn, error) { return checkUpgrade(c, origins) }
	case "WSS":
		return func(c net.Conn) (net.Conn, error) {
			tc, err := tlsHandshake(c, so.TLSConfig)
			if err != nil {
				return nil, err
			}
			return checkUpgrade(tc, origins)
		}
	}
	return nil
}

func tlsHandshake(c net.Conn, cfg *tls.Config) (net.Conn, error) {
	tc := tls.Server(c, cfg)
	if err := tc.Handshake(); err != nil {
		if timeoutErr(err) {
			return nil, &HandshakeError{Reason: ReasonTimeout, Detail: "TLS handshake not completed in time", Err: err}
		}
		return nil, &HandshakeError{Reason: ReasonTLS, Detail: "TLS handshake failed", Err: err}
	}
	// The ClientHello grew the handshake buffer (and the record buffer):
	// release what is empty now rather than for the connection's life.
	trimTLS(tc)
	return tc, nil
}

func timeoutErr(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// checkUpgrade reads the WebSocket upgrade request (at most 8 KiB),
// refuses it with an HTTP answer when it is not a WebSocket upgrade, does
// not offer the sip subprotocol or comes from a page whose Origin is not
// allowed, and otherwise returns a connection that replays the request to
// sipgo's upgrader.
func checkUpgrade(c net.Conn, origins []string) (net.Conn, error) {
	buf := make([]byte, 0, 1024)
	tmp := make([]byte, 1024)
	for !bytes.Contains(buf, []byte("\r\n\r\n")) {
		if len(buf) >= maxUpgradeRequest {
			httpRefuse(c, 431, "Request Header Fields Too Large", "upgrade request over 8 KiB")
			return nil, &HandshakeError{Reason: ReasonBadUpgrade, Detail: "WebSocket upgrade request over 8 KiB"}
		}
		n, err := c.Read(tmp[:min(len(tmp), maxUpgradeRequest-len(buf))])
		buf = append(buf, tmp[:n]...)
		if err != nil {
			if timeoutErr(err) || (len(buf) > 0 && !bytes.Contains(buf, []byte("\r\n\r\n"))) {
				return nil, &HandshakeError{Reason: ReasonTimeout, Detail: fmt.Sprintf("WebSocket upgrade request not completed in time (%d bytes)", len(buf)), Err: err}
			}
			return nil, &HandshakeError{Reason: ReasonBadUpgrade, Detail: "connection closed before a WebSocket upgrade request", Err: err}
		}
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(buf)))
	if err != nil {
		httpRefuse(c, 400, "Bad Request", "not an HTTP request")
		return nil, &HandshakeError{Reason: ReasonBadUpgrade, Detail: "not an HTTP request", Err: err}
	}
	if req.Method == http.MethodGet && req.Header.Get("Upgrade") == "" {
		// An admin opening https://host:7443/ to accept a self-signed
		// certificate in the browser (what WebRTC phones then need).
		httpAnswer(c, 200, "OK", "switchboard: SIP over WebSocket (RFC 7118) listens here. If your browser asked you to accept this server's certificate, WebRTC phones in this browser can now connect to wss://"+clip(req.Host)+"/")
		return nil, errPlainPage
	}
	if req.Method != http.MethodGet || !headerHasToken(req.Header, "Upgrade", "websocket") {
		httpRefuse(c, 400, "Bad Request", "this port speaks SIP over WebSocket only (RFC 7118)")
		return nil, &HandshakeError{Reason: ReasonBadUpgrade, Detail: fmt.Sprintf("%s %s without Upgrade: websocket", req.Method, clip(req.RequestURI))}
	}
	if !headerHasToken(req.Header, "Sec-WebSocket-Protocol", "sip") {
		httpRefuse(c, 400, "Bad Request", "the sip subprotocol is required (Sec-WebSocket-Protocol: sip, RFC 7118)")
		return nil, &HandshakeError{Reason: ReasonNoSubprotocol, Detail: fmt.Sprintf("WebSocket upgrade without the sip subprotocol (offered %q, User-Agent %q)",
			clip(strings.Join(req.Header.Values("Sec-WebSocket-Protocol"), ", ")), clip(req.UserAgent()))}
	}
	if o := req.Header.Get("Origin"); o != "" && !OriginAllowed(o, req.Host, origins) {
		httpRefuse(c, 403, "Forbidden", "origin not allowed")
		return nil, &HandshakeError{Reason: ReasonOrigin, Detail: fmt.Sprintf("WebSocket upgrade from page origin %q refused (host %q; allowed: the same host, loopback pages, --ws-origins)", clip(o), clip(req.Host))}
	}
	key := req.Header.Get("Sec-WebSocket-Key")
	if key == "" {
		// Its length is not checked: sipgo's upgrader did not either.
		httpRefuse(c, 400, "Bad Request", "a WebSocket upgrade needs a Sec-WebSocket-Key (RFC 6455)")
		return nil, &HandshakeError{Reason: ReasonBadUpgrade, Detail: "WebSocket upgrade without Sec-WebSocket-Key"}
	}
	if v := req.Header.Get("Sec-WebSocket-Version"); v != "13" {
		body := "WebSocket version 13 (RFC 6455) is required\n"
		fmt.Fprintf(c, "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		return nil, &HandshakeError{Reason: ReasonBadUpgrade, Detail: fmt.Sprintf("WebSocket upgrade with version %q (13 required)", clip(v))}
	}
	if _, err := io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
		acceptKey(key)+"\r\nSec-WebSocket-Protocol: sip\r\n\r\n"); err != nil {
		return nil, &HandshakeError{Reason: ReasonBadUpgrade, Detail: "WebSocket upgrade answer not written", Err: err}
	}
	// Bytes after the request's head (a client that did not wait for the
	// answer) are the first frames.
	var rest []byte
	if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 && i+4 < len(buf) {
		rest = bytes.Clone(buf[i+4:])
	}
	return &upgraded{Conn: c, pending: rest}, nil
}

// wsGUID is RFC 6455's key suffix for Sec-WebSocket-Accept.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey is the Sec-WebSocket-Accept answer to a Sec-WebSocket-Key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// upgraded is a connection whose WebSocket upgrade was accepted (the 101
// answer written): what the WS and WSS listeners hand to serveWS. pending
// holds bytes the client sent after the request's head.
type upgraded struct {
	net.Conn
	pending []byte
}

// Read hands pending bytes first.
func (c *upgraded) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		if c.pending = c.pending[n:]; len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(b)
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// headerHasToken reports whether a comma-separated header lists tok
// (case-insensitive).
func headerHasToken(h http.Header, name, tok string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), tok) {
				return true
			}
		}
	}
	return false
}

// OriginAllowed reports whether a page at origin (scheme://host[:port]) may
// open a WebSocket to a server reached as reqHost (the Host header): the
// same host name (any port or scheme), a loopback page (localhost,
// 127.0.0.0/8, ::1), or one of allowed (exact origins, case-insensitive;
// "*" allows any).
func OriginAllowed(origin, reqHost string, allowed []string) bool {
	for _, a := range allowed {
		a = strings.TrimSpace(a)
		if a == "*" || strings.EqualFold(strings.TrimSuffix(a, "/"), origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	oh := strings.ToLower(u.Hostname())
	if oh == "localhost" {
		return true
	}
	if ip, err := netip.ParseAddr(oh); err == nil && ip.IsLoopback() {
		return true
	}
	rh := reqHost
	if h, _, err := net.SplitHostPort(reqHost); err == nil {
		rh = h
	}
	rh = strings.ToLower(strings.Trim(rh, "[]"))
	return rh != "" && rh == oh
}

// errPlainPage: a plain GET was answered with a page; not a refusal.
var errPlainPage = errors.New("plain page served")

func httpAnswer(c net.Conn, code int, status, body string) { httpRefuse(c, code, status, body) }

func httpRefuse(c net.Conn, code int, status, body string) {
	body += "\n"
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: %d\r\n\r\n%s", code, status, len(body), body)
}
