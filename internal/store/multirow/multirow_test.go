package multirow

import (
	"context"
	"database/sql"
	"testing"

	_ "modernc.org/sqlite"
)

func TestExecWritesEveryRowInOrder(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // one in-memory database
	if _, err := db.Exec("CREATE TABLE t(seq INTEGER PRIMARY KEY AUTOINCREMENT, k INTEGER UNIQUE, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	in := New(db, "INSERT INTO t(k, v)", 2, "ON CONFLICT(k) DO UPDATE SET v = excluded.v")
	defer in.Close()

	next := 0
	for _, rows := range []int{0, 1, 5, 31, 32, 33, 100} {
		var args []any
		for i := 0; i < rows; i++ {
			args = append(args, next, "v")
			next++
		}
		if err := in.Write(ctx, args); err != nil {
			t.Fatalf("%d rows: %v", rows, err)
		}
	}
	var n, ordered int
	if err := db.QueryRow("SELECT count(*), sum(seq - 1 = k) FROM t").Scan(&n, &ordered); err != nil {
		t.Fatal(err)
	}
	if n != next || ordered != next {
		t.Fatalf("%d rows stored (%d in order), want %d", n, ordered, next)
	}
	if len(in.stmts) != 6 { // 32, 16, 8, 4, 2, 1
		t.Fatalf("%d statement sizes prepared, want 6", len(in.stmts))
	}

	// The tail applies per row: a conflicting key updates.
	if err := in.Write(ctx, []any{3, "w", 4, "w"}); err != nil {
		t.Fatal(err)
	}
	var w int
	db.QueryRow("SELECT count(*) FROM t WHERE v = 'w'").Scan(&w)
	if w != 2 {
		t.Fatalf("upsert through the tail: %d rows updated, want 2", w)
	}

	// Exec inside a caller's transaction, after Prepare.
	fresh := New(db, "INSERT INTO t(k, v)", 2, "")
	defer fresh.Close()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Exec(ctx, tx, []any{1000, "e"}); err == nil {
		t.Fatal("Exec before Prepare accepted")
	}
	tx.Rollback()
	if err := fresh.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if tx, err = db.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Exec(ctx, tx, []any{1000, "e", 1001, "e", 1002, "e"}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var e int
	db.QueryRow("SELECT count(*) FROM t WHERE v = 'e'").Scan(&e)
	if e != 3 {
		t.Fatalf("Exec in a transaction stored %d rows, want 3", e)
	}

	if err := in.Write(ctx, []any{1, "x", 2}); err == nil {
		t.Fatal("3 values for 2 columns accepted")
	}
}
