package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// now is the fixed time of every scenario: 2026-01-15 14:30:00 UTC.
var now = time.Date(2026, 1, 15, 14, 30, 0, 0, time.UTC)

func at(hhmmss string) time.Time {
	t, err := time.ParseInLocation("15:04:05", hhmmss, time.UTC)
	if err != nil {
		panic(err)
	}
	return time.Date(2026, 1, 15, t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
}

// base returns the facts of a healthy setup with 2002 in 127.0.0.1, serve
// running and answering, nothing registered and an empty journal.
func base() Inputs {
	ext := store.Extension{Domain: "127.0.0.1", Number: "2002", HA1MD5: "x", HA1SHA256: "y", Enabled: true, MaxRegistrations: 5}
	return Inputs{
		Now: now, Loc: time.UTC, Number: "2002", Domain: "127.0.0.1", DomainEnabled: true, DefaultDomain: "127.0.0.1",
		Ext: &ext,
		Serve: Serve{Running: true, PID: 4242, Known: true, StartedAt: now.Add(-3 * time.Hour),
			Listeners: []Listener{
				{Proto: "udp", Addr: "192.168.1.10:5060", Probed: true, OK: true, Detail: "answers OPTIONS (200 OK, 0.3 ms)"},
				{Proto: "tcp", Addr: "192.168.1.10:5060", Probed: true, OK: true, Detail: "accepts connections (0.2 ms)"}}},
		Firewall: Firewall{Checked: []string{"nft"}},
		History:  History{Available: true, Limit: 2000, Oldest: now.Add(-7 * 24 * time.Hour)},
		Bans:     Bans{Available: true},
		Calls:    Calls{Available: true},
	}
}

// ev builds a journal event of the phone at src with user agent ua.
func ev(t time.Time, c cause.Code, src, ua string, mods ...func(*journal.Event)) journal.Event {
	e := journal.Event{Time: t, Kind: journal.KindRegister, Cause: c, Extension: "2002", Domain: "127.0.0.1",
		AuthUser: "2002", Realm: "127.0.0.1", Source: src, Transport: "UDP", UserAgent: ua}
	for _, m := range mods {
		m(&e)
	}
	return e
}

// newestFirst orders events like journal.Query does.
func newestFirst(evs ...journal.Event) []journal.Event {
	out := make([]journal.Event, len(evs))
	for i, e := range evs {
		out[len(evs)-1-i] = e
	}
	for i := range out {
		out[i].ID = int64(len(out) - i)
	}
	return out
}

func binding(src, ua string, mods ...func(*store.Binding)) store.Binding {
	b := store.Binding{Domain: "127.0.0.1", Extension: "2002", Contact: "sip:2002@" + src, Source: src, Transport: "UDP",
		UserAgent: ua, RegisteredAt: now.Add(-20 * time.Minute), ExpiresAt: now.Add(40 * time.Minute)}
	for _, m := range mods {
		m(&b)
	}
	return b
}

const gs = "Grandstream GXP1625"

// adminEv builds an operator's change as the CLI journals it (by alice).
func adminEv(t time.Time, c cause.Code, src, detail string) journal.Event {
	return journal.Event{Time: t, Kind: journal.KindAdmin, Cause: c, AuthUser: "alice", Source: src, Detail: detail}
}

func scenarios() map[string]func() Inputs {
	return map[string]func() Inputs{
		"wrong_password": func() Inputs {
			in := base()
			var evs []journal.Event
			evs = append(evs, ev(at("09:10:00"), cause.Registered, "192.168.1.50:5060", gs))
			evs = append(evs, ev(at("10:10:00"), cause.Expired, "192.168.1.50:5060", gs, func(e *journal.Event) { e.Kind = journal.KindBinding }))
			for i := 0; i < 37; i++ {
				evs = append(evs, ev(at("14:02:00").Add(time.Duration(i)*30*time.Second), cause.WrongPassword, "192.168.1.50:5060", gs,
					func(e *journal.Event) { e.Status = 403 }))
			}
			in.History.Recent = newestFirst(evs...)
			in.Bindings = []store.Binding{binding("192.168.1.50:5060", gs, func(b *store.Binding) {
				b.ExpiresAt = at("10:10:00")
			})}
			return in
		},
		"registered": func() Inputs {
			in := base()
			in.Bindings = []store.Binding{binding("192.168.1.50:5060", gs, func(b *store.Binding) {
				b.PingStatus, b.PingRTT, b.PingAt = "reachable", 12.5, at("14:29:40")
			})}
			in.History.Recent = newestFirst(ev(at("14:10:00"), cause.Registered, "192.168.1.50:5060", gs))
			return in
		},
		"unreachable": func() Inputs {
			in := base()
			in.Bindings = []store.Binding{binding("203.0.113.7:41234", "Yealink SIP-T46U", func(b *store.Binding) {
				b.PingStatus, b.PingAt = "unreachable", at("14:29:50")
			})}
			in.History.Recent = newestFirst(
				ev(at("14:10:00"), cause.Registered, "203.0.113.7:41234", "Yealink SIP-T46U"),
				ev(at("14:12:30"), cause.Unreachable, "203.0.113.7:41234", "Yealink SIP-T46U", func(e *journal.Event) { e.Kind = journal.KindQualify }))
			in.Calls.Failed = []Call{{Time: at("14:20:00"), From: "2001", To: "2002", Status: 408, Cause: cause.RecoveryOnTimerExpire,
				Source: "192.168.1.20:5060"}}
			return in
		},
		"tls_certificate": func() Inputs {
			in := base()
			cert := &CertFacts{Subject: "old.example.com", Names: []string{"old.example.com"}, NotBefore: at("09:00:00").AddDate(-1, 0, 0),
				NotAfter: at("09:00:00"), Trusted: false}
			in.Serve.Listeners = append(in.Serve.Listeners,
				Listener{Proto: "tls", Addr: "192.168.1.10:5061", Probed: true, OK: true, Detail: "accepts TLS handshake (TLS 1.3) (0.9 ms)", Cert: cert},
				Listener{Proto: "wss", Addr: "192.168.1.10:7443", Probed: true, OK: true, Detail: "accepts TLS handshake (TLS 1.3) and WebSocket upgrade with sip (1.1 ms)", Cert: cert})
			in.Bindings = []store.Binding{binding("192.168.1.50:5060", gs, func(b *store.Binding) {
				b.PingStatus, b.PingRTT, b.PingAt = "reachable", 12.5, at("14:29:40")
			})}
			in.History.Recent = newestFirst(ev(at("14:10:00"), cause.Registered, "192.168.1.50:5060", gs))
			return in
		},
		"never_seen_tls": func() Inputs {
			in := base()
			in.History.Handshakes = []journal.Event{{ID: 7, Time: at("14:25:00"), Kind: journal.KindRequest, Cause: cause.TLSHandshakeFailed,
				Source: "203.0.113.7:50122", Transport: "TLS",
				Detail: "TLS connection from 203.0.113.7 refused: TLS handshake failed: remote error: tls: bad certificate; fix: the client does not accept the certificate"}}
			return in
		},
		"connection_closed": func() Inputs {
			in := base()
			in.Bindings = []store.Binding{binding("203.0.113.7:52011", "JsSIP 3.10.1", func(b *store.Binding) {
				b.Transport, b.Contact = "WSS", "sip:k2ut8v3m@xyz.invalid;transport=ws"
				b.PingStatus = "unreachable"
			})}
			in.History.Recent = newestFirst(
				ev(at("14:10:00"), cause.Registered, "203.0.113.7:52011", "JsSIP 3.10.1", func(e *journal.Event) { e.Transport = "WSS" }),
				ev(at("14:02:11").Add(10*time.Minute), cause.ConnectionClosed, "203.0.113.7:52011", "JsSIP 3.10.1", func(e *journal.Event) {
					e.Kind, e.Transport = journal.KindBinding, "WSS"
					e.Detail = "registered over WSS from 203.0.113.7; the WebSocket closed at 14:12:11 (the browser tab was probably closed or lost network); " +
						"contact sip:k2ut8v3m@xyz.invalid;transport=ws is unreachable: calls get 480 until it registers again"
				}))
			return in
		},
		"never_seen": func() Inputs {
			in := base()
			in.Firewall = Firewall{Errors: []string{"nft: Operation not permitted (run the doctor as root to check the firewall)"}}
			return in
		},
		"extension_missing": func() Inputs {
			in := base()
			in.Number, in.Ext = "2020", nil
			in.Similar = []string{"2002", "2021"}
			return in
		},
		"other_domain": func() Inputs {
			in := base()
			in.Ext, in.OtherDomains = nil, []string{"pbx.example.com"}
			return in
		},
		"disabled": func() Inputs {
			in := base()
			in.Ext.Enabled = false
			return in
		},
		"listener_down": func() Inputs {
			in := base()
			in.Serve.Running, in.Serve.PID = false, 0
			for i := range in.Serve.Listeners {
				in.Serve.Listeners[i].Probed, in.Serve.Listeners[i].OK, in.Serve.Listeners[i].Detail = false, false, ""
			}
			in.Bindings = []store.Binding{binding("192.168.1.50:5060", gs)}
			return in
		},
		"wrong_domain": func() Inputs {
			in := base()
			in.History.Recent = newestFirst(
				ev(at("14:05:00"), cause.WrongDomain, "192.168.1.51:5062", "Polycom VVX 450", func(e *journal.Event) {
					e.Domain, e.Realm, e.Status = "pbx.example.com", "pbx.example.com", 403
				}),
				ev(at("14:06:00"), cause.WrongDomain, "192.168.1.51:5062", "Polycom VVX 450", func(e *journal.Event) {
					e.Domain, e.Realm, e.Status = "pbx.example.com", "pbx.example.com", 403
				}))
			return in
		},
		"banned": func() Inputs {
			in := base()
			in.History.Recent = newestFirst(
				ev(at("13:00:00"), cause.WrongPassword, "192.168.1.50:5060", gs),
				ev(at("13:00:30"), cause.WrongPassword, "192.168.1.50:5060", gs))
			in.Bans.Active = []Ban{{IP: "192.168.1.50", Reason: "wrong password", Failures: 5, Since: at("13:01:00"), Until: at("15:01:00")}}
			return in
		},
		"digest_no_qop": func() Inputs {
			in := base()
			var evs []journal.Event
			for i := 0; i < 4; i++ {
				evs = append(evs, ev(at("14:02:00").Add(time.Duration(i)*time.Minute), cause.DigestNoQOP, "192.168.1.50:5060", "OldPhone 1.0",
					func(e *journal.Event) {
						e.Status = 403
						e.Detail = "answer without qop (RFC 2069 digest) for 2002@127.0.0.1: the password is right, but qop=auth is required"
					}))
			}
			in.History.Recent = newestFirst(evs...)
			return in
		},
		"banned_registered": func() Inputs {
			in := base()
			in.Bindings = []store.Binding{binding("192.168.1.50:5060", gs)}
			in.History.Recent = newestFirst(ev(at("13:00:00"), cause.Registered, "192.168.1.50:5060", gs))
			in.Bans.Active = []Ban{{IP: "192.168.1.50", Failures: 20, Since: at("13:01:00"), Until: at("15:01:00"),
				Reason: "brute force from an address with registered phones (2002); threshold 20; last: wrong password for 2003@127.0.0.1"}}
			return in
		},
		"acl_denied": func() Inputs {
			in := base()
			in.History.Recent = newestFirst(ev(at("14:15:00"), cause.ACLDenied, "10.9.8.7:5060", "Cisco SPA504G", func(e *journal.Event) {
				e.AuthUser, e.Realm, e.Status = "", "", 403
				e.Detail = "source 10.9.8.7 rejected by register acl office"
			}))
			return in
		},
		"max_registrations": func() Inputs {
			in := base()
			in.Ext.MaxRegistrations = 1
			in.Bindings = []store.Binding{binding("192.168.1.50:5060", gs)}
			in.History.Recent = newestFirst(
				ev(at("14:10:00"), cause.Registered, "192.168.1.50:5060", gs),
				ev(at("14:20:00"), cause.MaxRegistrations, "192.168.1.60:5060", "Linphone 5.1", func(e *journal.Event) {
					e.Status, e.Detail = 403, "already 1 of 1 registrations"
				}))
			return in
		},
		"interval_too_brief": func() Inputs {
			in := base()
			in.History.Recent = newestFirst(ev(at("14:25:00"), cause.IntervalTooBrief, "192.168.1.50:5060", gs, func(e *journal.Event) {
				e.Status, e.Detail = 423, "asked for 30 s, the minimum is 60 s"
			}))
			return in
		},
		"auth_user_mismatch": func() Inputs {
			in := base()
			in.History.Recent = newestFirst(ev(at("14:25:00"), cause.ExtensionMissing, "192.168.1.50:5060", gs, func(e *journal.Event) {
				e.AuthUser, e.Status, e.Detail = "admin", 403, "no extension admin in 127.0.0.1"
			}))
			return in
		},
		"expired": func() Inputs {
			in := base()
			in.History.Recent = newestFirst(
				ev(at("09:10:00"), cause.Registered, "192.168.1.50:5060", gs),
				ev(at("10:10:00"), cause.Expired, "192.168.1.50:5060", gs, func(e *journal.Event) { e.Kind = journal.KindBinding }))
			return in
		},
		"store_unavailable": func() Inputs {
			in := base()
			in.Storage = Storage{Checked: true, Dir: "/var/lib/switchboard", Known: true, Free: 0, Total: 8 << 20,
				WriteErr: "no space left on device"}
			in.History.Recent = newestFirst(
				ev(at("09:10:00"), cause.StoreUnavailable, "192.168.1.50:5060", gs, func(e *journal.Event) { e.Status = 503 }))
			return in
		},
		// ban_then_unban: banned after wrong passwords, then `ban rm` by
		// alice: not banned any more, the wrong password is the answer.
		"ban_then_unban": func() Inputs {
			in := base()
			in.History.Recent = newestFirst(
				ev(at("13:00:00"), cause.WrongPassword, "192.168.1.50:5060", gs),
				ev(at("13:00:30"), cause.WrongPassword, "192.168.1.50:5060", gs),
				ev(at("13:05:00"), cause.IPBanned, "192.168.1.50:5060", gs))
			in.History.Admin = []journal.Event{adminEv(at("14:03:00"), cause.BanLifted, "192.168.1.50",
				"ban of 192.168.1.50 (until 2026-01-15T15:01:00Z: wrong password) lifted by alice")}
			return in
		},
		// ban_lifted: an operator's ban (no failures) lifted again; the
		// phone has not retried.
		"ban_lifted": func() Inputs {
			in := base()
			in.History.Recent = newestFirst(ev(at("13:05:00"), cause.IPBanned, "192.168.1.50:5060", gs))
			in.History.Admin = []journal.Event{
				adminEv(at("14:03:00"), cause.BanLifted, "192.168.1.50", "ban of 192.168.1.50 (until 2026-01-15T15:00:00Z: banned by the operator) lifted by alice"),
				adminEv(at("13:00:00"), cause.BanAdded, "192.168.1.50", "ban of 192.168.1.50 (until 2026-01-15T15:00:00Z: banned by the operator) added by alice")}
			return in
		},
		// acl_removed: rejected by the register ACL, which the profile no
		// longer applies.
		"acl_removed": func() Inputs {
			in := base()
			in.History.Recent = newestFirst(ev(at("14:15:00"), cause.ACLDenied, "10.9.8.7:5060", "Cisco SPA504G", func(e *journal.Event) {
				e.AuthUser, e.Realm, e.Status = "", "", 403
				e.Detail = "source 10.9.8.7 rejected by register acl office"
			}))
			in.Access = Access{Available: true, Lists: map[string]acl.List{"office": {Name: "office"}}}
			in.History.Admin = []journal.Event{adminEv(at("14:20:00"), cause.ProfileChanged, "",
				"profile internal: register acl office -> none by alice")}
			return in
		},
		// old_warning: 2002 works; a softphone tried once with a wrong
		// password a week ago: history, not the verdict.
		"old_warning": func() Inputs {
			in := base()
			in.Bindings = []store.Binding{binding("192.168.1.50:5060", gs, func(b *store.Binding) {
				b.PingStatus, b.PingRTT, b.PingAt = "reachable", 12.5, at("14:29:40")
			})}
			in.History.Recent = newestFirst(
				ev(now.Add(-7*24*time.Hour+time.Hour), cause.WrongPassword, "192.168.1.99:5060", "Zoiper rv2.10"),
				ev(at("14:10:00"), cause.Registered, "192.168.1.50:5060", gs))
			return in
		},
		"firewall_blocks": func() Inputs {
			in := base()
			in.Bindings = []store.Binding{binding("192.168.1.50:5060", gs)}
			in.Firewall.Blocks = []string{`nft: chain input (table inet filter): "udp dport 5060 drop"`}
			return in
		},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (run with -update after checking):\n--- got ---\n%s\n--- want ---\n%s", name, path, got, want)
	}
}

// TestGolden renders every scenario as text (UTF-8 and ASCII) and JSON.
func TestGolden(t *testing.T) {
	for name, mk := range scenarios() {
		t.Run(name, func(t *testing.T) {
			r := Diagnose(context.Background(), mk())
			var buf bytes.Buffer
			if err := WriteText(&buf, r, TextOptions{UTF8: true}); err != nil {
				t.Fatal(err)
			}
			buf.WriteString("\n--- ASCII ---\n")
			if err := WriteText(&buf, r, TextOptions{}); err != nil {
				t.Fatal(err)
			}
			buf.WriteString("\n--- JSON ---\n")
			b, _ := json.MarshalIndent(r, "", "  ")
			buf.Write(b)
			buf.WriteString("\n")
			golden(t, name, buf.Bytes())
		})
	}
}

// TestCauses pins the cause, exit status and verdict words of each scenario.
func TestCauses(t *testing.T) {
	cases := []struct {
		name     string
		cause    cause.Code
		callable bool
		verdict  []string
	}{
		{"wrong_password", cause.WrongPassword, false, []string{"2002 cannot be called: not registered — the phone at 192.168.1.50 (Grandstream GXP1625) has sent a wrong password 37 times since 14:02"}},
		{"registered", cause.Registered, true, []string{"2002 can be called", "192.168.1.50 (Grandstream GXP1625)"}},
		{"unreachable", cause.Unreachable, false, []string{"does not answer OPTIONS since 14:12", "203.0.113.7"}},
		{"tls_certificate", cause.Registered, true, []string{"2002 can be called"}},
		{"never_seen_tls", cause.NeverSeen, false, []string{"no REGISTER for 2002 has ever reached switchboard",
			"a TLS handshake failed from 203.0.113.7 at 14:25 (tls_handshake_failed)"}},
		{"connection_closed", cause.ConnectionClosed, false, []string{"registered over WSS from 203.0.113.7; the WebSocket closed at 14:12:11",
			"calls get 480 until it registers again"}},
		{"never_seen", cause.NeverSeen, false, []string{"no REGISTER for 2002 has ever reached"}},
		{"extension_missing", cause.ExtensionMissing, false, []string{"no extension 2020", "did you mean 2002 or 2021?"}},
		{"other_domain", cause.ExtensionMissing, false, []string{"it exists in pbx.example.com"}},
		{"disabled", cause.ExtensionDisabled, false, []string{"disabled"}},
		{"listener_down", cause.ListenerDown, false, []string{"serve is not running"}},
		{"wrong_domain", cause.WrongDomain, false, []string{`registers to domain "pbx.example.com" instead of "127.0.0.1"`, "192.168.1.51"}},
		{"banned", cause.IPBanned, false, []string{"192.168.1.50 is banned until 15:01 after 5 failed attempts"}},
		{"digest_no_qop", cause.DigestNoQOP, false, []string{"192.168.1.50 (OldPhone 1.0) answers the digest challenge without qop"}},
		{"banned_registered", cause.IPBanned, true, []string{"192.168.1.50 is banned"}},
		{"acl_denied", cause.ACLDenied, false, []string{"rejected by ACL office", "10.9.8.7 (Cisco SPA504G)"}},
		{"max_registrations", cause.MaxRegistrations, true, []string{"can be called", "192.168.1.60 (Linphone 5.1) is refused: 1 of 1"}},
		{"interval_too_brief", cause.IntervalTooBrief, false, []string{"asks for a 30 s registration, the minimum is 60 s"}},
		{"auth_user_mismatch", cause.AuthUserMismatch, false, []string{`authenticates as "admin" instead of "2002"`}},
		{"expired", cause.Expired, false, []string{"last registered at 09:10 and stopped refreshing"}},
		{"firewall_blocks", cause.Registered, true, []string{"can be called"}},
		{"store_unavailable", cause.StoreUnavailable, false, []string{"cannot save registrations: writing to /var/lib/switchboard fails (no space left on device)"}},
		{"ban_then_unban", cause.WrongPassword, false, []string{"has sent a wrong password 2 times since 13:00",
			"192.168.1.50 was banned until 15:01; lifted by alice at 14:03"}},
		{"ban_lifted", cause.BanLifted, false, []string{"was dropped while its address was banned", "lifted by alice at 14:03",
			"has not retried since 13:05"}},
		{"acl_removed", cause.ACLChanged, false, []string{"10.9.8.7 (Cisco SPA504G) was rejected by an ACL, which no longer holds",
			"the profile applies no register acl now", "changed by alice at 14:20"}},
		{"old_warning", cause.Registered, true, []string{"2002 can be called: registered from 192.168.1.50 (Grandstream GXP1625)"}},
	}
	sc := scenarios()
	for _, c := range cases {
		r := Diagnose(context.Background(), sc[c.name]())
		if r.Cause != c.cause || r.Callable != c.callable {
			t.Errorf("%s: cause %s callable %v, want %s %v (%s)", c.name, r.Cause, r.Callable, c.cause, c.callable, r.Verdict)
		}
		for _, v := range c.verdict {
			if !strings.Contains(r.Verdict, v) {
				t.Errorf("%s: verdict %q lacks %q", c.name, r.Verdict, v)
			}
		}
		for _, f := range r.Findings {
			if f.Status != OK && f.Status != Warn && f.Status != Fail && f.Status != Skip {
				t.Errorf("%s: bad status %+v", c.name, f)
			}
			if f.Status == Fail && f.Fix == "" && f.Check != CheckRegistration {
				t.Errorf("%s: failed finding without fix %+v", c.name, f)
			}
		}
	}
	if len(cases) != len(sc) {
		t.Errorf("%d scenarios but %d cases", len(sc), len(cases))
	}
}

// TestFullWindow: when the recent window is full of wrong passwords, the
// count comes from the journal's per-cause stats, marked "at least" when
// capped.
func TestFullWindow(t *testing.T) {
	in := base()
	var evs []journal.Event
	for i := 0; i < 100; i++ {
		evs = append(evs, ev(at("14:00:00").Add(time.Duration(i)*time.Second), cause.WrongPassword, "192.168.1.50:5060", gs))
	}
	in.History.Recent, in.History.Limit = newestFirst(evs...), 100
	in.History.Stats = map[cause.Code]journal.Stats{cause.WrongPassword: {Count: 10000, Capped: true, First: at("08:00:00"), Last: at("14:01:39")}}
	r := Diagnose(context.Background(), in)
	if !strings.Contains(r.Verdict, "at least 10000 times since 08:00") {
		t.Fatalf("verdict %q", r.Verdict)
	}
	in.History.Limit = 2000 // not full: the window's own count
	r = Diagnose(context.Background(), in)
	if !strings.Contains(r.Verdict, "100 times since 14:00") {
		t.Fatalf("verdict %q", r.Verdict)
	}
}

// TestFixedPhone: failures older than the phone's last success are history,
// not a problem.
func TestFixedPhone(t *testing.T) {
	in := base()
	in.History.Recent = newestFirst(
		ev(at("14:00:00"), cause.WrongPassword, "192.168.1.50:5060", gs),
		ev(at("14:05:00"), cause.Registered, "192.168.1.50:5060", gs))
	in.Bindings = []store.Binding{binding("192.168.1.50:5060", gs)}
	r := Diagnose(context.Background(), in)
	if r.Cause != cause.Registered || !r.Callable {
		t.Fatalf("%+v", r)
	}
}

// TestOtherDomainEvents: events of the same number in another domain where
// it exists belong to that extension and are ignored.
func TestOtherDomainEvents(t *testing.T) {
	in := base()
	in.OtherDomains = []string{"pbx.example.com"}
	in.History.Recent = newestFirst(ev(at("14:00:00"), cause.WrongPassword, "192.168.1.50:5060", gs,
		func(e *journal.Event) { e.Domain = "pbx.example.com" }))
	r := Diagnose(context.Background(), in)
	if r.Cause != cause.NeverSeen {
		t.Fatalf("%+v", r)
	}
	// Where it does not exist, the phone simply uses the wrong domain.
	in.OtherDomains = nil
	in.History.Recent = newestFirst(ev(at("14:00:00"), cause.ExtensionMissing, "192.168.1.50:5060", gs,
		func(e *journal.Event) { e.Domain = "pbx.example.com" }))
	r = Diagnose(context.Background(), in)
	if r.Cause != cause.WrongDomain {
		t.Fatalf("%+v", r)
	}
}

var ansiRE = regexp.MustCompile("\x1b\\[[0-9;]*m")

// TestColorAlignment: with colors, stripping the escapes gives exactly the
// plain layout (the columns still line up).
func TestColorAlignment(t *testing.T) {
	r := Diagnose(context.Background(), scenarios()["wrong_password"]())
	var plain, color bytes.Buffer
	if err := WriteText(&plain, r, TextOptions{UTF8: true}); err != nil {
		t.Fatal(err)
	}
	if err := WriteText(&color, r, TextOptions{UTF8: true, Color: true}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(color.Bytes(), []byte("\x1b[")) {
		t.Fatal("no colors")
	}
	stripped := ansiRE.ReplaceAllString(color.String(), "")
	if stripped != plain.String() {
		t.Fatalf("colored layout differs:\n%s\n---\n%s", stripped, plain.String())
	}
}

func TestLocaleUTF8(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"LANG": "C.UTF-8"}, true},
		{map[string]string{"LANG": "en_US.utf8"}, true},
		{map[string]string{"LANG": "en_US.UTF-8", "LC_ALL": "C"}, false},
		{map[string]string{"LANG": "C", "LC_CTYPE": "de_DE.UTF-8"}, true},
		{map[string]string{"LANG": "POSIX"}, false},
	}
	for _, c := range cases {
		if got := LocaleUTF8(func(k string) string { return c.env[k] }); got != c.want {
			t.Errorf("%v: got %v", c.env, got)
		}
	}
}

func TestSimilar(t *testing.T) {
	all := []string{"2002", "2020", "2012", "2003", "20002", "202", "3002", "2200", "1234", "2002x"}
	got := Similar("2002", all, 10)
	want := []string{"202", "2003", "2012", "2020", "3002", "20002", "2002x"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got := Similar("2020", []string{"2002", "2200"}, 3); strings.Join(got, ",") != "2002,2200" {
		t.Fatalf("transpositions: %v", got)
	}
	if got := Similar("2002", all, 2); len(got) != 2 {
		t.Fatalf("max: %v", got)
	}
}

func TestDiagnoseCall(t *testing.T) {
	sc := scenarios()
	caller := sc["registered"]()
	caller.Number, caller.Ext.Number = "2001", "2001"
	for i := range caller.Bindings {
		caller.Bindings[i].Extension, caller.Bindings[i].Contact = "2001", "sip:2001@192.168.1.50:5060"
	}
	for i := range caller.History.Recent {
		caller.History.Recent[i].Extension = "2001"
	}
	in := CallInputs{Caller: caller, Callee: sc["never_seen"](), CallsAvailable: true,
		Last: &Call{Time: at("14:20:00"), From: "2001", To: "2002", Status: 480, Cause: cause.UserNotRegistered}}
	r := DiagnoseCall(context.Background(), in)
	if r.WouldWork || r.Cause != cause.NeverSeen || !strings.Contains(r.Verdict, "fails with 480 USER_NOT_REGISTERED: 2002 is not registered") {
		t.Fatalf("%+v", r)
	}
	if r.LastCall == nil || r.LastCall.Status != 480 || r.Findings[0].Status != Warn {
		t.Fatalf("last call %+v %+v", r.LastCall, r.Findings)
	}
	var buf bytes.Buffer
	if err := WriteCallText(&buf, r, TextOptions{UTF8: true}); err != nil {
		t.Fatal(err)
	}
	golden(t, "call_not_registered", buf.Bytes())

	// A caller whose phone sends a wrong password cannot authenticate.
	bad := sc["wrong_password"]()
	bad.Number = "2001"
	for i := range bad.History.Recent {
		bad.History.Recent[i].Extension, bad.History.Recent[i].AuthUser = "2001", "2001"
	}
	bad.Bindings = nil
	in = CallInputs{Caller: bad, Callee: sc["registered"](), CallsAvailable: true}
	r = DiagnoseCall(context.Background(), in)
	if r.WouldWork || r.Cause != cause.WrongPassword || !strings.Contains(r.Verdict, "the caller cannot authenticate") {
		t.Fatalf("%+v", r)
	}

	// The caller's INVITE was refused by the inbound ACL after the last call.
	callee := sc["registered"]()
	callee.History.Recent = append([]journal.Event{{ID: 99, Time: at("14:25:00"), Kind: journal.KindInvite, Cause: cause.ACLDenied,
		Extension: "2002", Source: "192.168.1.50:5060", Transport: "UDP", UserAgent: gs, Status: 403,
		Detail: "source 192.168.1.50 rejected by inbound acl office"}}, callee.History.Recent...)
	in = CallInputs{Caller: caller, Callee: callee, CallsAvailable: true,
		Last: &Call{Time: at("14:20:00"), From: "2001", To: "2002", Status: 200, Cause: cause.NormalClearing, Answered: true}}
	r = DiagnoseCall(context.Background(), in)
	if r.WouldWork || r.Cause != cause.ACLDenied || !strings.Contains(r.Verdict, "may not place calls") {
		t.Fatalf("%+v", r)
	}
	last := r.Caller.Findings[len(r.Caller.Findings)-1]
	if last.Cause != cause.ACLDenied || !strings.Contains(last.Fix, "switchboard acl allow office 192.168.1.50/32") {
		t.Fatalf("%+v", last)
	}

	// Both fine: the call would work.
	in = CallInputs{Caller: caller, Callee: sc["registered"]()}
	r = DiagnoseCall(context.Background(), in)
	if !r.WouldWork || !strings.Contains(r.Verdict, "should work") || r.Findings[0].Status != Skip {
		t.Fatalf("%+v", r)
	}
}

// TestCausesDocumented: every stable cause has a row in the README's
// "Doctor causes" table, and every scenario's cause is a stable one.
func TestCausesDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i := strings.Index(readme, "## Doctor causes")
	if i < 0 {
		t.Fatal(`README.md has no "## Doctor causes" section`)
	}
	section := readme[i:]
	if j := strings.Index(section[3:], "\n## "); j >= 0 {
		section = section[:j+3]
	}
	stable := map[cause.Code]bool{}
	for _, c := range Causes() {
		stable[c] = true
		if !strings.Contains(section, "| `"+string(c)+"` |") {
			t.Errorf("cause %s has no row in the README's Doctor causes table", c)
		}
	}
	for name, mk := range scenarios() {
		r := Diagnose(context.Background(), mk())
		if !stable[r.Cause] {
			t.Errorf("%s: cause %s is not a stable doctor cause", name, r.Cause)
		}
		for _, f := range r.Findings {
			if f.Cause != "" && !stable[f.Cause] && f.Check != CheckCalls {
				t.Errorf("%s: finding cause %s is not a stable doctor cause: %+v", name, f.Cause, f)
			}
		}
	}
}

// TestRightNow: a refusal that no longer holds is history, never the
// verdict or a fix: after the ban is lifted nothing says banned or
// suggests `ban rm`; after the ACL is no longer applied nothing suggests
// `acl allow`; a week-old one-off failure leaves a working extension with
// no warning at all.
func TestRightNow(t *testing.T) {
	sc := scenarios()
	for _, name := range []string{"ban_then_unban", "ban_lifted"} {
		r := Diagnose(context.Background(), sc[name]())
		for _, f := range r.Findings {
			if f.Cause == cause.IPBanned || strings.Contains(f.Fix, "ban rm") {
				t.Errorf("%s: finding still says banned: %+v", name, f)
			}
		}
		if strings.Contains(r.Verdict, "is banned") {
			t.Errorf("%s: verdict %q", name, r.Verdict)
		}
	}
	r := Diagnose(context.Background(), sc["acl_removed"]())
	for _, f := range r.Findings {
		if f.Cause == cause.ACLDenied || strings.Contains(f.Fix, "acl allow") {
			t.Errorf("acl_removed: finding still blames the ACL: %+v", f)
		}
	}
	// The same refusal while the profile still applies the list that
	// denies the address is the answer.
	in := sc["acl_removed"]()
	in.Access.RegisterACL = "office"
	if r := Diagnose(context.Background(), in); r.Cause != cause.ACLDenied {
		t.Errorf("acl still applied: %s %q", r.Cause, r.Verdict)
	}
	// ... and once the list allows the address, it no longer is.
	in.Access.Lists["office"] = acl.List{Name: "office", Nodes: []acl.Node{mustNode(t, true, "10.9.8.0/24")}}
	bob := adminEv(at("14:21:00"), cause.ACLChanged, "", "acl office: allow 10.9.8.0/24 by bob")
	bob.AuthUser = "bob"
	in.History.Admin = []journal.Event{bob}
	if r := Diagnose(context.Background(), in); r.Cause != cause.ACLChanged ||
		!strings.Contains(r.Verdict, "acl office allows 10.9.8.7 now (changed by bob at 14:21") {
		t.Errorf("acl allows now: %s %q", r.Cause, r.Verdict)
	}

	r = Diagnose(context.Background(), sc["old_warning"]())
	for _, f := range r.Findings {
		if f.Status == Warn || f.Status == Fail || f.Fix != "" {
			t.Errorf("old_warning: %+v", f)
		}
	}
	// A phone refused while 2002 was disabled, which is enabled now, is
	// history for the working extension.
	in = sc["old_warning"]()
	in.History.Recent[1].Time, in.History.Recent[1].Cause = now.Add(-time.Hour), cause.ExtensionDisabled
	if r := Diagnose(context.Background(), in); r.Cause != cause.Registered || !r.Callable {
		t.Errorf("refused while disabled, enabled now: %s %v %q", r.Cause, r.Callable, r.Verdict)
	}
	// The same failure an hour ago is still a warning.
	in = sc["old_warning"]()
	in.History.Recent[1].Time = now.Add(-time.Hour)
	if r := Diagnose(context.Background(), in); r.Cause != cause.WrongPassword || !r.Callable {
		t.Errorf("recent one-off: %s %v %q", r.Cause, r.Callable, r.Verdict)
	}
}

func mustNode(t *testing.T, allow bool, cidr string) acl.Node {
	t.Helper()
	n, err := acl.ParseNode(allow, cidr)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCallWording: a call still up is "in progress", not "ended with 200";
// the caller's own CANCEL is not a failure; the JSON has callable as a
// boolean; an inbound ACL refusal that no longer holds is history.
func TestCallWording(t *testing.T) {
	sc := scenarios()
	caller := sc["registered"]()
	caller.Number, caller.Ext.Number = "2001", "2001"
	for i := range caller.Bindings {
		caller.Bindings[i].Extension = "2001"
	}
	in := CallInputs{Caller: caller, Callee: sc["registered"](), CallsAvailable: true,
		Last: &Call{Time: at("14:25:00"), Active: true, Answered: true, From: "2001", To: "2002", Status: 200}}
	r := DiagnoseCall(context.Background(), in)
	if !r.WouldWork || !r.Callable || !strings.Contains(r.Verdict, "the last call is in progress since 14:25") ||
		strings.Contains(r.Verdict, "ended with") || !r.LastCall.InProgress {
		t.Fatalf("in progress: %+v", r)
	}
	if ev := strings.Join(r.Findings[0].Evidence, "\n"); !strings.Contains(ev, "in progress since 14:25:00 (answered)") {
		t.Fatalf("last call finding: %s", ev)
	}
	b, _ := json.Marshal(r)
	if !strings.Contains(string(b), `"callable":true`) {
		t.Fatalf("JSON lacks callable: %s", b)
	}
	r.Callable = false
	if b, _ := json.Marshal(r); !strings.Contains(string(b), `"callable":false`) {
		t.Fatalf("JSON lacks callable false: %s", b)
	}

	// The caller cancelled: not a warning, here or in the callee's calls.
	cancelled := Call{Time: at("14:26:00"), From: "2001", To: "2002", Status: 487, Cause: cause.OriginatorCancel}
	in.Last = &cancelled
	in.Callee.Calls.Failed = []Call{cancelled}
	r = DiagnoseCall(context.Background(), in)
	if r.Findings[0].Status != OK || !strings.Contains(strings.Join(r.Findings[0].Evidence, "\n"), "not a fault") {
		t.Fatalf("cancelled last call: %+v", r.Findings[0])
	}
	for _, f := range r.Callee.Findings {
		if f.Check == CheckCalls && (f.Status != OK || f.Cause != "") {
			t.Fatalf("cancelled call flagged: %+v", f)
		}
	}
	if r.Callee.Cause != cause.Registered {
		t.Fatalf("callee cause %s", r.Callee.Cause)
	}

	// An inbound ACL refusal, then the profile stops applying the list.
	callee := sc["registered"]()
	callee.History.Recent = append([]journal.Event{{ID: 99, Time: at("14:25:00"), Kind: journal.KindInvite, Cause: cause.ACLDenied,
		Extension: "2002", Source: "192.168.1.50:5060", Transport: "UDP", UserAgent: gs, Status: 403,
		Detail: "source 192.168.1.50 rejected by inbound acl office"}}, callee.History.Recent...)
	caller.Access = Access{Available: true, InboundACL: "office", Lists: map[string]acl.List{"office": {Name: "office"}}}
	in = CallInputs{Caller: caller, Callee: callee, CallsAvailable: true}
	if r := DiagnoseCall(context.Background(), in); r.Cause != cause.ACLDenied || r.WouldWork {
		t.Fatalf("inbound acl in force: %+v", r)
	}
	caller.Access.InboundACL = ""
	caller.History.Admin = []journal.Event{adminEv(at("14:27:00"), cause.ProfileChanged, "", "profile internal: inbound acl office -> none by alice")}
	in.Caller = caller
	r = DiagnoseCall(context.Background(), in)
	if r.Cause != cause.Registered || !r.WouldWork || strings.Contains(r.Verdict, "may not place calls") {
		t.Fatalf("inbound acl removed: %+v", r)
	}
	last := r.Caller.Findings[len(r.Caller.Findings)-1]
	if last.Status != OK || last.Cause != "" || last.Fix != "" ||
		!strings.Contains(strings.Join(last.Evidence, "\n"), "the profile applies no inbound acl now (changed by alice at 14:27") {
		t.Fatalf("history finding %+v", last)
	}
}
