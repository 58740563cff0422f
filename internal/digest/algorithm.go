package digest

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Algorithm is a digest algorithm name as it appears on the wire.
type Algorithm string

// Supported algorithms. Session variants ("MD5-sess", "SHA-256-sess") are not
// supported.
const (
	MD5    Algorithm = "MD5"
	SHA256 Algorithm = "SHA-256"
)

// algID is the internal, comparison-free form of a supported algorithm.
type algID uint8

const (
	algUnknown algID = iota
	algMD5
	algSHA256
)

// maxHexLen is the length of the longest supported hex digest (SHA-256).
const maxHexLen = 2 * sha256.Size

// lookupAlg maps a wire name (case-insensitive) to its algID.
// The empty string is NOT treated as MD5 here; callers decide on defaults.
func lookupAlg(s string) algID {
	switch {
	case strings.EqualFold(s, string(MD5)):
		return algMD5
	case strings.EqualFold(s, string(SHA256)):
		return algSHA256
	}
	return algUnknown
}

// hexLen is the length of the lowercase hex digest produced by a.
func (a algID) hexLen() int {
	switch a {
	case algMD5:
		return 2 * md5.Size
	case algSHA256:
		return 2 * sha256.Size
	}
	return 0
}

// canonical returns the canonical wire spelling of a.
func (a algID) canonical() Algorithm {
	switch a {
	case algMD5:
		return MD5
	case algSHA256:
		return SHA256
	}
	return ""
}

// sumHex hashes data with a and writes the lowercase hex digest into dst,
// returning the number of bytes written (a.hexLen()). dst must have room for
// maxHexLen bytes. It does not allocate.
func (a algID) sumHex(dst *[maxHexLen]byte, data []byte) int {
	switch a {
	case algMD5:
		s := md5.Sum(data)
		return hex.Encode(dst[:], s[:])
	case algSHA256:
		s := sha256.Sum256(data)
		return hex.Encode(dst[:], s[:])
	}
	return 0
}

// ParseAlgorithms parses a comma separated list such as "sha-256,md5" into
// canonical Algorithm values, preserving the given order (which is the order
// challenges should be offered in, most preferred first). Names are
// case-insensitive and surrounding spaces/tabs are ignored. It returns an error
// for an empty list, an empty element (e.g. "md5,,sha-256" or a trailing
// comma), an unknown or unsupported name, or a duplicate.
func ParseAlgorithms(s string) ([]Algorithm, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("digest: empty algorithm list")
	}
	var out []Algorithm
	for part := range strings.SplitSeq(s, ",") {
		name := strings.Trim(part, " \t")
		if name == "" {
			return nil, fmt.Errorf("digest: empty element in algorithm list %q", s)
		}
		id := lookupAlg(name)
		if id == algUnknown {
			return nil, fmt.Errorf("digest: unsupported algorithm %q", name)
		}
		a := id.canonical()
		for _, prev := range out {
			if prev == a {
				return nil, fmt.Errorf("digest: duplicate algorithm %q", name)
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// HA1 returns the lowercase hex H(user ":" realm ":" password) for alg, the
// value a credential store should keep instead of the password. alg is matched
// case-insensitively; for an unsupported algorithm HA1 returns "" (which
// Verify always rejects).
func HA1(alg Algorithm, user, realm, password string) string {
	id := lookupAlg(string(alg))
	if id == algUnknown {
		return ""
	}
	var buf [256]byte
	b := append(buf[:0], user...)
	b = append(b, ':')
	b = append(b, realm...)
	b = append(b, ':')
	b = append(b, password...)
	var out [maxHexLen]byte
	n := id.sumHex(&out, b)
	// Do not leave the password lying around (b may have moved to the heap).
	clear(b)
	clear(buf[:])
	return string(out[:n])
}
