package location

// CountByDomain returns the live bindings per domain (lower case), read
// from memory without copying them: what /metrics reports.
func (t *Table) CountByDomain() map[string]int {
	now := unixNano(t.now())
	out := map[string]int{}
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for k, list := range s.aors {
			for e := list; e != nil; e = e.next {
				if e.expires > now {
					out[k.domain]++
				}
			}
		}
		s.mu.RUnlock()
	}
	return out
}
