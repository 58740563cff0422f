package guard

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// Retransmission absorption for the REGISTERs of the stateless path (over
// UDP, without sipgo transactions). A phone retransmits a REGISTER every
// 0.5, 1, 2, 4 s until it gets an answer; when the server is slow, each
// retransmission handled as a new request is more work exactly when there
// is already too much (and a second 401 with a fresh nonce reaches a phone
// that has moved on). The table remembers each REGISTER from the moment it
// is taken until a second or two after its answer: a retransmission of one
// in hand is dropped, one of an answered REGISTER gets the same answer
// again, as a server transaction would do.
const (
	// rtxKeep is how long an answer is kept at least (at most twice
	// that): retransmissions crossing a late answer on the wire (a phone
	// retransmits 0.5, 1.5, 3.5 s after its first try), and those of a
	// phone whose answer was lost once.
	rtxKeep = 2 * time.Second
	// rtxMax caps the REGISTERs remembered per generation (with their
	// answers of 400-500 bytes, about 40 MiB at most each: 32,000
	// REGISTERs/s, 16,000 registrations/s, fit); beyond it new ones are
	// not remembered (they are handled as before: idempotently, but a
	// retransmitted REGISTER with credentials then reuses its nonce count
	// and gets a new challenge). At 32,768, measured at 13,600
	// registrations/s, 267 of 166,000 registrations failed that way.
	rtxMax = 1 << 16
)

// rtxKey names one REGISTER: the address it came from and a hash of the
// whole datagram. A retransmission repeats its request byte for byte (RFC
// 3261 §17.1.2.2); anything that differs, even only in its credentials, is
// a new request. The source is part of the key, so no address ever gets
// another's answer.
type rtxKey struct {
	ap netip.AddrPort
	h  uint64
}

// rtxEntry is one remembered REGISTER; answer is nil while it is in hand.
type rtxEntry struct {
	answer []byte // guarded by retrans.mu
}

// retrans is the table: two generations, swapped every rtxKeep, so that
// nothing needs a timer per entry.
type retrans struct {
	seed maphash.Seed
	now  func() time.Time

	mu      sync.Mutex
	cur     map[rtxKey]*rtxEntry // guarded by mu
	old     map[rtxKey]*rtxEntry // guarded by mu
	rotated time.Time            // guarded by mu
}

func newRetrans(now func() time.Time) *retrans {
	return &retrans{seed: maphash.MakeSeed(), now: now, cur: map[rtxKey]*rtxEntry{},
		old: map[rtxKey]*rtxEntry{}, rotated: now()}
}

// key returns the key of the datagram msg from ap.
func (r *retrans) key(ap netip.AddrPort, msg []byte) rtxKey {
	return rtxKey{ap: ap, h: maphash.Bytes(r.seed, msg)}
}

// begin looks k up. A new REGISTER is remembered as in hand: ok is true
// and e is its entry (nil when the table is full: not remembered). A
// known one returns ok false and its answer (nil while it is in hand).
func (r *retrans) begin(k rtxKey) (e *rtxEntry, answer []byte, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rotateLocked()
	if e := r.cur[k]; e != nil {
		return nil, e.answer, false
	}
	if e := r.old[k]; e != nil {
		return nil, e.answer, false
	}
	if len(r.cur) >= rtxMax {
		return nil, nil, true
	}
	e = &rtxEntry{}
	r.cur[k] = e
	return e, nil, true
}

// answered records e's answer (e may be nil: not remembered).
func (r *retrans) answered(e *rtxEntry, answer []byte) {
	if e == nil {
		return
	}
	r.mu.Lock()
	e.answer = answer
	r.mu.Unlock()
}

// end is called when the REGISTER of e was handled (or shed): one that got
// no answer is forgotten, so that its retransmission is handled afresh.
func (r *retrans) end(k rtxKey, e *rtxEntry) {
	if e == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.answer != nil {
		return
	}
	if r.cur[k] == e {
		delete(r.cur, k)
	}
	if r.old[k] == e {
		delete(r.old, k)
	}
}

// rotateLocked drops the older generation once rtxKeep has passed; the
// REGISTERs still in hand in it move to the current one.
func (r *retrans) rotateLocked() {
	now := r.now()
	if now.Sub(r.rotated) < rtxKeep {
		return
	}
	r.rotated = now
	for k, e := range r.old {
		if e.answer == nil {
			if _, ok := r.cur[k]; !ok {
				r.cur[k] = e
			}
		}
	}
	r.old, r.cur = r.cur, make(map[rtxKey]*rtxEntry, len(r.cur))
}

// size returns the number of REGISTERs remembered (for tests).
func (r *retrans) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cur) + len(r.old)
}
