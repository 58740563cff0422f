package sipstack

import (
	"net"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stampedUDP is a UDP socket whose datagrams carry the kernel's arrival
// stamp (SO_TIMESTAMPNS), read with recvmsg(2); ReadFrom drops the stale
// REGISTERs (see staleFresh) and returns the next datagram. Writes go to
// the wrapped conn (directUDP). The kernel turns stamping on for the whole
// system a moment after the first socket asks; a datagram that arrived
// before is stamped when read, so it is never taken for stale.
type stampedUDP struct {
	net.PacketConn
	uc    *net.UDPConn
	stale *staleStats
}

// stampReads asks the kernel to stamp uc's datagrams on arrival and
// returns c (uc, possibly wrapped for writes) reading through it; c itself
// when the socket refuses.
func stampReads(c net.PacketConn, uc *net.UDPConn, stale *staleStats) net.PacketConn {
	rc, err := uc.SyscallConn()
	if err != nil {
		return c
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return c
	}
	return &stampedUDP{PacketConn: c, uc: uc, stale: stale}
}

// oobWords holds one SCM_TIMESTAMPNS control message (and room to spare),
// 8-byte aligned for the header's and the timespec's fields.
type oobWords [8]uint64

// ReadFrom reads the next datagram that is not a stale REGISTER.
func (s *stampedUDP) ReadFrom(b []byte) (int, net.Addr, error) {
	var words oobWords
	oob := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), unsafe.Sizeof(words))
	for {
		n, oobn, _, addr, err := s.uc.ReadMsgUDP(b, oob)
		if err != nil {
			if addr == nil {
				return n, nil, err // not a typed nil in the interface
			}
			return n, addr, err
		}
		if isStale(b[:n], arrival(&words, oobn), time.Now) {
			s.stale.dropped()
			continue
		}
		return n, addr, nil
	}
}

// arrival returns the SCM_TIMESTAMPNS stamp among the first oobn bytes of
// words, or the zero time.
func arrival(words *oobWords, oobn int) time.Time {
	oob := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), unsafe.Sizeof(*words))[:min(oobn, int(unsafe.Sizeof(*words)))]
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return time.Time{}
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && l >= unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{}))) {
			ts := (*unix.Timespec)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
			return time.Unix(ts.Unix())
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(oob) {
			return time.Time{}
		}
		oob = oob[next:]
	}
	return time.Time{}
}
