package guard

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/guard/guardtest"
)

// recorder keeps what the guard sent (see guardtest.Recorder).
type recorder = guardtest.Recorder

// torture returns the RFC 4475 messages by file name.
func torture(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "test", "e2e", "testdata", "rfc4475", "*.dat"))
	if err != nil || len(files) == 0 {
		t.Fatalf("rfc4475 corpus missing: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".dat")] = b
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// testPolicy is a Policy that trusts, bans and limits no one and calls
// "friendly-scanner" a scanner (a fake is fine here: these are unit tests
// of the guard's own logic; package security tests it with the real one).
type testPolicy struct {
	mu       sync.Mutex
	refused  []string // details
	scanners int
}

func (*testPolicy) Trusted(netip.Addr) bool                                { return false }
func (*testPolicy) Banned(netip.Addr, netip.AddrPort, string, []byte) bool { return false }
func (*testPolicy) RateLimited(netip.Addr, netip.AddrPort, string, []byte) bool {
	return false
}

func (p *testPolicy) Scanner(_ netip.Addr, _ netip.AddrPort, _ string, _, ua []byte) bool {
	if !bytes.Contains(ua, []byte("friendly-scanner")) {
		return false
	}
	p.mu.Lock()
	p.scanners++
	p.mu.Unlock()
	return true
}

func (p *testPolicy) Refused(_ netip.Addr, _ netip.AddrPort, _ string, _ int, _ []byte, detail string) {
	p.mu.Lock()
	p.refused = append(p.refused, detail)
	p.mu.Unlock()
}

func newTestGuard(t testing.TB, cfg Config) (*Guard, *recorder) {
	t.Helper()
	clock := &fakeClock{}
	g := New(cfg, Deps{Policy: &testPolicy{}, Now: clock.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	r := &recorder{}
	g.SetTransport(r)
	return g, r
}

var (
	udpFrom = &net.UDPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 5060}
	tcpFrom = &net.TCPAddr{IP: net.IPv4(192, 0, 2, 8), Port: 40000}
)

func statusOf(reply []byte) string {
	line, _, _ := strings.Cut(string(reply), "\r\n")
	return line
}

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
