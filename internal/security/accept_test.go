package security

import (
	"net/netip"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/sipstack"
)

// TestAcceptConn: at accept, a banned address is refused, an address over
// its rate limit is refused (each connection counts as a message), and a
// trusted one is exempt from both and from the per-address cap.
func TestAcceptConn(t *testing.T) {
	s, _ := newTestService(t, Config{RateLimit: 1, RateBurst: 3})
	trusted := &acl.List{Name: "lab", Nodes: []acl.Node{{Allow: true, Prefix: netip.MustParsePrefix("198.51.100.0/24")}}}
	s.snap.Store(&snapshot{trusted: trusted, set: acl.NewSet(nil)})
	ap := func(a string) netip.AddrPort { return netip.AddrPortFrom(ip(a), 40000) }

	if v := s.AcceptConn(ap("192.0.2.1")); v != sipstack.ConnAllow {
		t.Fatalf("plain address: %v", v)
	}
	s.guard.Add(acl.Ban{IP: ip("192.0.2.66"), Reason: "test", Since: s.now(), Until: s.now().Add(time.Hour)})
	if v := s.AcceptConn(ap("192.0.2.66")); v != sipstack.ConnRefuse {
		t.Fatalf("banned address: %v", v)
	}
	// Burst 3: the fourth connection within the same instant is refused.
	for i := range 2 {
		if v := s.AcceptConn(ap("192.0.2.1")); v != sipstack.ConnAllow {
			t.Fatalf("connection %d within the burst: %v", i+2, v)
		}
	}
	if v := s.AcceptConn(ap("192.0.2.1")); v != sipstack.ConnRefuse {
		t.Fatalf("connection over the rate limit: %v", v)
	}
	if got := s.Stats().RateLimited.Load(); got != 1 {
		t.Fatalf("RateLimited = %d", got)
	}
	s.guard.Add(acl.Ban{IP: ip("198.51.100.7"), Reason: "test", Since: s.now(), Until: s.now().Add(time.Hour)})
	for range 10 {
		if v := s.AcceptConn(ap("198.51.100.7")); v != sipstack.ConnTrusted {
			t.Fatalf("trusted address: %v", v)
		}
	}
}
