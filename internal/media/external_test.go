package media

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeEP is the WebRTC bridge's side of the seam: it records what the
// engine sends the browser.
type fakeEP struct {
	mu     sync.Mutex
	rtp    [][]byte
	rtcp   [][]byte
	closed int
	fail   bool
}

func (f *fakeEP) WriteRTP(p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("fake: write failed")
	}
	f.rtp = append(f.rtp, append([]byte(nil), p...))
	return nil
}

func (f *fakeEP) WriteRTCP(p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rtcp = append(f.rtcp, append([]byte(nil), p...))
	return nil
}

func (f *fakeEP) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return nil
}

func (f *fakeEP) counts() (int, int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.rtp), len(f.rtcp), f.closed
}

// TestExternalRoundTrip: a leg handed to the bridge stops reading its
// sockets (the bridge reads the RTP socket itself; the RTCP socket is
// closed); what the phone sends goes to the Endpoint, what the bridge
// Receives goes to the phone; Close closes the Endpoint once.
func TestExternalRoundTrip(t *testing.T) {
	r := newRelay(t, Config{})
	phone := newParty(t)
	browser := newParty(t)
	s, err := r.Open("webrtc")
	if err != nil {
		t.Fatal(err)
	}
	s.Leg(Caller).SetPeer(Peer{RTP: browser.addr(), RTCPMux: true, SIPSource: loopback})
	s.Leg(Callee).SetPeer(Peer{RTP: phone.addr(), SIPSource: loopback})
	ep := &fakeEP{}
	conn := s.Leg(Caller).External(ep)
	if conn == nil || conn.LocalAddr().(interface{ String() string }).String() != s.Leg(Caller).Addr().String() {
		t.Fatalf("External returned %v, want the caller leg's RTP socket %v", conn, s.Leg(Caller).Addr())
	}
	if r.PortsInUse() != 3 {
		t.Errorf("PortsInUse = %d, want 3 (external leg's RTCP socket closed)", r.PortsInUse())
	}
	// The bridge owns reading: a datagram to the socket reaches it, not the engine.
	browser.send(s.Leg(Caller).Addr(), []byte("dtls or stun, for the bridge"))
	buf := make([]byte, 100)
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "dtls or stun, for the bridge" {
		t.Fatalf("bridge read %q, %v", buf[:n], err)
	}
	conn.SetReadDeadline(time.Time{})

	// Phone -> browser.
	p := rtpPacket(0, 1, 0, 0xb, 160)
	phone.send(s.Leg(Callee).Addr(), p)
	rr := rtcpRR(0xb)
	phone.send(rtcpAddr(s.Leg(Callee)), rr)
	deadline := time.Now().Add(5 * time.Second)
	for {
		nr, nc, _ := ep.counts()
		if nr == 1 && nc == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("endpoint got %d RTP %d RTCP, want 1 and 1", nr, nc)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if string(ep.rtp[0]) != string(p) || string(ep.rtcp[0]) != string(rr) {
		t.Error("endpoint got other bytes than the phone sent")
	}
	// Browser (decrypted by the bridge) -> phone.
	q := rtpPacket(0, 1, 0, 0xa, 160)
	s.Leg(Caller).Receive(q, false)
	phone.expect(q, "bridge's RTP at the phone")
	s.Leg(Caller).Receive(rtcpRR(0xa), true)
	s.Leg(Caller).Receive([]byte{1, 2, 3}, false)         // malformed
	s.Leg(Caller).Receive(rtcpRR(0xa)[:4], true)          // malformed
	s.Leg(Caller).Receive(rtpPacket(0, 2, 0, 1, 4), true) // RTP said to be RTCP
	s.Leg(Callee).Receive(q, false)                       // not external: ignored

	st := s.Stats()
	if !st[Caller].External || st[Caller].PacketsIn != 2 || st[Caller].Malformed != 3 || st[Caller].PacketsOut != 2 {
		t.Errorf("caller stats %+v", st[Caller])
	}
	if st[Callee].PacketsIn != 2 || st[Callee].PacketsOut != 2 {
		t.Errorf("callee stats %+v", st[Callee])
	}
	s.Close()
	s.Close()
	if _, _, closed := ep.counts(); closed != 1 {
		t.Errorf("endpoint closed %d times, want 1", closed)
	}
	if _, _, err := conn.ReadFromUDPAddrPort(buf); err == nil {
		t.Error("the external socket is still open after Session.Close")
	}
	if r.PortsInUse() != 0 {
		t.Errorf("PortsInUse after Close = %d", r.PortsInUse())
	}
}

// TestExternalWriteError: a failing Endpoint is counted, not fatal.
func TestExternalWriteError(t *testing.T) {
	r := newRelay(t, Config{})
	phone := newParty(t)
	s, _ := r.Open("fail")
	s.Leg(Callee).SetPeer(Peer{RTP: phone.addr(), SIPSource: loopback})
	s.Leg(Caller).External(&fakeEP{fail: true})
	phone.send(s.Leg(Callee).Addr(), rtpPacket(0, 1, 0, 1, 20))
	waitStats(t, s, "write error counted", func(st [2]LegStats) bool { return st[Caller].WriteErrors == 1 })
}
