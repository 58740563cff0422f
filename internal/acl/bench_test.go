package acl

import (
	"net/netip"
	"testing"
	"time"
)

func benchIPs(n int) []netip.Addr {
	ips := make([]netip.Addr, n)
	for i := range ips {
		if i%4 == 3 {
			ips[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		} else {
			ips[i] = netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)})
		}
	}
	return ips
}

func benchGuard() (*Guard, []netip.Addr) {
	g := NewGuard(DefaultGuardConfig(), nil)
	ips := benchIPs(1024)
	for i := 0; i < len(ips); i += 8 { // 1/8 of them banned
		g.Add(Ban{IP: ips[i], Reason: "bench", Until: time.Now().Add(time.Hour)})
	}
	return g, ips
}

func benchList() *List {
	l := &List{Name: "bench", DefaultAllow: false}
	for _, s := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "192.168.1.66", "100.64.0.0/10", "2001:db8::/32", "fe80::/10", "203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24"} {
		n, err := ParseNode(s != "192.168.1.66", s)
		if err != nil {
			panic(err)
		}
		l.Nodes = append(l.Nodes, n)
	}
	return l
}

var benchUAs = []string{
	"Grandstream GXP1625 1.0.11.23",
	"friendly-scanner",
	"Yealink SIP-T46S 66.86.0.15",
	"Linphone/5.2.5 (belle-sip/5.2.0)",
	"SIPVicious 0.3.3",
	"FreeSWITCH-mod_sofia/1.10.11-release~64bit",
}

func BenchmarkBanned(b *testing.B) {
	g, ips := benchGuard()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g.Banned(ips[i&1023])
	}
}

func BenchmarkBannedNoBans(b *testing.B) {
	g := NewGuard(DefaultGuardConfig(), nil)
	ips := benchIPs(1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g.Banned(ips[i&1023])
	}
}

func BenchmarkBannedParallel(b *testing.B) {
	g, ips := benchGuard()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			g.Banned(ips[i&1023])
			i++
		}
	})
}

func BenchmarkAllow(b *testing.B) {
	r := NewRateLimiter(1e6, 1000, nil)
	ips := benchIPs(1024)
	for _, ip := range ips {
		r.Allow(ip)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Allow(ips[i&1023])
	}
}

func BenchmarkAllowParallel(b *testing.B) {
	r := NewRateLimiter(1e6, 1000, nil)
	ips := benchIPs(1024)
	for _, ip := range ips {
		r.Allow(ip)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Allow(ips[i&1023])
			i++
		}
	})
}

func BenchmarkDecide(b *testing.B) {
	l := benchList()
	ips := []netip.Addr{
		netip.MustParseAddr("192.168.1.66"),
		netip.MustParseAddr("192.168.7.1"),
		netip.MustParseAddr("8.8.8.8"),
		netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("::ffff:10.1.2.3"),
		netip.MustParseAddr("fe80::1%eth0"),
		netip.MustParseAddr("203.0.113.5"),
		netip.MustParseAddr("2a00::1"),
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.Decide(ips[i&7])
	}
}

func BenchmarkIsScanner(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		IsScanner(benchUAs[i%len(benchUAs)])
	}
}

// BenchmarkFail cycles 65536 IPs through 4 failures and a success, so
// counters are created, updated and released but nobody is banned.
func BenchmarkFail(b *testing.B) {
	g := NewGuard(GuardConfig{MaxFailures: 5, Window: time.Hour}, nil)
	ips := benchIPs(1 << 16)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ip := ips[i&(1<<16-1)]
		if _, ok := g.Fail(ip, "bench"); ok {
			b.Fatal("banned")
		}
		if (i>>16)&3 == 3 {
			g.Succeed(ip)
		}
	}
}

// TestHotPathsDoNotAllocate makes the 0 allocs/op promise a failing test,
// not just a benchmark number.
func TestHotPathsDoNotAllocate(t *testing.T) {
	g, ips := benchGuard()
	r := NewRateLimiter(1e6, 1000, nil)
	for _, ip := range ips {
		r.Allow(ip)
	}
	l := benchList()
	zoned := netip.MustParseAddr("fe80::1%eth0")
	mapped := netip.MustParseAddr("::ffff:192.168.1.66")
	i := 0
	for name, f := range map[string]func(){
		"Banned":    func() { g.Banned(ips[i&1023]); g.Banned(mapped); i++ },
		"Allow":     func() { r.Allow(ips[i&1023]); i++ },
		"Decide":    func() { l.Decide(ips[i&1023]); l.Decide(zoned); l.Decide(mapped); i++ },
		"IsScanner": func() { IsScanner(benchUAs[i%len(benchUAs)]); i++ },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocs/op, want 0", name, n)
		}
	}
}
