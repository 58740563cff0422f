package router

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// fakeDir is a fixed directory: pure data, no I/O.
type fakeDir struct {
	domains map[string]bool // lower-case name -> enabled
	local   map[string]bool // hosts meaning the default domain
	def     string
	exts    map[string]*directory.Entry // "domain/number"
}

func (f fakeDir) Lookup(domain, number string) (*directory.Entry, bool) {
	e, ok := f.exts[strings.ToLower(domain)+"/"+number]
	return e, ok
}

func (f fakeDir) Resolve(host string) (string, bool) {
	h := strings.ToLower(host)
	if en, ok := f.domains[h]; ok {
		return h, en
	}
	if f.local[h] {
		return f.def, f.domains[f.def]
	}
	return host, false
}

type fakeLoc map[string][]store.Binding

func (f fakeLoc) Lookup(domain, ext string) []store.Binding { return f[domain+"/"+ext] }

func fixture() Router {
	dir := fakeDir{
		domains: map[string]bool{"pbx.test": true, "other.test": true, "off.test": false},
		local:   map[string]bool{"127.0.0.1": true, "localhost": true},
		def:     "pbx.test",
		exts: map[string]*directory.Entry{
			"pbx.test/2001":   directory.NewEntry(store.Extension{Domain: "pbx.test", Number: "2001", Enabled: true, CallTimeout: 30}),
			"pbx.test/2002":   directory.NewEntry(store.Extension{Domain: "pbx.test", Number: "2002", Enabled: true, CallTimeout: 12}),
			"pbx.test/2003":   directory.NewEntry(store.Extension{Domain: "pbx.test", Number: "2003", Enabled: false}),
			"pbx.test/2004":   directory.NewEntry(store.Extension{Domain: "pbx.test", Number: "2004", Enabled: true}),
			"other.test/2002": directory.NewEntry(store.Extension{Domain: "other.test", Number: "2002", Enabled: true}),
		},
	}
	loc := fakeLoc{
		"pbx.test/2002": {
			{Domain: "pbx.test", Extension: "2002", Contact: "sip:2002@10.0.0.2:5060", Source: "10.0.0.2:5060", Transport: "UDP"},
			{Domain: "pbx.test", Extension: "2002", Contact: "sip:2002@10.0.0.3:5062", Source: "192.0.2.1:40000", Transport: "TCP"},
		},
		"pbx.test/2004":   {{Domain: "pbx.test", Extension: "2004", Contact: "sip:2004@10.0.0.4", Source: "10.0.0.4:5060", Transport: "UDP"}},
		"other.test/2002": {{Domain: "other.test", Extension: "2002", Contact: "sip:x@10.9.9.9"}},
	}
	return Router{Dir: dir, Loc: loc}
}

func TestRoute(t *testing.T) {
	r := fixture()
	tests := []struct {
		name    string
		req     Request
		cause   cause.Code
		targets int
		timeout time.Duration
		detail  string
	}{
		{"registered, two contacts fork", Request{"pbx.test", "pbx.test", "2002"}, "", 2, 12 * time.Second, ""},
		{"server IP means the default domain", Request{"pbx.test", "127.0.0.1", "2002"}, "", 2, 12 * time.Second, ""},
		{"host case does not matter", Request{"pbx.test", "PBX.Test", "2002"}, "", 2, 12 * time.Second, ""},
		{"no call timeout uses the default", Request{"pbx.test", "pbx.test", "2004"}, "", 1, DefaultTimeout, ""},
		{"exists, not registered", Request{"pbx.test", "pbx.test", "2001"}, cause.UserNotRegistered, 0, 30 * time.Second, "no registration"},
		{"unknown extension", Request{"pbx.test", "pbx.test", "2999"}, cause.UnallocatedNumber, 0, 0, "no extension 2999"},
		{"disabled extension behaves as missing", Request{"pbx.test", "pbx.test", "2003"}, cause.UnallocatedNumber, 0, 0, "disabled"},
		{"no user part", Request{"pbx.test", "pbx.test", ""}, cause.UnallocatedNumber, 0, 0, "no user part"},
		{"foreign host is not routed", Request{"pbx.test", "example.com", "2002"}, cause.UnallocatedNumber, 0, 0, "not a domain served here"},
		{"disabled domain is not routed", Request{"pbx.test", "off.test", "2002"}, cause.UnallocatedNumber, 0, 0, "not a domain served here"},
		{"no calls between tenants", Request{"pbx.test", "other.test", "2002"}, cause.UnallocatedNumber, 0, 0, "between domains"},
		{"empty host means the caller's domain", Request{"pbx.test", "", "2002"}, "", 2, 12 * time.Second, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := r.Route(tc.req)
			if d.Cause != tc.cause {
				t.Fatalf("cause = %q, want %q (detail %q)", d.Cause, tc.cause, d.Detail)
			}
			if len(d.Targets) != tc.targets {
				t.Fatalf("targets = %d, want %d", len(d.Targets), tc.targets)
			}
			if d.Timeout != tc.timeout {
				t.Fatalf("timeout = %s, want %s", d.Timeout, tc.timeout)
			}
			if tc.detail != "" && !strings.Contains(d.Detail, tc.detail) {
				t.Fatalf("detail %q does not mention %q", d.Detail, tc.detail)
			}
			if tc.cause == "" && d.Detail != "" {
				t.Fatalf("routed call has a detail %q", d.Detail)
			}
		})
	}
}

func TestRouteTargetsKeepNATFacts(t *testing.T) {
	r := fixture()
	d := r.Route(Request{"pbx.test", "pbx.test", "2002"})
	if d.Targets[1].Source != "192.0.2.1:40000" || d.Targets[1].Transport != "TCP" {
		t.Fatalf("target lost its source/transport: %+v", d.Targets[1])
	}
	if d.Callee == nil || d.Callee.Number() != "2002" || d.Domain != "pbx.test" {
		t.Fatalf("decision lacks callee or domain: %+v", d)
	}
}

func TestRouteDefaultTimeoutOverride(t *testing.T) {
	r := fixture()
	r.DefaultTimeout = 5 * time.Second
	if d := r.Route(Request{"pbx.test", "pbx.test", "2004"}); d.Timeout != 5*time.Second {
		t.Fatalf("timeout = %s, want 5s", d.Timeout)
	}
}

func TestDestination(t *testing.T) {
	tests := []struct {
		name    string
		b       store.Binding
		want    string
		wantNAT bool
	}{
		{"contact is where it registered from",
			store.Binding{Contact: "sip:2002@203.0.113.5:5062", Source: "203.0.113.5:5062", Transport: "UDP"}, "203.0.113.5:5062", false},
		{"behind NAT: private contact, public source",
			store.Binding{Contact: "sip:2002@192.168.1.50:5060;transport=udp", Source: "203.0.113.5:40123", Transport: "UDP"}, "203.0.113.5:40123", true},
		{"WebRTC-style name in the contact",
			store.Binding{Contact: "sip:abc@df7jal23ls0d.invalid;transport=ws", Source: "203.0.113.5:40123", Transport: "UDP"}, "203.0.113.5:40123", true},
		{"same IP, listens on another port than it sends from: the contact",
			store.Binding{Contact: "sip:2002@127.0.0.1:5080;transport=UDP", Source: "127.0.0.1:5091", Transport: "UDP"}, "127.0.0.1:5080", false},
		{"no port in the contact means 5060",
			store.Binding{Contact: "sip:2002@10.0.0.7", Source: "10.0.0.7:5060", Transport: "UDP"}, "10.0.0.7:5060", false},
		{"TCP uses the phone's connection",
			store.Binding{Contact: "sip:2002@127.0.0.1:5060;transport=tcp", Source: "127.0.0.1:45678", Transport: "TCP"}, "127.0.0.1:45678", false},
		{"IPv6",
			store.Binding{Contact: "sip:2002@[2001:db8::7]:5070", Source: "[2001:db8::7]:5070", Transport: "UDP"}, "[2001:db8::7]:5070", false},
		{"no source saved",
			store.Binding{Contact: "sips:2002@pbx.example", Transport: "UDP"}, "pbx.example:5061", false},
	}
	for _, tc := range tests {
		got, nat := Destination(tc.b)
		if got != tc.want || nat != tc.wantNAT {
			t.Errorf("%s: Destination = %s (nat %v), want %s (nat %v)", tc.name, got, nat, tc.want, tc.wantNAT)
		}
	}
}
