package calls

// Queued is how many record snapshots wait to be written (for /metrics).
func (w *Writer) Queued() int { return w.q.Len() }
