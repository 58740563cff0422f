package media

import "time"

// windowOver reports whether rule (c)'s window since the last SetPeer has
// passed (tests).
func (l *Leg) windowOver() bool {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	return sinceNS(l.s.r.start, time.Now())-l.peerAtNS > int64(l.s.r.cfg.LatchWindow)
}
