package directory

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"sort"
	"strconv"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

func open(t *testing.T) (*sqlite.DB, *Cache) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.EnsureDomain(ctx, "Pbx.Test"); err != nil {
		t.Fatal(err)
	}
	c := New(db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := c.Load(ctx); err != nil {
		t.Fatal(err)
	}
	c.SetLocal(Local{DefaultDomain: "Pbx.Test", Hosts: []string{"127.0.0.1", "[::1]", "MyHost"}})
	return db, c
}

func ext(n string) store.Extension {
	return store.Extension{Domain: "Pbx.Test", Number: n, Enabled: true, MaxRegistrations: 5, CallTimeout: 30,
		HA1MD5: "x", HA1SHA256: "y"}
}

func TestResolve(t *testing.T) {
	_, c := open(t)
	for _, tc := range []struct {
		host, domain string
		served       bool
	}{
		{"pbx.test", "Pbx.Test", true},
		{"PBX.TEST", "Pbx.Test", true},
		{"127.0.0.1", "Pbx.Test", true},
		{"::1", "Pbx.Test", true},
		{"[::1]", "Pbx.Test", true},
		{"myhost", "Pbx.Test", true},
		{"other.example", "other.example", false},
	} {
		d, ok := c.Resolve(tc.host)
		if d != tc.domain || ok != tc.served {
			t.Errorf("Resolve(%q) = %q, %v; want %q, %v", tc.host, d, ok, tc.domain, tc.served)
		}
	}
}

// TestPollSingleChanges: CLI-style edits reach the cache through the change
// feed, and removals are delivered as ExtensionRemoved.
func TestPollSingleChanges(t *testing.T) {
	ctx := context.Background()
	db, c := open(t)
	var removed []string
	c.Subscribe(func(e Event) {
		if r, ok := e.(ExtensionRemoved); ok {
			removed = append(removed, r.Domain+"/"+r.Number)
		}
	})
	if _, err := db.AddExtension(ctx, ext("2001")); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Lookup("pbx.test", "2001"); ok {
		t.Fatal("visible before Poll")
	}
	if n, err := c.Poll(ctx); err != nil || n == 0 {
		t.Fatalf("Poll = %d, %v", n, err)
	}
	e, ok := c.Lookup("PBX.test", "2001")
	if !ok || !e.Enabled() {
		t.Fatalf("after Poll: %+v %v", e, ok)
	}
	e2 := ext("2001")
	e2.Enabled = false
	if err := db.UpdateExtension(ctx, e2); err != nil {
		t.Fatal(err)
	}
	c.Poll(ctx)
	if e, _ := c.Lookup("pbx.test", "2001"); e.Enabled() {
		t.Fatal("update not applied")
	}
	if !e.Enabled() {
		t.Fatal("a published entry changed: the update must publish a new one")
	}
	if err := db.RemoveExtension(ctx, "Pbx.Test", "2001"); err != nil {
		t.Fatal(err)
	}
	c.Poll(ctx)
	if _, ok := c.Lookup("pbx.test", "2001"); ok {
		t.Fatal("removal not applied")
	}
	if len(removed) != 1 || removed[0] != "Pbx.Test/2001" {
		t.Fatalf("ExtensionRemoved events: %v", removed)
	}
}

// TestPollFullReloadReportsRemovals: more changes than fullReloadAbove
// trigger a full reload, which must still report each removed extension.
func TestPollFullReloadReportsRemovals(t *testing.T) {
	ctx := context.Background()
	db, c := open(t)
	var exts []store.Extension
	for i := 0; i < 10; i++ {
		exts = append(exts, ext(strconv.Itoa(3000+i)))
	}
	if err := db.ImportExtensions(ctx, exts); err != nil {
		t.Fatal(err)
	}
	c.Poll(ctx)
	got := record(c)
	var removed []string
	c.Subscribe(func(e Event) {
		if r, ok := e.(ExtensionRemoved); ok {
			removed = append(removed, r.Domain+"/"+r.Number)
		}
	})
	var bulk []store.Extension
	for i := 0; i < fullReloadAbove+5; i++ {
		bulk = append(bulk, ext(strconv.Itoa(5000+i)))
	}
	if err := db.ImportExtensions(ctx, bulk); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"3001", "3002"} {
		if err := db.RemoveExtension(ctx, "Pbx.Test", n); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := c.Poll(ctx); err != nil || n <= fullReloadAbove {
		t.Fatalf("Poll = %d, %v; want a full reload", n, err)
	}
	sort.Strings(removed)
	if len(removed) != 2 || removed[0] != "Pbx.Test/3001" || removed[1] != "Pbx.Test/3002" {
		t.Fatalf("ExtensionRemoved events: %v", removed)
	}
	reloads := 0
	for _, e := range *got {
		if _, ok := e.(Reloaded); ok {
			reloads++
		}
	}
	if reloads != 1 || (*got)[len(*got)-1] != (Reloaded{}) {
		t.Errorf("a full reload delivers one Reloaded, last; got %d in %v", reloads, *got)
	}
	if c.Count() != 8+fullReloadAbove+5 {
		t.Fatalf("Count = %d", c.Count())
	}
}

// record subscribes to c and returns the events delivered so far.
func record(c *Cache) *[]Event {
	var got []Event
	c.Subscribe(func(e Event) { got = append(got, e) })
	return &got
}

// TestPollEvents: each change-feed entry is delivered as its typed event,
// in feed order, after the cache shows it; repeats of the event just
// delivered (an ACL written entry by entry) are delivered once; entries
// that cannot be read (a ban of no address, an unknown kind) are skipped.
func TestPollEvents(t *testing.T) {
	ctx := context.Background()
	db, c := open(t)
	got := record(c)
	var seen bool
	c.Subscribe(func(e Event) {
		if x, ok := e.(ExtensionChanged); ok {
			_, seen = c.Lookup(x.Domain, x.Number)
		}
	})
	for _, n := range [][2]string{{"acl", "office"}, {"acl", "office"}, {"acl", "office"}, {"profile", "internal"},
		{"ban", "192.0.2.7"}, {"ban", "not-an-ip"}, {"future-kind", "x"}, {"acl", "office"}} {
		if err := db.Notify(ctx, n[0], n[1]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.AddExtension(ctx, ext("2001")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.RemoveExtension(ctx, "Pbx.Test", "2001"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	want := []Event{ACLChanged{"office"}, ProfileChanged{"internal"}, BanChanged{netip.MustParseAddr("192.0.2.7")},
		ACLChanged{"office"}, ExtensionChanged{"Pbx.Test", "2001"}, ExtensionRemoved{"Pbx.Test", "2001"}}
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("events\n got %v\nwant %v", *got, want)
	}
	if !seen {
		t.Error("ExtensionChanged delivered before Lookup shows the extension")
	}
	*got = nil
	if _, err := db.RenameDomain(ctx, "Pbx.Test", "pbx.example"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SetDefaultDomain(ctx, "pbx.example"); err != nil {
		t.Fatal(err)
	}
	c.Poll(ctx)
	var renamed, def bool
	for _, e := range *got {
		switch e := e.(type) {
		case DomainRenamed:
			renamed = e == DomainRenamed{"Pbx.Test", "pbx.example"}
		case DefaultDomainChanged:
			def = e.Name == "pbx.example"
		}
	}
	if !renamed || !def || c.DefaultDomain() != "pbx.example" {
		t.Fatalf("rename: events %v, default domain %q", *got, c.DefaultDomain())
	}
}
