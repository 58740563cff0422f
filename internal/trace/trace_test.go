package trace

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const register = "REGISTER sip:example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n" +
	"From: \"Alice\" <sip:2001@example.com>;tag=1\r\n" +
	"To: <sip:2001@example.com>\r\n" +
	"Call-ID: reg-abc@127.0.0.1\r\n" +
	"CSeq: 1 REGISTER\r\n" +
	"Contact: <sip:2001@127.0.0.1:5070;transport=udp>\r\n" +
	"Content-Length: 0\r\n\r\n"

const unauthorized = "SIP/2.0 401 Unauthorized\r\n" +
	"v: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n" +
	"f: <sip:2001@example.com>;tag=1\r\n" +
	"t: <sip:2001@example.com>;tag=2\r\n" +
	"i: reg-abc@127.0.0.1\r\n" +
	"CSeq: 1 REGISTER\r\n\r\n"

const invite = "INVITE sip:2002@example.com SIP/2.0\r\n" +
	"From: <sip:2001@example.com>;tag=1\r\n" +
	"To: <sip:2002@example.com>\r\n" +
	"Call-ID: call-1\r\n" +
	"CSeq: 7 INVITE\r\n" +
	"Contact: <sip:alice:secret@10.0.0.9:5060>, <sips:2005@host>\r\n\r\n" +
	"v=0\r\nTo: <sip:9999@example.com>\r\n"

var (
	phone  = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5070}
	server = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5060}
)

func msg(t *testing.T, text string, remote net.Addr) Message {
	t.Helper()
	m := Message{Text: text, Remote: addrPort(remote), Local: addrPort(server), Transport: "UDP", Direction: In}
	summarize(&m)
	return m
}

// TestSummarize: the first line, Call-ID (also compact i:) and CSeq method
// are read from the raw headers; the user parts of the Request-URI,
// From, To and every Contact are collected, never from the body.
func TestSummarize(t *testing.T) {
	m := msg(t, unauthorized, phone)
	if m.FirstLine != "SIP/2.0 401 Unauthorized" || m.CallID != "reg-abc@127.0.0.1" || m.Method != "REGISTER" {
		t.Fatalf("summary %q %q %q", m.FirstLine, m.CallID, m.Method)
	}
	m = msg(t, invite, phone)
	if got := strings.Join(m.users, ","); got != "2002,2001,2002,alice,2005" {
		t.Fatalf("users %q", got)
	}
}

// TestFilterMatch: each filter field alone and combined.
func TestFilterMatch(t *testing.T) {
	other := &net.UDPAddr{IP: net.ParseIP("::1"), Port: 5080}
	reg, resp, inv := msg(t, register, phone), msg(t, unauthorized, phone), msg(t, invite, other)
	for _, c := range []struct {
		ext, ip, callID, method string
		want                    [3]bool
	}{
		{"", "", "", "", [3]bool{true, true, true}},
		{"2001", "", "", "", [3]bool{true, true, true}},
		{"2002", "", "", "", [3]bool{false, false, true}},
		{"200", "", "", "", [3]bool{false, false, false}},
		{"9999", "", "", "", [3]bool{false, false, false}}, // only in the body
		{"", "127.0.0.1", "", "", [3]bool{true, true, false}},
		{"", "::1", "", "", [3]bool{false, false, true}},
		{"", "::ffff:127.0.0.1", "", "", [3]bool{true, true, false}},
		{"", "", "reg-abc@127.0.0.1", "", [3]bool{true, true, false}},
		{"", "", "reg-abc", "", [3]bool{false, false, false}},
		{"", "", "", "register", [3]bool{true, true, false}},
		{"", "", "", "INVITE", [3]bool{false, false, true}},
		{"2001", "127.0.0.1", "", "INVITE", [3]bool{false, false, false}},
	} {
		f, err := ParseFilter(c.ext, c.ip, c.callID, c.method)
		if err != nil {
			t.Fatal(err)
		}
		got := [3]bool{f.Match(&reg), f.Match(&resp), f.Match(&inv)}
		if got != c.want {
			t.Errorf("filter %+v: got %v, want %v", c, got, c.want)
		}
	}
	if _, err := ParseFilter("", "not-an-ip", "", ""); err == nil {
		t.Error("a bad ip was accepted")
	}
}

// TestInactiveRecordsNothing: without a subscriber Record keeps nothing
// and allocates nothing (the SIP path pays one atomic load).
func TestInactiveRecordsNothing(t *testing.T) {
	tr := New(0, 0)
	data := []byte(register)
	allocs := testing.AllocsPerRun(1000, func() {
		if tr.Active() {
			t.Fatal("active without subscribers")
		}
		tr.Record(In, "UDP", server, phone, data)
	})
	if allocs != 0 {
		t.Fatalf("Record allocates %v times per message while nobody traces", allocs)
	}
	if n := len(tr.Recent(Filter{}, 0)); n != 0 {
		t.Fatalf("%d messages kept while nobody traced", n)
	}
	var nilTracer *Tracer
	nilTracer.Record(In, "UDP", server, phone, data) // must not panic
}

// TestFanOutSlowSubscriber: a subscriber that does not read loses
// messages (counted) while Record never blocks, and a reading subscriber
// gets every message; the data passed to Record is copied.
func TestFanOutSlowSubscriber(t *testing.T) {
	tr := New(0, 0)
	slow := tr.Subscribe(4)
	fast := tr.Subscribe(1000)
	data := []byte(register)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			tr.Record(In, "UDP", server, phone, data)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Record blocked on a subscriber that does not read")
	}
	data[0] = 'X'
	if len(fast.C()) != 100 || fast.Lost() != 0 {
		t.Fatalf("fast subscriber: %d messages, %d lost", len(fast.C()), fast.Lost())
	}
	if len(slow.C()) != 4 || slow.Lost() != 96 {
		t.Fatalf("slow subscriber: %d messages, %d lost; want 4 and 96", len(slow.C()), slow.Lost())
	}
	if m := <-fast.C(); m.Text != register || m.Direction != In || m.Remote.String() != "127.0.0.1:5070" {
		t.Fatalf("message %+v", m)
	}
	slow.Close()
	if !tr.Active() {
		t.Fatal("capture off with one subscriber left")
	}
	fast.Close()
	fast.Close() // twice is harmless
	if tr.Active() {
		t.Fatal("capture on after the last subscriber left")
	}
	if n := len(tr.Recent(Filter{}, 0)); n != 100 {
		t.Fatalf("ring holds %d messages after the trace, want 100 (kept RingKeep)", n)
	}
}

// TestRingBounds: the ring keeps the newest messages within both the
// count and the byte bound; Recent filters and limits.
func TestRingBounds(t *testing.T) {
	tr := New(10, 1000)
	s := tr.Subscribe(1)
	defer s.Close()
	for i := range 25 {
		tr.Record(In, "UDP", server, phone, []byte("OPTIONS sip:x SIP/2.0\r\nCall-ID: "+string(rune('a'+i))+"\r\n\r\n"))
	}
	got := tr.Recent(Filter{}, 0)
	if len(got) != 10 || got[0].CallID != "p" || got[9].CallID != "y" {
		t.Fatalf("ring: %d messages, first %q last %q", len(got), got[0].CallID, got[len(got)-1].CallID)
	}
	if got := tr.Recent(Filter{}, 3); len(got) != 3 || got[2].CallID != "y" {
		t.Fatalf("Recent limit 3: %d", len(got))
	}
	big := strings.Repeat("x", 400)
	for range 5 {
		tr.Record(Out, "TCP", server, phone, []byte(big))
	}
	total := 0
	for _, m := range tr.Recent(Filter{}, 0) {
		total += len(m.Text)
	}
	if total > 1000 || len(tr.Recent(Filter{}, 0)) != 2 {
		t.Fatalf("ring holds %d bytes in %d messages, bound 1000", total, len(tr.Recent(Filter{}, 0)))
	}
	tr.Record(Out, "TCP", server, phone, []byte(strings.Repeat("y", 2000))) // larger than the ring: not kept
	if len(tr.Recent(Filter{}, 0)) != 2 {
		t.Fatal("an oversized message emptied the ring")
	}
	// keep-alives (CRLF only) are not messages
	tr.Record(In, "TCP", server, phone, []byte("\r\n\r\n"))
	if n := len(s.C()); n != 1 {
		t.Fatalf("subscriber has %d messages buffered", n)
	}
}

// TestPcap: the file parses back: global header (LINKTYPE_RAW), one
// record per UDP message with IPv4/IPv6 and UDP headers whose lengths and
// ports match, TCP segments with per-direction sequence numbers.
func TestPcap(t *testing.T) {
	var buf bytes.Buffer
	pw, err := NewPcapWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 123456000)
	local4, remote4 := netip.MustParseAddrPort("127.0.0.1:5060"), netip.MustParseAddrPort("127.0.0.1:5070")
	remote6 := netip.MustParseAddrPort("[::1]:5080")
	local6 := netip.MustParseAddrPort("[::1]:5060")
	msgs := []Message{
		{Time: at, Direction: In, Transport: "UDP", Local: local4, Remote: remote4, Text: register},
		{Time: at, Direction: Out, Transport: "UDP", Local: local4, Remote: remote4, Text: unauthorized},
		{Time: at, Direction: In, Transport: "TCP", Local: local6, Remote: remote6, Text: invite},
		{Time: at, Direction: In, Transport: "TCP", Local: local6, Remote: remote6, Text: "ACK"},
		{Time: at, Direction: Out, Transport: "TCP", Local: local6, Remote: remote6, Text: unauthorized},
	}
	for _, m := range msgs {
		if err := pw.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	b := buf.Bytes()
	le, be := binary.LittleEndian, binary.BigEndian
	if le.Uint32(b) != 0xa1b2c3d4 || le.Uint16(b[4:]) != 2 || le.Uint16(b[6:]) != 4 || le.Uint32(b[20:]) != LinkTypeRaw {
		t.Fatalf("global header % x", b[:24])
	}
	b = b[24:]
	type seg struct {
		src, dst netip.AddrPort
		seq, ack uint32
		payload  string
	}
	var got []seg
	for len(b) > 0 {
		if le.Uint32(b) != 1700000000 || le.Uint32(b[4:]) != 123456 {
			t.Fatalf("timestamp %d.%d", le.Uint32(b), le.Uint32(b[4:]))
		}
		incl, orig := int(le.Uint32(b[8:])), int(le.Uint32(b[12:]))
		if incl != orig || incl > len(b)-16 {
			t.Fatalf("record lengths %d/%d with %d bytes left", incl, orig, len(b)-16)
		}
		pkt := b[16 : 16+incl]
		b = b[16+incl:]
		var src, dst netip.Addr
		var proto byte
		var l4 []byte
		switch pkt[0] >> 4 {
		case 4:
			if int(be.Uint16(pkt[2:])) != len(pkt) {
				t.Fatalf("IPv4 total length %d, packet %d", be.Uint16(pkt[2:]), len(pkt))
			}
			src, dst = netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20]))
			proto, l4 = pkt[9], pkt[20:]
		case 6:
			if int(be.Uint16(pkt[4:])) != len(pkt)-40 {
				t.Fatalf("IPv6 payload length %d, packet %d", be.Uint16(pkt[4:]), len(pkt))
			}
			src, dst = netip.AddrFrom16([16]byte(pkt[8:24])), netip.AddrFrom16([16]byte(pkt[24:40]))
			proto, l4 = pkt[6], pkt[40:]
		default:
			t.Fatalf("IP version %d", pkt[0]>>4)
		}
		s := seg{src: netip.AddrPortFrom(src, be.Uint16(l4)), dst: netip.AddrPortFrom(dst, be.Uint16(l4[2:]))}
		switch proto {
		case 17:
			if int(be.Uint16(l4[4:])) != len(l4) {
				t.Fatalf("UDP length %d, have %d", be.Uint16(l4[4:]), len(l4))
			}
			s.payload = string(l4[8:])
		case 6:
			if l4[12]>>4 != 5 || l4[13] != 0x18 {
				t.Fatalf("TCP offset/flags % x", l4[12:14])
			}
			s.seq, s.ack, s.payload = be.Uint32(l4[4:]), be.Uint32(l4[8:]), string(l4[20:])
		default:
			t.Fatalf("protocol %d", proto)
		}
		got = append(got, s)
	}
	want := []seg{
		{remote4, local4, 0, 0, register},
		{local4, remote4, 0, 0, unauthorized},
		{remote6, local6, 1, 1, invite},
		{remote6, local6, 1 + uint32(len(invite)), 1, "ACK"},
		{local6, remote6, 1, 1 + uint32(len(invite)) + 3, unauthorized},
	}
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d: got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// TestPcapSplitsLongTCP: TCP data longer than one IP packet holds is
// split into segments whose sequence numbers continue.
func TestPcapSplitsLongTCP(t *testing.T) {
	var buf bytes.Buffer
	pw, _ := NewPcapWriter(&buf)
	long := strings.Repeat("a", 2*maxSegment+10)
	m := Message{Time: time.Now(), Direction: Out, Transport: "TCP", Local: netip.MustParseAddrPort("127.0.0.1:5060"),
		Remote: netip.MustParseAddrPort("127.0.0.1:40000"), Text: long}
	if err := pw.Write(m); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()[24:]
	var seqs []uint32
	total := 0
	for len(b) > 0 {
		n := int(binary.LittleEndian.Uint32(b[8:]))
		pkt := b[16 : 16+n]
		if int(binary.BigEndian.Uint16(pkt[2:])) != n {
			t.Fatalf("IPv4 total length %d, record %d", binary.BigEndian.Uint16(pkt[2:]), n)
		}
		seqs = append(seqs, binary.BigEndian.Uint32(pkt[24:]))
		total += n - 40
		b = b[16+n:]
	}
	if total != len(long) || len(seqs) != 3 || seqs[1] != 1+maxSegment || seqs[2] != 1+2*maxSegment {
		t.Fatalf("segments %v carrying %d bytes", seqs, total)
	}
}

// BenchmarkRecordInactive is the cost on the SIP path while nobody traces.
func BenchmarkRecordInactive(b *testing.B) {
	tr := New(0, 0)
	data := []byte(register)
	b.ReportAllocs()
	for b.Loop() {
		tr.Record(In, "UDP", server, phone, data)
	}
}

// BenchmarkRecordActive is the cost per message while one trace runs.
func BenchmarkRecordActive(b *testing.B) {
	tr := New(0, 0)
	s := tr.Subscribe(1)
	defer s.Close()
	data := []byte(register)
	b.ReportAllocs()
	for b.Loop() {
		tr.Record(In, "UDP", server, phone, data)
	}
}
