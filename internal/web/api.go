package web

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/control"
	"github.com/switchboard-pbx/switchboard/internal/digest"
	"github.com/switchboard-pbx/switchboard/internal/doctor"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/security"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/view"
)

// apiRoutes registers the JSON API under /api/v1/ (see docs/api.md).
func (s *Server) apiRoutes() {
	h := func(pattern string, fn func(w http.ResponseWriter, r *http.Request)) {
		s.mux.Handle(pattern, s.requireAPI(http.HandlerFunc(fn)))
	}
	h("GET /api/v1/status", s.apiStatus)
	h("GET /api/v1/extensions", s.apiExtensions)
	h("POST /api/v1/extensions", s.apiExtensionCreate)
	h("GET /api/v1/extensions/{number}", s.apiExtension)
	h("PATCH /api/v1/extensions/{number}", s.apiExtensionUpdate)
	h("DELETE /api/v1/extensions/{number}", s.apiExtensionDelete)
	h("POST /api/v1/extensions/{number}/password", s.apiExtensionPassword)
	h("GET /api/v1/registrations", s.apiRegistrations)
	h("DELETE /api/v1/registrations", s.apiRegistrationsDelete)
	h("GET /api/v1/calls", s.apiCalls)
	h("GET /api/v1/calls/active", s.apiCallsActive)
	h("POST /api/v1/calls/{id}/hangup", s.apiCallHangup)
	h("GET /api/v1/journal", s.apiJournal)
	h("GET /api/v1/doctor/call", s.apiDoctorCall)
	h("GET /api/v1/doctor/{number}", s.apiDoctor)
	h("GET /api/v1/acls", s.apiACLs)
	h("GET /api/v1/bans", s.apiBans)
	h("POST /api/v1/bans", s.apiBanAdd)
	h("DELETE /api/v1/bans/{ip}", s.apiBanDelete)
	h("GET /api/v1/profile", s.apiProfile)
	s.mux.Handle("/api/", s.requireAPI(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API endpoint: "+r.Method+" "+r.URL.Path+" (see docs/api.md)")
	})))
}

// requireAPI lets requests with a valid Bearer token or console session
// through; others get 401 JSON. Bodies are limited to 1 MiB.
func (s *Server) requireAPI(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.authenticate(r, true)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
			writeError(w, http.StatusUnauthorized, "not authenticated: send 'Authorization: Bearer TOKEN' (make one with: switchboard admin token add NAME) or log in to the console")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h.ServeHTTP(w, r.WithContext(withSession(r.Context(), sess)))
	})
}

// decode reads a JSON body into v: one object, unknown fields refused.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "send the body as JSON with Content-Type: application/json")
		return false
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", mbe.Limit))
		case errors.Is(err, io.EOF):
			writeError(w, http.StatusBadRequest, "the body is empty: send a JSON object (see docs/api.md)")
		default:
			writeError(w, http.StatusBadRequest, "the body is not valid JSON for this endpoint: "+err.Error()+" (see docs/api.md)")
		}
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "send one JSON object, nothing after it")
		return false
	}
	return true
}

// storeError answers a store failure: 404 for not found, 409 for
// duplicates, else 500 (logged).
func (s *Server) storeError(w http.ResponseWriter, what string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, what+" not found")
	case errors.Is(err, store.ErrDuplicate):
		writeError(w, http.StatusConflict, what+" already exists")
	default:
		s.log.Error("api", "what", what, "error", err)
		writeError(w, http.StatusInternalServerError, "the server could not read or write its database; see its log")
	}
}

func queryInt(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s=%q: give a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

var numberRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}$`)

func validNumber(n string) error {
	if !numberRE.MatchString(n) {
		return fmt.Errorf("invalid extension number %q: use 1-32 letters, digits, '.', '_', '+' or '-', starting with a letter or digit", n)
	}
	return nil
}

// domainOf returns the canonical name of the domain query parameter (or
// the default domain).
func (s *Server) domainOf(ctx context.Context, name string) (string, error) {
	if name == "" {
		if v, ok, err := s.deps.DB.Meta(ctx, "default_domain"); err != nil || ok {
			return v, err
		}
		return "", errors.New("no default domain yet")
	}
	d, err := s.deps.DB.Domain(ctx, name)
	if err != nil {
		return "", err
	}
	return d.Name, nil
}

// runtime returns the running server's facts (Backend), or none.
func (s *Server) runtime() (control.Runtime, bool) {
	if s.deps.Backend == nil {
		return control.Runtime{}, false
	}
	return s.deps.Backend.Runtime(), true
}

// syncDirectory makes the running server apply the directory changes just
// written before the answer goes out.
func (s *Server) syncDirectory(ctx context.Context) {
	if s.deps.Backend == nil {
		return
	}
	if want, err := s.deps.DB.LastChange(ctx); err == nil && want > 0 {
		if _, err := s.deps.Backend.Sync(ctx, want); err != nil {
			s.log.Warn("api: directory change not applied yet", "error", err)
		}
	}
}

func (s *Server) flush(ctx context.Context) {
	if s.deps.Backend != nil {
		_ = s.deps.Backend.Flush(ctx)
	}
}

func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	rt, running := s.runtime()
	n, err := s.deps.DB.CountRegistrations(r.Context(), s.now())
	if err != nil {
		s.storeError(w, "registrations", err)
		return
	}
	if s.deps.Loc != nil {
		n = s.deps.Loc.Count()
	}
	v, err := view.StatusOf(r.Context(), s.deps.DB, s.dataDir(), rt, running, n)
	if err != nil {
		s.storeError(w, "status", err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) dataDir() string { return s.cfg.DataDir }

// extensionPage is the answer of GET /api/v1/extensions.
type extensionPage struct {
	Extensions []view.Extension `json:"extensions"`
	Total      int              `json:"total"`
	Offset     int              `json:"offset"`
	Limit      int              `json:"limit"`
	// Next is the cursor of the page after this one (send it as ?after=),
	// "" on the last page.
	Next string `json:"next"`
}

// apiExtensions answers one page of the directory, read by the store
// through an index (a cursor page costs the same at any depth).
func (s *Server) apiExtensions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit", 100, 1, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	offset, err := queryInt(r, "offset", 0, 0, 10_000_000)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	eq := store.ExtensionQuery{Domain: q.Get("domain"), Search: trim(q.Get("q"), 100), Offset: offset, Limit: limit + 1}
	if after := q.Get("after"); after != "" {
		dom, num, ok := strings.Cut(after, "/")
		if !ok || dom == "" || len(dom) > 253 || validNumber(num) != nil {
			writeError(w, http.StatusBadRequest, "after="+trim(after, 100)+": give the next field of the previous page (DOMAIN/NUMBER)")
			return
		}
		if offset != 0 {
			writeError(w, http.StatusBadRequest, "give either after (a cursor) or offset, not both")
			return
		}
		eq.AfterDomain, eq.AfterNumber = dom, num
	}
	exts, total, err := s.deps.DB.ListExtensions(r.Context(), eq)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "domain "+trim(eq.Domain, 100)+" not found")
		return
	}
	if err != nil {
		s.storeError(w, "extensions", err)
		return
	}
	page := extensionPage{Extensions: []view.Extension{}, Total: total, Offset: offset, Limit: limit}
	if len(exts) > limit {
		exts = exts[:limit]
		last := exts[limit-1]
		page.Next = last.Domain + "/" + last.Number
	}
	for _, e := range exts {
		page.Extensions = append(page.Extensions, view.ExtensionOf(e))
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) lookupExt(w http.ResponseWriter, r *http.Request) (store.Extension, bool) {
	num := r.PathValue("number")
	if err := validNumber(num); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return store.Extension{}, false
	}
	dom, err := s.domainOf(r.Context(), r.URL.Query().Get("domain"))
	if err != nil {
		s.storeError(w, "domain "+r.URL.Query().Get("domain"), err)
		return store.Extension{}, false
	}
	e, err := s.deps.DB.Extension(r.Context(), dom, num)
	if err != nil {
		s.storeError(w, "extension "+num+"@"+dom, err)
		return store.Extension{}, false
	}
	return e, true
}

func (s *Server) apiExtension(w http.ResponseWriter, r *http.Request) {
	if e, ok := s.lookupExt(w, r); ok {
		writeJSON(w, http.StatusOK, view.ExtensionOf(e))
	}
}

// extensionInput is the body of POST and PATCH /api/v1/extensions: the
// fields of view.Extension that can be set (nil: unchanged or default).
type extensionInput struct {
	Extension        string  `json:"extension"`
	Domain           string  `json:"domain"`
	Enabled          *bool   `json:"enabled"`
	Name             *string `json:"name"`
	CallerIDNumber   *string `json:"caller_id_number"`
	Description      *string `json:"description"`
	MaxRegistrations *int    `json:"max_registrations"`
	CallTimeout      *int    `json:"call_timeout_s"`
	ACL              *string `json:"acl"`
	Password         *string `json:"password"`
}

// apply sets e's fields from in, checking each.
func (s *Server) apply(ctx context.Context, e *store.Extension, in extensionInput) error {
	if in.Enabled != nil {
		e.Enabled = *in.Enabled
	}
	for _, f := range []struct {
		v   *string
		dst *string
		n   string
	}{{in.Name, &e.CallerIDName, "name"}, {in.CallerIDNumber, &e.CallerIDNumber, "caller_id_number"}, {in.Description, &e.Description, "description"}} {
		if f.v == nil {
			continue
		}
		if len(*f.v) > 200 || strings.ContainsAny(*f.v, "\r\n\x00") {
			return fmt.Errorf("%s: at most 200 characters on one line", f.n)
		}
		*f.dst = *f.v
	}
	if in.MaxRegistrations != nil {
		e.MaxRegistrations = *in.MaxRegistrations
	}
	if in.CallTimeout != nil {
		e.CallTimeout = *in.CallTimeout
	}
	if e.MaxRegistrations < 1 || e.MaxRegistrations > 100 {
		return fmt.Errorf("max_registrations must be 1..100, got %d", e.MaxRegistrations)
	}
	if e.CallTimeout < 1 || e.CallTimeout > 3600 {
		return fmt.Errorf("call_timeout_s must be 1..3600, got %d", e.CallTimeout)
	}
	if in.ACL != nil {
		if *in.ACL != "" {
			ok, err := s.deps.DB.HasACL(ctx, *in.ACL)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("acl %q does not exist: list them with GET /api/v1/acls", *in.ACL)
			}
		}
		e.ACL = *in.ACL
	}
	return nil
}

func (s *Server) setPassword(ctx context.Context, e *store.Extension, pw string) error {
	if len(pw) < 8 || len(pw) > 128 || strings.Contains(pw, e.Number) && len(pw) < len(e.Number)+6 {
		return errors.New("password too weak: at least 8 characters, not mostly the extension number (or leave it out to get a generated one)")
	}
	d, err := s.deps.DB.Domain(ctx, e.Domain)
	if err != nil {
		return err
	}
	e.HA1MD5 = digest.HA1(digest.MD5, e.Number, d.Realm, pw)
	e.HA1SHA256 = digest.HA1(digest.SHA256, e.Number, d.Realm, pw)
	return nil
}

// generatePassword returns a strong random password (20 characters
// without look-alikes), like `switchboard ext add`.
func generatePassword() (string, error) {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			return "", err
		}
		b[i] = alphabet[n.Int64()]
	}
	return string(b), nil
}

func (s *Server) apiExtensionCreate(w http.ResponseWriter, r *http.Request) {
	var in extensionInput
	if !decode(w, r, &in) {
		return
	}
	if err := validNumber(in.Extension); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	dom, err := s.domainOf(r.Context(), in.Domain)
	if err != nil {
		s.storeError(w, "domain "+in.Domain, err)
		return
	}
	e := store.Extension{Domain: dom, Number: in.Extension, Enabled: true, MaxRegistrations: 5, CallTimeout: 30}
	if err := s.apply(r.Context(), &e, in); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	pw := ""
	if in.Password != nil {
		pw = *in.Password
	} else if pw, err = generatePassword(); err != nil {
		s.storeError(w, "password", err)
		return
	}
	if err := s.setPassword(r.Context(), &e, pw); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	e, err = s.deps.DB.AddExtension(r.Context(), e)
	if err != nil {
		s.storeError(w, "extension "+in.Extension+"@"+dom, err)
		return
	}
	s.syncDirectory(r.Context())
	s.Audit(r, cause.ExtensionChanged, "extension "+e.Number+"@"+dom+" added")
	v := view.ExtensionOf(e)
	if in.Password == nil {
		v.Password = pw // generated: shown this once
	}
	writeJSON(w, http.StatusCreated, v)
}

func (s *Server) apiExtensionUpdate(w http.ResponseWriter, r *http.Request) {
	e, ok := s.lookupExt(w, r)
	if !ok {
		return
	}
	var in extensionInput
	if !decode(w, r, &in) {
		return
	}
	if (in.Extension != "" && in.Extension != e.Number) || (in.Domain != "" && !strings.EqualFold(in.Domain, e.Domain)) {
		writeError(w, http.StatusBadRequest, "extension and domain cannot change: delete and create instead")
		return
	}
	if err := s.apply(r.Context(), &e, in); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if in.Password != nil {
		if err := s.setPassword(r.Context(), &e, *in.Password); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if err := s.deps.DB.UpdateExtension(r.Context(), e); err != nil {
		s.storeError(w, "extension "+e.Number+"@"+e.Domain, err)
		return
	}
	s.syncDirectory(r.Context())
	s.Audit(r, cause.ExtensionChanged, "extension "+e.Number+"@"+e.Domain+" changed")
	e, err := s.deps.DB.Extension(r.Context(), e.Domain, e.Number)
	if err != nil {
		s.storeError(w, "extension", err)
		return
	}
	writeJSON(w, http.StatusOK, view.ExtensionOf(e))
}

func (s *Server) apiExtensionDelete(w http.ResponseWriter, r *http.Request) {
	e, ok := s.lookupExt(w, r)
	if !ok {
		return
	}
	if err := s.deps.DB.RemoveExtension(r.Context(), e.Domain, e.Number); err != nil {
		s.storeError(w, "extension "+e.Number+"@"+e.Domain, err)
		return
	}
	s.syncDirectory(r.Context())
	s.Audit(r, cause.ExtensionChanged, "extension "+e.Number+"@"+e.Domain+" removed")
	writeJSON(w, http.StatusOK, map[string]any{"extension": e.Number, "domain": e.Domain, "removed": true})
}

func (s *Server) apiExtensionPassword(w http.ResponseWriter, r *http.Request) {
	e, ok := s.lookupExt(w, r)
	if !ok {
		return
	}
	pw, err := generatePassword()
	if err == nil {
		err = s.setPassword(r.Context(), &e, pw)
	}
	if err == nil {
		err = s.deps.DB.UpdateExtension(r.Context(), e)
	}
	if err != nil {
		s.storeError(w, "extension "+e.Number+"@"+e.Domain, err)
		return
	}
	s.syncDirectory(r.Context())
	s.Audit(r, cause.ExtensionChanged, "new password for extension "+e.Number+"@"+e.Domain)
	writeJSON(w, http.StatusOK, map[string]string{"extension": e.Number, "domain": e.Domain, "password": pw})
}

func (s *Server) apiRegistrations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var bs []store.Binding
	if s.deps.Loc != nil {
		bs = s.deps.Loc.All()
	} else {
		var err error
		if bs, err = s.deps.DB.BindingsOf(r.Context(), "", ""); err != nil {
			s.storeError(w, "registrations", err)
			return
		}
	}
	now := s.now()
	out := []view.Registration{}
	for _, b := range bs {
		if !b.ExpiresAt.After(now) || (q.Get("ext") != "" && b.Extension != q.Get("ext")) ||
			(q.Get("domain") != "" && !strings.EqualFold(b.Domain, q.Get("domain"))) {
			continue
		}
		out = append(out, view.RegistrationOf(b, now))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiRegistrationsDelete(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ext := q.Get("ext")
	if ext == "" {
		writeError(w, http.StatusBadRequest, "give ?ext=NUMBER (and optionally &contact=URI, &domain=D)")
		return
	}
	if s.deps.Backend == nil {
		writeError(w, http.StatusServiceUnavailable, "no running server to remove registrations from")
		return
	}
	dom, err := s.domainOf(r.Context(), q.Get("domain"))
	if err != nil {
		s.storeError(w, "domain "+q.Get("domain"), err)
		return
	}
	gone, err := s.deps.Backend.RemoveRegistrations(r.Context(), dom, ext, q.Get("contact"), AdminName(r)+" (console)")
	if err != nil {
		s.storeError(w, "registrations", err)
		return
	}
	now := s.now()
	out := []view.Registration{}
	for _, b := range gone {
		out = append(out, view.RegistrationOf(b, now))
	}
	writeJSON(w, http.StatusOK, map[string]any{"removed": out})
}

func (s *Server) apiCalls(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit", 50, 1, 10000)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	for _, k := range []string{"ext", "from", "to"} {
		if v := q.Get(k); v != "" {
			if err := validNumber(v); err != nil {
				writeError(w, http.StatusBadRequest, k+": "+err.Error())
				return
			}
		}
	}
	dom := ""
	if q.Get("domain") != "" {
		if dom, err = s.domainOf(r.Context(), q.Get("domain")); err != nil {
			s.storeError(w, "domain "+q.Get("domain"), err)
			return
		}
	}
	s.callList(w, r, calls.Filter{Ext: q.Get("ext"), From: q.Get("from"), To: q.Get("to"), Domain: dom,
		Active: q.Get("active") == "true", Failed: q.Get("failed") == "true", Limit: limit})
}

func (s *Server) apiCallsActive(w http.ResponseWriter, r *http.Request) {
	s.callList(w, r, calls.Filter{Active: true, Limit: 10000})
}

func (s *Server) callList(w http.ResponseWriter, r *http.Request, f calls.Filter) {
	s.flush(r.Context())
	recs, err := calls.Query(r.Context(), s.deps.DB, f)
	if err != nil {
		s.storeError(w, "calls", err)
		return
	}
	now := s.now()
	live := s.liveMedia(recs)
	out := make([]view.Call, 0, len(recs))
	for _, rec := range recs {
		if legs, ok := live[rec.CallID]; ok && rec.Active() {
			rec.Media = legs
		}
		out = append(out, view.CallOf(rec, now))
	}
	writeJSON(w, http.StatusOK, out)
}

// liveMedia returns the media relay's live counters of the calls in
// progress among recs, by Call-ID (nil when the server relays none).
func (s *Server) liveMedia(recs []calls.Record) map[string][]store.MediaLeg {
	mb, ok := s.deps.Backend.(control.MediaBackend)
	if !ok {
		return nil
	}
	var ids []string
	for _, r := range recs {
		if r.Active() {
			ids = append(ids, r.CallID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	live := mb.LiveMedia(ids, len(ids))
	out := make(map[string][]store.MediaLeg, len(live))
	for _, l := range live {
		out[l.CallID] = l.Legs
	}
	return out
}

func (s *Server) apiCallHangup(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		writeError(w, http.StatusBadRequest, "the call id is a number, e.g. POST /api/v1/calls/12/hangup (list calls in progress: GET /api/v1/calls/active)")
		return
	}
	if s.deps.Backend == nil {
		writeError(w, http.StatusServiceUnavailable, "no running server")
		return
	}
	rec, err := calls.Get(r.Context(), s.deps.DB, id)
	if err != nil {
		s.storeError(w, fmt.Sprintf("call %d", id), err)
		return
	}
	res, err := s.deps.Backend.HangupCall(r.Context(), rec.CallID, AdminName(r)+" (console)")
	if errors.Is(err, control.ErrNoSuchCall) {
		writeError(w, http.StatusConflict, fmt.Sprintf("call %d is not up (ended, or still ringing): nothing to hang up", id))
		return
	}
	if err != nil {
		writeError(w, http.StatusBadGateway, "hangup: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": rec.ID, "call_id": rec.CallID, "caller_status": res.Caller, "callee_status": res.Callee})
}

func (s *Server) apiJournal(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit", 100, 1, 10000)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f := journal.Filter{Extension: q.Get("ext"), Domain: q.Get("domain"), Kind: q.Get("kind"), Cause: cause.Code(q.Get("cause")), Limit: limit}
	if ip := q.Get("ip"); ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			writeError(w, http.StatusBadRequest, "ip="+trim(ip, 50)+": give an IP address")
			return
		}
		f.IP = a.String()
	}
	if v := q.Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if t, terr := time.Parse(time.RFC3339, v); terr == nil {
			f.Since = t
		} else if err == nil && d > 0 {
			f.Since = s.now().Add(-d)
		} else {
			writeError(w, http.StatusBadRequest, "since="+trim(v, 50)+": give a duration such as 10m or an RFC 3339 time")
			return
		}
	}
	if v := q.Get("after_id"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "after_id: give an event id")
			return
		}
		f.AfterID, f.Oldest = n, true
	}
	if s.deps.Journal != nil {
		s.deps.Journal.Flush(r.Context())
	}
	evs, err := journal.Query(r.Context(), s.deps.DB, f)
	if err != nil {
		s.storeError(w, "journal", err)
		return
	}
	if evs == nil {
		evs = []journal.Event{}
	}
	writeJSON(w, http.StatusOK, evs)
}

// doctorReader reads what the doctor needs from the running server's
// database; the listeners are the server's own, so no probe is needed.
func (s *Server) doctorReader() *doctor.Reader {
	rt, running := s.runtime()
	sv := doctor.Serve{Running: running, Known: running, PID: rt.PID, StartedAt: rt.StartedAt}
	for _, l := range rt.Listeners {
		sv.Listeners = append(sv.Listeners, doctor.Listener{Proto: strings.ToLower(l.Proto), Addr: l.Addr})
	}
	return &doctor.Reader{DB: s.deps.DB, Serve: sv, Calls: doctor.CallsFromDB(s.deps.DB), Bans: doctor.BansFromDB(s.deps.DB),
		Loc: time.UTC, Now: s.now}
}

func (s *Server) apiDoctor(w http.ResponseWriter, r *http.Request) {
	num := r.PathValue("number")
	if err := validNumber(num); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	dom, err := s.domainOf(r.Context(), r.URL.Query().Get("domain"))
	if err != nil {
		s.storeError(w, "domain "+r.URL.Query().Get("domain"), err)
		return
	}
	s.flush(r.Context())
	in, err := s.doctorReader().Gather(r.Context(), num, dom)
	if err != nil {
		s.storeError(w, "doctor", err)
		return
	}
	writeJSON(w, http.StatusOK, doctor.Diagnose(r.Context(), in))
}

func (s *Server) apiDoctorCall(w http.ResponseWriter, r *http.Request) {
	if idText := r.URL.Query().Get("id"); idText != "" {
		id, err := strconv.ParseInt(idText, 10, 64)
		if err != nil || id < 1 {
			writeError(w, http.StatusBadRequest, "id is a call's number, e.g. GET /api/v1/doctor/call?id=12 (list calls: GET /api/v1/calls)")
			return
		}
		s.flush(r.Context())
		in, err := s.doctorReader().GatherCallID(r.Context(), id)
		if errors.Is(err, doctor.ErrNoSuchCall) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no call %d on record", id))
			return
		}
		if err != nil {
			s.storeError(w, "doctor", err)
			return
		}
		s.liveCallMedia(&in)
		writeJSON(w, http.StatusOK, doctor.DiagnoseCall(r.Context(), in))
		return
	}
	from, to := r.URL.Query().Get("from"), r.URL.Query().Get("to")
	for _, n := range []string{from, to} {
		if err := validNumber(n); err != nil {
			writeError(w, http.StatusBadRequest, "give ?from=CALLER&to=CALLEE: "+err.Error())
			return
		}
	}
	dom, err := s.domainOf(r.Context(), r.URL.Query().Get("domain"))
	if err != nil {
		s.storeError(w, "domain "+r.URL.Query().Get("domain"), err)
		return
	}
	s.flush(r.Context())
	in, err := s.doctorReader().GatherCall(r.Context(), from, to, dom)
	if err != nil {
		s.storeError(w, "doctor", err)
		return
	}
	s.liveCallMedia(&in)
	writeJSON(w, http.StatusOK, doctor.DiagnoseCall(r.Context(), in))
}

// liveCallMedia gives the doctor the relay's live counters of a call in
// progress (its record gets its media at the end).
func (s *Server) liveCallMedia(in *doctor.CallInputs) {
	l := in.Last
	if l == nil || !l.Active || len(l.Media) > 0 {
		return
	}
	if mb, ok := s.deps.Backend.(control.MediaBackend); ok {
		if live := mb.LiveMedia([]string{l.CallID}, 1); len(live) == 1 {
			l.Media = live[0].Legs
		}
	}
}

func (s *Server) apiACLs(w http.ResponseWriter, r *http.Request) {
	lists, err := s.deps.DB.ACLs(r.Context())
	if err != nil {
		s.storeError(w, "acls", err)
		return
	}
	st := security.NewStore(s.deps.DB)
	out := []view.ACL{}
	for _, l := range lists {
		used, err := st.UsedBy(r.Context(), l.Name)
		if err != nil {
			s.storeError(w, "acls", err)
			return
		}
		out = append(out, view.ACLOf(l, used))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiBans(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	bans, err := security.NewStore(s.deps.DB).Bans(r.Context(), now)
	if err != nil {
		s.storeError(w, "bans", err)
		return
	}
	out := []view.Ban{}
	for _, b := range bans {
		out = append(out, view.BanOf(b, now))
	}
	writeJSON(w, http.StatusOK, out)
}

// banInput is the body of POST /api/v1/bans.
type banInput struct {
	IP     string `json:"ip"`
	ForS   int64  `json:"for_s"` // 0 = permanent
	Reason string `json:"reason"`
}

func (s *Server) apiBanAdd(w http.ResponseWriter, r *http.Request) {
	var in banInput
	if !decode(w, r, &in) {
		return
	}
	ip, err := netip.ParseAddr(in.IP)
	if err != nil {
		writeError(w, http.StatusBadRequest, "ip: give an IP address, e.g. 203.0.113.7")
		return
	}
	ip = ip.Unmap()
	if in.ForS < 0 || in.ForS > 10*365*86400 {
		writeError(w, http.StatusBadRequest, "for_s: give seconds (0 = permanent)")
		return
	}
	if in.Reason == "" {
		in.Reason = "banned by " + AdminName(r)
	}
	if len(in.Reason) > 200 || strings.ContainsAny(in.Reason, "\r\n") {
		writeError(w, http.StatusBadRequest, "reason: one line of at most 200 characters")
		return
	}
	st := security.NewStore(s.deps.DB)
	if p, err := st.Profile(r.Context(), security.DefaultProfile); err == nil && p.TrustedACL != "" {
		if l, err := st.ACL(r.Context(), p.TrustedACL); err == nil {
			if ok, _ := l.Decide(ip); ok {
				writeError(w, http.StatusConflict, ip.String()+" is in the trusted acl "+l.Name+", which is exempt from bans: remove it from that acl first")
				return
			}
		}
	}
	now := s.now()
	b := acl.Ban{IP: ip, Reason: in.Reason, Since: now}
	if in.ForS > 0 {
		b.Until = now.Add(time.Duration(in.ForS) * time.Second)
	}
	if err := st.PutBan(r.Context(), b); err != nil {
		s.storeError(w, "ban", err)
		return
	}
	s.syncDirectory(r.Context())
	s.Audit(r, cause.BanAdded, "ban of "+ip.String()+" added")
	writeJSON(w, http.StatusCreated, view.BanOf(b, now))
}

func (s *Server) apiBanDelete(w http.ResponseWriter, r *http.Request) {
	ip, err := netip.ParseAddr(r.PathValue("ip"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "give an IP address, e.g. DELETE /api/v1/bans/203.0.113.7")
		return
	}
	ip = ip.Unmap()
	if err := security.NewStore(s.deps.DB).RemoveBan(r.Context(), ip, s.now()); errors.Is(err, security.ErrNoBan) {
		writeError(w, http.StatusNotFound, ip.String()+" is not banned: see GET /api/v1/bans")
		return
	} else if err != nil {
		s.storeError(w, "ban", err)
		return
	}
	s.syncDirectory(r.Context())
	s.Audit(r, cause.BanLifted, "ban of "+ip.String()+" lifted")
	writeJSON(w, http.StatusOK, map[string]any{"ip": ip.String(), "removed": true})
}

func (s *Server) apiProfile(w http.ResponseWriter, r *http.Request) {
	rt, running := s.runtime()
	dom, err := s.domainOf(r.Context(), "")
	if err != nil {
		s.storeError(w, "default domain", err)
		return
	}
	v, err := view.ProfileShowOf(r.Context(), s.deps.DB, security.DefaultProfile, dom, rt, running)
	if err != nil {
		s.storeError(w, "profile", err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}
