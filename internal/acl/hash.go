package acl

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
)

// maxShards is the number of lock shards used by Guard and RateLimiter
// (fewer when their capacity is tiny). A power of two.
const maxShards = 64

// newSeed returns a random per-instance hash seed, so that an attacker
// cannot pick addresses that all land on one shard.
func newSeed() uint64 {
	return maphash.String(maphash.MakeSeed(), "switchboard/acl")
}

// shardCount returns the largest power of two <= maxShards and <= limit
// (at least 1), so that per-shard capacities add up to at most limit.
func shardCount(limit int) int {
	n := maxShards
	for n > 1 && n > limit {
		n >>= 1
	}
	return n
}

// shardOf hashes ip (already normalised) to a shard index in [0, mask].
// It does not allocate.
func shardOf(ip netip.Addr, seed, mask uint64) uint64 {
	a := ip.As16()
	h := seed ^ binary.LittleEndian.Uint64(a[:8]) ^ uint64(ip.BitLen())
	h ^= binary.LittleEndian.Uint64(a[8:]) * 0x9e3779b97f4a7c15
	return mix64(h) & mask
}

// mix64 is the SplitMix64 finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
