package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Hub fans the journal's events out to the browsers' SSE streams: the one
// live channel of the console. Publish is called on the SIP hot path (the
// journal's tap) and never blocks: each stream has a bounded buffer, and a
// stream whose buffer is full (a slow or stalled browser) is dropped; its
// EventSource reconnects and the page reloads what it shows. With no stream
// open Publish costs one mutex and a map length.
type Hub struct {
	// MaxStreams caps the open streams; more are answered 503.
	MaxStreams int
	// Buffer is each stream's queue length in events.
	Buffer int
	// Heartbeat is how often an idle stream gets a comment line, so proxies
	// and browsers keep it open and a dead peer is noticed.
	Heartbeat time.Duration

	mu      sync.Mutex // guards streams, dropped, closed
	streams map[*stream]struct{}
	dropped int64 // streams dropped for being slow
	closed  bool  // Close was called
}

type stream struct {
	ch   chan []byte
	gone chan struct{} // closed when the hub drops the stream
}

// NewHub returns a hub with its defaults: 64 streams, 512 events per
// stream, a heartbeat every 15 s.
func NewHub() *Hub {
	return &Hub{MaxStreams: 64, Buffer: 512, Heartbeat: 15 * time.Second, streams: map[*stream]struct{}{}}
}

// liveEvent is what a browser receives for a journal event: the event's
// JSON fields (as the CLI's journal --json prints them).
type liveEvent = store.Event

// Publish sends e to every open stream without blocking.
func (h *Hub) Publish(e store.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.streams) == 0 {
		return
	}
	b, err := json.Marshal(liveEvent(e))
	if err != nil {
		return
	}
	msg := make([]byte, 0, len(b)+24)
	msg = append(msg, "event: journal\ndata: "...)
	msg = append(msg, b...)
	msg = append(msg, "\n\n"...)
	for s := range h.streams {
		select {
		case s.ch <- msg:
		default:
			delete(h.streams, s)
			close(s.gone)
			h.dropped++
		}
	}
}

// Streams returns how many streams are open and how many were dropped for
// being slow.
func (h *Hub) Streams() (open int, dropped int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.streams), h.dropped
}

// Close ends every open stream and refuses new ones (the server shuts
// down: an open stream would otherwise hold the graceful shutdown).
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.streams {
		delete(h.streams, s)
		close(s.gone)
	}
}

func (h *Hub) add() (*stream, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || len(h.streams) >= h.MaxStreams {
		return nil, false
	}
	s := &stream{ch: make(chan []byte, h.Buffer), gone: make(chan struct{})}
	h.streams[s] = struct{}{}
	return s, true
}

func (h *Hub) remove(s *stream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.streams[s]; ok {
		delete(h.streams, s)
		close(s.gone)
	}
}

// ServeHTTP streams events as text/event-stream until the client goes,
// the hub drops the stream, or the request's context ends (the server
// shuts down).
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	s, ok := h.add()
	if !ok {
		http.Error(w, "too many live streams are open: close other console tabs", http.StatusServiceUnavailable)
		return
	}
	defer h.remove(s)
	// The stream outlives the server's write timeout, if any.
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// retry: how long the browser waits before it reconnects.
	fmt.Fprint(w, "retry: 2000\n: open\n\n")
	if err := rc.Flush(); err != nil {
		return
	}
	hb := time.NewTicker(h.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.gone:
			return
		case <-hb.C:
			if _, err := w.Write([]byte(": ping\n\n")); err != nil {
				return
			}
		case msg := <-s.ch:
			if _, err := w.Write(msg); err != nil {
				return
			}
			// Send what else is queued in the same write burst.
			for more := true; more; {
				select {
				case m := <-s.ch:
					if _, err := w.Write(m); err != nil {
						return
					}
				default:
					more = false
				}
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
