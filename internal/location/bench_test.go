package location_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/location"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// nopStore is a store.Bindings that keeps nothing: the benchmarks measure
// the table, not a database.
type nopStore struct{}

func (nopStore) LoadBindings(context.Context) ([]store.Binding, error) { return nil, nil }
func (nopStore) ApplyBindings(context.Context, []store.Binding, []store.BindingKey) error {
	return nil
}

// runNop starts a table on nopStore; stop ends its Run.
func runNop(now func() time.Time) (tb *location.Table, stop func()) {
	tb = location.New(nopStore{}, quiet, now)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		tb.Run(ctx)
		close(done)
	}()
	return tb, func() { cancel(); <-done }
}

// phone is one registering phone with realistic field values. The extension
// number and domain belong to the directory (already in memory); the other
// strings are freshly allocated per REGISTER, as the registrar does.
type phone struct {
	ext, contact, source, callID string
}

// phones returns n phones. lan phones send from the address in their
// Contact; the others are behind a NAT.
func phones(n int, lan bool) []phone {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]phone, n)
	for i := range out {
		ext := strconv.Itoa(100000 + i)
		port := strconv.Itoa(5061 + i%50000)
		src := "127.0.0.1:" + port
		if !lan {
			src = "203.0.113.7:" + strconv.Itoa(20000+i%40000)
		}
		out[i] = phone{ext: ext, contact: "sip:" + ext + "@127.0.0.1:" + port + ";transport=udp", source: src,
			callID: fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())}
	}
	return out
}

const benchDomain = "127.0.0.1"

// register adds p's binding the way the registrar's Update function does.
func register(tb *location.Table, p phone, now time.Time) error {
	_, err := tb.Update(context.Background(), benchDomain, p.ext, func(cur []store.Binding) ([]store.Binding, error) {
		b := store.Binding{Domain: benchDomain, Extension: p.ext, Contact: strings.Clone(p.contact),
			Source: strings.Clone(p.source), Transport: "UDP", UserAgent: strings.Clone("Grandstream GXP1625 1.0.11.23"),
			CallID: strings.Clone(p.callID), CSeq: 1, AuthUser: strings.Clone(p.ext), Realm: strings.Clone(benchDomain),
			RegisteredAt: now, ExpiresAt: now.Add(time.Hour)}
		for i := range cur {
			if cur[i].Contact == b.Contact {
				b.RegisteredAt = cur[i].RegisteredAt
				cur[i] = b
				return cur, nil
			}
		}
		return append(cur, b), nil
	})
	return err
}

// BenchmarkHeapPerBinding fills a table with 100,000 registrations and
// reports the live heap (bytes/binding) and heap objects (objects/binding)
// the table holds for them:
//
//	go test -run '^$' -bench HeapPerBinding -benchtime 3x ./internal/location/
func BenchmarkHeapPerBinding(b *testing.B) {
	const n = 100_000
	for _, lan := range []bool{true, false} {
		name := "nat"
		if lan {
			name = "lan"
		}
		b.Run(name, func(b *testing.B) {
			ps := phones(n, lan)
			now := time.Now()
			var bytes, objects float64
			for b.Loop() {
				tb, stop := runNop(nil)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for _, p := range ps {
					if err := register(tb, p, now); err != nil {
						b.Fatal(err)
					}
				}
				if err := tb.Flush(context.Background()); err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				if c := tb.Count(); c != n {
					b.Fatalf("Count = %d, want %d", c, n)
				}
				bytes = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
				objects = float64(int64(after.HeapObjects)-int64(before.HeapObjects)) / n
				stop()
			}
			b.ReportMetric(bytes, "B/binding")
			b.ReportMetric(objects, "objects/binding")
		})
	}
}

// registered returns a running table with n phones registered at now.
func registered(b *testing.B, n int) (*location.Table, []phone, time.Time, func()) {
	ps := phones(n, true)
	now := time.Now()
	tb, stop := runNop(nil)
	for _, p := range ps {
		if err := register(tb, p, now); err != nil {
			stop()
			b.Fatal(err)
		}
	}
	return tb, ps, now, stop
}

// BenchmarkRefresh: one registration refresh (Update of an existing
// binding) in a table of 10,000 registrations.
func BenchmarkRefresh(b *testing.B) {
	tb, ps, now, stop := registered(b, 10_000)
	defer stop()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := register(tb, ps[i%len(ps)], now.Add(time.Duration(i))); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkLookup: one Lookup of a registered extension in a table of
// 10,000 registrations.
func BenchmarkLookup(b *testing.B) {
	tb, ps, _, stop := registered(b, 10_000)
	defer stop()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if len(tb.Lookup(benchDomain, ps[i%len(ps)].ext)) != 1 {
			b.Fatal("not found")
		}
		i++
	}
}
