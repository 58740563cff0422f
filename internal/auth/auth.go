// Package auth authenticates SIP requests (REGISTER with 401, INVITE and
// other requests with 407) against the directory with digest credentials
// and HMAC-signed nonces. It decides; the caller answers and journals.
//
// An unknown user, a disabled extension, a wrong password and a domain we do
// not serve all end in the same cause family and the same answer (403), so
// nothing lets a scanner tell which extensions exist; only the journal
// records which it was.
package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/digest"
	"github.com/switchboard-pbx/switchboard/internal/directory"
)

// Authenticator checks credentials. Safe for concurrent use.
type Authenticator struct {
	Dir    *directory.Cache
	Nonces *digest.Nonces
	// Algorithms are offered in this order; MD5 alone by default, because
	// baresip 1.0 and SIPp 3.6 fail on SHA-256 challenges.
	Algorithms []digest.Algorithm
	// AllowRFC2069 accepts answers without qop (RFC 2069) although the
	// challenge offers qop="auth". Off by default: such an answer carries
	// no nonce count, so it cannot be told from a replay. When on, each
	// nonce answered without qop is accepted once (digest.Nonces.UseCount),
	// so such a phone is challenged for every request.
	AllowRFC2069 bool
}

// Result is the outcome of Check.
type Result struct {
	// Ext is the authenticated extension (nil unless Cause == ""); read-only.
	Ext *directory.Entry
	// Cause is "" on success. Challenged, StaleNonce, BadNonce and
	// NonceReplay mean "send a (new) challenge"; anything else is a final
	// refusal (see cause.AnswerFor).
	Cause cause.Code
	// AuthUser and Realm are what the phone presented.
	AuthUser, Realm string
	Detail          string
}

// NeedsChallenge reports whether the answer is a 401/407 challenge.
func (r Result) NeedsChallenge() bool {
	switch r.Cause {
	case cause.Challenged, cause.StaleNonce, cause.BadNonce, cause.NonceReplay:
		return true
	}
	return false
}

// Check authenticates req for domain (served=false: a domain we do not
// serve, which is always refused after a challenge). header is
// "Authorization" or "Proxy-Authorization".
func (a *Authenticator) Check(req *sip.Request, header, domain string, served bool) Result {
	realm := a.Dir.Realm(domain)
	var creds digest.Credentials
	found := false
	var parseErr error
	for _, h := range req.Headers() {
		if !HeaderIs(h.Name(), header) {
			continue
		}
		c, err := digest.ParseCredentials(h.Value())
		if err != nil {
			parseErr = err
			continue
		}
		if !found || strings.EqualFold(c.Realm, realm) {
			creds, found = c, true
		}
	}
	if !found {
		r := Result{Cause: cause.Challenged}
		if parseErr != nil {
			r.Detail = "credentials could not be parsed: " + parseErr.Error()
		}
		return r
	}
	res := Result{AuthUser: creds.Username, Realm: creds.Realm}
	// A stale nonce with a correct answer gets a new challenge with
	// stale=true (RFC 7616 §3.3): the phone retries without asking the
	// user. A stale nonce with a wrong answer fails like any wrong answer.
	// Nonces are bound to the realm they were issued for: one issued for
	// another domain is not ours here.
	status := a.Nonces.CheckFor(creds.Nonce, realm)
	if status == digest.NonceInvalid {
		res.Cause, res.Detail = cause.BadNonce, "nonce not issued by this server for realm "+realm
		return res
	}
	if !a.offered(creds.Algorithm) {
		res.Cause, res.Detail = cause.Challenged, "algorithm "+creds.Algorithm+" not offered"
		return res
	}
	if !served {
		res.Cause, res.Detail = cause.WrongDomain, "domain "+domain+" is not served here"
		return res
	}
	if !strings.EqualFold(creds.Realm, realm) {
		res.Cause, res.Detail = cause.WrongDomain, "realm "+creds.Realm+" does not match domain "+domain
		if !strings.EqualFold(realm, domain) {
			res.Detail += " (its realm is " + realm + ")"
		}
		return res
	}
	// The answer must be for this request (RFC 7616 §3.4.6): checked before
	// the user is looked up, so the outcome says nothing about who exists.
	if !URIMatches(creds.URI, req.Recipient) {
		res.Cause, res.Detail = cause.DigestURIMismatch,
			"digest uri "+strconv.Quote(creds.URI)+" is not the Request-URI "+strconv.Quote(req.Recipient.String())
		return res
	}
	ext, ok := a.Dir.Lookup(domain, creds.Username)
	// An unknown user, or an extension without an HA1 for the algorithm, is
	// checked against a zero HA1 and refused whatever the answer: the same
	// work as a real check, so timing does not tell a scanner which
	// extensions exist.
	ha1, n, hasHA1 := storedHA1(ext, strings.EqualFold(creds.Algorithm, string(digest.SHA256)))
	valid := digest.VerifyBinary(creds, req.Method.String(), ha1[:n]) && hasHA1
	if !ok {
		res.Cause, res.Detail = cause.ExtensionMissing, "no extension "+creds.Username+" in "+domain
		return res
	}
	if !valid {
		res.Cause, res.Detail = cause.WrongPassword, "wrong password for "+creds.Username+"@"+domain
		return res
	}
	if !ext.Enabled() {
		res.Cause, res.Detail = cause.ExtensionDisabled, "extension "+ext.Number()+"@"+domain+" is disabled"
		return res
	}
	if creds.QOP == "" && !a.AllowRFC2069 {
		res.Cause, res.Detail = cause.DigestNoQOP,
			"answer without qop (RFC 2069 digest) for "+creds.Username+"@"+domain+": the password is right, but qop=auth is required"
		return res
	}
	if status == digest.NonceStale {
		res.Cause, res.Detail = cause.StaleNonce, "nonce expired (answer correct)"
		return res
	}
	if !a.Nonces.UseCount(creds.Nonce, creds.NC) {
		res.Cause, res.Detail = cause.NonceReplay, "nonce count "+creds.NC+" reused"
		if creds.NC == "" {
			res.Detail = "nonce already used by an answer without qop"
		}
		return res
	}
	res.Ext = ext
	return res
}

// storedHA1 returns ext's binary HA1 for SHA-256 or MD5 as h[:n]. When ext
// is nil or has no such HA1, h[:n] is zeros and ok is false: the caller
// must refuse whatever answer matches it.
func storedHA1(ext *directory.Entry, sha bool) (h [sha256.Size]byte, n int, ok bool) {
	if sha {
		if ext != nil {
			h, ok = ext.HA1SHA256()
		}
		return h, sha256.Size, ok
	}
	if ext != nil {
		var m [md5.Size]byte
		m, ok = ext.HA1MD5()
		copy(h[:], m[:])
	}
	return h, md5.Size, ok
}

// URIMatches reports whether the digest uri parameter names the
// Request-URI r. Equal strings match; otherwise both are compared as SIP
// URIs (RFC 3261 §19.1.4), tolerantly where clients differ harmlessly: the
// scheme and host compare case-insensitively, an omitted port equals the
// scheme's default (5060, 5061 for sips), URI parameters and headers are
// ignored, and a uri without a user part matches a Request-URI with one
// (SIPp, by default, answers with sip:SERVER-IP:PORT whatever the request;
// the nonce count, not the uri, is what stops replays). A different user,
// password, host or port does not match, nor does a uri that does not
// parse, nor a non-SIP Request-URI that is not the same string
// (case-insensitively).
func URIMatches(uri string, r sip.Uri) bool {
	want := r.String()
	if uri == want || strings.EqualFold(uri, want) && r.Scheme != "sip" && r.Scheme != "sips" {
		return true
	}
	if !strings.EqualFold(r.Scheme, "sip") && !strings.EqualFold(r.Scheme, "sips") {
		return false
	}
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		return false
	}
	return strings.EqualFold(u.Scheme, r.Scheme) && (u.User == r.User && u.Password == r.Password || u.User == "" && u.Password == "") &&
		strings.EqualFold(strings.Trim(u.Host, "[]"), strings.Trim(r.Host, "[]")) && port(u) == port(r)
}

// port is u's port, or its scheme's default.
func port(u sip.Uri) int {
	switch {
	case u.Port != 0:
		return u.Port
	case strings.EqualFold(u.Scheme, "sips"):
		return 5061
	}
	return 5060
}

func (a *Authenticator) offered(alg string) bool {
	if alg == "" {
		alg = string(digest.MD5)
	}
	for _, o := range a.Algorithms {
		if strings.EqualFold(string(o), alg) {
			return true
		}
	}
	return false
}

// Challenge adds one challenge header per configured algorithm, in order,
// in the realm of domain (see directory.Cache.Realm). header is
// "WWW-Authenticate" or "Proxy-Authenticate".
func (a *Authenticator) Challenge(res *sip.Response, header, domain string, stale bool) {
	a.ChallengeTo(responseHeaders{res}, header, domain, stale)
}

// HeaderWriter takes the header lines of an answer being written (see
// sipreply.Answer).
type HeaderWriter interface {
	Header(name, value string)
}

// ChallengeTo is Challenge for an answer written as bytes.
func (a *Authenticator) ChallengeTo(w HeaderWriter, header, domain string, stale bool) {
	realm := a.Dir.Realm(domain)
	nonce := a.Nonces.NewFor(realm)
	for _, alg := range a.Algorithms {
		w.Header(header, digest.Challenge(realm, nonce, "", alg, stale))
	}
}

type responseHeaders struct{ res *sip.Response }

func (r responseHeaders) Header(name, value string) { r.res.AppendHeader(sip.NewHeader(name, value)) }

// HeaderIs reports whether a header's name is name, ignoring ASCII case
// only (not Unicode folding), without allocating (unlike sipgo's
// GetHeaders, which lowercases every header name of the message at each
// lookup, an allocation per name with a capital). The registrar uses it
// too.
func HeaderIs(got, name string) bool {
	if len(got) != len(name) {
		return false
	}
	for i := 0; i < len(got); i++ {
		a, b := got[i], name[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}
