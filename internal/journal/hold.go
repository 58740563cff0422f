package journal

import "time"

// HoldFor is how long Hold keeps an event before it is recorded.
const HoldFor = 2 * time.Second

// holdMax bounds the held events; beyond it Hold records at once.
const holdMax = 100_000

// Hold records e, but only after HoldFor, and not at all if Settle(key)
// comes first: for an event that a success soon after makes redundant,
// such as the challenge before a phone's authenticated REGISTER (the
// registered event says it was challenged and answered). A challenge
// nobody answers is journaled as usual, two seconds later; Flush records
// held events at once. Time is set when zero. At most one event is held
// per key: an earlier one is recorded.
func (w *Writer) Hold(key uint64, e Event) {
	if w == nil || w.off.Load() {
		return
	}
	if e.Time.IsZero() {
		e.Time = w.now()
	}
	w.holdMu.Lock()
	prev, had := w.held[key]
	full := !had && len(w.held) >= holdMax
	if !full {
		w.held[key] = e
	}
	w.holdMu.Unlock()
	switch {
	case had:
		w.add(prev)
	case full:
		w.add(e)
	}
}

// Settle forgets the event held for key, if any.
func (w *Writer) Settle(key uint64) {
	if w == nil {
		return
	}
	w.holdMu.Lock()
	delete(w.held, key)
	w.holdMu.Unlock()
}

// Release records the event held for key, if any, at once: call it before
// recording another event of the same pair (a refusal), so that the
// journal keeps them in order.
func (w *Writer) Release(key uint64) {
	if w == nil {
		return
	}
	w.holdMu.Lock()
	e, ok := w.held[key]
	delete(w.held, key)
	w.holdMu.Unlock()
	if ok {
		w.add(e)
	}
}

// release records the held events that waited HoldFor (all of them when
// all is set).
func (w *Writer) release(all bool) {
	now := w.now()
	w.holdMu.Lock()
	defer w.holdMu.Unlock()
	for k, e := range w.held {
		if all || now.Sub(e.Time) >= HoldFor {
			w.add(e)
			delete(w.held, k)
		}
	}
}
