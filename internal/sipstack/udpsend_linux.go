package sipstack

import (
	"net"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directUDP is a UDP socket whose WriteTo calls sendto(2) itself, on the
// socket's descriptor, instead of through Go's net package: Go lets one
// write at a time use a descriptor (a per-descriptor lock), so every
// datagram the server sends (answers, forwarded requests, relayed
// responses, from as many goroutines) queued behind that lock, and under
// load the queue, not the CPU, capped the message rate (in a 1,500
// calls/s SIPp run, 1,100 of 2,300 goroutines were waiting for it while
// the sockets overflowed). A UDP send needs no such turn: the kernel
// takes datagrams from many threads at once. When the kernel cannot take
// one at once (EAGAIN: the send buffer is full) or the address is one
// this path does not build (an IPv6 zone), the write goes through Go's
// net package, which waits.
//
// Close stops direct writes before the descriptor is closed (mu), so a
// write never reaches a descriptor number the process reused.
type directUDP struct {
	net.PacketConn
	fd  int
	v6  bool // an AF_INET6 socket: IPv4 destinations as v4-mapped
	mu  sync.RWMutex
	off bool // closed (guarded by mu)
}

// directWrites returns c with direct writes, or c itself when it is not a
// *net.UDPConn whose descriptor can be read.
func directWrites(c net.PacketConn) net.PacketConn {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return c
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return c
	}
	d := &directUDP{PacketConn: c, fd: -1}
	if err := rc.Control(func(fd uintptr) {
		sa, err := unix.Getsockname(int(fd))
		if err != nil {
			return
		}
		switch sa.(type) {
		case *unix.SockaddrInet4:
			d.fd = int(fd)
		case *unix.SockaddrInet6:
			d.fd, d.v6 = int(fd), true
		}
	}); err != nil || d.fd < 0 {
		return c
	}
	return d
}

// WriteTo sends b to addr (a *net.UDPAddr) in one sendto(2).
func (d *directUDP) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || ua.Zone != "" || len(b) == 0 || ua.Port <= 0 || ua.Port > 0xffff {
		return d.PacketConn.WriteTo(b, addr)
	}
	// The address is built on the stack and passed raw (unix.Sendto takes
	// an interface, which costs an allocation per datagram).
	var sa4 unix.RawSockaddrInet4
	var sa6 unix.RawSockaddrInet6
	var sa unsafe.Pointer
	var salen uintptr
	if ip4 := ua.IP.To4(); ip4 != nil && !d.v6 {
		sa4.Family = unix.AF_INET
		port := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		port[0], port[1] = byte(ua.Port>>8), byte(ua.Port)
		copy(sa4.Addr[:], ip4)
		sa, salen = unsafe.Pointer(&sa4), unix.SizeofSockaddrInet4
	} else if ip16 := ua.IP.To16(); ip16 != nil && d.v6 {
		sa6.Family = unix.AF_INET6
		port := (*[2]byte)(unsafe.Pointer(&sa6.Port))
		port[0], port[1] = byte(ua.Port>>8), byte(ua.Port)
		copy(sa6.Addr[:], ip16) // an IPv4 address is v4-mapped by To16
		sa, salen = unsafe.Pointer(&sa6), unix.SizeofSockaddrInet6
	} else {
		return d.PacketConn.WriteTo(b, addr)
	}
	d.mu.RLock()
	if d.off {
		d.mu.RUnlock()
		return 0, net.ErrClosed
	}
	_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(d.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		0, uintptr(sa), salen)
	d.mu.RUnlock()
	if errno == 0 {
		return len(b), nil
	}
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return d.PacketConn.WriteTo(b, addr)
	}
	return 0, &net.OpError{Op: "write", Net: "udp", Source: d.LocalAddr(), Addr: addr, Err: errno}
}

// Close ends direct writes, then closes the socket.
func (d *directUDP) Close() error {
	d.mu.Lock()
	d.off = true
	d.mu.Unlock()
	return d.PacketConn.Close()
}
