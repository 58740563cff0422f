package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/multirow"
)

func openTest(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func tables(t *testing.T, db *DB) []string {
	t.Helper()
	rows, err := db.SQL().Query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// TestMigrateFromEmpty: a new data directory (even a missing one) gets the
// newest schema; opening it again changes nothing.
func TestMigrateFromEmpty(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b") // not there yet
	db := openTest(t, dir)
	var v int
	if err := db.SQL().QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != len(migrations) {
		t.Fatalf("schema version %d, want %d", v, len(migrations))
	}
	got := tables(t, db)
	for _, want := range []string{"bindings", "changes", "domains", "extensions", "journal", "meta"} {
		if !slices.Contains(got, want) {
			t.Errorf("table %s missing; tables: %v", want, got)
		}
	}
	var mode string
	if err := db.SQL().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q (%v), want wal", mode, err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.EnsureDomain(context.Background(), "pbx.test"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db2 := openTest(t, dir)
	if err := db2.SQL().QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != len(migrations) {
		t.Fatalf("reopen: version %d (%v)", v, err)
	}
	if _, err := db2.Domain(context.Background(), "PBX.test"); err != nil {
		t.Fatalf("reopen lost data: %v", err)
	}
}

// TestOpenRefusesNewerSchema: a database from a newer switchboard is not
// touched.
func TestOpenRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir)
	if _, err := db.SQL().Exec("PRAGMA user_version = 9999"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err := Open(context.Background(), dir)
	if err == nil || !strings.Contains(err.Error(), "newer than this switchboard") {
		t.Fatalf("want a newer-schema error, got %v", err)
	}
}

// TestOpenUnusableDir: a file where the directory should be is a one-line
// error.
func TestOpenUnusableDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, filepath.Join(file, "sub"), ""} {
		_, err := Open(context.Background(), dir)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("Open(%q) = %v, want a one-line error", dir, err)
		}
	}
}

func ext(domain, number string) store.Extension {
	return store.Extension{Domain: domain, Number: number, HA1MD5: strings.Repeat("a", 32), HA1SHA256: strings.Repeat("b", 64),
		Enabled: true, MaxRegistrations: 5, CallTimeout: 30}
}

// TestImportDuplicateRowIndex: an import is all or nothing and names the
// first bad row by its index.
func TestImportDuplicateRowIndex(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, t.TempDir())
	if _, err := db.EnsureDomain(ctx, "pbx.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddExtension(ctx, ext("pbx.test", "2001")); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name  string
		rows  []store.Extension
		index int
		is    error
	}{
		{"duplicate within the file", []store.Extension{ext("pbx.test", "3001"), ext("pbx.test", "3002"), ext("pbx.test", "3001")}, 2, store.ErrDuplicate},
		{"duplicate of a stored one", []store.Extension{ext("pbx.test", "3001"), ext("pbx.test", "2001")}, 1, store.ErrDuplicate},
		{"duplicate, other case of the domain", []store.Extension{ext("PBX.TEST", "2001")}, 0, store.ErrDuplicate},
		{"unknown domain", []store.Extension{ext("pbx.test", "3001"), ext("pbx.test", "3002"), ext("pbx.test", "3003"), ext("nope.test", "3004")}, 3, store.ErrNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := db.ImportExtensions(ctx, c.rows)
			var ie *ImportError
			if !errors.As(err, &ie) {
				t.Fatalf("want an *ImportError, got %v", err)
			}
			if ie.Index != c.index || !errors.Is(err, c.is) {
				t.Fatalf("got index %d (%v), want index %d (%v)", ie.Index, err, c.index, c.is)
			}
			exts, err := db.Extensions(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(exts) != 1 || exts[0].Number != "2001" {
				t.Fatalf("a failed import left rows behind: %v", exts)
			}
		})
	}

	good := []store.Extension{ext("pbx.test", "3001"), ext("pbx.test", "3002")}
	if err := db.ImportExtensions(ctx, good); err != nil {
		t.Fatal(err)
	}
	if _, n, err := db.Counts(ctx); err != nil || n != 3 {
		t.Fatalf("after a good import: %d extensions (%v), want 3", n, err)
	}
}

// TestDirectoryChangeFeed: every directory write leaves a change-feed entry a
// running server picks up.
func TestDirectoryChangeFeed(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, t.TempDir())
	if _, err := db.EnsureDomain(ctx, "pbx.test"); err != nil {
		t.Fatal(err)
	}
	e, err := db.AddExtension(ctx, ext("pbx.test", "2001"))
	if err != nil {
		t.Fatal(err)
	}
	e.Enabled = false
	if err := db.UpdateExtension(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := db.RemoveExtension(ctx, "pbx.test", "2001"); err != nil {
		t.Fatal(err)
	}
	if err := db.RemoveExtension(ctx, "pbx.test", "2001"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("removing twice: want ErrNotFound, got %v", err)
	}
	if _, err := db.AddExtension(ctx, ext("nope.test", "2001")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("adding to an unknown domain: want ErrNotFound, got %v", err)
	}
	chs, err := db.ChangesSince(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range chs {
		if c.Kind == "domain" || c.Kind == "ext" { // migrations may seed other kinds (acl, profile)
			got = append(got, c.Kind+":"+c.Key)
		}
	}
	want := []string{"domain:pbx.test", "ext:pbx.test/2001", "ext:pbx.test/2001", "ext:pbx.test/2001"}
	if !slices.Equal(got, want) {
		t.Fatalf("changes: got %v, want %v", got, want)
	}
	last, err := db.LastChange(ctx)
	if err != nil || last != chs[len(chs)-1].Seq {
		t.Fatalf("LastChange = %d (%v), want %d", last, err, chs[len(chs)-1].Seq)
	}
}

// TestRemoveDomain: a domain goes with its extensions and their bindings;
// the change feed names each extension before the domain.
func TestRemoveDomain(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, t.TempDir())
	for _, d := range []string{"pbx.test", "acme.test"} {
		if _, err := db.EnsureDomain(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.ImportExtensions(ctx, []store.Extension{ext("acme.test", "2001"), ext("acme.test", "2002"), ext("pbx.test", "2001")}); err != nil {
		t.Fatal(err)
	}
	var bs []store.Binding
	for _, d := range []string{"acme.test", "pbx.test"} {
		bs = append(bs, store.Binding{Domain: d, Extension: "2001", Contact: "sip:2001@127.0.0.1:5062", Source: "127.0.0.1:5062", Transport: "UDP"})
	}
	if err := db.ApplyBindings(ctx, bs, nil); err != nil {
		t.Fatal(err)
	}
	before, err := db.LastChange(ctx)
	if err != nil {
		t.Fatal(err)
	}

	n, err := db.RemoveDomain(ctx, "ACME.test")
	if err != nil || n != 2 {
		t.Fatalf("RemoveDomain = %d, %v; want 2 extensions", n, err)
	}
	if _, err := db.Domain(ctx, "acme.test"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("domain still there: %v", err)
	}
	exts, err := db.Extensions(ctx, "")
	if err != nil || len(exts) != 1 || exts[0].Domain != "pbx.test" {
		t.Fatalf("extensions left: %v (%v)", exts, err)
	}
	left, err := db.BindingsOf(ctx, "", "")
	if err != nil || len(left) != 1 || left[0].Domain != "pbx.test" {
		t.Fatalf("bindings left: %v (%v)", left, err)
	}
	chs, err := db.ChangesSince(ctx, before, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range chs {
		got = append(got, c.Kind+":"+c.Key)
	}
	want := []string{"ext:acme.test/2001", "ext:acme.test/2002", "domain:acme.test"}
	if !slices.Equal(got, want) {
		t.Fatalf("changes: got %v, want %v", got, want)
	}
	if _, err := db.RemoveDomain(ctx, "acme.test"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("removing twice: want ErrNotFound, got %v", err)
	}
}

// TestApplyBindingsChunks: an upsert batch that is not a multiple of the
// statement chunk is stored whole; a second upsert replaces, not duplicates.
func TestApplyBindingsChunks(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().Truncate(time.Millisecond)
	var bs []store.Binding
	for i := 0; i < 2*multirow.MaxRows+7; i++ {
		n := strconv.Itoa(3000 + i)
		bs = append(bs, store.Binding{Domain: "d", Extension: n, Contact: "sip:" + n + "@127.0.0.1", Source: "127.0.0.1:5060",
			Transport: "UDP", CSeq: uint32(i), RegisteredAt: now, ExpiresAt: now.Add(time.Hour)})
	}
	if err := db.ApplyBindings(ctx, bs, nil); err != nil {
		t.Fatal(err)
	}
	bs[0].CSeq = 99
	if err := db.ApplyBindings(ctx, bs[:1], []store.BindingKey{bs[1].Key()}); err != nil {
		t.Fatal(err)
	}
	got, err := db.LoadBindings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(bs)-1 {
		t.Fatalf("stored %d bindings, want %d", len(got), len(bs)-1)
	}
	byExt := map[string]store.Binding{}
	for _, b := range got {
		byExt[b.Extension] = b
	}
	if byExt["3000"].CSeq != 99 {
		t.Fatalf("replace lost: %+v", byExt["3000"])
	}
	if _, ok := byExt["3001"]; ok {
		t.Fatal("deleted binding still stored")
	}
	if b := byExt[bs[len(bs)-1].Extension]; !b.ExpiresAt.Equal(bs[len(bs)-1].ExpiresAt) || b.Contact != bs[len(bs)-1].Contact {
		t.Fatalf("last row: %+v", b)
	}
}

func TestTempStoreInMemory(t *testing.T) {
	db, err := Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ts int
	if err := db.SQL().QueryRow("PRAGMA temp_store").Scan(&ts); err != nil || ts != 2 {
		t.Fatalf("temp_store = %d (%v), want 2 (memory)", ts, err)
	}
}

// TestWriteSettings: every connection of the pool syncs each commit
// (synchronous=FULL: a REGISTER's 200 waits for a durable binding), and
// has the larger page cache and checkpoint interval that keep a batch's
// dirty pages out of the WAL until its commit.
func TestWriteSettings(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Hold every connection of the pool at once, so that each is checked.
	var conns []*sql.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 4; i++ {
		c, err := db.SQL().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		for _, p := range []struct {
			pragma string
			want   int
		}{{"synchronous", 2}, {"cache_size", -2000}, {"wal_autocheckpoint", 4000}} {
			var got int
			if err := c.QueryRowContext(ctx, "PRAGMA "+p.pragma).Scan(&got); err != nil || got != p.want {
				t.Errorf("connection %d: %s = %d (%v), want %d", i, p.pragma, got, err, p.want)
			}
		}
	}
	// The background writers' handle: the same settings but NORMAL (1).
	var got int
	if err := db.bg.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&got); err != nil || got != 1 {
		t.Errorf("background handle: synchronous = %d (%v), want 1 (NORMAL)", got, err)
	}
	if err := db.bg.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&got); err != nil || got != -8000 {
		t.Errorf("background handle: cache_size = %d (%v), want -8000", got, err)
	}
	if err := db.bg.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&got); err != nil || got != 10000 {
		t.Errorf("background handle: busy_timeout = %d (%v), want 10000", got, err)
	}
}

// TestNoUpdatedIndex: a single node's database keeps no index on the
// bindings' write time (only other nodes read by it), and reading what
// other nodes wrote still works without it.
func TestNoUpdatedIndex(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.SQL().QueryRow("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'bindings' AND sql IS NOT NULL").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d indexes on bindings (%v), want none besides the primary key", n, err)
	}
	now := time.Now()
	b := store.Binding{Domain: "example.com", Extension: "2001", Contact: "sip:2001@10.0.0.1", Source: "10.0.0.1:5060",
		Transport: "UDP", Node: "other", RegisteredAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := db.ApplyBindings(ctx, []store.Binding{b}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := db.OtherBindings(ctx, "self", now.Add(-time.Second), now)
	if err != nil || len(got) != 1 || got[0].Contact != b.Contact {
		t.Fatalf("OtherBindings = %+v (%v), want the other node's binding", got, err)
	}
}
