package security

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// take returns the text written since the last take.
func (w *syncBuffer) take() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.b.String()
	w.b.Reset()
	return s
}

// TestWatchReloads: the directory's change events reach the service: a
// ban written by the CLI applies at the next poll, an ACL written entry
// by entry reloads the configuration once, and a full reload of the
// directory (more than 1,000 changes) reloads it once too, not once per
// kind (it was four times). Every configuration reload of a profile that
// names a missing ACL logs one warning, which is what the test counts.
func TestWatchReloads(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := NewStore(db)
	if err := st.SetProfile(ctx, Profile{Name: DefaultProfile, RegisterACL: "ghost", TrustedACL: "loopback"}); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	s := New(Config{}, Deps{Store: st, Log: log})
	if err := s.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.EnsureDomain(ctx, "pbx.test"); err != nil {
		t.Fatal(err)
	}
	dir := directory.New(db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := dir.Load(ctx); err != nil {
		t.Fatal(err)
	}
	s.Watch(ctx, dir)
	reloads := func() int { return strings.Count(logs.take(), "missing acl") }
	reloads()

	attacker := ip("203.0.113.9")
	if err := st.PutBan(ctx, acl.Ban{IP: attacker, Reason: "operator"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddACL(ctx, "office", false); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		node, err := acl.ParseNode(true, "192.168.1."+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.AddNode(ctx, "office", node); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dir.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.guard.Banned(attacker) {
		t.Fatal("a ban written to the store is not applied after a poll")
	}
	if n := reloads(); n != 1 {
		t.Fatalf("an ACL written in 6 changes reloaded the configuration %d times, want 1", n)
	}

	// A full reload: more than 1,000 changes at once, among them an ACL,
	// a profile and a lifted ban.
	var bulk []store.Extension
	for i := range 1005 {
		bulk = append(bulk, store.Extension{Domain: "pbx.test", Number: strconv.Itoa(5000 + i), Enabled: true,
			MaxRegistrations: 5, CallTimeout: 30, HA1MD5: "x", HA1SHA256: "y"})
	}
	if err := db.ImportExtensions(ctx, bulk); err != nil {
		t.Fatal(err)
	}
	if err := st.AddACL(ctx, "lab", true); err != nil {
		t.Fatal(err)
	}
	if err := st.RemoveBan(ctx, attacker, s.now()); err != nil {
		t.Fatal(err)
	}
	if n, err := dir.Poll(ctx); err != nil || n <= 1000 {
		t.Fatalf("Poll = %d, %v; want a full reload", n, err)
	}
	if n := reloads(); n != 1 {
		t.Fatalf("a full reload reloaded the configuration %d times, want 1", n)
	}
	if s.guard.Banned(attacker) {
		t.Fatal("a ban lifted during a full reload is still applied")
	}
	if _, ok := s.snap.Load().set.Get("lab"); !ok {
		t.Fatal("an ACL added during a full reload is not loaded")
	}
}
