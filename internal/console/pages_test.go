package console

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/security"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// TestPagesGolden renders every page whole and compares it with its
// golden file: the markup, the statuses and the escaping of stored text
// (a name with HTML in it) are what the browser gets.
func TestPagesGolden(t *testing.T) {
	f := newFixture(t, 0)
	for _, p := range []struct{ name, path string }{
		{"overview", "/"},
		{"extensions", "/extensions"},
		{"extensions_failing", "/extensions?status=failing"},
		{"extension", "/extensions/pbx.test/2001"},
		{"registrations", "/registrations"},
		{"failed", "/failed"},
		{"acls", "/acls?ip=192.0.2.1"},
		{"calls", "/calls"},
		{"doctor", "/doctor?ext=2002"},
		{"journal", "/journal"},
		{"admins", "/admins"},
	} {
		w := f.get(p.path, false)
		if w.Code != http.StatusOK {
			t.Errorf("GET %s: %d %s", p.path, w.Code, w.Body)
			continue
		}
		golden(t, p.name, w.Body.String())
	}
}

// TestFragmentVersusWholePage: a fragment request gets the main block
// only, a normal one the whole document.
func TestFragmentVersusWholePage(t *testing.T) {
	f := newFixture(t, 0)
	whole := f.get("/extensions", false).Body.String()
	frag := f.get("/extensions", true).Body.String()
	if !strings.HasPrefix(whole, "<!doctype html>") || !strings.Contains(whole, `<nav aria-label="Main">`) {
		t.Errorf("whole page lacks the document or the nav:\n%.300s", whole)
	}
	if strings.Contains(frag, "<html") || strings.Contains(frag, `<nav aria-label="Main">`) || !strings.Contains(frag, `id="ext-table"`) {
		t.Errorf("fragment is not the main block alone:\n%.300s", frag)
	}
	row := f.get("/extensions/row?domain=pbx.test&number=2001", false).Body.String()
	if !strings.HasPrefix(row, `<tr data-ext="pbx.test/2001" data-status="registered">`) {
		t.Errorf("row fragment = %.200s", row)
	}
}

// TestStatuses: 2001 registered, 2002 failing (wrong password a minute
// ago), 2003 disabled; a failure older than FailingFor no longer counts.
func TestStatuses(t *testing.T) {
	f := newFixture(t, 0)
	body := f.get("/extensions", true).Body.String()
	for ext, st := range map[string]string{"2001": "registered", "2002": "failing", "2003": "disabled"} {
		if !strings.Contains(body, `data-ext="pbx.test/`+ext+`" data-status="`+st+`"`) {
			t.Errorf("extension %s is not shown %s", ext, st)
		}
	}
	s := seen{failAt: t0.Add(-FailingFor - time.Second), failCause: cause.WrongPassword}
	if got := statusOf(true, 0, s, t0); got != StatusOffline {
		t.Errorf("old failure: status %s, want offline", got)
	}
	if got := statusOf(true, 1, seen{failAt: t0.Add(-time.Minute)}, t0); got != StatusFailing {
		t.Errorf("recent failure with a contact: status %s, want failing", got)
	}
}

// TestOverviewCountsPartition: the Overview's cards count each extension
// once, under the status its dot shows: 2001 registered and then failing
// (a wrong password from a second phone, its first contact still there)
// is failing only, so online + offline + failing + disabled = total, per
// domain and in all.
func TestOverviewCountsPartition(t *testing.T) {
	f := newFixture(t, 2)
	f.jw.Record(store.Event{Time: t0.Add(-30 * time.Second), Kind: journal.KindRegister, Cause: cause.WrongPassword, Extension: "2001",
		Domain: "pbx.test", AuthUser: "2001", Source: "198.51.100.8:5060", Transport: "UDP", UserAgent: "second phone", Status: 403})
	f.jw.Flush(context.Background())
	if !strings.Contains(f.get("/extensions", true).Body.String(), `data-ext="pbx.test/2001" data-status="failing"`) {
		t.Fatal("2001 (registered, then a wrong password) is not shown failing")
	}
	doms, total := f.c.computeCounts()
	want := domainCounts{Domain: "all", Total: 5, Online: 0, Offline: 2, Failing: 2, Disabled: 1, Regs: 1}
	if total != want {
		t.Errorf("counts %+v, want %+v", total, want)
	}
	for _, d := range append(doms, total) {
		if sum := d.Online + d.Offline + d.Failing + d.Disabled; sum != d.Total {
			t.Errorf("%s: online %d + offline %d + failing %d + disabled %d = %d, not the total %d",
				d.Domain, d.Online, d.Offline, d.Failing, d.Disabled, sum, d.Total)
		}
	}
	body := f.get("/", true).Body.String()
	for id, n := range map[string]string{"c-online": "0", "c-offline": "2", "c-failing": "2"} {
		if !strings.Contains(body, `id="`+id+`">`+n+`<`) {
			t.Errorf("Overview card %s is not %s", id, n)
		}
	}
}

// TestKeysetPaging walks 1,203 extensions 500 at a time with the cursor:
// every extension once, in order, and the last page has no next link.
func TestKeysetPaging(t *testing.T) {
	f := newFixture(t, 1200)
	seen := map[string]bool{}
	after, pages := "", 0
	last := ""
	for {
		rows, next, total := f.c.page("", "", "", after, 500)
		if total != 1203 {
			t.Fatalf("total = %d", total)
		}
		pages++
		for _, r := range rows {
			if seen[r.Number] {
				t.Fatalf("%s listed twice", r.Number)
			}
			if last != "" && compareNumber(last, r.Number) >= 0 {
				t.Fatalf("%s after %s: out of order", r.Number, last)
			}
			seen[r.Number], last = true, r.Number
		}
		if next == "" {
			break
		}
		after = next
	}
	if len(seen) != 1203 || pages != 3 {
		t.Fatalf("saw %d extensions in %d pages, want 1203 in 3", len(seen), pages)
	}
	// "300" is in 3000-3009 and 3300.
	rows, _, _ := f.c.page("300", "", "", "", 50)
	if len(rows) != 11 || rows[0].Number != "3000" || rows[10].Number != "3300" {
		t.Fatalf("search 300: %d rows, first %+v", len(rows), rows)
	}
	w := f.get("/extensions?q="+strings.Repeat("x", 300), false)
	if w.Code != http.StatusBadRequest {
		t.Errorf("a 300-character search: %d, want 400", w.Code)
	}
	if w := f.get("/extensions?status=bogus", false); w.Code != http.StatusBadRequest {
		t.Errorf("unknown status chip: %d, want 400", w.Code)
	}
}

// TestAddExtensionShowsPasswordOnce: adding without a password generates
// one, shows it in the answer, stores only hashes, makes the extension
// live in the directory and journals the admin's name.
func TestAddExtensionShowsPasswordOnce(t *testing.T) {
	f := newFixture(t, 0)
	w := f.post("/extensions/add", "number=2050&name=Lobby&domain=pbx.test")
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `id="pw" readonly value="`) {
		t.Fatalf("add: %d\n%s", w.Code, w.Body)
	}
	e, err := f.db.Extension(context.Background(), "pbx.test", "2050")
	if err != nil || e.CallerIDName != "Lobby" || len(e.HA1MD5) != 32 || e.MaxRegistrations != 5 || e.CallTimeout != 30 || !e.Enabled {
		t.Fatalf("stored %+v, %v", e, err)
	}
	if _, ok := f.c.d.Dir.Lookup("pbx.test", "2050"); !ok {
		t.Error("the new extension is not in the directory cache")
	}
	f.jw.Flush(context.Background())
	evs, _ := f.db.QueryEvents(context.Background(), store.JournalFilter{Kind: journal.KindAdmin})
	if len(evs) == 0 || evs[0].AuthUser != "alice" || evs[0].Cause != cause.ExtensionChanged || !strings.Contains(evs[0].Detail, "2050") {
		t.Errorf("no audit event naming alice and 2050: %+v", evs)
	}
	if w := f.post("/extensions/add", "number=2050"); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "already exists") {
		t.Errorf("duplicate: %d %s", w.Code, w.Body)
	}
	if w := f.post("/extensions/add", "number=../x"); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "not a valid extension number") {
		t.Errorf("bad number: %d", w.Code)
	}
	if w := f.post("/extensions/add", "number=2051&password=short"); w.Code != http.StatusBadRequest {
		t.Errorf("weak password: %d", w.Code)
	}
}

// TestBulkDisableAndDelete: bulk actions change exactly the selection.
func TestBulkDisableAndDelete(t *testing.T) {
	f := newFixture(t, 0)
	w := f.post("/extensions/bulk", "action=disable&sel=pbx.test/2001&sel=pbx.test/2002")
	if w.Code != http.StatusSeeOther {
		t.Fatalf("bulk disable: %d %s", w.Code, w.Body)
	}
	for _, n := range []string{"2001", "2002"} {
		if e, _ := f.db.Extension(context.Background(), "pbx.test", n); e.Enabled {
			t.Errorf("%s still enabled", n)
		}
	}
	if w := f.post("/extensions/bulk", "action=delete&sel=pbx.test/2003"); w.Code != http.StatusSeeOther {
		t.Fatalf("bulk delete: %d", w.Code)
	}
	if _, err := f.db.Extension(context.Background(), "pbx.test", "2003"); err == nil {
		t.Error("2003 still exists")
	}
	if w := f.post("/extensions/bulk", "action=explode&sel=pbx.test/2001"); w.Code != http.StatusBadRequest {
		t.Errorf("unknown action: %d", w.Code)
	}
}

// TestLiveStream: a journal event recorded after a browser opened
// /events reaches it at once, as an SSE "journal" event with the event's
// JSON; the stream cap answers 503.
func TestLiveStream(t *testing.T) {
	f := newFixture(t, 0)
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	got := make(chan string, 1)
	go func() {
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				close(got)
				return
			}
			if strings.HasPrefix(line, "data: ") {
				got <- line
				return
			}
		}
	}()
	// Wait until the stream is registered, then record.
	deadline := time.Now().Add(2 * time.Second)
	for n, _, _ := f.c.Hub().Streams(); n == 0; n, _, _ = f.c.Hub().Streams() {
		if time.Now().After(deadline) {
			t.Fatal("the stream never opened")
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.jw.Record(store.Event{Kind: journal.KindRegister, Cause: cause.Registered, Extension: "2002", Domain: "pbx.test"})
	select {
	case line := <-got:
		if !strings.Contains(line, `"extension":"2002"`) || !strings.Contains(line, `"cause":"registered"`) {
			t.Errorf("data line %q", line)
		}
	case <-time.After(time.Second):
		t.Fatal("no event within 1 s")
	}
	f.c.Hub().MaxStreams = 1
	r2, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("stream over the cap: %d, want 503", r2.StatusCode)
	}
}

// TestHubRing: a stream gets the events published after it opened, in
// order; one that fell behind more than MaxBurst (or the ring) gets a
// resync instead; with no stream open Publish keeps nothing.
func TestHubRing(t *testing.T) {
	h := NewHub()
	h.Publish(store.Event{Extension: "before"})
	cur, ok := h.open()
	if !ok || cur != 0 {
		t.Fatalf("open: %d %v (an event published with no stream open was kept)", cur, ok)
	}
	h.Publish(store.Event{Extension: "2001"})
	h.Publish(store.Event{Extension: "2002"})
	msgs, next, resync := h.pull(cur)
	if resync || len(msgs) != 2 || !strings.Contains(string(msgs[0]), `"extension":"2001"`) ||
		!strings.Contains(string(msgs[1]), `"extension":"2002"`) || next != 2 {
		t.Fatalf("pull: %q next %d resync %v", msgs, next, resync)
	}
	for i := 0; i < h.MaxBurst+1; i++ {
		h.Publish(store.Event{Extension: "flood"})
	}
	msgs, next, resync = h.pull(next)
	if !resync || msgs != nil || next != uint64(h.MaxBurst+3) {
		t.Fatalf("after a flood: %d msgs, next %d, resync %v", len(msgs), next, resync)
	}
	if _, _, resyncs := h.Streams(); resyncs != 1 {
		t.Errorf("resyncs = %d", resyncs)
	}
	h.Close()
	if _, ok := h.open(); ok {
		t.Error("a closed hub opened a stream")
	}
}

// TestBadInput: malformed filters get a 400 with a message, unknown
// extensions a 404, never a panic.
func TestBadInput(t *testing.T) {
	f := newFixture(t, 0)
	for path, want := range map[string]int{
		"/journal?since=yesterday":                   http.StatusBadRequest,
		"/journal?ext=" + strings.Repeat("9", 100):   http.StatusBadRequest,
		"/calls?since=12/01/2026":                    http.StatusBadRequest,
		"/doctor?ext=" + url.QueryEscape("<script>"): http.StatusBadRequest,
		"/extensions/pbx.test/9999":                  http.StatusNotFound,
		"/extensions/row?domain=x&number=1":          http.StatusNotFound,
		"/acls?ip=not-an-ip":                         http.StatusOK,
	} {
		if w := f.get(path, false); w.Code != want {
			t.Errorf("GET %s: %d, want %d", path, w.Code, want)
		}
	}
	for _, p := range []string{"/assets/../console.go", "/assets/%2e%2e/console.go", "/assets/templates/layout.html"} {
		if w := f.get(p, false); w.Code == http.StatusOK || strings.Contains(w.Body.String(), "package console") {
			t.Errorf("GET %s: %d serves a file outside the assets", p, w.Code)
		}
	}
	if w := f.get("/assets/app.js", false); w.Code != http.StatusOK {
		t.Errorf("GET /assets/app.js: %d", w.Code)
	}
	if w := f.post("/bans/remove", "ip=nonsense"); w.Code != http.StatusBadRequest {
		t.Errorf("unban nonsense: %d", w.Code)
	}
}

// TestAdminsPage: the page lists admins and sessions (the own one without
// a Revoke button), refuses mismatched passwords and shows the service's
// errors.
func TestAdminsPage(t *testing.T) {
	f := newFixture(t, 0)
	body := f.get("/admins", false).Body.String()
	if !strings.Contains(body, "alice (you)") || !strings.Contains(body, "alice (this one)") || strings.Count(body, `name="action" value="revoke"`) != 1 {
		t.Errorf("admins page:\n%s", body)
	}
	if w := f.post("/admins", "action=add&name=carol&password=long-enough-1&password2=other-one-22"); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "differ") {
		t.Errorf("mismatched passwords: %d", w.Code)
	}
	if w := f.post("/admins", "action=add&name=carol&password=long-enough-1&password2=long-enough-1"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "carol") {
		t.Errorf("add: %d", w.Code)
	}
	if w := f.post("/admins", "action=remove&name=zed"); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "no admin zed") {
		t.Errorf("remove error not shown: %d", w.Code)
	}
	if w := f.post("/admins", "action=revoke&id=nope"); w.Code != http.StatusNotFound {
		t.Errorf("revoke unknown: %d", w.Code)
	}
}

// TestACLEdits: a list is added, gets a node and a default, the profile
// uses it, "test an IP" decides by it, and bad input is answered 400.
func TestACLEdits(t *testing.T) {
	f := newFixture(t, 0)
	for _, form := range []string{
		"op=add-list&acl=office&default=deny",
		"op=add-node&acl=office&action=allow&cidr=192.0.2.0/24",
		"op=profile&profile=internal&register_acl=office&inbound_acl=&trusted_acl=",
	} {
		if w := f.post("/acls", form); w.Code != http.StatusOK {
			t.Fatalf("%s: %d\n%s", form, w.Code, w.Body)
		}
	}
	body := f.get("/acls?ip=192.0.2.7", false).Body.String()
	if !strings.Contains(body, `<td>office</td><td><span class="ok">allow</span></td><td><code>allow 192.0.2.0/24</code>`) ||
		!strings.Contains(body, `name="register_acl" value="office"`) {
		t.Errorf("acls page after the edits:\n%s", body)
	}
	if w := f.post("/acls", "op=add-node&acl=office&action=allow&cidr=300.1.1.1/8"); w.Code != http.StatusBadRequest {
		t.Errorf("bad CIDR: %d", w.Code)
	}
	if w := f.post("/acls", "op=add-node&acl=nosuch&action=allow&cidr=10.0.0.0/8"); w.Code != http.StatusBadRequest {
		t.Errorf("unknown acl: %d", w.Code)
	}
	if w := f.post("/acls", "op=remove-node&acl=office&action=allow&cidr=192.0.2.0/24"); w.Code != http.StatusOK {
		t.Errorf("remove node: %d", w.Code)
	}
	f.jw.Flush(context.Background())
	evs, _ := f.db.QueryEvents(context.Background(), store.JournalFilter{Cause: cause.ACLChanged})
	if len(evs) < 3 {
		t.Errorf("%d acl_changed events, want 3", len(evs))
	}
}

// TestUnregister: the Registrations page removes the selected binding
// from the location table.
func TestUnregister(t *testing.T) {
	f := newFixture(t, 0)
	if n := len(f.loc.Lookup("pbx.test", "2001")); n != 1 {
		t.Fatalf("fixture: %d bindings", n)
	}
	// Empty parts would match everything: refused, nothing removed.
	f.post("/registrations/remove", "sel="+url.QueryEscape("||")+"&sel="+url.QueryEscape("pbx.test|2001|"))
	if n := len(f.loc.Lookup("pbx.test", "2001")); n != 1 {
		t.Fatalf("a selection with empty parts removed bindings: %d left", n)
	}
	w := f.post("/registrations/remove", "sel="+url.QueryEscape("pbx.test|2001|sip:2001@192.0.2.10:5062"))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/registrations?done=1+removed" {
		t.Fatalf("remove: %d %s", w.Code, w.Header().Get("Location"))
	}
	if n := len(f.loc.Lookup("pbx.test", "2001")); n != 0 {
		t.Errorf("%d bindings left", n)
	}
	if w := f.post("/registrations/remove", ""); w.Code != http.StatusBadRequest {
		t.Errorf("empty selection: %d", w.Code)
	}
}

// TestSeedAfterRestart: a new console reads the journal, so an extension
// that failed before a restart still shows failing.
func TestSeedAfterRestart(t *testing.T) {
	f := newFixture(t, 0)
	tr := newTracker()
	if err := tr.seed(context.Background(), f.db, t0.Add(-time.Hour), 100); err != nil {
		t.Fatal(err)
	}
	if s := tr.get("PBX.test", "2002"); s.failCause != cause.WrongPassword || s.failSource != "198.51.100.7:5060" {
		t.Errorf("seeded 2002: %+v", s)
	}
	if s := tr.get("pbx.test", "2001"); s.lastReg.IsZero() || !s.failAt.IsZero() {
		t.Errorf("seeded 2001: %+v", s)
	}
}

// TestUnbanAndExports: Unban lifts a ban through security.Store (and
// journals it); the CSV exports start with their header and defuse
// formulas.
func TestUnbanAndExports(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	ip := netip.MustParseAddr("198.51.100.7")
	if err := security.NewStore(f.db).PutBan(ctx, acl.Ban{IP: ip, Reason: "wrong passwords", Since: t0.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if body := f.get("/failed", false).Body.String(); !strings.Contains(body, `<td>198.51.100.7</td><td>wrong passwords</td>`) {
		t.Fatalf("the ban is not listed:\n%s", body)
	}
	if w := f.post("/bans/remove", "ip=198.51.100.7"); w.Code != http.StatusSeeOther {
		t.Fatalf("unban: %d %s", w.Code, w.Body)
	}
	if bans, _ := security.NewStore(f.db).Bans(ctx, t0); len(bans) != 0 {
		t.Errorf("bans left: %+v", bans)
	}
	if w := f.post("/bans/remove", "ip=198.51.100.7"); w.Code != http.StatusNotFound {
		t.Errorf("unban twice: %d", w.Code)
	}
	f.jw.Flush(ctx)
	if evs, _ := f.db.QueryEvents(ctx, store.JournalFilter{Cause: cause.BanLifted}); len(evs) != 1 || evs[0].AuthUser != "alice" {
		t.Errorf("ban_lifted events: %+v", evs)
	}
	csv := f.get("/extensions/export.csv", false).Body.String()
	if !strings.HasPrefix(csv, "extension,name,caller_id_number,") || !strings.Contains(csv, "2002,Sales <b>desk</b>,") {
		t.Errorf("extensions CSV:\n%s", csv)
	}
	if got := csvSafe("=HYPERLINK(1)"); got != "'=HYPERLINK(1)" {
		t.Errorf("csvSafe = %q", got)
	}
	if calls := f.get("/calls/export.csv", false).Body.String(); !strings.HasPrefix(calls, "id,start,from,to,") {
		t.Errorf("calls CSV:\n%s", calls)
	}
}
