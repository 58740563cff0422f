package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

// regCall is one row of the reg-*.xml injection files.
type regCall struct {
	User          string // To/From user (the address of record)
	AuthUser      string // digest username; "" = User
	Password      string
	Domain        string // To/From host; "" = 127.0.0.1
	Expires       int    // Expires header; 0 unregisters (use -1 for the default 3600)
	Contact       string // user part of the Contact URI; "" = User
	ContactParams string // after the Contact URI, e.g. ";expires=120"
	// Port is SIPp's local port (0: a free one). The Contact URI carries it,
	// so a phone that sends again from the same port keeps its contact.
	Port int
}

func (c regCall) row() []string {
	auth := c.AuthUser
	if auth == "" {
		auth = c.User
	}
	dom := c.Domain
	if dom == "" {
		dom = "127.0.0.1"
	}
	contact := c.Contact
	if contact == "" {
		contact = c.User
	}
	exp := c.Expires
	if exp < 0 {
		exp = 3600
	}
	return []string{c.User, c.Password, fmt.Sprintf("[authentication username=%s password=%s]", auth, c.Password),
		dom, strconv.Itoa(exp), contact}
}

// reg runs a reg-*.xml scenario for one call and fails the test unless SIPp
// got the answers the scenario expects. It returns the responses SIPp
// received, in order.
func reg(t *testing.T, s *Server, scenario string, c regCall, extra ...string) []SIPMessage {
	t.Helper()
	args := []string{"-inf", CSV(t, "SEQUENTIAL", c.row()), "-key", "contact_params", c.ContactParams}
	if c.Port != 0 {
		args = append(args, "-p", strconv.Itoa(c.Port))
	}
	args = append(args, extra...)
	r := SIPp(t, s.Addr, scenario, 1, args...)
	if r.Code != 0 {
		t.Fatalf("sipp %s for %s@%s failed (exit %d):\n%s\nserver log:\n%s", scenario, c.User, c.Domain, r.Code, r.Output, s.Log())
	}
	return Responses(ParseSIPpMessages(r.Messages))
}

var nonceRE = regexp.MustCompile(`nonce="[^"]*"`)

// challengeShape is a WWW-Authenticate value with the nonce masked.
func challengeShape(v string) string { return nonceRE.ReplaceAllString(v, `nonce="N"`) }

// serverDB opens the server's database directly (the tests read rows the CLI
// does not show, e.g. expired bindings and journal events).
func serverDB(t *testing.T, s *Server) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), s.Data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func storedBindings(t *testing.T, s *Server, ext string) int {
	t.Helper()
	db := serverDB(t, s)
	bs, err := db.BindingsOf(context.Background(), "", ext)
	if err != nil {
		t.Fatal(err)
	}
	return len(bs)
}

func journalCount(t *testing.T, s *Server, cause, ext string) int {
	t.Helper()
	db := serverDB(t, s)
	var n int
	err := db.SQL().QueryRowContext(context.Background(),
		"SELECT count(*) FROM journal WHERE cause = ? AND extension = ?", cause, ext).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRegisterRefusals: a wrong password, an unknown user, a domain we do not
// serve and an auth user registering someone else's address all get a
// challenge and then 403; the wrong password and the unknown user cannot be
// told apart on the wire.
func TestRegisterRefusals(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "secret-2001")
	s.AddExt("2002", "secret-2002")

	wrong := reg(t, s, "reg-fail.xml", regCall{User: "2001", Password: "not-the-password"})
	unknown := reg(t, s, "reg-fail.xml", regCall{User: "2999", Password: "not-the-password"})
	for name, rs := range map[string][]SIPMessage{"wrong password": wrong, "unknown user": unknown} {
		if len(rs) != 2 || rs[0].Status() != "401 Unauthorized" || rs[1].Status() != "403 Forbidden" {
			t.Fatalf("%s: want 401 then 403 Forbidden, got %v", name, statuses(rs))
		}
		ch := rs[0].Get("WWW-Authenticate")
		if len(ch) != 1 || !regexp.MustCompile(`^Digest realm="127\.0\.0\.1", nonce="[A-Za-z0-9_-]{48}", algorithm=MD5, qop="auth"$`).MatchString(ch[0]) {
			t.Fatalf("%s: want one MD5 challenge with qop=auth for realm 127.0.0.1, got %q", name, ch)
		}
	}
	// Same challenge shape (headers, their order, realm, algorithm, qop) and
	// the same final answer, headers included.
	if a, b := wrong[0].HeaderNames(), unknown[0].HeaderNames(); !slices.Equal(a, b) {
		t.Errorf("401 headers differ: wrong password %v, unknown user %v", a, b)
	}
	if a, b := challengeShape(wrong[0].Get("WWW-Authenticate")[0]), challengeShape(unknown[0].Get("WWW-Authenticate")[0]); a != b {
		t.Errorf("challenges differ: wrong password %q, unknown user %q", a, b)
	}
	if a, b := wrong[1].HeaderNames(), unknown[1].HeaderNames(); !slices.Equal(a, b) || wrong[1].First != unknown[1].First {
		t.Errorf("final answers differ: wrong password %q %v, unknown user %q %v", wrong[1].First, a, unknown[1].First, b)
	}

	// A domain we do not serve is challenged in its own realm, then refused.
	other := reg(t, s, "reg-fail.xml", regCall{User: "2001", Password: "secret-2001", Domain: "other.example"})
	if len(other) != 2 || other[1].Status() != "403 Forbidden" {
		t.Fatalf("domain not served: want 401 then 403 Forbidden, got %v", statuses(other))
	}
	if ch := other[0].Get("WWW-Authenticate"); len(ch) != 1 || !strings.HasPrefix(ch[0], `Digest realm="other.example", `) {
		t.Fatalf("domain not served: want the challenge in realm other.example, got %q", ch)
	}

	// 2001 with its own correct password may not register 2002's address.
	mismatch := reg(t, s, "reg-fail.xml", regCall{User: "2002", AuthUser: "2001", Password: "secret-2001"})
	if mismatch[len(mismatch)-1].Status() != "403 Forbidden" {
		t.Fatalf("auth user != To user: want 403 Forbidden, got %v", statuses(mismatch))
	}
	if regs := s.Regs(); len(regs) != 0 {
		t.Fatalf("refused REGISTERs left registrations: %+v", regs)
	}
	// The journal tells the operator which refusal it was.
	for cause, ext := range map[string]string{"wrong_password": "2001", "extension_missing": "2999",
		"wrong_domain": "2001", "auth_user_mismatch": "2002"} {
		WaitFor(t, 5*time.Second, "journal event "+cause, func() bool { return journalCount(t, s, cause, ext) > 0 })
	}
}

func statuses(rs []SIPMessage) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Status()
	}
	return out
}

// TestRegisterUnregister: Expires: 0 removes one contact, Contact: * removes
// them all; each 200 lists what remains.
func TestRegisterUnregister(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "secret-2001")
	c := regCall{User: "2001", Password: "secret-2001", Expires: 3600, Port: FreeUDPPort(t)}

	reg(t, s, "reg-ok.xml", c)
	if n := len(s.Regs("2001")); n != 1 {
		t.Fatalf("want 1 registration, got %d", n)
	}
	c.Expires = 0
	rs := reg(t, s, "reg-ok.xml", c)
	if ok := rs[len(rs)-1]; ok.Status() != "200 OK" || len(ok.Get("Contact")) != 0 {
		t.Fatalf("Expires: 0: want 200 without contacts, got %s %q", ok.Status(), ok.Get("Contact"))
	}
	if regs := s.Regs("2001"); len(regs) != 0 {
		t.Fatalf("Expires: 0 left registrations: %+v", regs)
	}

	c.Expires = 3600
	reg(t, s, "reg-ok.xml", c)
	// A second phone: another socket (one socket is one phone: a new
	// Call-ID from the same address and port is that phone restarted).
	c.Contact, c.Port = "2001-desk", FreeUDPPort(t)
	reg(t, s, "reg-ok.xml", c)
	if n := len(s.Regs("2001")); n != 2 {
		t.Fatalf("want 2 registrations, got %d", n)
	}
	rs = reg(t, s, "reg-star.xml", c)
	if ok := rs[len(rs)-1]; ok.Status() != "200 OK" || len(ok.Get("Contact")) != 0 {
		t.Fatalf("Contact: *: want 200 without contacts, got %s %q", ok.Status(), ok.Get("Contact"))
	}
	if regs := s.Regs("2001"); len(regs) != 0 {
		t.Fatalf("Contact: * left registrations: %+v", regs)
	}
	WaitFor(t, 5*time.Second, "unregistered in the journal", func() bool { return journalCount(t, s, "unregistered", "2001") >= 2 })
	if n := storedBindings(t, s, "2001"); n != 0 {
		t.Fatalf("%d bindings still stored after Contact: *", n)
	}
}

// TestRegisterExpiresBounds: too short gets 423 with Min-Expires, too long is
// cut to the maximum, a Contact expires parameter beats the Expires header.
func TestRegisterExpiresBounds(t *testing.T) {
	t.Parallel()
	s := Start(t, "", "--min-expires", "60", "--max-expires", "600", "--default-expires", "300")
	s.AddExt("2001", "secret-2001")

	rs := reg(t, s, "reg-brief.xml", regCall{User: "2001", Password: "secret-2001", Expires: 30})
	brief := rs[len(rs)-1]
	if brief.Status() != "423 Interval Too Brief" || !slices.Equal(brief.Get("Min-Expires"), []string{"60"}) {
		t.Fatalf("want 423 Interval Too Brief with Min-Expires: 60, got %s %q", brief.Status(), brief.Get("Min-Expires"))
	}
	if regs := s.Regs("2001"); len(regs) != 0 {
		t.Fatalf("423 left a registration: %+v", regs)
	}

	port := FreeUDPPort(t)
	rs = reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "secret-2001", Expires: 99999, Port: port})
	if c := rs[len(rs)-1].Get("Contact"); len(c) != 1 || !strings.HasSuffix(c[0], ";expires=600") {
		t.Fatalf("want the 200 to grant the maximum 600 s, got %q", c)
	}
	rs = reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "secret-2001", Expires: 3600, Contact: "2001-b",
		ContactParams: ";expires=120", Port: FreeUDPPort(t)})
	contacts := rs[len(rs)-1].Get("Contact")
	if len(contacts) != 2 {
		t.Fatalf("want both contacts in the 200, got %q", contacts)
	}
	for _, c := range contacts {
		want := ";expires=600"
		if strings.Contains(c, "2001-b@") {
			want = ";expires=120"
		}
		if !strings.HasSuffix(c, want) {
			t.Errorf("contact %q: want %s", c, want)
		}
	}
	for _, r := range s.Regs("2001") {
		if r.ExpiresIn > 600 || r.ExpiresIn < 100 {
			t.Errorf("registration %s expires in %d s, want 100..600", r.Contact, r.ExpiresIn)
		}
	}
}

// TestRegisterExpiry: a binding disappears once its time is up: from `reg`,
// from the database, with a registration_expired journal event.
//
// Serial: the binding lives 2 s, and `reg` must see it before that from
// outside.
func TestRegisterExpiry(t *testing.T) {
	s := Start(t, "", "--min-expires", "1")
	s.AddExt("2001", "secret-2001")
	start := time.Now()
	reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "secret-2001", Expires: 2})
	regs := s.Regs("2001")
	if len(regs) != 1 || regs[0].ExpiresIn > 2 {
		t.Fatalf("want one registration expiring within 2 s, got %+v", regs)
	}
	WaitFor(t, 8*time.Second, "the registration to expire", func() bool { return len(s.Regs("2001")) == 0 })
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Fatalf("registration gone after %s, before its 2 s were up", d)
	}
	WaitFor(t, 5*time.Second, "registration_expired in the journal", func() bool {
		return journalCount(t, s, "registration_expired", "2001") == 1
	})
	if n := storedBindings(t, s, "2001"); n != 0 {
		t.Fatalf("expired binding still stored (%d rows)", n)
	}
}

// TestRegisterSeveralContacts: two phones on one extension are both listed in
// the 200 and in `reg`; a third beyond --max-registrations is refused, while
// refreshing a known one still works.
func TestRegisterSeveralContacts(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2003", "secret-2003", "--max-registrations", "2")
	desk := FreeUDPPort(t)
	c := regCall{User: "2003", Password: "secret-2003", Expires: 3600, Contact: "desk", Port: desk}
	reg(t, s, "reg-ok.xml", c)
	c.Contact, c.Port = "mobile", FreeUDPPort(t)
	rs := reg(t, s, "reg-ok.xml", c)
	contacts := strings.Join(rs[len(rs)-1].Get("Contact"), "\n")
	for _, want := range []string{"<sip:desk@127.0.0.1:", "<sip:mobile@127.0.0.1:"} {
		if !strings.Contains(contacts, want) {
			t.Fatalf("200 should list %s..., got:\n%s", want, contacts)
		}
	}
	if n := strings.Count(contacts, ";expires="); n != 2 {
		t.Fatalf("want 2 contacts with expires in the 200, got:\n%s", contacts)
	}
	regs := s.Regs("2003")
	if len(regs) != 2 {
		t.Fatalf("want 2 registrations, got %+v", regs)
	}
	for _, r := range regs {
		if r.Transport != "UDP" || !strings.HasPrefix(r.Source, "127.0.0.1:") || r.UserAgent != "SIPp reg-ok" {
			t.Errorf("unexpected registration %+v", r)
		}
	}

	c.Contact, c.Port = "third", FreeUDPPort(t)
	rs = reg(t, s, "reg-fail.xml", c)
	if got := rs[len(rs)-1].Status(); got != "403 Forbidden" {
		t.Fatalf("third contact: want 403 Forbidden, got %s", got)
	}
	if n := len(s.Regs("2003")); n != 2 {
		t.Fatalf("want still 2 registrations, got %d", n)
	}
	c.Contact, c.Port = "desk", desk
	reg(t, s, "reg-ok.xml", c)
	WaitFor(t, 5*time.Second, "max_registrations in the journal", func() bool {
		return journalCount(t, s, "max_registrations", "2003") == 1
	})
}

// TestRegisterStaleNonce: a correct answer to an expired nonce is challenged
// again with stale=TRUE, and the retry succeeds.
//
// Serial: the nonce lives 1 s, and the first answer to it must come within
// that.
func TestRegisterStaleNonce(t *testing.T) {
	s := Start(t, "", "--nonce-lifetime", "1s")
	s.AddExt("2001", "secret-2001")
	rs := reg(t, s, "reg-stale.xml", regCall{User: "2001", Password: "secret-2001", Expires: 3600})
	if len(rs) != 3 {
		t.Fatalf("want 401, 401, 200, got %v", statuses(rs))
	}
	first, second := rs[0].Get("WWW-Authenticate"), rs[1].Get("WWW-Authenticate")
	if len(first) != 1 || strings.Contains(first[0], "stale") {
		t.Fatalf("first challenge must not be stale: %q", first)
	}
	if len(second) != 1 || !strings.HasSuffix(second[0], ", stale=TRUE") {
		t.Fatalf("challenge to the expired nonce must say stale=TRUE: %q", second)
	}
	if n := len(s.Regs("2001")); n != 1 {
		t.Fatalf("want 1 registration after the retry, got %d", n)
	}
}

// TestRegisterTCP: a phone registering over TCP is bound with transport TCP
// and the address it connected from.
func TestRegisterTCP(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "secret-2001")
	reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "secret-2001", Expires: 3600}, "-t", "t1")
	regs := s.Regs("2001")
	if len(regs) != 1 || regs[0].Transport != "TCP" || !strings.HasPrefix(regs[0].Source, "127.0.0.1:") ||
		!strings.Contains(regs[0].Contact, "transport=TCP") {
		t.Fatalf("want one TCP registration from 127.0.0.1, got %+v", regs)
	}
}

// TestOptions: OPTIONS to the server gets 200 with Allow.
func TestOptions(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	for _, tr := range []string{"u1", "t1"} {
		r := SIPp(t, s.Addr, "reg-options.xml", 1, "-t", tr)
		if r.Code != 0 {
			t.Fatalf("sipp reg-options.xml -t %s failed (%d):\n%s", tr, r.Code, r.Output)
		}
		rs := Responses(ParseSIPpMessages(r.Messages))
		if len(rs) != 1 || rs[0].Status() != "200 OK" {
			t.Fatalf("-t %s: want 200 OK, got %v", tr, statuses(rs))
		}
		allow := strings.Join(rs[0].Get("Allow"), ",")
		for _, m := range []string{"REGISTER", "INVITE", "OPTIONS", "BYE", "CANCEL", "ACK"} {
			if !strings.Contains(allow, m) {
				t.Errorf("-t %s: Allow %q lacks %s", tr, allow, m)
			}
		}
		// A MESSAGE outside a call gets 405: not advertised.
		if strings.Contains(allow, "MESSAGE") {
			t.Errorf("-t %s: Allow %q lists MESSAGE, which is answered 405 outside a call", tr, allow)
		}
	}
}

// TestRegisterDomains: requests addressed to the server's own address belong
// to the default domain (the realm is that domain's name); another domain's
// extensions register in their own realm, with their own passwords.
func TestRegisterDomains(t *testing.T) {
	t.Parallel()
	s := Start(t, "", "--domain", "pbx.test")
	s.AddExt("2001", "secret-pbx-2001") // the default domain: pbx.test
	s.CLI("domain", "add", "acme.test")
	s.CLI("ext", "add", "2001", "--domain", "acme.test", "--password", "secret-acme-2001")

	rs := reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "secret-pbx-2001", Expires: 3600})
	if ch := rs[0].Get("WWW-Authenticate"); len(ch) != 1 || !strings.HasPrefix(ch[0], `Digest realm="pbx.test", `) {
		t.Fatalf("REGISTER to sip:2001@127.0.0.1 should be challenged in the default domain pbx.test: %q", ch)
	}
	reg(t, s, "reg-fail.xml", regCall{User: "2001", Password: "secret-pbx-2001", Domain: "acme.test", Expires: 3600})
	rs = reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "secret-acme-2001", Domain: "acme.test", Expires: 3600})
	if ch := rs[0].Get("WWW-Authenticate"); len(ch) != 1 || !strings.HasPrefix(ch[0], `Digest realm="acme.test", `) {
		t.Fatalf("REGISTER to sip:2001@acme.test should be challenged in realm acme.test: %q", ch)
	}
	regs := s.Regs("2001")
	if len(regs) != 2 {
		t.Fatalf("want 2001 registered in both domains, got %+v", regs)
	}
	var acme []Registration
	s.JSON(&acme, "reg", "--domain", "acme.test")
	if len(acme) != 1 || acme[0].Domain != "acme.test" || acme[0].AuthUser != "2001" {
		t.Fatalf("reg --domain acme.test: got %+v", acme)
	}

	// Removing a domain removes its extensions and their registrations, and
	// the server stops serving it at once.
	var rm map[string]any
	s.JSON(&rm, "domain", "rm", "acme.test", "--yes")
	if rm["domain"] != "acme.test" || rm["removed"] != true || rm["extensions"] != 1.0 {
		t.Fatalf("domain rm --json: %v", rm)
	}
	if regs := s.Regs(); len(regs) != 1 || regs[0].Domain != "pbx.test" {
		t.Fatalf("after domain rm: want only the pbx.test registration, got %+v", regs)
	}
	rs = reg(t, s, "reg-fail.xml", regCall{User: "2001", Password: "secret-acme-2001", Domain: "acme.test", Expires: 3600})
	if ch := rs[0].Get("WWW-Authenticate"); len(ch) != 1 || !strings.HasPrefix(ch[0], `Digest realm="acme.test", `) {
		t.Fatalf("a removed domain is challenged in its own realm, then refused: %q", ch)
	}
}

// TestRegistrationsSurviveKill9: bindings are on disk before the 200 leaves,
// so kill -9 loses none; one whose time ran out while the server was down is
// gone after the restart.
//
// Serial: a binding lives 2 s, and `reg` must see it before that from
// outside.
func TestRegistrationsSurviveKill9(t *testing.T) {
	s := Start(t, "", "--min-expires", "1")
	s.AddExt("2001", "secret-2001")
	s.AddExt("2002", "secret-2002")
	reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "secret-2001", Expires: 3600})
	reg(t, s, "reg-ok.xml", regCall{User: "2002", Password: "secret-2002", Expires: 2})
	before := s.Regs()
	if len(before) != 2 {
		t.Fatalf("want 2 registrations, got %+v", before)
	}
	s.Kill()
	time.Sleep(2500 * time.Millisecond) // 2002's two seconds pass while the server is down
	if n := storedBindings(t, s, "2002"); n != 1 {
		t.Fatalf("2002's binding should still be on disk while the server is down, got %d rows", n)
	}
	s.Restart()

	after := s.Regs()
	if len(after) != 1 || after[0].Extension != "2001" {
		t.Fatalf("after kill -9 and restart: want only 2001, got %+v", after)
	}
	var old Registration
	for _, r := range before {
		if r.Extension == "2001" {
			old = r
		}
	}
	a := after[0]
	if a.Source != old.Source || a.Contact != old.Contact || a.CallID != old.CallID || a.Transport != old.Transport ||
		a.UserAgent != old.UserAgent || a.ExpiresIn < 3500 {
		t.Fatalf("binding changed across kill -9:\nbefore %+v\nafter  %+v", old, a)
	}
	if n := storedBindings(t, s, "2002"); n != 0 {
		t.Fatalf("the binding that expired while the server was down is still stored (%d rows)", n)
	}
	// The restarted server still serves (same port, same nonce key).
	reg(t, s, "reg-ok.xml", regCall{User: "2002", Password: "secret-2002", Expires: 3600})
	if n := len(s.Regs()); n != 2 {
		t.Fatalf("want 2 registrations after re-registering 2002, got %d", n)
	}
}

// TestBaresipRegisters: baresip (a real softphone) registers 2001 over UDP;
// `reg` shows it with baresip's address and user agent, and it is gone after
// baresip unregisters on a graceful stop.
func TestBaresipRegisters(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "secret-2001")
	b := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2001", "secret-2001", s.Addr, "udp")}})
	b.WaitRegistered("2001@127.0.0.1", 15*time.Second)
	regs := s.Regs("2001")
	if len(regs) != 1 {
		t.Fatalf("want 1 registration, got %+v\nbaresip log:\n%s", regs, b.Log())
	}
	r := regs[0]
	if !strings.Contains(r.UserAgent, "baresip") || r.Transport != "UDP" || r.Source != b.SIPAddr || r.AuthUser != "2001" {
		t.Fatalf("unexpected registration %+v (baresip listens on %s)", r, b.SIPAddr)
	}
	b.Stop()
	WaitFor(t, 10*time.Second, "baresip to unregister on stop", func() bool { return len(s.Regs("2001")) == 0 })
}
