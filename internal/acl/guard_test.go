package acl

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

var (
	ipA = netip.MustParseAddr("203.0.113.7")
	ipB = netip.MustParseAddr("198.51.100.9")
	ipC = netip.MustParseAddr("2001:db8::66")
)

func newTestGuard(cfg GuardConfig) (*Guard, *fakeClock) {
	c := newFakeClock()
	return NewGuard(cfg, c.Now), c
}

// failN calls Fail n times, one second apart, and returns how many of them
// returned ok=true.
func failN(g *Guard, c *fakeClock, ip netip.Addr, n int) (bans int, last Ban) {
	for i := 0; i < n; i++ {
		if b, ok := g.Fail(ip, "wrong password for 2002@example.com"); ok {
			bans++
			last = b
		}
		c.Advance(time.Second)
	}
	return bans, last
}

func TestGuardDefaults(t *testing.T) {
	g := NewGuard(GuardConfig{}, nil)
	if got, want := g.Config(), DefaultGuardConfig(); got != want {
		t.Errorf("Config() = %+v, want %+v", got, want)
	}
	d := DefaultGuardConfig()
	if d.MaxFailures != 5 || d.Window != 60*time.Second || d.BanFor != time.Hour {
		t.Errorf("DefaultGuardConfig() = %+v", d)
	}
}

func TestGuardThreshold(t *testing.T) {
	tests := []struct {
		name     string
		failures int
		banned   bool
	}{
		{"no failures", 0, false},
		{"4 failures", 4, false},
		{"5 failures", 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, c := newTestGuard(DefaultGuardConfig())
			start := c.Now()
			bans, b := failN(g, c, ipA, tt.failures)
			if got := g.Banned(ipA); got != tt.banned {
				t.Fatalf("Banned = %v, want %v", got, tt.banned)
			}
			if g.Banned(ipB) {
				t.Error("unrelated IP banned")
			}
			if !tt.banned {
				if bans != 0 || len(g.List()) != 0 {
					t.Fatalf("bans = %d, List = %v; want none", bans, g.List())
				}
				return
			}
			if bans != 1 {
				t.Fatalf("Fail returned ok %d times, want 1", bans)
			}
			wantSince := start.Add(4 * time.Second)
			if b.IP != ipA || b.Failures != 5 || b.Reason != "wrong password for 2002@example.com" ||
				!b.Since.Equal(wantSince) || !b.Until.Equal(wantSince.Add(time.Hour)) {
				t.Errorf("ban = %+v", b)
			}
			if l := g.List(); len(l) != 1 || l[0] != b {
				t.Errorf("List = %+v, want [%+v]", l, b)
			}
			if g.Tracked() != 0 {
				t.Errorf("Tracked = %d after ban, want 0", g.Tracked())
			}
			// Further failures while banned are ignored.
			if _, ok := g.Fail(ipA, "again"); ok {
				t.Error("Fail while banned returned a new ban")
			}
		})
	}
}

func TestGuardWindow(t *testing.T) {
	type step struct {
		at     time.Duration // offset from start
		wantOK bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"5 within window", []step{{0, false}, {10 * time.Second, false}, {20 * time.Second, false}, {30 * time.Second, false}, {59 * time.Second, true}}},
		{"first falls out exactly at Window", []step{{0, false}, {10 * time.Second, false}, {20 * time.Second, false}, {30 * time.Second, false}, {60 * time.Second, false}, {61 * time.Second, true}}},
		{"4 then long pause", []step{{0, false}, {1 * time.Second, false}, {2 * time.Second, false}, {3 * time.Second, false}, {2 * time.Minute, false}, {2*time.Minute + time.Second, false}}},
		{"slow steady failures never ban", []step{{0, false}, {20 * time.Second, false}, {40 * time.Second, false}, {60 * time.Second, false}, {80 * time.Second, false}, {100 * time.Second, false}, {120 * time.Second, false}, {140 * time.Second, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeClock()
			start := c.Now()
			g := NewGuard(GuardConfig{MaxFailures: 5, Window: time.Minute, BanFor: time.Hour}, c.Now)
			for i, s := range tt.steps {
				c.mu.Lock()
				c.t = start.Add(s.at)
				c.mu.Unlock()
				if _, ok := g.Fail(ipB, "x"); ok != s.wantOK {
					t.Fatalf("step %d (t=%v): Fail ok = %v, want %v", i, s.at, ok, s.wantOK)
				}
			}
		})
	}
}

func TestGuardBanExpires(t *testing.T) {
	g, c := newTestGuard(GuardConfig{MaxFailures: 3, Window: time.Minute, BanFor: 10 * time.Minute})
	for i := 0; i < 3; i++ {
		g.Fail(ipC, "x")
	}
	if !g.Banned(ipC) {
		t.Fatal("not banned")
	}
	c.Advance(10*time.Minute - time.Nanosecond)
	if !g.Banned(ipC) {
		t.Fatal("ban expired early")
	}
	c.Advance(time.Nanosecond)
	if g.Banned(ipC) {
		t.Fatal("ban did not expire after BanFor")
	}
	if l := g.List(); len(l) != 0 {
		t.Fatalf("List after expiry = %v", l)
	}
	// Counting starts over.
	if _, ok := g.Fail(ipC, "x"); ok {
		t.Fatal("first failure after expiry banned")
	}
	g.Fail(ipC, "x")
	if _, ok := g.Fail(ipC, "x"); !ok {
		t.Fatal("third failure after expiry did not ban")
	}
}

func TestGuardExempt(t *testing.T) {
	trusted := netip.MustParsePrefix("10.0.0.0/8")
	g, c := newTestGuard(DefaultGuardConfig())
	// A ban that exists before the exemption is set is lifted by SetExempt.
	ipT := netip.MustParseAddr("10.1.2.3")
	g.Add(Ban{IP: ipT, Reason: "old"})
	if !g.Banned(ipT) {
		t.Fatal("Add did not ban")
	}
	g.SetExempt(trusted.Contains)
	if g.Banned(ipT) {
		t.Fatal("SetExempt did not lift the ban of an exempt IP")
	}
	for _, ip := range []netip.Addr{ipT, netip.MustParseAddr("::ffff:10.9.9.9")} {
		if bans, _ := failN(g, c, ip, 50); bans != 0 || g.Banned(ip) {
			t.Errorf("exempt %s banned", ip)
		}
		g.Add(Ban{IP: ip, Reason: "manual"})
		if g.Banned(ip) {
			t.Errorf("Add banned exempt %s", ip)
		}
	}
	if bans, _ := failN(g, c, ipA, 5); bans != 1 {
		t.Error("non-exempt IP not banned")
	}
	g.SetExempt(nil)
	if bans, _ := failN(g, c, ipT, 5); bans != 1 {
		t.Error("IP not banned after exemption removed")
	}
}

func TestGuardRemove(t *testing.T) {
	g, c := newTestGuard(DefaultGuardConfig())
	failN(g, c, ipA, 5)
	if !g.Banned(ipA) {
		t.Fatal("not banned")
	}
	if !g.Remove(ipA) {
		t.Fatal("Remove = false for a banned IP")
	}
	if g.Banned(ipA) || len(g.List()) != 0 {
		t.Fatal("still banned after Remove")
	}
	if g.Remove(ipA) {
		t.Fatal("second Remove = true")
	}
	// Remove also clears the failure counter.
	failN(g, c, ipB, 4)
	if g.Remove(ipB) {
		t.Error("Remove of an unbanned IP = true")
	}
	if bans, _ := failN(g, c, ipB, 4); bans != 0 {
		t.Error("failure counter survived Remove")
	}
	if bans, _ := failN(g, c, ipB, 1); bans != 1 {
		t.Error("5th failure after Remove+4 did not ban")
	}
	// Removing via the v4-mapped form works too.
	if !g.Remove(netip.MustParseAddr("::ffff:" + ipB.String())) {
		t.Error("Remove(v4-mapped) = false")
	}
}

func TestGuardSucceed(t *testing.T) {
	g, c := newTestGuard(DefaultGuardConfig())
	failN(g, c, ipA, 4)
	g.Succeed(ipA)
	if g.Tracked() != 0 {
		t.Errorf("Tracked = %d after Succeed", g.Tracked())
	}
	if bans, _ := failN(g, c, ipA, 4); bans != 0 {
		t.Fatal("banned: Succeed did not reset the counter")
	}
	if bans, _ := failN(g, c, ipA, 1); bans != 1 {
		t.Fatal("not banned after 5 failures following Succeed")
	}
	g.Succeed(ipA) // does not lift a ban
	if !g.Banned(ipA) {
		t.Error("Succeed lifted a ban")
	}
}

func TestGuardAddAndList(t *testing.T) {
	g, c := newTestGuard(DefaultGuardConfig())
	now := c.Now()
	in := []Ban{
		{IP: netip.MustParseAddr("192.0.2.3"), Reason: "c", Since: now.Add(-time.Minute), Until: now.Add(time.Hour)},
		{IP: netip.MustParseAddr("192.0.2.1"), Reason: "a", Since: now.Add(-3 * time.Hour), Until: now.Add(time.Hour)},
		{IP: netip.MustParseAddr("192.0.2.9"), Reason: "expired", Since: now.Add(-2 * time.Hour), Until: now.Add(-time.Hour)},
		{IP: netip.MustParseAddr("::ffff:192.0.2.2"), Reason: "b", Since: now.Add(-2 * time.Hour)}, // permanent
		{IP: netip.MustParseAddr("2001:db8::2"), Reason: "b2", Since: now.Add(-2 * time.Hour), Until: now.Add(time.Minute)},
		{IP: netip.MustParseAddr("192.0.2.4"), Reason: "now", Until: now.Add(time.Hour)}, // Since defaults to now
		{}, // invalid IP: ignored
	}
	for _, b := range in {
		g.Add(b)
	}
	want := []string{"a", "b", "b2", "c", "now"} // by Since, then IP (IPv4 before IPv6)
	got := g.List()
	if len(got) != len(want) {
		t.Fatalf("List = %+v, want reasons %v", got, want)
	}
	for i := range want {
		if got[i].Reason != want[i] {
			t.Fatalf("List[%d].Reason = %q, want %q (full: %+v)", i, got[i].Reason, want[i], got)
		}
		if i > 0 && got[i].Since.Before(got[i-1].Since) {
			t.Fatalf("List not sorted by Since: %+v", got)
		}
	}
	if got[1].IP != netip.MustParseAddr("192.0.2.2") {
		t.Errorf("Add did not unmap: %s", got[1].IP)
	}
	if !got[4].Since.Equal(now) {
		t.Errorf("zero Since not defaulted to now: %v", got[4].Since)
	}
	if g.Banned(netip.MustParseAddr("192.0.2.9")) {
		t.Error("expired restored ban is in force")
	}
	c.Advance(100 * 365 * 24 * time.Hour)
	if !g.Banned(netip.MustParseAddr("192.0.2.2")) || !g.Banned(netip.MustParseAddr("::ffff:192.0.2.2")) {
		t.Error("permanent ban expired")
	}
	g.Sweep()
	if l := g.List(); len(l) != 1 || l[0].Reason != "b" {
		t.Errorf("after 100 years List = %+v, want only the permanent ban", l)
	}
}

func TestGuardTrackedBounded(t *testing.T) {
	const maxTracked = 256
	g, c := newTestGuard(GuardConfig{MaxTracked: maxTracked})
	for i := 0; i < 20000; i++ {
		g.Fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), "flood")
		if n := g.Tracked(); n > maxTracked {
			t.Fatalf("after %d IPs Tracked = %d > %d", i+1, n, maxTracked)
		}
	}
	if g.Tracked() < maxTracked/2 {
		t.Errorf("Tracked = %d, cap underused", g.Tracked())
	}
	// Counters expire after Window.
	c.Advance(DefaultWindow)
	g.Sweep()
	if n := g.Tracked(); n != 0 {
		t.Errorf("Tracked after Window+Sweep = %d, want 0", n)
	}
	// Lazily too: a new failure prunes its shard.
	g2, c2 := newTestGuard(GuardConfig{MaxTracked: 1})
	g2.Fail(ipA, "x")
	c2.Advance(DefaultWindow)
	g2.Fail(ipB, "x")
	if n := g2.Tracked(); n != 1 {
		t.Errorf("lazy expiry: Tracked = %d, want 1", n)
	}
}

func TestGuardEvictsOldestCounter(t *testing.T) {
	// MaxTracked 1 means one shard holding one counter.
	g, c := newTestGuard(GuardConfig{MaxTracked: 1})
	failN(g, c, ipA, 4)
	failN(g, c, ipB, 1) // evicts ipA's counter
	if bans, _ := failN(g, c, ipA, 1); bans != 0 {
		t.Fatal("ipA banned: its counter should have been evicted")
	}
	if bans, _ := failN(g, c, ipA, 4); bans != 1 {
		t.Fatal("ipA not banned after 5 fresh failures")
	}
}

func TestGuardBansBounded(t *testing.T) {
	const maxBans = 128
	g, _ := newTestGuard(GuardConfig{MaxFailures: 1, MaxBans: maxBans})
	perm := netip.MustParseAddr("192.0.2.200")
	g.Add(Ban{IP: perm, Reason: "permanent"})
	var last netip.Addr
	for i := 0; i < 10000; i++ {
		last = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
		if _, ok := g.Fail(last, "flood"); !ok {
			t.Fatalf("Fail %d did not ban with MaxFailures 1", i)
		}
	}
	l := g.List()
	if len(l) > maxBans+1 {
		t.Fatalf("%d bans held, cap %d (+1 permanent)", len(l), maxBans)
	}
	if !g.Banned(last) {
		t.Error("newest ban evicted")
	}
	if !g.Banned(perm) {
		t.Error("permanent ban evicted")
	}
	first := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8})
	if g.Banned(first) {
		t.Error("oldest ban not evicted")
	}
}

func TestGuardInvalidIP(t *testing.T) {
	g, _ := newTestGuard(GuardConfig{MaxFailures: 1})
	if _, ok := g.Fail(netip.Addr{}, "x"); ok {
		t.Error("invalid IP banned")
	}
	if g.Banned(netip.Addr{}) || g.Tracked() != 0 {
		t.Error("invalid IP tracked")
	}
}

func ExampleGuard() {
	g := NewGuard(GuardConfig{MaxFailures: 2, Window: time.Minute, BanFor: time.Hour}, nil)
	ip := netip.MustParseAddr("203.0.113.7")
	g.Fail(ip, "wrong password for 2002@example.com")
	b, ok := g.Fail(ip, "wrong password for 2002@example.com")
	fmt.Println(ok, b.IP, b.Failures, b.Until.Sub(b.Since), g.Banned(ip))
	// Output: true 203.0.113.7 2 1h0m0s true
}

func TestGuardMaxFailuresClamped(t *testing.T) {
	g, c := newTestGuard(GuardConfig{MaxFailures: 1 << 30, Window: time.Hour})
	if got := g.Config().MaxFailures; got != MaxMaxFailures {
		t.Fatalf("MaxFailures = %d, want clamped to %d", got, MaxMaxFailures)
	}
	if bans, _ := failN(g, c, ipA, MaxMaxFailures); bans != 1 {
		t.Errorf("bans after %d failures = %d, want 1", MaxMaxFailures, bans)
	}
}

// TestGuardSucceedUser: a success clears the counter only when every
// failure it holds was about the same user: an address that knows one
// password cannot reset the count of its guesses at another by logging in
// between them.
func TestGuardSucceedUser(t *testing.T) {
	g, c := newTestGuard(DefaultGuardConfig())
	// A phone fails for its own user, then gets it right: cleared.
	for range 4 {
		g.FailUser(ipA, "2001@pbx.test", "x")
		c.Advance(time.Second)
	}
	g.SucceedUser(ipA, "2001@pbx.test")
	if g.Tracked() != 0 {
		t.Fatalf("Tracked = %d after the same user's success", g.Tracked())
	}
	// Guesses at 2002 interleaved with 2001's successes keep counting.
	for i := range 4 {
		if _, ok := g.FailUser(ipA, "2002@pbx.test", "guess"); ok {
			t.Fatalf("banned after %d failures", i+1)
		}
		g.SucceedUser(ipA, "2001@pbx.test")
		c.Advance(time.Second)
	}
	if b, ok := g.FailUser(ipA, "2002@pbx.test", "guess"); !ok || b.Failures != 5 {
		t.Fatalf("5th guess at 2002: ban %+v, %v; want a ban", b, ok)
	}
	// Failures about two users: a success of either does not clear them.
	g.FailUser(ipB, "2001@pbx.test", "x")
	g.FailUser(ipB, "2002@pbx.test", "x")
	g.SucceedUser(ipB, "2002@pbx.test")
	g.SucceedUser(ipB, "2001@pbx.test")
	if g.Tracked() != 1 {
		t.Fatalf("Tracked = %d; mixed failures were cleared by a success", g.Tracked())
	}
	// Succeed (no user) clears whatever the failures were about.
	g.Succeed(ipB)
	if g.Tracked() != 0 {
		t.Fatalf("Tracked = %d after Succeed", g.Tracked())
	}
}
