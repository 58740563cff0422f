package media

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestConcurrentChurn: sessions opened, fed, handed to a bridge, read and
// closed from several goroutines while a stranger sprays every port of the
// range and a timeout closes idle ones; then Relay.Close. Under -race this
// checks the locking; at the end nothing is held.
func TestConcurrentChurn(t *testing.T) {
	lo, hi := testRange(t, 40)
	r, err := New(Config{AdvertiseIP: loopback, BindIP: loopback, PortMin: lo, PortMax: hi, Timeout: 30 * time.Millisecond, LatchWindow: time.Hour,
		OnTimeout: func(s *Session) { s.Stats() }})
	if err != nil {
		t.Fatal(err)
	}
	stranger := newPartyAt(t, "127.0.0.66")
	var parties [4][2]*party
	for w := range parties {
		parties[w] = [2]*party{newParty(t), newParty(t)}
	}
	fds := openFDs(t)
	stop := make(chan struct{})
	var spray sync.WaitGroup
	spray.Add(1)
	go func() {
		defer spray.Done()
		pkt := rtpPacket(0, 1, 0, 0xbad, 20)
		for i := 0; i < 20000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			stranger.conn.WriteToUDPAddrPort(pkt, netip.AddrPortFrom(loopback, uint16(lo+i%(hi-lo+1))))
			if i%64 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()

	var wg, closers sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, b := parties[w][0], parties[w][1]
			for i := range 40 {
				s, err := r.Open(fmt.Sprintf("w%d-%d", w, i))
				if errors.Is(err, ErrPortsExhausted) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				s.Leg(Caller).SetPeer(Peer{RTP: a.addr(), RTCPMux: i%2 == 0, SIPSource: loopback})
				s.Leg(Callee).SetPeer(Peer{RTP: b.addr(), SIPSource: loopback})
				for j := range 5 {
					a.conn.WriteToUDPAddrPort(rtpPacket(0, uint16(j), 0, 1, 20), s.Leg(Caller).Addr())
				}
				if i%3 == 0 {
					s.Leg(Callee).External(&fakeEP{})
					s.Leg(Callee).Receive(rtpPacket(0, 1, 0, 2, 20), false)
				}
				s.Stats()
				if i%4 != 0 {
					closers.Add(1)
					go func() { // races with the timeout and the next Open
						defer closers.Done()
						s.Close()
					}()
				}
				_ = r.Active()
			}
		}()
	}
	wg.Wait()
	closers.Wait()
	close(stop)
	spray.Wait()
	r.Close()
	if r.PortsInUse() != 0 {
		t.Errorf("PortsInUse after Close = %d", r.PortsInUse())
	}
	if got := openFDs(t); got != fds {
		t.Errorf("open file descriptors: %d before, %d after", fds, got)
	}
}
