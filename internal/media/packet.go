package media

import "encoding/binary"

// Kind is what a datagram that arrived on a relay socket is.
type Kind uint8

const (
	// Malformed: too short, not version 2, or a header that does not fit
	// the datagram. Dropped and counted in LegStats.Malformed.
	Malformed Kind = iota
	// RTP: a version-2 RTP packet whose fixed header, CSRC list and
	// header extension fit the datagram.
	RTP
	// RTCP: a version-2 RTCP packet (packet type 192-223, RFC 5761 section
	// 4) whose first header's length fits the datagram.
	RTCP
)

// String names the kind for logs and test failures.
func (k Kind) String() string {
	switch k {
	case RTP:
		return "rtp"
	case RTCP:
		return "rtcp"
	}
	return "malformed"
}

// rtpHeader holds the fields of an RTP header the statistics use.
type rtpHeader struct {
	pt   uint8
	seq  uint16
	ts   uint32
	ssrc uint32
}

// Classify tells RTP from RTCP and checks the headers, without copying or
// allocating. It is safe on any input.
//
// RTP and RTCP are told apart by the second byte as RFC 5761 section 4
// says: with the marker bit masked off, 64-95 is RTCP (packet types
// 192-223), anything else RTP. An RTP packet needs 12 bytes, version 2,
// room for its CSRC list and, when the X bit is set, for its header
// extension. Padding is not checked: under SRTP the padding count is
// encrypted, and the relay passes SRTP through untouched. An RTCP packet
// needs 8 bytes (header and sender SSRC), version 2 and a first packet
// whose length field fits the datagram; the rest of a compound packet is
// not walked, because SRTCP appends an index and an authentication tag
// that are not RTCP packets.
func Classify(b []byte) Kind {
	k, _ := classify(b)
	return k
}

func classify(b []byte) (Kind, rtpHeader) {
	var h rtpHeader
	if len(b) < 8 || b[0]>>6 != 2 {
		return Malformed, h
	}
	if pt := b[1] & 0x7f; pt >= 64 && pt <= 95 {
		// RTCP: length is in 32-bit words minus one.
		n := (int(binary.BigEndian.Uint16(b[2:4])) + 1) * 4
		if n < 8 || n > len(b) {
			return Malformed, h
		}
		return RTCP, h
	}
	if len(b) < 12 {
		return Malformed, h
	}
	off := 12 + 4*int(b[0]&0x0f)
	if off > len(b) {
		return Malformed, h
	}
	if b[0]&0x10 != 0 { // header extension: 16-bit profile, 16-bit length in words
		if off+4 > len(b) {
			return Malformed, h
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(b[off+2:off+4]))
		if off > len(b) {
			return Malformed, h
		}
	}
	h.pt = b[1] & 0x7f
	h.seq = binary.BigEndian.Uint16(b[2:4])
	h.ts = binary.BigEndian.Uint32(b[4:8])
	h.ssrc = binary.BigEndian.Uint32(b[8:12])
	return RTP, h
}
