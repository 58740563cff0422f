package security

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/sipstack"
)

// Transport is the part of the SIP stack the filter answers through.
type Transport interface {
	// Reply sends raw bytes to remote: for UDP from the listening socket,
	// for TCP on the connection remote came in on.
	Reply(transport string, remote net.Addr, b []byte) error
	// CloseConn closes the TCP connection from remote.
	CloseConn(remote net.Addr) error
}

// Filter is the sipstack raw-packet filter, called with every UDP datagram
// and every TCP read before sipgo parses it. It returns what sipgo may
// parse, or nil to drop the data. In order, it:
//
//   - drops everything from banned addresses (silently, as fail2ban does),
//     closing their TCP connections;
//   - drops messages over the per-address rate limit;
//   - drops messages from known scanner user agents and bans their
//     address at once (a scanner that hides its user agent is banned by
//     its failed authentications instead);
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
//     the stateless handler (SetStateless).
//
// Trusted networks skip the ban and the rate limit. Dropped traffic leaves
// at most one journal event per address and cause per NoteEvery.
//
// The common case (a well-formed message from an address that is not
// banned) does not allocate.
func (s *Service) Filter(transport string, remote net.Addr, data []byte) []byte {
	ap := addrPort(remote)
	ip := ap.Addr()
	trusted := s.trusted(ip)
	stream := transport != "UDP" && transport != "udp"
	if !trusted && s.guard.Banned(ip) {
		s.stats.BannedDropped.Add(1)
		s.noteBanned(ip, ap, transport, data)
		if stream {
			s.streams.drop(ap)
			s.closeConn(remote)
		}
		return nil
	}
	if stream {
		return s.filterStream(ip, ap, remote, transport, data, trusted)
	}
	return s.filterDatagram(ip, ap, remote, transport, data, trusted)
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

func (s *Service) filterDatagram(ip netip.Addr, ap netip.AddrPort, remote net.Addr, transport string, data []byte, trusted bool) []byte {
	if isKeepalive(data) {
		return nil // NAT keepalive: nothing to parse
	}
	if !trusted && !s.limiter.Allow(ip) {
		s.stats.RateLimited.Add(1)
		s.note(ip, ap, transport, cause.RateLimited, 0, data, "over the rate limit; messages dropped")
		return nil
	}
	if len(data) >= MaxDatagram {
		// The datagram filled sipgo's read buffer, so the kernel may have
		// cut it: refuse it as too large before its truncated body is
		// taken for a Content-Length error.
		s.refuseScan(ip, ap, remote, transport, data, errDatagramTooLarge, false)
		return nil
	}
	var m message
	res, serr := scan(data, false, &m)
	if res != scanOK {
		if serr == nil {
			serr = errNoCRLF
		}
		s.refuseScan(ip, ap, remote, transport, data, serr, false)
		return nil
	}
	out, ok := s.inspect(ip, ap, remote, transport, data[:m.size], &m)
	if !ok {
		return nil
	}
	return out
}

// inspect applies the per-message rules after a successful scan: scanner
// user agents, the semantic checks and, when the fast path was not sure,
// sipgo's own parser. It answers or drops what it refuses and returns
// what may go on: msg itself or, when sipgo reads only the normalized
// form correctly, a normalized copy (see normalize). ok is false when the
// message was refused, or answered by the stateless handler (see
// SetStateless).
func (s *Service) inspect(ip netip.Addr, ap netip.AddrPort, remote net.Addr, transport string, msg []byte, m *message) (out []byte, ok bool) {
	if ua := m.f[hUserAgent]; ua.n > 0 && len(ua.value) > 0 && acl.IsScanner(unsafe.String(&ua.value[0], len(ua.value))) {
		s.scanner(ip, ap, transport, msg, ua.value)
		return nil, false
	}
	out = msg
	v := check(m, msg, s.cfg.Allow)
	if v.pass() && (m.unsure || (m.request && !fastBranch(m.f[hVia].value))) {
		// Rare: ask sipgo's parser, and whether its transaction layer can
		// key the request (without an RFC 3261 branch it needs a From tag).
		err := parsesInSipgo(s.parser, msg)
		if err != nil && m.request {
			// Line folding and white space around separators are valid
			// (RFC 4475's wsinv) but trip sipgo: try the normalized form.
			if n := normalize(msg, m.bodyStart); n != nil {
				if nerr := parsesInSipgo(s.parser, n); nerr == nil || errors.Is(nerr, errNoTxKey) {
					out, err = n, nerr
				}
			}
			// An RFC 2543 request without a From tag (RFC 4475's inv2543)
			// can still be answered without a transaction.
			if errors.Is(err, errNoTxKey) && s.offerStateless(transport, remote, out) {
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
	s.refuse(ip, ap, remote, transport, msg[:min(m.bodyStart, len(msg))], v)
	return nil, false
}

// statelessBox holds the handler installed by SetStateless.
type statelessBox struct {
	fn func(transport string, remote net.Addr, msg []byte) bool
}

// SetStateless installs the handler the filter offers the requests that
// sipgo's transaction layer cannot key (no RFC 3261 branch and no From
// tag: RFC 2543 requests, RFC 4475 §3.4.1). fn reports whether it took the
// request, to answer it without a transaction (REGISTER, or an INVITE's
// 407 challenge, over UDP); it must copy msg to keep it. Requests it
// declines get 400 from the filter, as without a handler.
func (s *Service) SetStateless(fn func(transport string, remote net.Addr, msg []byte) bool) {
	s.stateless.Store(&statelessBox{fn})
}

func (s *Service) offerStateless(transport string, remote net.Addr, msg []byte) bool {
	b := s.stateless.Load()
	return b != nil && b.fn(transport, remote, msg)
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
func (s *Service) refuseScan(ip netip.Addr, ap netip.AddrPort, remote net.Addr, transport string, data []byte, e *scanError, closeStream bool) {
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
	s.refuse(ip, ap, remote, transport, head, v)
}

// refuse answers (unless v.drop) and journals a refused message.
func (s *Service) refuse(ip netip.Addr, ap netip.AddrPort, remote net.Addr, transport string, head []byte, v verdict) {
	s.stats.Malformed.Add(1)
	sent := 0
	if !v.drop && v.status != 0 {
		if reply := buildReply(head, v.status, v.reason, v.detail, v.extra); reply != nil {
			s.send(transport, remote, reply)
			sent = v.status
		}
	}
	detail := v.detail
	if sent == 0 {
		detail += "; dropped without an answer"
	}
	s.note(ip, ap, transport, cause.BadRequest, sent, head, detail)
	if v.close && transport != "UDP" && transport != "udp" {
		s.streams.drop(ap)
		s.closeConn(remote)
	}
}

func (s *Service) send(transport string, remote net.Addr, b []byte) {
	if t := s.tr.Load(); t != nil {
		if err := t.t.Reply(transport, remote, b); err != nil {
			s.d.Log.Debug("security: send answer", "to", remote, "error", err)
		}
	}
}

func (s *Service) closeConn(remote net.Addr) {
	if t := s.tr.Load(); t != nil {
		_ = t.t.CloseConn(remote)
	}
}

// scanner drops a message from a scanner user agent and bans its address
// at once (unless exempt): no phone sends such a user agent, and scanners
// give up after one unanswered probe, so counting to BanAfter would never
// ban them.
func (s *Service) scanner(ip netip.Addr, ap netip.AddrPort, transport string, msg, ua []byte) {
	s.stats.Scanners.Add(1)
	reason := "scanner user agent " + printable(ua)
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

// ConnClosed forgets the stream state of a closed TCP connection (the
// sipstack calls it).
func (s *Service) ConnClosed(remote net.Addr) { s.streams.drop(addrPort(remote)) }

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
func (s *Service) expireStreams() {
	if s.streams.n.Load() == 0 {
		return
	}
	cutoff := s.now().Add(-s.cfg.StreamTimeout)
	var stale []net.Addr
	s.streams.mu.Lock()
	for ap, st := range s.streams.m {
		if st.since.Before(cutoff) {
			delete(s.streams.m, ap)
			s.streams.n.Add(-1)
			stale = append(stale, st.remote)
		}
	}
	s.streams.mu.Unlock()
	for _, r := range stale {
		s.closeConn(r)
	}
}

func (s *Service) filterStream(ip netip.Addr, ap netip.AddrPort, remote net.Addr, transport string, data []byte, trusted bool) []byte {
	st := s.streams.get(ap)
	if st == nil {
		if isKeepalive(data) && len(data) <= 4 {
			return data // RFC 5626 keepalive: sipgo answers a double CRLF
		}
		out, used, need, closed := s.frames(ip, ap, remote, transport, data, trusted)
		if !closed && used < len(data) {
			rest := data[used:]
			if s.streams.n.Load() >= maxStreams {
				s.closeConn(remote)
				return out
			}
			st = &stream{buf: append(make([]byte, 0, max(len(rest), 2048)), rest...), need: need,
				searched: len(rest), since: s.now(), remote: remote}
			s.streams.put(ap, st)
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
				s.streams.drop(ap)
				s.refuseScan(ip, ap, remote, transport, st.buf, errTooLarge, true)
			}
			return nil
		}
	case len(st.buf) < st.need:
		return nil
	}
	out, used, need, closed := s.frames(ip, ap, remote, transport, st.buf, trusted)
	switch {
	case closed:
		s.streams.drop(ap)
	case used == len(st.buf):
		s.streams.drop(ap) // out may alias buf; the buffer is not reused
	default:
		if used > 0 {
			st.since = s.now() // a new pending message
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
func (s *Service) frames(ip netip.Addr, ap netip.AddrPort, remote net.Addr, transport string, buf []byte, trusted bool) (out []byte, used, need int, closed bool) {
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
			s.refuseScan(ip, ap, remote, transport, buf[pos+m.skipped:], serr, true)
			return result(), len(buf), 0, true
		}
		msgStart := pos + m.skipped
		size := m.skipped + m.size
		if !trusted && !s.limiter.Allow(ip) {
			s.stats.RateLimited.Add(1)
			s.note(ip, ap, transport, cause.RateLimited, 0, buf[msgStart:pos+size], "over the rate limit; messages dropped")
		} else if msg, ok := s.inspect(ip, ap, remote, transport, buf[msgStart:pos+size], &m); ok {
			if len(msg) == pos+size-msgStart && &msg[0] == &buf[msgStart] {
				keep(pos, pos+size)
			} else {
				keepCopy(msg)
			}
		}
		pos += size
	}
	return result(), pos, 0, false
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
