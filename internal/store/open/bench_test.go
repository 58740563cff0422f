package open

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// backends opens an empty store of each kind for a benchmark.
func backends(b *testing.B) map[string]Backend {
	out := map[string]Backend{}
	for name, t := range map[string]Target{"sqlite": {Kind: SQLite, Dir: b.TempDir()}, "postgres": {Kind: Postgres, URL: pg.NewDB(b)}} {
		db, err := Open(ctx, t)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		out[name] = db
	}
	return out
}

// BenchmarkApplyBindings: one group commit of 64 refreshed bindings (the
// location writer's batch under load), per backend. The test PostgreSQL
// runs with fsync off; SQLite syncs (synchronous=FULL).
func BenchmarkApplyBindings(b *testing.B) {
	for name, db := range backends(b) {
		b.Run(name, func(b *testing.B) {
			exp := time.Now().Add(time.Hour)
			batch := make([]store.Binding, 64)
			for i := range batch {
				batch[i] = store.Binding{Domain: "example.com", Extension: fmt.Sprint(2000 + i), Contact: fmt.Sprintf("sip:%d@10.0.0.1:5060", 2000+i),
					Source: "10.0.0.1:5060", Transport: "UDP", UserAgent: "bench", CallID: "c", RegisteredAt: exp, ExpiresAt: exp}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range batch {
					batch[j].CSeq = uint32(i)
				}
				if err := db.ApplyBindings(ctx, batch, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "bindings/s")
		})
	}
}

// BenchmarkInsertEvents: one journal batch of 256 events, per backend.
func BenchmarkInsertEvents(b *testing.B) {
	for name, db := range backends(b) {
		b.Run(name, func(b *testing.B) {
			batch := make([]store.Event, 256)
			for i := range batch {
				batch[i] = store.Event{Time: time.Now(), Kind: "register", Cause: cause.Registered, Extension: fmt.Sprint(2000 + i),
					Domain: "example.com", Source: "10.0.0.1:5060", Transport: "UDP", Status: 200, CallID: "c"}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := db.InsertEvents(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
		})
	}
}
