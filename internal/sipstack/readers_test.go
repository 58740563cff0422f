package sipstack

import (
	"net"
	"runtime"
	"strconv"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestUDPReaders: the port is read by the requested number of sockets
// (SO_REUSEPORT on Linux), all on the listener's address, and every one of
// them is served: requests from many source ports (which the kernel spreads
// over the sockets) are all answered.
func TestUDPReaders(t *testing.T) {
	if !haveReusePort {
		t.Skip("SO_REUSEPORT readers are Linux only")
	}
	st, _ := startStack(t, Options{UDPReaders: 3}, func(st *Stack) {
		st.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	})
	if len(st.udpMore) != 2 {
		t.Fatalf("%d extra UDP sockets, want 2", len(st.udpMore))
	}
	addr := st.Listeners[0].Addr
	for _, c := range st.udpMore {
		if c.LocalAddr().String() != addr {
			t.Fatalf("extra socket on %s, want %s", c.LocalAddr(), addr)
		}
	}
	// With 3 sockets and 40 senders, a socket nobody reads would leave
	// some request unanswered (all 40 avoid one socket with p < 1e-6).
	for i := range 40 {
		if got := exchange(t, addr, options("r"+strconv.Itoa(i))); got != "SIP/2.0 200 OK" {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	if def, _ := startStack(t, Options{}, nil); len(def.udpMore) != min(runtime.GOMAXPROCS(0), 4)-1 {
		t.Errorf("default: %d extra sockets, want one per CPU up to 4 in all", len(def.udpMore))
	}
}

// TestTxLinger: transactions with a final answer linger TxLinger, not
// RFC 3261's 64*T1.
func TestTxLinger(t *testing.T) {
	startStack(t, Options{}, nil)
	if sip.Timer_L != TxLinger || sip.Timer_M != TxLinger || sip.Timer_J != TxLinger {
		t.Fatalf("Timers L, M, J = %v, %v, %v; want %v", sip.Timer_L, sip.Timer_M, sip.Timer_J, TxLinger)
	}
}

func TestBoundAddrKeepsTheWildcardAsked(t *testing.T) {
	for _, c := range []struct{ host, got, want string }{
		{"0.0.0.0", "[::]:5060", "0.0.0.0:5060"},
		{"::", "[::]:5061", "[::]:5061"},
		{"127.0.0.1", "127.0.0.1:5062", "127.0.0.1:5062"},
	} {
		a, err := net.ResolveUDPAddr("udp", c.got)
		if err != nil {
			t.Fatal(err)
		}
		if got := boundAddr(c.host, a); got != c.want {
			t.Errorf("boundAddr(%q, %s) = %s, want %s", c.host, c.got, got, c.want)
		}
	}
}
