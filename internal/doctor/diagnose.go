package doctor

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// recentFailure is how old a failure may be and still be named in the
// verdict of an extension that is otherwise registered.
const recentFailure = 24 * time.Hour

// diag holds one run of Diagnose.
type diag struct {
	in      Inputs
	loc     *time.Location
	live    []store.Binding // unexpired bindings, by expiry
	expired []store.Binding // saved bindings past their expiry
	// orphaned are unexpired bindings of a node whose lease ran out
	// (skipped by lookups: not in live).
	orphaned []store.Binding
	phones   []*phone // every phone seen in the journal, newest activity first
	failing  []*phone // phones whose latest attempt failed, newest first
	banned   []Ban    // active bans of the phones' addresses
	findings []Finding
}

// phone is one device as the journal saw it: a source IP and user agent.
type phone struct {
	ip, ua  string
	latest  journal.Event
	latestC cause.Code // classified cause of latest
	lastOK  time.Time  // last accepted REGISTER
	// failures since the phone's last success, per cause.
	counts  map[cause.Code]int
	first   map[cause.Code]time.Time
	last    map[cause.Code]time.Time
	sample  map[cause.Code]journal.Event // newest event of the cause
	partial map[cause.Code]bool          // the count may be higher (window full or capped)
	// was is the refusal the phone got last when it no longer holds now
	// (a ban lifted or expired, an ACL that allows the address now);
	// wasWhy says what changed. latestC is then what still holds: the
	// failure that got the phone banned, else BanLifted or ACLChanged.
	was    cause.Code
	wasWhy string
}

func newDiag(in Inputs) *diag {
	d := &diag{in: in, loc: in.Loc}
	if d.loc == nil {
		d.loc = time.Local
	}
	if d.in.Now.IsZero() {
		d.in.Now = time.Now()
	}
	for _, b := range in.Bindings {
		if b.ExpiresAt.After(d.in.Now) && d.nodeDown(b.Node) != nil {
			d.orphaned = append(d.orphaned, b)
		} else if b.ExpiresAt.After(d.in.Now) {
			d.live = append(d.live, b)
		} else {
			d.expired = append(d.expired, b)
		}
	}
	sort.SliceStable(d.live, func(i, j int) bool { return d.live[i].ExpiresAt.After(d.live[j].ExpiresAt) })
	sort.SliceStable(d.expired, func(i, j int) bool { return d.expired[i].ExpiresAt.After(d.expired[j].ExpiresAt) })
	d.buildPhones()
	d.findBans()
	return d
}

func (d *diag) run() Report {
	r := Report{Extension: d.in.Number, Domain: d.in.Domain, ServeRunning: d.in.Serve.Running}
	d.checkDirectory()
	d.checkListeners()
	d.checkFirewall()
	d.checkStorage()
	reg := d.checkRegistration()
	d.checkHistory()
	d.checkReachability()
	d.checkCalls()
	v := d.verdict()
	r.Cause, r.Verdict, r.Callable = v.cause, v.text, v.callable
	// An unregistered extension's registration finding carries the reason
	// the history found (directory and listener causes have their own).
	if reg >= 0 && d.findings[reg].Status == Fail && d.findings[reg].Cause == "" &&
		r.Cause != cause.ExtensionDisabled && r.Cause != cause.ListenerDown {
		d.findings[reg].Cause = r.Cause
	}
	r.Findings = d.findings
	return r
}

func (d *diag) add(f Finding) int {
	if f.Evidence == nil {
		f.Evidence = []string{}
	}
	d.findings = append(d.findings, f)
	return len(d.findings) - 1
}

// ---- facts derived from the journal ----

// classify maps a journal event to the doctor cause it stands for when
// looking at Number@Domain; ok is false for events that say nothing about
// this extension's phones (challenges, nonce refreshes, events of the same
// number in another domain where it exists).
func (d *diag) classify(e *journal.Event) (cause.Code, bool) {
	switch e.Kind {
	case journal.KindRegister, journal.KindBinding:
	default:
		// INVITE and qualify events are read by the reachability and calls
		// checks; of the rest only a ban speaks about the phone.
		if e.Cause != cause.IPBanned {
			return "", false
		}
	}
	sameDomain := strings.EqualFold(e.Domain, d.in.Domain)
	if !sameDomain {
		switch e.Cause {
		case cause.WrongDomain:
			return cause.WrongDomain, true
		case cause.ExtensionMissing:
			// The phone asked for Number in a domain where it does not
			// exist: it uses the wrong domain. Where Number does exist, the
			// event is about that other extension.
			if d.existsIn(e.Domain) {
				return "", false
			}
			return cause.WrongDomain, true
		case cause.IPBanned:
			if e.Domain == "" {
				return e.Cause, true
			}
		}
		return "", false
	}
	switch e.Cause {
	case cause.Registered, cause.Unregistered, cause.Expired, cause.WrongDomain, cause.ACLDenied,
		cause.IPBanned, cause.MaxRegistrations, cause.IntervalTooBrief, cause.DigestNoQOP, cause.DigestURIMismatch,
		cause.RemovedByAdmin, cause.StoreUnavailable:
		return e.Cause, true
	case cause.WrongPassword, cause.ExtensionMissing, cause.ExtensionDisabled, cause.AuthUserMismatch:
		if e.AuthUser != "" && e.AuthUser != d.in.Number {
			return cause.AuthUserMismatch, true
		}
		return e.Cause, true
	}
	return "", false
}

func (d *diag) existsIn(domain string) bool {
	for _, o := range d.in.OtherDomains {
		if strings.EqualFold(o, domain) {
			return true
		}
	}
	return false
}

func isFailure(c cause.Code) bool {
	switch c {
	case cause.Registered, cause.Unregistered, cause.Expired, cause.RemovedByAdmin:
		return false
	}
	return true
}

func (d *diag) buildPhones() {
	h := d.in.History
	byKey := map[string]*phone{}
	var windowStart time.Time
	full := h.Limit > 0 && len(h.Recent) >= h.Limit
	if n := len(h.Recent); n > 0 {
		windowStart = h.Recent[n-1].Time
	}
	for i := len(h.Recent) - 1; i >= 0; i-- {
		e := h.Recent[i]
		c, ok := d.classify(&e)
		if !ok {
			continue
		}
		ip := e.SourceIP()
		key := ip + "\x00" + e.UserAgent
		p := byKey[key]
		if p == nil {
			p = &phone{ip: ip, ua: e.UserAgent}
			p.reset()
			byKey[key] = p
			d.phones = append(d.phones, p)
		}
		p.latest, p.latestC = e, c
		if !isFailure(c) {
			if c == cause.Registered {
				p.lastOK = e.Time
			}
			p.reset()
			continue
		}
		p.counts[c]++
		if _, ok := p.first[c]; !ok {
			p.first[c] = e.Time
			if full && !e.Time.After(windowStart) {
				p.partial[c] = true
			}
		}
		p.last[c] = e.Time
		p.sample[c] = e
	}
	sort.SliceStable(d.phones, func(i, j int) bool { return d.phones[i].latest.Time.After(d.phones[j].latest.Time) })
	for _, p := range d.phones {
		if !isFailure(p.latestC) {
			continue
		}
		// When the window was full, the journal's own count since the last
		// success is the better number (for the phone that failed the most).
		for c := range p.partial {
			if st, ok := h.Stats[c]; ok && st.Count > p.counts[c] {
				p.counts[c] = st.Count
				if !st.First.IsZero() && st.First.Before(p.first[c]) {
					p.first[c] = st.First
				}
				p.partial[c] = st.Capped
			}
		}
		d.recheck(p)
		d.failing = append(d.failing, p)
	}
}

func (p *phone) reset() {
	p.counts = map[cause.Code]int{}
	p.first = map[cause.Code]time.Time{}
	p.last = map[cause.Code]time.Time{}
	p.sample = map[cause.Code]journal.Event{}
	p.partial = map[cause.Code]bool{}
}

// recheck weighs the phone's latest refusal against the state in force
// now: a ban that is lifted or has expired, an ACL refusal whose list now
// allows the address or is no longer applied. Such a refusal becomes
// history (p.was, p.wasWhy) and the phone's cause becomes what still
// holds: for a ban, the failure that got the address banned; otherwise
// BanLifted or ACLChanged (nothing stops it now; it has not retried).
func (d *diag) recheck(p *phone) {
	switch p.latestC {
	case cause.IPBanned:
		if !d.in.Bans.Available || d.banActive(p.ip) {
			return
		}
		p.was, p.wasWhy = cause.IPBanned, d.banHistory(p.ip, p.first[cause.IPBanned])
		if r := p.reason(); r != "" {
			p.latestC = r
		} else {
			p.latestC = cause.BanLifted
		}
	case cause.ACLDenied:
		if why, ok := d.aclLifted(p.sample[cause.ACLDenied]); ok {
			p.was, p.wasWhy, p.latestC = cause.ACLDenied, why, cause.ACLChanged
		}
	}
}

// banActive reports whether ip is banned now.
func (d *diag) banActive(ip string) bool {
	for _, b := range d.in.Bans.Active {
		if b.IP == ip && (b.Until.IsZero() || b.Until.After(d.in.Now)) {
			return true
		}
	}
	return false
}

var (
	untilRE    = regexp.MustCompile(`until (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d\d:\d\d))`)
	aclRoleRE  = regexp.MustCompile(`rejected by (register acl|inbound acl|acl) (\S+?)(?: of extension \S+)?\)?$`)
	aclAdminRE = regexp.MustCompile(`^acl (\S+?):`)
)

// banHistory says how a past ban of ip ended, e.g. "127.0.0.20 was banned
// until 15:01; lifted by root at 14:03", from the newest ban_lifted event
// for the address since the phone was first dropped (since).
func (d *diag) banHistory(ip string, since time.Time) string {
	for _, e := range d.in.History.Admin {
		if e.Cause != cause.BanLifted || ipOf(e.Source) != ip || e.Time.Before(since.Add(-time.Minute)) {
			continue
		}
		s := ip + " was banned"
		if m := untilRE.FindStringSubmatch(e.Detail); m != nil {
			if t, err := time.Parse(time.RFC3339, m[1]); err == nil {
				s += " until " + d.clock(t)
			}
		}
		return s + "; lifted by " + whoOr(e.AuthUser) + " at " + d.clock(e.Time)
	}
	return ip + " was banned; the ban is no longer in force (it expired or was lifted)"
}

func whoOr(u string) string {
	if u == "" {
		return "an operator"
	}
	return u
}

// aclLifted reports whether an acl_denied event no longer holds: the list
// that refused the address now allows it, or the profile (or the
// extension) no longer applies that list; why says which, with who changed
// it when the journal knows. ok is false when the refusal still holds or
// the doctor cannot tell.
func (d *diag) aclLifted(e journal.Event) (why string, ok bool) {
	a := d.in.Access
	m := aclRoleRE.FindStringSubmatch(e.Detail)
	ip, err := netip.ParseAddr(e.SourceIP())
	if !a.Available || m == nil || err != nil {
		return "", false
	}
	role, name := m[1], m[2]
	var current string
	switch role {
	case "register acl":
		current = a.RegisterACL
	case "inbound acl":
		current = a.InboundACL
	default:
		if d.in.Ext == nil {
			return "", false
		}
		current = d.in.Ext.ACL
	}
	allows := func(list string) bool {
		l, found := a.Lists[list]
		if !found {
			return false
		}
		ok, _ := l.Decide(ip)
		return ok
	}
	switch {
	case current == "" && role == "acl":
		return fmt.Sprintf("%s has no acl of its own now", d.in.Number), true
	case current == "":
		return fmt.Sprintf("the profile applies no %s now%s", role, d.changedBy(name, role, e.Time)), true
	case current != name && allows(current):
		return fmt.Sprintf("the %s is %s now, which allows %s%s", role, current, ip, d.changedBy(name, role, e.Time)), true
	case current == name && allows(name):
		return fmt.Sprintf("acl %s allows %s now%s", name, ip, d.changedBy(name, role, e.Time)), true
	}
	return "", false
}

// changedBy names the newest operator change after t to acl name or to
// the profile's role, e.g. " (changed by alice at 14:20)", or "".
func (d *diag) changedBy(name, role string, t time.Time) string {
	for _, e := range d.in.History.Admin {
		if e.Time.Before(t) {
			break
		}
		hit := false
		switch e.Cause {
		case cause.ACLChanged:
			m := aclAdminRE.FindStringSubmatch(e.Detail)
			hit = m != nil && m[1] == name
		case cause.ProfileChanged:
			hit = role != "acl" && strings.Contains(e.Detail, role+" ")
		}
		if hit {
			return " (changed by " + whoOr(e.AuthUser) + " at " + d.clock(e.Time) + ": " + strings.TrimSuffix(e.Detail, " by "+e.AuthUser) + ")"
		}
	}
	return ""
}

// findBans keeps the active bans of addresses this extension's phones used
// (journal or bindings).
func (d *diag) findBans() {
	ips := map[string]bool{}
	for _, p := range d.phones {
		ips[p.ip] = true
	}
	for _, b := range d.in.Bindings {
		ips[ipOf(b.Source)] = true
	}
	for _, b := range d.in.Bans.Active {
		if !b.Until.IsZero() && !b.Until.After(d.in.Now) {
			continue
		}
		if ips[b.IP] {
			d.banned = append(d.banned, b)
		}
	}
}

// hostCIDR writes ip as a one-address CIDR (/32 or /128).
func hostCIDR(ip string) string {
	if strings.Contains(ip, ":") {
		return ip + "/128"
	}
	return ip + "/32"
}

func ipOf(src string) string {
	if h, _, err := net.SplitHostPort(src); err == nil {
		return h
	}
	return strings.Trim(src, "[]")
}

// ---- formatting helpers ----

// clock writes t briefly: "14:02" today, "Jan 2 14:02" this year, else the date.
func (d *diag) clock(t time.Time) string {
	t, now := t.In(d.loc), d.in.Now.In(d.loc)
	switch {
	case t.YearDay() == now.YearDay() && t.Year() == now.Year():
		return t.Format("15:04")
	case t.Year() == now.Year():
		return t.Format("Jan 2 15:04")
	}
	return t.Format("2006-01-02 15:04")
}

// stamp writes t to the second.
func (d *diag) stamp(t time.Time) string {
	t, now := t.In(d.loc), d.in.Now.In(d.loc)
	switch {
	case t.YearDay() == now.YearDay() && t.Year() == now.Year():
		return t.Format("15:04:05")
	case t.Year() == now.Year():
		return t.Format("Jan 2 15:04:05")
	}
	return t.Format("2006-01-02 15:04:05")
}

// span writes a duration compactly: 45s, 12m05s, 3h20m, 2d04h.
func span(dur time.Duration) string {
	if dur < 0 {
		dur = -dur
	}
	switch {
	case dur < time.Minute:
		return fmt.Sprintf("%ds", int(dur.Seconds()))
	case dur < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(dur.Minutes()), int(dur.Seconds())%60)
	case dur < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(dur.Hours()), int(dur.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(dur.Hours())/24, int(dur.Hours())%24)
}

func (p *phone) label() string {
	if p.ua == "" {
		return "the phone at " + p.ip
	}
	return "the phone at " + p.ip + " (" + p.ua + ")"
}

func bindingPhone(b store.Binding) string {
	if b.UserAgent == "" {
		return ipOf(b.Source)
	}
	return ipOf(b.Source) + " (" + b.UserAgent + ")"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

func times(n int, partial bool) string {
	s := plural(n, "time", "times")
	if partial {
		s = "at least " + s
	}
	return s
}

// cmd builds a switchboard command line with --domain and --data added
// when they are not the defaults.
func (d *diag) cmd(args string, withDomain bool) string {
	s := "switchboard " + args
	if withDomain && d.in.DefaultDomain != "" && !strings.EqualFold(d.in.DefaultDomain, d.in.Domain) {
		s += " --domain " + d.in.Domain
	}
	if d.in.DataDir != "" {
		s += " --data " + d.in.DataDir
	}
	return s
}

// ---- 1. directory ----

func (d *diag) checkDirectory() {
	in := d.in
	f := Finding{Check: CheckDirectory}
	switch {
	case in.Ext == nil:
		f.Status, f.Cause = Fail, cause.ExtensionMissing
		f.Evidence = append(f.Evidence, fmt.Sprintf("there is no extension %s in domain %s", in.Number, in.Domain))
		if len(in.OtherDomains) > 0 {
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s exists in domain %s", in.Number, strings.Join(in.OtherDomains, ", ")))
		}
		if len(in.Similar) > 0 {
			f.Evidence = append(f.Evidence, fmt.Sprintf("similar numbers in %s: %s", in.Domain, strings.Join(in.Similar, ", ")))
		}
		f.Fix = "add it: " + d.cmd("ext add "+in.Number, true)
		if len(in.OtherDomains) > 0 {
			f.Fix = fmt.Sprintf("if the phone belongs to %s, ask about that one: switchboard doctor %s --domain %s; otherwise add it: %s",
				in.OtherDomains[0], in.Number, in.OtherDomains[0], d.cmd("ext add "+in.Number, true))
		} else if len(in.Similar) > 0 {
			f.Fix = fmt.Sprintf("check the number (did you mean %s?), or add it: %s", in.Similar[0], d.cmd("ext add "+in.Number, true))
		}
	case !in.DomainEnabled:
		f.Status, f.Cause = Fail, cause.ExtensionDisabled
		f.Evidence = append(f.Evidence, fmt.Sprintf("domain %s is disabled: none of its extensions may register or be called", in.Domain))
		f.Fix = "enable the domain " + in.Domain + " again"
	case !in.Ext.Enabled:
		f.Status, f.Cause = Fail, cause.ExtensionDisabled
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s@%s exists but is disabled: it may not register or be called", in.Number, in.Domain))
		f.Fix = "enable it: " + d.cmd("ext set "+in.Number+" --enabled=true", true)
	case in.Ext.HA1MD5 == "" && in.Ext.HA1SHA256 == "":
		f.Status, f.Cause = Fail, cause.WrongPassword
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s@%s has no password: no phone can authenticate", in.Number, in.Domain))
		f.Fix = "set one: " + d.cmd("ext passwd "+in.Number, true)
	default:
		f.Status = OK
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s@%s exists, is enabled and has a password", in.Number, in.Domain))
		max := in.Ext.MaxRegistrations
		used := len(d.live)
		line := fmt.Sprintf("%d of %d registrations in use", used, max)
		if max > 0 && used >= max {
			f.Status, f.Cause = Warn, cause.MaxRegistrations
			f.Evidence = append(f.Evidence, line+": one more phone will be refused (403)")
			f.Fix = fmt.Sprintf("raise the limit: %s, or unregister a phone you no longer use",
				d.cmd(fmt.Sprintf("ext set %s --max-registrations %d", in.Number, max+1), true))
		} else {
			f.Evidence = append(f.Evidence, line)
		}
	}
	d.add(f)
}

// ---- 2. listeners and firewall ----

func (d *diag) checkListeners() {
	s := d.in.Serve
	f := Finding{Check: CheckListeners}
	if !s.Running {
		f.Status, f.Cause = Fail, cause.ListenerDown
		f.Evidence = append(f.Evidence, "switchboard serve is not running on this data directory: nothing answers SIP")
		if s.Known && len(s.Listeners) > 0 {
			var ls []string
			for _, l := range s.Listeners {
				ls = append(ls, l.Proto+" "+l.Addr)
			}
			f.Evidence = append(f.Evidence, "it last listened on "+strings.Join(ls, ", "))
		}
		f.Fix = "start it: " + d.cmd("serve", false) + " (or start its service, e.g. systemctl start switchboard)"
		d.add(f)
		return
	}
	if !s.Known || len(s.Listeners) == 0 {
		f.Status = Warn
		f.Evidence = append(f.Evidence, fmt.Sprintf("switchboard serve is running (pid %d) but has not published its listeners yet", s.PID))
		f.Fix = "wait a second and ask again; if it stays so, read the server's log"
		d.add(f)
		return
	}
	f.Status = OK
	f.Evidence = append(f.Evidence, fmt.Sprintf("switchboard serve is running (pid %d, up %s), profile internal", s.PID, span(d.in.Now.Sub(s.StartedAt))))
	var down []string
	for _, l := range s.Listeners {
		switch {
		case !l.Probed:
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s %s: not probed", l.Proto, l.Addr))
		case l.OK:
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s %s %s", l.Proto, l.Addr, l.Detail))
		default:
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s %s does not answer: %s", l.Proto, l.Addr, l.Detail))
			down = append(down, l.Proto+" "+l.Addr)
		}
	}
	if len(down) > 0 {
		f.Status, f.Cause = Fail, cause.ListenerDown
		f.Fix = "the server runs but " + strings.Join(down, " and ") +
			" does not answer: read the server's log, check nothing else took the port, and restart it"
	}
	d.add(f)
	d.checkCertificate()
}

// certWarnBefore is how long before its expiry a certificate is warned about.
const certWarnBefore = 14 * 24 * time.Hour

// checkCertificate reports the certificate the TLS/WSS listeners serve:
// validity, expiry, the names it covers against the domain.
func (d *diag) checkCertificate() {
	var c *CertFacts
	var where []string
	for _, l := range d.in.Serve.Listeners {
		if l.Cert != nil {
			if c == nil {
				c = l.Cert
			}
			where = append(where, l.Proto+" "+l.Addr)
		}
	}
	if c == nil {
		return
	}
	f := Finding{Check: CheckListeners, Status: OK}
	kind := "issued by a CA the host trusts"
	if c.SelfSigned {
		kind = "self-signed"
	} else if !c.Trusted {
		kind = "not trusted by this host's CA roots"
	}
	f.Evidence = append(f.Evidence, fmt.Sprintf("%s serve certificate %q (%s), names %s, valid until %s",
		strings.Join(where, " and "), c.Subject, kind, strings.Join(c.Names, ", "), c.NotAfter.Format("2006-01-02")))
	dom := d.in.Domain
	var fixes []string
	switch left := c.NotAfter.Sub(d.in.Now); {
	case left <= 0 || d.in.Now.Before(c.NotBefore):
		f.Status, f.Cause = Fail, cause.TLSCertificate
		f.Evidence = append(f.Evidence, "the certificate is not valid now (expired or not yet valid): every TLS phone and browser refuses it")
		fixes = append(fixes, "renew it (e.g. certbot renew); switchboard reloads --tls-cert/--tls-key by itself when the files change, or on SIGHUP")
	case left < certWarnBefore:
		f.Status, f.Cause = Warn, cause.TLSCertificate
		f.Evidence = append(f.Evidence, fmt.Sprintf("the certificate expires in %s", span(left)))
		fixes = append(fixes, "renew it before then (certbot renew runs from a timer); switchboard picks the new files up without a restart")
	}
	if dom != "" && !c.Covers(dom) {
		if f.Status == OK {
			f.Status, f.Cause = Warn, cause.TLSCertificate
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("it does not name the domain %s: phones that verify the certificate refuse it and browsers warn", dom))
		fixes = append(fixes, fmt.Sprintf("use a certificate for %s (e.g. certbot certonly --standalone -d %s, then serve --tls-cert /etc/letsencrypt/live/%s/fullchain.pem --tls-key /etc/letsencrypt/live/%s/privkey.pem)", dom, dom, dom, dom))
	}
	if c.SelfSigned && f.Status == OK {
		f.Evidence = append(f.Evidence, "self-signed: a browser must accept it once (open the wss address as https:// and accept the warning), a desk phone must trust it (import the server's tls-cert.pem) or skip verification")
	}
	f.Fix = strings.Join(fixes, "; ")
	d.add(f)
}

func (d *diag) checkFirewall() {
	fw := d.in.Firewall
	f := Finding{Check: CheckListeners}
	ports := d.sipPorts()
	switch {
	case len(fw.Blocks) > 0:
		f.Status, f.Cause = Warn, cause.ListenerDown
		f.Evidence = append(f.Evidence, "the host firewall may drop SIP ("+ports+"):")
		f.Evidence = append(f.Evidence, fw.Blocks...)
		f.Fix = "allow the SIP port from the phones' networks, e.g. nft add rule inet filter input udp dport " +
			firstPort(ports) + " accept (or ufw allow " + firstPort(ports) + "/udp)"
	case len(fw.Checked) > 0:
		f.Status = OK
		f.Evidence = append(f.Evidence, fmt.Sprintf("host firewall (%s): no rule drops %s", strings.Join(fw.Checked, ", "), ports))
	default:
		f.Status = Skip
		why := "no firewall tool found"
		if len(fw.Errors) > 0 {
			why = strings.Join(fw.Errors, "; ")
		}
		f.Evidence = append(f.Evidence, "could not check the host firewall: "+why)
	}
	d.add(f)
}

func (d *diag) sipPorts() string {
	seen := map[string]bool{}
	var out []string
	for _, l := range d.in.Serve.Listeners {
		if _, p, err := net.SplitHostPort(l.Addr); err == nil {
			k := l.Proto + " " + p
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	if len(out) == 0 {
		return "udp/tcp 5060"
	}
	return strings.Join(out, ", ")
}

func firstPort(ports string) string {
	f := strings.Fields(ports)
	if len(f) >= 2 {
		return strings.TrimSuffix(f[1], ",")
	}
	return "5060"
}

// ---- 3. registration ----

func (d *diag) checkRegistration() int {
	f := Finding{Check: CheckRegistration}
	if d.in.Ext == nil {
		f.Status = Skip
		f.Evidence = append(f.Evidence, "no such extension")
		d.add(f)
		return -1
	}
	if len(d.live) == 0 && len(d.orphaned) > 0 {
		f.Status, f.Cause = Fail, cause.NodeDown
		for _, b := range d.orphaned {
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s from %s %s is %s: the other nodes skip it",
				b.Contact, b.Source, b.Transport, d.onDeadNode(b.Node)))
		}
		return d.add(f)
	}
	if len(d.live) == 0 {
		f.Status = Fail
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s has no current registration", d.in.Number))
		if len(d.expired) > 0 {
			b := d.expired[0]
			f.Evidence = append(f.Evidence, fmt.Sprintf("its last binding %s from %s expired at %s (%s ago)",
				b.Contact, bindingPhone(b), d.stamp(b.ExpiresAt), span(d.in.Now.Sub(b.ExpiresAt))))
		}
		return d.add(f)
	}
	f.Status, f.Cause = OK, cause.Registered
	for _, b := range d.live {
		ping := "not qualified yet"
		switch b.PingStatus {
		case "reachable":
			ping = fmt.Sprintf("reachable (%.1f ms)", b.PingRTT)
		case "unreachable":
			ping = "unreachable since " + d.stamp(d.unreachableSince(b))
		}
		ua := b.UserAgent
		if ua == "" {
			ua = "no User-Agent"
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s from %s %s, %s, expires in %s (%s), %s",
			b.Contact, b.Source, b.Transport, ua, span(b.ExpiresAt.Sub(d.in.Now)), d.stamp(b.ExpiresAt), ping))
	}
	if !d.in.Serve.Running {
		f.Status, f.Cause = Warn, ""
		f.Evidence = append(f.Evidence, "(saved at the server's last stop: they count again once serve runs, if the phones still refresh)")
	}
	return d.add(f)
}

// ---- 4. history of REGISTER attempts ----

func (d *diag) checkHistory() {
	in := d.in
	if in.Ext == nil {
		d.add(Finding{Check: CheckHistory, Status: Skip, Evidence: []string{"no such extension"}})
		return
	}
	if !in.History.Available {
		d.add(Finding{Check: CheckHistory, Status: Skip, Evidence: []string{"the journal is not available"}})
		return
	}
	registered := len(d.live) > 0
	status := Fail
	if registered {
		status = Warn
	}
	for _, b := range d.banned {
		f := Finding{Check: CheckHistory, Status: status, Cause: cause.IPBanned}
		f.Evidence = append(f.Evidence, d.banLine(b))
		for _, p := range d.phones {
			if p.ip == b.IP {
				f.Evidence = append(f.Evidence, fmt.Sprintf("%s last tried at %s (%s)", p.label(), d.stamp(p.latest.Time), p.latestC))
				break
			}
		}
		f.Fix = fmt.Sprintf("fix the phone first (its password, most often), then lift the ban: %s", d.cmd("ban rm "+b.IP, false))
		if strings.HasPrefix(b.Reason, registeredBan) {
			f.Fix = fmt.Sprintf("something at %s (behind the same NAT as the registered phones?) guessed the passwords of other extensions: find and stop it, then lift the ban: %s; "+
				"if an office behind one address makes honest mistakes, raise switchboard serve --ban-after-registered", b.IP, d.cmd("ban rm "+b.IP, false))
		}
		d.add(f)
	}
	for _, p := range d.failing {
		c := p.latestC
		if registered && d.pastOnly(p) {
			// The extension works: a refusal that no longer holds, or a
			// phone that has not tried for a day, is history.
			d.add(d.asHistory(d.failureFinding(p, c, status), p))
			continue
		}
		if c == cause.IPBanned {
			// The ban finding (or this one) says the packets are dropped;
			// what got the phone banned is the problem to fix first.
			if !d.isBanned(p.ip) {
				d.add(d.failureFinding(p, c, status))
			}
			if c = p.reason(); c == "" {
				continue
			}
		}
		d.add(d.failureFinding(p, c, status))
	}
	if len(d.banned) > 0 {
		return
	}
	for _, p := range d.failing {
		if !registered || !d.pastOnly(p) {
			return
		}
	}
	f := Finding{Check: CheckHistory}
	lastReg, hasReg := d.lastOf(cause.Registered)
	switch {
	case registered:
		f.Status = OK
		if hasReg {
			since := "no failed attempt since"
			for _, p := range d.failing {
				if p.latest.Time.After(lastReg.Time) {
					since = "the refusals since, above, are history"
					break
				}
			}
			f.Evidence = append(f.Evidence, fmt.Sprintf("last REGISTER accepted at %s from %s (%s); %s",
				d.stamp(lastReg.Time), lastReg.Source, uaOr(lastReg.UserAgent), since))
		} else {
			f.Evidence = append(f.Evidence, "no failed REGISTER attempt in the journal")
		}
	case hasReg || len(d.expired) > 0:
		f.Status, f.Cause = Fail, cause.Expired
		f.Evidence, f.Fix = d.expiredEvidence(lastReg, hasReg)
	default:
		f.Status, f.Cause = Fail, cause.NeverSeen
		horizon := "the journal"
		if !in.History.Oldest.IsZero() {
			horizon = "the journal (kept since " + d.stamp(in.History.Oldest) + ")"
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("no REGISTER for %s has reached switchboard in %s", in.Number, horizon))
		f.Evidence = append(f.Evidence, d.phoneSettings()...)
		f.Fix = "enter these settings on the phone; if they are right, the phone's REGISTERs do not reach this server: check its network, the server address and port, and firewalls on the way"
	}
	d.add(f)
}

func uaOr(ua string) string {
	if ua == "" {
		return "no User-Agent"
	}
	return ua
}

// pastOnly reports whether a failing phone is history once the extension
// is registered: its refusal no longer holds (ban lifted, ACL changed), or
// it has not tried for longer than recentFailure (a one-off client, e.g. a
// softphone tried once a week ago).
func (d *diag) pastOnly(p *phone) bool {
	switch p.latestC {
	case cause.BanLifted, cause.ACLChanged:
		return true
	case cause.ExtensionDisabled, cause.ExtensionMissing:
		// Refused while the extension was disabled or missing: it exists
		// and is enabled now (or the directory check says otherwise).
		if d.in.Ext != nil && d.in.Ext.Enabled && d.in.DomainEnabled {
			return true
		}
	}
	return d.in.Now.Sub(p.latest.Time) > recentFailure
}

// asHistory turns a failure finding into history: shown, but neither a
// warning nor a cause, and without a fix.
func (d *diag) asHistory(f Finding, p *phone) Finding {
	why := "history, not the answer now"
	if d.in.Now.Sub(p.latest.Time) > recentFailure {
		why = fmt.Sprintf("history, not the answer now: this phone has not tried for %s (older than %s)",
			span(d.in.Now.Sub(p.latest.Time)), span(recentFailure))
	}
	f.Evidence = append([]string{why + ":"}, f.Evidence...)
	f.Status, f.Cause, f.Fix = OK, "", ""
	return f
}

func (d *diag) isBanned(ip string) bool {
	for _, b := range d.banned {
		if b.IP == ip {
			return true
		}
	}
	return false
}

// registeredBan starts the reason of a ban imposed on an address with
// registered phones for guessing other extensions (package security).
const registeredBan = "brute force from an address with registered phones"

func (d *diag) banLine(b Ban) string {
	s := b.IP + " is banned"
	if !b.Since.IsZero() {
		s += " since " + d.stamp(b.Since)
	}
	if b.Until.IsZero() {
		s += " permanently"
	} else {
		s += " until " + d.stamp(b.Until)
	}
	var why []string
	if b.Failures > 0 {
		why = append(why, plural(b.Failures, "failed attempt", "failed attempts"))
	}
	if b.Reason != "" {
		why = append(why, b.Reason)
	}
	if len(why) > 0 {
		s += " (" + strings.Join(why, ": ") + ")"
	}
	return s + ": its packets are dropped"
}

// lastOf returns the newest event of cause c for the extension, from the
// recent window or the per-cause lookup.
func (d *diag) lastOf(c cause.Code) (journal.Event, bool) {
	var best journal.Event
	found := false
	for i := range d.in.History.Recent {
		e := &d.in.History.Recent[i]
		if got, ok := d.classify(e); ok && got == c {
			best, found = *e, true
			break
		}
	}
	if e, ok := d.in.History.Last[c]; ok && (!found || e.Time.After(best.Time)) {
		best, found = e, true
	}
	return best, found
}

var (
	aclRE      = regexp.MustCompile(`acl (\S+)`)
	intervalRE = regexp.MustCompile(`asked for (\d+) s, the minimum is (\d+) s`)
	maxRegRE   = regexp.MustCompile(`(\d+) of (\d+) registrations`)
)

// reason returns the phone's newest failure other than a ban (what got it
// banned), or "".
func (p *phone) reason() cause.Code {
	var best cause.Code
	var at time.Time
	for c, t := range p.last {
		if c != cause.IPBanned && (best == "" || t.After(at)) {
			best, at = c, t
		}
	}
	return best
}

// failureFinding describes the phone's failures of cause c.
func (d *diag) failureFinding(p *phone, c cause.Code, st Status) Finding {
	e := p.sample[c]
	n, partial := p.counts[c], p.partial[c]
	when := fmt.Sprintf("%s, first at %s, last at %s", times(n, partial), d.stamp(p.first[c]), d.stamp(p.last[c]))
	if n == 1 && !partial {
		when = "once, at " + d.stamp(p.last[c])
	}
	from := fmt.Sprintf("from %s %s (%s)", e.Source, e.Transport, uaOr(e.UserAgent))
	f := Finding{Check: CheckHistory, Status: st, Cause: c}
	num, dom := d.in.Number, d.in.Domain
	switch c {
	case cause.WrongPassword:
		if e.AuthUser != "" {
			from += fmt.Sprintf(", auth user %s, realm %s", e.AuthUser, e.Realm)
		}
		f.Evidence = append(f.Evidence, "REGISTER refused for a wrong password "+when, from)
		f.Fix = fmt.Sprintf("enter the extension's password on the phone (SIP / authentication password); to set a new one: %s; then re-save the account on the phone or reboot it",
			d.cmd("ext passwd "+num, true))
	case cause.AuthUserMismatch:
		f.Evidence = append(f.Evidence, fmt.Sprintf("the phone authenticates as %q, not %q (%s)", e.AuthUser, num, when), from)
		f.Fix = fmt.Sprintf("set the phone's authentication ID (auth user) to %s, the same as its user name, with the password of %s", num, num)
	case cause.WrongDomain:
		used, what := e.Domain, "domain"
		if strings.EqualFold(e.Domain, dom) {
			used, what = e.Realm, "realm"
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("the phone registers with %s %q, but %s is in domain %q (%s)", what, used, num, dom, when), from)
		f.Fix = fmt.Sprintf("set the phone's SIP domain (registrar / realm) to %s; or, if %s is right, serve it: switchboard domain add %s and add %s there",
			dom, used, used, num)
	case cause.ACLDenied:
		list := "?"
		if m := aclRE.FindStringSubmatch(e.Detail); m != nil {
			list = m[1]
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("REGISTER from %s rejected by ACL %s (%s)", p.ip, list, when), from)
		if e.Detail != "" {
			f.Evidence = append(f.Evidence, "detail: "+e.Detail)
		}
		f.Fix = fmt.Sprintf("if %s is a legitimate phone, allow its address: %s; otherwise nothing to do: the ACL works",
			p.ip, d.cmd("acl allow "+list+" "+hostCIDR(p.ip), false))
	case cause.IPBanned:
		f.Evidence = append(f.Evidence, fmt.Sprintf("requests from %s dropped: the address is banned (%s)", p.ip, when), from)
		f.Fix = fmt.Sprintf("fix the phone first (its password, most often), then lift the ban: %s", d.cmd("ban rm "+p.ip, false))
	case cause.IntervalTooBrief:
		asked, min := "?", "?"
		if m := intervalRE.FindStringSubmatch(e.Detail); m != nil {
			asked, min = m[1], m[2]
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("the phone asks to register for %s s, the minimum is %s s (423 Interval Too Brief, %s)", asked, min, when), from)
		f.Fix = fmt.Sprintf("set the phone's registration expiry to at least %s s (3600 is usual), or lower the server's minimum: switchboard serve --min-expires %s", min, asked)
	case cause.MaxRegistrations:
		have, max := "?", "?"
		if m := maxRegRE.FindStringSubmatch(e.Detail); m != nil {
			have, max = m[1], m[2]
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("REGISTER refused: already %s of %s registrations (%s)", have, max, when), from)
		maxN, _ := strconv.Atoi(max)
		f.Fix = fmt.Sprintf("raise the limit: %s, or unregister phones no longer used (list them: %s)",
			d.cmd(fmt.Sprintf("ext set %s --max-registrations %d", num, maxN+1), true), d.cmd("reg "+num, false))
	case cause.ExtensionDisabled:
		f.Evidence = append(f.Evidence, fmt.Sprintf("REGISTER refused while %s was disabled (%s)", num, when), from)
		f.Fix = "the extension is enabled now: re-save the account on the phone or reboot it so it registers at once"
		if d.in.Ext != nil && !d.in.Ext.Enabled {
			f.Fix = "enable it: " + d.cmd("ext set "+num+" --enabled=true", true)
		}
	case cause.ExtensionMissing:
		f.Evidence = append(f.Evidence, fmt.Sprintf("REGISTER refused while %s did not exist (%s)", num, when), from)
		f.Fix = "the extension exists now: re-save the account on the phone or reboot it so it registers at once"
	case cause.DigestNoQOP:
		f.Evidence = append(f.Evidence, fmt.Sprintf("REGISTER refused (403): the phone answers the challenge without qop, old RFC 2069 digest (%s); its password is right", when), from)
		f.Fix = "the phone answers without qop: update its firmware, or enable \"qop\" / RFC 7616 (RFC 2617) digest in its SIP settings; " +
			"only if neither is possible, accept such phones (each of their requests is then challenged): switchboard serve --digest-allow-rfc2069"
	case cause.DigestURIMismatch:
		f.Evidence = append(f.Evidence, fmt.Sprintf("REGISTER refused (400): the digest uri of the phone's answer is not the request's URI (%s)", when), from)
		if e.Detail != "" {
			f.Evidence = append(f.Evidence, "detail: "+e.Detail)
		}
		f.Fix = "a proxy or SIP ALG between the phone and the server rewrites the request URI, or the phone is buggy: disable SIP ALG on the router, or update the phone's firmware; a replayed capture from an attacker looks the same"
	case cause.StoreUnavailable:
		f.Evidence = append(f.Evidence, fmt.Sprintf("REGISTER answered 503: the server could not save the binding, its database could not write (%s)", when), from)
		f.Fix = "free space on the file system of the data directory (see the storage finding, df -h); the phone registers again after its Retry-After"
	case cause.BanLifted:
		e = p.sample[cause.IPBanned]
		n, partial = p.counts[cause.IPBanned], p.partial[cause.IPBanned]
		f.Evidence = append(f.Evidence, fmt.Sprintf("requests from %s were dropped while the address was banned (%s, last at %s)",
			p.ip, times(n, partial), d.stamp(p.last[cause.IPBanned])), fmt.Sprintf("from %s %s (%s)", e.Source, e.Transport, uaOr(e.UserAgent)))
		f.Fix = retryFix
	case cause.ACLChanged:
		e = p.sample[cause.ACLDenied]
		n, partial = p.counts[cause.ACLDenied], p.partial[cause.ACLDenied]
		when = fmt.Sprintf("%s, last at %s", times(n, partial), d.stamp(p.last[cause.ACLDenied]))
		f.Evidence = append(f.Evidence, fmt.Sprintf("REGISTER from %s was rejected by an ACL (%s)", p.ip, when),
			fmt.Sprintf("from %s %s (%s)", e.Source, e.Transport, uaOr(e.UserAgent)))
		if e.Detail != "" {
			f.Evidence = append(f.Evidence, "detail: "+e.Detail)
		}
		f.Fix = retryFix
	default:
		f.Evidence = append(f.Evidence, fmt.Sprintf("REGISTER refused: %s (%s)", c, when), from)
	}
	if p.was != "" {
		f.Evidence = append(f.Evidence, "no longer in force: "+p.wasWhy)
	}
	if p.lastOK.IsZero() {
		f.Evidence = append(f.Evidence, "this phone has never registered")
	} else {
		f.Evidence = append(f.Evidence, "this phone last registered at "+d.stamp(p.lastOK))
	}
	return f
}

// retryFix is the fix when what refused a phone no longer holds.
const retryFix = "nothing to change on the server: the phone registers at its next attempt; to hurry it, re-save the account on the phone or reboot it"

func (d *diag) expiredEvidence(lastReg journal.Event, hasReg bool) ([]string, string) {
	var ev []string
	var last time.Time
	who := ""
	if hasReg {
		last = lastReg.Time
		who = fmt.Sprintf("%s %s (%s)", lastReg.Source, lastReg.Transport, uaOr(lastReg.UserAgent))
		ev = append(ev, fmt.Sprintf("last REGISTER accepted at %s (%s ago) from %s", d.stamp(lastReg.Time), span(d.in.Now.Sub(lastReg.Time)), who))
	}
	if rm, ok := d.lastOf(cause.RemovedByAdmin); ok && rm.Time.After(last) {
		ev = append(ev, fmt.Sprintf("its registration from %s was removed at %s: %s", rm.SourceIP(), d.stamp(rm.Time), rm.Detail))
		return ev, "wait for the phone's next refresh (within its registration interval), or reboot the phone or re-save its account to register at once"
	}
	if unreg, ok := d.lastOf(cause.Unregistered); ok && unreg.Time.After(last) {
		ev = append(ev, fmt.Sprintf("the phone at %s unregistered itself at %s (REGISTER with Expires: 0): switched off, rebooting or its account removed",
			unreg.SourceIP(), d.stamp(unreg.Time)))
		return ev, "check the phone: it said goodbye; when it is back on it registers again (or re-save its account)"
	}
	if exp, ok := d.lastOf(cause.Expired); ok {
		ev = append(ev, fmt.Sprintf("its binding expired at %s and no REGISTER came since", d.stamp(exp.Time)))
	} else if len(d.expired) > 0 {
		b := d.expired[0]
		ev = append(ev, fmt.Sprintf("its binding from %s expired at %s and no REGISTER came since", bindingPhone(b), d.stamp(b.ExpiresAt)))
	}
	ev = append(ev, "the phone stopped refreshing: it is off, offline, or can no longer reach the server")
	return ev, fmt.Sprintf("check the phone is powered and on the network and can reach %s; if it is behind NAT, shorten its registration interval and enable keepalives",
		d.serverAddr())
}

// serverAddr is the address phones should use, "host:port".
func (d *diag) serverAddr() string {
	host, port := d.hostPort()
	return net.JoinHostPort(host, port)
}

func (d *diag) hostPort() (string, string) {
	host, port := "", "5060"
	for _, l := range d.in.Serve.Listeners {
		h, p, err := net.SplitHostPort(l.Addr)
		if err != nil {
			continue
		}
		host, port = h, p
		break
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = d.in.Domain
	}
	return host, port
}

func (d *diag) phoneSettings() []string {
	host, port := d.hostPort()
	var transports []string
	for _, l := range d.in.Serve.Listeners {
		transports = append(transports, strings.ToUpper(l.Proto))
	}
	if len(transports) == 0 {
		transports = []string{"UDP", "TCP"}
	}
	return []string{
		"phone settings:",
		"  SIP server / registrar: " + host + ", port " + port + ", transport " + strings.Join(transports, " or "),
		"  user name: " + d.in.Number,
		"  authentication ID (auth user): " + d.in.Number,
		"  password: the extension's (set a new one: " + d.cmd("ext passwd "+d.in.Number, true) + ")",
		"  SIP domain / realm: " + d.in.Domain,
	}
}

// ---- 5. reachability ----

// unreachableSince is when binding b turned unreachable: the newest
// qualify event for its source (qualify journals changes only), else the
// time of its last ping.
func (d *diag) unreachableSince(b store.Binding) time.Time {
	if e, ok := d.closedFlow(b); ok {
		return e.Time
	}
	for _, e := range d.in.History.Recent {
		if e.Kind == journal.KindQualify && e.Source == b.Source && strings.EqualFold(e.Domain, b.Domain) {
			if e.Cause == cause.Unreachable {
				return e.Time
			}
			break
		}
	}
	return b.PingAt
}

// closedFlow returns the connection_closed event of binding b: the
// connection (TCP, TLS, WS, WSS) it registered over closed after it
// registered, so it cannot be reached until it registers again.
func (d *diag) closedFlow(b store.Binding) (journal.Event, bool) {
	if b.PingStatus != "unreachable" {
		return journal.Event{}, false
	}
	for _, e := range d.in.History.Recent {
		if e.Cause == cause.ConnectionClosed && e.Source == b.Source && strings.EqualFold(e.Domain, b.Domain) &&
			!e.Time.Before(b.RegisteredAt) {
			return e, true
		}
	}
	return journal.Event{}, false
}

// timeoutCall reports whether a failed call ran into a timeout.
func timeoutCall(c Call) bool {
	return c.Status == 408 || c.Cause == cause.RecoveryOnTimerExpire || c.Cause == cause.NoUserResponse
}

func (d *diag) checkReachability() {
	f := Finding{Check: CheckReachability}
	if d.in.Ext == nil || len(d.live) == 0 {
		f.Status = Skip
		f.Evidence = append(f.Evidence, "not registered: nothing to reach")
		d.add(f)
		return
	}
	var bad, good, closed int
	for _, b := range d.live {
		switch b.PingStatus {
		case "unreachable":
			bad++
			if e, ok := d.closedFlow(b); ok {
				closed++
				f.Evidence = append(f.Evidence, fmt.Sprintf("%s (%s): %s", b.Contact, uaOr(b.UserAgent), e.Detail))
				continue
			}
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s at %s %s (%s) does not answer OPTIONS since %s",
				b.Contact, b.Source, b.Transport, uaOr(b.UserAgent), d.stamp(d.unreachableSince(b))))
		case "reachable":
			good++
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s answers OPTIONS (%.1f ms, %s)", b.Source, b.PingRTT, d.stamp(b.PingAt)))
		}
	}
	var timeouts []Call
	for _, c := range d.in.Calls.Failed {
		if timeoutCall(c) && d.in.Now.Sub(c.Time) < recentFailure {
			timeouts = append(timeouts, c)
		}
	}
	if len(timeouts) > 0 {
		c := timeouts[0]
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s to %s timed out in the last day (latest at %s from %s: %d %s)",
			plural(len(timeouts), "INVITE", "INVITEs"), d.in.Number, d.stamp(c.Time), c.From, c.Status, c.Cause))
	}
	switch {
	case bad > 0 && good == 0:
		f.Status, f.Cause = Fail, cause.Unreachable
	case bad > 0 || len(timeouts) > 0:
		f.Status, f.Cause = Warn, cause.Unreachable
	case good > 0:
		f.Status = OK
	default:
		f.Status = Skip
		f.Evidence = append(f.Evidence, "not qualified yet: the server has not pinged the phone with OPTIONS (serve --qualify-interval)")
	}
	if f.Cause == cause.Unreachable && closed == bad {
		f.Cause = cause.ConnectionClosed
		f.Fix = "the phone must register again over a new connection: reopen the browser tab of a WebRTC phone (or check its network), " +
			"or check that a TLS/TCP phone is on and online; it reconnects and registers by itself when its network returns. " +
			"A connection that closes again and again points at a firewall or NAT that drops idle connections: enable keepalives on the phone (CRLF or OPTIONS every 30 s)"
	} else if f.Cause == cause.Unreachable {
		f.Fix = "first check the phone is on and plugged in: a phone switched off or unplugged without unregistering looks just like this until its registration expires. " +
			"If it is on, it registers but cannot be reached between REGISTERs: a NAT or firewall closes the path, or a SIP ALG rewrites it. " +
			"On the phone enable NAT keepalives (OPTIONS or CRLF every 15-30 s) and rport, or switch it to TCP; shorten its registration interval (e.g. 120 s); disable SIP ALG on the router"
	}
	d.add(f)
}

// ---- 6. calls ----

func (d *diag) checkCalls() {
	f := Finding{Check: CheckCalls}
	if !d.in.Calls.Available {
		f.Status = Skip
		f.Evidence = append(f.Evidence, "call records: not available")
		d.add(f)
		return
	}
	if len(d.in.Calls.Failed) == 0 {
		f.Status = OK
		f.Evidence = append(f.Evidence, "no failed call to "+d.in.Number+" on record")
		d.add(f)
		return
	}
	f.Status = OK
	for i, c := range d.in.Calls.Failed {
		if i < 5 {
			f.Evidence = append(f.Evidence, d.callLine(c))
		}
		// A caller hanging up before the answer is its choice, not a
		// fault; an old failure is history.
		if f.Status == OK && !callerChoice(c.Cause) && d.in.Now.Sub(c.Time) < recentFailure {
			f.Status, f.Cause = Warn, c.Cause
		}
	}
	if f.Status == Warn {
		f.Fix = "the checks above say why calls fail; list them with: " + d.cmd("calls --failed --to "+d.in.Number, false)
		if f.Cause == cause.WebRTCNeedsMediaRelay {
			f.Fix = "these calls were between a WebRTC browser and a plain-RTP phone, which only the media relay's WebRTC bridge connects (off with serve --media-relay never): " +
				"serve with --media-relay auto, or call " + d.in.Number + " from a phone of its own kind; " + d.cmd("calls --failed --to "+d.in.Number, false) + " lists them"
		}
	}
	d.add(f)
}

func (d *diag) callLine(c Call) string {
	from := c.From
	if from == "" {
		from = "?"
	}
	s := fmt.Sprintf("%s from %s: %d %s", d.stamp(c.Time), from, c.Status, c.Cause)
	if c.Source != "" {
		s += " (INVITE from " + c.Source + ")"
	}
	if c.Detail != "" {
		s += ": " + c.Detail
	}
	if callerChoice(c.Cause) {
		s += " (the caller hung up before the answer: its choice, not a fault)"
	}
	return s
}

// callerChoice reports whether a call cause is the caller's own decision
// (it cancelled before the answer) rather than a failure.
func callerChoice(c cause.Code) bool { return c == cause.OriginatorCancel }

// ---- verdict ----

// verdictT is the conclusion: the main cause, whether the extension can be
// called, why not (the words after "N cannot be called: ") and the line.
type verdictT struct {
	cause    cause.Code
	callable bool
	why      string
	text     string
}

func (d *diag) cannot(c cause.Code, why string) verdictT {
	return verdictT{cause: c, why: why, text: d.in.Number + " cannot be called: " + why}
}

func (d *diag) verdict() verdictT {
	in := d.in
	num := in.Number
	switch {
	case in.Ext == nil:
		s := "there is no extension " + num + " in domain " + in.Domain
		if len(in.OtherDomains) > 0 {
			s += " (it exists in " + strings.Join(in.OtherDomains, ", ") + ")"
		} else if len(in.Similar) > 0 {
			s += " (did you mean " + strings.Join(in.Similar, " or ") + "?)"
		}
		return d.cannot(cause.ExtensionMissing, s)
	case !in.DomainEnabled:
		return d.cannot(cause.ExtensionDisabled, "its domain "+in.Domain+" is disabled")
	case !in.Ext.Enabled:
		return d.cannot(cause.ExtensionDisabled, "the extension is disabled")
	case !in.Serve.Running:
		return d.cannot(cause.ListenerDown, "switchboard serve is not running")
	}
	for _, l := range in.Serve.Listeners {
		if l.Probed && !l.OK {
			return d.cannot(cause.ListenerDown, "the server does not answer on "+l.Proto+" "+l.Addr)
		}
	}
	if len(d.live) > 0 {
		return d.registeredVerdict()
	}
	if len(d.orphaned) > 0 {
		b := d.orphaned[0]
		return d.cannot(cause.NodeDown, d.onDeadNode(b.Node)+"; calls reach the phone again once node "+b.Node+
			" runs again or the phone registers on another node")
	}
	notReg := "not registered — "
	if s := in.Storage; s.WriteErr != "" {
		return d.cannot(cause.StoreUnavailable, notReg+"switchboard cannot save registrations: writing to "+s.Dir+
			" fails ("+s.WriteErr+"), so REGISTERs get 503")
	}
	if len(d.banned) > 0 {
		b := d.banned[0]
		s := notReg + "the phone's address " + b.IP + " is banned"
		if !b.Until.IsZero() {
			s += " until " + d.clock(b.Until)
		}
		if b.Failures > 0 {
			s += " after " + plural(b.Failures, "failed attempt", "failed attempts")
		}
		return d.cannot(cause.IPBanned, s)
	}
	if len(d.failing) > 0 {
		p := d.failing[0]
		return d.cannot(p.latestC, notReg+d.phoneProblem(p))
	}
	lastReg, hasReg := d.lastOf(cause.Registered)
	if hasReg || len(d.expired) > 0 {
		s := notReg + "its registration expired"
		if hasReg {
			s = fmt.Sprintf("%sthe phone at %s (%s) last registered at %s and stopped refreshing: it is off or offline",
				notReg, lastReg.SourceIP(), uaOr(lastReg.UserAgent), d.clock(lastReg.Time))
			if unreg, ok := d.lastOf(cause.Unregistered); ok && unreg.Time.After(lastReg.Time) {
				s = fmt.Sprintf("%sthe phone at %s (%s) unregistered itself at %s", notReg, unreg.SourceIP(),
					uaOr(unreg.UserAgent), d.clock(unreg.Time))
			}
			if rm, ok := d.lastOf(cause.RemovedByAdmin); ok && rm.Time.After(lastReg.Time) {
				by := rm.Detail
				if _, after, found := strings.Cut(by, " removed by "); found {
					by, _, _ = strings.Cut(after, ";")
				}
				s = fmt.Sprintf("%sits registration from %s (%s) was removed by %s at %s (switchboard reg rm); the phone registers again at its next refresh",
					notReg, rm.SourceIP(), uaOr(rm.UserAgent), by, d.clock(rm.Time))
				return d.cannot(cause.RemovedByAdmin, s)
			}
		}
		return d.cannot(cause.Expired, s)
	}
	why := notReg + "no REGISTER for " + num + " has ever reached switchboard: check the phone's settings"
	if e, ok := d.recentHandshake(); ok {
		what := map[cause.Code]string{
			cause.TLSHandshakeFailed: "a TLS handshake failed",
			cause.WSOriginRefused:    "a WebSocket from a page of another origin was refused",
			cause.WSNoSIPSubprotocol: "a WebSocket without the sip subprotocol was refused",
			cause.HandshakeTimeout:   "a TLS/WebSocket handshake timed out",
		}[e.Cause]
		why += fmt.Sprintf("; %s from %s at %s (%s): if that is the phone, see switchboard journal --cause %s",
			what, e.SourceIP(), d.clock(e.Time), e.Cause, e.Cause)
	}
	return d.cannot(cause.NeverSeen, why)
}

// recentHandshake returns the newest refused TLS handshake or WebSocket
// upgrade of the last day, if any.
func (d *diag) recentHandshake() (journal.Event, bool) {
	for _, e := range d.in.History.Handshakes {
		if d.in.Now.Sub(e.Time) < 24*time.Hour {
			return e, true
		}
	}
	return journal.Event{}, false
}

func (d *diag) registeredVerdict() verdictT {
	var bad, good int
	for _, b := range d.live {
		switch b.PingStatus {
		case "unreachable":
			bad++
		case "reachable":
			good++
		}
	}
	b := d.live[0]
	if bad > 0 && good == 0 {
		for _, x := range d.live {
			if x.PingStatus == "unreachable" {
				b = x
				break
			}
		}
		if e, ok := d.closedFlow(b); ok {
			return d.cannot(cause.ConnectionClosed, e.Detail)
		}
		return d.cannot(cause.Unreachable, fmt.Sprintf("registered from %s but it does not answer OPTIONS since %s — switched off or unplugged, or NAT, firewall or SIP ALG",
			bindingPhone(b), d.clock(d.unreachableSince(b))))
	}
	s := fmt.Sprintf("%s can be called: registered from %s", d.in.Number, bindingPhone(b))
	if n := len(d.live) - 1; n > 0 {
		s += fmt.Sprintf(" and %s", plural(n, "more phone", "more phones"))
	}
	if bad > 0 {
		s += fmt.Sprintf(", but %d of %d phones do not answer OPTIONS", bad, len(d.live))
	}
	v := verdictT{cause: cause.Registered, callable: true, text: s}
	for _, p := range d.failing {
		if d.pastOnly(p) {
			continue
		}
		v.cause, v.text = p.latestC, s+", but "+d.phoneProblem(p)
		return v
	}
	if len(d.banned) > 0 {
		v.cause, v.text = cause.IPBanned, s+", but "+d.banned[0].IP+" is banned"
	} else if bad > 0 {
		v.cause = cause.Unreachable
	}
	return v
}

// phoneProblem says in a few words what is wrong with a failing phone,
// and what no longer holds when its last refusal was lifted.
func (d *diag) phoneProblem(p *phone) string {
	s := d.problem(p)
	if p.was == cause.IPBanned && p.latestC != cause.BanLifted {
		s += " (" + p.wasWhy + ")"
	}
	return s
}

func (d *diag) problem(p *phone) string {
	c := p.latestC
	e := p.sample[c]
	n, partial := p.counts[c], p.partial[c]
	since := d.clock(p.first[c])
	switch c {
	case cause.WrongPassword:
		return fmt.Sprintf("%s has sent a wrong password %s since %s", p.label(), times(n, partial), since)
	case cause.AuthUserMismatch:
		return fmt.Sprintf("%s authenticates as %q instead of %q", p.label(), e.AuthUser, d.in.Number)
	case cause.WrongDomain:
		if strings.EqualFold(e.Domain, d.in.Domain) {
			return fmt.Sprintf("%s answers with realm %q instead of %q", p.label(), e.Realm, d.in.Domain)
		}
		return fmt.Sprintf("%s registers to domain %q instead of %q", p.label(), e.Domain, d.in.Domain)
	case cause.ACLDenied:
		list := "an ACL"
		if m := aclRE.FindStringSubmatch(e.Detail); m != nil {
			list = "ACL " + m[1]
		}
		return fmt.Sprintf("%s is rejected by %s (%s since %s)", p.label(), list, times(n, partial), since)
	case cause.IPBanned:
		return fmt.Sprintf("%s is banned", p.label())
	case cause.IntervalTooBrief:
		if m := intervalRE.FindStringSubmatch(e.Detail); m != nil {
			return fmt.Sprintf("%s asks for a %s s registration, the minimum is %s s", p.label(), m[1], m[2])
		}
		return fmt.Sprintf("%s asks for too short a registration", p.label())
	case cause.MaxRegistrations:
		if m := maxRegRE.FindStringSubmatch(e.Detail); m != nil {
			return fmt.Sprintf("%s is refused: %s of %s registrations already in use", p.label(), m[1], m[2])
		}
		return fmt.Sprintf("%s is refused: max registrations reached", p.label())
	case cause.ExtensionDisabled:
		return fmt.Sprintf("%s was refused while the extension was disabled and has not retried since %s", p.label(), d.clock(p.last[c]))
	case cause.ExtensionMissing:
		return fmt.Sprintf("%s was refused while the extension did not exist and has not retried since %s", p.label(), d.clock(p.last[c]))
	case cause.DigestNoQOP:
		return fmt.Sprintf("%s answers the digest challenge without qop (old RFC 2069 digest, refused %s since %s)", p.label(), times(n, partial), since)
	case cause.DigestURIMismatch:
		return fmt.Sprintf("%s answers with a digest uri that is not the request's URI (%s since %s)", p.label(), times(n, partial), since)
	case cause.BanLifted:
		return fmt.Sprintf("%s was dropped while its address was banned (%s) and has not retried since %s", p.label(), p.wasWhy,
			d.clock(p.last[cause.IPBanned]))
	case cause.ACLChanged:
		return fmt.Sprintf("%s was rejected by an ACL, which no longer holds: %s; it has not retried since %s", p.label(), p.wasWhy,
			d.clock(p.last[cause.ACLDenied]))
	}
	return fmt.Sprintf("%s is refused: %s", p.label(), c)
}

// nodeDown returns the row of the node named name when its lease ran out
// (nil when it is current, unknown, or nodes are not judged).
func (d *diag) nodeDown(name string) *store.Node {
	if name == "" || d.in.NodeLease <= 0 {
		return nil
	}
	for i := range d.in.Nodes {
		if n := &d.in.Nodes[i]; n.Name == name && d.in.Now.Sub(n.RenewedAt) >= d.in.NodeLease {
			return n
		}
	}
	return nil
}

// onDeadNode says where a binding of node name is: "registered on node B,
// which has not renewed its lease since 14:02:11".
func (d *diag) onDeadNode(name string) string {
	s := "registered on node " + name
	if n := d.nodeDown(name); n != nil {
		s += ", which has not renewed its lease since " + d.stamp(n.RenewedAt)
	}
	return s
}
