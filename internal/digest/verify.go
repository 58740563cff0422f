package digest

import (
	"crypto/subtle"
	"encoding/hex"
	"strings"
)

// verifyBufSize is the stack buffer used to build hash inputs; longer inputs
// still work but cost a heap allocation.
const verifyBufSize = 512

// Verify reports whether c.Response is the correct digest response for the
// request method (e.g. "REGISTER", case-sensitive as on the wire) and ha1,
// the stored lowercase (or uppercase) hex H(username:realm:password)
// computed with c's algorithm.
//
// c.Algorithm must be MD5 or SHA-256 (case-insensitive; "" means MD5). The
// session variants are not supported and yield false, as does a ha1 whose
// length does not match the algorithm. Two modes are supported:
//
//   - qop=auth: response = H(HA1:nonce:nc:cnonce:qop:HA2); c.CNonce must be
//     non-empty and c.NC must be exactly 8 hex digits.
//   - no qop (RFC 2069): response = H(HA1:nonce:HA2); cnonce and nc are ignored.
//     A server that offered qop="auth" should refuse such an answer even
//     when it verifies (RFC 7616 §3.4); Verify leaves that policy to the
//     caller (package auth refuses it unless configured otherwise).
//
// where HA2 = H(method:uri) and uri is c.URI. qop=auth-int and any other qop
// yield false. The response is compared in constant time (hex case is
// ignored). Verify does not allocate for inputs up to a few hundred bytes.
//
// Verify checks only the cryptographic response. The caller must also check
// c.Realm, that c.URI matches the request, Nonces.Check(c.Nonce) and
// Nonces.UseCount(c.Nonce, c.NC).
func Verify(c Credentials, method string, ha1 string) bool {
	if len(ha1) > maxHexLen {
		return false
	}
	var hexHA1 [maxHexLen]byte
	return verify(c, method, appendLower(hexHA1[:0], ha1))
}

// VerifyBinary is Verify for an HA1 kept in binary: ha1 is the hash
// H(username:realm:password) itself, 16 bytes for MD5 and 32 for SHA-256,
// rather than its hex form. A length that does not match c's algorithm
// yields false. Otherwise it behaves exactly as Verify with the hex form of
// ha1, doing the same work: the response is compared in constant time, and
// VerifyBinary does not allocate for inputs up to a few hundred bytes.
func VerifyBinary(c Credentials, method string, ha1 []byte) bool {
	if len(ha1) > maxHexLen/2 {
		return false
	}
	var hexHA1 [maxHexLen]byte
	n := hex.Encode(hexHA1[:], ha1)
	return verify(c, method, hexHA1[:n])
}

// verify is Verify with ha1 as lowercase hex.
func verify(c Credentials, method string, ha1 []byte) bool {
	alg := algMD5
	if c.Algorithm != "" {
		alg = lookupAlg(c.Algorithm)
		if alg == algUnknown {
			return false
		}
	}
	hl := alg.hexLen()
	if len(ha1) != hl || len(c.Response) != hl {
		return false
	}
	withQOP := false
	switch {
	case c.QOP == "":
	case strings.EqualFold(c.QOP, "auth"):
		if c.CNonce == "" || !validNC(c.NC) {
			return false
		}
		withQOP = true
	default: // auth-int, lists, garbage
		return false
	}

	var buf [verifyBufSize]byte

	// HA2 = H(method:uri)
	b := append(buf[:0], method...)
	b = append(b, ':')
	b = append(b, c.URI...)
	var ha2 [maxHexLen]byte
	alg.sumHex(&ha2, b)

	// response = H(HA1:nonce[:nc:cnonce:qop]:HA2)
	b = append(buf[:0], ha1...)
	b = append(b, ':')
	b = append(b, c.Nonce...)
	b = append(b, ':')
	if withQOP {
		b = append(b, c.NC...)
		b = append(b, ':')
		b = append(b, c.CNonce...)
		b = append(b, ':')
		b = append(b, c.QOP...)
		b = append(b, ':')
	}
	b = append(b, ha2[:hl]...)
	var want [maxHexLen]byte
	alg.sumHex(&want, b)

	var got [maxHexLen]byte
	appendLower(got[:0], c.Response)
	return subtle.ConstantTimeCompare(want[:hl], got[:hl]) == 1
}

// validNC reports whether nc is exactly 8 hex digits (RFC 7616 nc-value).
func validNC(nc string) bool {
	_, ok := parseNC(nc)
	return ok
}

// parseNC parses an 8-hex-digit nonce-count.
func parseNC(nc string) (uint32, bool) {
	if len(nc) != 8 {
		return 0, false
	}
	var n uint32
	for i := 0; i < len(nc); i++ {
		c := nc[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | uint32(d)
	}
	return n, true
}

// appendLower appends s to b with ASCII upper case letters lowered.
func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// Challenge returns a WWW-Authenticate / Proxy-Authenticate header value:
//
//	Digest realm="R", nonce="N", opaque="O", algorithm=MD5, qop="auth"
//
// followed by `, stale=TRUE` when stale is set (the client's credentials were
// right but its nonce had expired, so it may retry without prompting the
// user). The opaque parameter is omitted when opaque is empty. alg is written
// in its canonical spelling if supported ("" means MD5); any other value is
// written as-is minus non-token characters. Quoted values are escaped;
// control characters (which cannot be represented in a quoted-string and
// would allow header injection) are dropped.
func Challenge(realm, nonce, opaque string, alg Algorithm, stale bool) string {
	if alg == "" {
		alg = MD5
	}
	var b strings.Builder
	b.Grow(len(`Digest realm="", nonce="", opaque="", algorithm=, qop="auth", stale=TRUE`) +
		len(realm) + len(nonce) + len(opaque) + len(alg) + 8)
	b.WriteString(`Digest realm=`)
	writeQuoted(&b, realm)
	b.WriteString(`, nonce=`)
	writeQuoted(&b, nonce)
	if opaque != "" {
		b.WriteString(`, opaque=`)
		writeQuoted(&b, opaque)
	}
	b.WriteString(`, algorithm=`)
	if id := lookupAlg(string(alg)); id != algUnknown {
		b.WriteString(string(id.canonical()))
	} else {
		for i := 0; i < len(alg); i++ {
			if isTchar(alg[i]) {
				b.WriteByte(alg[i])
			}
		}
	}
	b.WriteString(`, qop="auth"`)
	if stale {
		b.WriteString(`, stale=TRUE`)
	}
	return b.String()
}

func writeQuoted(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case isQuotedChar(c):
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}
