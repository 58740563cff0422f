//go:build !linux

package sipstack

import "net"

// directWrites returns c: direct sendto(2) writes are implemented on Linux
// only (see udpsend_linux.go).
func directWrites(c net.PacketConn) net.PacketConn { return c }

// stampReads returns c: the kernel's arrival stamps (and dropping stale
// REGISTERs, see staleFresh) are used on Linux only (stale_linux.go).
func stampReads(c net.PacketConn, _ *net.UDPConn, _ *staleStats) net.PacketConn { return c }
