package qualify

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/location"
	"github.com/switchboard-pbx/switchboard/internal/sipstack"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

const domain = "pbx.test"

// env is a pinger on a real SIP stack (UDP on 127.0.0.1:0) with a real
// location table and journal on a SQLite store in t.TempDir().
type env struct {
	t   *testing.T
	ctx context.Context
	db  *sqlite.DB
	loc *location.Table
	jw  *journal.Writer
	q   *Pinger
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, db: db, loc: location.New(db, log, nil)}
	e.jw = journal.NewWriter(db, log, journal.Retention{}, 0)
	stack, err := sipstack.Listen(sipstack.Options{Addr: "127.0.0.1:0", UDPReaders: 1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	udp := stack.Listeners[0].Addr
	_, p, _ := net.SplitHostPort(udp)
	cfg.Host, cfg.UDPLocal = "127.0.0.1", udp
	cfg.Port = atoi(p)
	e.q = New(cfg, e.loc, stack.Client, e.jw, log)
	var wg sync.WaitGroup
	for _, run := range []func(context.Context){e.jw.Run, e.loc.Run, func(ctx context.Context) { _ = stack.Serve(ctx) }} {
		wg.Add(1)
		go func() { defer wg.Done(); run(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait(); db.Close() })
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if err := stack.WaitServing(wctx); err != nil {
		t.Fatalf("the stack does not serve: %v", err)
	}
	return e
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// phone answers OPTIONS with 200 while answering is set.
type phone struct {
	addr      string
	answering atomic.Bool
	pings     atomic.Int32
}

func (e *env) phone(answer bool) *phone {
	e.t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.1")})
	if err != nil {
		e.t.Fatal(err)
	}
	ph := &phone{addr: c.LocalAddr().String()}
	ph.answering.Store(answer)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			req, ok := m.(*sip.Request)
			if err != nil || !ok || req.Method != sip.OPTIONS {
				continue
			}
			ph.pings.Add(1)
			if ph.answering.Load() {
				res := sip.NewResponseFromRequest(req, 200, "OK", nil)
				_, _ = c.WriteToUDP([]byte(res.String()), from)
			}
		}
	}()
	e.t.Cleanup(func() { c.Close(); <-done })
	return ph
}

func (e *env) register(ext string, ph *phone, transport string) store.Binding {
	e.t.Helper()
	now := time.Now()
	b := store.Binding{Domain: domain, Extension: ext, Contact: "sip:" + ext + "@" + ph.addr, Source: ph.addr,
		Transport: transport, RegisteredAt: now, ExpiresAt: now.Add(time.Hour)}
	if _, err := e.loc.Update(e.ctx, domain, ext, func(cur []store.Binding) ([]store.Binding, error) {
		return append(cur, b), nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *env) status(ext string) string {
	for _, b := range e.loc.Lookup(domain, ext) {
		return b.PingStatus
	}
	return "no binding"
}

// events returns the qualify events of ext, oldest first.
func (e *env) events(ext string) []journal.Event {
	e.jw.Flush(e.ctx)
	evs, err := journal.Query(e.ctx, e.db, journal.Filter{Extension: ext, Kind: journal.KindQualify, Oldest: true})
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestQualifyChanges: a phone that answers is reachable (with a round-trip
// time), one that stops answering turns unreachable after Timeout, and its
// recovery is journaled; steady states are not.
func TestQualifyChanges(t *testing.T) {
	t.Parallel()
	// Timeout: long enough for an answering phone on a loaded machine.
	e := newEnv(t, Config{Interval: time.Second, Timeout: time.Second})
	ph := e.phone(true)
	b := e.register("2001", ph, "UDP")
	if ok, rtt := e.q.Qualify(e.ctx, b); !ok || rtt <= 0 {
		t.Fatalf("answering phone: reachable %v rtt %s", ok, rtt)
	}
	if s := e.status("2001"); s != "reachable" {
		t.Fatalf("status %q", s)
	}
	e.q.Qualify(e.ctx, b) // steady: not journaled
	ph.answering.Store(false)
	if ok, _ := e.q.Qualify(e.ctx, b); ok {
		t.Fatal("silent phone reported reachable")
	}
	if s := e.status("2001"); s != "unreachable" {
		t.Fatalf("status %q", s)
	}
	e.q.Qualify(e.ctx, b) // still silent: not journaled again
	ph.answering.Store(true)
	e.q.Qualify(e.ctx, b)
	evs := e.events("2001")
	if len(evs) != 2 || evs[0].Cause != cause.Unreachable || evs[1].Cause != cause.Reachable ||
		!strings.Contains(evs[0].Detail, "did not answer OPTIONS") || evs[1].Status != 200 {
		t.Fatalf("journal: %+v", evs)
	}
}

// TestPingUnusableContact: a contact that is not a SIP URI is unreachable
// without sending anything.
func TestPingUnusableContact(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Interval: time.Second})
	ok, _, _, why := e.q.Ping(e.ctx, store.Binding{Domain: domain, Extension: "1", Contact: "not a uri"})
	if ok || !strings.Contains(why, "unusable contact") {
		t.Fatalf("ok %v why %q", ok, why)
	}
}

// TestRunQualifiesEveryBinding: Run pings every binding within an interval
// (UDP and TCP alike on the first cycle), records the results, and returns
// when its context ends.
func TestRunQualifiesEveryBinding(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Interval: 500 * time.Millisecond, Timeout: time.Second})
	up, down := e.phone(true), e.phone(false)
	e.register("2001", up, "UDP")
	e.register("2002", down, "UDP")
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.q.Run(ctx) }()
	eventually(t, "both bindings qualified", func() bool {
		return e.status("2001") == "reachable" && e.status("2002") == "unreachable"
	})
	eventually(t, "a second cycle", func() bool { return up.pings.Load() >= 2 })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if evs := e.events("2002"); len(evs) != 1 || evs[0].Cause != cause.Unreachable {
		t.Fatalf("journal of the silent phone: %+v", evs)
	}
}

// TestRunDisabled: interval 0 returns at once.
func TestRunDisabled(t *testing.T) {
	q := New(Config{}, nil, nil, nil, nil)
	done := make(chan struct{})
	go func() { q.Run(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run with interval 0 did not return")
	}
}
