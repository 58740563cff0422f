// Package trace captures the SIP messages a running server receives and
// sends, for `switchboard trace`: a bounded ring of recent messages and
// live subscribers, each over a bounded channel.
//
// Capture is off while nobody subscribes: Record then costs one atomic
// load and copies nothing. The first Subscribe turns it on, the last
// Close turns it off; the ring is kept RingKeep longer (for the doctor's
// evidence and a trace restarted soon after) and then released.
package trace

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of New's bounds.
const (
	DefaultMaxMessages = 10000
	DefaultMaxBytes    = 16 << 20
	// RingKeep is how long the ring survives the last subscriber.
	RingKeep = 10 * time.Minute
	// SubBuffer is how many messages a subscriber may fall behind before
	// it loses them.
	SubBuffer = 1024
)

// Directions of a Message.
const (
	In  = "in"
	Out = "out"
)

// Message is one captured SIP message (or, over TCP, one read or write
// of the stream: usually one message). Its JSON is the stable form
// `switchboard trace --json` prints.
type Message struct {
	Time      time.Time      `json:"time"`
	Direction string         `json:"direction"` // In or Out
	Transport string         `json:"transport"` // "UDP" or "TCP"
	Local     netip.AddrPort `json:"local"`
	Remote    netip.AddrPort `json:"remote"`
	FirstLine string         `json:"first_line"`
	CallID    string         `json:"call_id"`
	Method    string         `json:"method"` // the CSeq method (also for responses)
	Text      string         `json:"message"`

	users []string // user parts of the Request-URI, From, To and Contact
}

// Tracer is the capture point. The zero value is not usable; a nil
// *Tracer is (it records nothing).
type Tracer struct {
	active atomic.Int32 // subscribers

	maxMsgs, maxBytes int

	mu    sync.Mutex
	ring  []Message         // oldest first, len ≤ maxMsgs; guarded by mu
	bytes int               // text bytes in ring; guarded by mu
	subs  map[*Sub]struct{} // guarded by mu
	gen   int               // bumped on each subscribe, so a stale release timer does nothing; guarded by mu
}

// New returns a Tracer whose ring holds at most maxMsgs messages and
// maxBytes bytes of message text (≤ 0: the defaults).
func New(maxMsgs, maxBytes int) *Tracer {
	if maxMsgs <= 0 {
		maxMsgs = DefaultMaxMessages
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	return &Tracer{maxMsgs: maxMsgs, maxBytes: maxBytes, subs: map[*Sub]struct{}{}}
}

// Active reports whether anyone traces (Record copies messages).
func (t *Tracer) Active() bool { return t != nil && t.active.Load() > 0 }

// Record captures data, a message received (In) or sent (Out) over
// transport between local and remote, when someone traces; otherwise it
// returns at once without allocating. data is copied; it is never kept.
// It never blocks on a subscriber.
func (t *Tracer) Record(dir, transport string, local, remote net.Addr, data []byte) {
	if t == nil || t.active.Load() == 0 {
		return
	}
	if onlyCRLF(data) {
		return // keep-alive
	}
	m := Message{Time: time.Now(), Direction: dir, Transport: transport,
		Local: addrPort(local), Remote: addrPort(remote), Text: string(data)}
	summarize(&m)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pushLocked(m)
	for s := range t.subs {
		select {
		case s.c <- m:
		default:
			s.lost.Add(1)
		}
	}
}

func (t *Tracer) pushLocked(m Message) {
	if len(m.Text) > t.maxBytes {
		return
	}
	for len(t.ring) > 0 && (len(t.ring) >= t.maxMsgs || t.bytes+len(m.Text) > t.maxBytes) {
		t.bytes -= len(t.ring[0].Text)
		t.ring[0] = Message{}
		t.ring = t.ring[1:]
	}
	t.ring = append(t.ring, m)
	t.bytes += len(m.Text)
}

// Recent returns the buffered messages that f matches, oldest first, at
// most limit (the newest ones; limit ≤ 0: all).
func (t *Tracer) Recent(f Filter, limit int) []Message {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Message
	for i := range t.ring {
		m := t.ring[i]
		if f.Match(&m) {
			out = append(out, m)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// Sub is one subscriber: it receives the messages recorded after
// Subscribe on C until Close.
type Sub struct {
	t    *Tracer
	c    chan Message
	lost atomic.Int64
	once sync.Once
}

// C delivers the messages.
func (s *Sub) C() <-chan Message { return s.c }

// Lost returns how many messages the subscriber lost so far because it
// fell more than its buffer behind.
func (s *Sub) Lost() int64 { return s.lost.Load() }

// Subscribe turns capture on (if it was off) and returns a subscriber with
// room for buf messages (≤ 0: SubBuffer).
func (t *Tracer) Subscribe(buf int) *Sub {
	if buf <= 0 {
		buf = SubBuffer
	}
	s := &Sub{t: t, c: make(chan Message, buf)}
	t.mu.Lock()
	t.subs[s] = struct{}{}
	t.gen++
	t.active.Add(1)
	t.mu.Unlock()
	return s
}

// Close unsubscribes; the last one turns capture off and releases the
// ring RingKeep later unless someone subscribes meanwhile. C is not
// closed.
func (s *Sub) Close() {
	s.once.Do(func() {
		t := s.t
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(t.subs, s)
		if t.active.Add(-1) > 0 {
			return
		}
		gen := t.gen
		time.AfterFunc(RingKeep, func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			if t.gen == gen && t.active.Load() == 0 {
				t.ring, t.bytes = nil, 0
			}
		})
	})
}

func onlyCRLF(b []byte) bool {
	for _, c := range b {
		if c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// addrPort is a's address and port, IPv4 unmapped.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	case nil:
		return ap
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
