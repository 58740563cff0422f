// Package sipreply writes SIP answers to parsed requests straight into
// bytes (RFC 3261 §8.2.6), for the answers switchboard sends without a
// sipgo transaction: the registrar's and the proxy's stateless 407.
//
// An answer is what sipgo's sip.NewResponseFromRequest followed by
// Response.StringWrite would produce, byte for byte (every Via in order,
// the first with received and rport filled in when it asks for rport
// (RFC 3581), then From, To with a tag, Call-ID, CSeq and Content-Length:
// 0, then the caller's headers), without building a sip.Response: no
// header is cloned and the bytes are written once, into a pooled buffer,
// and copied out at their size. The packet guard's answers to messages it
// does not parse (refusals of malformed ones, overload sheds) are written
// from their raw bytes instead (guard's buildReply): they have no parsed
// request to copy from.
//
// An answer that must go through a sipgo server transaction (TCP, TLS,
// WebSocket) is handed over as the sip.Response sipgo would have built
// (Answer.Response): the same headers, no parse of the bytes.
//
// Example:
//
//	a := w.Begin(req, 401, "Unauthorized", "")
//	a.Header("WWW-Authenticate", challenge)
//	a.Header("Server", "switchboard")
//	b := a.Bytes() // a is not used after this
package sipreply

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// sizeHint covers a REGISTER's 401 (two challenges) or 200 with a few
// contacts; a pooled buffer grown past 4 times this is dropped.
const sizeHint = 1024

// Writer hands out Answers from a pool of buffers. The zero Writer is
// ready to use; a Writer is safe for concurrent use.
type Writer struct {
	pool sync.Pool // of *Answer
}

// Answer is one answer being written. It is not safe for concurrent use
// and is not used after Bytes or Response.
type Answer struct {
	b   []byte
	w   *Writer
	rnd [16]byte // a UUID tag's random bits (here: read without an allocation)

	// For Response: the request, the status line, the caller's To tag
	// (when added) and header lines.
	req    *sip.Request
	status int
	reason string
	tag    string
	extra  []line
}

// line is one header line of an Answer: name and value, or (name "")
// where "name: value" is in its b.
type line struct {
	name, value       string
	start, colon, end int
}

// WriteString appends s (for sipgo's StringWrite methods).
func (a *Answer) WriteString(s string) (int, error) {
	a.b = append(a.b, s...)
	return len(s), nil
}

// Begin starts the answer status reason to req: the status line, every
// Via, From, To, Call-ID and CSeq of req, and Content-Length: 0. A To
// without a tag gets one, unless status is 100: tag, or a random UUID (as
// sipgo's) when tag is "". A header req lacks is left out. The first Via
// gets received and rport from req.Source() when it has an empty rport
// parameter.
func (w *Writer) Begin(req *sip.Request, status int, reason, tag string) *Answer {
	a, _ := w.pool.Get().(*Answer)
	if a == nil {
		a = &Answer{b: make([]byte, 0, sizeHint), w: w}
	}
	// Written to a local slice, stored in a (on the heap) only around
	// sipgo's StringWrite calls and at the end: each store is a GC write
	// barrier.
	a.req, a.status, a.reason, a.tag, a.extra = req, status, reason, "", a.extra[:0]
	b := append(a.b[:0], req.SipVersion...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, reason...)
	b = append(b, "\r\n"...)
	first := true
	for _, h := range req.Headers() {
		if v, ok := h.(*sip.ViaHeader); ok {
			b = appendVia(b, v, first, req.Source())
			first = false
		}
	}
	if h := req.From(); h != nil {
		a.b = b
		h.StringWrite(a)
		b = append(a.b, "\r\n"...)
	}
	if h := req.To(); h != nil {
		a.b = b
		h.StringWrite(a)
		b = a.b
		if status != 100 && !h.Params.Has("tag") {
			b = append(b, ";tag="...)
			if tag == "" {
				b = appendUUID(b, &a.rnd)
			} else {
				a.tag = tag
				b = appendParamValue(b, tag)
			}
		}
		b = append(b, "\r\n"...)
	}
	if h := req.CallID(); h != nil {
		b = append(b, "Call-ID: "...)
		b = append(b, *h...)
		b = append(b, "\r\n"...)
	}
	if h := req.CSeq(); h != nil {
		b = append(b, "CSeq: "...)
		b = strconv.AppendUint(b, uint64(h.SeqNo), 10)
		b = append(b, ' ')
		b = append(b, h.MethodName...)
		b = append(b, "\r\n"...)
	}
	a.b = append(b, "Content-Length: 0\r\n"...)
	return a
}

// Header appends the header line "name: value".
func (a *Answer) Header(name, value string) {
	b := append(a.b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	a.b = append(b, "\r\n"...)
	a.extra = append(a.extra, line{name: name, value: value})
}

// HeaderInt appends the header line "name: n".
func (a *Answer) HeaderInt(name string, n int) {
	l := line{start: len(a.b)}
	b := append(a.b, name...)
	l.colon = len(b)
	b = append(b, ": "...)
	b = strconv.AppendInt(b, int64(n), 10)
	l.end = len(b)
	a.b = append(b, "\r\n"...)
	a.extra = append(a.extra, l)
}

// Contact appends "Contact: <uri>;expires=N", a registrar's binding.
func (a *Answer) Contact(uri string, expires int) {
	l := line{start: len(a.b), colon: len(a.b) + len("Contact")}
	b := append(a.b, "Contact: <"...)
	b = append(b, uri...)
	b = append(b, ">;expires="...)
	b = strconv.AppendInt(b, int64(expires), 10)
	l.end = len(b)
	a.b = append(b, "\r\n"...)
	a.extra = append(a.extra, l)
}

// Status returns the answer's status code.
func (a *Answer) Status() int { return a.status }

// Bytes ends the header section and returns the answer in a slice of its
// own, of its size; a goes back to its Writer's pool.
func (a *Answer) Bytes() []byte {
	a.b = append(a.b, "\r\n"...)
	out := make([]byte, len(a.b))
	copy(out, a.b)
	a.release()
	return out
}

// Response returns the answer as the sip.Response that
// sip.NewResponseFromRequest and the same header lines make, for a sipgo
// server transaction: its String is what Bytes returns, but for a random
// To tag (sipgo's own UUID). a goes back to its Writer's pool.
func (a *Answer) Response() *sip.Response {
	res := sip.NewResponseFromRequest(a.req, a.status, a.reason, nil)
	if to := res.To(); to != nil && a.tag != "" {
		to.Params.Add("tag", a.tag) // else sipgo's own random one, as the UUID written
	}
	for _, l := range a.extra {
		if l.name == "" {
			l.name, l.value = string(a.b[l.start:l.colon]), string(a.b[l.colon+2:l.end])
		}
		res.AppendHeader(sip.NewHeader(l.name, l.value))
	}
	a.release()
	return res
}

// release puts a back into its Writer's pool (unless it grew large).
func (a *Answer) release() {
	a.req = nil
	clear(a.extra) // the caller's strings
	if cap(a.b) <= 4*sizeHint && cap(a.extra) <= 64 {
		a.w.pool.Put(a)
	}
}

// appendVia appends one Via line as sipgo writes it; stamp: the first Via,
// which gets received and rport (RFC 3581 §4) when its rport is empty.
func appendVia(b []byte, v *sip.ViaHeader, stamp bool, source string) []byte {
	var host, port string
	if stamp {
		rport, ok := v.Params.Get("rport")
		stamp = ok && rport == ""
		if stamp {
			host, port, _ = net.SplitHostPort(source)
		}
	}
	b = append(b, "Via: "...)
	b = append(b, v.ProtocolName...)
	b = append(b, '/')
	b = append(b, v.ProtocolVersion...)
	b = append(b, '/')
	b = append(b, v.Transport...)
	b = append(b, ' ')
	if isIPv6(v.Host) {
		b = append(b, '[')
		b = append(b, v.Host...)
		b = append(b, ']')
	} else {
		b = append(b, v.Host...)
	}
	if v.Port > 0 {
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(v.Port), 10)
	}
	// sipgo's HeaderParams.Add: the first rport and received are set in
	// place, a missing received is appended.
	rportDone, receivedDone := !stamp, !stamp
	for _, kv := range v.Params {
		b = append(b, ';')
		val := kv.V
		if !rportDone && kv.K == "rport" {
			val, rportDone = port, true
		} else if !receivedDone && kv.K == "received" {
			val, receivedDone = host, true
		}
		b = appendParam(b, kv.K, val)
	}
	if !receivedDone {
		b = append(b, ';')
		b = appendParam(b, "received", host)
	}
	return append(b, "\r\n"...)
}

// appendParam appends k[=v] as sipgo's HeaderParams.ToStringWrite does:
// no value, no '='; a value with a space or tab is quoted.
func appendParam(b []byte, k, v string) []byte {
	b = append(b, k...)
	if v == "" {
		return b
	}
	b = append(b, '=')
	return appendParamValue(b, v)
}

func appendParamValue(b []byte, v string) []byte {
	if strings.ContainsAny(v, " \t") {
		b = append(b, '"')
		b = append(b, v...)
		return append(b, '"')
	}
	return append(b, v...)
}

// appendUUID appends a random (version 4, RFC 9562) UUID in its text
// form, the tag sipgo gives an answer's To (google/uuid's New), using u
// for its bits.
func appendUUID(b []byte, u *[16]byte) []byte {
	if _, err := rand.Read(u[:]); err != nil {
		panic("sipreply: crypto/rand: " + err.Error()) // as uuid.New
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var t [36]byte
	hex.Encode(t[0:8], u[0:4])
	t[8] = '-'
	hex.Encode(t[9:13], u[4:6])
	t[13] = '-'
	hex.Encode(t[14:18], u[6:8])
	t[18] = '-'
	hex.Encode(t[19:23], u[8:10])
	t[23] = '-'
	hex.Encode(t[24:], u[10:])
	return append(b, t[:]...)
}

// isIPv6 reports whether a Via host is an IPv6 address without brackets
// (sipgo writes those in brackets), as net.ParseIP would tell it.
func isIPv6(host string) bool {
	if strings.IndexByte(host, ':') < 0 {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Zone() == "" && !ip.Is4In6() && ip.Is6()
}

// ForTransaction adapts send, which takes a *sip.Response (a sipgo
// server transaction's Respond, with whatever wraps it), to a sender of
// Answers (see Answer.Response).
func ForTransaction(send func(*sip.Response) error) func(*Answer) error {
	return func(a *Answer) error { return send(a.Response()) }
}
