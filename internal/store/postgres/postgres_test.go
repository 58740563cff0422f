package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

var ctx = context.Background()

// TestMigrateConcurrently: nodes starting together on an empty database
// apply each migration once (the advisory lock), and all of them end up
// on the newest schema; opening again applies nothing.
func TestMigrateConcurrently(t *testing.T) {
	url := pg.NewDB(t)
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := Open(ctx, url)
			if err == nil {
				db.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
	db := openURL(t, url)
	if v, err := db.SchemaVersion(ctx); err != nil || v != Version() {
		t.Fatalf("schema version %d (%v), want %d", v, err, Version())
	}
	if n, err := db.Migrate(ctx); err != nil || n != 0 {
		t.Fatalf("second Migrate applied %d (%v), want 0", n, err)
	}
	var rows int
	if err := db.Pool().QueryRow(ctx, "SELECT count(*) FROM schema_version").Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("schema_version has %d rows (%v), want 1", rows, err)
	}
	// The seed of migration 4 ran once.
	if lists, err := db.ACLs(ctx); err != nil || len(lists) != 1 || len(lists[0].Nodes) != 2 {
		t.Fatalf("seed ACLs after concurrent migrations: %+v %v", lists, err)
	}
}

// TestOpenExisting: a database without switchboard's schema is
// ErrNoDatabase; a newer schema is refused by Open and ErrSchema for
// OpenExisting.
func TestOpenExisting(t *testing.T) {
	url := pg.NewDB(t)
	if _, err := OpenExisting(ctx, url); !errors.Is(err, ErrNoDatabase) {
		t.Fatalf("empty database: %v, want ErrNoDatabase", err)
	}
	db := openURL(t, url)
	if _, err := db.Pool().Exec(ctx, "UPDATE schema_version SET version = version + 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenExisting(ctx, url); !errors.Is(err, ErrSchema) {
		t.Fatalf("newer schema: %v, want ErrSchema", err)
	}
	if _, err := Open(ctx, url); err == nil || !strings.Contains(err.Error(), "upgrade switchboard") {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

// TestRedact: a password never shows in what is printed.
func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://sb:s3cret@db.example:5432/sb?sslmode=require": "postgres://sb:xxxxx@db.example:5432/sb?sslmode=require",
		"postgres://sb@/sb?host=/run/pg&password=s3cret":          "postgres://sb@/sb?host=%2Frun%2Fpg&password=xxxxx",
		"host=/run/pg user=sb password=s3cret dbname=sb":          "host=/run/pg user=sb password=xxxxx dbname=sb",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	_, err := Open(ctx, "postgres://sb:s3cret@127.0.0.1:1/sb?connect_timeout=1")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error of an unreachable server: %v", err)
	}
}

// TestApplyBindingsBatch: many bindings, with a key upserted twice (the
// last wins) and one upserted and deleted in the same batch, in one call.
func TestApplyBindingsBatch(t *testing.T) {
	db := openTest(t)
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	var up []store.Binding
	for i := 0; i < 500; i++ {
		up = append(up, store.Binding{Domain: "example.com", Extension: fmt.Sprint(2000 + i%50), Contact: fmt.Sprintf("sip:%d@10.0.0.1", i),
			Source: "10.0.0.1:5060", Transport: "UDP", CSeq: uint32(i), RegisteredAt: exp.Add(-time.Hour), ExpiresAt: exp})
	}
	again := up[7]
	again.CSeq = 4_000_000_000 // beyond int32: kept as uint32
	up = append(up, again)
	if err := db.ApplyBindings(ctx, up, []store.BindingKey{up[8].Key()}); err != nil {
		t.Fatal(err)
	}
	all, err := db.LoadBindings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 499 {
		t.Fatalf("%d bindings stored, want 499", len(all))
	}
	got, _ := db.BindingsOf(ctx, "example.com", up[7].Extension)
	for _, b := range got {
		if b.Contact == up[7].Contact && b.CSeq != again.CSeq {
			t.Fatalf("last upsert of a key did not win: cseq %d", b.CSeq)
		}
		if b.Contact == up[8].Contact {
			t.Fatal("a binding upserted and deleted in one batch is still there")
		}
	}
}

// TestReconnect: with the server stopped (immediate: as if it crashed),
// writes and reads fail with an error, and once it is back the same DB
// works again without being reopened.
func TestReconnect(t *testing.T) {
	if pg.SocketDir() == "" {
		t.Skip("needs the private server (not " + "SWITCHBOARD_TEST_PG" + ")")
	}
	db := openTest(t)
	b := store.Binding{Domain: "example.com", Extension: "2001", Contact: "sip:2001@10.0.0.1", Source: "10.0.0.1:5060",
		Transport: "UDP", RegisteredAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if err := db.ApplyBindings(ctx, []store.Binding{b}, nil); err != nil {
		t.Fatal(err)
	}
	if err := pg.StopServer("immediate"); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			pg.StartServer()
		}
	}()
	b.Contact = "sip:2001@10.0.0.2"
	err := db.ApplyBindings(ctx, []store.Binding{b}, nil)
	if err == nil || !strings.Contains(err.Error(), "save bindings") {
		t.Fatalf("write with the server down: %v, want a wrapped error", err)
	}
	if _, err := db.CountRegistrations(ctx, time.Now()); err == nil {
		t.Fatal("read with the server down succeeded")
	}
	if err := pg.StartServer(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	deadline := time.Now().Add(20 * time.Second)
	for {
		err = db.ApplyBindings(ctx, []store.Binding{b}, nil)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("no recovery after the restart: %v", err)
	}
	if n, err := db.CountRegistrations(ctx, time.Now()); err != nil || n != 2 {
		t.Fatalf("after the restart: %d registrations (%v), want 2 (the one before and the one after)", n, err)
	}
}

func openURL(t *testing.T, url string) *DB {
	t.Helper()
	db, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestChangeFeedInCommitOrder: with several writers at once, each of
// whose transactions commits a few milliseconds after writing, a reader
// that polls the change feed from the last sequence number it saw misses
// nothing (sequence numbers are committed in order: sb_change's lock), and
// each change sends a NOTIFY on switchboard_changes.
func TestChangeFeedInCommitOrder(t *testing.T) {
	db := openTest(t)
	conn, err := db.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN switchboard_changes"); err != nil {
		t.Fatal(err)
	}
	start, _ := db.LastChange(ctx)
	const writers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				// A change whose transaction commits a little later than
				// it took its sequence number (as a long edit would).
				err := pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, "SELECT sb_change('ext', $1)", fmt.Sprintf("example.com/%d%03d", w+1, i)); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, "SELECT pg_sleep($1::float8)", float64((i*7+w*3)%5)/1000)
					return err
				})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	seen := map[string]bool{}
	last := start
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		chs, err := db.ChangesSince(ctx, last, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range chs {
			seen[c.Key] = true
			last = c.Seq
		}
		time.Sleep(time.Millisecond)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	chs, _ := db.ChangesSince(ctx, last, 1000)
	for _, c := range chs {
		seen[c.Key] = true
	}
	if len(seen) != writers*each {
		t.Fatalf("the polling reader saw %d of %d changes", len(seen), writers*each)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := conn.Conn().WaitForNotification(wctx)
	if err != nil || n.Channel != "switchboard_changes" || n.Payload != "ext" {
		t.Fatalf("notification: %+v %v", n, err)
	}
}
