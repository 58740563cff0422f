package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

type backend struct {
	flushes atomic.Int64
	applied Progress
	removed atomic.Value // the last RemoveRegistrations call, as "domain|ext|contact|by"
}

func (b *backend) HangupCall(_ context.Context, callID, by string) (HangupResult, error) {
	if callID != "up" {
		return HangupResult{}, fmt.Errorf("%w: %s", ErrNoSuchCall, callID)
	}
	return HangupResult{Caller: 200, Callee: 481}, nil
}

func (b *backend) RemoveRegistrations(_ context.Context, domain, ext, contact, by string) ([]store.Binding, error) {
	b.removed.Store(strings.Join([]string{domain, ext, contact, by}, "|"))
	return []store.Binding{{Domain: domain, Extension: ext, Contact: "sip:x@192.0.2.1"}}, nil
}

func (b *backend) Runtime() Runtime {
	return Runtime{PID: 42, Version: "test", Domain: "pbx.test", Listeners: []Listener{{Proto: "udp", Addr: "127.0.0.1:5060"}}}
}
func (b *backend) Flush(context.Context) error { b.flushes.Add(1); return nil }
func (b *backend) Sync(ctx context.Context, change int64) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	return b.applied.Wait(ctx, change)
}

func serve(t *testing.T, dir string) *backend {
	t.Helper()
	ln, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, SocketName)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v mode %v, want 0600", err, st.Mode())
	}
	b := &backend{}
	b.applied.Set(3)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, b, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return b
}

func TestChannel(t *testing.T) {
	for name, dir := range map[string]string{
		"short": t.TempDir(),
		// Longer than a Unix socket path may be: reached through /proc/self/fd.
		"long": filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60)),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if _, err := Dial(dir); !errors.Is(err, ErrNotRunning) {
				t.Fatalf("Dial without a server: %v, want ErrNotRunning", err)
			}
			b := serve(t, dir)
			c, err := Dial(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			rt, err := c.Runtime(ctx)
			if err != nil || rt.PID != 42 || rt.Domain != "pbx.test" || len(rt.Listeners) != 1 {
				t.Fatalf("Runtime: %+v %v", rt, err)
			}
			if err := c.Flush(ctx); err != nil || b.flushes.Load() != 1 {
				t.Fatalf("Flush: %v, %d flushes", err, b.flushes.Load())
			}
			if err := c.Sync(ctx, 2); err != nil {
				t.Fatalf("Sync to an applied change: %v", err)
			}
			go func() {
				time.Sleep(50 * time.Millisecond)
				b.applied.Set(7)
			}()
			if err := c.Sync(ctx, 7); err != nil {
				t.Fatalf("Sync to a change applied meanwhile: %v", err)
			}
			if err := c.Sync(ctx, 9); err == nil || !strings.Contains(err.Error(), "504") {
				t.Fatalf("Sync to a change never applied: %v, want the server's 504", err)
			}
			if res, err := c.Hangup(ctx, HangupRequest{CallID: "up"}); err != nil || res != (HangupResult{Caller: 200, Callee: 481}) {
				t.Fatalf("Hangup: %+v %v", res, err)
			}
			if _, err := c.Hangup(ctx, HangupRequest{CallID: "gone"}); err == nil || !strings.Contains(err.Error(), "404") {
				t.Fatalf("Hangup of an unknown call: %v, want the server's 404", err)
			}
			gone, err := c.RemoveRegistrations(ctx, RemoveRequest{Domain: "pbx.test", Extension: "2001", SudoUser: "alice"})
			me, _ := user.Current()
			want := "pbx.test|2001||" + UserName(os.Getuid(), "alice")
			if err != nil || len(gone) != 1 || b.removed.Load() != want || !strings.HasPrefix(want, "pbx.test|2001||"+me.Username) {
				t.Fatalf("RemoveRegistrations: %v %v, backend saw %q, want %q", gone, err, b.removed.Load(), want)
			}
		})
	}
}

func TestStaleSocketIsNotRunning(t *testing.T) {
	dir := t.TempDir()
	ln, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A killed server leaves its socket file: nobody accepts on it.
	ln.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(filepath.Join(dir, SocketName)); err != nil {
		t.Fatalf("the stale socket file should remain for this test: %v", err)
	}
	if _, err := Dial(dir); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Dial on a stale socket: %v, want ErrNotRunning", err)
	}
	serve(t, dir) // Listen replaces it
	if _, err := Dial(dir); err != nil {
		t.Fatalf("Dial after a new Listen: %v", err)
	}
}

func TestProgressNeverGoesBack(t *testing.T) {
	var p Progress
	p.Set(5)
	p.Set(3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if v, err := p.Wait(ctx, 5); v != 5 || err != nil {
		t.Fatalf("Wait(5) = %d, %v", v, err)
	}
	if v, err := p.Wait(ctx, 6); v != 5 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait(6) = %d, %v; want 5 and the deadline", v, err)
	}
}

func TestLockAndRunning(t *testing.T) {
	dir := t.TempDir()
	if ok, _ := Running(dir); ok {
		t.Fatal("running before any lock")
	}
	f, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ok, pid := Running(dir); !ok || pid != os.Getpid() {
		t.Fatalf("Running = %v, %d; want true, %d", ok, pid, os.Getpid())
	}
	if _, err := Lock(dir); err == nil || !strings.Contains(err.Error(), "already using") {
		t.Fatalf("second Lock: %v", err)
	}
	f.Close()
	if ok, _ := Running(dir); ok {
		t.Fatal("running after the lock was released")
	}
}
