package open

import (
	"fmt"
	"syscall"
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

// cpuMeter starts measuring the process's CPU time (user and system, every
// goroutine: the driver's and database/sql's included; a PostgreSQL
// server's own work is another process and not counted). The returned
// function reports it per op (cpu-µs/op) and per row written
// (cpu-µs/row, rows per op given), figures that unlike ns/op do not grow
// when other processes take the cores.
func cpuMeter(b *testing.B) func(rowsPerOp int) {
	start := cpuTime()
	return func(rowsPerOp int) {
		us := float64((cpuTime() - start).Microseconds())
		b.ReportMetric(us/float64(b.N), "cpu-µs/op")
		b.ReportMetric(us/float64(b.N*rowsPerOp), "cpu-µs/row")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuMeter(b)
			for i := 0; i < b.N; i++ {
				for j := range batch {
					batch[j].CSeq = uint32(i)
				}
				if err := db.ApplyBindings(ctx, batch, nil); err != nil {
					b.Fatal(err)
				}
			}
			cpu(len(batch))
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
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuMeter(b)
			for i := 0; i < b.N; i++ {
				if err := db.InsertEvents(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			cpu(len(batch))
			b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkSaveCalls: one call-record batch as the calls writer sends it
// under load (2,000 calls/s in 50 ms batches): 100 records, half of them
// new calls (ringing: no answer, no end yet) and half the end of a call
// written in an earlier batch (answered, ended, one branch, media of both
// legs), per backend.
func BenchmarkSaveCalls(b *testing.B) {
	for name, db := range backends(b) {
		b.Run(name, func(b *testing.B) {
			const n = 100
			start := time.Now()
			media := []store.MediaLeg{
				{Side: "caller", Relayed: true, Codec: "PCMU", SignalledAddr: "10.0.0.1:4000", SIPSource: "10.0.0.1:5060",
					LatchedAddr: "10.0.0.1:4000", PacketsIn: 500, BytesIn: 86000, PacketsOut: 500, BytesOut: 86000,
					FirstPacketIn: start, LastPacketIn: start.Add(10 * time.Second), MOS: 4.4},
				{Side: "callee", Relayed: true, Codec: "PCMU", SignalledAddr: "10.0.0.2:4000", SIPSource: "10.0.0.2:5060",
					LatchedAddr: "10.0.0.2:4000", PacketsIn: 500, BytesIn: 86000, PacketsOut: 500, BytesOut: 86000,
					FirstPacketIn: start, LastPacketIn: start.Add(10 * time.Second), MOS: 4.4},
			}
			batch := make([]store.Call, n)
			for j := range batch {
				r := store.Call{CallID: fmt.Sprintf("call-%d", j), From: "2001", To: fmt.Sprint(3000 + j),
					Domain: "example.com", Source: "10.0.0.1:5060", Transport: "UDP", UserAgent: "bench", Start: start}
				if j%2 == 1 { // the end of a call begun in the previous batch
					r.Answer, r.End, r.SIPStatus, r.Cause, r.HangupBy = start, start.Add(10*time.Second), 200, cause.NormalClearing, "caller"
					r.Branches = []store.CallBranch{{Contact: "sip:3000@10.0.0.2:5060", Destination: "10.0.0.2:5060",
						Transport: "UDP", UserAgent: "phone", Status: 200, Reason: "OK", Ringing: true}}
					r.Media = media
				}
				batch[j] = r
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuMeter(b)
			for i := 0; i < b.N; i++ {
				// Batch i begins calls i*n/2+1 ... and ends those batch i-1 began.
				for j := range batch {
					batch[j].ID = int64(i*n/2 + j/2 + 1)
					if j%2 == 1 {
						batch[j].ID -= n / 2
					}
				}
				if err := db.SaveCalls(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			cpu(n)
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
