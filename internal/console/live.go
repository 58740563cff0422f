package console

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Hub fans the journal's events out to the browsers' SSE streams: the one
// live channel of the console.
//
// Publish runs on the SIP hot path (the journal's tap) and never blocks or
// wakes anyone: with no stream open it returns at once; otherwise it
// encodes the event once and puts it in a ring of the last Ring events.
// Each stream's handler wakes every Tick, takes what is new since its
// cursor and writes it in one burst, so 50 open browsers cost 50 writes per
// tick, not 50 per event. A stream that fell more than Ring (or MaxBurst)
// events behind (a flood, or a slow browser) gets one "resync" event
// instead, and the page re-renders what it shows; a browser that does not
// take a write within WriteTimeout is dropped (its EventSource reconnects).
type Hub struct {
	// MaxStreams caps the open streams; more are answered 503.
	MaxStreams int
	// Tick is how often a stream sends what is new (the added latency).
	Tick time.Duration
	// MaxBurst is the most events one tick sends; beyond, a resync.
	MaxBurst int
	// Heartbeat is how often an idle stream gets a comment line, so
	// proxies keep it open and a dead peer is noticed.
	Heartbeat time.Duration
	// WriteTimeout drops a stream whose browser does not take a write.
	WriteTimeout time.Duration

	mu      sync.Mutex // guards everything below
	ring    [][]byte   // encoded events; event n is at ring[n%len(ring)]
	seq     uint64     // events published while a stream was open
	streams int
	dropped int64 // streams dropped for a stalled write
	resyncs int64 // resync events sent
	closed  bool
	done    chan struct{} // closed by Close
}

// Ring is how many recent events the hub keeps for the streams.
const Ring = 1024

// NewHub returns a hub with its defaults: 64 streams, a tick of 100 ms,
// bursts of at most 256 events, a heartbeat every 15 s, writes dropped
// after 10 s.
func NewHub() *Hub {
	return &Hub{MaxStreams: 64, Tick: 100 * time.Millisecond, MaxBurst: 256, Heartbeat: 15 * time.Second,
		WriteTimeout: 10 * time.Second, ring: make([][]byte, Ring), done: make(chan struct{})}
}

// Publish queues e for the open streams without blocking.
func (h *Hub) Publish(e store.Event) {
	h.mu.Lock()
	open := h.streams > 0
	h.mu.Unlock()
	if !open {
		return
	}
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	msg := make([]byte, 0, len(b)+24)
	msg = append(msg, "event: journal\ndata: "...)
	msg = append(msg, b...)
	msg = append(msg, "\n\n"...)
	h.mu.Lock()
	h.ring[h.seq%uint64(len(h.ring))] = msg
	h.seq++
	h.mu.Unlock()
}

// Streams returns how many streams are open, how many were dropped for a
// stalled write, and how many resyncs were sent.
func (h *Hub) Streams() (open int, dropped, resyncs int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.streams, h.dropped, h.resyncs
}

// Close ends every open stream and refuses new ones (the server shuts
// down: an open stream would otherwise hold a graceful shutdown).
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
}

// open registers a stream and returns its cursor.
func (h *Hub) open() (uint64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.streams >= h.MaxStreams {
		return 0, false
	}
	h.streams++
	return h.seq, true
}

func (h *Hub) leave(dropped bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.streams--
	if dropped {
		h.dropped++
	}
}

// pull returns the events after cursor and the new cursor; resync is true
// (and msgs nil) when the stream is too far behind to be sent them all.
func (h *Hub) pull(cursor uint64) (msgs [][]byte, next uint64, resync bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.seq - cursor
	switch {
	case n == 0:
		return nil, cursor, false
	case n > uint64(len(h.ring)) || n > uint64(h.MaxBurst):
		h.resyncs++
		return nil, h.seq, true
	}
	msgs = make([][]byte, 0, n)
	for i := cursor; i < h.seq; i++ {
		msgs = append(msgs, h.ring[i%uint64(len(h.ring))])
	}
	return msgs, h.seq, false
}

// resyncMsg tells the page to re-render what it shows.
var resyncMsg = []byte("event: resync\ndata: {}\n\n")

// ServeHTTP streams events as text/event-stream until the client goes,
// a write stalls, the hub closes, or the request's context ends.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	cursor, ok := h.open()
	if !ok {
		http.Error(w, "too many live streams are open: close other console tabs", http.StatusServiceUnavailable)
		return
	}
	dropped := false
	defer func() { h.leave(dropped) }()
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(h.WriteTimeout))
		if _, err := w.Write(b); err != nil {
			dropped = true
			return false
		}
		if err := rc.Flush(); err != nil {
			dropped = true
			return false
		}
		return true
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// retry: how long the browser waits before it reconnects.
	if !write([]byte("retry: 2000\n: open\n\n")) {
		return
	}
	tick := time.NewTicker(h.Tick)
	defer tick.Stop()
	idle := time.Now()
	var buf []byte
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.done:
			return
		case <-tick.C:
		}
		msgs, next, resync := h.pull(cursor)
		cursor = next
		buf = buf[:0]
		if resync {
			buf = append(buf, resyncMsg...)
		}
		for _, m := range msgs {
			buf = append(buf, m...)
		}
		if len(buf) == 0 {
			if time.Since(idle) < h.Heartbeat {
				continue
			}
			buf = append(buf, ": ping\n\n"...)
		}
		if !write(buf) {
			return
		}
		idle = time.Now()
	}
}
