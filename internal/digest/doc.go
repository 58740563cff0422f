// Package digest implements server-side SIP HTTP Digest authentication
// (RFC 2617, RFC 7616, and RFC 8760 for SIP's use of SHA-256) for the
// registrar's hot path. Every function is safe for concurrent use and the
// per-request functions are allocation-free in the common case.
//
// # Flow
//
// A registrar typically does, for each REGISTER/INVITE:
//
//	c, err := digest.ParseCredentials(req.Header("Authorization"))
//	// no header / ErrNotDigest / ErrMalformed -> 401 with Challenge(realm, nonces.NewFor(realm), opaque, alg, false)
//	// c.Realm != realm, c.Username unknown, c.URI != request-URI       -> 401 / 403
//	switch nonces.CheckFor(c.Nonce, realm) {
//	case digest.NonceInvalid: // 401, fresh challenge, stale=false
//	case digest.NonceStale:   // if Verify succeeds: 401 with stale=TRUE so the UA retries silently
//	}
//	ok := digest.Verify(c, req.Method, storedHA1) && nonces.UseCount(c.Nonce, c.NC)
//
// # Contracts
//
//   - Algorithms: MD5 and SHA-256 only (wire names case-insensitive). The
//     "-sess" variants and qop=auth-int are not supported and never verify.
//     ParseAlgorithms validates an ordered configuration list.
//   - HA1 returns lowercase hex H(user:realm:password); store that, not the
//     password. Verify needs the HA1 made with the same algorithm as the
//     credentials (the length is checked).
//   - ParseCredentials never panics. It returns ErrNotDigest for another
//     auth-scheme and an error wrapping ErrMalformed for syntax errors,
//     duplicated known parameters, or a missing/empty username, realm, nonce,
//     uri or response. Unknown parameters are ignored; Algorithm defaults to
//     "MD5".
//   - Verify checks only the cryptographic response (constant-time compare),
//     for qop=auth (cnonce required, nc must be 8 hex digits) and for RFC 2069
//     style requests without qop. Realm, URI, nonce freshness and nonce-count
//     replay are the caller's checks (Nonces.Check, Nonces.UseCount).
//   - Challenge builds `Digest realm="R", nonce="N", opaque="O",
//     algorithm=A, qop="auth"[, stale=TRUE]`, escaping quoted values.
//   - Nonces are stateless: 48 base64url characters carrying the issue time,
//     96 random bits and a truncated HMAC-SHA256 tag over both and the realm
//     (NewFor; New is the empty realm). The client address is not bound in
//     (NAT may move a phone between challenge and answer). CheckFor reports
//     NonceInvalid for anything not signed with this key for this realm or
//     issued more than MaxClockSkew in the future, NonceStale once older than
//     the lifetime, otherwise NonceValid. Servers sharing the key accept
//     each other's nonces.
//   - UseCount is the only stateful part: a 64-way sharded map from nonce to
//     highest accepted nonce-count. A count must be strictly greater than all
//     previously accepted counts for that nonce. An empty nc (an RFC 2069
//     client without qop, which a server should refuse unless configured
//     otherwise) uses the nonce up: accepted once, never again. Entries are
//     forgotten, lazily inside UseCount (no goroutine), once older than the
//     lifetime, when Check already reports their nonce stale; memory is thus
//     bounded by the nonces used within one lifetime.
package digest
