package media

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestTimeoutFreesPortsAndCallsOnTimeout: a session without media is closed
// by the ticker, its ports are released before OnTimeout runs, and a
// session with media flowing is kept.
func TestTimeoutFreesPortsAndCallsOnTimeout(t *testing.T) {
	timedOut := make(chan *Session, 2)
	var portsAtCallback int
	var r *Relay
	r = newRelay(t, Config{Timeout: 400 * time.Millisecond, OnTimeout: func(s *Session) {
		portsAtCallback = r.PortsInUse()
		timedOut <- s
	}})
	silent, err := r.Open("silent")
	if err != nil {
		t.Fatal(err)
	}
	a, b := newParty(t), newParty(t)
	busy := openCall(t, r, "busy", a, b, false, false)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // media on the busy call, every 5 ms for at most 10 s
		defer wg.Done()
		for i := range 2000 {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			a.conn.WriteToUDPAddrPort(rtpPacket(0, uint16(i), uint32(i)*160, 1, 20), busy.Leg(Caller).Addr())
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	select {
	case s := <-timedOut:
		if s != silent {
			t.Fatalf("OnTimeout for %q, want silent", s.CallID())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnTimeout was not called")
	}
	if portsAtCallback != 4 {
		t.Errorf("PortsInUse in OnTimeout = %d, want 4 (only the busy call's)", portsAtCallback)
	}
	if !silent.TimedOut() || r.Session("silent") != nil {
		t.Errorf("silent session: TimedOut %v, still registered %v", silent.TimedOut(), r.Session("silent") != nil)
	}
	if r.Session("busy") == nil {
		t.Error("the call with media timed out too")
	}
	// The silent call's ports can be bound again right away.
	for _, l := range []*Leg{silent.Leg(Caller), silent.Leg(Callee)} {
		for _, p := range []uint16{l.Addr().Port(), l.RTCPPort()} {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(p)})
			if err != nil {
				t.Fatalf("port %d of the timed-out call is still bound: %v", p, err)
			}
			c.Close()
		}
	}
	select {
	case s := <-timedOut:
		t.Errorf("OnTimeout called again (%q)", s.CallID())
	default:
	}
	silent.Close() // idempotent after the timeout
}

// TestExhaustionReleaseReuse: a 4-port range holds one session; the second
// Open fails with ErrPortsExhausted without leaking, and works again after
// the first session closed.
func TestExhaustionReleaseReuse(t *testing.T) {
	lo, _ := testRange(t, 4)
	r := newRelay(t, Config{PortMin: lo, PortMax: lo + 3})
	s1, err := r.Open("one")
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Open("two")
	if !errors.Is(err, ErrPortsExhausted) {
		t.Fatalf("second Open: %v, want ErrPortsExhausted", err)
	}
	if r.PortsInUse() != 4 {
		t.Errorf("PortsInUse after a failed Open = %d, want 4", r.PortsInUse())
	}
	if _, err := r.Open("one"); !errors.Is(err, ErrSessionExists) {
		t.Errorf("Open of an open call: %v, want ErrSessionExists", err)
	}
	s1.Close()
	s2, err := r.Open("two")
	if err != nil {
		t.Fatalf("Open after release: %v", err)
	}
	if got := []uint16{s2.Leg(Caller).Addr().Port(), s2.Leg(Callee).Addr().Port()}; (got[0] != uint16(lo) && got[0] != uint16(lo+2)) || got[0] == got[1] {
		t.Errorf("ports %v outside %d-%d", got, lo, lo+3)
	}
}

// TestOddRangeRoundedToEven: the range's low end is rounded up to even; a
// range with a single odd port has no pair.
func TestOddRangeRoundedToEven(t *testing.T) {
	lo, _ := testRange(t, 6)
	lo |= 1 // odd
	r := newRelay(t, Config{PortMin: lo, PortMax: lo + 4})
	s, err := r.Open("odd")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []*Leg{s.Leg(Caller), s.Leg(Callee)} {
		if p := l.Addr().Port(); p%2 != 0 || int(p) < lo+1 || l.RTCPPort() != p+1 {
			t.Errorf("leg ports %d/%d, want even >= %d and RTP+1", p, l.RTCPPort(), lo+1)
		}
	}
	if _, err := New(Config{AdvertiseIP: loopback, PortMin: 30001, PortMax: 30001}); err == nil {
		t.Error("a range without a pair was accepted")
	}
	if _, err := New(Config{PortMin: 30000, PortMax: 30010}); err == nil {
		t.Error("a relay without AdvertiseIP was accepted")
	}
	if _, err := New(Config{AdvertiseIP: loopback, PortMin: 30010, PortMax: 30000}); err == nil {
		t.Error("an inverted range was accepted")
	}
}

// TestBusyPortsSkipped: ports another program holds (RTP or RTCP of a pair)
// are skipped, not errors.
func TestBusyPortsSkipped(t *testing.T) {
	lo, _ := testRange(t, 8)
	// Another program holds the first pair's RTP port and the second pair's RTCP port.
	for _, p := range []int{lo, lo + 3} {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	fds := openFDs(t)
	r := newRelay(t, Config{PortMin: lo, PortMax: lo + 7})
	s, err := r.Open("busy")
	if err != nil {
		t.Fatalf("Open with busy ports in the range: %v", err)
	}
	got := []int{int(s.Leg(Caller).Addr().Port()), int(s.Leg(Callee).Addr().Port())}
	if got[0] != lo+4 || got[1] != lo+6 {
		t.Errorf("legs on %v, want %d and %d (the busy pairs skipped)", got, lo+4, lo+6)
	}
	if r.PortsInUse() != 4 {
		t.Errorf("PortsInUse = %d, want 4 (the half-bound pair closed)", r.PortsInUse())
	}
	if _, err := r.Open("more"); !errors.Is(err, ErrPortsExhausted) {
		t.Errorf("Open with only busy pairs left: %v, want ErrPortsExhausted", err)
	}
	s.Close()
	if got := openFDs(t); got != fds {
		t.Errorf("open file descriptors: %d before, %d after (a half-bound pair leaked)", fds, got)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestNoLeak: 200 sessions opened (with traffic, an exhausted Open, a
// timeout and an external leg among them) and closed leave the same number
// of file descriptors and goroutines as before.
func TestNoLeak(t *testing.T) {
	lo, hi := testRange(t, 40)
	// Warm up the runtime's own descriptors (netpoll) first.
	warm := newRelay(t, Config{PortMin: lo, PortMax: hi})
	ws, _ := warm.Open("warm")
	ws.Close()
	warm.Close()
	a, b := newParty(t), newParty(t)

	fds := openFDs(t)
	goroutines := runtime.NumGoroutine()
	r, err := New(Config{AdvertiseIP: loopback, BindIP: loopback, PortMin: lo, PortMax: hi, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var open []*Session
	for i := range 200 {
		s, err := r.Open(fmt.Sprintf("call-%d", i))
		if errors.Is(err, ErrPortsExhausted) {
			for _, o := range open {
				o.Close()
			}
			open = open[:0]
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		s.Leg(Caller).SetPeer(Peer{RTP: a.addr(), SIPSource: loopback})
		s.Leg(Callee).SetPeer(Peer{RTP: b.addr(), SIPSource: loopback})
		a.send(s.Leg(Caller).Addr(), rtpPacket(0, 1, 0, 1, 20))
		if i%7 == 0 {
			s.Leg(Callee).External(&fakeEP{})
		}
		if i%3 == 0 {
			s.Close()
		} else {
			open = append(open, s) // closed later, by exhaustion, the timeout or Relay.Close
		}
	}
	r.Close()
	if n := r.PortsInUse(); n != 0 {
		t.Errorf("PortsInUse after Close = %d", n)
	}
	if got := openFDs(t); got != fds {
		t.Errorf("open file descriptors: %d before, %d after 200 sessions", fds, got)
	}
	// A goroutine that signalled its WaitGroup may take a moment to exit.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > goroutines; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("goroutines: %d before, %d after Relay.Close", goroutines, runtime.NumGoroutine())
			break
		}
	}
	if _, err := r.Open("late"); !errors.Is(err, ErrClosed) {
		t.Errorf("Open after Close: %v, want ErrClosed", err)
	}
}

// TestStrayDoesNotKeepAlive: packets a stranger sends to a call's ports
// (stray, early or malformed) do not stop its media timeout.
func TestStrayDoesNotKeepAlive(t *testing.T) {
	timedOut := make(chan *Session, 1)
	r := newRelay(t, Config{Timeout: 300 * time.Millisecond, LatchWindow: time.Nanosecond,
		OnTimeout: func(s *Session) { timedOut <- s }})
	a, b := newParty(t), newParty(t)
	s := openCall(t, r, "stray", a, b, false, false)
	stranger := newPartyAt(t, "127.0.0.66")
	for i := 0; ; i++ {
		select {
		case got := <-timedOut:
			if got != s {
				t.Fatalf("OnTimeout for %q", got.CallID())
			}
			if st := got.Stats()[Caller]; st.Stray == 0 || st.Malformed == 0 {
				t.Errorf("stranger's packets not counted: stray %d malformed %d", st.Stray, st.Malformed)
			}
			return
		case <-time.After(2 * time.Millisecond):
		}
		if i > 2500 {
			t.Fatal("the session never timed out while a stranger sent to it")
		}
		stranger.conn.WriteToUDPAddrPort(rtpPacket(0, uint16(i), 0, 9, 20), s.Leg(Caller).Addr())
		stranger.conn.WriteToUDPAddrPort([]byte("junk"), s.Leg(Caller).Addr())
	}
}
