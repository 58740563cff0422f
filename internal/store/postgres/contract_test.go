package postgres

import (
	"context"
	"os"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/store/pgtest"
	"github.com/switchboard-pbx/switchboard/internal/store/storetest"
)

var pg *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pg)) }

func openTest(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), pg.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestContract runs the contract every storage backend passes against a
// real PostgreSQL.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend { return openTest(t) })
}
