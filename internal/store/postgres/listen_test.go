package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// TestListenChanges: a change made through another connection (another
// node) wakes ListenChanges' notify at once, without polling.
func TestListenChanges(t *testing.T) {
	u := pg.NewDB(t)
	a, err := Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err := Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	woken := make(chan struct{}, 16)
	go func() {
		defer close(done)
		a.ListenChanges(ctx, func() {
			select {
			case woken <- struct{}{}:
			default:
			}
		}, func(err error) { t.Log(err) })
	}()
	defer func() { cancel(); <-done }()
	// The LISTEN must be in place before the change: retry the change
	// until it is seen.
	deadline := time.After(10 * time.Second)
	for i := 0; ; i++ {
		if _, err := b.AddExtension(context.Background(), store.Extension{Domain: "example.com",
			Number: "20" + string(rune('0'+i%10)) + string(rune('0'+i/10)), HA1MD5: "x", HA1SHA256: "y", Enabled: true}); err != nil {
			if _, err := b.EnsureDomain(context.Background(), "example.com"); err != nil {
				t.Fatal(err)
			}
			continue
		}
		select {
		case <-woken:
			return
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("no notification of a change made by another connection")
		}
	}
}
