package open

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/pgtest"
	"github.com/switchboard-pbx/switchboard/internal/store/postgres"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

var pg *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pg)) }

var ctx = context.Background()

func TestParse(t *testing.T) {
	for _, c := range []struct {
		url, data, kind, show string
		bad                   bool
	}{
		{"", "./data", SQLite, "sqlite:./data", false},
		{"sqlite:/var/lib/sb", "./data", SQLite, "sqlite:/var/lib/sb", false},
		{"postgres://sb:pw@db/sb", "", Postgres, "postgres://sb:xxxxx@db/sb", false},
		{"postgresql://sb@/sb?host=/run/pg", "", Postgres, "postgresql://sb@/sb?host=/run/pg", false},
		{"mysql://sb:pw@db/sb", "", "", "", true},
		{"sqlite:", "", "", "", true},
	} {
		tg, err := Parse(c.url, c.data)
		if c.bad {
			if !errors.Is(err, ErrBadURL) || strings.Contains(err.Error(), "pw") {
				t.Errorf("Parse(%q) = %v, want ErrBadURL without the password", c.url, err)
			}
			continue
		}
		if err != nil || tg.Kind != c.kind || tg.String() != c.show {
			t.Errorf("Parse(%q) = %+v %q, %v; want %s %q", c.url, tg, tg.String(), err, c.kind, c.show)
		}
	}
}

// populate fills an SQLite data directory as a server would have.
func populate(t *testing.T, dir string) {
	t.Helper()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = db.AddDomain(ctx, "Example.com", "realm.example")
	must(err)
	for _, n := range []string{"2001", "2002", "2003"} {
		_, err := db.AddExtension(ctx, store.Extension{Domain: "example.com", Number: n, HA1MD5: "md5-" + n, HA1SHA256: "sha-" + n,
			Enabled: n != "2003", MaxRegistrations: 5, CallTimeout: 30})
		must(err)
	}
	now := time.Now().Truncate(time.Millisecond)
	must(db.ApplyBindings(ctx, []store.Binding{{Domain: "Example.com", Extension: "2001", Contact: "sip:2001@10.0.0.1",
		Source: "10.0.0.1:5060", Transport: "UDP", CSeq: 3, RegisteredAt: now, ExpiresAt: now.Add(time.Hour), PingRTT: 2.5}}, nil))
	must(db.InsertEvents(ctx, []store.Event{{Time: now, Kind: "register", Cause: cause.Registered, Extension: "2001", Domain: "Example.com"}}))
	must(db.SaveCalls(ctx, []store.Call{{ID: 7, CallID: "c7", From: "2001", To: "2002", Domain: "Example.com", Start: now}}))
	must(db.AddACL(ctx, "office", true))
	_, err = db.PutACLNode(ctx, "office", acl.Node{Allow: false, Prefix: netip.MustParsePrefix("10.9.0.0/16")})
	must(err)
	must(db.PutBan(ctx, acl.Ban{IP: netip.MustParseAddr("192.0.2.9"), Reason: "wrong password", Failures: 5, Since: now}))
	must(db.SetMeta(ctx, "default_domain", "Example.com"))
}

// TestCopy: an SQLite installation copied to PostgreSQL reads the same
// through the store interfaces; new rows get fresh ids; a second copy is
// refused without --force and changes nothing, and replaces with it.
func TestCopy(t *testing.T) {
	dir := t.TempDir()
	populate(t, dir)
	url := pg.NewDB(t)
	from := Target{Kind: SQLite, Dir: dir}
	to := Target{Kind: Postgres, URL: url}
	rep, err := Copy(ctx, from, to, false)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]int64{}
	for _, r := range rep.Tables {
		rows[r.Table] = r.Rows
	}
	for table, want := range map[string]int64{"domains": 1, "extensions": 3, "bindings": 1, "journal": 1, "calls": 1,
		"acls": 2, "acl_nodes": 3, "profiles": 1, "bans": 1} {
		if rows[table] != want {
			t.Errorf("copied %d rows of %s, want %d (report %+v)", rows[table], table, want, rep.Tables)
		}
	}
	b, err := OpenExisting(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	d, err := b.Domain(ctx, "example.COM")
	if err != nil || d.Realm != "realm.example" || d.Name != "Example.com" {
		t.Fatalf("copied domain %+v %v", d, err)
	}
	e, err := b.Extension(ctx, "example.com", "2003")
	if err != nil || e.Enabled || e.HA1MD5 != "md5-2003" {
		t.Fatalf("copied extension %+v %v (want disabled, its hash kept)", e, err)
	}
	bs, err := b.BindingsOf(ctx, "Example.com", "2001")
	if err != nil || len(bs) != 1 || bs[0].PingRTT != 2.5 || bs[0].CSeq != 3 {
		t.Fatalf("copied bindings %+v %v", bs, err)
	}
	lists, _ := b.ACLs(ctx)
	if len(lists) != 2 || lists[1].Name != "office" || !lists[1].DefaultAllow || len(lists[1].Nodes) != 1 || lists[1].Nodes[0].Allow {
		t.Fatalf("copied ACLs %+v", lists)
	}
	if v, ok, _ := b.Meta(ctx, "default_domain"); !ok || v != "Example.com" {
		t.Fatalf("copied setting %q %v", v, ok)
	}
	// The identity sequences continue past the copied ids.
	x, err := b.AddExtension(ctx, store.Extension{Domain: "example.com", Number: "2004", HA1MD5: "m", HA1SHA256: "s"})
	if err != nil || x.ID <= 3 {
		t.Fatalf("new extension after the copy: %+v %v", x, err)
	}
	// The change feed holds only what happened after the copy.
	chs, _ := b.ChangesSince(ctx, 0, 100)
	if len(chs) != 1 || chs[0].Key != "Example.com/2004" {
		t.Fatalf("change feed after the copy: %+v", chs)
	}

	if _, err := Copy(ctx, from, to, false); !errors.Is(err, ErrTargetNotEmpty) {
		t.Fatalf("second copy: %v, want ErrTargetNotEmpty", err)
	}
	if _, n, _ := b.Counts(ctx); n != 4 {
		t.Fatalf("a refused copy changed the target: %d extensions", n)
	}
	if _, err := Copy(ctx, from, to, true); err != nil {
		t.Fatalf("copy --force: %v", err)
	}
	if _, n, _ := b.Counts(ctx); n != 3 {
		t.Fatalf("after copy --force: %d extensions, want the source's 3", n)
	}
}

// TestCopyAllOrNothing: a copy that fails part way (here: a source row the
// target's schema refuses) leaves the target as it was.
func TestCopyAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	populate(t, dir)
	sq, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	// SQLite lets a text into an integer column; PostgreSQL does not.
	if _, err := sq.SQL().Exec("INSERT INTO calls(id, call_id, caller, callee, domain, started_at) VALUES (8, 'c8', 'a', 'b', 'd', 'soon')"); err != nil {
		t.Fatal(err)
	}
	sq.Close()
	url := pg.NewDB(t)
	db, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.EnsureDomain(ctx, "keep.example"); err != nil {
		t.Fatal(err)
	}
	if _, err := Copy(ctx, Target{Kind: SQLite, Dir: dir}, Target{Kind: Postgres, URL: url}, true); err == nil || !strings.Contains(err.Error(), "calls") {
		t.Fatalf("copy of a bad row: %v, want an error naming the table", err)
	}
	ds, err := db.Domains(ctx)
	if err != nil || len(ds) != 1 || ds[0].Name != "keep.example" {
		t.Fatalf("a failed copy changed the target: %+v %v", ds, err)
	}
}

// TestStatus: schema versions before and after a migration, both backends.
func TestStatus(t *testing.T) {
	for _, tg := range []Target{{Kind: SQLite, Dir: t.TempDir()}, {Kind: Postgres, URL: pg.NewDB(t)}} {
		st, err := ReadStatus(ctx, tg)
		if err != nil || st.Exists || st.Pending != st.Latest || st.Latest == 0 {
			t.Fatalf("%s before: %+v %v", tg, st, err)
		}
		if _, err := OpenExisting(ctx, tg); !errors.Is(err, ErrNoDatabase) {
			t.Fatalf("%s OpenExisting before: %v", tg, err)
		}
		b, err := Open(ctx, tg)
		if err != nil {
			t.Fatal(err)
		}
		b.Close()
		st, err = ReadStatus(ctx, tg)
		if err != nil || !st.Exists || st.Pending != 0 || st.Version != st.Latest {
			t.Fatalf("%s after: %+v %v", tg, st, err)
		}
	}
}
