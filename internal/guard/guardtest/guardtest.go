// Package guardtest has test helpers for code that drives a guard.Guard.
package guardtest

import (
	"net"
	"sync"
)

// Recorder is a guard.Transport that keeps what the guard sent (raw
// replies and closed connections) instead of sending it: for unit tests of
// the guard's own logic. Safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	replies [][]byte
	closed  []string
}

// Reply keeps a copy of b.
func (r *Recorder) Reply(_ string, _ net.Addr, b []byte) error {
	r.mu.Lock()
	r.replies = append(r.replies, append([]byte(nil), b...))
	r.mu.Unlock()
	return nil
}

// CloseConn records that the connection from remote was closed.
func (r *Recorder) CloseConn(remote net.Addr) error {
	r.mu.Lock()
	r.closed = append(r.closed, remote.String())
	r.mu.Unlock()
	return nil
}

// Take returns what was kept since the last call and forgets it.
func (r *Recorder) Take() (replies [][]byte, closed []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	replies, closed = r.replies, r.closed
	r.replies, r.closed = nil, nil
	return
}
