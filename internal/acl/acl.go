package acl

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Node is one allow or deny entry of a [List].
type Node struct {
	Allow  bool
	Prefix netip.Prefix
}

// String returns "allow 10.0.0.0/8" or "deny 2001:db8::/32".
func (n Node) String() string {
	if n.Allow {
		return "allow " + n.Prefix.String()
	}
	return "deny " + n.Prefix.String()
}

// List is a named access control list like FusionPBX's access controls: a
// default action and ordered allow/deny CIDR nodes (IPv4 and IPv6).
type List struct {
	Name         string
	DefaultAllow bool
	Nodes        []Node
}

// Decide returns whether ip is allowed and the node that decided (nil when
// the default decided).
//
// The most specific (longest prefix) matching node wins; between equally
// specific nodes, the first in order wins. IPv4-mapped IPv6 addresses are
// unmapped and zones dropped before matching, so they match IPv4 nodes. An
// IPv4 address never matches an IPv6 node and vice versa. An invalid ip
// matches no node. A nil List denies everything.
//
// The returned node points into l.Nodes. Decide does not allocate.
func (l *List) Decide(ip netip.Addr) (allowed bool, by *Node) {
	if l == nil {
		return false, nil
	}
	ip = normalize(ip)
	full := ip.BitLen()
	best := -1
	for i := range l.Nodes {
		p := l.Nodes[i].Prefix
		if p.Bits() <= best || !p.Contains(ip) {
			continue
		}
		best = p.Bits()
		by = &l.Nodes[i]
		if best == full {
			break // nothing later can be more specific, and ties go to the first
		}
	}
	if by == nil {
		return l.DefaultAllow, nil
	}
	return by.Allow, by
}

// Validate reports the first problem with l: an invalid name, or a node
// whose prefix is invalid, not masked, or a v4-mapped IPv6 prefix (which
// would never match, because addresses are unmapped before matching).
func (l *List) Validate() error {
	if err := ValidName(l.Name); err != nil {
		return err
	}
	for i, n := range l.Nodes {
		switch {
		case !n.Prefix.IsValid():
			return fmt.Errorf("acl: list %q node %d: invalid prefix", l.Name, i+1)
		case n.Prefix.Addr().Zone() != "":
			return fmt.Errorf("acl: list %q node %d: %s: zones are not allowed", l.Name, i+1, n.Prefix)
		case n.Prefix.Addr().Is4In6():
			return fmt.Errorf("acl: list %q node %d: %s: use the IPv4 form of v4-mapped prefixes", l.Name, i+1, n.Prefix)
		case n.Prefix != n.Prefix.Masked():
			return fmt.Errorf("acl: list %q node %d: %s has host bits set (want %s)", l.Name, i+1, n.Prefix, n.Prefix.Masked())
		}
	}
	return nil
}

// ParseNode parses an address or CIDR: "192.168.1.0/24", "10.0.0.1" (= /32),
// "2001:db8::/32", "::1" (= /128). Surrounding white space is ignored, the
// prefix is masked (Masked), and v4-mapped IPv6 forms such as
// "::ffff:10.0.0.0/104" are converted to their IPv4 equivalent (10.0.0.0/8).
// Errors are one line and say what is wrong.
func ParseNode(allow bool, s string) (Node, error) {
	p, err := parseCIDR(s)
	if err != nil {
		return Node{}, err
	}
	return Node{Allow: allow, Prefix: p}, nil
}

func parseCIDR(in string) (netip.Prefix, error) {
	s := strings.TrimSpace(in)
	if s == "" {
		return netip.Prefix{}, errors.New("acl: empty address")
	}
	addrPart, bitsPart, hasBits := strings.Cut(s, "/")
	if addrPart == "" {
		return netip.Prefix{}, fmt.Errorf("acl: %q: missing address before '/'", s)
	}
	addr, err := netip.ParseAddr(addrPart)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("acl: %q: invalid address %q: %s", s, addrPart, netipReason(err))
	}
	if addr.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("acl: %q: IPv6 zones are not allowed", s)
	}
	bits := addr.BitLen()
	if hasBits {
		bits, err = parseBits(bitsPart)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("acl: %q: %v", s, err)
		}
		if bits > addr.BitLen() {
			family := "IPv4"
			if addr.Is6() {
				family = "IPv6"
			}
			return netip.Prefix{}, fmt.Errorf("acl: %q: prefix length %d out of range for %s (0-%d)", s, bits, family, addr.BitLen())
		}
	}
	if addr.Is4In6() && bits >= 96 {
		addr, bits = addr.Unmap(), bits-96
	}
	p, err := addr.Prefix(bits) // masks
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("acl: %q: %s", s, netipReason(err))
	}
	return p, nil
}

func parseBits(s string) (int, error) {
	if s == "" {
		return 0, errors.New("missing prefix length after '/'")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < '0' || c > '9' {
			return 0, fmt.Errorf("prefix length %q is not a number", s)
		}
	}
	switch {
	case len(s) > 1 && s[0] == '0':
		return 0, fmt.Errorf("prefix length %q has a leading zero", s)
	case len(s) > 3:
		return 0, fmt.Errorf("prefix length %s out of range", s)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n, nil
}

// netipReason strips the `ParseAddr("..."): ` prefix from a netip error,
// leaving the reason.
func netipReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		msg = msg[i+3:]
	}
	return strings.ReplaceAll(msg, "\n", " ")
}

// MaxNameLen is the maximum length of a list name.
const MaxNameLen = 64

// ValidName reports whether name is a valid list name: 1..64 characters,
// each a lowercase ASCII letter, digit, '-' or '_'.
func ValidName(name string) error {
	if name == "" {
		return errors.New("acl: empty list name")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("acl: list name is %d characters long, max %d", len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '-' || c == '_' {
			continue
		}
		return fmt.Errorf("acl: list name %q: invalid character %q at position %d (want a-z, 0-9, '-' or '_')", name, rune(c), i+1)
	}
	return nil
}

// Set is an immutable snapshot of lists by name. The owner builds a new Set
// whenever the configuration changes and swaps it atomically; readers never
// lock.
type Set struct {
	lists map[string]*List
	names []string
}

// NewSet returns a Set holding deep copies of lists, so later changes to the
// argument do not affect it. When several lists share a name, the last one
// wins. Names are not validated here; see [List.Validate].
func NewSet(lists []List) *Set {
	s := &Set{lists: make(map[string]*List, len(lists))}
	for _, l := range lists {
		c := &List{Name: l.Name, DefaultAllow: l.DefaultAllow, Nodes: append([]Node(nil), l.Nodes...)}
		if _, dup := s.lists[l.Name]; !dup {
			s.names = append(s.names, l.Name)
		}
		s.lists[l.Name] = c
	}
	sort.Strings(s.names)
	return s
}

// Get returns the list named name. The returned List is shared and must not
// be modified. A nil Set holds no lists.
func (s *Set) Get(name string) (*List, bool) {
	if s == nil {
		return nil, false
	}
	l, ok := s.lists[name]
	return l, ok
}

// Names returns the names of the lists in s, sorted.
func (s *Set) Names() []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s.names...)
}

// Len returns the number of lists in s.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.lists)
}

// normalize unmaps v4-mapped IPv6 addresses and drops IPv6 zones.
func normalize(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() && ip.Zone() != "" {
		ip = ip.WithZone("")
	}
	return ip
}
