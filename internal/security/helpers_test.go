package security

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// recorder is a Transport that keeps what the filter sent (a fake is fine
// here: these are unit tests of the filter's own logic).
type recorder struct {
	mu      sync.Mutex
	replies [][]byte
	closed  []string
}

func (r *recorder) Reply(_ string, _ net.Addr, b []byte) error {
	r.mu.Lock()
	r.replies = append(r.replies, append([]byte(nil), b...))
	r.mu.Unlock()
	return nil
}

func (r *recorder) CloseConn(remote net.Addr) error {
	r.mu.Lock()
	r.closed = append(r.closed, remote.String())
	r.mu.Unlock()
	return nil
}

func (r *recorder) take() (replies [][]byte, closed []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	replies, closed = r.replies, r.closed
	r.replies, r.closed = nil, nil
	return
}

func newTestService(t testing.TB, cfg Config) (*Service, *recorder) {
	t.Helper()
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	s := New(cfg, Deps{Now: now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return s, &recorder{}
}

var udpFrom = &net.UDPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 5060}

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		c.t = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	}
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.Now()
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
