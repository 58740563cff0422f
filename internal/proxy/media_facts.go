package proxy

import "github.com/switchboard-pbx/switchboard/internal/store"

// LiveMedia returns the relay's live counters of the call callID as call
// record legs (the same conversion as at the call's end); ok is false when
// its media are not relayed (or the call is gone).
func (p *Proxy) LiveMedia(callID string) (legs []store.MediaLeg, ok bool) {
	m := p.mediaOf(callID)
	if m == nil {
		return nil, false
	}
	m.mu.Lock()
	closed, st := m.closed, m.final
	m.mu.Unlock()
	if !closed {
		st = m.sess.Stats()
	}
	return m.legs(st), true
}

// RelayedCalls returns the Call-IDs of at most limit calls whose media are
// relayed now, in no particular order.
func (p *Proxy) RelayedCalls(limit int) []string {
	var ids []string
	p.relayed.Range(func(k, _ any) bool {
		if len(ids) >= limit {
			return false
		}
		ids = append(ids, k.(string))
		return true
	})
	return ids
}
