package acl

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is an injectable clock safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func mustNode(t testing.TB, allow bool, s string) Node {
	t.Helper()
	n, err := ParseNode(allow, s)
	if err != nil {
		t.Fatalf("ParseNode(%v, %q): %v", allow, s, err)
	}
	return n
}

func TestDecide(t *testing.T) {
	type check struct {
		ip      string
		allowed bool
		by      int // index of the deciding node, -1 = default
	}
	allow24 := func(t *testing.T) Node { return mustNode(t, true, "192.168.1.0/24") }
	deny32 := func(t *testing.T) Node { return mustNode(t, false, "192.168.1.66/32") }
	tests := []struct {
		name   string
		list   func(t *testing.T) *List
		checks []check
	}{
		{
			name: "deny /32 inside allow /24, default deny",
			list: func(t *testing.T) *List {
				return &List{Name: "lan", DefaultAllow: false, Nodes: []Node{allow24(t), deny32(t)}}
			},
			checks: []check{
				{"192.168.1.66", false, 1},
				{"192.168.1.10", true, 0},
				{"192.168.2.10", false, -1},
				{"::ffff:192.168.1.66", false, 1},
				{"::ffff:192.168.1.10", true, 0},
				{"2001:db8::1", false, -1},
			},
		},
		{
			name: "deny /32 listed before allow /24, default deny",
			list: func(t *testing.T) *List {
				return &List{Name: "lan", Nodes: []Node{deny32(t), allow24(t)}}
			},
			checks: []check{
				{"192.168.1.66", false, 0},
				{"192.168.1.67", true, 1},
				{"10.0.0.1", false, -1},
			},
		},
		{
			name: "deny /32 inside allow /24, default allow",
			list: func(t *testing.T) *List {
				return &List{Name: "lan", DefaultAllow: true, Nodes: []Node{allow24(t), deny32(t)}}
			},
			checks: []check{
				{"192.168.1.66", false, 1},
				{"192.168.1.1", true, 0},
				{"8.8.8.8", true, -1},
				{"::1", true, -1},
			},
		},
		{
			name: "allow /32 inside deny /16, default allow",
			list: func(t *testing.T) *List {
				return &List{Name: "x", DefaultAllow: true, Nodes: []Node{
					mustNode(t, true, "10.1.2.3"),
					mustNode(t, false, "10.1.0.0/16"),
				}}
			},
			checks: []check{
				{"10.1.2.3", true, 0},
				{"10.1.2.4", false, 1},
				{"10.2.0.1", true, -1},
			},
		},
		{
			name: "equally specific: first wins (allow first)",
			list: func(t *testing.T) *List {
				return &List{Name: "x", Nodes: []Node{
					mustNode(t, true, "10.0.0.0/8"),
					mustNode(t, false, "10.0.0.0/8"),
				}}
			},
			checks: []check{{"10.9.9.9", true, 0}},
		},
		{
			name: "equally specific: first wins (deny first)",
			list: func(t *testing.T) *List {
				return &List{Name: "x", DefaultAllow: true, Nodes: []Node{
					mustNode(t, false, "10.0.0.0/8"),
					mustNode(t, true, "10.0.0.0/8"),
					mustNode(t, true, "10.0.0.1"),
					mustNode(t, false, "10.0.0.1"),
				}}
			},
			checks: []check{{"10.9.9.9", false, 0}, {"10.0.0.1", true, 2}},
		},
		{
			name: "IPv6",
			list: func(t *testing.T) *List {
				return &List{Name: "v6", Nodes: []Node{
					mustNode(t, true, "2001:db8::/32"),
					mustNode(t, false, "2001:db8:0:1::/64"),
					mustNode(t, true, "2001:db8:0:1::5"),
					mustNode(t, true, "fe80::/10"),
				}}
			},
			checks: []check{
				{"2001:db8::1", true, 0},
				{"2001:db8:0:1::7", false, 1},
				{"2001:db8:0:1::5", true, 2},
				{"2001:db9::1", false, -1},
				{"fe80::1%eth0", true, 3}, // zones are dropped
				{"192.168.1.1", false, -1},
			},
		},
		{
			name: "IPv6 catch-all does not match IPv4, IPv4 catch-all does not match IPv6",
			list: func(t *testing.T) *List {
				return &List{Name: "x", Nodes: []Node{
					mustNode(t, true, "::/0"),
					mustNode(t, false, "0.0.0.0/0"),
				}}
			},
			checks: []check{
				{"1.2.3.4", false, 1},
				{"::ffff:1.2.3.4", false, 1},
				{"2001:db8::1", true, 0},
			},
		},
		{
			name:   "empty list, default deny",
			list:   func(t *testing.T) *List { return &List{Name: "empty"} },
			checks: []check{{"192.168.1.66", false, -1}, {"::1", false, -1}},
		},
		{
			name:   "empty list, default allow",
			list:   func(t *testing.T) *List { return &List{Name: "empty", DefaultAllow: true} },
			checks: []check{{"192.168.1.66", true, -1}, {"::1", true, -1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tt.list(t)
			for _, c := range tt.checks {
				allowed, by := l.Decide(netip.MustParseAddr(c.ip))
				if allowed != c.allowed {
					t.Errorf("Decide(%s) allowed = %v, want %v", c.ip, allowed, c.allowed)
				}
				switch {
				case c.by < 0 && by != nil:
					t.Errorf("Decide(%s) by = %v, want default (nil)", c.ip, *by)
				case c.by >= 0 && by != &l.Nodes[c.by]:
					got := "nil"
					if by != nil {
						got = by.String()
					}
					t.Errorf("Decide(%s) by = %s, want node %d (%s)", c.ip, got, c.by, l.Nodes[c.by])
				}
			}
		})
	}
}

func TestDecideNilAndInvalid(t *testing.T) {
	var l *List
	if allowed, by := l.Decide(netip.MustParseAddr("10.0.0.1")); allowed || by != nil {
		t.Errorf("nil list: got %v, %v; want false, nil", allowed, by)
	}
	l = &List{Name: "x", DefaultAllow: true, Nodes: []Node{mustNode(t, false, "0.0.0.0/0"), mustNode(t, false, "::/0")}}
	if allowed, by := l.Decide(netip.Addr{}); !allowed || by != nil {
		t.Errorf("invalid addr: got %v, %v; want default (true, nil)", allowed, by)
	}
}

func TestParseNode(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"192.168.1.0/24", "192.168.1.0/24"},
		{"192.168.1.77/24", "192.168.1.0/24"}, // masked
		{"10.0.0.1", "10.0.0.1/32"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"2001:db8:ffff::1/32", "2001:db8::/32"},
		{"::1", "::1/128"},
		{"::/0", "::/0"},
		{" 172.16.0.0/12\t", "172.16.0.0/12"},
		{"::ffff:10.1.2.3/104", "10.0.0.0/8"}, // v4-mapped → IPv4
		{"::ffff:10.1.2.3", "10.1.2.3/32"},
	}
	for _, tt := range tests {
		for _, allow := range []bool{true, false} {
			n, err := ParseNode(allow, tt.in)
			if err != nil {
				t.Errorf("ParseNode(%q): %v", tt.in, err)
				continue
			}
			if n.Prefix.String() != tt.want || n.Allow != allow {
				t.Errorf("ParseNode(%v, %q) = %v %s, want %v %s", allow, tt.in, n.Allow, n.Prefix, allow, tt.want)
			}
			if n.Prefix != n.Prefix.Masked() {
				t.Errorf("ParseNode(%q) not masked: %s", tt.in, n.Prefix)
			}
		}
	}
}

func TestParseNodeErrors(t *testing.T) {
	tests := []struct {
		in, wantSub string
	}{
		{"300.1.1.1/24", "IPv4 field has value >255"},
		{"1.2.3.4/33", "prefix length 33 out of range for IPv4 (0-32)"},
		{"2001:db8::/129", "prefix length 129 out of range for IPv6 (0-128)"},
		{"abc", `invalid address "abc"`},
		{"", "empty address"},
		{"   ", "empty address"},
		{"1.2.3.4/", "missing prefix length"},
		{"/24", "missing address"},
		{"1.2.3.4/x", "not a number"},
		{"1.2.3.4/-1", "not a number"},
		{"1.2.3.4/024", "leading zero"},
		{"1.2.3.4/24/8", "not a number"},
		{"1.2.3.4/99999", "out of range"},
		{"fe80::1%eth0", "zone"},
		{"192.168.1.0/24\nallow 0.0.0.0/0", "not a number"},
	}
	for _, tt := range tests {
		_, err := ParseNode(true, tt.in)
		if err == nil {
			t.Errorf("ParseNode(%q): no error", tt.in)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "acl: ") || !strings.Contains(msg, tt.wantSub) {
			t.Errorf("ParseNode(%q) error = %q, want it to start with \"acl: \" and contain %q", tt.in, msg, tt.wantSub)
		}
		if strings.ContainsAny(msg, "\r\n") {
			t.Errorf("ParseNode(%q) error is not one line: %q", tt.in, msg)
		}
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"lan", true},
		{"domains", true},
		{"trunk-1_b", true},
		{"0", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"LAN", false},
		{"Lan", false},
		{"a b", false},
		{"a.b", false},
		{"a/b", false},
		{"é", false},
		{"lan\n", false},
	}
	for _, tt := range tests {
		err := ValidName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\n") {
			t.Errorf("ValidName(%q) error is not one line: %q", tt.name, err)
		}
	}
}

func TestListValidate(t *testing.T) {
	good := List{Name: "lan", Nodes: []Node{mustNode(t, true, "10.0.0.0/8")}}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
	bad := []List{
		{Name: "Bad"},
		{Name: "x", Nodes: []Node{{Allow: true}}},
		{Name: "x", Nodes: []Node{{Prefix: netip.MustParsePrefix("10.1.2.3/8")}}},
		{Name: "x", Nodes: []Node{{Prefix: netip.MustParsePrefix("::ffff:10.0.0.0/104")}}},
	}
	for _, l := range bad {
		if err := l.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want error", l)
		}
	}
}

func TestSet(t *testing.T) {
	src := []List{
		{Name: "lan", DefaultAllow: false, Nodes: []Node{mustNode(t, true, "192.168.0.0/16")}},
		{Name: "domains", DefaultAllow: true},
		{Name: "lan", DefaultAllow: false, Nodes: []Node{mustNode(t, true, "10.0.0.0/8")}}, // last wins
	}
	s := NewSet(src)
	// Mutating the input must not affect the snapshot.
	src[2].Nodes[0] = mustNode(t, false, "0.0.0.0/0")
	src[2].DefaultAllow = true

	if s.Len() != 2 {
		t.Fatalf("Len = %d, want 2", s.Len())
	}
	if got := strings.Join(s.Names(), ","); got != "domains,lan" {
		t.Errorf("Names = %s", got)
	}
	l, ok := s.Get("lan")
	if !ok {
		t.Fatal("Get(lan) missing")
	}
	if allowed, _ := l.Decide(netip.MustParseAddr("10.1.1.1")); !allowed {
		t.Error("lan should allow 10.1.1.1 (last duplicate wins, snapshot copied)")
	}
	if allowed, _ := l.Decide(netip.MustParseAddr("192.168.1.1")); allowed {
		t.Error("lan should deny 192.168.1.1 (first duplicate replaced)")
	}
	if _, ok := s.Get("nope"); ok {
		t.Error("Get(nope) found")
	}
	var nilSet *Set
	if _, ok := nilSet.Get("lan"); ok || nilSet.Len() != 0 {
		t.Error("nil Set should be empty")
	}
}
