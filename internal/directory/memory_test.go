package directory

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/digest"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// fakeSource serves n extensions "100000".. in domain 127.0.0.1 with the
// values a real directory holds. Like the sqlite store, every call returns
// freshly allocated rows (one string per column), so what the cache keeps
// alive is what it costs.
type fakeSource struct {
	store.Directory // only the methods below are called
	n               int
}

func (f fakeSource) Domains(context.Context) ([]store.Domain, error) {
	return []store.Domain{{ID: 1, Name: strings.Clone("127.0.0.1"), Enabled: true, CreatedAt: time.UnixMilli(1_700_000_000_000)}}, nil
}

func (f fakeSource) Extensions(context.Context, string) ([]store.Extension, error) {
	out := make([]store.Extension, f.n)
	for i := range out {
		num := strconv.Itoa(100000 + i)
		out[i] = store.Extension{
			ID:               int64(i + 1),
			Domain:           strings.Clone("127.0.0.1"),
			Number:           num,
			HA1MD5:           digest.HA1(digest.MD5, num, "127.0.0.1", "pw-"+num),
			HA1SHA256:        digest.HA1(digest.SHA256, num, "127.0.0.1", "pw-"+num),
			Enabled:          true,
			CallerIDName:     "Ext " + num,
			CallerIDNumber:   strings.Clone(num),
			MaxRegistrations: 5,
			CallTimeout:      30,
			CreatedAt:        time.UnixMilli(1_700_000_000_000 + int64(i)),
			UpdatedAt:        time.UnixMilli(1_700_000_000_000 + int64(i)),
		}
	}
	return out, nil
}

func (fakeSource) LastChange(context.Context) (int64, error) { return 0, nil }
func (fakeSource) ChangesSince(context.Context, int64, int) ([]store.Change, error) {
	return nil, nil
}
func (fakeSource) PruneChanges(context.Context, int64) error { return nil }

// liveHeap loads n extensions into a new cache and returns the live heap
// bytes and heap objects it holds per extension.
func liveHeap(tb testing.TB, n int) (bytes, objects float64) {
	tb.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := New(fakeSource{n: n}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := c.Load(context.Background()); err != nil {
		tb.Fatal(err)
	}
	runtime.GC() // the rows read from the source are garbage now
	runtime.ReadMemStats(&after)
	if c.Count() != n {
		tb.Fatalf("Count = %d, want %d", c.Count(), n)
	}
	runtime.KeepAlive(c)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n),
		float64(int64(after.HeapObjects)-int64(before.HeapObjects)) / float64(n)
}

// TestLiveHeap guards the cost of a loaded directory: about 147 bytes per
// extension (a compact Entry, its map slot and its strings) and a handful of
// heap objects in all. Before compact entries it was 371 bytes and 4 heap
// objects per extension.
func TestLiveHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 100,000 extensions")
	}
	bytes, objects := liveHeap(t, 100_000)
	t.Logf("%.1f heap bytes, %.4f heap objects per extension", bytes, objects)
	if bytes > 160 || objects > 0.01 {
		t.Errorf("%.1f heap bytes and %.4f heap objects per extension, want at most 160 and 0.01", bytes, objects)
	}
}

// BenchmarkLiveHeap100k reports the live heap a cache of 100,000 extensions
// costs, per extension:
//
//	go test -run '^$' -bench LiveHeap ./internal/directory/
func BenchmarkLiveHeap100k(b *testing.B) {
	var bytes, objects float64
	for b.Loop() {
		bytes, objects = liveHeap(b, 100_000)
	}
	b.ReportMetric(bytes, "heap-B/ext")
	b.ReportMetric(objects, "heap-objs/ext")
}

// BenchmarkLookup looks up existing extensions in a cache of 100,000.
func BenchmarkLookup(b *testing.B) {
	c := New(fakeSource{n: 100_000}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := c.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	nums := make([]string, 4096)
	for i := range nums {
		nums[i] = strconv.Itoa(100000 + (i*7919)%100_000)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e, ok := c.Lookup("127.0.0.1", nums[i%len(nums)])
		if !ok || !e.Enabled() {
			b.Fatal("missing")
		}
		i++
	}
}
