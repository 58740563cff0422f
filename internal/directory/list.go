package directory

// Entries returns every loaded extension, in no particular order: a
// snapshot (later changes replace entries, they do not alter these). The
// web console sorts it once per directory change to page through 100,000
// extensions without reading the database.
func (c *Cache) Entries() []*Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := 0
	for _, m := range c.exts {
		n += len(m)
	}
	out := make([]*Entry, 0, n)
	for _, m := range c.exts {
		for _, e := range m {
			out = append(out, e)
		}
	}
	return out
}
