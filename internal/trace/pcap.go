package trace

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
)

// LinkTypeRaw is the pcap link type of raw IPv4/IPv6 packets
// (LINKTYPE_RAW): each record is an IP packet.
const LinkTypeRaw = 101

// pcapSnapLen is the snapshot length the file header announces.
const pcapSnapLen = 262144

// maxSegment is the most payload one synthetic IP packet carries (an
// IPv4 total length is 16 bits); longer TCP data is split.
const maxSegment = 65535 - 60 - 20

// PcapWriter writes captured messages as a pcap file (the classic
// format, microsecond timestamps, LINKTYPE_RAW) that Wireshark and tshark
// open: each message in a synthetic IPv4 or IPv6 packet with a UDP
// header, or a TCP segment (PSH|ACK, sequence numbers counted per
// direction of each connection), with the real addresses and ports.
// Checksums are 0 (not computed).
type PcapWriter struct {
	w     io.Writer
	seq   map[[2]netip.AddrPort]uint32 // next sequence number per (src, dst)
	flush func() error                 // after each Write, when set
}

// WithFlush makes Write call flush after each message (a buffered
// writer's Flush, so that the file is complete after every message).
func (p *PcapWriter) WithFlush(flush func() error) *PcapWriter {
	p.flush = flush
	return p
}

// NewPcapWriter writes the pcap file header to w and returns the writer.
func NewPcapWriter(w io.Writer) (*PcapWriter, error) {
	var h [24]byte
	le := binary.LittleEndian
	le.PutUint32(h[0:], 0xa1b2c3d4)
	le.PutUint16(h[4:], 2)
	le.PutUint16(h[6:], 4)
	// thiszone, sigfigs: 0
	le.PutUint32(h[16:], pcapSnapLen)
	le.PutUint32(h[20:], LinkTypeRaw)
	if _, err := w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("pcap header: %w", err)
	}
	return &PcapWriter{w: w, seq: map[[2]netip.AddrPort]uint32{}}, nil
}

// Write appends m as one record (TCP data longer than one segment as
// several).
func (p *PcapWriter) Write(m Message) error {
	src, dst := m.Remote, m.Local
	if m.Direction == Out {
		src, dst = m.Local, m.Remote
	}
	payload := []byte(m.Text)
	if m.Transport != "TCP" {
		if len(payload) > maxSegment {
			payload = payload[:maxSegment]
		}
		if err := p.record(m, src, dst, udpHeader(src, dst, len(payload)), 17, payload); err != nil {
			return err
		}
		return p.doFlush()
	}
	for first := true; first || len(payload) > 0; first = false {
		n := min(len(payload), maxSegment)
		key := [2]netip.AddrPort{src, dst}
		seq := p.seq[key]
		if _, ok := p.seq[key]; !ok {
			seq = 1
		}
		ack, ok := p.seq[[2]netip.AddrPort{dst, src}]
		if !ok {
			ack = 1
		}
		p.seq[key] = seq + uint32(n)
		if err := p.record(m, src, dst, tcpHeader(src, dst, seq, ack), 6, payload[:n]); err != nil {
			return err
		}
		payload = payload[n:]
	}
	return p.doFlush()
}

func (p *PcapWriter) doFlush() error {
	if p.flush == nil {
		return nil
	}
	if err := p.flush(); err != nil {
		return fmt.Errorf("pcap file: %w", err)
	}
	return nil
}

func udpHeader(src, dst netip.AddrPort, n int) []byte {
	h := make([]byte, 8)
	be := binary.BigEndian
	be.PutUint16(h[0:], src.Port())
	be.PutUint16(h[2:], dst.Port())
	be.PutUint16(h[4:], uint16(8+n))
	return h
}

func tcpHeader(src, dst netip.AddrPort, seq, ack uint32) []byte {
	h := make([]byte, 20)
	be := binary.BigEndian
	be.PutUint16(h[0:], src.Port())
	be.PutUint16(h[2:], dst.Port())
	be.PutUint32(h[4:], seq)
	be.PutUint32(h[8:], ack)
	h[12] = 5 << 4      // data offset: 5 words
	h[13] = 0x08 | 0x10 // PSH|ACK
	be.PutUint16(h[14:], 65535)
	return h
}

// record writes one IP packet carrying l4 (the transport header) and
// payload.
func (p *PcapWriter) record(m Message, src, dst netip.AddrPort, l4 []byte, proto byte, payload []byte) error {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if !s.IsValid() {
		s = netip.IPv4Unspecified()
	}
	if !d.IsValid() {
		d = netip.IPv4Unspecified()
	}
	be := binary.BigEndian
	var ip []byte
	if s.Is4() && d.Is4() {
		ip = make([]byte, 20)
		ip[0] = 0x45
		be.PutUint16(ip[2:], uint16(20+len(l4)+len(payload)))
		ip[6] = 0x40 // don't fragment
		ip[8] = 64
		ip[9] = proto
		a4, b4 := s.As4(), d.As4()
		copy(ip[12:], a4[:])
		copy(ip[16:], b4[:])
	} else {
		ip = make([]byte, 40)
		ip[0] = 0x60
		be.PutUint16(ip[4:], uint16(len(l4)+len(payload)))
		ip[6] = proto
		ip[7] = 64
		a16, b16 := s.As16(), d.As16()
		copy(ip[8:], a16[:])
		copy(ip[24:], b16[:])
	}
	n := len(ip) + len(l4) + len(payload)
	var rh [16]byte
	le := binary.LittleEndian
	le.PutUint32(rh[0:], uint32(m.Time.Unix()))
	le.PutUint32(rh[4:], uint32(m.Time.Nanosecond()/1000))
	le.PutUint32(rh[8:], uint32(n))
	le.PutUint32(rh[12:], uint32(n))
	for _, b := range [][]byte{rh[:], ip, l4, payload} {
		if _, err := p.w.Write(b); err != nil {
			return fmt.Errorf("pcap record: %w", err)
		}
	}
	return nil
}
