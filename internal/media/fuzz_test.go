package media

import (
	"encoding/binary"
	"math"
	"net/netip"
	"testing"
	"time"
)

// FuzzRTP: any datagram gets a verdict, never a panic; a packet classified
// as RTP or RTCP really has the header the verdict promises; the stream
// statistics stay sane; and the whole receive path (latching, counting,
// forwarding decision) takes it without panicking or growing.
func FuzzRTP(f *testing.F) {
	f.Add(rtpPacket(0, 1, 160, 1, 160), uint16(2))
	f.Add(rtpPacket(101, 65535, 0, 7, 4), uint16(0))
	f.Add(rtcpRR(9), uint16(1))
	f.Add([]byte{0x9f, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}, uint16(3))
	f.Add([]byte{0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0xff, 0xff}, uint16(4))
	f.Add([]byte{0x80, 200, 0xff, 0xff, 0, 0, 0, 0}, uint16(5))
	f.Add([]byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42}, uint16(6))

	r, err := New(Config{AdvertiseIP: loopback, PortMin: 40000, PortMax: 40003, Timeout: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	src := netip.MustParseAddrPort("127.0.0.2:5004")

	f.Fuzz(func(t *testing.T, b []byte, seq uint16) {
		kind, h := classify(b)
		switch kind {
		case RTP:
			if len(b) < 12+4*int(b[0]&0x0f) || b[0]>>6 != 2 {
				t.Fatalf("RTP verdict for a header that does not fit: %x", b)
			}
			if p := b[1] & 0x7f; p >= 64 && p <= 95 {
				t.Fatalf("RTP verdict for an RTCP packet type: %x", b)
			}
			if h.seq != binary.BigEndian.Uint16(b[2:4]) {
				t.Fatal("wrong sequence number")
			}
		case RTCP:
			if len(b) < 8 || (int(binary.BigEndian.Uint16(b[2:4]))+1)*4 > len(b) {
				t.Fatalf("RTCP verdict for a short packet: %x", b)
			}
		case Malformed:
		default:
			t.Fatalf("unknown kind %d", kind)
		}
		if Classify(b) != kind {
			t.Fatal("Classify and classify disagree")
		}

		// The statistics on a stream of this packet with varied sequence numbers.
		var st inStream
		for i := range 8 {
			h.seq += seq * uint16(i)
			h.ts += uint32(seq) * 7
			st.update(h, int64(i)*int64(time.Millisecond)*int64(seq%50), int(seq%48000)+1)
		}
		if st.lost() < 0 || st.expected() < 0 || math.IsNaN(st.jitterMS()) || st.jitterMS() < 0 {
			t.Fatalf("stats out of range: lost %d expected %d jitter %v", st.lost(), st.expected(), st.jitterMS())
		}

		// The receive path of a session without sockets.
		s := newSession(r, "fuzz")
		l := s.Leg(Side(seq & 1))
		l.SetPeer(Peer{RTP: src, RTCPMux: seq&2 != 0, SIPSource: src.Addr()})
		s.Leg(Side(1 - seq&1)).SetPeer(Peer{RTP: netip.MustParseAddrPort("127.0.0.3:6000")})
		for range 3 {
			s.handle(l, int(seq>>2&1), b, src, len(b) >= bufSize, false)
		}
		got := s.statsLocked()[l.side]
		if got.PacketsIn+got.Malformed != 3 {
			t.Fatalf("3 datagrams: in %d malformed %d", got.PacketsIn, got.Malformed)
		}
		if got.MOS < 0 || got.MOS > 4.5 || math.IsNaN(got.MOS) {
			t.Fatalf("MOS %v", got.MOS)
		}
	})
}
