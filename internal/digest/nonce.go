package digest

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Nonce layout (binary, then unpadded base64url):
//
//	[0:8]   issue time, Unix nanoseconds, big-endian
//	[8:20]  random bits
//	[20:36] HMAC-SHA256(key, [0:20] || SHA-256(lower(realm))) truncated to
//	        128 bits; for the empty realm the HMAC is over [0:20] alone
//
// The realm is not carried in the nonce: it is bound by the tag, so a nonce
// checks only against the realm it was issued for.
const (
	nonceTimeLen = 8
	nonceRandLen = 12
	nonceTagLen  = 16
	nonceMsgLen  = nonceTimeLen + nonceRandLen
	nonceRawLen  = nonceMsgLen + nonceTagLen

	// NonceLen is the length of every nonce returned by Nonces.New.
	NonceLen = (nonceRawLen*8 + 5) / 6 // 48
)

const (
	// DefaultLifetime is used by NewNonces when lifetime <= 0.
	DefaultLifetime = 5 * time.Minute
	// MinKeyLen is the minimum secret length accepted by NewNonces.
	MinKeyLen = 16
	// MaxClockSkew is how far in the future a correctly signed nonce's issue
	// time may lie before Check rejects it as NonceInvalid. It absorbs small
	// clock steps and skew between servers sharing a key.
	MaxClockSkew = 2 * time.Second

	numShards = 64
)

var nonceEncoding = base64.RawURLEncoding

// NonceStatus is the result of Nonces.Check.
type NonceStatus int

const (
	// NonceValid: correctly signed and fresh.
	NonceValid NonceStatus = iota
	// NonceStale: correctly signed but older than the lifetime; challenge
	// again with stale=TRUE.
	NonceStale
	// NonceInvalid: forged, garbled, signed with another key, or issued in
	// the future.
	NonceInvalid
)

func (s NonceStatus) String() string {
	switch s {
	case NonceValid:
		return "valid"
	case NonceStale:
		return "stale"
	case NonceInvalid:
		return "invalid"
	}
	return "NonceStatus(?)"
}

// Nonces issues and checks stateless HMAC-SHA256-signed, time-stamped nonces
// and keeps a bounded nonce-count replay guard. A Nonces is safe for
// concurrent use; create it with NewNonces.
type Nonces struct {
	ipad, opad [sha256.BlockSize]byte // key XOR ipad/opad (RFC 2104)
	lifetime   time.Duration
	now        func() time.Time
	shards     [numShards]ncShard
	// realm is the hash of the realm NewFor last issued a nonce for (a
	// server with one domain issues all in one realm): a SHA-256 less per
	// nonce issued and checked.
	realm atomic.Pointer[realmSum]
}

// realmSum is a realm and its realmHash.
type realmSum struct {
	realm string
	sum   [sha256.Size]byte
}

type ncShard struct {
	mu        sync.Mutex
	m         map[ncKey]ncEntry
	nextPrune int64 // Unix ns; prune when now >= nextPrune
	_         [40]byte
}

// ncKey identifies a nonce in the replay guard without retaining the
// (possibly much larger) string the nonce was sliced from.
type ncKey [16]byte

type ncEntry struct {
	highest uint32 // highest nonce-count accepted so far
	expires int64  // Unix ns after which the entry may be forgotten
}

// NewNonces returns a nonce issuer/checker.
//
// key is the HMAC secret; servers that must accept each other's nonces share
// it. If key is nil, 32 random bytes are generated (nonces then only validate
// in this process). A non-nil key shorter than MinKeyLen bytes panics, as
// that is a configuration error. The key is copied.
//
// lifetime is how long a nonce stays fresh (DefaultLifetime if <= 0). now is
// the clock (time.Now if nil) and may be injected for tests.
func NewNonces(key []byte, lifetime time.Duration, now func() time.Time) *Nonces {
	if key == nil {
		key = make([]byte, 32)
		rand.Read(key)
	} else if len(key) < MinKeyLen {
		panic("digest: NewNonces key shorter than 16 bytes")
	}
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	if now == nil {
		now = time.Now
	}
	n := &Nonces{lifetime: lifetime, now: now}
	var k [sha256.BlockSize]byte
	if len(key) > sha256.BlockSize {
		s := sha256.Sum256(key)
		copy(k[:], s[:])
	} else {
		copy(k[:], key)
	}
	for i := range k {
		n.ipad[i] = k[i] ^ 0x36
		n.opad[i] = k[i] ^ 0x5c
	}
	clear(k[:])
	for i := range n.shards {
		n.shards[i].m = make(map[ncKey]ncEntry)
	}
	return n
}

// Lifetime returns the configured nonce lifetime.
func (n *Nonces) Lifetime() time.Duration { return n.lifetime }

// mac computes HMAC-SHA256(key, msg || SHA-256(lower(realm))), or
// HMAC-SHA256(key, msg) when realm is "", without allocating for realms up
// to maxRealmStack bytes.
func (n *Nonces) mac(msg []byte, realm string) [sha256.Size]byte {
	var in [sha256.BlockSize + nonceMsgLen + sha256.Size]byte
	copy(in[:], n.ipad[:])
	copy(in[sha256.BlockSize:], msg)
	l := sha256.BlockSize + len(msg)
	if realm != "" {
		var r [sha256.Size]byte
		if c := n.realm.Load(); c != nil && c.realm == realm {
			r = c.sum
		} else {
			r = realmHash(realm)
		}
		l += copy(in[l:], r[:])
	}
	inner := sha256.Sum256(in[:l])
	var out [sha256.BlockSize + sha256.Size]byte
	copy(out[:], n.opad[:])
	copy(out[sha256.BlockSize:], inner[:])
	return sha256.Sum256(out[:])
}

// maxRealmStack is the longest realm hashed without a heap allocation.
const maxRealmStack = 256

// realmHash returns SHA-256 of realm in ASCII lower case (realms are domain
// names here, compared case-insensitively).
func realmHash(realm string) [sha256.Size]byte {
	if len(realm) > maxRealmStack {
		return sha256.Sum256([]byte(strings.ToLower(realm)))
	}
	var buf [maxRealmStack]byte
	return sha256.Sum256(appendLower(buf[:0], realm))
}

// New returns a fresh nonce bound to no realm; it is NewFor("").
func (n *Nonces) New() string { return n.NewFor("") }

// NewFor returns a fresh nonce for realm: NonceLen (48) base64url characters
// encoding the issue time, 96 random bits and a 128-bit HMAC-SHA256 tag over
// both and the realm (case-insensitive). CheckFor accepts it only with the
// same realm, so a nonce one domain issued is not accepted in another. The
// client address is not bound in: a phone behind NAT may change its port
// or address between challenge and answer.
func (n *Nonces) NewFor(realm string) string {
	var raw [nonceRawLen]byte
	binary.BigEndian.PutUint64(raw[:nonceTimeLen], uint64(n.now().UnixNano()))
	rand.Read(raw[nonceTimeLen:nonceMsgLen])
	if c := n.realm.Load(); realm != "" && (c == nil || c.realm != realm) && len(realm) <= maxRealmStack {
		// Only here: the realms NewFor gets are the server's own, while
		// CheckFor's may come from a request (it only reads the cache).
		n.realm.Store(&realmSum{realm: strings.Clone(realm), sum: realmHash(realm)})
	}
	tag := n.mac(raw[:nonceMsgLen], realm)
	copy(raw[nonceMsgLen:], tag[:nonceTagLen])
	var out [NonceLen]byte
	nonceEncoding.Encode(out[:], raw[:])
	return string(out[:])
}

// Check is CheckFor(nonce, ""): it accepts only nonces made by New.
func (n *Nonces) Check(nonce string) NonceStatus { return n.CheckFor(nonce, "") }

// CheckFor classifies a nonce presented in realm: NonceInvalid if it is not
// exactly a nonce made by NewFor(realm) with this key (wrong length, bad
// encoding, bad tag, another realm) or its issue time is more than
// MaxClockSkew in the future; NonceStale if it is correctly signed but
// older than the lifetime; NonceValid otherwise. Realms compare
// case-insensitively. The tag is compared in constant time. CheckFor does
// not allocate for realms up to 256 bytes.
func (n *Nonces) CheckFor(nonce, realm string) NonceStatus {
	if len(nonce) != NonceLen {
		return NonceInvalid
	}
	var raw [nonceRawLen]byte
	var enc [NonceLen]byte
	copy(enc[:], nonce)
	if m, err := nonceEncoding.Decode(raw[:], enc[:]); err != nil || m != nonceRawLen {
		return NonceInvalid
	}
	tag := n.mac(raw[:nonceMsgLen], realm)
	if subtle.ConstantTimeCompare(tag[:nonceTagLen], raw[nonceMsgLen:]) != 1 {
		return NonceInvalid
	}
	issued := int64(binary.BigEndian.Uint64(raw[:nonceTimeLen]))
	age := n.now().UnixNano() - issued
	switch {
	case age < -int64(MaxClockSkew):
		return NonceInvalid
	case age > int64(n.lifetime):
		return NonceStale
	}
	return NonceValid
}

// UseCount records nonce-count nc for nonce and reports whether it may be
// accepted: false if nc is not exactly 8 hex digits, or is not greater than
// the highest count already accepted for this nonce (i.e. a replay or an
// out-of-order retransmission). The first accepted count must be >= 1.
//
// An empty nc (an RFC 2069 client that sent no qop, accepted only when the
// server allows it) uses the nonce up: it is accepted once, and every later
// use of that nonce, with or without a count, returns false. Such a client
// then gets a fresh challenge for each request; without a count there is
// no other way to tell its next request from a replay of a captured one.
//
// Call it only after Check returned NonceValid and Verify returned true;
// otherwise unauthenticated requests could burn counts.
//
// UseCount is safe for concurrent use (64 mutex shards). Memory is bounded by
// the number of distinct nonces used within one lifetime: an entry is
// forgotten once it is older than the lifetime (plus MaxClockSkew), by which
// time Check reports the nonce stale. Expired entries are pruned lazily,
// inside UseCount calls; there is no background goroutine.
func (n *Nonces) UseCount(nonce, nc string) bool {
	count := uint32(math.MaxUint32) // no nc: use the nonce up
	if nc != "" {
		var ok bool
		count, ok = parseNC(nc)
		if !ok || count == 0 {
			return false
		}
	}
	key := makeNCKey(nonce)
	now := n.now().UnixNano()
	s := &n.shards[key[0]%numShards]

	s.mu.Lock()
	defer s.mu.Unlock()
	if now >= s.nextPrune {
		s.prune(now)
		s.nextPrune = now + int64(n.pruneInterval())
	}
	e, found := s.m[key]
	if found && (nc == "" || count <= e.highest) {
		return false
	}
	if !found {
		// The nonce was fresh when the caller checked it, so it was issued
		// no earlier than now-lifetime and goes stale (per Check) no later
		// than now+lifetime: keeping the entry that long is sufficient.
		e.expires = now + int64(n.lifetime) + int64(MaxClockSkew)
	}
	e.highest = count
	s.m[key] = e
	return true
}

// pruneInterval is how often each shard sweeps expired entries.
func (n *Nonces) pruneInterval() time.Duration {
	return max(n.lifetime/4, time.Millisecond)
}

// prune drops expired entries. Go maps never shrink, so when most entries
// expired (e.g. after a burst) the map is rebuilt to release memory.
func (s *ncShard) prune(now int64) {
	expired := 0
	for _, e := range s.m {
		if now >= e.expires {
			expired++
		}
	}
	if expired == 0 {
		return
	}
	if live := len(s.m) - expired; expired > live && len(s.m) > 64 {
		m := make(map[ncKey]ncEntry, live)
		for k, e := range s.m {
			if now < e.expires {
				m[k] = e
			}
		}
		s.m = m
		return
	}
	for k, e := range s.m {
		if now >= e.expires {
			delete(s.m, k)
		}
	}
}

// makeNCKey derives the replay-guard key for nonce. For nonces made by New it
// is the HMAC tag (unique per verified nonce, uniformly distributed); other
// strings are hashed.
func makeNCKey(nonce string) (k ncKey) {
	if len(nonce) == NonceLen {
		var raw [nonceRawLen]byte
		var enc [NonceLen]byte
		copy(enc[:], nonce)
		if m, err := nonceEncoding.Decode(raw[:], enc[:]); err == nil && m == nonceRawLen {
			copy(k[:], raw[nonceMsgLen:])
			return k
		}
	}
	var buf [128]byte
	s := sha256.Sum256(append(buf[:0], nonce...))
	copy(k[:], s[:])
	return k
}
