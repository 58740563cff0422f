package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/view"
	"github.com/switchboard-pbx/switchboard/internal/webauth"
)

// apiFixture is a fixture with a default domain and an API token.
func apiFixture(t *testing.T) (*fixture, string) {
	t.Helper()
	f := newFixture(t, true, Config{})
	ctx := context.Background()
	if _, err := f.db.EnsureDomain(ctx, "pbx.test"); err != nil {
		t.Fatal(err)
	}
	if err := f.db.SetMeta(ctx, "default_domain", "pbx.test"); err != nil {
		t.Fatal(err)
	}
	tok, hash, prefix, err := webauth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.db.AddAPIToken(ctx, store.APIToken{Name: "script", Hash: hash, Prefix: prefix}); err != nil {
		t.Fatal(err)
	}
	return f, tok
}

func (f *fixture) api(method, path, tok, body string) (*http.Response, string) {
	f.t.Helper()
	hdr := map[string]string{"Content-Type": "application/json"}
	if tok != "" {
		hdr["Authorization"] = "Bearer " + tok
	}
	var res *http.Response
	if body == "" {
		res = f.do(method, path, nil, hdr)
	} else {
		res = f.do(method, path, strings.NewReader(body), hdr)
	}
	return res, readBody(f.t, res)
}

// TestAPITokenAuth: the API answers 401 JSON without a token, with a wrong
// one or a malformed header, and serves a stored token; a session cookie
// works too.
func TestAPITokenAuth(t *testing.T) {
	f, tok := apiFixture(t)
	for _, bad := range []string{"", "sbt_" + strings.Repeat("A", 43), tok + "x", "Basic " + tok} {
		hdr := map[string]string{}
		if bad != "" {
			hdr["Authorization"] = "Bearer " + bad
			if strings.HasPrefix(bad, "Basic") {
				hdr["Authorization"] = bad
			}
		}
		res := f.do("GET", "/api/v1/status", nil, hdr)
		body := readBody(t, res)
		var e apiError
		if res.StatusCode != 401 || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "Bearer") {
			t.Errorf("token %q: %d %q", bad, res.StatusCode, body)
		}
	}
	res, body := f.api("GET", "/api/v1/status", tok, "")
	var st view.Status
	if res.StatusCode != 200 || json.Unmarshal([]byte(body), &st) != nil || st.DefaultDomain != "pbx.test" {
		t.Fatalf("status with token: %d %q", res.StatusCode, body)
	}
	_, c := f.login("alice", testPassword)
	res = f.do("GET", "/api/v1/bans", nil, map[string]string{"Cookie": c.Name + "=" + c.Value})
	if res.StatusCode != 200 {
		t.Fatalf("API with a session cookie: %d", res.StatusCode)
	}
	if res, _ := f.api("GET", "/api/v1/nope", tok, ""); res.StatusCode != 404 {
		t.Fatalf("unknown endpoint: %d", res.StatusCode)
	}
}

// TestAPIExtensions: create (password shown once), get, list with search
// and pagination, update, new password, delete, each journaled with the
// token's name; field names are the CLI's.
func TestAPIExtensions(t *testing.T) {
	f, tok := apiFixture(t)
	res, body := f.api("POST", "/api/v1/extensions", tok, `{"extension":"2001","name":"Front desk"}`)
	var v view.Extension
	if res.StatusCode != 201 || json.Unmarshal([]byte(body), &v) != nil || v.Password == "" || v.Domain != "pbx.test" || v.Name != "Front desk" {
		t.Fatalf("create: %d %q", res.StatusCode, body)
	}
	if !strings.Contains(body, `"caller_id_number"`) || !strings.Contains(body, `"call_timeout_s"`) {
		t.Fatalf("field names differ from the CLI's: %q", body)
	}
	for i := range 5 {
		f.api("POST", "/api/v1/extensions", tok, `{"extension":"30`+string(rune('0'+i))+`","password":"a good password"}`)
	}
	if res, body := f.api("GET", "/api/v1/extensions/2001", tok, ""); res.StatusCode != 200 || strings.Contains(body, "password") {
		t.Fatalf("get: %d %q", res.StatusCode, body)
	}
	res, body = f.api("GET", "/api/v1/extensions?q=30&limit=2&offset=1", tok, "")
	var page extensionPage
	if json.Unmarshal([]byte(body), &page) != nil || page.Total != 5 || len(page.Extensions) != 2 || page.Extensions[0].Extension != "301" {
		t.Fatalf("list: %d %q", res.StatusCode, body)
	}
	res, body = f.api("PATCH", "/api/v1/extensions/2001", tok, `{"enabled":false,"description":"lobby"}`)
	if res.StatusCode != 200 || !strings.Contains(body, `"enabled": false`) || !strings.Contains(body, `"lobby"`) {
		t.Fatalf("update: %d %q", res.StatusCode, body)
	}
	res, body = f.api("POST", "/api/v1/extensions/2001/password", tok, "")
	if res.StatusCode != 200 || !strings.Contains(body, `"password"`) {
		t.Fatalf("new password: %d %q", res.StatusCode, body)
	}
	if res, _ := f.api("POST", "/api/v1/extensions", tok, `{"extension":"2001"}`); res.StatusCode != 409 {
		t.Fatalf("duplicate: %d", res.StatusCode)
	}
	if res, _ := f.api("DELETE", "/api/v1/extensions/2001", tok, ""); res.StatusCode != 200 {
		t.Fatalf("delete: %d", res.StatusCode)
	}
	if res, _ := f.api("GET", "/api/v1/extensions/2001", tok, ""); res.StatusCode != 404 {
		t.Fatalf("get after delete: %d", res.StatusCode)
	}
	ev := f.events(cause.ExtensionChanged)
	if len(ev) != 9 || ev[0].AuthUser != "token script" || !strings.Contains(ev[0].Detail, "by token script (API)") {
		t.Fatalf("audit: %d events, newest %+v", len(ev), ev[0])
	}
	for _, e := range ev {
		if strings.Contains(e.Detail, v.Password) {
			t.Fatal("a password reached the journal")
		}
	}
}

// TestAPIExtensionsPaging: GET /api/v1/extensions pages through every
// domain by its next cursor and by offset in the directory's order, with
// the total of every match; a search takes % literally; a bad cursor, a
// cursor with an offset and an unknown domain are refused with a message.
func TestAPIExtensionsPaging(t *testing.T) {
	f, tok := apiFixture(t)
	ctx := context.Background()
	if _, err := f.db.EnsureDomain(ctx, "a.test"); err != nil {
		t.Fatal(err)
	}
	var exts []store.Extension
	for _, k := range []string{"pbx.test/2001", "pbx.test/99", "pbx.test/2002", "a.test/7", "pbx.test/100", "pbx.test/2003", "a.test/10"} {
		dom, num, _ := strings.Cut(k, "/")
		exts = append(exts, store.Extension{Domain: dom, Number: num, Enabled: true, MaxRegistrations: 5, CallTimeout: 30, HA1MD5: "x", HA1SHA256: "y"})
	}
	exts[0].Description = "50% off"
	if err := f.db.ImportExtensions(ctx, exts); err != nil {
		t.Fatal(err)
	}
	want := []string{"a.test/7", "a.test/10", "pbx.test/99", "pbx.test/100", "pbx.test/2001", "pbx.test/2002", "pbx.test/2003"}
	get := func(path string) extensionPage {
		t.Helper()
		res, body := f.api("GET", path, tok, "")
		var p extensionPage
		if res.StatusCode != 200 || json.Unmarshal([]byte(body), &p) != nil || !strings.Contains(body, `"next"`) {
			t.Fatalf("%s: %d %q", path, res.StatusCode, body)
		}
		return p
	}
	var byCursor, byOffset []string
	for path, n := "/api/v1/extensions?limit=3", 0; n < 5; n++ {
		p := get(path)
		if p.Total != len(want) || p.Limit != 3 {
			t.Fatalf("%s: total %d limit %d", path, p.Total, p.Limit)
		}
		for _, e := range p.Extensions {
			byCursor = append(byCursor, e.Domain+"/"+e.Extension)
		}
		if p.Next == "" {
			break
		}
		path = "/api/v1/extensions?limit=3&after=" + url.QueryEscape(p.Next)
	}
	for off := 0; off < 9; off += 3 {
		for _, e := range get(fmt.Sprintf("/api/v1/extensions?limit=3&offset=%d", off)).Extensions {
			byOffset = append(byOffset, e.Domain+"/"+e.Extension)
		}
	}
	if !slices.Equal(byCursor, want) || !slices.Equal(byOffset, want) {
		t.Fatalf("by cursor %v, by offset %v; want %v", byCursor, byOffset, want)
	}
	if p := get("/api/v1/extensions?q=%25"); p.Total != 1 || len(p.Extensions) != 1 || p.Extensions[0].Extension != "2001" || p.Next != "" {
		t.Fatalf("q=%%: %+v", p)
	}
	if p := get("/api/v1/extensions?domain=A.TEST&limit=1"); p.Total != 2 || len(p.Extensions) != 1 || p.Next != "a.test/7" {
		t.Fatalf("domain=A.TEST: %+v", p)
	}
	for _, tc := range []struct {
		path string
		want int
		msg  string
	}{
		{"/api/v1/extensions?after=2001", 400, "DOMAIN/NUMBER"},
		{"/api/v1/extensions?after=pbx.test/..%2f", 400, "DOMAIN/NUMBER"},
		{"/api/v1/extensions?after=pbx.test/2001&offset=3", 400, "not both"},
		{"/api/v1/extensions?domain=nowhere.test", 404, "domain nowhere.test not found"},
	} {
		res, body := f.api("GET", tc.path, tok, "")
		var e apiError
		if res.StatusCode != tc.want || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, tc.msg) {
			t.Errorf("%s: %d %q, want %d with %q", tc.path, res.StatusCode, body, tc.want, tc.msg)
		}
	}
}

// TestAPIBadInput: malformed JSON, unknown fields, a body over 1 MiB,
// trailing data, a wrong content type and bad numbers get 4xx JSON errors
// that say what to do; nothing is created.
func TestAPIBadInput(t *testing.T) {
	f, tok := apiFixture(t)
	for _, tc := range []struct {
		body string
		want int
		msg  string
	}{
		{`{"extension":"2001"`, 400, "not valid JSON"},
		{`{"extension":"2001","admin":true}`, 400, "unknown field"},
		{`{"extension":"2001"} {}`, 400, "one JSON object"},
		{`[]`, 400, "not valid JSON"},
		{``, 400, "empty"},
		{`{"extension":"../etc"}`, 400, "invalid extension number"},
		{`{"extension":"2001","max_registrations":1000}`, 400, "max_registrations"},
		{`{"extension":"2001","password":"123"}`, 400, "too weak"},
		{`{"extension":"2001","description":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "larger than"},
	} {
		res, body := f.api("POST", "/api/v1/extensions", tok, tc.body)
		var e apiError
		if res.StatusCode != tc.want || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, tc.msg) {
			t.Errorf("%.60q: %d %q, want %d with %q", tc.body, res.StatusCode, body[:min(len(body), 200)], tc.want, tc.msg)
		}
	}
	res := f.do("POST", "/api/v1/extensions", strings.NewReader("extension=2001"),
		map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/x-www-form-urlencoded"})
	if res.StatusCode != 415 {
		t.Errorf("form body: %d, want 415", res.StatusCode)
	}
	for _, p := range []string{"/api/v1/extensions?limit=abc", "/api/v1/extensions?limit=100000", "/api/v1/journal?since=yesterday",
		"/api/v1/journal?ip=not-an-ip", "/api/v1/calls?ext=%27%3B--", "/api/v1/doctor/..%2f..", "/api/v1/calls/x/hangup"} {
		method := "GET"
		if strings.HasSuffix(p, "hangup") {
			method = "POST"
		}
		if res, body := f.api(method, p, tok, ""); res.StatusCode != 400 && res.StatusCode != 404 {
			t.Errorf("%s %s: %d %q", method, p, res.StatusCode, body)
		}
	}
	if exts, _ := f.db.Extensions(context.Background(), ""); len(exts) != 0 {
		t.Fatalf("bad input created %d extensions", len(exts))
	}
}

// TestAPIBansAndJournal: a ban added by API is listed, refused for a
// trusted address, lifted, and both changes are in the journal, which the
// API filters by cause.
func TestAPIBansAndJournal(t *testing.T) {
	f, tok := apiFixture(t)
	if res, body := f.api("POST", "/api/v1/bans", tok, `{"ip":"203.0.113.7","for_s":3600}`); res.StatusCode != 201 || !strings.Contains(body, `"expires_in_s": 3600`) {
		t.Fatalf("ban add: %d %q", res.StatusCode, body)
	}
	if res, _ := f.api("POST", "/api/v1/bans", tok, `{"ip":"127.0.0.1"}`); res.StatusCode != 409 {
		t.Fatalf("ban of a trusted address: %d, want 409", res.StatusCode)
	}
	if _, body := f.api("GET", "/api/v1/bans", tok, ""); !strings.Contains(body, `"ip": "203.0.113.7"`) {
		t.Fatalf("ban list: %q", body)
	}
	if res, _ := f.api("DELETE", "/api/v1/bans/203.0.113.7", tok, ""); res.StatusCode != 200 {
		t.Fatalf("ban rm: %d", res.StatusCode)
	}
	if res, _ := f.api("DELETE", "/api/v1/bans/203.0.113.7", tok, ""); res.StatusCode != 404 {
		t.Fatalf("ban rm again: %d", res.StatusCode)
	}
	f.jw.Flush(context.Background())
	_, body := f.api("GET", "/api/v1/journal?cause=ban_added&since=1h", tok, "")
	var evs []map[string]any
	if err := json.Unmarshal([]byte(body), &evs); err != nil || len(evs) != 1 || evs[0]["auth_user"] != "token script" {
		t.Fatalf("journal: %v %q", err, body)
	}
	f.api("POST", "/api/v1/extensions", tok, `{"extension":"2001"}`)
	if _, body := f.api("GET", "/api/v1/doctor/2001", tok, ""); !strings.Contains(body, `"verdict"`) || !strings.Contains(body, `"findings"`) {
		t.Errorf("doctor: %.300s", body)
	}
	for _, p := range []string{"/api/v1/acls", "/api/v1/profile", "/api/v1/registrations", "/api/v1/calls", "/api/v1/calls/active",
		"/api/v1/doctor/call?from=2001&to=2002"} {
		if res, body := f.api("GET", p, tok, ""); res.StatusCode != 200 || !json.Valid([]byte(body)) {
			t.Errorf("%s: %d %q", p, res.StatusCode, body)
		}
	}
}

// TestAPICrossOriginCookie: a browser on another site cannot use an
// admin's session cookie to change anything through the API.
func TestAPICrossOriginCookie(t *testing.T) {
	f, _ := apiFixture(t)
	_, c := f.login("alice", testPassword)
	res := f.do("POST", "/api/v1/bans", strings.NewReader(`{"ip":"203.0.113.9"}`),
		map[string]string{"Cookie": c.Name + "=" + c.Value, "Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"})
	if res.StatusCode != 403 || !strings.Contains(readBody(t, res), "cross-origin") {
		t.Fatalf("cross-site API POST: %d", res.StatusCode)
	}
}

// TestMetricsAccess: /metrics is open when serve says so (loopback),
// else it needs a token like the API.
func TestMetricsAccess(t *testing.T) {
	f, tok := apiFixture(t)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("go_goroutines 1\n")) })
	for _, open := range []bool{false, true} {
		s, err := New(Config{OpenMetrics: open}, Deps{DB: f.db, Metrics: metrics})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if want := map[bool]int{false: 401, true: 200}[open]; rec.Code != want {
			t.Errorf("open=%v without token: %d, want %d", open, rec.Code, want)
		}
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec = httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Errorf("open=%v with token: %d", open, rec.Code)
		}
	}
}
