package e2e

import (
	"encoding/binary"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RTPPhone is the media side of a scripted phone: a UDP socket on
// 127.0.0.1 that sends a G.711 u-law tone (PT 0, 20 ms packets) to an
// address and keeps what it receives, decoded, for the test to measure.
type RTPPhone struct {
	t    testing.TB
	Conn *net.UDPConn

	mu       sync.Mutex
	samples  []float64 // decoded PCMU received, full scale 1.0
	received map[uint8]int
	sources  map[netip.AddrPort]int
	events   []byte // RFC 4733 event codes received (PT 101), one per event
	done     chan struct{}
}

// NewRTPPhone opens the socket and starts receiving (until the test ends).
func NewRTPPhone(t testing.TB) *RTPPhone {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &RTPPhone{t: t, Conn: c, received: map[uint8]int{}, sources: map[netip.AddrPort]int{}, done: make(chan struct{})}
	go p.read()
	t.Cleanup(func() {
		c.Close()
		<-p.done
	})
	return p
}

// Addr is the socket's address.
func (p *RTPPhone) Addr() netip.AddrPort { return p.Conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (p *RTPPhone) read() {
	defer close(p.done)
	buf := make([]byte, 2048)
	for {
		n, from, err := p.Conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n < 12 || buf[0]>>6 != 2 {
			continue
		}
		pt := buf[1] & 0x7f
		p.mu.Lock()
		p.received[pt]++
		p.sources[from]++
		if pt == 101 && n >= 16 {
			// A new event: its first packet (marker bit), or a code other
			// than the last one's.
			if ev := buf[12]; buf[1]&0x80 != 0 || len(p.events) == 0 || p.events[len(p.events)-1] != ev {
				p.events = append(p.events, ev)
			}
		}
		if pt == 0 {
			for _, b := range buf[12:n] {
				p.samples = append(p.samples, float64(ulawDecode(b))/32768)
			}
		}
		p.mu.Unlock()
	}
}

// Received returns how many packets of payload type pt arrived.
func (p *RTPPhone) Received(pt uint8) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.received[pt]
}

// Events returns the RFC 4733 event codes received (0-9 are the digits).
func (p *RTPPhone) Events() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]byte(nil), p.events...)
}

// SendEvent sends one RFC 4733 event (code 0-15, PT 101) to dst as a
// phone does: 5 packets 20 ms apart with a growing duration, the first
// with the marker bit, the last three with the end bit.
func (p *RTPPhone) SendEvent(dst netip.AddrPort, code byte, seq uint16, ts, ssrc uint32) {
	pkt := make([]byte, 16)
	for i := range 5 {
		pkt[0], pkt[1] = 0x80, 101
		if i == 0 {
			pkt[1] |= 0x80
		}
		binary.BigEndian.PutUint16(pkt[2:], seq+uint16(i))
		binary.BigEndian.PutUint32(pkt[4:], ts)
		binary.BigEndian.PutUint32(pkt[8:], ssrc)
		pkt[12], pkt[13] = code, 10 // volume -10 dBm0
		if i >= 2 {
			pkt[13] |= 0x80 // end
		}
		binary.BigEndian.PutUint16(pkt[14:], uint16(160*(min(i, 2)+1)))
		_, _ = p.Conn.WriteToUDPAddrPort(pkt, dst)
		time.Sleep(20 * time.Millisecond)
	}
}

// Sources returns the addresses packets came from.
func (p *RTPPhone) Sources() []netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []netip.AddrPort
	for a := range p.sources {
		out = append(out, a)
	}
	return out
}

// Tone measures the PCMU audio received so far (8000 Hz).
func (p *RTPPhone) Tone() WAVStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	var st WAVStats
	if len(p.samples) == 0 {
		return st
	}
	var sum float64
	crossings := 0
	for i, v := range p.samples {
		sum += v * v
		st.Peak = max(st.Peak, math.Abs(v))
		if i > 0 && (p.samples[i-1] < 0) != (v < 0) {
			crossings++
		}
	}
	st.Seconds = float64(len(p.samples)) / 8000
	st.RMS = math.Sqrt(sum / float64(len(p.samples)))
	st.FreqHz = float64(crossings) / 2 / st.Seconds
	return st
}

// SendTone sends a hz tone to dst for d (50 packets/s, PT 0) from the
// phone's socket, with SSRC ssrc, the first packet's sequence number
// seq (timestamp 160 x seq); it returns when done or stop closes, with
// the next sequence number.
func (p *RTPPhone) SendTone(dst netip.AddrPort, hz float64, d time.Duration, ssrc uint32, seq int, stop <-chan struct{}) int {
	return SendTone(p.Conn, dst, hz, d, ssrc, seq, stop)
}

// SendTone sends a hz tone as PCMU RTP from conn to dst for d, from
// sequence number seq, and returns the next sequence number.
func SendTone(conn *net.UDPConn, dst netip.AddrPort, hz float64, d time.Duration, ssrc uint32, seq int, stop <-chan struct{}) int {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	pkt := make([]byte, 12+160)
	end := time.Now().Add(d)
	i := seq
	for ; time.Now().Before(end); i++ {
		pkt[0], pkt[1] = 0x80, 0
		binary.BigEndian.PutUint16(pkt[2:], uint16(i))
		binary.BigEndian.PutUint32(pkt[4:], uint32(i*160))
		binary.BigEndian.PutUint32(pkt[8:], ssrc)
		for k := range 160 {
			n := i*160 + k
			pkt[12+k] = ulawEncode(int16(0.4 * 32767 * math.Sin(2*math.Pi*hz*float64(n)/8000)))
		}
		_, _ = conn.WriteToUDPAddrPort(pkt, dst)
		select {
		case <-t.C:
		case <-stop:
			return i + 1
		}
	}
	return i
}

// WaitRelayAddr waits for the file the call-uac-media.xml scenario writes
// ("IP PORT": the audio address of the SDP answer it got); ok is false
// when it did not appear within timeout.
func WaitRelayAddr(file string, timeout time.Duration) (ap netip.AddrPort, ok bool) {
	deadline := time.Now().Add(timeout)
	for ; time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ap, ok = readRelayAddr(file); ok {
			return ap, true
		}
	}
	return ap, false
}

func readRelayAddr(file string) (ap netip.AddrPort, ok bool) {
	{
		b, err := os.ReadFile(file)
		if err != nil {
			return ap, false
		}
		f := strings.Fields(string(b))
		if len(f) != 2 {
			return ap, false
		}
		ip, err1 := netip.ParseAddr(f[0])
		port, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil || port <= 0 || port > 65535 {
			return ap, false
		}
		return netip.AddrPortFrom(ip, uint16(port)), true
	}
}

// ulawEncode is G.711 u-law encoding of a 16-bit sample.
func ulawEncode(s int16) byte {
	const bias, clip = 0x84, 32635
	v := int(s)
	sign := 0
	if v < 0 {
		v, sign = -v, 0x80
	}
	v = min(v, clip) + bias
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (v >> (exp + 3)) & 0x0f
	return ^byte(sign | exp<<4 | mant)
}

// ulawDecode is G.711 u-law decoding to a 16-bit sample.
func ulawDecode(b byte) int16 {
	b = ^b
	sign, exp, mant := b&0x80, int(b>>4)&7, int(b&0x0f)
	v := ((mant << 3) + 0x84) << exp
	v -= 0x84
	if sign != 0 {
		return int16(-v)
	}
	return int16(v)
}
