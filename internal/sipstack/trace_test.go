package sipstack

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/trace"
)

// TestTraceCapture: with a tracer subscribed, the stack (sipgo serving
// our wrapped UDP sockets, and our TCP listener) still answers, and the
// tracer sees each request in and each answer out, over UDP and TCP, with
// the right addresses, plus a message the filter dropped, marked, and a
// Reply; without a subscriber it records nothing.
func TestTraceCapture(t *testing.T) {
	tr := trace.New(0, 0)
	var st *Stack
	st, _ = startStack(t, Options{Tracer: tr, UDPReaders: 2,
		Filter: func(transport string, remote net.Addr, data []byte) []byte {
			if strings.Contains(string(data), "Call-ID: drop") {
				return nil
			}
			return data
		}}, answerOptions)
	addr := st.Listeners[0].Addr
	if got := exchange(t, addr, options("before")); got != "SIP/2.0 200 OK" {
		t.Fatalf("untraced: %q", got)
	}
	if n := len(tr.Recent(trace.Filter{}, 0)); n != 0 {
		t.Fatalf("%d messages captured while nobody traced", n)
	}
	sub := tr.Subscribe(100)
	defer sub.Close()
	if got := exchange(t, addr, options("udp1")); got != "SIP/2.0 200 OK" {
		t.Fatalf("traced UDP: %q", got)
	}
	c := dialFrom(t, "127.0.0.1", st.Listeners[1].Addr)
	if got := optionsOver(t, c, "tcp1"); got != "SIP/2.0 200 OK" {
		t.Fatalf("traced TCP: %q", got)
	}
	// a dropped datagram, and a raw Reply to it
	dst, _ := net.ResolveUDPAddr("udp", addr)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.WriteTo(options("drop"), dst); err != nil {
		t.Fatal(err)
	}
	if err := st.Reply("UDP", pc.LocalAddr(), []byte("SIP/2.0 403 Forbidden\r\nCall-ID: drop\r\nCSeq: 1 OPTIONS\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"in UDP OPTIONS sip:a@127.0.0.1 SIP/2.0 udp1",
		"out UDP SIP/2.0 200 OK udp1",
		"in TCP OPTIONS sip:a@127.0.0.1 SIP/2.0 tcp1",
		"out TCP SIP/2.0 200 OK tcp1",
		"in UDP OPTIONS sip:a@127.0.0.1 SIP/2.0 drop",
		"out UDP SIP/2.0 403 Forbidden drop",
	}
	var got []string
	deadline := time.After(5 * time.Second)
	for len(got) < len(want) {
		select {
		case m := <-sub.C():
			got = append(got, strings.Join([]string{m.Direction, m.Transport, m.FirstLine, m.CallID}, " "))
			local := st.Listeners[0].Addr
			if m.Transport == "TCP" {
				local = st.Listeners[1].Addr
			}
			if m.Local.String() != local || !m.Remote.Addr().IsLoopback() || m.Remote.Port() == 0 {
				t.Errorf("%s: local %s remote %s, want local %s", m.FirstLine, m.Local, m.Remote, local)
			}
		case <-deadline:
			t.Fatalf("captured %q, want %q", got, want)
		}
	}
	// the dropped one may come before or after the TCP exchange's answer
	// only in order per exchange; compare as sets of lines
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Errorf("missing %q in %q", w, got)
		}
	}
}
