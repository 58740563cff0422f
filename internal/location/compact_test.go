package location

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// kept returns t as a compact binding gives it back: the same instant, in
// UTC if t was, in time.Local otherwise, without a monotonic reading.
func kept(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	if t.Location() == time.UTC {
		return time.Unix(0, t.UnixNano()).UTC()
	}
	return time.Unix(0, t.UnixNano())
}

// checkRoundTrip packs b under k in s and checks that it comes back
// exactly (times as kept says).
func checkRoundTrip(t *testing.T, s *shard, k aorKey, b store.Binding) compact {
	t.Helper()
	c := s.pack(k, &b, "")
	got := s.binding(k, &c)
	want := b
	want.RegisteredAt, want.ExpiresAt, want.PingAt = kept(b.RegisteredAt), kept(b.ExpiresAt), kept(b.PingAt)
	if got != want {
		t.Errorf("round trip:\ngot  %+v\nwant %+v", got, want)
	}
	return c
}

func TestCompactRoundTrip(t *testing.T) {
	k := aorKey{"pbx.test", "2001"}
	now := time.Now() // Local, with a monotonic reading
	base := store.Binding{Domain: "pbx.test", Extension: "2001", Contact: "sip:2001@192.0.2.7:5062;transport=udp",
		Source: "192.0.2.7:5062", Transport: "UDP", UserAgent: "Grandstream GXP1625 1.0.11.23",
		CallID: "0123456789abcdef0123456789abcdef", CSeq: 7, AuthUser: "2001", Realm: "pbx.test",
		RegisteredAt: now, ExpiresAt: now.Add(time.Hour)}
	long := strings.Repeat("x", 300)
	cases := map[string]func(b *store.Binding){
		"typical": func(*store.Binding) {},
		"behind NAT": func(b *store.Binding) {
			b.Source = "203.0.113.9:41234"
		},
		"source twice in contact": func(b *store.Binding) {
			b.Contact, b.Source = "sip:1.2.3.4:5@1.2.3.4:5", "1.2.3.4:5"
		},
		"source is contact":    func(b *store.Binding) { b.Source = b.Contact },
		"no source":            func(b *store.Binding) { b.Source = "" },
		"domain case":          func(b *store.Binding) { b.Domain = "PBX.Test" },
		"other extension":      func(b *store.Binding) { b.Extension = "2002" },
		"other auth user":      func(b *store.Binding) { b.AuthUser = "alice" },
		"other realm":          func(b *store.Binding) { b.Realm = "Other Realm" },
		"empty auth and realm": func(b *store.Binding) { b.AuthUser, b.Realm = "", "" },
		"lower-case transport": func(b *store.Binding) { b.Transport = "udp" },
		"no transport":         func(b *store.Binding) { b.Transport = "" },
		"unknown transport":    func(b *store.Binding) { b.Transport = "SCTP" },
		"pinged": func(b *store.Binding) {
			b.PingStatus, b.PingRTT, b.PingAt = "reachable", 12.345, now.Add(-time.Second)
		},
		"unknown ping status": func(b *store.Binding) { b.PingStatus = "weird" },
		"UTC times": func(b *store.Binding) {
			b.RegisteredAt, b.ExpiresAt, b.PingAt = now.UTC(), now.Add(time.Minute).UTC(), now.UTC()
		},
		"other zone": func(b *store.Binding) {
			b.ExpiresAt = b.ExpiresAt.In(time.FixedZone("X", 5*3600))
		},
		"zero times":  func(b *store.Binding) { b.RegisteredAt, b.ExpiresAt = time.Time{}, time.Time{} },
		"long fields": func(b *store.Binding) { b.Contact, b.CallID, b.UserAgent = "sip:"+long, long, long },
		"binary user agent": func(b *store.Binding) {
			b.UserAgent = "\x00\xff\x80 phone"
		},
		"all empty": func(b *store.Binding) { *b = store.Binding{} },
		"max cseq":  func(b *store.Binding) { b.CSeq = math.MaxUint32 },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			b := base
			edit(&b)
			var s shard
			checkRoundTrip(t, &s, k, b)
		})
	}
}

// TestCompactAgents: user agents are shared up to maxAgents per shard;
// the rest, and long ones, stay in each binding's text.
func TestCompactAgents(t *testing.T) {
	k := aorKey{"pbx.test", "2001"}
	var s shard
	var cs []compact
	for i := range maxAgents + 10 {
		b := store.Binding{Domain: "pbx.test", Extension: "2001", Contact: "sip:2001@192.0.2.7",
			UserAgent: "phone " + strconv.Itoa(i)}
		cs = append(cs, checkRoundTrip(t, &s, k, b))
	}
	for i, c := range cs {
		if shared := i < maxAgents; shared != (c.agent != 0) {
			t.Errorf("user agent %d: agent %d", i, c.agent)
		}
	}
	b := store.Binding{UserAgent: strings.Repeat("y", maxAgentLen+1)}
	if c := checkRoundTrip(t, &s, k, b); c.agent != 0 {
		t.Error("a long user agent was shared")
	}
	// A shared user agent is the shard's copy, not the caller's.
	ua := "Yealink SIP-T46U 66.86.0.15"
	b = store.Binding{UserAgent: ua}
	var s2 shard
	c := s2.pack(k, &b, "")
	if got := s2.binding(k, &c).UserAgent; got != ua || unsafe.StringData(got) == unsafe.StringData(ua) {
		t.Errorf("shared user agent %q is the caller's string", got)
	}
}

// TestCompactRefreshKeepsText: a refresh with equal strings (but new copies
// of them, as the registrar makes) shares the old text; a changed string
// gets a new one.
func TestCompactRefreshKeepsText(t *testing.T) {
	k := aorKey{"pbx.test", "2001"}
	now := time.Now()
	b := store.Binding{Domain: "pbx.test", Extension: "2001", Contact: "sip:2001@192.0.2.7:5062", Source: "203.0.113.9:41234",
		Transport: "WSS", UserAgent: strings.Repeat("z", maxAgentLen+1), CallID: "abc", CSeq: 1, AuthUser: "alice",
		Realm: "pbx.test", RegisteredAt: now, ExpiresAt: now.Add(time.Hour)}
	var s shard
	old := s.pack(k, &b, "")

	r := b
	r.Contact, r.Source, r.UserAgent, r.CallID, r.AuthUser = strings.Clone(b.Contact), strings.Clone(b.Source),
		strings.Clone(b.UserAgent), strings.Clone(b.CallID), strings.Clone(b.AuthUser)
	r.CSeq, r.ExpiresAt = 2, now.Add(2*time.Hour)
	c := s.pack(k, &r, old.text)
	if unsafe.StringData(c.text) != unsafe.StringData(old.text) {
		t.Error("a refresh with the same strings made a new text")
	}
	if got := s.binding(k, &c); got.CSeq != 2 || !got.ExpiresAt.Equal(r.ExpiresAt) || got.CallID != "abc" {
		t.Errorf("refreshed binding: %+v", got)
	}
	r.CallID = "abd"
	if c := s.pack(k, &r, old.text); c.text == old.text || s.binding(k, &c).CallID != "abd" {
		t.Error("a new Call-ID kept the old text")
	}
}

// TestUnixNano: the zero time and times beyond int64 nanoseconds.
func TestUnixNano(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		in   time.Time
		want int64
	}{
		{time.Time{}, noTime},
		{time.Unix(0, 0), 0},
		{now, now.UnixNano()},
		{time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), math.MaxInt64},
		{time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), noTime + 1},
		{time.Unix(9223372035, 0), 9223372035 * 1e9}, // the last whole second before the end
	} {
		if got := unixNano(tc.in); got != tc.want {
			t.Errorf("unixNano(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
	if !timeOf(noTime, true).IsZero() || !timeOf(noTime+1, false).Before(now) || !timeOf(math.MaxInt64, false).After(now) {
		t.Error("timeOf at the ends")
	}
}
