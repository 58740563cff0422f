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
	"fmt"
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
// and is not used after Bytes.
type Answer struct {
	b   []byte
	w   *Writer
	rnd [16]byte // a UUID tag's random bits (here: read without an allocation)
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
}

// HeaderInt appends the header line "name: n".
func (a *Answer) HeaderInt(name string, n int) {
	b := append(a.b, name...)
	b = append(b, ": "...)
	b = strconv.AppendInt(b, int64(n), 10)
	a.b = append(b, "\r\n"...)
}

// Contact appends "Contact: <uri>;expires=N", a registrar's binding.
func (a *Answer) Contact(uri string, expires int) {
	b := append(a.b, "Contact: <"...)
	b = append(b, uri...)
	b = append(b, ">;expires="...)
	b = strconv.AppendInt(b, int64(expires), 10)
	a.b = append(b, "\r\n"...)
}

// Bytes ends the header section and returns the answer in a slice of its
// own, of its size; a goes back to its Writer's pool.
func (a *Answer) Bytes() []byte {
	a.b = append(a.b, "\r\n"...)
	out := make([]byte, len(a.b))
	copy(out, a.b)
	if cap(a.b) <= 4*sizeHint {
		a.w.pool.Put(a)
	}
	return out
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
// server transaction's Respond, with whatever wraps it), to answers
// written as bytes: each is parsed back into a response addressed as
// sip.NewResponseFromRequest addresses it (req's transport and source).
// Only the transports that need a transaction (TCP, TLS, WebSocket) pay
// for the parse; an answer that does not parse is not sent (error).
func ForTransaction(req *sip.Request, send func(*sip.Response) error) func([]byte) error {
	return func(b []byte) error {
		msg, err := sip.ParseMessage(b)
		if err != nil {
			return fmt.Errorf("sipreply: answer does not parse: %w", err)
		}
		res, ok := msg.(*sip.Response)
		if !ok {
			return fmt.Errorf("sipreply: answer parsed as %T", msg)
		}
		res.SetTransport(req.Transport())
		res.SetDestination(req.Source())
		return send(res)
	}
}
