package location_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// TestHasSource: the index of source addresses follows registrations,
// refreshes from a new address, unregistrations, expiry and reloads.
func TestHasSource(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	dir := t.TempDir()
	tb := open(t, dir, clk, nil)
	a, b := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.9")
	if tb.HasSource(a) {
		t.Fatal("empty table has a source")
	}
	add(t, tb, "2001", binding("2001", "sip:2001@127.0.0.1:5062", clk.Now(), time.Minute))
	add(t, tb, "2002", binding("2002", "sip:2002@127.0.0.1:5064", clk.Now(), time.Hour))
	if !tb.HasSource(a) || !tb.HasSource(netip.MustParseAddr("::ffff:127.0.0.1")) || tb.HasSource(b) {
		t.Fatal("sources after two registrations")
	}
	// 2002 moves to another address: a refresh from there.
	moved := func(cur []store.Binding) ([]store.Binding, error) {
		cur[0].Source = "192.0.2.9:5060"
		return cur, nil
	}
	if _, err := tb.Update(context.Background(), "pbx.test", "2002", moved); err != nil {
		t.Fatal(err)
	}
	if !tb.HasSource(a) || !tb.HasSource(b) {
		t.Fatal("sources after a move")
	}
	// 2001 expires: 127.0.0.1 has no live binding left.
	clk.Add(2 * time.Minute)
	tb.Sweep(context.Background())
	if tb.HasSource(a) || !tb.HasSource(b) {
		t.Fatal("sources after expiry")
	}
	// A reload rebuilds the index.
	tb.stop()
	tb = open(t, dir, clk, nil)
	if !tb.HasSource(b) || tb.HasSource(a) {
		t.Fatal("sources after reload")
	}
	tb.RemoveExtension(context.Background(), "pbx.test", "2002")
	if tb.HasSource(b) {
		t.Fatal("source kept after the extension was removed")
	}
}
