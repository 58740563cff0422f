package directory

import (
	"crypto/md5"
	"crypto/sha256"
	"fmt"
	"math"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Entry is one extension as the server's hot paths see it: what
// authentication, registration and routing read, and nothing else (no
// description, no timestamps). An Entry is read-only: its fields are
// unexported, and the cache never changes a published Entry (a change
// publishes a new one), so a pointer from Lookup stays valid and consistent
// for as long as it is held.
//
// Entries are compact, because the cache keeps one per extension: the HA1
// hashes are binary, the strings of the entries of one domain are
// substrings of one shared text, and Load keeps all its entries in one
// slice. 100,000 extensions take about 15 MB with the lookup maps (147
// bytes each, see BenchmarkLiveHeap100k) in a few hundred heap objects for
// the garbage collector to mark, instead of about 40 MB in over 400,000
// objects as store.Extension values.
type Entry struct {
	id  int64
	txt *text  // the domain name and the text the strings below are in
	off uint32 // txt.arena[off:] holds number, caller-ID name, caller-ID number, ACL

	// Lengths of the strings at off. A caller-ID number equal to the
	// number is not stored again (flag cidIsNumber).
	nNumber, nName, nCIDNumber, nACL uint32

	maxRegistrations, callTimeout int32
	flags                         uint8 // enabled, hasMD5, hasSHA256, cidIsNumber
	ha1MD5                        [md5.Size]byte
	ha1SHA256                     [sha256.Size]byte
}

// text is what the entries of one domain of one load share.
type text struct {
	domain string // as the store spells it
	arena  string // the entries' strings, back to back
}

// Entry flags.
const (
	enabled     = 1 << iota
	hasMD5      // ha1MD5 is set
	hasSHA256   // ha1SHA256 is set
	cidIsNumber // the caller-ID number is the number
)

// ID returns the extension's store ID.
func (e *Entry) ID() int64 { return e.id }

// Domain returns the extension's domain, spelled as in the store.
func (e *Entry) Domain() string { return e.txt.domain }

// Number returns the extension number (its SIP user name).
func (e *Entry) Number() string { return e.str(0, e.nNumber) }

// CallerIDName returns the caller-ID name ("" when unset).
func (e *Entry) CallerIDName() string { return e.str(e.nNumber, e.nName) }

// CallerIDNumber returns the caller-ID number ("" when unset).
func (e *Entry) CallerIDNumber() string {
	if e.flags&cidIsNumber != 0 {
		return e.Number()
	}
	return e.str(e.nNumber+e.nName, e.nCIDNumber)
}

// ACL returns the name of the ACL the extension's credentials are accepted
// from ("" means anywhere).
func (e *Entry) ACL() string { return e.str(e.nNumber+e.nName+e.nCIDNumber, e.nACL) }

// Enabled reports whether the extension may register and be called.
func (e *Entry) Enabled() bool { return e.flags&enabled != 0 }

// MaxRegistrations returns how many contacts the extension may register.
func (e *Entry) MaxRegistrations() int { return int(e.maxRegistrations) }

// CallTimeout returns the ring timeout in seconds (0: the default).
func (e *Entry) CallTimeout() int { return int(e.callTimeout) }

// HA1MD5 returns the binary MD5 HA1 (H(number:domain:password)), and false
// when the store holds none (or one that is not 32 hex digits).
func (e *Entry) HA1MD5() ([md5.Size]byte, bool) { return e.ha1MD5, e.flags&hasMD5 != 0 }

// HA1SHA256 returns the binary SHA-256 HA1, and false when the store holds
// none (or one that is not 64 hex digits).
func (e *Entry) HA1SHA256() ([sha256.Size]byte, bool) { return e.ha1SHA256, e.flags&hasSHA256 != 0 }

func (e *Entry) str(skip, n uint32) string {
	i := e.off + skip
	return e.txt.arena[i : i+n]
}

// NewEntry returns the entry of one extension, for a directory other than
// Cache (a test's, say). It panics if the extension's strings exceed 4 GiB,
// more than a store row can hold.
func NewEntry(x store.Extension) *Entry {
	es, err := newEntries([]store.Extension{x})
	if err != nil {
		panic(err)
	}
	return &es[0]
}

// newEntries returns the entries of exts in one slice, those of a domain
// next to each other (in the order of exts, which a store lists by domain)
// and sharing one text. It fails if the strings of a domain's extensions
// exceed 4 GiB.
func newEntries(exts []store.Extension) ([]Entry, error) {
	type group struct {
		txt   *text
		size  int64 // bytes of arena
		next  int   // index of the group's next entry in the result
		arena strings.Builder
	}
	var order []*group
	groups := map[string]*group{}
	for i := range exts {
		x := &exts[i]
		g := groups[x.Domain]
		if g == nil {
			g = &group{txt: &text{domain: x.Domain}}
			groups[x.Domain] = g
			order = append(order, g)
		}
		g.next++ // counts the group's entries for now
		g.size += int64(len(x.Number) + len(x.CallerIDName) + len(x.ACL))
		if x.CallerIDNumber != x.Number {
			g.size += int64(len(x.CallerIDNumber))
		}
	}
	start := 0
	for _, g := range order {
		if g.size > math.MaxUint32 {
			return nil, fmt.Errorf("directory: the extensions of domain %s have over 4 GiB of strings", g.txt.domain)
		}
		g.arena.Grow(int(g.size))
		start, g.next = start+g.next, start
	}
	out := make([]Entry, len(exts))
	for i := range exts {
		x := &exts[i]
		g := groups[x.Domain]
		e := &out[g.next]
		g.next++
		*e = Entry{id: x.ID, txt: g.txt, off: uint32(g.arena.Len()),
			nNumber: uint32(len(x.Number)), nName: uint32(len(x.CallerIDName)), nACL: uint32(len(x.ACL)),
			maxRegistrations: clamp32(x.MaxRegistrations), callTimeout: clamp32(x.CallTimeout)}
		g.arena.WriteString(x.Number)
		g.arena.WriteString(x.CallerIDName)
		if x.CallerIDNumber == x.Number {
			e.flags |= cidIsNumber
		} else {
			e.nCIDNumber = uint32(len(x.CallerIDNumber))
			g.arena.WriteString(x.CallerIDNumber)
		}
		g.arena.WriteString(x.ACL)
		if x.Enabled {
			e.flags |= enabled
		}
		if decodeHex(e.ha1MD5[:], x.HA1MD5) {
			e.flags |= hasMD5
		}
		if decodeHex(e.ha1SHA256[:], x.HA1SHA256) {
			e.flags |= hasSHA256
		}
	}
	for _, g := range order {
		g.txt.arena = g.arena.String()
	}
	return out, nil
}

func clamp32(n int) int32 {
	return int32(max(math.MinInt32, min(n, math.MaxInt32)))
}

// decodeHex decodes s, exactly 2*len(dst) hex digits of either case, into
// dst. It reports false, and leaves dst zero, for anything else.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := fromHex(s[2*i])
		lo, ok2 := fromHex(s[2*i+1])
		if !ok1 || !ok2 {
			clear(dst)
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
