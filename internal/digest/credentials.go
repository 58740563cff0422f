package digest

import (
	"errors"
	"strings"
)

// Errors returned by ParseCredentials. Returned errors may wrap these with a
// more specific reason; test with errors.Is.
var (
	// ErrNotDigest means the header uses another auth-scheme (Basic, Bearer, ...).
	ErrNotDigest = errors.New("digest: not a Digest authorization")
	// ErrMalformed means the header is syntactically invalid or lacks a
	// required parameter.
	ErrMalformed = errors.New("digest: malformed credentials")
)

// parseError is a static, pre-allocated ErrMalformed with a reason, so that
// rejecting garbage on the hot path does not allocate.
type parseError struct{ reason string }

func (e *parseError) Error() string { return "digest: malformed credentials: " + e.reason }
func (e *parseError) Unwrap() error { return ErrMalformed }

var (
	errNoScheme      error = &parseError{"missing auth-scheme"}
	errSchemeSep     error = &parseError{"auth-scheme not followed by whitespace"}
	errParamName     error = &parseError{"invalid parameter name"}
	errNoEquals      error = &parseError{"expected '=' after parameter name"}
	errEmptyValue    error = &parseError{"empty parameter value"}
	errUnterminated  error = &parseError{"unterminated quoted-string"}
	errBadQuotedChar error = &parseError{"control character in quoted-string"}
	errNoComma       error = &parseError{"expected ',' between parameters"}
	errDuplicate     error = &parseError{"duplicate parameter"}
	errMissing       error = &parseError{"missing or empty username, realm, nonce, uri or response"}
)

// Credentials is a parsed Authorization / Proxy-Authorization header value.
// String fields are unescaped parameter values; they usually share memory
// with the parsed header.
type Credentials struct {
	Username, Realm, Nonce, URI, Response, Algorithm, CNonce, QOP, NC, Opaque string
}

// Parameter indexes, used for duplicate detection.
const (
	pUsername = iota
	pRealm
	pNonce
	pURI
	pResponse
	pAlgorithm
	pCNonce
	pQOP
	pNC
	pOpaque
	numParams
)

var paramNames = [numParams]string{
	pUsername:  "username",
	pRealm:     "realm",
	pNonce:     "nonce",
	pURI:       "uri",
	pResponse:  "response",
	pAlgorithm: "algorithm",
	pCNonce:    "cnonce",
	pQOP:       "qop",
	pNC:        "nc",
	pOpaque:    "opaque",
}

func (c *Credentials) field(i int) *string {
	switch i {
	case pUsername:
		return &c.Username
	case pRealm:
		return &c.Realm
	case pNonce:
		return &c.Nonce
	case pURI:
		return &c.URI
	case pResponse:
		return &c.Response
	case pAlgorithm:
		return &c.Algorithm
	case pCNonce:
		return &c.CNonce
	case pQOP:
		return &c.QOP
	case pNC:
		return &c.NC
	case pOpaque:
		return &c.Opaque
	}
	return nil
}

// lookupParam returns the index of a known parameter name (case-insensitive)
// or -1.
func lookupParam(name string) int {
	var a, b int // candidate indexes with this length
	switch len(name) {
	case 2:
		a, b = pNC, -1
	case 3:
		a, b = pURI, pQOP
	case 5:
		a, b = pRealm, pNonce
	case 6:
		a, b = pCNonce, pOpaque
	case 8:
		a, b = pUsername, pResponse
	case 9:
		a, b = pAlgorithm, -1
	default:
		return -1
	}
	if strings.EqualFold(name, paramNames[a]) {
		return a
	}
	if b >= 0 && strings.EqualFold(name, paramNames[b]) {
		return b
	}
	return -1
}

// tchar per RFC 9110 section 5.6.2.
var tcharTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isTchar(c byte) bool { return tcharTable[c] }

// isBareValueChar reports whether c may appear in an unquoted parameter value.
// This is deliberately more lenient than token (it also admits token68 '=' and
// the '/', ':', '@', ... that some user agents send unquoted in uri), but it
// never admits whitespace, controls, '"' or ','.
func isBareValueChar(c byte) bool {
	return c > 0x20 && c != 0x7f && c != '"' && c != ','
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

func skipOWS(s string, i int) int {
	for i < len(s) && isOWS(s[i]) {
		i++
	}
	return i
}

// ParseCredentials parses an Authorization / Proxy-Authorization header value
// such as
//
//	Digest username="2001", realm="x", nonce="...", uri="sip:x", response="..."
//
// The scheme is matched case-insensitively, parameter names are
// case-insensitive, values may be quoted-strings (with backslash escapes) or
// bare, whitespace around '=' and ',' is allowed, empty list elements are
// skipped and unknown parameters are ignored.
//
// It returns ErrNotDigest if the header names another scheme, and an error
// wrapping ErrMalformed on a syntax error, a duplicated known parameter, or a
// missing or empty username, realm, nonce, uri or response. Algorithm
// defaults to "MD5" when absent; "md5" and "sha-256" in any case are
// normalised to the canonical MD5 / SHA256 spelling, other values are kept
// as sent (Verify rejects them).
//
// ParseCredentials does not allocate unless a quoted value contains a
// backslash escape, and never panics.
func ParseCredentials(v string) (Credentials, error) {
	var c Credentials
	i := skipOWS(v, 0)
	start := i
	for i < len(v) && isTchar(v[i]) {
		i++
	}
	if i == start {
		return c, errNoScheme
	}
	scheme := v[start:i]
	if i < len(v) && !isOWS(v[i]) {
		return c, errSchemeSep
	}
	if !strings.EqualFold(scheme, "Digest") {
		return c, ErrNotDigest
	}

	var seen uint16
	for {
		// Skip OWS and empty list elements.
		for i < len(v) && (isOWS(v[i]) || v[i] == ',') {
			i++
		}
		if i >= len(v) {
			break
		}
		// Name.
		start = i
		for i < len(v) && isTchar(v[i]) {
			i++
		}
		if i == start {
			return Credentials{}, errParamName
		}
		name := v[start:i]
		i = skipOWS(v, i)
		if i >= len(v) || v[i] != '=' {
			return Credentials{}, errNoEquals
		}
		i = skipOWS(v, i+1)
		// Value.
		var val string
		if i < len(v) && v[i] == '"' {
			var err error
			val, i, err = parseQuoted(v, i)
			if err != nil {
				return Credentials{}, err
			}
		} else {
			start = i
			for i < len(v) && isBareValueChar(v[i]) {
				i++
			}
			if i == start {
				return Credentials{}, errEmptyValue
			}
			val = v[start:i]
		}
		// Separator.
		i = skipOWS(v, i)
		if i < len(v) && v[i] != ',' {
			return Credentials{}, errNoComma
		}
		if p := lookupParam(name); p >= 0 {
			if seen&(1<<p) != 0 {
				return Credentials{}, errDuplicate
			}
			seen |= 1 << p
			*c.field(p) = val
		}
	}

	if c.Username == "" || c.Realm == "" || c.Nonce == "" || c.URI == "" || c.Response == "" {
		return Credentials{}, errMissing
	}
	if c.Algorithm == "" {
		c.Algorithm = string(MD5)
	} else if id := lookupAlg(c.Algorithm); id != algUnknown {
		c.Algorithm = string(id.canonical())
	}
	return c, nil
}

// Byte classes inside a quoted-string.
const (
	qOK byte = iota
	qQuote
	qBackslash
	qBad
)

var quotedClass = func() (t [256]byte) {
	for c := range t {
		if !isQuotedChar(byte(c)) {
			t[c] = qBad
		}
	}
	t['"'] = qQuote
	t['\\'] = qBackslash
	return t
}()

// parseQuoted parses the quoted-string starting at v[i] == '"'. It returns the
// unescaped contents and the index just past the closing quote.
func parseQuoted(v string, i int) (string, int, error) {
	i++ // opening quote
	start := i
	escaped := false
	for ; i < len(v); i++ {
		for i < len(v) && quotedClass[v[i]] == qOK {
			i++
		}
		if i >= len(v) {
			break
		}
		switch quotedClass[v[i]] {
		case qQuote:
			s := v[start:i]
			if escaped {
				s = unescape(s)
			}
			return s, i + 1, nil
		case qBackslash:
			if i+1 >= len(v) {
				return "", i, errUnterminated
			}
			i++
			if !isQuotedChar(v[i]) {
				return "", i, errBadQuotedChar
			}
			escaped = true
		default:
			return "", i, errBadQuotedChar
		}
	}
	return "", i, errUnterminated
}

// isQuotedChar reports whether c may appear (literally or after a backslash)
// inside a quoted-string: HTAB, SP, VCHAR or obs-text.
func isQuotedChar(c byte) bool {
	return c == '\t' || (c >= 0x20 && c != 0x7f)
}

// unescape removes quoted-pair backslashes from s (already validated).
func unescape(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
