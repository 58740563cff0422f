package console

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// BenchmarkExtensionsPage measures the server time of the Extensions page
// (50 rows) with 100,003 extensions: the first page, a page deep in the
// list (keyset cursor), a search and a status filter. It reports p50 and
// p99 in microseconds besides ns/op.
func BenchmarkExtensionsPage(b *testing.B) {
	f := newFixtureTB(b, 100_000)
	for _, c := range []struct{ name, path string }{
		{"first", "/extensions"},
		{"deep", "/extensions?after=pbx.test/99000"},
		{"search", "/extensions?q=4711"},
		{"failing", "/extensions?status=failing"},
		{"row", "/extensions/row?domain=pbx.test&number=50000"},
	} {
		b.Run(c.name, func(b *testing.B) {
			f.get(c.path, false) // build the index once
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				t := time.Now()
				w := f.get(c.path, false)
				lat = append(lat, time.Since(t))
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d", c.path, w.Code)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkSSEStreamMemory opens 200 live streams through a real HTTP
// server and reports the heap and goroutine stack bytes each one costs
// (both ends, client included, so an upper bound for the server side).
func BenchmarkSSEStreamMemory(b *testing.B) {
	f := newFixtureTB(b, 0)
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	const n = 200
	f.c.Hub().MaxStreams = n
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var bodies []*http.Response
		for range n {
			resp, err := http.Get(srv.URL + "/events")
			if err != nil {
				b.Fatal(err)
			}
			line, _ := bufio.NewReader(resp.Body).ReadString('\n')
			if !strings.HasPrefix(line, "retry:") {
				b.Fatalf("stream starts %q", line)
			}
			bodies = append(bodies, resp)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		used := (after.HeapInuse + after.StackInuse) - (before.HeapInuse + before.StackInuse)
		b.ReportMetric(float64(used)/n, "bytes/stream")
		if open, _, _ := f.c.Hub().Streams(); open != n {
			b.Fatalf("%d streams open, want %d", open, n)
		}
		for _, r := range bodies {
			r.Body.Close()
		}
		srv.CloseClientConnections()
		deadline := time.Now().Add(10 * time.Second)
		for open, _, _ := f.c.Hub().Streams(); open > 0; open, _, _ = f.c.Hub().Streams() {
			if time.Now().After(deadline) {
				b.Fatalf("%d streams still open 10 s after their clients left", open)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// BenchmarkTap is what the journal's tap adds to each recorded event (the
// SIP hot path): remembering failures and registrations, and publishing to
// 0 or 50 open streams (each drained by a reader, as a browser would).
func BenchmarkTap(b *testing.B) {
	for _, n := range []int{0, 50} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			c := &Console{hub: NewHub(), seen: newTracker()}
			for range n {
				c.hub.open()
			}
			e := store.Event{Time: time.Now(), Kind: "register", Cause: cause.Registered, Extension: "2001", Domain: "pbx.test",
				Source: "192.0.2.10:5062", Transport: "UDP", UserAgent: "Yealink T46U", Status: 200}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c.observe(e)
				}
			})
		})
	}
}
