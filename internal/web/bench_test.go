package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/digest"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
	"github.com/switchboard-pbx/switchboard/internal/webauth"
)

// BenchmarkAPIExtensions measures the server time of GET
// /api/v1/extensions (100 rows, Bearer token) with 100,003 extensions,
// as internal/console's BenchmarkExtensionsPage does for the page: the
// first page, a deep page by offset and by cursor, a search and one
// domain's first page. It reports p50 and p99 in microseconds besides
// ns/op.
func BenchmarkAPIExtensions(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if _, err := db.EnsureDomain(ctx, "pbx.test"); err != nil {
		b.Fatal(err)
	}
	if err := db.SetMeta(ctx, "default_domain", "pbx.test"); err != nil {
		b.Fatal(err)
	}
	exts := []store.Extension{
		{Domain: "pbx.test", Number: "2001", CallerIDName: "Reception", Enabled: true, MaxRegistrations: 5, CallTimeout: 30},
		{Domain: "pbx.test", Number: "2002", CallerIDName: "Sales desk", Enabled: true, MaxRegistrations: 5, CallTimeout: 30},
		{Domain: "pbx.test", Number: "2003", CallerIDName: "Old fax", MaxRegistrations: 5, CallTimeout: 30},
	}
	for i := range 100_000 {
		n := fmt.Sprint(3000 + i)
		exts = append(exts, store.Extension{Domain: "pbx.test", Number: n, Enabled: true, MaxRegistrations: 5, CallTimeout: 30,
			HA1MD5: digest.HA1(digest.MD5, n, "pbx.test", "x")})
	}
	if err := db.ImportExtensions(ctx, exts); err != nil {
		b.Fatal(err)
	}
	tok, hash, prefix, err := webauth.NewToken()
	if err != nil {
		b.Fatal(err)
	}
	if err := db.AddAPIToken(ctx, store.APIToken{Name: "bench", Hash: hash, Prefix: prefix}); err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{}, Deps{DB: db})
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	get := func(path string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for _, c := range []struct{ name, path string }{
		{"first", "/api/v1/extensions"},
		{"deep-offset", "/api/v1/extensions?offset=99000"},
		{"deep-cursor", "/api/v1/extensions?after=pbx.test/102000"},
		{"search", "/api/v1/extensions?q=4711"},
		{"domain", "/api/v1/extensions?domain=pbx.test"},
	} {
		b.Run(c.name, func(b *testing.B) {
			if w := get(c.path); w.Code != http.StatusOK {
				b.Fatalf("%s: %d %s", c.path, w.Code, w.Body)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				t := time.Now()
				w := get(c.path)
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
