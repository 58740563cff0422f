package sipstack

import (
	"bytes"
	"crypto/tls"
	"reflect"
	"unsafe"
)

// crypto/tls keeps a connection's read buffers for its whole life: the
// record buffer (rawInput) grown to the largest record read, and the
// handshake buffer (hand) grown to the largest handshake message. Both
// are sized by the ClientHello, about 1.7 KiB each since clients offer a
// post-quantum key share (X25519MLKEM768): 3.5 KiB per idle TLS or WSS
// connection, a third of its heap, with no bytes in them. crypto/tls has
// no API to release them, so trimTLS drops them when they are empty, by
// the fields' names. tlsLayout checks those fields once; on a Go whose
// crypto/tls differs it finds none and trimTLS does nothing
// (TestIdleConnHoldsNoBuffers then fails, so the change is noticed).

// tlsBuffers are the offsets of crypto/tls.Conn's read buffers.
type tlsBuffers struct {
	ok                    bool
	rawInput, input, hand uintptr
}

// tlsLayout is found once at start-up and never changed.
var tlsLayout = findTLSLayout()

func findTLSLayout() tlsBuffers {
	t := reflect.TypeFor[tls.Conn]()
	field := func(name string, want reflect.Type) (uintptr, bool) {
		f, ok := t.FieldByName(name)
		if !ok || f.Type != want || len(f.Index) != 1 {
			return 0, false
		}
		return f.Offset, true
	}
	var l tlsBuffers
	var ok1, ok2, ok3 bool
	l.rawInput, ok1 = field("rawInput", reflect.TypeFor[bytes.Buffer]())
	l.input, ok2 = field("input", reflect.TypeFor[bytes.Reader]())
	l.hand, ok3 = field("hand", reflect.TypeFor[bytes.Buffer]())
	l.ok = ok1 && ok2 && ok3
	return l
}

// trimTLS releases c's empty read buffers (a later read allocates them
// again). The caller must be the only one reading c, with no Read or
// Handshake in progress: those are the only users of these fields.
func trimTLS(c *tls.Conn) {
	if !tlsLayout.ok || c == nil {
		return
	}
	p := unsafe.Pointer(c)
	raw := (*bytes.Buffer)(unsafe.Add(p, tlsLayout.rawInput))
	in := (*bytes.Reader)(unsafe.Add(p, tlsLayout.input))
	hand := (*bytes.Buffer)(unsafe.Add(p, tlsLayout.hand))
	if raw.Len() == 0 && in.Len() == 0 {
		// input reads from rawInput's array: both go.
		*in = bytes.Reader{}
		*raw = bytes.Buffer{}
	}
	if hand.Len() == 0 {
		*hand = bytes.Buffer{}
	}
}

// tlsHeld returns the capacity crypto/tls holds in c's read buffers (for
// tests); -1 when the layout is unknown.
func tlsHeld(c *tls.Conn) int {
	if !tlsLayout.ok {
		return -1
	}
	p := unsafe.Pointer(c)
	raw := (*bytes.Buffer)(unsafe.Add(p, tlsLayout.rawInput))
	hand := (*bytes.Buffer)(unsafe.Add(p, tlsLayout.hand))
	in := (*bytes.Reader)(unsafe.Add(p, tlsLayout.input))
	return raw.Cap() + hand.Cap() + int(in.Size())
}
