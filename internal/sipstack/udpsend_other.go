//go:build !linux

package sipstack

import "net"

// directWrites returns c: direct sendto(2) writes are implemented on Linux
// only (see udpsend_linux.go).
func directWrites(c net.PacketConn) net.PacketConn { return c }
