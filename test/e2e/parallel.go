package e2e

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// DefaultParallel is how many parallel tests of this package run at once
// when go test is given no -parallel (its default, GOMAXPROCS, is 2 on the
// CI machine). The tests mostly wait for processes they drive (the server,
// SIPp, baresip, a browser, timers of seconds): at 4 a whole run used about
// 135 CPU-seconds in 220 s on 2 CPUs. At 6, on a machine loaded by other
// work as well, race-detector servers answered slower than SIP's 500 ms
// retransmission timer and an HTTP request that hashes with bcrypt timed
// out: 4 leaves room.
const DefaultParallel = 4

// setDefaultParallel sets -test.parallel to DefaultParallel unless the
// command line gives it. TestMain calls it before m.Run.
func setDefaultParallel() {
	if !flag.Parsed() {
		flag.Parse()
	}
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		_ = flag.Set("test.parallel", strconv.Itoa(DefaultParallel))
	}
}

// removeBinary deletes the binary Binary built (TestMain calls it after the
// tests), so that runs do not leave 50 MB each in the temporary directory.
func removeBinary() {
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
}

// ledger remembers the ports and loopback addresses handed to tests in
// this process, so that two parallel tests never get the same one. (A port
// picked free is released before the client binds it: the kernel may give
// it to the next caller of FreeUDPPort in between, or between a test's two
// uses of it, e.g. Phone's REGISTER and its UAS.)
type ledger struct {
	mu       sync.Mutex
	ports    map[string]bool // "udp/40123", "tcp/40124"
	nextLoop int
}

// testLedger is the package's one ledger: the tests of a process share
// the machine's ports.
var testLedger = ledger{ports: map[string]bool{}}

// freePorts returns a port p free on 127.0.0.1 for each of networks ("udp",
// "tcp") when checked, such that p..p+n-1 were not handed out before in
// this process; it records them all.
func freePorts(t testing.TB, n int, networks ...string) int {
	t.Helper()
	testLedger.mu.Lock()
	defer testLedger.mu.Unlock()
	for range 200 {
		p, err := bindFree(networks)
		if err != nil {
			t.Fatal(err)
		}
		if p == 0 {
			continue
		}
		taken := false
		for q := p; q < p+n && !taken; q++ {
			for _, nw := range []string{"udp", "tcp"} {
				taken = taken || testLedger.ports[nw+"/"+strconv.Itoa(q)]
			}
		}
		if taken || p+n > 65535 {
			continue
		}
		for q := p; q < p+n; q++ {
			for _, nw := range networks {
				testLedger.ports[nw+"/"+strconv.Itoa(q)] = true
			}
		}
		return p
	}
	t.Fatalf("no free port (%v, %d in a row) not handed out before", networks, n)
	return 0
}

// bindFree asks the kernel for a free port of networks[0] on 127.0.0.1 and
// returns it if it is free for the other networks too (0 if not).
func bindFree(networks []string) (int, error) {
	var p int
	if networks[0] == "tcp" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p = l.Addr().(*net.TCPAddr).Port
		l.Close()
	} else {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p = c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
	}
	for _, nw := range networks[1:] {
		addr := "127.0.0.1:" + strconv.Itoa(p)
		if nw == "tcp" {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return 0, nil
			}
			l.Close()
		} else {
			c, err := net.ListenPacket("udp", addr)
			if err != nil {
				return 0, nil
			}
			c.Close()
		}
	}
	return p, nil
}

// LoopbackIP returns a loopback address (127.0.128.1 and up) that no other
// test of this process gets: for a test that must bind a fixed port (e.g.
// 5060, where a request without rport is answered) or tell its traffic
// apart from other tests' by source address. The fixed addresses the
// older tests use (127.0.0.x, 127.0.1.x) are below this range.
func LoopbackIP(t testing.TB) string {
	t.Helper()
	testLedger.mu.Lock()
	defer testLedger.mu.Unlock()
	i := testLedger.nextLoop
	if i >= 127*254 {
		t.Fatal("LoopbackIP: 127.0.128.0/17 used up")
	}
	testLedger.nextLoop++
	return fmt.Sprintf("127.0.%d.%d", 128+i/254, 1+i%254)
}

// reservePort records port (a server's SIP port, UDP and TCP) in the
// ledger, so that FreeUDPPort never hands it to another test: Restart
// binds it again after a stop, when the kernel would consider it free.
func reservePort(port string) {
	testLedger.mu.Lock()
	defer testLedger.mu.Unlock()
	testLedger.ports["udp/"+port] = true
	testLedger.ports["tcp/"+port] = true
}

// udpBound reports whether a UDP socket is bound to ip:port (that address,
// not the wildcard: another process may hold that port on 0.0.0.0), from
// /proc/net/udp: a look that cannot take the port from the process about
// to bind it, as binding it to check would.
func udpBound(ip string, port int) bool {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return false
	}
	a := net.ParseIP(ip).To4()
	if a == nil {
		return false
	}
	// /proc/net/udp prints the address as the host-order (little-endian
	// on x86 and arm64) hex of the network-order bytes, then the port.
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], port)
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == want {
			return true
		}
	}
	return false
}
