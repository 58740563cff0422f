package pgtest

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

var pg *Server

func TestMain(m *testing.M) { os.Exit(Main(m, &pg)) }

// TestNewDB: each database is fresh and reachable, and the server
// survives a stop and a start.
func TestNewDB(t *testing.T) {
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		u := pg.NewDB(t)
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil || n != 0 {
			t.Fatalf("fresh database has %d tables (%v)", n, err)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE x(a int)"); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
	}
	if pg.SocketDir() == "" {
		return
	}
	if err := pg.StopServer("immediate"); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, pg.AdminURL); err == nil {
		t.Fatal("connected to a stopped server")
	}
	if err := pg.StartServer(); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pg.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
}
