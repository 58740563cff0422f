package security

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/guard"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

// newDBService returns a Service on a real database in a temp directory.
func newDBService(t *testing.T, cfg Config, live func(netip.Addr) bool) (*Service, *Store, *fakeClock) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := NewStore(db)
	clock := &fakeClock{}
	s := New(cfg, Deps{Store: st, Live: live, Now: clock.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, st, clock
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestMigrationSeed(t *testing.T) {
	_, st, _ := newDBService(t, Config{}, nil)
	ctx := context.Background()
	p, err := st.Profile(ctx, DefaultProfile)
	if err != nil || p.TrustedACL != "loopback" || p.RegisterACL != "" || p.InboundACL != "" {
		t.Fatalf("profile %+v %v", p, err)
	}
	l, err := st.ACL(ctx, "loopback")
	if err != nil || l.DefaultAllow || len(l.Nodes) != 2 || l.Nodes[0].String() != "allow 127.0.0.0/8" || l.Nodes[1].String() != "allow ::1/128" {
		t.Fatalf("loopback %+v %v", l, err)
	}
}

func TestPolicyACLs(t *testing.T) {
	s, st, _ := newDBService(t, Config{}, nil)
	ctx := context.Background()
	if ok, _ := s.AllowRegister(ip("203.0.113.9")); !ok {
		t.Fatal("no register ACL must allow everyone")
	}
	if err := st.AddACL(ctx, "office", false); err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct {
		allow bool
		cidr  string
	}{{true, "192.168.1.0/24"}, {false, "192.168.1.66"}, {true, "2001:db8::/32"}} {
		node, err := acl.ParseNode(n.allow, n.cidr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.AddNode(ctx, "office", node); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetProfile(ctx, Profile{Name: DefaultProfile, RegisterACL: "office", InboundACL: "office", TrustedACL: "loopback"}); err != nil {
		t.Fatal(err)
	}
	if err := s.reloadConfig(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ip   string
		want bool
	}{{"192.168.1.10", true}, {"192.168.1.66", false}, {"::ffff:192.168.1.10", true}, {"10.0.0.1", false}, {"2001:db8::1", true}} {
		if ok, list := s.AllowRegister(ip(c.ip)); ok != c.want || list != "office" {
			t.Errorf("AllowRegister(%s) = %v, %q", c.ip, ok, list)
		}
		if ok, list := s.AllowInvite(ip(c.ip)); ok != c.want || list != "inbound acl office" {
			t.Errorf("AllowInvite(%s) = %v, %q", c.ip, ok, list)
		}
	}
	if ok, list := s.AllowExtension(ip("192.168.1.66"), "office"); ok || list != "office" {
		t.Errorf("AllowExtension denied address = %v %q", ok, list)
	}
	if ok, _ := s.AllowExtension(ip("10.0.0.1"), ""); !ok {
		t.Error("extension without ACL refused")
	}
	// A list that went missing denies (fail closed).
	if ok, list := s.AllowExtension(ip("192.168.1.10"), "gone"); ok || list != "gone" {
		t.Errorf("missing ACL: %v %q", ok, list)
	}
	if _, err := st.AddNode(ctx, "nope", acl.Node{}); !errors.Is(err, ErrNoACL) {
		t.Errorf("AddNode to a missing list: %v", err)
	}
	if err := st.AddACL(ctx, "office", true); !errors.Is(err, ErrACLExists) {
		t.Errorf("duplicate AddACL: %v", err)
	}
	users, err := st.UsedBy(ctx, "office")
	if err != nil || len(users) != 2 {
		t.Errorf("UsedBy = %v %v", users, err)
	}
}

func TestBanFlow(t *testing.T) {
	live := map[netip.Addr]bool{ip("198.51.100.2"): true}
	s, st, clock := newDBService(t, Config{BanAfter: 3, BanWindow: time.Minute, BanFor: time.Hour},
		func(a netip.Addr) bool { return live[a] })
	ctx := context.Background()
	attacker := ip("203.0.113.7")
	for i := 0; i < 2; i++ {
		s.AuthFailed(attacker, "example.com", "2002", "wrong password for 2002@example.com")
	}
	if s.guard.Banned(attacker) {
		t.Fatal("banned after 2 of 3")
	}
	s.AuthFailed(attacker, "example.com", "2002", "wrong password for 2002@example.com")
	if !s.guard.Banned(attacker) {
		t.Fatal("not banned after 3")
	}
	// Persisted by Run.
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { s.Run(runCtx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if b, err := st.Ban(ctx, attacker, clock.Now()); err == nil {
			if b.Failures != 3 || b.Until.Sub(b.Since) != time.Hour {
				t.Fatalf("stored ban %+v", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ban not stored")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-done
	// Trusted addresses are exempt; an address with a live registration
	// counts failures for others toward 4 x BanAfter (12).
	for i := 0; i < 10; i++ {
		s.AuthFailed(ip("198.51.100.2"), "example.com", "2002", "x")
		s.AuthFailed(ip("127.0.0.5"), "example.com", "2002", "x")
	}
	if s.guard.Banned(ip("198.51.100.2")) || s.guard.Banned(ip("127.0.0.5")) {
		t.Fatal("exempt address banned")
	}
	// Success clears the count.
	other := ip("203.0.113.8")
	s.AuthFailed(other, "example.com", "2002", "x")
	s.AuthFailed(other, "example.com", "2002", "x")
	s.AuthSucceeded(other, "example.com", "2002")
	s.AuthFailed(other, "example.com", "2002", "x")
	if s.guard.Banned(other) {
		t.Fatal("count not cleared by success")
	}
	// The change feed: a removed row lifts the ban, a new row imposes one.
	if err := st.RemoveBan(ctx, attacker, clock.Now()); err != nil {
		t.Fatal(err)
	}
	s.reloadBan(ctx, attacker)
	if s.guard.Banned(attacker) {
		t.Fatal("ban rm not applied")
	}
	if err := st.PutBan(ctx, acl.Ban{IP: other, Reason: "operator", Since: clock.Now()}); err != nil {
		t.Fatal(err)
	}
	s.reloadBan(ctx, other)
	if !s.guard.Banned(other) {
		t.Fatal("ban add not applied")
	}
	// A restart (a new Service on the same store) keeps it.
	s2 := New(Config{}, Deps{Store: st, Now: clock.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if !s2.guard.Banned(other) {
		t.Fatal("ban lost on restart")
	}
	// Expired bans are pruned.
	if err := st.PutBan(ctx, acl.Ban{IP: ip("203.0.113.99"), Since: clock.Now(), Until: clock.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	clock.advance(2 * time.Minute)
	if n, err := st.PruneBans(ctx, clock.Now()); err != nil || n != 1 {
		t.Fatalf("PruneBans = %d, %v", n, err)
	}
	// Trusting an address lifts its ban.
	if err := st.SetProfile(ctx, Profile{Name: DefaultProfile, TrustedACL: "lab"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddACL(ctx, "lab", false); err != nil {
		t.Fatal(err)
	}
	node, _ := acl.ParseNode(true, "203.0.113.0/24")
	if _, err := st.AddNode(ctx, "lab", node); err != nil {
		t.Fatal(err)
	}
	if err := s2.reloadConfig(ctx); err != nil {
		t.Fatal(err)
	}
	if s2.guard.Banned(other) {
		t.Fatal("trusted address still banned")
	}
	if _, err := st.Ban(ctx, other, clock.Now()); !errors.Is(err, ErrNoBan) {
		t.Fatalf("trusted address's ban row kept: %v", err)
	}
}

func TestScannerFromTrustedNotBanned(t *testing.T) {
	s, _, _ := newDBService(t, Config{}, nil)
	msg := []byte("OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n" +
		"From: <sip:100@1.1.1.1>;tag=1\r\nTo: <sip:100@1.1.1.1>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\n" +
		"User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n")
	local := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060}
	if guard.New(guard.Config{}, guard.Deps{Policy: s}).Filter("UDP", local, msg) != nil {
		t.Fatal("scanner passed")
	}
	if s.guard.Banned(ip("127.0.0.1")) {
		t.Fatal("trusted address banned")
	}
}

func TestUsedByAndRemove(t *testing.T) {
	_, st, _ := newDBService(t, Config{}, nil)
	ctx := context.Background()
	if err := st.AddACL(ctx, "x", true); err != nil {
		t.Fatal(err)
	}
	if err := st.RemoveNode(ctx, "x", netip.MustParsePrefix("10.0.0.0/8")); !errors.Is(err, ErrNoNode) {
		t.Fatalf("RemoveNode: %v", err)
	}
	if err := st.RemoveACL(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := st.RemoveACL(ctx, "x"); !errors.Is(err, ErrNoACL) {
		t.Fatalf("second RemoveACL: %v", err)
	}
	if _, err := st.Profile(ctx, "external"); !errors.Is(err, ErrNoProfile) {
		t.Fatalf("Profile(external): %v", err)
	}
}

// TestBanRegisteredAddress: an address with a live registration of 2001 is
// not exempt from bans for guessing others. Its own phone's failures (2001)
// never count; failures for 2002 ban it at BanAfterRegistered (4 x
// BanAfter by default), and 2001's successes in between do not reset the
// count. The ban's reason says what happened.
func TestBanRegisteredAddress(t *testing.T) {
	office := ip("198.51.100.2")
	db, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := &fakeClock{}
	s := New(Config{BanAfter: 3, BanWindow: time.Minute, BanFor: time.Hour}, Deps{Store: NewStore(db),
		Live:     func(a netip.Addr) bool { return a == office },
		LiveFrom: func(a netip.Addr, d, n string) bool { return a == office && d == "example.com" && n == "2001" },
		LiveAt:   func(a netip.Addr) []string { return []string{"2001@example.com"} },
		Now:      clock.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.Config().BanAfterRegistered != 12 {
		t.Fatalf("BanAfterRegistered = %d, want 4 x 3", s.Config().BanAfterRegistered)
	}
	// The registered phone's own failures: never a ban.
	for range 50 {
		s.AuthFailed(office, "example.com", "2001", "wrong password for 2001@example.com")
	}
	if s.guard.Banned(office) {
		t.Fatal("the registered phone's own failures banned its address")
	}
	// Guesses at 2002, with 2001 refreshing between them.
	for i := range 11 {
		s.AuthFailed(office, "example.com", "2002", "wrong password for 2002@example.com")
		s.AuthSucceeded(office, "example.com", "2001")
		if s.guard.Banned(office) {
			t.Fatalf("banned after %d guesses; want 12", i+1)
		}
	}
	s.AuthFailed(office, "example.com", "2002", "wrong password for 2002@example.com")
	if !s.guard.Banned(office) {
		t.Fatal("not banned after 12 guesses at 2002 from a registered address")
	}
	bs := s.guard.List()
	if len(bs) != 1 || bs[0].Failures != 12 ||
		bs[0].Reason != "brute force from an address with registered phones (2001@example.com); threshold 12; last: wrong password for 2002@example.com" {
		t.Fatalf("bans %+v", bs)
	}
	// An address without registrations is still banned at BanAfter.
	stranger := ip("203.0.113.7")
	for range 3 {
		s.AuthFailed(stranger, "example.com", "2001", "wrong password")
	}
	if !s.guard.Banned(stranger) {
		t.Fatal("stranger not banned after 3")
	}
}
