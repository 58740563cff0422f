package sipstack

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/emiago/sipgo/sip"
)

func register(callID string, withCredentials bool) []byte {
	auth := ""
	if withCredentials {
		auth = "Authorization: Digest username=\"100\",realm=\"r\",nonce=\"n\",uri=\"sip:r\",response=\"0\"\r\n"
	}
	return []byte("REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bK" + callID + "\r\n" +
		"From: <sip:100@127.0.0.1>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: " + callID + "\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:100@127.0.0.1:5999>\r\n" + auth + "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
}

// invite is an INVITE with toParams after its To URI and extra headers.
func invite(toParams, extra string) []byte {
	return []byte("INVITE sip:200@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKi\r\n" +
		"From: <sip:100@127.0.0.1>;tag=1\r\nTo: <sip:200@127.0.0.1>" + toParams + "\r\nCall-ID: i\r\nCSeq: 1 INVITE\r\n" +
		extra + "Contact: <sip:100@127.0.0.1:5999>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
}

// TestStaleLimit: only REGISTERs and new calls' first INVITEs are ever
// dropped; a REGISTER without credentials after 200 ms in the socket's
// queue, one with an Authorization header (in its usual spellings) after
// 400 ms; an INVITE without a To tag and without Proxy-Authorization after
// 200 ms, never one with either; a wait of more than 30 s is a clock
// step, not a queue.
func TestStaleLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	at := func(wait time.Duration) time.Time { return now.Add(-wait) }
	clock := func() time.Time { return now }
	lower := []byte(strings.Replace(string(register("l", true)), "Authorization:", "authorization:", 1))
	proxyAuth := []byte(strings.Replace(string(register("p", false)), "Max-Forwards", "Proxy-Authorization: Digest x\r\nMax-Forwards", 1))
	for _, c := range []struct {
		name string
		msg  []byte
		wait time.Duration
		want bool
	}{
		{"new, fresh", register("a", false), 150 * time.Millisecond, false},
		{"new, stale", register("a", false), 250 * time.Millisecond, true},
		{"credentials, 250 ms", register("a", true), 250 * time.Millisecond, false},
		{"credentials, stale", register("a", true), 450 * time.Millisecond, true},
		{"credentials lower case, 250 ms", lower, 250 * time.Millisecond, false},
		{"Proxy-Authorization is no credentials", proxyAuth, 250 * time.Millisecond, true},
		{"OPTIONS never", options("o"), 10 * time.Second, false},
		{"new call's INVITE, fresh", invite("", ""), 150 * time.Millisecond, false},
		{"new call's INVITE, stale", invite("", ""), 250 * time.Millisecond, true},
		{"new call's INVITE, compact To, stale", []byte(strings.Replace(string(invite("", "")), "\r\nTo:", "\r\nt :", 1)), 250 * time.Millisecond, true},
		{"INVITE with credentials never", invite("", "Proxy-Authorization: Digest x\r\n"), 10 * time.Second, false},
		{"INVITE with credentials in lower case never", invite("", "proxy-authorization: Digest x\r\n"), 10 * time.Second, false},
		{"re-INVITE never", invite(";tag=abc", ""), 10 * time.Second, false},
		{"re-INVITE, compact To with TAG, never", []byte(strings.Replace(string(invite(";TAG=abc", "")), "\r\nTo:", "\r\nt:", 1)), 10 * time.Second, false},
		{"INVITE with two To headers never", invite("", "To: <sip:x@y>\r\n"), 10 * time.Second, false},
		{"ACK never", []byte(strings.Replace(string(invite("", "")), "INVITE ", "ACK ", 1)), 10 * time.Second, false},
		{"clock step", register("a", false), time.Minute, false},
	} {
		if got := isStale(c.msg, at(c.wait), clock); got != c.want {
			t.Errorf("%s: stale %v, want %v", c.name, got, c.want)
		}
	}
	if isStale(register("a", false), time.Time{}, clock) {
		t.Error("a datagram without a stamp is stale")
	}
}

// TestStaleRegistersDropped: REGISTERs that waited in the socket's queue
// past their limit (the readers were busy: here, not yet started) are
// dropped unread and counted; an OPTIONS that waited as long is still
// answered, and a REGISTER that arrives afterwards is handled.
func TestStaleRegistersDropped(t *testing.T) {
	if !haveReusePort {
		t.Skip("arrival stamps are Linux only")
	}
	waitStamping(t)
	st, err := Listen(Options{Addr: "127.0.0.1:0", UDPReaders: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	handled := map[string]bool{}
	st.OnRegister(func(req *sip.Request, tx sip.ServerTransaction) {
		mu.Lock()
		handled[req.CallID().Value()] = true
		mu.Unlock()
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	st.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst, _ := net.ResolveUDPAddr("udp", st.Listeners[0].Addr)
	send := func(b []byte) {
		t.Helper()
		if _, err := c.WriteTo(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"old1", "old2", "old3"} {
		send(register(id, false))
		send(register(id+"-auth", true))
	}
	send(options("old-options"))
	// The queue ages: every REGISTER in it passes even the longer limit.
	time.Sleep(staleCredentials + 100*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = st.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	send(register("new", false))

	answered := map[string]bool{}
	buf := make([]byte, 8192)
	deadline := time.Now().Add(10 * time.Second)
	for !(answered["new"] && answered["old-options"]) {
		if time.Now().After(deadline) {
			t.Fatalf("answers within 10 s: %v", answered)
		}
		_ = c.SetReadDeadline(deadline)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("answers so far %v: %v", answered, err)
		}
		for _, line := range strings.Split(string(buf[:n]), "\r\n") {
			if v, ok := strings.CutPrefix(line, "Call-ID: "); ok {
				answered[v] = true
			}
		}
	}
	for st.StaleDropped() != 6 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := st.StaleDropped(); n != 6 {
		t.Errorf("%d REGISTERs dropped as stale, want 6", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for id := range handled {
		if id != "new" {
			t.Errorf("stale REGISTER %q was handled", id)
		}
	}
	for id := range answered {
		if strings.HasPrefix(id, "old") && id != "old-options" {
			t.Errorf("stale REGISTER %q was answered", id)
		}
	}
}

// BenchmarkStaleCheck: what the readers pay per datagram to decide (a
// REGISTER with credentials, the longest header scan).
func BenchmarkStaleCheck(b *testing.B) {
	msg := register("bench", true)
	arrived := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if isStale(msg, arrived, time.Now) {
			b.Fatal("fresh datagram stale")
		}
	}
}

// waitStamping returns once the kernel stamps datagrams on arrival: the
// first socket asking for stamps turns stamping on for the whole system a
// moment later (until then a datagram is stamped when it is read, so it
// never looks stale). The probe socket stays open during the test.
func waitStamping(t *testing.T) {
	t.Helper()
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	if _, ok := stampReads(uc, uc, &staleStats{}).(*stampedUDP); !ok {
		t.Skip("no arrival stamps on this socket")
	}
	deadline := time.Now().Add(10 * time.Second)
	var words oobWords
	oob := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), unsafe.Sizeof(words))
	buf := make([]byte, 64)
	for time.Now().Before(deadline) {
		if _, err := uc.WriteToUDP([]byte("probe"), uc.LocalAddr().(*net.UDPAddr)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		_, oobn, _, _, err := uc.ReadMsgUDP(buf, oob)
		if err != nil {
			t.Fatal(err)
		}
		if at := arrival(&words, oobn); !at.IsZero() && time.Since(at) >= 15*time.Millisecond {
			return
		}
	}
	t.Fatal("the kernel did not stamp datagrams on arrival within 10 s")
}

// BenchmarkStampedRead: a REGISTER sent and read through a plain socket and
// through a stamped one (recvmsg with the arrival stamp, and the stale
// check): the stamp's cost per datagram.
func BenchmarkStampedRead(b *testing.B) {
	msg := register("bench", true)
	for _, stamped := range []bool{false, true} {
		name := "plain"
		if stamped {
			name = "stamped"
		}
		b.Run(name, func(b *testing.B) {
			uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer uc.Close()
			var c net.PacketConn = uc
			if stamped {
				c = stampReads(uc, uc, &staleStats{})
			}
			dst := uc.LocalAddr()
			buf := make([]byte, 4096)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := uc.WriteTo(msg, dst); err != nil {
					b.Fatal(err)
				}
				if _, _, err := c.ReadFrom(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
