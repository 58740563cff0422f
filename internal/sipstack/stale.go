package sipstack

import (
	"bytes"
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// Stale requests. Under overload the UDP socket's receive buffer is the
// queue (see the guard's stateless path): a request waits there until a
// reader takes it. A phone retransmits its REGISTER or INVITE 0.5 s after
// sending it (then 1, 2, 4 s later) when no answer came; one that waited in
// the queue for most of that half second is answered after its
// retransmission left, so the server reads, and the phone sends,
// everything twice, exactly when there is too much already. On Linux the
// kernel stamps each datagram when it arrives (SO_TIMESTAMPNS); a reader
// that takes a REGISTER, or a new call's first INVITE, which waited longer
// than its limit drops it unread and silently: its sender's retransmission
// is behind it, and the readers catch up with the queue at the cost of one
// read per dropped datagram instead of a parse and a digest. The effect is
// a controlled delay (as CoDel does for routers): the answers that are sent
// are fresh, the queue holds at most a few hundred milliseconds of work,
// and what is under way (an INVITE with credentials, ACK, BYE, CANCEL,
// answers) goes before what would start something new.
const (
	// staleFresh is the limit for a REGISTER without credentials (the first
	// of a registration, answered with a challenge): dropping it costs
	// nothing but the read.
	staleFresh = 200 * time.Millisecond
	// staleCredentials is the limit for a REGISTER with an Authorization
	// header (the second half of a registration whose challenge was
	// already paid for): it is kept longer, so that under overload
	// registrations under way complete before new ones start.
	staleCredentials = 400 * time.Millisecond
	// staleClockStep: a wait longer than this is taken for a step of the
	// wall clock (the kernel's stamp is wall time), not a queue; such a
	// datagram is read.
	staleClockStep = 30 * time.Second
	// staleLogEvery is how often, at most, dropping is logged (with the
	// count).
	staleLogEvery = 10 * time.Second
)

var (
	registerPrefix      = []byte("REGISTER ")
	invitePrefix        = []byte("INVITE ")
	authorizationHeader = []byte("\nAuthorization:")
	authorizationLower  = []byte("\nauthorization:")
	proxyAuthHeader     = []byte("\nProxy-Authorization:")
	proxyAuthLower      = []byte("\nproxy-authorization:")
)

// staleLimit returns how long the datagram b may wait in the socket's
// queue before it is dropped unread; 0: it is never dropped. A REGISTER
// has staleFresh, or staleCredentials with an Authorization header; an
// INVITE that starts a call (no To tag) without a Proxy-Authorization
// header (it would be answered 407) has staleFresh; everything else
// (an INVITE with credentials or in a dialog, ACK, BYE, CANCEL, answers)
// is never dropped. Headers in unusual spellings only make a REGISTER's
// limit shorter and an INVITE's absent.
func staleLimit(b []byte) time.Duration {
	switch {
	case bytes.HasPrefix(b, registerPrefix):
		if hasAuthorizationHeader(b) {
			return staleCredentials
		}
		return staleFresh
	case bytes.HasPrefix(b, invitePrefix):
		if bytes.Contains(b, proxyAuthHeader) || bytes.Contains(b, proxyAuthLower) || !toWithoutTag(b) {
			return 0
		}
		return staleFresh
	}
	return 0
}

// toWithoutTag reports whether the message head b has exactly one To
// header (t: in compact form, any case) and it carries no tag parameter:
// the request starts a dialog. Anything it cannot tell reports false.
func toWithoutTag(b []byte) bool {
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		b = b[:i]
	}
	found := false
	for line := range bytes.SplitSeq(b, []byte("\r\n")) {
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name := bytes.TrimRight(line[:colon], " \t")
		if !bytes.EqualFold(name, []byte("to")) && !bytes.EqualFold(name, []byte("t")) {
			continue
		}
		if found || bytes.Contains(bytes.ToLower(line[colon:]), []byte("tag=")) {
			return false
		}
		found = true
	}
	return found
}

// hasAuthorizationHeader is a cheap look for an Authorization header in
// its usual spellings (as the guard's stateless path looks):
// "Proxy-Authorization" does not count. One it misses only gets the
// shorter limit.
func hasAuthorizationHeader(b []byte) bool {
	return bytes.Contains(b, authorizationHeader) || bytes.Contains(b, authorizationLower)
}

// isStale reports whether datagram b, stamped arrived by the kernel (zero:
// no stamp), has waited past its limit (staleLimit); now is asked only for
// a REGISTER or an INVITE, and the headers are looked at only when the wait
// is past the shorter limit.
func isStale(b []byte, arrived time.Time, now func() time.Time) bool {
	if arrived.IsZero() || !bytes.HasPrefix(b, registerPrefix) && !bytes.HasPrefix(b, invitePrefix) {
		return false
	}
	wait := now().Sub(arrived)
	switch {
	case wait <= staleFresh || wait >= staleClockStep:
		return false
	}
	limit := staleLimit(b)
	return limit > 0 && wait > limit
}

// staleStats counts the requests dropped as stale, over all the UDP
// sockets of a Stack, and logs them at most every staleLogEvery.
type staleStats struct {
	log    *slog.Logger
	n      atomic.Int64
	logged atomic.Int64 // unix ns of the last log line
}

// dropped counts one request dropped as stale.
func (s *staleStats) dropped() {
	n := s.n.Add(1)
	now := time.Now().UnixNano()
	if last := s.logged.Load(); now-last >= int64(staleLogEvery) && s.logged.CompareAndSwap(last, now) && s.log != nil {
		s.log.Warn("overloaded: REGISTERs and new calls' INVITEs that waited too long in the UDP socket's queue were dropped unread; their senders retransmit them",
			"dropped_so_far", n, "limit_new", staleFresh, "limit_with_credentials", staleCredentials)
	}
}

// StaleDropped returns how many requests the UDP readers dropped unread so
// far because they had waited in the socket's queue past their limit
// (REGISTERs: 200 ms without credentials, 400 ms with; a new call's INVITE
// without credentials: 200 ms; Linux only).
func (s *Stack) StaleDropped() int64 {
	if s.stale == nil {
		return 0
	}
	return s.stale.n.Load()
}

// stampedWrites wraps a UDP socket for direct writes (directWrites) and
// stamped reads (stampReads).
func stampedWrites(c net.PacketConn, stale *staleStats) net.PacketConn {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return directWrites(c)
	}
	return stampReads(directWrites(c), uc, stale)
}
