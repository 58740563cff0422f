package security

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/guard/guardtest"
)

// recorder keeps what the guard sent (see guardtest.Recorder).
type recorder = guardtest.Recorder

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
