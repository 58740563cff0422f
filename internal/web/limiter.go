package web

import (
	"sync"
	"time"
)

// Login limits: maxFailures failed logins within failWindow from one
// address, or for one name, lock further attempts for lockFor.
const (
	maxFailures = 5
	failWindow  = 5 * time.Minute
	lockFor     = 15 * time.Minute
	// maxTracked caps the addresses and names remembered; past it the
	// oldest entries are forgotten.
	maxTracked = 10000
)

// loginLimiter counts failed logins per client address and per name.
type loginLimiter struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*failures
}

type failures struct {
	first  time.Time // start of the window
	count  int
	locked time.Time // locked until
}

func newLoginLimiter(now func() time.Time) *loginLimiter {
	return &loginLimiter{now: now, m: map[string]*failures{}}
}

// locked reports whether any of keys is locked, and until when.
func (l *loginLimiter) locked(keys ...string) (bool, time.Time) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if f, ok := l.m[k]; ok && now.Before(f.locked) {
			return true, f.locked
		}
	}
	return false, time.Time{}
}

// fail counts a failed login for each key; it reports whether one of them
// is now locked.
func (l *loginLimiter) fail(keys ...string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) >= maxTracked {
		l.pruneLocked(now)
	}
	lockedNow := false
	for _, k := range keys {
		f, ok := l.m[k]
		if !ok {
			f = &failures{first: now}
			l.m[k] = f
		}
		if now.Sub(f.first) > failWindow {
			f.first, f.count = now, 0
		}
		f.count++
		if f.count >= maxFailures {
			f.locked = now.Add(lockFor)
			f.first, f.count = now, 0
			lockedNow = true
		}
	}
	return lockedNow
}

// succeed forgets the failures of keys.
func (l *loginLimiter) succeed(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		delete(l.m, k)
	}
}

// pruneLocked drops the entries that are neither locked nor counting; if
// that is not enough, the oldest half.
func (l *loginLimiter) pruneLocked(now time.Time) {
	for k, f := range l.m {
		if !now.Before(f.locked) && now.Sub(f.first) > failWindow {
			delete(l.m, k)
		}
	}
	if len(l.m) < maxTracked {
		return
	}
	n := 0
	for k := range l.m { // map order is random: drops an arbitrary half
		delete(l.m, k)
		if n++; n >= maxTracked/2 {
			break
		}
	}
}
