//go:build !linux

package sipstack

import "syscall"

// reusePort is a no-op here: one UDP socket, one reader.
func reusePort(_, _ string, _ syscall.RawConn) error { return nil }

const haveReusePort = false
