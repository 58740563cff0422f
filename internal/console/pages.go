package console

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/csv"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/digest"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/doctor"
	"github.com/switchboard-pbx/switchboard/internal/security"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// maxForm bounds a form body (bulk selections included).
const maxForm = 1 << 20

// ---- Overview

// domainCounts are the Overview's cards for a domain (or "all"): Online,
// Offline, Failing and Disabled partition Total, each extension counted
// once under its status (statusOf: disabled, failing, registered,
// offline), as its dot in the Extensions list shows it. Regs counts
// contacts.
type domainCounts struct {
	Domain                                          string
	Total, Online, Offline, Failing, Disabled, Regs int
}

type overviewData struct {
	Version   string
	Uptime    string
	Started   time.Time
	Listeners []listenerView
	Domains   []domainCounts
	Total     domainCounts
	Events    []store.Event
	Streams   int
}

type listenerView struct{ Proto, Addr, State string }

// countsFor is how long computed counts are reused: every open Overview
// refetches them after live events, and at 100,000 extensions a count is
// a walk of the directory; one per second serves all browsers.
const countsFor = time.Second

// counts returns the per-domain and total counts, computed at most once
// per countsFor.
func (c *Console) counts() ([]domainCounts, domainCounts) {
	c.countsMu.Lock()
	defer c.countsMu.Unlock()
	now := c.d.Now()
	if !c.countsAt.IsZero() && now.Sub(c.countsAt) < countsFor && now.After(c.countsAt) {
		return c.countsDomains, c.countsTotal
	}
	d, t := c.computeCounts()
	c.countsDomains, c.countsTotal, c.countsAt = d, t, now
	return d, t
}

func (c *Console) computeCounts() ([]domainCounts, domainCounts) {
	now := c.d.Now()
	by := map[string]*domainCounts{}
	var order []string
	var total domainCounts
	total.Domain = "all"
	for _, e := range c.idx.entries(c.d.Dir) {
		d := by[e.Domain()]
		if d == nil {
			d = &domainCounts{Domain: e.Domain()}
			by[e.Domain()] = d
			order = append(order, e.Domain())
		}
		n := len(c.d.Loc.Lookup(e.Domain(), e.Number()))
		st := statusOf(e.Enabled(), n, c.seen.get(e.Domain(), e.Number()), now)
		for _, x := range []*domainCounts{d, &total} {
			x.Total++
			x.Regs += n
			switch st {
			case StatusDisabled:
				x.Disabled++
			case StatusFailing:
				x.Failing++
			case StatusRegistered:
				x.Online++
			default:
				x.Offline++
			}
		}
	}
	out := make([]domainCounts, 0, len(order))
	for _, name := range order {
		out = append(out, *by[name])
	}
	return out, total
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	rt := c.d.Server.Runtime()
	data := overviewData{Version: c.d.Version, Started: c.d.Started}
	if rt.Version != "" {
		data.Version = rt.Version
	}
	if data.Started.IsZero() {
		data.Started = rt.StartedAt
	}
	data.Uptime = c.d.Now().Sub(data.Started).Truncate(time.Second).String()
	for _, l := range rt.Listeners {
		data.Listeners = append(data.Listeners, listenerView{Proto: strings.ToUpper(l.Proto), Addr: l.Addr, State: "listening"})
	}
	data.Domains, data.Total = c.counts()
	evs, err := c.d.DB.QueryEvents(r.Context(), store.JournalFilter{Limit: 20})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	data.Events = evs
	data.Streams, _, _ = c.hub.Streams()
	c.render(w, r, http.StatusOK, "overview", page{Title: "Overview", Live: true, Data: data})
}

// fail answers an unexpected error (the store failed).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	c.d.Log.Error("console: request failed", "path", r.URL.Path, "error", err)
	http.Error(w, "switchboard could not answer: "+err.Error(), http.StatusInternalServerError)
}

// ---- Extensions

// extRow is one line of the Extensions list.
type extRow struct {
	Domain, Number, Name string
	Enabled              bool
	Status               string
	Contacts             int
	LastSeen             time.Time
	FailCause            cause.Code
	FailAt               time.Time
	FailSource           string
}

func (c *Console) row(e *directory.Entry, now time.Time) extRow {
	bs := c.d.Loc.Lookup(e.Domain(), e.Number())
	s := c.seen.get(e.Domain(), e.Number())
	r := extRow{Domain: e.Domain(), Number: e.Number(), Name: e.CallerIDName(), Enabled: e.Enabled(),
		Contacts: len(bs), FailCause: s.failCause, FailAt: s.failAt, FailSource: s.failSource, LastSeen: s.lastReg}
	for _, b := range bs {
		if b.RegisteredAt.After(r.LastSeen) {
			r.LastSeen = b.RegisteredAt
		}
	}
	r.Status = statusOf(r.Enabled, r.Contacts, s, now)
	return r
}

// status is an extension's status, asking the location table only when
// the cheaper facts do not decide it.
func (c *Console) status(e *directory.Entry, now time.Time) string {
	if !e.Enabled() {
		return StatusDisabled
	}
	s := c.seen.get(e.Domain(), e.Number())
	if !s.failAt.IsZero() && now.Sub(s.failAt) < FailingFor {
		return StatusFailing
	}
	return statusOf(true, len(c.d.Loc.Lookup(e.Domain(), e.Number())), s, now)
}

type extListData struct {
	Q, Status, Domain, After string
	Next                     string
	Rows                     []extRow
	Limit                    int
	Total                    int
	Domains                  []store.Domain
	DefaultDomain            string
	Chips                    []string
}

// maxPage bounds the rows of one page.
const maxPage = 500

func (c *Console) extensions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := extListData{Q: strings.TrimSpace(q.Get("q")), Status: q.Get("status"), Domain: q.Get("domain"),
		After: q.Get("after"), Limit: 50, DefaultDomain: c.d.Dir.DefaultDomain(), Domains: c.d.Dir.Domains(),
		Chips: []string{StatusRegistered, StatusOffline, StatusFailing, StatusDisabled}}
	if len(d.Q) > 200 {
		http.Error(w, "the search text is too long: at most 200 characters", http.StatusBadRequest)
		return
	}
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 {
		d.Limit = min(n, maxPage)
	}
	if d.Status != "" && !slices.Contains(d.Chips, d.Status) {
		http.Error(w, "unknown status filter: use registered, offline, failing or disabled", http.StatusBadRequest)
		return
	}
	d.Rows, d.Next, d.Total = c.page(d.Q, d.Status, d.Domain, d.After, d.Limit)
	c.render(w, r, http.StatusOK, "extensions", page{Title: "Extensions", Live: true, Data: d})
}

// page returns up to limit rows after the cursor (domain "/" number) that
// match the search and the status, the cursor of the next page ("" on the
// last), and the directory's size. It walks the sorted index from the
// cursor (a binary search), so a page costs the same at 100,000
// extensions as at 100.
func (c *Console) page(search, status, domain, after string, limit int) ([]extRow, string, int) {
	all := c.idx.entries(c.d.Dir)
	total := len(all)
	now := c.d.Now()
	if status == StatusFailing {
		// Few extensions fail: walk those the journal named, not the
		// whole directory.
		all = nil
		for _, k := range c.seen.failingSince(now.Add(-FailingFor)) {
			if e, ok := c.d.Dir.Lookup(k.domain, k.number); ok {
				all = append(all, e)
			}
		}
		slices.SortFunc(all, compareEntry)
	}
	start := 0
	if after != "" {
		dom, num, _ := strings.Cut(after, "/")
		start, _ = slices.BinarySearchFunc(all, [2]string{dom, num}, func(e *directory.Entry, k [2]string) int {
			if c := cmp.Compare(strings.ToLower(e.Domain()), strings.ToLower(k[0])); c != 0 {
				return c
			}
			return compareNumber(e.Number(), k[1])
		})
		if start < len(all) && strings.EqualFold(all[start].Domain(), dom) && all[start].Number() == num {
			start++
		}
	}
	search = strings.ToLower(search)
	var rows []extRow
	next := ""
	for i := start; i < len(all); i++ {
		e := all[i]
		// Cheap filters first, on the indexed entry (numbers and domains
		// never change; a renamed name shows after the next rebuild).
		if domain != "" && !strings.EqualFold(e.Domain(), domain) {
			continue
		}
		if search != "" && !strings.Contains(e.Number(), search) &&
			!strings.Contains(strings.ToLower(e.CallerIDName()), search) {
			continue
		}
		if fresh, ok := c.d.Dir.Lookup(e.Domain(), e.Number()); ok {
			e = fresh
		} else {
			continue
		}
		if len(rows) == limit {
			last := rows[len(rows)-1]
			next = strings.ToLower(last.Domain) + "/" + last.Number
			break
		}
		if status != "" && c.status(e, now) != status {
			continue
		}
		rows = append(rows, c.row(e, now))
	}
	return rows, next, total
}

// extensionRow renders one row of the list (app.js swaps it in after a
// live event about the extension).
func (c *Console) extensionRow(w http.ResponseWriter, r *http.Request) {
	e, ok := c.d.Dir.Lookup(r.URL.Query().Get("domain"), r.URL.Query().Get("number"))
	if !ok {
		http.Error(w, "no such extension", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := c.pages["extensions"].ExecuteTemplate(w, "extrow", c.row(e, c.d.Now())); err != nil {
		c.d.Log.Error("console: render row", "error", err)
	}
}

var numberRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,31}$`)

// checkPassword is the CLI's rule for a password an admin types.
func checkPassword(number, pw string) error {
	switch {
	case len(pw) < 8:
		return errors.New("the password is too weak: use at least 8 characters, or leave it empty to generate one")
	case strings.Contains(pw, number) && len(pw) < len(number)+6:
		return errors.New("the password is too weak: it contains the extension number")
	case strings.Count(pw, pw[:1]) == len(pw):
		return errors.New("the password is too weak: it repeats one character")
	case strings.ContainsAny(pw, "\r\n\x00"):
		return errors.New("the password must not contain line breaks or NUL")
	case len(pw) > 128:
		return errors.New("the password is too long: at most 128 characters")
	}
	return nil
}

// generatePassword returns 20 characters without look-alikes, as the CLI
// generates them.
func generatePassword() string {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			panic(err) // crypto/rand never fails on Linux
		}
		b[i] = alphabet[n.Int64()]
	}
	return string(b)
}

func (c *Console) setPassword(ctx context.Context, e *store.Extension, pw string) error {
	d, err := c.d.DB.Domain(ctx, e.Domain)
	if err != nil {
		return err
	}
	e.HA1MD5 = digest.HA1(digest.MD5, e.Number, d.Realm, pw)
	e.HA1SHA256 = digest.HA1(digest.SHA256, e.Number, d.Realm, pw)
	return nil
}

type passwordData struct {
	Domain, Number, Password, What string
}

func (c *Console) listError(w http.ResponseWriter, r *http.Request, msg string) {
	d := extListData{Limit: 50, DefaultDomain: c.d.Dir.DefaultDomain(), Domains: c.d.Dir.Domains(),
		Chips: []string{StatusRegistered, StatusOffline, StatusFailing, StatusDisabled}}
	d.Rows, d.Next, d.Total = c.page("", "", "", "", d.Limit)
	c.render(w, r, http.StatusBadRequest, "extensions", page{Title: "Extensions", Live: true, Error: msg, Data: d})
}

func (c *Console) addExtension(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form could not be read: "+err.Error(), http.StatusBadRequest)
		return
	}
	num := strings.TrimSpace(r.PostFormValue("number"))
	dom := strings.TrimSpace(r.PostFormValue("domain"))
	if dom == "" {
		dom = c.d.Dir.DefaultDomain()
	}
	if !numberRE.MatchString(num) {
		c.listError(w, r, fmt.Sprintf("%q is not a valid extension number: use 1-32 letters, digits, '.', '_', '+' or '-', starting with a letter or digit (e.g. 2002)", num))
		return
	}
	if _, ok := c.d.Dir.Domain(dom); !ok {
		c.listError(w, r, fmt.Sprintf("unknown domain %q: add it with `switchboard domain add %s` first", dom, dom))
		return
	}
	pw := r.PostFormValue("password")
	generated := pw == ""
	if generated {
		pw = generatePassword()
	} else if err := checkPassword(num, pw); err != nil {
		c.listError(w, r, err.Error())
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	if len(name) > 100 || strings.ContainsAny(name, "\r\n\x00") {
		c.listError(w, r, "the name must be one line of at most 100 characters")
		return
	}
	// The CLI's defaults (ext add): 5 phones, 30 s of ringing.
	e := store.Extension{Domain: dom, Number: num, Enabled: true, CallerIDName: name, MaxRegistrations: 5, CallTimeout: 30}
	if err := c.setPassword(r.Context(), &e, pw); err != nil {
		c.fail(w, r, err)
		return
	}
	if _, err := c.d.DB.AddExtension(r.Context(), e); errors.Is(err, store.ErrDuplicate) {
		c.listError(w, r, fmt.Sprintf("extension %s already exists in %s", num, dom))
		return
	} else if err != nil {
		c.fail(w, r, err)
		return
	}
	c.sync(r.Context())
	c.audit(r, cause.ExtensionChanged, fmt.Sprintf("extension %s@%s added", num, dom))
	d := passwordData{Domain: dom, Number: num, What: "added"}
	if generated {
		d.Password = pw
	}
	c.render(w, r, http.StatusOK, "password", page{Title: "Extension " + num + " added", Nav: "extensions", Data: d})
}

// splitKey splits "domain/number".
func splitKey(k string) (string, string, bool) {
	d, n, ok := strings.Cut(k, "/")
	return d, n, ok && d != "" && n != ""
}

func (c *Console) bulkExtensions(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form could not be read: "+err.Error(), http.StatusBadRequest)
		return
	}
	action := r.PostFormValue("action")
	sel := r.PostForm["sel"]
	if action != "enable" && action != "disable" && action != "delete" {
		c.listError(w, r, "choose an action: enable, disable or delete")
		return
	}
	if len(sel) == 0 {
		c.listError(w, r, "select at least one extension first")
		return
	}
	if len(sel) > maxPage {
		c.listError(w, r, fmt.Sprintf("at most %d extensions at once", maxPage))
		return
	}
	ctx := r.Context()
	var done []string
	for _, k := range sel {
		dom, num, ok := splitKey(k)
		if !ok {
			continue
		}
		if d, ok := c.d.Dir.Domain(dom); ok {
			dom = d.Name // the key is in lower case; the store's name may not be
		}
		e, err := c.d.DB.Extension(ctx, dom, num)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			c.fail(w, r, err)
			return
		}
		switch action {
		case "delete":
			err = c.d.DB.RemoveExtension(ctx, e.Domain, e.Number)
		default:
			e.Enabled = action == "enable"
			err = c.d.DB.UpdateExtension(ctx, e)
		}
		if err != nil {
			c.fail(w, r, err)
			return
		}
		done = append(done, e.Number+"@"+e.Domain)
	}
	c.sync(ctx)
	verb := map[string]string{"enable": "enabled", "disable": "disabled", "delete": "deleted"}[action]
	if len(done) > 0 {
		c.audit(r, cause.ExtensionChanged, fmt.Sprintf("extensions %s: %s", verb, strings.Join(done, ", ")))
	}
	http.Redirect(w, r, "/extensions?done="+strconv.Itoa(len(done))+"+"+verb, http.StatusSeeOther)
}

type extDetail struct {
	Ext      store.Extension
	Row      extRow
	Bindings []store.Binding
	Events   []store.Event
}

func (c *Console) loadExt(w http.ResponseWriter, r *http.Request) (store.Extension, bool) {
	e, err := c.d.DB.Extension(r.Context(), r.PathValue("domain"), r.PathValue("number"))
	if errors.Is(err, store.ErrNotFound) {
		if d, ok := c.d.Dir.Domain(r.PathValue("domain")); ok {
			e, err = c.d.DB.Extension(r.Context(), d.Name, r.PathValue("number"))
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		http.Error(w, "no extension "+r.PathValue("number")+" in "+r.PathValue("domain")+": see the Extensions page", http.StatusNotFound)
		return e, false
	} else if err != nil {
		c.fail(w, r, err)
		return e, false
	}
	return e, true
}

func (c *Console) extension(w http.ResponseWriter, r *http.Request) {
	e, ok := c.loadExt(w, r)
	if !ok {
		return
	}
	c.showExt(w, r, http.StatusOK, e, "")
}

func (c *Console) showExt(w http.ResponseWriter, r *http.Request, status int, e store.Extension, msg string) {
	d := extDetail{Ext: e, Bindings: c.d.Loc.Lookup(e.Domain, e.Number)}
	if en, ok := c.d.Dir.Lookup(e.Domain, e.Number); ok {
		d.Row = c.row(en, c.d.Now())
	}
	evs, err := c.d.DB.QueryEvents(r.Context(), store.JournalFilter{Extension: e.Number, Domain: e.Domain, Limit: 20})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d.Events = evs
	p := page{Title: "Extension " + e.Number, Nav: "extensions", Live: true, Data: d}
	if status >= 400 {
		p.Error = msg
	} else {
		p.Flash = msg
	}
	c.render(w, r, status, "extension", p)
}

func (c *Console) editExtension(w http.ResponseWriter, r *http.Request) {
	e, ok := c.loadExt(w, r)
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form could not be read: "+err.Error(), http.StatusBadRequest)
		return
	}
	f := r.PostFormValue
	for _, k := range []string{"name", "cid_number", "description", "acl"} {
		if v := f(k); len(v) > 200 || strings.ContainsAny(v, "\r\n\x00") {
			c.showExt(w, r, http.StatusBadRequest, e, k+" must be one line of at most 200 characters")
			return
		}
	}
	maxRegs, err1 := strconv.Atoi(cmp.Or(f("max_registrations"), "5"))
	timeout, err2 := strconv.Atoi(cmp.Or(f("call_timeout"), "30"))
	if err1 != nil || err2 != nil || maxRegs < 1 || maxRegs > 100 || timeout < 1 || timeout > 3600 {
		c.showExt(w, r, http.StatusBadRequest, e, "max registrations must be 1-100 and the call timeout 1-3600 seconds")
		return
	}
	if a := strings.TrimSpace(f("acl")); a != "" {
		if ok, err := c.d.DB.HasACL(r.Context(), a); err != nil || !ok {
			c.showExt(w, r, http.StatusBadRequest, e, fmt.Sprintf("unknown acl %q: see the ACLs page", a))
			return
		}
	}
	e.CallerIDName, e.CallerIDNumber, e.Description = strings.TrimSpace(f("name")), strings.TrimSpace(f("cid_number")), strings.TrimSpace(f("description"))
	e.ACL = strings.TrimSpace(f("acl"))
	e.MaxRegistrations, e.CallTimeout = maxRegs, timeout
	e.Enabled = f("enabled") != ""
	if err := c.d.DB.UpdateExtension(r.Context(), e); err != nil {
		c.fail(w, r, err)
		return
	}
	c.sync(r.Context())
	c.audit(r, cause.ExtensionChanged, fmt.Sprintf("extension %s@%s changed", e.Number, e.Domain))
	c.showExt(w, r, http.StatusOK, e, "saved")
}

func (c *Console) newPassword(w http.ResponseWriter, r *http.Request) {
	e, ok := c.loadExt(w, r)
	if !ok {
		return
	}
	pw := generatePassword()
	if err := c.setPassword(r.Context(), &e, pw); err != nil {
		c.fail(w, r, err)
		return
	}
	if err := c.d.DB.UpdateExtension(r.Context(), e); err != nil {
		c.fail(w, r, err)
		return
	}
	c.sync(r.Context())
	c.audit(r, cause.ExtensionChanged, fmt.Sprintf("extension %s@%s: new password", e.Number, e.Domain))
	c.render(w, r, http.StatusOK, "password", page{Title: "New password for " + e.Number, Nav: "extensions",
		Data: passwordData{Domain: e.Domain, Number: e.Number, Password: pw, What: "given a new password"}})
}

func (c *Console) deleteExtension(w http.ResponseWriter, r *http.Request) {
	e, ok := c.loadExt(w, r)
	if !ok {
		return
	}
	if err := c.d.DB.RemoveExtension(r.Context(), e.Domain, e.Number); err != nil {
		c.fail(w, r, err)
		return
	}
	c.sync(r.Context())
	c.audit(r, cause.ExtensionChanged, fmt.Sprintf("extension %s@%s deleted", e.Number, e.Domain))
	http.Redirect(w, r, "/extensions?done=1+deleted", http.StatusSeeOther)
}

// csvColumns are the columns of the CLI's `ext export` that need no
// secret; HA1 hashes stay on the server.
var csvColumns = []string{"extension", "name", "caller_id_number", "description", "enabled",
	"max_registrations", "call_timeout_s", "acl", "domain"}

func (c *Console) exportCSV(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="extensions.csv"`)
	cw := csv.NewWriter(w)
	cw.Write(csvColumns)
	exts, err := c.d.DB.Extensions(r.Context(), "")
	if err != nil {
		c.d.Log.Error("console: export", "error", err)
		return
	}
	for _, e := range exts {
		cw.Write([]string{e.Number, csvSafe(e.CallerIDName), csvSafe(e.CallerIDNumber), csvSafe(e.Description),
			strconv.FormatBool(e.Enabled), strconv.Itoa(e.MaxRegistrations), strconv.Itoa(e.CallTimeout), e.ACL, e.Domain})
	}
	cw.Flush()
}

// csvSafe defuses a cell a spreadsheet would run as a formula.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// ---- Registrations

type regData struct {
	Q    string
	Rows []store.Binding
	More int
}

func (c *Console) registrations(w http.ResponseWriter, r *http.Request) {
	q := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("q")))
	if len(q) > 200 {
		http.Error(w, "the search text is too long: at most 200 characters", http.StatusBadRequest)
		return
	}
	all := c.d.Loc.All()
	d := regData{Q: q}
	for _, b := range all {
		if q != "" && !strings.Contains(strings.ToLower(b.Extension+" "+b.Contact+" "+b.Source+" "+b.UserAgent), q) {
			continue
		}
		d.Rows = append(d.Rows, b)
	}
	slices.SortFunc(d.Rows, func(a, b store.Binding) int {
		if c := cmp.Compare(a.Domain, b.Domain); c != 0 {
			return c
		}
		if c := compareNumber(a.Extension, b.Extension); c != 0 {
			return c
		}
		return cmp.Compare(a.Contact, b.Contact)
	})
	if len(d.Rows) > maxPage {
		d.More = len(d.Rows) - maxPage
		d.Rows = d.Rows[:maxPage]
	}
	c.render(w, r, http.StatusOK, "registrations", page{Title: "Registrations", Live: true, Data: d})
}

func (c *Console) removeRegistrations(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form could not be read: "+err.Error(), http.StatusBadRequest)
		return
	}
	sel := r.PostForm["sel"]
	if len(sel) == 0 || len(sel) > maxPage {
		http.Error(w, fmt.Sprintf("select 1 to %d registrations", maxPage), http.StatusBadRequest)
		return
	}
	n := 0
	for _, k := range sel {
		// All three parts are required: "" would match every domain,
		// extension or contact of the server.
		parts := strings.SplitN(k, "|", 3)
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			continue
		}
		removed, err := c.d.Server.RemoveRegistrations(r.Context(), parts[0], parts[1], parts[2], c.admin(r)+" (console)")
		if err != nil {
			c.fail(w, r, err)
			return
		}
		n += len(removed)
	}
	http.Redirect(w, r, "/registrations?done="+strconv.Itoa(n)+"+removed", http.StatusSeeOther)
}

// ---- Failed attempts

type attempt struct {
	Last                                   time.Time
	Source, User, Domain, UserAgent, Realm string
	Cause                                  cause.Code
	Count                                  int
}

type failedData struct {
	Ext, IP  string
	Attempts []attempt
	Bans     []acl.Ban
}

func (c *Console) failed(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := failedData{Ext: strings.TrimSpace(q.Get("ext")), IP: strings.TrimSpace(q.Get("ip"))}
	if len(d.Ext) > 64 || len(d.IP) > 64 {
		http.Error(w, "the filter is too long", http.StatusBadRequest)
		return
	}
	since := c.d.Now().Add(-24 * time.Hour)
	groups := map[string]*attempt{}
	for _, cs := range attemptCauses {
		evs, err := c.d.DB.QueryEvents(r.Context(), store.JournalFilter{Cause: cs, Extension: d.Ext, IP: d.IP, Since: since, Limit: 500})
		if err != nil {
			c.fail(w, r, err)
			return
		}
		for _, e := range evs {
			user := cmp.Or(e.Extension, e.AuthUser)
			k := e.SourceIP() + "\x00" + user + "\x00" + string(e.Cause)
			a := groups[k]
			if a == nil {
				a = &attempt{Source: e.SourceIP(), User: user, Domain: e.Domain, Cause: e.Cause, UserAgent: e.UserAgent, Realm: e.Realm}
				groups[k] = a
			}
			a.Count++
			if e.Time.After(a.Last) {
				a.Last, a.UserAgent = e.Time, e.UserAgent
			}
		}
	}
	for _, a := range groups {
		d.Attempts = append(d.Attempts, *a)
	}
	slices.SortFunc(d.Attempts, func(a, b attempt) int { return b.Last.Compare(a.Last) })
	bans, err := security.NewStore(c.d.DB).Bans(r.Context(), c.d.Now())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d.Bans = bans
	c.render(w, r, http.StatusOK, "failed", page{Title: "Failed attempts", Live: true, Data: d})
}

func (c *Console) unban(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form could not be read: "+err.Error(), http.StatusBadRequest)
		return
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(r.PostFormValue("ip")))
	if err != nil {
		http.Error(w, "not an IP address: "+r.PostFormValue("ip"), http.StatusBadRequest)
		return
	}
	if err := security.NewStore(c.d.DB).RemoveBan(r.Context(), ip, c.d.Now()); errors.Is(err, security.ErrNoBan) {
		http.Error(w, ip.String()+" is not banned", http.StatusNotFound)
		return
	} else if err != nil {
		c.fail(w, r, err)
		return
	}
	c.sync(r.Context())
	c.audit(r, cause.BanLifted, "ban of "+ip.String()+" lifted")
	http.Redirect(w, r, "/failed", http.StatusSeeOther)
}

// ---- ACLs

type aclData struct {
	ACLs     []acl.List
	Profiles []store.Profile
	TestIP   string
	Results  []aclResult
	Error    string
}

type aclResult struct {
	ACL     string
	Allowed bool
	By      string
}

func (c *Console) acls(w http.ResponseWriter, r *http.Request) {
	c.aclPage(w, r, http.StatusOK, "", "")
}

func (c *Console) aclPage(w http.ResponseWriter, r *http.Request, status int, flash, errMsg string) {
	st := security.NewStore(c.d.DB)
	lists, err := st.ACLs(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	profs, err := st.Profiles(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := aclData{ACLs: lists, Profiles: profs, TestIP: strings.TrimSpace(r.URL.Query().Get("ip"))}
	if d.TestIP != "" {
		ip, err := netip.ParseAddr(d.TestIP)
		if err != nil || len(d.TestIP) > 64 {
			d.Error = fmt.Sprintf("%q is not an IP address (e.g. 192.168.1.50 or 2001:db8::1)", d.TestIP)
		} else {
			for _, l := range lists {
				ok, by := l.Decide(ip.Unmap())
				res := aclResult{ACL: l.Name, Allowed: ok, By: "default"}
				if by != nil {
					res.By = by.String()
				}
				d.Results = append(d.Results, res)
			}
		}
	}
	c.render(w, r, status, "acls", page{Title: "ACLs", Flash: flash, Error: errMsg, Data: d})
}

// aclEdit applies one edit of the ACLs page through security.Store (the
// CLI's `acl` and `profile` commands' rules and change feed), makes it live
// and journals it.
func (c *Console) aclEdit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form could not be read: "+err.Error(), http.StatusBadRequest)
		return
	}
	f := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	st := security.NewStore(c.d.DB)
	ctx := r.Context()
	name := f("acl")
	var err error
	var what string
	switch f("op") {
	case "add-list":
		err, what = st.AddACL(ctx, name, f("default") == "allow"), "acl "+name+" added (default "+f("default")+")"
	case "default":
		err, what = st.SetDefault(ctx, name, f("default") == "allow"), "acl "+name+": default "+f("default")
	case "add-node", "remove-node":
		var n acl.Node
		n, err = acl.ParseNode(f("action") == "allow", f("cidr"))
		if err == nil && f("op") == "add-node" {
			_, err = st.AddNode(ctx, name, n)
			what = "acl " + name + ": " + n.String() + " added"
		} else if err == nil {
			err = st.RemoveNode(ctx, name, n.Prefix)
			what = "acl " + name + ": " + n.Prefix.String() + " removed"
		}
	case "profile":
		var p store.Profile
		p, err = st.Profile(ctx, cmp.Or(f("profile"), security.DefaultProfile))
		if err == nil {
			p.RegisterACL, p.InboundACL, p.TrustedACL = f("register_acl"), f("inbound_acl"), f("trusted_acl")
			err = st.SetProfile(ctx, p)
			what = "profile " + p.Name + ": register " + cmp.Or(p.RegisterACL, "-") + ", inbound " + cmp.Or(p.InboundACL, "-") +
				", trusted " + cmp.Or(p.TrustedACL, "-")
		}
	default:
		http.Error(w, "unknown ACL operation", http.StatusBadRequest)
		return
	}
	if err != nil {
		c.aclPage(w, r, http.StatusBadRequest, "", err.Error())
		return
	}
	c.sync(ctx)
	code := cause.ACLChanged
	if f("op") == "profile" {
		code = cause.ProfileChanged
	}
	c.audit(r, code, what)
	c.aclPage(w, r, http.StatusOK, what, "")
}

// ---- Calls

type callsData struct {
	Ext, Since, Result string
	Active, Records    []store.Call
}

func (c *Console) callFilter(w http.ResponseWriter, r *http.Request) (store.CallFilter, callsData, bool) {
	q := r.URL.Query()
	d := callsData{Ext: strings.TrimSpace(q.Get("ext")), Since: strings.TrimSpace(q.Get("since")), Result: q.Get("result")}
	f := store.CallFilter{Ext: d.Ext, Limit: 200, Failed: d.Result == "failed"}
	if len(d.Ext) > 64 {
		http.Error(w, "the extension filter is too long", http.StatusBadRequest)
		return f, d, false
	}
	if d.Since != "" {
		t, err := time.Parse("2006-01-02", d.Since)
		if err != nil {
			http.Error(w, "since must be a date such as 2026-12-01", http.StatusBadRequest)
			return f, d, false
		}
		f.Since = t
	}
	return f, d, true
}

func (c *Console) calls(w http.ResponseWriter, r *http.Request) {
	f, d, ok := c.callFilter(w, r)
	if !ok {
		return
	}
	_ = c.d.Server.Flush(r.Context())
	recs, err := c.d.DB.QueryCalls(r.Context(), f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d.Records = recs
	act, err := c.d.DB.QueryCalls(r.Context(), store.CallFilter{Active: true, Limit: 100})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d.Active = act
	c.render(w, r, http.StatusOK, "calls", page{Title: "Calls", Live: true, Data: d})
}

func (c *Console) exportCalls(w http.ResponseWriter, r *http.Request) {
	f, _, ok := c.callFilter(w, r)
	if !ok {
		return
	}
	f.Limit = 100000
	_ = c.d.Server.Flush(r.Context())
	recs, err := c.d.DB.QueryCalls(r.Context(), f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="calls.csv"`)
	cw := csv.NewWriter(w)
	cw.Write([]string{"id", "start", "from", "to", "domain", "caller_source", "sip_status", "cause", "hangup_by", "duration_s", "user_agent"})
	now := c.d.Now()
	for _, k := range recs {
		cw.Write([]string{strconv.FormatInt(k.ID, 10), k.Start.UTC().Format(time.RFC3339), csvSafe(k.From), csvSafe(k.To), k.Domain, k.Source,
			strconv.Itoa(k.SIPStatus), string(k.Cause), k.HangupBy, strconv.Itoa(int(k.Duration(now).Seconds())), csvSafe(k.UserAgent)})
	}
	cw.Flush()
}

// ---- Doctor

type doctorData struct {
	Ext, Domain, Caller string
	Report              *doctor.Report
	Call                *doctor.CallReport
	Error               string
}

func (c *Console) doctorPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := doctorData{Ext: strings.TrimSpace(q.Get("ext")), Domain: strings.TrimSpace(q.Get("domain")), Caller: strings.TrimSpace(q.Get("caller"))}
	if d.Domain == "" {
		d.Domain = cmp.Or(c.d.Dir.DefaultDomain(), c.d.Server.Runtime().Domain)
	}
	if d.Ext != "" {
		switch {
		case !numberRE.MatchString(d.Ext):
			d.Error = fmt.Sprintf("%q is not an extension number (e.g. 2002)", d.Ext)
		case d.Caller != "" && !numberRE.MatchString(d.Caller):
			d.Error = fmt.Sprintf("%q is not an extension number (e.g. 2001)", d.Caller)
		default:
			if err := c.diagnose(r.Context(), &d); err != nil {
				d.Error = err.Error()
			}
		}
	}
	status := http.StatusOK
	if d.Error != "" {
		status = http.StatusBadRequest
	}
	c.render(w, r, status, "doctor", page{Title: "Doctor", Data: d})
}

// diagnose runs the CLI's doctor on the running server's data: the same
// Reader, Diagnose and findings.
func (c *Console) diagnose(ctx context.Context, d *doctorData) error {
	_ = c.d.Server.Flush(ctx)
	rt := c.d.Server.Runtime()
	sv := doctor.Serve{Running: true, Known: true, PID: rt.PID, StartedAt: rt.StartedAt}
	for _, l := range rt.Listeners {
		sv.Listeners = append(sv.Listeners, doctor.Listener{Proto: strings.ToLower(l.Proto), Addr: l.Addr})
	}
	rd := &doctor.Reader{DB: c.d.DB, Serve: sv, Calls: doctor.CallsFromDB(c.d.DB), Bans: doctor.BansFromDB(c.d.DB),
		Now: c.d.Now, Loc: c.d.Zone}
	if d.Caller != "" {
		in, err := rd.GatherCall(ctx, d.Caller, d.Ext, d.Domain)
		if err != nil {
			return err
		}
		rep := doctor.DiagnoseCall(ctx, in)
		d.Call = &rep
		return nil
	}
	in, err := rd.Gather(ctx, d.Ext, d.Domain)
	if err != nil {
		return err
	}
	rep := doctor.Diagnose(ctx, in)
	d.Report = &rep
	return nil
}

// ---- Journal

type journalData struct {
	Ext, IP, Cause, Kind, Since string
	Follow                      bool
	Events                      []store.Event
}

func (c *Console) journalPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := journalData{Ext: strings.TrimSpace(q.Get("ext")), IP: strings.TrimSpace(q.Get("ip")), Cause: strings.TrimSpace(q.Get("cause")),
		Kind: strings.TrimSpace(q.Get("kind")), Since: strings.TrimSpace(q.Get("since")), Follow: q.Get("follow") != ""}
	for _, v := range []string{d.Ext, d.IP, d.Cause, d.Kind, d.Since} {
		if len(v) > 64 {
			http.Error(w, "a filter is too long (at most 64 characters)", http.StatusBadRequest)
			return
		}
	}
	f := store.JournalFilter{Extension: d.Ext, IP: d.IP, Cause: cause.Code(d.Cause), Kind: d.Kind, Limit: 200}
	if d.Since != "" {
		dur, err := time.ParseDuration(d.Since)
		if err != nil || dur <= 0 {
			http.Error(w, "since must be a duration such as 15m or 2h", http.StatusBadRequest)
			return
		}
		f.Since = c.d.Now().Add(-dur)
	}
	_ = c.d.Server.Flush(r.Context())
	evs, err := c.d.DB.QueryEvents(r.Context(), f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d.Events = evs
	c.render(w, r, http.StatusOK, "journal", page{Title: "Journal", Live: true, Data: d})
}
