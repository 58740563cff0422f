package sipstack

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePort sets SO_REUSEPORT before bind, so that several UDP sockets can
// share the SIP port; the kernel then spreads datagrams over them by the
// sender's address and port (one peer always lands on the same socket, so
// its messages keep their order). Only sockets of the same user can join.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

const haveReusePort = true
