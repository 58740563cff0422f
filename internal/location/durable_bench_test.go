package location_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/location"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

// BenchmarkRegisterSQLite: registrations (new and refreshed bindings of
// 20,000 phones) through a table writing to a real SQLite database in a
// temporary directory, from many concurrent registrars as a loaded server
// has them, timed until every change is committed (the final Flush is in
// the timed part). ns/op is the cost of one durable registration:
//
//	go test -run '^$' -bench RegisterSQLite -benchtime 20000x ./internal/location/
func BenchmarkRegisterSQLite(b *testing.B) {
	for _, par := range []int{4, 128} {
		b.Run(strconv.Itoa(2*par)+"-in-flight", func(b *testing.B) { benchRegisterSQLite(b, par) })
	}
}

func benchRegisterSQLite(b *testing.B, par int) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	tb := location.New(db, quiet, nil)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { tb.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	ps := phones(20_000, true)
	now := time.Now()
	var next atomic.Int64
	b.SetParallelism(par) // concurrent REGISTERs in flight per CPU
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			if err := register(tb, ps[int(i)%len(ps)], now.Add(time.Duration(i))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if err := tb.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registrations/s")
}

// cpuTime is the process's CPU time (user and system, every goroutine):
// per op it is the CPU a durable registration costs, a figure that unlike
// ns/op does not grow when other processes take the cores.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
