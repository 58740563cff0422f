package media

import (
	"math"
	"time"
)

// Limits of the sequence tracking, from RFC 3550 appendix A.1.
const (
	maxDropout  = 3000 // a jump forward larger than this is a restart candidate
	maxMisorder = 100  // a jump backward up to this is a late packet
	lateWindow  = 64   // late packets up to this far back are recognised as duplicate or not
)

// inStream follows the RTP stream a party sends: RFC 3550 A.3 loss (with
// sequence wrap, reordering and duplicates) and A.8 interarrival jitter.
// It has a fixed size whatever arrives: no per-packet growth.
type inStream struct {
	started  bool
	ssrc     uint32
	maxSeq   uint16
	extMax   int64  // extended highest sequence number seen
	base     int64  // extended lowest sequence number counted
	badSeq   uint32 // RFC 3550 bad_seq: > 0xffff when none pending
	received int64  // distinct packets counted since (re)start
	window   uint64 // bit i: extMax-i was received
	lostPrev int64  // loss of earlier runs (before an SSRC change or restart)

	mainPT     uint8 // jitter is measured on this payload type only
	hasPrev    bool
	prevNS     int64 // arrival of the previous measured packet, ns since the session started
	prevTS     uint32
	jitter     float64 // in timestamp units
	jitterRate int     // clock rate jitter is expressed in
}

// lost returns RFC 3550's cumulative number of packets lost: expected minus
// received, never negative.
func (s *inStream) lost() int64 {
	l := s.lostPrev
	if s.started {
		if cur := s.extMax - s.base + 1 - s.received; cur > 0 {
			l += cur
		}
	}
	return l
}

// expected returns how many packets the sender sent in all runs so far,
// received or not (used for the loss ratio).
func (s *inStream) expected() int64 {
	e := s.lostPrev
	if s.started {
		e += s.extMax - s.base + 1
	} else {
		e = 0
	}
	return e
}

func (s *inStream) restart(seq uint16, ssrc uint32, pt uint8) {
	s.lostPrev = s.lost()
	s.started = true
	s.ssrc = ssrc
	s.maxSeq = seq
	s.extMax = int64(seq)
	s.base = int64(seq)
	s.badSeq = 1 << 16
	s.received = 1
	s.window = 1
	s.mainPT = pt
	s.hasPrev = false
}

// update accounts one RTP packet that arrived at nowNS (nanoseconds since the
// session started, monotonic) with clock rate rate. It reports whether the
// packet was new (false: a duplicate or a packet too late to count).
func (s *inStream) update(h rtpHeader, nowNS int64, rate int) bool {
	if !s.started || h.ssrc != s.ssrc {
		s.restart(h.seq, h.ssrc, h.pt)
		s.jitterSample(h, nowNS, rate)
		return true
	}
	udelta := h.seq - s.maxSeq
	switch {
	case udelta == 0:
		return false // duplicate of the highest packet
	case udelta < maxDropout:
		// In order, possibly after a gap; wraps when the number got smaller.
		s.extMax += int64(udelta)
		s.maxSeq = h.seq
		if udelta >= 64 {
			s.window = 1
		} else {
			s.window = s.window<<udelta | 1
		}
		s.received++
	case uint32(udelta) <= 1<<16-maxMisorder:
		// A big jump: the sender restarted, or a stray packet. Two in a
		// row (seq == bad_seq) restart the count, as RFC 3550 A.1 does.
		if uint32(h.seq) == s.badSeq {
			s.restart(h.seq, h.ssrc, h.pt)
			s.jitterSample(h, nowNS, rate)
			return true
		}
		s.badSeq = uint32(h.seq+1) & 0xffff
		return false
	default:
		// Late (reordered) or a duplicate of an older packet.
		back := s.maxSeq - h.seq
		if back >= lateWindow {
			return false // too late to be played: it stays counted as lost
		}
		if s.window&(1<<back) != 0 {
			return false // duplicate
		}
		s.window |= 1 << back
		if ext := s.extMax - int64(back); ext < s.base {
			s.base = ext // arrived before the first packet we saw
		}
		s.received++
	}
	s.jitterSample(h, nowNS, rate)
	return true
}

// jitterSample is RFC 3550 A.8: J += (|D| - J) / 16 with D the difference
// of relative transit times of two consecutive packets. Only packets of
// the stream's first payload type are measured: telephone-events and
// comfort noise keep their timestamp for several packets and would read as
// jitter.
func (s *inStream) jitterSample(h rtpHeader, nowNS int64, rate int) {
	if h.pt != s.mainPT {
		return
	}
	if s.jitterRate != rate {
		if s.jitterRate != 0 {
			s.jitter = s.jitter * float64(rate) / float64(s.jitterRate)
		}
		s.jitterRate = rate
	}
	if s.hasPrev {
		arrival := float64(nowNS-s.prevNS) * float64(rate) / 1e9
		sent := float64(int32(h.ts - s.prevTS))
		d := math.Abs(arrival - sent)
		s.jitter += (d - s.jitter) / 16
	}
	s.hasPrev = true
	s.prevNS = nowNS
	s.prevTS = h.ts
}

// jitterMS returns the jitter in milliseconds.
func (s *inStream) jitterMS() float64 {
	if s.jitterRate == 0 {
		return 0
	}
	return s.jitter * 1000 / float64(s.jitterRate)
}

// MOS estimates the listening quality of a G.711 stream on the 1-4.5 MOS
// scale from its loss and jitter, with the E-model of ITU-T G.107 reduced
// to the two impairments the relay can see:
//
//	R      = 93.2 - Id - Ie_eff          (93.2 = G.107 default R0 - Is, A = 0)
//	d      = 20 + 2*jitterMS + 20         one-way delay in ms: 20 ms packetisation,
//	                                      a jitter buffer twice the jitter, 20 ms
//	                                      network (the relay does not see the
//	                                      real delay)
//	Id     = 0.024*d + 0.11*(d-177.3)*H(d-177.3)     (H = 0 below 0, 1 above)
//	Ie_eff = Ie + (95-Ie) * Ppl/(Ppl/BurstR + Bpl)   Ppl = loss in percent,
//	                                      Ie = 0 (G.711), Bpl = 25.1 (G.711 with
//	                                      packet-loss concealment, ITU-T G.113
//	                                      appendix I: every current phone,
//	                                      baresip and browsers conceal; without
//	                                      PLC it would be 4.3), BurstR = 1
//	                                      (random loss)
//	MOS    = 1 + 0.035*R + 7e-6*R*(R-60)*(100-R); 1 when R <= 0, 4.5 when R >= 100
//
// Reference points: no loss, no jitter: 4.39 (R = 92.2); 1 % loss: 4.30;
// 5 % loss: 3.88; 20 % loss: 2.58; 50 ms jitter: 4.34; 100 ms: 4.04. lossPct is clamped
// to 0-100, jitterMS to >= 0; NaN counts as 0.
func MOS(lossPct, jitterMS float64) float64 {
	if math.IsNaN(lossPct) || lossPct < 0 {
		lossPct = 0
	}
	if lossPct > 100 {
		lossPct = 100
	}
	if math.IsNaN(jitterMS) || jitterMS < 0 {
		jitterMS = 0
	}
	d := 20 + 2*jitterMS + 20
	id := 0.024 * d
	if d > 177.3 {
		id += 0.11 * (d - 177.3)
	}
	const ie, bpl, burstR = 0.0, 25.1, 1.0
	ieEff := ie + (95-ie)*lossPct/(lossPct/burstR+bpl)
	r := 93.2 - id - ieEff
	switch {
	case r <= 0:
		return 1
	case r >= 100:
		return 4.5
	}
	m := 1 + 0.035*r + 7e-6*r*(r-60)*(100-r)
	return math.Max(1, math.Min(4.5, m))
}

// sinceNS is the monotonic time since start in nanoseconds.
func sinceNS(start, now time.Time) int64 { return int64(now.Sub(start)) }
