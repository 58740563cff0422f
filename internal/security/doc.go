// Package security is switchboard's access control and attack resistance.
// It wires the pure decisions of package acl to the store, the packet guard,
// the registrar and the proxy:
//
//   - ACLs like FusionPBX's access controls (a name, a default, ordered
//     allow/deny CIDR nodes), applied by the profile as its register ACL
//     (who may register: 403 otherwise), inbound ACL (who may place calls)
//     and trusted ACL (networks exempt from rate limits and bans), and per
//     extension (store.Extension.ACL: where its credentials are accepted).
//     Service implements registrar.Policy and proxy.Policy.
//   - Brute-force bans: BanAfter failed authentications from one address
//     within BanWindow ban it for BanFor (default 5 in 60 s, 1 h), as
//     FusionPBX's Event Guard does; trusted networks are exempt. An address
//     with a live registration is exempt only for the extensions registered
//     from it; its failures for others ban it after BanAfterRegistered
//     (default 4 x BanAfter), and a login clears a count only when all its
//     failures were for that same extension. Known scanner user agents (SIPVicious's
//     friendly-scanner, sipcli, ...) are banned at their first message.
//     Bans are stored (table bans), so they survive restarts, and journaled
//     (kind "ban", cause ip_banned).
//   - Flood protection: a per-address token bucket (RateLimit messages per
//     second, bursts of RateBurst; 0 turns it off), like Kamailio's pike.
//   - The packet guard's Policy (guard.Policy): package guard does the
//     byte-level work before parsing (size limits, TCP framing, syntax
//     checks, normalization, stateless answers) and asks this package who
//     is trusted, banned, over the rate limit or a scanner; this package
//     counts and journals what the guard drops or refuses.
//
// Configuration lives in the database (migration 4 of store/sqlite: acls,
// acl_nodes, profiles, bans), edited with `switchboard acl|profile|ban` and
// applied at once through the change feed (Watch); thresholds are serve
// flags (--ban-after, --ban-after-registered, --ban-window, --ban-for,
// --rate-limit, --rate-burst).
//
// Example:
//
//	switchboard acl add office --default deny
//	switchboard acl allow office 192.168.1.0/24
//	switchboard profile set internal --register-acl office
//
// Dropped traffic leaves at most one journal event per address and cause
// per minute, so an attack cannot flood the journal either. The checks the
// guard asks on every message (Trusted, Banned, RateLimited, Scanner) do
// not allocate.
package security
