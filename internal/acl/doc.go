// Package acl is the pure decision logic for access control lists,
// brute-force bans and flood protection of the SIP server. It does no I/O
// and no logging; the owner (SIP stack, API, storage) feeds it addresses and
// persists whatever it returns.
//
// Contracts shared by everything in the package:
//
//   - Addresses are [netip.Addr]. IPv4-mapped IPv6 addresses
//     (::ffff:192.0.2.1) are unmapped and IPv6 zones are dropped before any
//     matching, counting or keying, so "::ffff:192.0.2.1" and "192.0.2.1" are
//     the same source everywhere.
//   - There is no package-level mutable state. Every type that needs time
//     takes a clock (func() time.Time) at construction; nil means time.Now.
//     Clocks are expected not to run backwards; if one does, windows and
//     buckets simply see no elapsed time.
//   - The per-packet paths — [List.Decide], [Guard.Banned],
//     [RateLimiter.Allow] and [IsScanner] — do not allocate.
//   - [Guard] and [RateLimiter] are safe for concurrent use. Their state is
//     split over lock shards chosen by a per-instance seeded hash of the
//     address, and their memory is bounded under a flood of distinct
//     addresses (see the caps on each type).
//   - [List] values are plain data and not synchronised. A [Set] is an
//     immutable snapshot: build a new one with [NewSet] and swap it
//     atomically (for example with atomic.Pointer[acl.Set]); never modify a
//     List obtained from [Set.Get].
//
// Access control lists ([List]) follow FreeSWITCH/FusionPBX semantics: the
// most specific (longest prefix) matching node decides; between equally
// specific nodes the first one in order wins; when no node matches, the
// list's default decides. So "deny 192.168.1.66/32" inside
// "allow 192.168.1.0/24" denies 192.168.1.66 whatever the order.
//
// Brute-force protection ([Guard]): MaxFailures failed authentications from
// one address within a sliding Window ban the address for BanFor. Exempt
// addresses (see [Guard.SetExempt]) are never banned. Bans expire lazily.
//
// Flood protection ([RateLimiter]) is a per-address token bucket: Rate
// requests per second with a burst of Burst; a rate of 0 disables it.
//
// [IsScanner] recognises the User-Agent strings of well-known SIP scanners.
package acl
