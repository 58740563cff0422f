package location_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/location"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

// nodeTable runs a location table named node on db (shared with other
// nodes' tables) with its view of the other nodes refreshed every 10 ms.
func nodeTable(t *testing.T, db *sqlite.DB, clk *clock, node string) *location.Table {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb := location.New(db, quiet, clk.Now)
	tb.SetNode(node, "<sip:"+node+".internal:5060;lr>")
	if _, err := tb.Load(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); tb.Run(ctx) }()
	go func() {
		defer wg.Done()
		tb.RunRemote(ctx, db, location.RemoteConfig{Every: 10 * time.Millisecond, Resync: 50 * time.Millisecond, Lease: 15 * time.Second})
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return tb
}

func renew(t *testing.T, db *sqlite.DB, node string, at time.Time) {
	t.Helper()
	if err := db.RenewNode(context.Background(), store.Node{Name: node, Address: node + ".internal:5060", StartedAt: at, RenewedAt: at}); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("timed out waiting: " + what)
}

func update(t *testing.T, tb *location.Table, ext string, bs ...store.Binding) {
	t.Helper()
	if _, err := tb.Update(context.Background(), "pbx.test", ext, func(cur []store.Binding) ([]store.Binding, error) {
		return append(cur, bs...), nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestNodesShareBindings: a binding made on node a carries a's name and
// Path, is seen by node b's Lookup (not its LookupLocal, nor its All,
// which qualify pings), is skipped once a's lease runs out, and a
// restarted node loads only its own bindings and deletes no other node's.
func TestNodesShareBindings(t *testing.T) {
	clk := &clock{t: time.Now()}
	db, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	renew(t, db, "a", clk.Now())
	renew(t, db, "b", clk.Now())
	a := nodeTable(t, db, clk, "a")
	b := nodeTable(t, db, clk, "b")
	update(t, a, "2001", binding("2001", "sip:2001@10.0.0.5:5062", clk.Now(), time.Hour))
	update(t, b, "2002", binding("2002", "sip:2002@10.0.0.6:5062", clk.Now(), time.Hour))

	if got := a.Lookup("pbx.test", "2001"); len(got) != 1 || got[0].Node != "a" || got[0].Path != "<sip:a.internal:5060;lr>" {
		t.Fatalf("a's own binding: %+v", got)
	}
	eventually(t, "b sees a's binding", func() bool {
		got := b.Lookup("pbx.test", "2001")
		return len(got) == 1 && got[0].Node == "a" && got[0].Path == "<sip:a.internal:5060;lr>"
	})
	if got := b.LookupLocal("pbx.test", "2001"); len(got) != 0 {
		t.Fatalf("b's LookupLocal holds a's binding: %+v", got)
	}
	for _, x := range b.All() {
		if x.Node != "b" {
			t.Fatalf("b's All (what it qualifies) holds %+v", x)
		}
	}

	// a moves to another address (a restart): b reaches it there at once.
	if err := db.RenewNode(context.Background(), store.Node{Name: "a", Address: "10.9.9.9:5080", StartedAt: clk.Now(), RenewedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b uses a's new address", func() bool {
		got := b.Lookup("pbx.test", "2001")
		return len(got) == 1 && got[0].Path == "<sip:10.9.9.9:5080;lr>"
	})

	// a stops renewing: after the lease, b skips a's bindings.
	renew(t, db, "a", clk.Now().Add(-time.Minute))
	eventually(t, "b skips the bindings of a, whose lease ran out", func() bool {
		return len(b.Lookup("pbx.test", "2001")) == 0
	})

	// A restarted a loads its own binding only and leaves b's alone.
	a2 := nodeTable(t, db, clk, "a")
	if got := a2.LookupLocal("pbx.test", "2001"); len(got) != 1 {
		t.Fatalf("restarted a lost its binding: %+v", got)
	}
	if got := a2.LookupLocal("pbx.test", "2002"); len(got) != 0 {
		t.Fatalf("restarted a took b's binding as its own: %+v", got)
	}
	all, err := db.BindingsOf(context.Background(), "pbx.test", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("stored after a's restart: %+v; want one binding each", all)
	}
	// The phone of 2001 moves to b (same contact): b's row replaces a's,
	// and a, removing its old binding, does not delete b's row.
	update(t, b, "2001", binding("2001", "sip:2001@10.0.0.5:5062", clk.Now(), time.Hour))
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := a2.Remove(context.Background(), "pbx.test", "2001", ""); err != nil {
		t.Fatal(err)
	}
	if err := a2.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, _ := db.BindingsOf(context.Background(), "pbx.test", "2001")
	if len(got) != 1 || got[0].Node != "b" {
		t.Fatalf("after the phone moved to b and a dropped its binding: %+v", got)
	}
}
