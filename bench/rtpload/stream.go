package main

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// RTP packets of the load: a 12-byte RTP header (V=2, PT 0 = PCMU, the
// sequence number, timestamp += 160 per packet, SSRC) and a 160-byte G.711
// payload (20 ms at 8 kHz) whose first 24 bytes carry the measurement:
//
//	[0:4]   magic "RTPL"
//	[4:8]   stream id (call*2 + direction)
//	[8:12]  sequence number (32 bits; the RTP one wraps at 65,536)
//	[12:20] send time, ns since 1970 (the wall clock, the clock of the
//	        kernel's receive timestamps)
//	[20:24] run id (packets of another run are not counted)
//
// The rest of the payload is PCMU silence (0xFF).
const (
	rtpHeader   = 12
	payloadSize = 160
	packetSize  = rtpHeader + payloadSize
	packetGap   = 20 * time.Millisecond // 50 packets/s
	slots       = 20                    // send phases, 1 ms apart
)

var magic = [4]byte{'R', 'T', 'P', 'L'}

// stamp writes packet seq of stream id, sent at ns, into p (packetSize).
func stamp(p []byte, run, id, seq uint32, ns int64) {
	p[0] = 0x80
	p[1] = 0 // PCMU
	binary.BigEndian.PutUint16(p[2:4], uint16(seq))
	binary.BigEndian.PutUint32(p[4:8], seq*160)
	binary.BigEndian.PutUint32(p[8:12], 0x5B000000|id)
	q := p[rtpHeader:]
	copy(q[0:4], magic[:])
	binary.BigEndian.PutUint32(q[4:8], id)
	binary.BigEndian.PutUint32(q[8:12], seq)
	binary.BigEndian.PutUint64(q[12:20], uint64(ns))
	binary.BigEndian.PutUint32(q[20:24], run)
}

// parse reads what stamp wrote; ok is false for anything else.
func parse(p []byte, run uint32) (id, seq uint32, ns int64, ok bool) {
	if len(p) != packetSize || p[0]>>6 != 2 {
		return 0, 0, 0, false
	}
	q := p[rtpHeader:]
	if [4]byte(q[0:4]) != magic || binary.BigEndian.Uint32(q[20:24]) != run {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint32(q[4:8]), binary.BigEndian.Uint32(q[8:12]),
		int64(binary.BigEndian.Uint64(q[12:20])), true
}

// histogram counts latencies in log-linear buckets: exact below 256 ns,
// then 256 buckets per power of two (relative error under 0.4 %). Safe for
// concurrent use.
type histogram struct {
	b     [64 * 256]atomic.Uint64
	max   atomic.Int64
	sum   atomic.Int64
	count atomic.Uint64
}

const subBits = 8

func bucketOf(ns int64) int {
	if ns < 0 {
		ns = 0
	}
	v := uint64(ns)
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(v) - subBits - 1 // v>>e is in [256, 511]
	return (e+1)<<subBits + int(v>>e) - 1<<subBits
}

// bucketLow is the smallest latency counted in bucket i.
func bucketLow(i int) int64 {
	if i < 1<<subBits {
		return int64(i)
	}
	e := i>>subBits - 1
	return int64((uint64(i&(1<<subBits-1)) + 1<<subBits) << e)
}

func (h *histogram) add(ns int64) {
	h.b[bucketOf(ns)].Add(1)
	h.count.Add(1)
	h.sum.Add(ns)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			return
		}
	}
}

// quantile returns the latency below which a fraction q of the samples
// lie (the midpoint of the bucket holding it); 0 when empty.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n-1)) + 1 // 1-based rank of the sample
	var seen uint64
	for i := range h.b {
		seen += h.b[i].Load()
		if seen >= rank {
			lo, hi := bucketLow(i), bucketLow(i+1)
			return time.Duration((lo + hi) / 2)
		}
	}
	return time.Duration(h.max.Load())
}

// recvStream is what the receiving party saw of one stream. Only its
// receiver goroutine writes it; it is read after that goroutine ended.
type recvStream struct {
	seen     []uint64 // bitmap of sequence numbers received
	received uint64
	dup      uint64
}

// party is one end of a call: an RTP socket that sends one stream and
// receives the other.
type party struct {
	conn *net.UDPConn
	addr netip.AddrPort // its own (the SDP address)
	dest netip.AddrPort // where it sends (the relay, or the other party)
	out  uint32         // id of the stream it sends
	in   uint32         // id of the stream it receives
	rs   recvStream
}

// openParty opens a party's RTP socket on bind with kernel receive
// timestamps (SO_TIMESTAMPNS) on.
func openParty(bind netip.Addr) (*party, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, 0)))
	if err != nil {
		return nil, err
	}
	if err := setTimestamps(c); err != nil {
		c.Close()
		return nil, err
	}
	return &party{conn: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort()}, nil
}

func setTimestamps(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return &net.OpError{Op: "setsockopt SO_TIMESTAMPNS", Net: "udp", Err: serr}
	}
	return nil
}

// oobSize holds one SCM_TIMESTAMPNS control message (and room to spare).
const oobSize = 64

// kernelStamp returns the time of an SCM_TIMESTAMPNS control message in
// oob (ns since 1970): when the packet reached the socket, so the latency
// measured excludes this tool's own delay in reading it. It reads the
// 64-bit Linux layout (cmsghdr: 8-byte length, level, type; timespec: two
// 8-byte fields); ok is false on anything else.
func kernelStamp(oob []byte) (ns int64, ok bool) {
	const hdr = 16
	if unix.SizeofCmsghdr != hdr {
		return 0, false
	}
	for len(oob) >= hdr {
		l := binary.NativeEndian.Uint64(oob[0:8])
		level := int32(binary.NativeEndian.Uint32(oob[8:12]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:16]))
		if l < hdr || l > uint64(len(oob)) {
			return 0, false
		}
		if level == syscall.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS && l >= hdr+16 {
			sec := int64(binary.NativeEndian.Uint64(oob[hdr : hdr+8]))
			nsec := int64(binary.NativeEndian.Uint64(oob[hdr+8 : hdr+16]))
			return sec*1e9 + nsec, true
		}
		next := (l + 7) &^ 7 // CMSG_ALIGN
		if next >= uint64(len(oob)) {
			return 0, false
		}
		oob = oob[next:]
	}
	return 0, false
}

// totals of a streaming run.
type totals struct {
	sent, sendErr, received, dup, foreign uint64
	// userStamped counts latency samples taken when this tool read the
	// packet, for want of a kernel timestamp (0 normally).
	userStamped  uint64
	firstSendErr string
	lat          *histogram
	// lag: how far behind its schedule each batch of sends started.
	lag *histogram
}

// stream sends count packets per party, every 20 ms, in 20 phases 1 ms
// apart (party i in phase i mod 20), from start; each party's receiver
// counts what arrives until stopAt. Latency is recorded for packets sent
// at latFrom or later (the steady window); loss counts every packet. The
// latency of a packet is from its send call to its arrival at the
// receiving socket (the kernel's timestamp). It returns when every sender is done
// and every receiver has reached stopAt. Destinations must be loopback
// (checked by the caller).
func stream(parties []*party, run uint32, start, latFrom, stopAt time.Time, count int) totals {
	latNs := latFrom.UnixNano()
	t := totals{lat: &histogram{}, lag: &histogram{}}
	var (
		wg            sync.WaitGroup
		sent, sendErr atomic.Uint64
		foreign       atomic.Uint64
		firstErr      atomic.Value
		userStamped   atomic.Uint64
	)
	for _, p := range parties {
		p.rs = recvStream{seen: make([]uint64, (count+63)/64)}
		_ = p.conn.SetReadDeadline(stopAt)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			oob := make([]byte, oobSize)
			for {
				n, oobn, _, _, err := p.conn.ReadMsgUDPAddrPort(buf, oob)
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				now, kernel := kernelStamp(oob[:oobn])
				if !kernel {
					now = time.Now().UnixNano()
				}
				id, seq, ns, ok := parse(buf[:n], run)
				if !ok || id != p.in || int(seq) >= count {
					foreign.Add(1)
					continue
				}
				w, bit := seq/64, uint64(1)<<(seq%64)
				if p.rs.seen[w]&bit != 0 {
					p.rs.dup++
					continue
				}
				p.rs.seen[w] |= bit
				p.rs.received++
				if ns >= latNs {
					t.lat.add(now - ns)
					if !kernel {
						userStamped.Add(1)
					}
				}
			}
		}()
	}
	var swg sync.WaitGroup
	for s := 0; s < slots; s++ {
		var mine []*party
		for i := s; i < len(parties); i += slots {
			mine = append(mine, parties[i])
		}
		if len(mine) == 0 {
			continue
		}
		swg.Add(1)
		go func() {
			defer swg.Done()
			pkt := make([]byte, packetSize)
			for i := rtpHeader; i < packetSize; i++ {
				pkt[i] = 0xFF
			}
			phase := start.Add(time.Duration(s) * time.Millisecond)
			for k := 0; k < count; k++ {
				due := phase.Add(time.Duration(k) * packetGap)
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				t.lag.add(int64(time.Since(due)))
				if time.Now().After(stopAt) {
					return // far behind: the run is over
				}
				for _, p := range mine {
					stamp(pkt, run, p.out, uint32(k), time.Now().UnixNano())
					if _, err := p.conn.WriteToUDPAddrPort(pkt, p.dest); err != nil {
						sendErr.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						continue
					}
					sent.Add(1)
				}
			}
		}()
	}
	swg.Wait()
	wg.Wait()
	t.sent, t.sendErr, t.foreign = sent.Load(), sendErr.Load(), foreign.Load()
	t.userStamped = userStamped.Load()
	if v, ok := firstErr.Load().(string); ok {
		t.firstSendErr = v
	}
	for _, p := range parties {
		t.received += p.rs.received
		t.dup += p.rs.dup
	}
	return t
}
