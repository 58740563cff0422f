package guard

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Filter is the sipstack raw-packet filter, called with every UDP datagram
// and every TCP read before sipgo parses it. It returns what sipgo may
// parse, or nil to drop the data. In order, it:
//
//   - drops everything from addresses the Policy says are banned
//     (silently, as fail2ban does), closing their TCP connections;
//   - drops messages over the Policy's per-address rate limit;
//   - drops messages whose user agent the Policy calls a scanner's (the
//     Policy bans the address);
//   - frames TCP streams by Content-Length, holding incomplete messages
//     (a connection stalled mid-message is closed after StreamTimeout);
//   - answers malformed requests itself (400, 505 bad version, 416 unknown
//     URI scheme, 501 unknown method, 420 unsupported extension, 513 too
//     large, UDP datagrams of MaxDatagram bytes or more included) with a
//     stateless response built from the request's Via, From, To, Call-ID
//     and CSeq, and drops malformed responses and ACKs, so sipgo never
//     sees a message its parser refuses;
//   - hands sipgo valid requests it misreads in normalized form
//     (normalize), and offers requests it cannot key to a transaction to
//     the stateless path (see Stateless), which also takes, over UDP,
//     every REGISTER and every first INVITE that only needs a 407.
//
// Addresses the Policy trusts skip the ban and the rate limit. Every drop
// and refusal is reported to the Policy, which counts and journals it.
//
// The common case (a well-formed message from an address that is not
// banned) does not allocate.
func (g *Guard) Filter(transport string, remote net.Addr, data []byte) []byte {
	ap := addrPort(remote)
	ip := ap.Addr()
	trusted := g.policy.Trusted(ip)
	stream := transport != "UDP" && transport != "udp"
	if !trusted && g.policy.Banned(ip, ap, transport, data) {
		if stream {
			g.streams.drop(ap)
			g.closeConn(remote)
		}
		return nil
	}
	if stream {
		return g.filterStream(ip, ap, remote, transport, data, trusted)
	}
	return g.filterDatagram(ip, ap, remote, transport, data, trusted)
}

// addrPort extracts the address without allocating.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		if a != nil {
			ap, _ = netip.ParseAddrPort(a.String())
		}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

func isKeepalive(data []byte) bool {
	for _, c := range data {
		if c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

func (g *Guard) filterDatagram(ip netip.Addr, ap netip.AddrPort, remote net.Addr, transport string, data []byte, trusted bool) []byte {
	if isKeepalive(data) {
		return nil // NAT keepalive: nothing to parse
	}
	if !trusted && g.policy.RateLimited(ip, ap, transport, data) {
		return nil
	}
	if len(data) >= MaxDatagram {
		// The datagram filled sipgo's read buffer, so the kernel may have
		// cut it: refuse it as too large before its truncated body is
		// taken for a Content-Length error.
		g.refuseScan(ip, ap, remote, transport, data, errDatagramTooLarge, false)
		return nil
	}
	var m message
	res, serr := scan(data, false, &m)
	if res != scanOK {
		if serr == nil {
			serr = errNoCRLF
		}
		g.refuseScan(ip, ap, remote, transport, data, serr, false)
		return nil
	}
	out, ok := g.inspect(ip, ap, remote, transport, data[:m.size], &m)
	if !ok || g.stateless.take(transport, remote, out) {
		return nil
	}
	return out
}

// inspect applies the per-message rules after a successful scan: scanner
// user agents, the semantic checks and, when the fast path was not sure,
// sipgo's own parser. It answers or drops what it refuses and returns
// what may go on: msg itself or, when sipgo reads only the normalized
// form correctly, a normalized copy (see normalize). ok is false when the
// message was refused, or taken by the stateless path (see Stateless).
func (g *Guard) inspect(ip netip.Addr, ap netip.AddrPort, remote net.Addr, transport string, msg []byte, m *message) (out []byte, ok bool) {
	if ua := m.f[hUserAgent]; ua.n > 0 && len(ua.value) > 0 && g.policy.Scanner(ip, ap, transport, msg, ua.value) {
		return nil, false
	}
	out = msg
	v := check(m, msg, g.allow)
	if v.pass() && (m.unsure || (m.request && !fastBranch(m.f[hVia].value))) {
		// Rare: ask sipgo's parser, and whether its transaction layer can
		// key the request (without an RFC 3261 branch it needs a From tag).
		err := parsesInSipgo(g.parser, msg)
		if err != nil && m.request {
			// Line folding and white space around separators are valid
			// (RFC 4475's wsinv) but trip sipgo: try the normalized form.
			if n := normalize(msg, m.bodyStart); n != nil {
				if nerr := parsesInSipgo(g.parser, n); nerr == nil || errors.Is(nerr, errNoTxKey) {
					out, err = n, nerr
				}
			}
			// An RFC 2543 request without a From tag (RFC 4475's inv2543)
			// can still be answered without a transaction.
			if errors.Is(err, errNoTxKey) && g.stateless.take(transport, remote, out) {
				return nil, false
			}
		}
		if err != nil {
			v = verdict{status: 400, reason: "Bad Request", detail: err.Error()}
		}
		if !m.request || string(m.method) == "ACK" {
			v.drop = !v.pass()
		}
	}
	if v.pass() {
		return out, true
	}
	g.refuse(ip, ap, remote, transport, msg[:min(m.bodyStart, len(msg))], v)
	return nil, false
}

// clip shortens a parser error for a journal detail (it may quote input).
func clip(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return printable([]byte(s))
}

// refuseScan refuses a message that failed the scan; on a stream,
// closeStream closes the connection whatever the error (framing is lost).
func (g *Guard) refuseScan(ip netip.Addr, ap netip.AddrPort, remote net.Addr, transport string, data []byte, e *scanError, closeStream bool) {
	v := verdict{status: e.status, reason: e.reason, detail: e.detail, close: e.fatal || closeStream}
	if len(data) >= 8 && (eqFold(data[:4], "sip/")) {
		v.drop = true // a response: never answered
	}
	if sp := bytes.IndexByte(data, ' '); sp == 3 && string(data[:3]) == "ACK" {
		v.drop = true
	}
	head := data
	if i := bytes.Index(data, crlfcrlf); i >= 0 {
		head = data[:i+4]
	}
	g.refuse(ip, ap, remote, transport, head, v)
}

// refuse answers (unless v.drop) and journals a refused message.
func (g *Guard) refuse(ip netip.Addr, ap netip.AddrPort, remote net.Addr, transport string, head []byte, v verdict) {
	sent := 0
	if !v.drop && v.status != 0 {
		if reply := buildReply(head, v.status, v.reason, v.detail, v.extra); reply != nil {
			g.send(transport, remote, reply)
			sent = v.status
		}
	}
	detail := v.detail
	if sent == 0 {
		detail += "; dropped without an answer"
	}
	g.policy.Refused(ip, ap, transport, sent, head, detail)
	if v.close && transport != "UDP" && transport != "udp" {
		g.streams.drop(ap)
		g.closeConn(remote)
	}
}

func (g *Guard) send(transport string, remote net.Addr, b []byte) {
	if t := g.tr.Load(); t != nil {
		if err := t.t.Reply(transport, remote, b); err != nil {
			g.log.Debug("guard: send answer", "to", remote, "error", err)
		}
	}
}

func (g *Guard) closeConn(remote net.Addr) {
	if t := g.tr.Load(); t != nil {
		_ = t.t.CloseConn(remote)
	}
}

// ConnClosed forgets the stream state of a closed TCP connection (the
// sipstack calls it).
func (g *Guard) ConnClosed(remote net.Addr) { g.streams.drop(addrPort(remote)) }

// streams holds the incomplete messages of TCP connections.
type streams struct {
	mu sync.Mutex
	m  map[netip.AddrPort]*stream // guarded by mu
	n  atomic.Int64               // len(m), read without the lock
}

// stream is one connection's pending bytes. Only the connection's read
// goroutine touches buf; since and the map entry are guarded by streams.mu.
type stream struct {
	buf      []byte
	off      int       // bytes of buf already handed on (dropped at the next read)
	need     int       // bytes the pending message needs, 0 = header end not found yet
	searched int       // bytes of the pending message searched for the header end
	since    time.Time // when the pending message began
	remote   net.Addr
}

func (t *streams) get(ap netip.AddrPort) *stream {
	if t.n.Load() == 0 {
		return nil
	}
	t.mu.Lock()
	st := t.m[ap]
	t.mu.Unlock()
	return st
}

func (t *streams) put(ap netip.AddrPort, st *stream) {
	t.mu.Lock()
	if _, ok := t.m[ap]; !ok {
		t.n.Add(1)
	}
	t.m[ap] = st
	t.mu.Unlock()
}

func (t *streams) drop(ap netip.AddrPort) {
	if t.n.Load() == 0 {
		return
	}
	t.mu.Lock()
	if _, ok := t.m[ap]; ok {
		delete(t.m, ap)
		t.n.Add(-1)
	}
	t.mu.Unlock()
}

// maxStreams bounds the connections with pending bytes; beyond it the
// newest incomplete message is refused (its connection closed).
const maxStreams = 100_000

// expireStreams closes connections stalled mid-message for longer than
// StreamTimeout (RFC 4475 §3.1.2.2: wait for more data, then close).
func (g *Guard) expireStreams() {
	if g.streams.n.Load() == 0 {
		return
	}
	cutoff := g.now().Add(-g.streamTimeout)
	var stale []net.Addr
	g.streams.mu.Lock()
	for ap, st := range g.streams.m {
		if st.since.Before(cutoff) {
			delete(g.streams.m, ap)
			g.streams.n.Add(-1)
			stale = append(stale, st.remote)
		}
	}
	g.streams.mu.Unlock()
	for _, r := range stale {
		g.closeConn(r)
	}
}

func (g *Guard) filterStream(ip netip.Addr, ap netip.AddrPort, remote net.Addr, transport string, data []byte, trusted bool) []byte {
	st := g.streams.get(ap)
	if st == nil {
		if isKeepalive(data) && len(data) <= 4 {
			return data // RFC 5626 keepalive: sipgo answers a double CRLF
		}
		out, used, need, closed := g.frames(ip, ap, remote, transport, data, trusted)
		if !closed && used < len(data) {
			rest := data[used:]
			if g.streams.n.Load() >= maxStreams {
				g.closeConn(remote)
				return out
			}
			st = &stream{buf: append(make([]byte, 0, max(len(rest), 2048)), rest...), need: need,
				searched: len(rest), since: g.now(), remote: remote}
			g.streams.put(ap, st)
		}
		return out
	}
	// Drop what was handed on at the last read (sipgo has copied it).
	if st.off > 0 {
		n := copy(st.buf, st.buf[st.off:])
		st.buf, st.off = st.buf[:n], 0
	}
	st.buf = append(st.buf, data...)
	switch {
	case st.need == 0:
		from := max(st.searched-3, 0)
		if bytes.Index(st.buf[from:], crlfcrlf) < 0 {
			st.searched = len(st.buf)
			if len(st.buf) > MaxMessage {
				g.streams.drop(ap)
				g.refuseScan(ip, ap, remote, transport, st.buf, errTooLarge, true)
			}
			return nil
		}
	case len(st.buf) < st.need:
		return nil
	}
	out, used, need, closed := g.frames(ip, ap, remote, transport, st.buf, trusted)
	switch {
	case closed:
		g.streams.drop(ap)
	case used == len(st.buf):
		g.streams.drop(ap) // out may alias buf; the buffer is not reused
	default:
		if used > 0 {
			st.since = g.now() // a new pending message
		}
		st.off, st.need, st.searched = used, need, len(st.buf)-used
	}
	return out
}

// frames splits stream bytes into messages, inspecting each. It returns
// the messages that may go on (buf itself or a part of it when every
// message passed, else a copy), how many bytes were consumed, what the
// incomplete last message needs (0: unknown yet), and whether the
// connection was closed.
func (g *Guard) frames(ip netip.Addr, ap netip.AddrPort, remote net.Addr, transport string, buf []byte, trusted bool) (out []byte, used, need int, closed bool) {
	var m message
	start, end := -1, -1 // the contiguous run of passed messages
	var copied []byte
	keep := func(a, b int) {
		switch {
		case start < 0:
			start, end = a, b
		case a == end && copied == nil:
			end = b
		default:
			if copied == nil {
				copied = append([]byte(nil), buf[start:end]...)
			}
			copied = append(copied, buf[a:b]...)
		}
	}
	// keepCopy keeps a message that replaces buf's bytes (a normalized one).
	keepCopy := func(msg []byte) {
		if copied == nil {
			copied = make([]byte, 0, len(buf))
			if start >= 0 {
				copied = append(copied, buf[start:end]...)
			}
		}
		copied = append(copied, msg...)
		start = max(start, 0)
	}
	result := func() []byte {
		if copied != nil {
			return copied
		}
		if start < 0 {
			return nil
		}
		return buf[start:end]
	}
	pos := 0
	for pos < len(buf) {
		res, serr := scan(buf[pos:], true, &m)
		switch res {
		case scanPartial:
			if pos+m.skipped == len(buf) {
				// Only CRLFs left: keepalives between messages, which
				// sipgo would skip too.
				return result(), len(buf), 0, false
			}
			if m.clen >= 0 && m.bodyStart > 0 {
				need = m.skipped + m.bodyStart + m.clen
			}
			return result(), pos, need, false
		case scanBad:
			// The message boundary is unknown: answer if possible and
			// close the connection (RFC 4475 §3.1.2.3).
			g.refuseScan(ip, ap, remote, transport, buf[pos+m.skipped:], serr, true)
			return result(), len(buf), 0, true
		}
		msgStart := pos + m.skipped
		size := m.skipped + m.size
		// Over the rate limit, the message is dropped (the policy journals it).
		if trusted || !g.policy.RateLimited(ip, ap, transport, buf[msgStart:pos+size]) {
			if msg, ok := g.inspect(ip, ap, remote, transport, buf[msgStart:pos+size], &m); ok {
				if len(msg) == pos+size-msgStart && &msg[0] == &buf[msgStart] {
					keep(pos, pos+size)
				} else {
					keepCopy(msg)
				}
			}
		}
		pos += size
	}
	return result(), pos, 0, false
}
