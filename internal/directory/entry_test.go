package directory

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"strings"
	"testing"
	"unsafe"

	"github.com/switchboard-pbx/switchboard/internal/digest"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// TestEntryFields: an entry gives back what the store holds, for every
// field it keeps, with the HA1 hashes decoded from hex of either case.
func TestEntryFields(t *testing.T) {
	md5hex := digest.HA1(digest.MD5, "2001", "pbx.test", "pw")
	shahex := digest.HA1(digest.SHA256, "2001", "pbx.test", "pw")
	for _, x := range []store.Extension{
		{ID: 7, Domain: "Pbx.Test", Number: "2001", HA1MD5: md5hex, HA1SHA256: strings.ToUpper(shahex), Enabled: true,
			CallerIDName: "Reception", CallerIDNumber: "+4930123", MaxRegistrations: 5, CallTimeout: 30, ACL: "office",
			Description: "dropped"},
		{ID: 8, Domain: "pbx.test", Number: "2002", CallerIDNumber: "2002", MaxRegistrations: 1},
		{ID: 9, Domain: "pbx.test", Number: "2003", HA1MD5: "x", HA1SHA256: md5hex, CallerIDName: "Ünïcode name"},
		{Domain: "", Number: "", MaxRegistrations: 1 << 40, CallTimeout: -(1 << 40)},
	} {
		e := NewEntry(x)
		want := x
		want.HA1MD5, want.HA1SHA256, want.Description = "", "", ""
		want.MaxRegistrations = int(clamp32(x.MaxRegistrations))
		want.CallTimeout = int(clamp32(x.CallTimeout))
		if got := asExtension(e); got != want {
			t.Errorf("Extension() = %+v\nwant          %+v", got, want)
		}
		if e.ID() != x.ID || e.Domain() != x.Domain || e.Number() != x.Number || e.Enabled() != x.Enabled ||
			e.CallerIDName() != x.CallerIDName || e.CallerIDNumber() != x.CallerIDNumber || e.ACL() != x.ACL ||
			e.MaxRegistrations() != want.MaxRegistrations || e.CallTimeout() != want.CallTimeout {
			t.Errorf("accessors of %+v disagree with the store", x)
		}
		m, okm := e.HA1MD5()
		s, oks := e.HA1SHA256()
		if okm != (len(x.HA1MD5) == 32 && x.HA1MD5 != "x") || okm && hex.EncodeToString(m[:]) != strings.ToLower(x.HA1MD5) ||
			!okm && m != [md5.Size]byte{} {
			t.Errorf("HA1MD5() of %q = %x, %v", x.HA1MD5, m, okm)
		}
		if oks != (len(x.HA1SHA256) == 64) || oks && hex.EncodeToString(s[:]) != strings.ToLower(x.HA1SHA256) ||
			!oks && s != [sha256.Size]byte{} {
			t.Errorf("HA1SHA256() of %q = %x, %v", x.HA1SHA256, s, oks)
		}
	}
}

func TestDecodeHex(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"00ff10aB", true}, {"", false}, {"00ff10a", false}, {"00ff10aB0", false},
		{"00ff10ag", false}, {"g0ff10ab", false}, {"00ff 0ab", false},
	} {
		var dst [4]byte
		ok := decodeHex(dst[:], tc.in)
		if ok != tc.ok || ok && hex.EncodeToString(dst[:]) != strings.ToLower(tc.in) || !ok && dst != [4]byte{} {
			t.Errorf("decodeHex(%q) = %x, %v", tc.in, dst, ok)
		}
	}
}

// TestEntrySize guards the per-extension cost (see BenchmarkLiveHeap100k).
func TestEntrySize(t *testing.T) {
	if s := unsafe.Sizeof(Entry{}); s > 96 {
		t.Errorf("Entry is %d bytes, want at most 96", s)
	}
}

// listSource serves a fixed list of domains and extensions.
type listSource struct {
	store.Directory
	doms []store.Domain
	exts []store.Extension
}

func (l listSource) Domains(context.Context) ([]store.Domain, error) { return l.doms, nil }
func (l listSource) Extensions(context.Context, string) ([]store.Extension, error) {
	return append([]store.Extension(nil), l.exts...), nil
}
func (listSource) LastChange(context.Context) (int64, error) { return 0, nil }
func (listSource) ChangesSince(context.Context, int64, int) ([]store.Change, error) {
	return nil, nil
}
func (listSource) PruneChanges(context.Context, int64) error { return nil }

// TestLoadDomains: extensions of several domains, listed in any order,
// are found in their own domain (case-insensitively) and nowhere else.
func TestLoadDomains(t *testing.T) {
	src := listSource{
		doms: []store.Domain{{Name: "A.test", Enabled: true}, {Name: "b.test", Enabled: true}, {Name: "empty.test"}},
		exts: []store.Extension{
			{Domain: "A.test", Number: "1", CallerIDName: "a one", CallerIDNumber: "1"},
			{Domain: "b.test", Number: "1", CallerIDName: "b one", CallerIDNumber: "b1"},
			{Domain: "A.test", Number: "2", CallerIDName: "a two", ACL: "lan"},
			{Domain: "orphan.test", Number: "9"},
			{Domain: "b.test", Number: "2", CallerIDName: "b two"},
		},
	}
	c := New(src, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := c.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.Count() != len(src.exts) {
		t.Fatalf("Count = %d", c.Count())
	}
	for _, x := range src.exts {
		e, ok := c.Lookup(strings.ToUpper(x.Domain), x.Number)
		if !ok || asExtension(e) != x {
			t.Errorf("Lookup(%s, %s) = %+v, %v", x.Domain, x.Number, e, ok)
		}
	}
	if _, ok := c.Lookup("a.test", "9"); ok {
		t.Error("extension found in another domain")
	}
	if _, ok := c.Domain("empty.test"); !ok {
		t.Error("domain without extensions missing")
	}
}

// asExtension returns e as a store.Extension, without what an Entry does
// not hold: the HA1 hashes, the description and the timestamps.
func asExtension(e *Entry) store.Extension {
	return store.Extension{ID: e.ID(), Domain: e.Domain(), Number: e.Number(), Enabled: e.Enabled(),
		CallerIDName: e.CallerIDName(), CallerIDNumber: e.CallerIDNumber(),
		MaxRegistrations: e.MaxRegistrations(), CallTimeout: e.CallTimeout(), ACL: e.ACL()}
}
