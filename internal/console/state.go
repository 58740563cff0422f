package console

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// FailingFor is how long an extension shows as failing after an
// authentication failure or a refusal.
const FailingFor = 15 * time.Minute

// maxTracked bounds the extensions whose last failure and last
// registration the console remembers; beyond it the oldest half is
// forgotten.
const maxTracked = 200_000

// failureCauses are the register refusals that make an extension failing.
var failureCauses = map[cause.Code]bool{
	cause.WrongPassword: true, cause.AuthUserMismatch: true, cause.WrongDomain: true, cause.ACLDenied: true,
	cause.IPBanned: true, cause.MaxRegistrations: true, cause.IntervalTooBrief: true, cause.RateLimited: true,
	cause.DigestNoQOP: true, cause.DigestURIMismatch: true, cause.NonceReplay: true, cause.BadNonce: true,
	cause.ExtensionDisabled: true,
}

// attemptCauses are the causes the Failed attempts page lists: the
// failures plus attempts on extensions that do not exist and scanners.
var attemptCauses = []cause.Code{cause.WrongPassword, cause.AuthUserMismatch, cause.WrongDomain, cause.ACLDenied,
	cause.IPBanned, cause.ExtensionMissing, cause.ExtensionDisabled, cause.MaxRegistrations, cause.IntervalTooBrief,
	cause.RateLimited, cause.Scanner, cause.NonceReplay, cause.BadNonce, cause.DigestNoQOP, cause.DigestURIMismatch}

// IsFailure reports whether an event with cause c makes its extension
// failing.
func IsFailure(c cause.Code) bool { return failureCauses[c] }

// seen is what the console remembers of one extension from the journal.
type seen struct {
	failCause  cause.Code
	failAt     time.Time
	failSource string
	failUA     string
	lastReg    time.Time // last successful registration
}

// tracker keeps, per extension, the last failure and last registration
// seen in the journal: fed by the journal's tap, seeded from the journal
// at start. Safe for concurrent use.
type tracker struct {
	mu sync.RWMutex // guards m
	m  map[extID]*seen
}

// extID identifies an extension: its domain in lower case and its number.
type extID struct{ domain, number string }

// extKey returns the extension's extID (no allocation when the domain is
// already in lower case, as it nearly always is).
func extKey(domain, number string) extID { return extID{strings.ToLower(domain), number} }

func newTracker() *tracker { return &tracker{m: map[extID]*seen{}} }

// observe records what e says about its extension.
func (t *tracker) observe(e store.Event) {
	if e.Extension == "" {
		return
	}
	fail := failureCauses[e.Cause]
	if !fail && e.Cause != cause.Registered {
		return
	}
	k := extKey(e.Domain, e.Extension)
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.m[k]
	if s == nil {
		if len(t.m) >= maxTracked {
			t.forgetOldest()
		}
		s = &seen{}
		t.m[k] = s
	}
	if fail {
		if e.Time.After(s.failAt) || s.failAt.IsZero() {
			s.failCause, s.failAt, s.failSource, s.failUA = e.Cause, e.Time, e.Source, e.UserAgent
		}
	} else if e.Time.After(s.lastReg) {
		s.lastReg = e.Time
	}
}

// forgetOldest drops the half of the entries seen longest ago. mu is held.
func (t *tracker) forgetOldest() {
	times := make([]time.Time, 0, len(t.m))
	last := func(s *seen) time.Time {
		if s.failAt.After(s.lastReg) {
			return s.failAt
		}
		return s.lastReg
	}
	for _, s := range t.m {
		times = append(times, last(s))
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	cut := times[len(times)/2]
	for k, s := range t.m {
		if !last(s).After(cut) {
			delete(t.m, k)
		}
	}
}

func (t *tracker) get(domain, number string) seen {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if s := t.m[extKey(domain, number)]; s != nil {
		return *s
	}
	return seen{}
}

// failingSince returns the extensions whose last failure is after cutoff.
func (t *tracker) failingSince(cutoff time.Time) []extID {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []extID
	for k, s := range t.m {
		if s.failAt.After(cutoff) {
			out = append(out, k)
		}
	}
	return out
}

// seed reads the journal's recent events (oldest first, at most limit) so
// that a restarted server still shows what failed.
func (t *tracker) seed(ctx context.Context, db store.Journal, since time.Time, limit int) error {
	evs, err := db.QueryEvents(ctx, store.JournalFilter{Since: since, Limit: limit})
	if err != nil {
		return err
	}
	for i := len(evs) - 1; i >= 0; i-- {
		t.observe(evs[i])
	}
	return nil
}

// Extension statuses, in the order a dot shows them when several apply.
const (
	StatusDisabled   = "disabled"
	StatusFailing    = "failing"
	StatusRegistered = "registered"
	StatusOffline    = "offline"
)

// statusOf is an extension's status: disabled, else failing (a failure
// within FailingFor), else registered (at least one contact), else
// offline.
func statusOf(enabled bool, contacts int, s seen, now time.Time) string {
	switch {
	case !enabled:
		return StatusDisabled
	case !s.failAt.IsZero() && now.Sub(s.failAt) < FailingFor:
		return StatusFailing
	case contacts > 0:
		return StatusRegistered
	}
	return StatusOffline
}

// index is the directory sorted as the CLI lists it (domain, then number
// by length and value), rebuilt when the directory changes.
type index struct {
	mu    sync.Mutex // guards list, dirty
	list  []*directory.Entry
	dirty bool
}

func compareEntry(a, b *directory.Entry) int {
	if c := cmp.Compare(strings.ToLower(a.Domain()), strings.ToLower(b.Domain())); c != 0 {
		return c
	}
	return compareNumber(a.Number(), b.Number())
}

func compareNumber(a, b string) int {
	if c := cmp.Compare(len(a), len(b)); c != 0 {
		return c
	}
	return cmp.Compare(a, b)
}

func (x *index) invalidate() {
	x.mu.Lock()
	x.dirty = true
	x.mu.Unlock()
}

// entries returns the sorted directory (shared: do not modify).
func (x *index) entries(dir *directory.Cache) []*directory.Entry {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.list == nil || x.dirty || len(x.list) != dir.Count() {
		l := dir.Entries()
		slices.SortFunc(l, compareEntry)
		x.list, x.dirty = l, false
	}
	return x.list
}
