package media

import (
	"math"
	"testing"
	"time"
)

// feed runs seqs through a fresh stream, one packet every 20 ms with
// timestamps matching, and returns it.
func feed(seqs ...uint16) *inStream {
	var s inStream
	for i, q := range seqs {
		s.update(rtpHeader{seq: q, ts: uint32(q) * 160, ssrc: 1}, int64(i)*int64(20*time.Millisecond), 8000)
	}
	return &s
}

func TestLoss(t *testing.T) {
	for _, tc := range []struct {
		name string
		seqs []uint16
		lost int64
	}{
		{"in order", []uint16{1, 2, 3, 4, 5}, 0},
		{"one gap", []uint16{1, 2, 4, 5}, 1},
		{"three gaps", []uint16{10, 12, 14, 16, 17}, 3},
		{"reordered", []uint16{1, 3, 2, 4}, 0},
		{"reordered before the first", []uint16{5, 4, 6}, 0},
		{"duplicates", []uint16{1, 2, 2, 3, 3, 3, 4}, 0},
		{"duplicate of an old packet", []uint16{1, 2, 3, 4, 2, 5}, 0},
		{"duplicates do not hide loss", []uint16{1, 1, 1, 4}, 2},
		{"wrap", []uint16{65534, 65535, 0, 1}, 0},
		{"gap across the wrap", []uint16{65534, 0, 1}, 1},
		{"reordered across the wrap", []uint16{65535, 1, 0, 2}, 0},
		{"late duplicate", append(seqsRange(1, 100), 3), 0},
		{"one stray big jump is ignored", []uint16{1, 2, 30000, 3}, 0},
		{"two in a row restart", []uint16{1, 2, 30000, 30001, 30002}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := feed(tc.seqs...).lost(); got != tc.lost {
				t.Errorf("lost(%v) = %d, want %d", tc.seqs, got, tc.lost)
			}
		})
	}
}

func seqsRange(a, b uint16) []uint16 {
	var out []uint16
	for i := a; i <= b; i++ {
		out = append(out, i)
	}
	return out
}

// TestLossTooLate: a packet more than 64 behind the newest stays lost.
func TestLossTooLate(t *testing.T) {
	seqs := append([]uint16{1, 2}, seqsRange(4, 100)...)
	seqs = append(seqs, 3)
	if got := feed(seqs...).lost(); got != 1 {
		t.Errorf("lost = %d, want 1 (3 arrived 97 packets late)", got)
	}
	seqs = append(append([]uint16{1, 2}, seqsRange(4, 40)...), 3)
	if got := feed(seqs...).lost(); got != 0 {
		t.Errorf("lost = %d, want 0 (3 arrived 37 late, inside the window)", got)
	}
}

// TestLossSSRCChange: a new SSRC restarts the sequence; loss of the old
// stream is kept.
func TestLossSSRCChange(t *testing.T) {
	var s inStream
	for i, q := range []uint16{1, 3} {
		s.update(rtpHeader{seq: q, ssrc: 1}, int64(i), 8000)
	}
	for i, q := range []uint16{5000, 5001, 5003} {
		s.update(rtpHeader{seq: q, ssrc: 2}, int64(i), 8000)
	}
	if got := s.lost(); got != 2 {
		t.Errorf("lost = %d, want 2 (one per SSRC)", got)
	}
	if got := s.expected(); got != 7 {
		t.Errorf("expected = %d, want 7", got)
	}
}

func TestJitter(t *testing.T) {
	// Perfectly paced: no jitter.
	if j := feed(seqsRange(1, 50)...).jitterMS(); j != 0 {
		t.Errorf("paced stream jitter = %v, want 0", j)
	}
	// Every other packet 10 ms late: |D| = 10 ms for each packet after the
	// first; J converges to 10 ms (1 - (15/16)^n).
	var s inStream
	for i := range 200 {
		at := int64(i) * int64(20*time.Millisecond)
		if i%2 == 1 {
			at += int64(10 * time.Millisecond)
		}
		s.update(rtpHeader{seq: uint16(i), ts: uint32(i) * 160, ssrc: 1}, at, 8000)
	}
	if j := s.jitterMS(); math.Abs(j-10) > 0.01 {
		t.Errorf("jitter = %v ms, want 10", j)
	}
	// Another payload type (telephone-event, fixed timestamp) is not measured.
	var d inStream
	for i := range 50 {
		h := rtpHeader{pt: 0, seq: uint16(i), ts: uint32(i) * 160, ssrc: 1}
		if i >= 10 {
			h.pt, h.ts = 101, 1600
		}
		d.update(h, int64(i)*int64(20*time.Millisecond), 8000)
	}
	if j := d.jitterMS(); j != 0 {
		t.Errorf("telephone-event packets made jitter %v", j)
	}
	// A stream that begins with comfort noise is measured on the voice.
	var cn inStream
	for i := range 60 {
		h := rtpHeader{pt: 13, seq: uint16(i), ts: 0, ssrc: 1}
		if i >= 5 {
			h.pt, h.ts = 8, uint32(i)*160
		}
		cn.update(h, int64(i)*int64(20*time.Millisecond), 8000)
	}
	if j := cn.jitterMS(); j != 0 {
		t.Errorf("comfort noise first, then paced voice: jitter %v, want 0", j)
	}
	if cn.mainPT != 8 {
		t.Errorf("main payload type %d, want 8", cn.mainPT)
	}
	// Timestamp wrap is not jitter.
	var w inStream
	for i := range 50 {
		w.update(rtpHeader{seq: uint16(i), ts: math.MaxUint32 - 800 + uint32(i)*160, ssrc: 1}, int64(i)*int64(20*time.Millisecond), 8000)
	}
	if j := w.jitterMS(); j > 1e-9 {
		t.Errorf("timestamp wrap made jitter %v", j)
	}
	// 48 kHz clock: the same pacing in ms gives the same jitter.
	var o inStream
	for i := range 200 {
		at := int64(i) * int64(20*time.Millisecond)
		if i%2 == 1 {
			at += int64(10 * time.Millisecond)
		}
		o.update(rtpHeader{pt: 111, seq: uint16(i), ts: uint32(i) * 960, ssrc: 1}, at, 48000)
	}
	if j := o.jitterMS(); math.Abs(j-10) > 0.01 {
		t.Errorf("48 kHz jitter = %v ms, want 10", j)
	}
}

func TestMOS(t *testing.T) {
	for _, tc := range []struct {
		loss, jitter float64
		want         float64
	}{
		{0, 0, 4.39}, {1, 0, 4.30}, {5, 0, 3.88}, {20, 0, 2.58}, {0, 50, 4.34}, {0, 100, 4.04},
		{100, 0, 1.15}, {-5, -1, 4.39}, {1000, 0, 1.15}, {math.NaN(), math.NaN(), 4.39}, {0, 1e9, 1},
	} {
		if got := MOS(tc.loss, tc.jitter); math.Abs(got-tc.want) > 0.005 {
			t.Errorf("MOS(%v, %v) = %.3f, want %.2f", tc.loss, tc.jitter, got, tc.want)
		}
	}
	prev := 5.0
	for l := 0.0; l <= 100; l += 0.5 {
		m := MOS(l, 0)
		if m > prev || m < 1 || m > 4.5 {
			t.Fatalf("MOS(%v) = %v: not monotone within 1..4.5", l, m)
		}
		prev = m
	}
}
