package registrar

import (
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// findBinding returns the index in bs of the binding a REGISTER's contact
// updates, or -1 for a new one, and whether it is a restarted phone's
// binding that the contact replaces:
//
//   - the binding whose Contact is the same URI (RFC 3261 §10.3 step 7,
//     URIs compared as §19.1.4 says: not as strings);
//   - else, a binding registered from the same source address, port and
//     transport under another Call-ID: one socket is one phone, so that is
//     the same phone after a restart (a new Call-ID, and for many phones a
//     new Contact), and its old binding is a ghost that would keep ringing
//     and count against the extension's registrations.
func findBinding(bs []store.Binding, contact, source, transport, callID string) (idx int, restarted bool) {
	if len(bs) == 0 {
		return -1, false // the first binding: nothing to parse the contact for
	}
	for i := range bs {
		if bs[i].Contact == contact {
			return i, false
		}
	}
	var u sip.Uri
	parsed := sip.ParseUri(contact, &u) == nil
	if parsed {
		for i := range bs {
			var o sip.Uri
			if sip.ParseUri(bs[i].Contact, &o) == nil && sameURI(&u, &o) {
				return i, false
			}
		}
	}
	for i := range bs {
		if bs[i].Source == source && strings.EqualFold(bs[i].Transport, transport) && bs[i].CallID != callID {
			return i, true
		}
	}
	return -1, false
}

// sameURI compares two SIP URIs by the rules of RFC 3261 §19.1.4: scheme
// and host ignore case, user and password do not; a port is compared as
// written (an omitted default port differs from an explicit one); the
// transport, user, ttl, method and maddr parameters must match when either
// URI has them, other parameters only when both have them; header
// components must match.
func sameURI(a, b *sip.Uri) bool {
	if !strings.EqualFold(a.Scheme, b.Scheme) || a.User != b.User || a.Password != b.Password ||
		!strings.EqualFold(a.Host, b.Host) || a.Port != b.Port {
		return false
	}
	ap, bp := lowerParams(a.UriParams), lowerParams(b.UriParams)
	for _, k := range []string{"transport", "user", "ttl", "method", "maddr"} {
		av, aok := ap[k]
		bv, bok := bp[k]
		if aok != bok || !strings.EqualFold(av, bv) {
			return false
		}
	}
	for k, av := range ap {
		if bv, ok := bp[k]; ok && !strings.EqualFold(av, bv) {
			return false
		}
	}
	ah, bh := lowerParams(a.Headers), lowerParams(b.Headers)
	if len(ah) != len(bh) {
		return false
	}
	for k, av := range ah {
		if bv, ok := bh[k]; !ok || av != bv {
			return false
		}
	}
	return true
}

func lowerParams(p sip.HeaderParams) map[string]string {
	m := make(map[string]string, len(p))
	for _, kv := range p {
		m[strings.ToLower(kv.K)] = kv.V
	}
	return m
}
