// Package storetest is the contract every storage backend of switchboard
// passes: round trips, ordering, filters, not-found errors, all-or-nothing
// writes, ban expiry. A backend's tests call Run with a function that
// opens a new, empty store (freshly created and migrated) for each test:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Backend { return openTest(t, t.TempDir()) })
//	}
//
// The suite uses only the interfaces of package store, so a PostgreSQL
// backend runs the same tests as SQLite.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Backend is everything a storage backend implements.
type Backend interface {
	store.Directory
	store.Bindings
	store.Changes
	store.Journal
	store.Calls
	store.Security
	store.Meta
	store.Doctor
	store.Nodes
	store.Admins
}

// Run runs the contract against the stores open returns; open must return a
// new, empty store each time (closed by the test's cleanup).
func Run(t *testing.T, open func(t *testing.T) Backend) {
	for _, c := range []struct {
		name string
		f    func(*testing.T, Backend)
	}{
		{"Directory", testDirectory},
		{"ImportAllOrNothing", testImport},
		{"ListExtensions", testListExtensions},
		{"Bindings", testBindings},
		{"Changes", testChanges},
		{"Meta", testMeta},
		{"JournalRoundTrip", testJournalRoundTrip},
		{"JournalFilters", testJournalFilters},
		{"JournalStats", testJournalStats},
		{"JournalPrune", testJournalPrune},
		{"Calls", testCalls},
		{"CallsPrune", testCallsPrune},
		{"ACLs", testACLs},
		{"Profiles", testProfiles},
		{"Bans", testBans},
		{"Nodes", testNodes},
		{"BindingsOfNodes", testBindingsOfNodes},
		{"ReserveIDs", testReserveIDs},
		{"Admins", testAdmins},
	} {
		t.Run(c.name, func(t *testing.T) { c.f(t, open(t)) })
	}
}

var ctx = context.Background()

// t0 has whole microseconds, the journal's and the call records'
// precision, and whole milliseconds, the bans'.
var t0 = time.Date(2026, 1, 15, 14, 0, 0, 0, time.UTC)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ext(domain, number string) store.Extension {
	return store.Extension{Domain: domain, Number: number, HA1MD5: "md5-" + number, HA1SHA256: "sha-" + number,
		Enabled: true, MaxRegistrations: 5, CallTimeout: 30, CallerIDName: "Name " + number}
}

func testDirectory(t *testing.T, b Backend) {
	if _, err := b.Domain(ctx, "example.com"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing domain: %v, want ErrNotFound", err)
	}
	d, err := b.EnsureDomain(ctx, "example.com")
	must(t, err)
	if d.Name != "example.com" || d.Realm != "example.com" || !d.Enabled {
		t.Fatalf("new domain %+v", d)
	}
	if again, err := b.EnsureDomain(ctx, "EXAMPLE.com"); err != nil || again.ID != d.ID {
		t.Fatalf("EnsureDomain of an existing domain (other case): %+v, %v", again, err)
	}
	if got, err := b.Domain(ctx, "Example.COM"); err != nil || got.Name != "example.com" {
		t.Fatalf("domain names are case-insensitive: %+v, %v", got, err)
	}
	if _, err := b.AddExtension(ctx, ext("nowhere.example", "2001")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("extension in a missing domain: %v, want ErrNotFound", err)
	}
	for _, n := range []string{"2002", "10", "2001"} {
		if _, err := b.AddExtension(ctx, ext("example.com", n)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.AddExtension(ctx, ext("example.com", "2001")); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("duplicate number: %v, want ErrDuplicate", err)
	}
	got, err := b.Extension(ctx, "example.com", "2001")
	must(t, err)
	want := ext("example.com", "2001")
	if got.Number != want.Number || got.Domain != want.Domain || got.HA1MD5 != want.HA1MD5 || got.HA1SHA256 != want.HA1SHA256 ||
		got.CallerIDName != want.CallerIDName || got.MaxRegistrations != 5 || got.CallTimeout != 30 || !got.Enabled {
		t.Fatalf("round trip: %+v, want %+v", got, want)
	}
	if _, err := b.Extension(ctx, "example.com", "2999"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing extension: %v, want ErrNotFound", err)
	}
	got.Description, got.ACL, got.Enabled = "front desk", "loopback", false
	must(t, b.UpdateExtension(ctx, got))
	if upd, _ := b.Extension(ctx, "example.com", "2001"); upd.Description != "front desk" || upd.ACL != "loopback" || upd.Enabled {
		t.Fatalf("update not kept: %+v", upd)
	}
	if err := b.UpdateExtension(ctx, ext("example.com", "2999")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of a missing extension: %v, want ErrNotFound", err)
	}
	list, err := b.Extensions(ctx, "example.com")
	must(t, err)
	var nums []string
	for _, e := range list {
		nums = append(nums, e.Number)
	}
	if !slices.Equal(nums, []string{"10", "2001", "2002"}) {
		t.Fatalf("extensions in order: %v, want numeric order [10 2001 2002]", nums)
	}
	_, err = b.EnsureDomain(ctx, "other.example")
	must(t, err)
	_, err = b.AddExtension(ctx, ext("other.example", "2001"))
	must(t, err)
	if doms, ext := mustCounts(t, b); doms != 2 || ext != 4 {
		t.Fatalf("counts %d domains, %d extensions; want 2, 4", doms, ext)
	}
	num, err := b.ExtensionNumbers(ctx, "example.com")
	must(t, err)
	slices.Sort(num)
	if !slices.Equal(num, []string{"10", "2001", "2002"}) {
		t.Fatalf("ExtensionNumbers: %v", num)
	}
	if others, err := b.DomainsWithExtension(ctx, "2001", "example.com"); err != nil || !slices.Equal(others, []string{"other.example"}) {
		t.Fatalf("DomainsWithExtension: %v, %v", others, err)
	}
	if users, err := b.ExtensionsWithACL(ctx, "loopback"); err != nil || !slices.Equal(users, []string{"2001@example.com"}) {
		t.Fatalf("ExtensionsWithACL: %v, %v", users, err)
	}
	must(t, b.RemoveExtension(ctx, "example.com", "2001"))
	if err := b.RemoveExtension(ctx, "example.com", "2001"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second removal: %v, want ErrNotFound", err)
	}
	if _, err := b.Extension(ctx, "example.com", "2001"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("removed extension still there: %v", err)
	}
}

func mustCounts(t *testing.T, b Backend) (int, int) {
	t.Helper()
	d, e, err := b.Counts(ctx)
	must(t, err)
	return d, e
}

func testImport(t *testing.T, b Backend) {
	_, err := b.EnsureDomain(ctx, "example.com")
	must(t, err)
	_, err = b.AddExtension(ctx, ext("example.com", "2005"))
	must(t, err)
	for _, c := range []struct {
		name string
		rows []store.Extension
		want error
	}{
		{"duplicate in the input", []store.Extension{ext("example.com", "2001"), ext("example.com", "2002"), ext("example.com", "2001")}, store.ErrDuplicate},
		{"duplicate of a stored one", []store.Extension{ext("example.com", "2001"), ext("example.com", "2005")}, store.ErrDuplicate},
		{"missing domain", []store.Extension{ext("example.com", "2001"), ext("nowhere.example", "2002")}, store.ErrNotFound},
	} {
		if err := b.ImportExtensions(ctx, c.rows); !errors.Is(err, c.want) {
			t.Fatalf("%s: %v, want %v", c.name, err, c.want)
		}
		if _, n := mustCounts(t, b); n != 1 {
			t.Fatalf("%s: a failed import left %d extensions, want the 1 there before", c.name, n)
		}
	}
	must(t, b.ImportExtensions(ctx, []store.Extension{ext("example.com", "2001"), ext("example.com", "2002")}))
	if _, n := mustCounts(t, b); n != 3 {
		t.Fatalf("after import: %d extensions, want 3", n)
	}
}

func binding(ext, contact string, exp time.Time) store.Binding {
	return store.Binding{Domain: "example.com", Extension: ext, Contact: contact, Source: "10.0.0.1:5060", Transport: "UDP",
		UserAgent: "phone", CallID: "c-" + contact, CSeq: 7, AuthUser: ext, Realm: "example.com",
		RegisteredAt: t0, ExpiresAt: exp, PingStatus: "reachable", PingRTT: 1.5, PingAt: t0.Add(time.Second)}
}

func testBindings(t *testing.T, b Backend) {
	a := binding("2001", "sip:2001@10.0.0.1:5060", t0.Add(time.Hour))
	c := binding("2002", "sip:2002@10.0.0.2:5060", t0.Add(-time.Hour))
	must(t, b.ApplyBindings(ctx, []store.Binding{a, c}, nil))
	all, err := b.LoadBindings(ctx)
	must(t, err)
	if len(all) != 2 || !reflect.DeepEqual(norm(all[0]), norm(a)) {
		t.Fatalf("round trip: %+v\nwant %+v", all, a)
	}
	if n, err := b.CountRegistrations(ctx, t0); err != nil || n != 1 {
		t.Fatalf("CountRegistrations at t0: %d, %v; want 1 (one expired)", n, err)
	}
	a.CSeq = 8
	must(t, b.ApplyBindings(ctx, []store.Binding{a}, []store.BindingKey{c.Key()}))
	got, err := b.BindingsOf(ctx, "example.com", "2001")
	must(t, err)
	if len(got) != 1 || got[0].CSeq != 8 {
		t.Fatalf("upsert: %+v", got)
	}
	if got, _ := b.BindingsOf(ctx, "example.com", "2002"); len(got) != 0 {
		t.Fatalf("deleted binding still there: %+v", got)
	}
}

// norm drops what a backend may store with less precision (milliseconds).
func norm(b store.Binding) store.Binding {
	b.RegisteredAt, b.ExpiresAt, b.PingAt = b.RegisteredAt.UTC(), b.ExpiresAt.UTC(), b.PingAt.UTC()
	return b
}

func testChanges(t *testing.T, b Backend) {
	start, err := b.LastChange(ctx)
	must(t, err)
	_, err = b.EnsureDomain(ctx, "example.com")
	must(t, err)
	_, err = b.AddExtension(ctx, ext("example.com", "2001"))
	must(t, err)
	must(t, b.AddACL(ctx, "office", false))
	must(t, b.PutBan(ctx, acl.Ban{IP: netip.MustParseAddr("192.0.2.7"), Since: t0}))
	must(t, b.SetProfile(ctx, store.Profile{Name: "internal", TrustedACL: "office"}))
	chs, err := b.ChangesSince(ctx, start, 100)
	must(t, err)
	var kinds []string
	for i, c := range chs {
		if i > 0 && c.Seq <= chs[i-1].Seq {
			t.Fatalf("sequence not increasing: %+v", chs)
		}
		kinds = append(kinds, c.Kind+" "+c.Key)
	}
	for _, want := range []string{"domain example.com", "ext example.com/2001", "acl office", "ban 192.0.2.7", "profile internal"} {
		if !slices.Contains(kinds, want) {
			t.Errorf("change feed %v lacks %q", kinds, want)
		}
	}
	if last, _ := b.LastChange(ctx); len(chs) == 0 || last != chs[len(chs)-1].Seq {
		t.Fatalf("LastChange %d, feed %+v", last, chs)
	}
	if two, _ := b.ChangesSince(ctx, start, 2); len(two) != 2 {
		t.Fatalf("limit 2: %d changes", len(two))
	}
}

func testMeta(t *testing.T, b Backend) {
	if _, ok, err := b.Meta(ctx, "k"); ok || err != nil {
		t.Fatalf("unset key: ok=%v err=%v", ok, err)
	}
	must(t, b.SetMeta(ctx, "k", "one"))
	must(t, b.SetMeta(ctx, "k", "two"))
	if v, ok, err := b.Meta(ctx, "k"); !ok || err != nil || v != "two" {
		t.Fatalf("Meta = %q %v %v, want two", v, ok, err)
	}
}

func event(sec int, c cause.Code, ext, src string) store.Event {
	return store.Event{Time: t0.Add(time.Duration(sec) * time.Second), Kind: "register", Cause: c, Extension: ext,
		Domain: "example.com", AuthUser: ext, Realm: "example.com", Source: src, Transport: "UDP", UserAgent: "ua",
		Status: 200, CallID: fmt.Sprintf("call-%d", sec), Detail: "d"}
}

func testJournalRoundTrip(t *testing.T, b Backend) {
	if id, err := b.LastEventID(ctx); err != nil || id != 0 {
		t.Fatalf("empty journal: last id %d, %v", id, err)
	}
	if old, err := b.OldestEventTime(ctx); err != nil || !old.IsZero() {
		t.Fatalf("empty journal: oldest %v, %v", old, err)
	}
	must(t, b.InsertEvents(ctx, nil))
	in := event(1, cause.WrongPassword, "2002", "10.0.0.1:5060")
	in.Time = in.Time.Add(123456 * time.Microsecond)
	// 100 events: more than one multi-row statement, in order.
	evs := []store.Event{in}
	for i := 2; i <= 100; i++ {
		evs = append(evs, event(i, cause.Registered, "2003", "10.0.0.2:5060"))
	}
	must(t, b.InsertEvents(ctx, evs))
	last, err := b.LastEventID(ctx)
	must(t, err)
	got, err := b.QueryEvents(ctx, store.JournalFilter{Oldest: true})
	must(t, err)
	if len(got) != 100 {
		t.Fatalf("%d events back, want 100", len(got))
	}
	first := got[0]
	if first.ID == 0 || !first.Time.Equal(in.Time) {
		t.Fatalf("first event %+v, want time %v", first, in.Time)
	}
	first.ID, first.Time, in.Time = 0, time.Time{}, time.Time{}
	if !reflect.DeepEqual(first, in) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", first, in)
	}
	if got[99].ID != last {
		t.Fatalf("LastEventID %d, newest inserted %d", last, got[99].ID)
	}
	for i := 1; i < len(got); i++ {
		if got[i].ID <= got[i-1].ID {
			t.Fatalf("ids do not follow insertion order at %d", i)
		}
	}
	if e, ok, err := b.EventByID(ctx, got[5].ID); !ok || err != nil || e.CallID != got[5].CallID {
		t.Fatalf("EventByID: %+v %v %v", e, ok, err)
	}
	if _, ok, err := b.EventByID(ctx, last+1000); ok || err != nil {
		t.Fatalf("EventByID of a missing id: ok=%v err=%v", ok, err)
	}
	if old, _ := b.OldestEventTime(ctx); !old.Equal(t0.Add(time.Second + 123456*time.Microsecond)) {
		t.Fatalf("OldestEventTime %v", old)
	}
}

func ids(evs []store.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.CallID)
	}
	return out
}

func testJournalFilters(t *testing.T, b Backend) {
	evs := []store.Event{
		event(1, cause.WrongPassword, "2002", "10.0.0.1:5060"),
		event(2, cause.Registered, "2002", "10.0.0.10:5060"),
		event(3, cause.WrongPassword, "2003", "[::1]:5062"),
		event(4, cause.Registered, "2002", "10.0.0.1:5070"),
		event(5, cause.BanAdded, "", "10.0.0.1"),
	}
	evs[4].Kind, evs[4].Domain = "admin", ""
	evs[2].Domain = "Other.Example"
	// Same time as event 4: the id breaks the tie.
	tie := event(4, cause.Registered, "2002", "10.0.0.3:5060")
	tie.CallID = "call-4b"
	evs = append(evs, tie)
	must(t, b.InsertEvents(ctx, evs))
	for _, c := range []struct {
		name string
		f    store.JournalFilter
		want []string
	}{
		{"all newest first", store.JournalFilter{}, []string{"call-5", "call-4b", "call-4", "call-3", "call-2", "call-1"}},
		{"oldest first", store.JournalFilter{Oldest: true}, []string{"call-1", "call-2", "call-3", "call-4", "call-4b", "call-5"}},
		{"limit", store.JournalFilter{Limit: 2}, []string{"call-5", "call-4b"}},
		{"extension", store.JournalFilter{Extension: "2002"}, []string{"call-4b", "call-4", "call-2", "call-1"}},
		{"domain any case", store.JournalFilter{Domain: "other.example"}, []string{"call-3"}},
		{"ip any port, not a longer address", store.JournalFilter{IP: "10.0.0.1"}, []string{"call-5", "call-4", "call-1"}},
		{"ipv6 in brackets", store.JournalFilter{IP: "::1"}, []string{"call-3"}},
		{"kind", store.JournalFilter{Kind: "admin"}, []string{"call-5"}},
		{"cause and extension", store.JournalFilter{Extension: "2002", Cause: cause.WrongPassword}, []string{"call-1"}},
		{"since", store.JournalFilter{Since: t0.Add(4 * time.Second)}, []string{"call-5", "call-4b", "call-4"}},
	} {
		got, err := b.QueryEvents(ctx, c.f)
		must(t, err)
		if !slices.Equal(ids(got), c.want) {
			t.Errorf("%s: %v, want %v", c.name, ids(got), c.want)
		}
	}
	all, _ := b.QueryEvents(ctx, store.JournalFilter{Oldest: true})
	after, err := b.QueryEvents(ctx, store.JournalFilter{AfterID: all[2].ID, Extension: "2002", Oldest: true})
	must(t, err)
	if !slices.Equal(ids(after), []string{"call-4", "call-4b"}) {
		t.Errorf("after id: %v", ids(after))
	}
	adm, err := b.AdminEvents(ctx, "admin", []cause.Code{cause.BanAdded, cause.BanLifted}, 0)
	must(t, err)
	if !slices.Equal(ids(adm), []string{"call-5"}) {
		t.Errorf("AdminEvents: %v", ids(adm))
	}
	if adm, _ := b.AdminEvents(ctx, "admin", []cause.Code{cause.BanLifted}, 0); len(adm) != 0 {
		t.Errorf("AdminEvents of another cause: %v", ids(adm))
	}
	if ok, err := b.HasCause(ctx, cause.BanAdded); !ok || err != nil {
		t.Errorf("HasCause(ban added) = %v, %v", ok, err)
	}
	if ok, err := b.HasCause(ctx, cause.Expired); ok || err != nil {
		t.Errorf("HasCause(expired) = %v, %v", ok, err)
	}
}

func testJournalStats(t *testing.T, b Backend) {
	var evs []store.Event
	for i := 0; i < 50; i++ {
		evs = append(evs, event(i, cause.WrongPassword, "2002", "203.0.113.9:5060"))
	}
	evs = append(evs, event(60, cause.Registered, "2002", "10.0.0.1:5060"), event(61, cause.Registered, "2003", "10.0.0.1:5060"))
	must(t, b.InsertEvents(ctx, evs))
	st, err := b.CauseStats(ctx, "2002", "example.com", cause.WrongPassword, time.Time{}, 0)
	must(t, err)
	if st.Count != 50 || st.Capped || !st.First.Equal(t0) || !st.Last.Equal(t0.Add(49*time.Second)) {
		t.Fatalf("stats %+v", st)
	}
	if st, _ := b.CauseStats(ctx, "2002", "example.com", cause.WrongPassword, time.Time{}, 20); st.Count != 20 || !st.Capped {
		t.Fatalf("capped at 20: %+v", st)
	}
	if st, _ := b.CauseStats(ctx, "2002", "example.com", cause.WrongPassword, t0.Add(40*time.Second), 0); st.Count != 10 ||
		!st.First.Equal(t0.Add(40*time.Second)) {
		t.Fatalf("since +40s: %+v", st)
	}
	if st, _ := b.CauseStats(ctx, "2009", "example.com", cause.WrongPassword, time.Time{}, 0); st != (store.CauseStats{}) {
		t.Fatalf("no events: %+v", st)
	}
	e, ok, err := b.LastEventOf(ctx, "2002", "example.com", cause.Registered)
	if !ok || err != nil || e.CallID != "call-60" {
		t.Fatalf("LastEventOf: %+v %v %v", e, ok, err)
	}
	if _, ok, err := b.LastEventOf(ctx, "2002", "example.com", cause.Expired); ok || err != nil {
		t.Fatalf("LastEventOf with none: ok=%v err=%v", ok, err)
	}
}

func testJournalPrune(t *testing.T, b Backend) {
	var evs []store.Event
	for i := 0; i < 10; i++ {
		evs = append(evs, event(i, cause.Registered, "2002", "10.0.0.1:5060"))
	}
	must(t, b.InsertEvents(ctx, evs))
	must(t, b.PruneEvents(ctx, t0.Add(3*time.Second), 1000))
	if got, _ := b.QueryEvents(ctx, store.JournalFilter{Oldest: true}); len(got) != 7 || got[0].CallID != "call-3" {
		t.Fatalf("prune by age: %v", ids(got))
	}
	must(t, b.PruneEvents(ctx, t0, 4))
	if got, _ := b.QueryEvents(ctx, store.JournalFilter{Oldest: true}); !slices.Equal(ids(got), []string{"call-6", "call-7", "call-8", "call-9"}) {
		t.Fatalf("prune to 4: %v", ids(got))
	}
}

func call(id int64, from, to string, sec int) store.Call {
	return store.Call{ID: id, CallID: fmt.Sprintf("cid-%d", id), From: from, To: to, Domain: "example.com",
		Source: "10.0.0.1:5060", Transport: "UDP", UserAgent: "ua", Start: t0.Add(time.Duration(sec) * time.Second)}
}

// normCall puts the times in one location so that reflect.DeepEqual
// compares instants.
func normCall(c store.Call) store.Call {
	c.Start, c.Answer, c.End = c.Start.UTC(), c.Answer.UTC(), c.End.UTC()
	if c.Media != nil {
		c.Media = slices.Clone(c.Media)
		for i := range c.Media {
			c.Media[i].FirstPacketIn = c.Media[i].FirstPacketIn.UTC()
			c.Media[i].LastPacketIn = c.Media[i].LastPacketIn.UTC()
		}
	}
	return c
}

func callIDs(rs []store.Call) []int64 {
	var out []int64
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func testCalls(t *testing.T, b Backend) {
	if id, err := b.LastCallID(ctx); err != nil || id != 0 {
		t.Fatalf("empty: last id %d, %v", id, err)
	}
	if _, err := b.CallByID(ctx, 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing call: %v, want ErrNotFound", err)
	}
	if rs, err := b.QueryCalls(ctx, store.CallFilter{}); err != nil || rs == nil || len(rs) != 0 {
		t.Fatalf("empty query: %#v, %v (want an empty, non-nil slice)", rs, err)
	}
	c1 := call(1, "2001", "2002", 0)
	ringing := c1
	ringing.Branches = []store.CallBranch{{Contact: "sip:2002@10.0.0.2", Destination: "10.0.0.2:5060", Transport: "UDP", Ringing: true}}
	answered := ringing
	answered.Answer = t0.Add(2*time.Second + 500*time.Microsecond)
	answered.End = t0.Add(60 * time.Second)
	answered.SIPStatus, answered.Cause, answered.HangupBy, answered.Detail = 200, cause.NormalClearing, "caller", "bye"
	answered.Branches = []store.CallBranch{{Contact: "sip:2002@10.0.0.2", Destination: "10.0.0.2:5060", Transport: "UDP",
		Ringing: true, Status: 200, Reason: "OK"}}
	// The media legs are written by the update that ends the call; every
	// field survives (times to the microsecond), a never-latched leg keeps
	// its zero times.
	answered.Media = []store.MediaLeg{{Side: "caller", Relayed: true, Codec: "PCMU",
		SignalledAddr: "10.0.0.1:4000", SIPSource: "203.0.113.7", LatchedAddr: "203.0.113.7:41000",
		PacketsIn: 2900, BytesIn: 498800, PacketsOut: 0, BytesOut: 0,
		FirstPacketIn: t0.Add(2*time.Second + 700*time.Microsecond), LastPacketIn: t0.Add(59 * time.Second),
		Lost: 3, JitterMS: 1.25, MOS: 4.38, Stray: 7, StraySource: "198.51.100.9:5004", Malformed: 1},
		{Side: "callee", Relayed: true, WebRTC: true, DTLS: "failed", Codec: "PCMU", SignalledAddr: "[2001:db8::5]:9",
			SIPSource: "2001:db8::5", PacketsOut: 2900, BytesOut: 498800}}
	// Several snapshots of one call in one write: the last one wins; an
	// update keeps who called whom.
	changed := answered
	changed.From = "9999"
	must(t, b.SaveCalls(ctx, []store.Call{c1, ringing}))
	must(t, b.SaveCalls(ctx, []store.Call{ringing, changed}))
	got, err := b.CallByID(ctx, 1)
	must(t, err)
	if got.From != "2001" {
		t.Fatalf("update changed the caller to %q", got.From)
	}
	if !reflect.DeepEqual(normCall(got), normCall(answered)) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, answered)
	}
	if !got.Start.Equal(t0) || !got.Answer.Equal(answered.Answer) {
		t.Fatal("times changed")
	}
	failed := call(2, "2001", "2003", 10)
	failed.End, failed.SIPStatus, failed.Cause = t0.Add(20*time.Second), 480, cause.NoAnswer
	active := call(3, "2004", "2001", 30)
	must(t, b.SaveCalls(ctx, []store.Call{failed, active}))
	if got, _ := b.CallByID(ctx, 3); got.Branches == nil || len(got.Branches) != 0 || !got.End.IsZero() ||
		got.Media == nil || len(got.Media) != 0 {
		t.Fatalf("call without branches: %+v (want empty, non-nil branches and media, zero end)", got)
	}
	if rs, _ := b.QueryCalls(ctx, store.CallFilter{CallID: "cid-1"}); len(rs) != 1 || len(rs[0].Media) != 2 ||
		rs[0].Media[1].DTLS != "failed" {
		t.Fatalf("query lost the media legs: %+v", rs)
	}
	for _, c := range []struct {
		name string
		f    store.CallFilter
		want []int64
	}{
		{"all newest first", store.CallFilter{}, []int64{3, 2, 1}},
		{"limit", store.CallFilter{Limit: 1}, []int64{3}},
		{"from", store.CallFilter{From: "2001"}, []int64{2, 1}},
		{"to", store.CallFilter{To: "2001"}, []int64{3}},
		{"either side", store.CallFilter{Ext: "2001"}, []int64{3, 2, 1}},
		{"domain any case", store.CallFilter{Domain: "EXAMPLE.com"}, []int64{3, 2, 1}},
		{"call-id", store.CallFilter{CallID: "cid-2"}, []int64{2}},
		{"active", store.CallFilter{Active: true}, []int64{3}},
		{"failed", store.CallFilter{Failed: true}, []int64{2}},
		{"since", store.CallFilter{Since: t0.Add(10 * time.Second)}, []int64{3, 2}},
	} {
		rs, err := b.QueryCalls(ctx, c.f)
		must(t, err)
		if !slices.Equal(callIDs(rs), c.want) {
			t.Errorf("%s: %v, want %v", c.name, callIDs(rs), c.want)
		}
	}
	if n, err := b.CountActiveCalls(ctx); n != 1 || err != nil {
		t.Fatalf("active calls %d, %v", n, err)
	}
	if id, _ := b.LastCallID(ctx); id != 3 {
		t.Fatalf("last call id %d", id)
	}
	n, err := b.EndActiveCalls(ctx, t0.Add(time.Hour), cause.SystemShutdown, "server", "stopped")
	if err != nil || n != 1 {
		t.Fatalf("EndActiveCalls: %d, %v", n, err)
	}
	got, _ = b.CallByID(ctx, 3)
	if got.Active() || got.Cause != cause.SystemShutdown || got.HangupBy != "server" || got.Detail != "stopped" ||
		!got.End.Equal(t0.Add(time.Hour)) {
		t.Fatalf("ended call %+v", got)
	}
	if got, _ := b.CallByID(ctx, 1); got.Cause != cause.NormalClearing {
		t.Fatalf("EndActiveCalls touched an ended call: %+v", got)
	}
	if n, _ := b.EndActiveCalls(ctx, t0, cause.SystemShutdown, "server", "again"); n != 0 {
		t.Fatalf("second EndActiveCalls ended %d", n)
	}
}

func testCallsPrune(t *testing.T, b Backend) {
	var rs []store.Call
	for i := int64(1); i <= 6; i++ {
		c := call(i, "2001", "2002", int(i))
		c.End, c.Cause = c.Start.Add(time.Second), cause.NormalClearing
		rs = append(rs, c)
	}
	rs[0].End = time.Time{} // the oldest is still up: never pruned
	must(t, b.SaveCalls(ctx, rs))
	must(t, b.PruneCalls(ctx, t0.Add(3*time.Second), 1000))
	all, _ := b.QueryCalls(ctx, store.CallFilter{})
	if !slices.Equal(callIDs(all), []int64{6, 5, 4, 3, 1}) {
		t.Fatalf("prune by age: %v", callIDs(all))
	}
	must(t, b.PruneCalls(ctx, t0, 2))
	all, _ = b.QueryCalls(ctx, store.CallFilter{})
	if !slices.Equal(callIDs(all), []int64{6, 5, 1}) {
		t.Fatalf("prune to the newest 2 (and the active one): %v", callIDs(all))
	}
}

func node(allow bool, cidr string) acl.Node {
	return acl.Node{Allow: allow, Prefix: netip.MustParsePrefix(cidr)}
}

func testACLs(t *testing.T, b Backend) {
	// A new store has the list "loopback" (allowing 127.0.0.0/8 and ::1).
	lists, err := b.ACLs(ctx)
	must(t, err)
	if len(lists) != 1 || lists[0].Name != "loopback" || lists[0].DefaultAllow || len(lists[0].Nodes) != 2 {
		t.Fatalf("seed lists: %+v", lists)
	}
	if ok, err := b.HasACL(ctx, "office"); ok || err != nil {
		t.Fatalf("HasACL(missing) = %v, %v", ok, err)
	}
	must(t, b.AddACL(ctx, "office", false))
	if err := b.AddACL(ctx, "office", true); !errors.Is(err, store.ErrACLExists) {
		t.Fatalf("duplicate list: %v, want ErrACLExists", err)
	}
	if ok, _ := b.HasACL(ctx, "office"); !ok {
		t.Fatal("HasACL after AddACL")
	}
	for _, n := range []acl.Node{node(true, "10.0.0.0/8"), node(false, "10.1.0.0/16"), node(true, "2001:db8::/32")} {
		added, err := b.PutACLNode(ctx, "office", n)
		if err != nil || !added {
			t.Fatalf("PutACLNode %v: %v %v", n, added, err)
		}
	}
	// The same prefix again changes the action in place.
	if added, err := b.PutACLNode(ctx, "office", node(true, "10.1.0.0/16")); added || err != nil {
		t.Fatalf("PutACLNode of an existing prefix: added=%v %v", added, err)
	}
	if _, err := b.PutACLNode(ctx, "nope", node(true, "10.0.0.0/8")); !errors.Is(err, store.ErrNoACL) {
		t.Fatalf("node of a missing list: %v", err)
	}
	must(t, b.SetACLDefault(ctx, "office", true))
	if err := b.SetACLDefault(ctx, "nope", true); !errors.Is(err, store.ErrNoACL) {
		t.Fatalf("default of a missing list: %v", err)
	}
	lists, _ = b.ACLs(ctx)
	if len(lists) != 2 || lists[0].Name != "loopback" || lists[1].Name != "office" {
		t.Fatalf("lists by name: %+v", lists)
	}
	want := acl.List{Name: "office", DefaultAllow: true, Nodes: []acl.Node{node(true, "10.0.0.0/8"), node(true, "10.1.0.0/16"),
		node(true, "2001:db8::/32")}}
	if !reflect.DeepEqual(lists[1], want) {
		t.Fatalf("office = %+v\nwant %+v", lists[1], want)
	}
	must(t, b.RemoveACLNode(ctx, "office", netip.MustParsePrefix("10.0.0.0/8")))
	if err := b.RemoveACLNode(ctx, "office", netip.MustParsePrefix("10.0.0.0/8")); !errors.Is(err, store.ErrNoNode) {
		t.Fatalf("removing a missing node: %v", err)
	}
	if err := b.RemoveACLNode(ctx, "nope", netip.MustParsePrefix("10.0.0.0/8")); !errors.Is(err, store.ErrNoACL) {
		t.Fatalf("node of a missing list: %v", err)
	}
	// A node added after a removal goes last.
	_, err = b.PutACLNode(ctx, "office", node(false, "0.0.0.0/0"))
	must(t, err)
	lists, _ = b.ACLs(ctx)
	if got := lists[1].Nodes; len(got) != 3 || got[0].Prefix.String() != "10.1.0.0/16" || got[2].Prefix.String() != "0.0.0.0/0" {
		t.Fatalf("order after removal and addition: %+v", got)
	}
	must(t, b.RemoveACL(ctx, "office"))
	if err := b.RemoveACL(ctx, "office"); !errors.Is(err, store.ErrNoACL) {
		t.Fatalf("second RemoveACL: %v", err)
	}
	if lists, _ := b.ACLs(ctx); len(lists) != 1 {
		t.Fatalf("after RemoveACL: %+v", lists)
	}
}

func testProfiles(t *testing.T, b Backend) {
	// A new store has the profile "internal", trusting "loopback".
	ps, err := b.Profiles(ctx)
	must(t, err)
	if len(ps) != 1 || ps[0] != (store.Profile{Name: "internal", TrustedACL: "loopback"}) {
		t.Fatalf("seed profiles: %+v", ps)
	}
	p := store.Profile{Name: "internal", RegisterACL: "office", InboundACL: "office2", TrustedACL: ""}
	must(t, b.SetProfile(ctx, p))
	if got, err := b.Profile(ctx, "internal"); err != nil || got != p {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if _, err := b.Profile(ctx, "external"); !errors.Is(err, store.ErrNoProfile) {
		t.Fatalf("missing profile: %v", err)
	}
	if err := b.SetProfile(ctx, store.Profile{Name: "external"}); !errors.Is(err, store.ErrNoProfile) {
		t.Fatalf("SetProfile of a missing profile: %v", err)
	}
}

func testBans(t *testing.T, b Backend) {
	now := t0.Add(time.Hour)
	v4 := netip.MustParseAddr("192.0.2.7")
	v6 := netip.MustParseAddr("2001:db8::9")
	old := netip.MustParseAddr("192.0.2.8")
	perm := acl.Ban{IP: v6, Reason: "manual", Since: t0.Add(time.Minute)}
	temp := acl.Ban{IP: v4, Reason: "wrong password", Failures: 5, Since: t0, Until: now.Add(time.Hour)}
	gone := acl.Ban{IP: old, Reason: "old", Failures: 3, Since: t0.Add(-time.Hour), Until: now}
	for _, x := range []acl.Ban{perm, temp, gone} {
		must(t, b.PutBan(ctx, x))
	}
	bans, err := b.Bans(ctx, now)
	must(t, err)
	if len(bans) != 2 || !sameBan(bans[0], temp) || !sameBan(bans[1], perm) {
		t.Fatalf("bans in force, oldest first: %+v", bans)
	}
	if !bans[1].Until.IsZero() {
		t.Fatalf("permanent ban has until %v", bans[1].Until)
	}
	// An IPv4-mapped address names the same ban.
	if got, err := b.Ban(ctx, netip.MustParseAddr("::ffff:192.0.2.7"), now); err != nil || !sameBan(got, temp) {
		t.Fatalf("Ban(mapped): %+v %v", got, err)
	}
	if _, err := b.Ban(ctx, old, now); !errors.Is(err, store.ErrNoBan) {
		t.Fatalf("expired ban: %v, want ErrNoBan", err)
	}
	if _, err := b.Ban(ctx, netip.MustParseAddr("198.51.100.1"), now); !errors.Is(err, store.ErrNoBan) {
		t.Fatalf("no ban: %v, want ErrNoBan", err)
	}
	of, err := b.BansOf(ctx, []netip.Addr{old, v4, netip.MustParseAddr("198.51.100.1")})
	must(t, err)
	if len(of) != 2 {
		t.Fatalf("BansOf (expired included): %+v", of)
	}
	// PutBan replaces.
	temp.Failures, temp.Until = 9, now.Add(2*time.Hour)
	must(t, b.PutBan(ctx, temp))
	if got, _ := b.Ban(ctx, v4, now); !sameBan(got, temp) {
		t.Fatalf("replaced ban: %+v", got)
	}
	n, err := b.PruneBans(ctx, now)
	if err != nil || n != 1 {
		t.Fatalf("PruneBans = %d, %v; want 1 (the one that expired at now)", n, err)
	}
	if of, _ := b.BansOf(ctx, []netip.Addr{old}); len(of) != 0 {
		t.Fatalf("pruned ban still stored: %+v", of)
	}
	if ok, err := b.DeleteBan(ctx, v4); !ok || err != nil {
		t.Fatalf("DeleteBan: %v %v", ok, err)
	}
	if ok, err := b.DeleteBan(ctx, v4); ok || err != nil {
		t.Fatalf("second DeleteBan: %v %v", ok, err)
	}
	if bans, _ := b.Bans(ctx, now.Add(1000*time.Hour)); len(bans) != 1 || bans[0].IP != v6 {
		t.Fatalf("a permanent ban never expires: %+v", bans)
	}
}

// sameBan compares bans at the millisecond precision the store keeps.
func sameBan(a, b acl.Ban) bool {
	return a.IP == b.IP.Unmap() && a.Reason == b.Reason && a.Failures == b.Failures && a.Since.Equal(b.Since) && a.Until.Equal(b.Until)
}

func testNodes(t *testing.T, b Backend) {
	a := store.Node{Name: "a", Address: "10.0.0.11:5060", StartedAt: t0, RenewedAt: t0}
	must(t, b.RenewNode(ctx, a))
	must(t, b.RenewNode(ctx, store.Node{Name: "b", Address: "10.0.0.12:5060", StartedAt: t0, RenewedAt: t0}))
	a.RenewedAt = t0.Add(5 * time.Second)
	must(t, b.RenewNode(ctx, a))
	got, err := b.ListNodes(ctx)
	must(t, err)
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" || !got[0].RenewedAt.Equal(a.RenewedAt) ||
		got[0].Address != a.Address || !got[0].StartedAt.Equal(t0) {
		t.Fatalf("nodes: %+v", got)
	}
}

// testBindingsOfNodes: rows carry their node and Path; a delete only
// removes a row its node (or no node) owns; OtherBindings returns the
// unexpired rows of the other nodes written since a time.
func testBindingsOfNodes(t *testing.T, b Backend) {
	before := time.Now().Add(-time.Second)
	now := t0
	mine := binding("2001", "sip:2001@10.0.0.1:5060", t0.Add(time.Hour))
	mine.Node, mine.Path = "a", "<sip:10.0.0.11:5060;lr>"
	theirs := binding("2002", "sip:2002@10.0.0.2:5060", t0.Add(time.Hour))
	theirs.Node, theirs.Path = "b", "<sip:10.0.0.12:5060;lr>"
	gone := binding("2003", "sip:2003@10.0.0.3:5060", t0.Add(-time.Second))
	gone.Node = "b"
	must(t, b.ApplyBindings(ctx, []store.Binding{mine, theirs, gone}, nil))
	got, err := b.BindingsOf(ctx, "example.com", "2002")
	must(t, err)
	if len(got) != 1 || got[0].Node != "b" || got[0].Path != theirs.Path {
		t.Fatalf("node and path not stored: %+v", got)
	}
	other, err := b.OtherBindings(ctx, "a", time.Time{}, now)
	must(t, err)
	if len(other) != 1 || other[0].Extension != "2002" {
		t.Fatalf("OtherBindings(a): %+v; want 2002 only (2001 is a's, 2003 expired)", other)
	}
	if other, _ := b.OtherBindings(ctx, "a", time.Now().Add(time.Hour), now); len(other) != 0 {
		t.Fatalf("OtherBindings since the future: %+v", other)
	}
	if other, _ := b.OtherBindings(ctx, "a", before, now); len(other) != 1 {
		t.Fatalf("OtherBindings since before the write: %+v", other)
	}
	// Node a deleting 2002 (say its own old binding of that contact, after
	// the phone moved to b) must not delete b's row.
	k := theirs.Key()
	k.Node = "a"
	must(t, b.ApplyBindings(ctx, nil, []store.BindingKey{k}))
	if got, _ := b.BindingsOf(ctx, "example.com", "2002"); len(got) != 1 {
		t.Fatalf("node a deleted node b's binding: %+v", got)
	}
	must(t, b.ApplyBindings(ctx, nil, []store.BindingKey{theirs.Key()}))
	if got, _ := b.BindingsOf(ctx, "example.com", "2002"); len(got) != 0 {
		t.Fatalf("node b could not delete its binding: %+v", got)
	}
}

// testReserveIDs: ranges reserved under one key never overlap, also when
// reserved concurrently.
func testReserveIDs(t *testing.T, b Backend) {
	first, err := b.ReserveIDs(ctx, "test_ids", 1000)
	must(t, err)
	if first != 0 {
		t.Fatalf("first reservation starts at %d, want 0", first)
	}
	const n = 8
	got := make(chan int64, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			f, err := b.ReserveIDs(ctx, "test_ids", 1000)
			errs <- err
			got <- f
		}()
	}
	seen := map[int64]bool{}
	for i := 0; i < n; i++ {
		must(t, <-errs)
		f := <-got
		if f%1000 != 0 || f < 1000 || f > n*1000 || seen[f] {
			t.Fatalf("concurrent reservation %d starts at %d (seen %v)", i, f, seen)
		}
		seen[f] = true
	}
}

// testAdmins: console admins and API tokens round-trip; names are unique;
// what is missing is ErrNotFound.
func testAdmins(t *testing.T, b Backend) {
	ctx := context.Background()
	if n, err := b.CountAdmins(ctx); err != nil || n != 0 {
		t.Fatalf("CountAdmins of a new store = %d, %v", n, err)
	}
	at := time.UnixMilli(time.Now().UnixMilli())
	if err := b.AddAdmin(ctx, store.Admin{Name: "alice", PasswordHash: "h1", CreatedAt: at}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddAdmin(ctx, store.Admin{Name: "alice", PasswordHash: "h2"}); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("second alice: %v, want ErrDuplicate", err)
	}
	if err := b.AddAdmin(ctx, store.Admin{Name: "bob", PasswordHash: "hb"}); err != nil {
		t.Fatal(err)
	}
	a, err := b.Admin(ctx, "alice")
	if err != nil || a.PasswordHash != "h1" || !a.CreatedAt.Equal(at) || !a.PasswordChangedAt.Equal(at) {
		t.Fatalf("Admin(alice) = %+v, %v", a, err)
	}
	later := at.Add(time.Minute)
	if err := b.SetAdminPassword(ctx, "alice", "h3", later); err != nil {
		t.Fatal(err)
	}
	if a, _ := b.Admin(ctx, "alice"); a.PasswordHash != "h3" || !a.PasswordChangedAt.Equal(later) {
		t.Fatalf("after SetAdminPassword: %+v", a)
	}
	if err := b.SetAdminPassword(ctx, "nobody", "x", later); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetAdminPassword(nobody): %v", err)
	}
	all, err := b.Admins(ctx)
	if err != nil || len(all) != 2 || all[0].Name != "alice" || all[1].Name != "bob" {
		t.Fatalf("Admins = %+v, %v", all, err)
	}
	if err := b.RemoveAdmin(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Admin(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("removed bob: %v", err)
	}
	if err := b.RemoveAdmin(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RemoveAdmin twice: %v", err)
	}

	tok := store.APIToken{Name: "deploy", Hash: "abc123", Prefix: "sbt_ab", CreatedAt: at}
	if err := b.AddAPIToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := b.AddAPIToken(ctx, store.APIToken{Name: "deploy", Hash: "other", Prefix: "sbt_ot"}); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("second deploy token: %v", err)
	}
	got, err := b.APITokenByHash(ctx, "abc123")
	if err != nil || got.Name != "deploy" || got.Prefix != "sbt_ab" || !got.LastUsedAt.IsZero() && got.LastUsedAt.UnixMilli() != 0 {
		t.Fatalf("APITokenByHash = %+v, %v", got, err)
	}
	if _, err := b.APITokenByHash(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown hash: %v", err)
	}
	if err := b.TouchAPIToken(ctx, "deploy", later); err != nil {
		t.Fatal(err)
	}
	toks, err := b.APITokens(ctx)
	if err != nil || len(toks) != 1 || !toks[0].LastUsedAt.Equal(later) {
		t.Fatalf("APITokens = %+v, %v", toks, err)
	}
	if err := b.RemoveAPIToken(ctx, "deploy"); err != nil {
		t.Fatal(err)
	}
	if err := b.RemoveAPIToken(ctx, "deploy"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RemoveAPIToken twice: %v", err)
	}
}

// testListExtensions: ListExtensions pages through the directory in
// Extensions' order by offset and by cursor (across domains, from a
// cursor whose extension is gone), filters by domain and by a search of
// number, name and description in which % and _ are literal.
func testListExtensions(t *testing.T, b Backend) {
	_, err := b.EnsureDomain(ctx, "example.com")
	must(t, err)
	for _, n := range []string{"2002", "a_b", "10", "axb", "9", "2001", "a%b", "100"} {
		e := ext("example.com", n)
		if n == "10" {
			e.Description = "Front Desk"
		}
		_, err := b.AddExtension(ctx, e)
		must(t, err)
	}
	// One domain (a backend may count it differently).
	for _, q := range []store.ExtensionQuery{{Limit: 2}, {Domain: "example.com", Limit: 2}} {
		if es, total, err := b.ListExtensions(ctx, q); err != nil || total != 8 || len(es) != 2 || es[0].Number != "9" || es[1].Number != "10" {
			t.Fatalf("one domain, %+v: %d rows, total %d, %v", q, len(es), total, err)
		}
	}
	_, err = b.EnsureDomain(ctx, "other.example")
	must(t, err)
	_, err = b.AddExtension(ctx, ext("other.example", "2001"))
	must(t, err)
	all := []string{"example.com/9", "example.com/10", "example.com/100", "example.com/a%b", "example.com/a_b", "example.com/axb",
		"example.com/2001", "example.com/2002", "other.example/2001"}
	keys := func(es []store.Extension) []string {
		out := []string{}
		for _, e := range es {
			out = append(out, e.Domain+"/"+e.Number)
		}
		return out
	}
	list := func(q store.ExtensionQuery) ([]string, int) {
		t.Helper()
		es, total, err := b.ListExtensions(ctx, q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		return keys(es), total
	}
	if got, total := list(store.ExtensionQuery{Limit: 100}); !slices.Equal(got, all) || total != len(all) {
		t.Fatalf("everything: %v (total %d), want %v", got, total, all)
	}
	if es, err := b.Extensions(ctx, ""); err != nil || !slices.Equal(keys(es), all) {
		t.Fatalf("Extensions' order %v (%v) differs from ListExtensions' %v", keys(es), err, all)
	}
	// By offset and by cursor, 2 at a time, the pages add up to the list.
	var byOffset, byCursor []string
	for off := 0; off < 20; off += 2 {
		got, total := list(store.ExtensionQuery{Offset: off, Limit: 2})
		if total != len(all) {
			t.Fatalf("offset %d: total %d, want %d", off, total, len(all))
		}
		byOffset = append(byOffset, got...)
	}
	q := store.ExtensionQuery{Limit: 2}
	for range 10 {
		es, _, err := b.ListExtensions(ctx, q)
		must(t, err)
		if len(es) == 0 {
			break
		}
		byCursor = append(byCursor, keys(es)...)
		q.AfterDomain, q.AfterNumber = es[len(es)-1].Domain, es[len(es)-1].Number
	}
	if !slices.Equal(byOffset, all) || !slices.Equal(byCursor, all) {
		t.Fatalf("pages of 2 by offset %v, by cursor %v; want %v", byOffset, byCursor, all)
	}
	for _, c := range []struct {
		name string
		q    store.ExtensionQuery
		want []string
		tot  int
	}{
		{"cursor of a removed extension", store.ExtensionQuery{AfterDomain: "example.com", AfterNumber: "150", Limit: 4}, []string{"example.com/a%b", "example.com/a_b", "example.com/axb", "example.com/2001"}, 9},
		{"cursor in another case, across domains", store.ExtensionQuery{AfterDomain: "EXAMPLE.com", AfterNumber: "2002", Limit: 5}, []string{"other.example/2001"}, 9},
		{"cursor wins over offset", store.ExtensionQuery{AfterDomain: "example.com", AfterNumber: "2001", Offset: 5, Limit: 5}, []string{"example.com/2002", "other.example/2001"}, 9},
		{"one domain", store.ExtensionQuery{Domain: "Other.Example", Limit: 5}, []string{"other.example/2001"}, 1},
		{"one domain, offset", store.ExtensionQuery{Domain: "example.com", Offset: 6, Limit: 5}, []string{"example.com/2001", "example.com/2002"}, 8},
		{"past the end", store.ExtensionQuery{Offset: 9, Limit: 5}, []string{}, 9},
		{"count only", store.ExtensionQuery{Search: "200"}, []string{}, 3},
		{"search number", store.ExtensionQuery{Search: "200", Limit: 5}, []string{"example.com/2001", "example.com/2002", "other.example/2001"}, 3},
		{"search name, any case", store.ExtensionQuery{Search: "nAME 9", Limit: 5}, []string{"example.com/9"}, 1},
		{"search description", store.ExtensionQuery{Search: "front d", Limit: 5}, []string{"example.com/10"}, 1},
		{"_ is literal", store.ExtensionQuery{Search: "_", Limit: 5}, []string{"example.com/a_b"}, 1},
		{"% is literal", store.ExtensionQuery{Search: "%", Limit: 5}, []string{"example.com/a%b"}, 1},
		{`\ is literal`, store.ExtensionQuery{Search: `\`, Limit: 5}, []string{}, 0},
		{"search in a domain with a cursor", store.ExtensionQuery{Domain: "example.com", Search: "200", AfterDomain: "example.com", AfterNumber: "2001", Limit: 5}, []string{"example.com/2002"}, 2},
	} {
		if got, total := list(c.q); !slices.Equal(got, c.want) || total != c.tot {
			t.Errorf("%s: %v (total %d), want %v (total %d)", c.name, got, total, c.want, c.tot)
		}
	}
	if _, _, err := b.ListExtensions(ctx, store.ExtensionQuery{Domain: "nowhere.example", Limit: 5}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown domain: %v, want ErrNotFound", err)
	}
}
