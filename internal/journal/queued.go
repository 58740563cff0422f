package journal

// Queued is how many events wait to be written (for /metrics).
func (w *Writer) Queued() int { return w.q.Len() }
