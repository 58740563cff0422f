package sipstack

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// TestDirectUDPWrites: the stack's UDP sockets send with their own
// sendto(2) (directUDP), from many goroutines at once, to IPv4 and (on a
// dual-stack socket) v4-mapped and IPv6 peers; every datagram arrives
// whole, and after Close a write fails instead of reaching the closed
// descriptor.
func TestDirectUDPWrites(t *testing.T) {
	s, err := Listen(Options{Addr: "127.0.0.1:0", UDPReaders: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Each socket reads stamped (stampedUDP) and writes directly.
	direct := func(c net.PacketConn) (*directUDP, bool) {
		if st, ok := c.(*stampedUDP); ok {
			c = st.PacketConn
		}
		d, ok := c.(*directUDP)
		return d, ok
	}
	d, ok := direct(s.udp)
	if !ok {
		t.Fatalf("the stack's UDP socket is a %T, not a *directUDP", s.udp)
	}
	for _, c := range s.udpMore {
		if _, ok := direct(c); !ok {
			t.Fatalf("a reader socket is a %T, not a *directUDP", c)
		}
	}
	sendAll(t, d, "127.0.0.1")

	dual, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	dd, ok := directWrites(dual).(*directUDP)
	if !ok {
		t.Fatal("no direct writes on a wildcard socket")
	}
	sendAll(t, dd, "127.0.0.1")
	if dd.v6 {
		if probe, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err == nil {
			probe.Close()
			sendAll(t, dd, "::1")
		}
	}
	if err := dd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := dd.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v, want net.ErrClosed", err)
	}
}

// sendAll writes 8 goroutines x 50 datagrams through d to a receiver on
// ip and checks that each arrives once and whole.
func sendAll(t *testing.T, d *directUDP, ip string) {
	t.Helper()
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	_ = rx.SetReadBuffer(1 << 20)
	to := rx.LocalAddr().(*net.UDPAddr)
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				msg := fmt.Sprintf("datagram %d/%d %s", w, i, ip)
				if n, err := d.WriteTo([]byte(msg), to); err != nil || n != len(msg) {
					t.Errorf("write: %d, %v", n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	buf := make([]byte, 2048)
	_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(seen) < workers*each {
		n, _, err := rx.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("%s: %d of %d datagrams arrived: %v", ip, len(seen), workers*each, err)
		}
		seen[string(buf[:n])] = true
	}
}
