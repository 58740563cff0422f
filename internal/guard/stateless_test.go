package guard

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/sipreply"
)

// holdRegistrar is a Registrar that counts the REGISTERs it is handed and
// answers each (200, numbered) only when released.
type holdRegistrar struct {
	mu      sync.Mutex
	served  int
	release chan struct{}
	answers sipreply.Writer
}

func (h *holdRegistrar) Serve(req *sip.Request, reply func(*sipreply.Answer) error) {
	h.mu.Lock()
	h.served++
	n := h.served
	h.mu.Unlock()
	<-h.release
	a := h.answers.Begin(req, 200, "OK", "")
	a.HeaderInt("X-Served", n)
	_ = reply(a)
}

func (h *holdRegistrar) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.served
}

func registerMsg(cseq int, branch string) []byte {
	return []byte("REGISTER sip:192.0.2.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK" + branch + "\r\n" +
		"From: <sip:1001@192.0.2.1>;tag=abc\r\nTo: <sip:1001@192.0.2.1>\r\n" +
		"Call-ID: rtx-test@192.0.2.7\r\nCSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" +
		"Contact: <sip:1001@192.0.2.7:5060>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
}

func newStatelessGuard(t *testing.T, inHand, reserve int) (*Guard, *recorder, *holdRegistrar) {
	t.Helper()
	reg := &holdRegistrar{release: make(chan struct{})}
	g := New(Config{}, Deps{Policy: &testPolicy{}, Registrar: reg, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if inHand > 0 {
		g.stateless.sem = make(chan struct{}, inHand)
		g.stateless.reserve = reserve
		g.stateless.fresh = make(chan struct{}, inHand-reserve)
	}
	r := &recorder{}
	g.SetTransport(r)
	t.Cleanup(func() {
		select {
		case <-reg.release:
		default:
			close(reg.release)
		}
		g.Wait()
	})
	return g, r, reg
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRegisterRetransmissionsAbsorbed: over UDP a retransmitted REGISTER
// is not handled again: while its original is in hand it is dropped, and
// once answered it gets the very same answer, without the registrar.
func TestRegisterRetransmissionsAbsorbed(t *testing.T) {
	g, r, reg := newStatelessGuard(t, 0, 0)
	msg := registerMsg(1, "first")
	if out := g.Filter("UDP", udpFrom, msg); out != nil {
		t.Fatal("REGISTER not taken by the stateless path")
	}
	waitFor(t, "the registrar to get the REGISTER", func() bool { return reg.count() == 1 })
	for range 3 {
		if out := g.Filter("UDP", udpFrom, bytes.Clone(msg)); out != nil {
			t.Fatal("retransmission handed to sipgo")
		}
	}
	close(reg.release)
	var answers [][]byte
	waitFor(t, "the answer", func() bool {
		got, _ := r.Take()
		answers = append(answers, got...)
		return len(answers) > 0
	})
	g.Wait()
	if reg.count() != 1 {
		t.Fatalf("registrar handled %d REGISTERs, want 1 (retransmissions in hand must be dropped)", reg.count())
	}
	if len(answers) != 1 || !strings.Contains(string(answers[0]), "X-Served: 1") {
		t.Fatalf("answers while in hand: %q", answers)
	}
	g.Filter("UDP", udpFrom, bytes.Clone(msg))
	again, _ := r.Take()
	if len(again) != 1 || !bytes.Equal(again[0], answers[0]) {
		t.Fatalf("retransmission after the answer got %q, want the same answer %q", again, answers[0])
	}
	if reg.count() != 1 {
		t.Fatalf("registrar handled %d REGISTERs, want 1", reg.count())
	}
	if _, absorbed := g.Stateless().Stats(); absorbed != 4 {
		t.Fatalf("absorbed %d retransmissions, want 4", absorbed)
	}
	// A new request (next CSeq, new branch), the same request from
	// another port, and one that repeats Via, Call-ID and CSeq but not the
	// rest (a replay with other credentials) are not retransmissions.
	g.Filter("UDP", udpFrom, registerMsg(2, "second"))
	other := &net.UDPAddr{IP: udpFrom.IP, Port: udpFrom.Port + 1}
	g.Filter("UDP", other, bytes.Clone(msg))
	g.Filter("UDP", udpFrom, bytes.Replace(msg, []byte("Max-Forwards: 70"), []byte("Max-Forwards: 69"), 1))
	waitFor(t, "three more REGISTERs handled", func() bool { return reg.count() == 4 })
	g.Wait()
	if n := g.Stateless().rtx.size(); n != 4 {
		t.Fatalf("remembered %d REGISTERs, want 4", n)
	}
}

// TestRegisterShedWhenSaturated: with the stateless path full, a new
// REGISTER over UDP is answered 503 with Retry-After at once (not handed
// to sipgo, not queued), and its retransmission is handled once there is
// room again.
func TestRegisterShedWhenSaturated(t *testing.T) {
	g, r, reg := newStatelessGuard(t, 1, 0)
	if out := g.Filter("UDP", udpFrom, registerMsg(1, "busy")); out != nil {
		t.Fatal("REGISTER not taken")
	}
	waitFor(t, "the first REGISTER in hand", func() bool { return reg.count() == 1 })
	shed := registerMsg(2, "shed")
	if out := g.Filter("UDP", udpFrom, shed); out != nil {
		t.Fatal("REGISTER handed to sipgo while saturated")
	}
	got, _ := r.Take()
	if len(got) != 1 || statusOf(got[0]) != "SIP/2.0 503 Service Unavailable" ||
		!strings.Contains(string(got[0]), "\r\nRetry-After: ") || !strings.Contains(string(got[0]), "\r\nCSeq: 2 REGISTER\r\n") {
		t.Fatalf("saturated: got %q, want one 503 with Retry-After", got)
	}
	if s, _ := g.Stateless().Stats(); s != 1 {
		t.Fatalf("shed %d, want 1", s)
	}
	if !g.stateless.stalled.Load() {
		t.Fatal("a wait in vain did not mark the path stalled")
	}
	close(reg.release)
	g.Wait()
	g.Filter("UDP", udpFrom, bytes.Clone(shed))
	waitFor(t, "the shed REGISTER handled when sent again", func() bool { return reg.count() == 2 })
	if g.stateless.stalled.Load() {
		t.Fatal("still stalled after requests finished")
	}
}

// TestRegisterWaitsForPlace: a REGISTER arriving while every place is
// taken waits (holding up the reader, so the kernel's buffer queues the
// rest) and is handled as soon as one frees, not shed; a wait in vain
// marks the path stalled, which the next finished request clears.
func TestRegisterWaitsForPlace(t *testing.T) {
	g, r, reg := newStatelessGuard(t, 1, 0)
	g.Filter("UDP", udpFrom, registerMsg(1, "held"))
	waitFor(t, "the first REGISTER in hand", func() bool { return reg.count() == 1 })
	done := make(chan []byte, 1)
	go func() { done <- g.Filter("UDP", udpFrom, registerMsg(2, "waits")) }()
	time.Sleep(shedWait / 10)
	close(reg.release)
	if out := <-done; out != nil {
		t.Fatal("waiting REGISTER handed to sipgo")
	}
	waitFor(t, "the waiting REGISTER handled", func() bool { return reg.count() == 2 })
	var got [][]byte
	waitFor(t, "both answered", func() bool {
		more, _ := r.Take()
		got = append(got, more...)
		return len(got) == 2
	})
	for _, m := range got {
		if statusOf(m) != "SIP/2.0 200 OK" {
			t.Fatalf("answered %q, want the registrar's 200s", m)
		}
	}
	if s, _ := g.Stateless().Stats(); s != 0 {
		t.Fatalf("shed %d, want 0", s)
	}
	if g.stateless.stalled.Load() {
		t.Fatal("stalled without a wait in vain")
	}
}

// TestRegisterShedKeepsCredentials: near saturation the REGISTERs shed
// first are new ones (without credentials); one answering a challenge
// still gets the reserved room, and is shed only when that is full too.
func TestRegisterShedKeepsCredentials(t *testing.T) {
	g, r, reg := newStatelessGuard(t, 2, 1)
	g.Filter("UDP", udpFrom, registerMsg(1, "held"))
	waitFor(t, "the first REGISTER in hand", func() bool { return reg.count() == 1 })
	withAuth := func(cseq int, branch string) []byte {
		return bytes.Replace(registerMsg(cseq, branch), []byte("Max-Forwards: 70\r\n"),
			[]byte("Max-Forwards: 70\r\nAuthorization: Digest username=\"1001\", realm=\"192.0.2.1\", nonce=\"n\", uri=\"sip:192.0.2.1\", response=\"0123456789abcdef0123456789abcdef\"\r\n"), 1)
	}
	g.Filter("UDP", udpFrom, registerMsg(2, "new"))
	if got, _ := r.Take(); len(got) != 1 || statusOf(got[0]) != "SIP/2.0 503 Service Unavailable" {
		t.Fatalf("a new REGISTER at the reserve: got %q, want 503", got)
	}
	g.Filter("UDP", udpFrom, withAuth(3, "auth"))
	waitFor(t, "the REGISTER with credentials in hand", func() bool { return reg.count() == 2 })
	if got, _ := r.Take(); len(got) != 0 {
		t.Fatalf("REGISTER with credentials answered %q, want it handled", got)
	}
	g.Filter("UDP", udpFrom, withAuth(4, "auth2"))
	if got, _ := r.Take(); len(got) != 1 || statusOf(got[0]) != "SIP/2.0 503 Service Unavailable" {
		t.Fatalf("with the reserve full: got %q, want 503", got)
	}
	if s, _ := g.Stateless().Stats(); s != 2 || reg.count() != 2 {
		t.Fatalf("shed %d, handled %d; want 2 and 2", s, reg.count())
	}
}

// TestRetransGenerations: an answer is remembered at least rtxKeep and
// then forgotten (a later copy is a new request), while a REGISTER still
// in hand is remembered however long it takes.
func TestRetransGenerations(t *testing.T) {
	clock := &fakeClock{}
	r := newRetrans(clock.Now)
	ap := addrPort(udpFrom)
	answeredKey, slowKey := r.key(ap, registerMsg(1, "a")), r.key(ap, registerMsg(1, "b"))
	e, _, ok := r.begin(answeredKey)
	if !ok {
		t.Fatal("first sight not new")
	}
	r.answered(e, []byte("SIP/2.0 200 OK\r\n\r\n"))
	r.end(answeredKey, e)
	slow, _, _ := r.begin(slowKey)
	clock.advance(rtxKeep - time.Millisecond)
	if _, ans, ok := r.begin(answeredKey); ok || string(ans) != "SIP/2.0 200 OK\r\n\r\n" {
		t.Fatalf("within rtxKeep: new=%v answer=%q, want the kept answer", ok, ans)
	}
	for range 3 {
		clock.advance(rtxKeep)
		if _, ans, ok := r.begin(slowKey); ok || ans != nil {
			t.Fatalf("in hand: new=%v answer=%q, want a known request without answer", ok, ans)
		}
	}
	if _, _, ok := r.begin(answeredKey); !ok {
		t.Fatal("answer still remembered after 2*rtxKeep")
	}
	r.end(slowKey, slow) // handled without an answer: forgotten at once
	if _, _, ok := r.begin(slowKey); !ok {
		t.Fatal("a REGISTER that got no answer is still remembered")
	}
}

// TestSourceString: a request's Source is the text net.UDPAddr.String
// gives, for every kind of address.
func TestSourceString(t *testing.T) {
	for _, a := range []*net.UDPAddr{
		{IP: net.IPv4(192, 0, 2, 7), Port: 5060},
		{IP: net.ParseIP("192.0.2.7").To4(), Port: 65535},
		{IP: net.ParseIP("2001:db8::1"), Port: 5062},
		{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"},
		{IP: net.ParseIP("::"), Port: 0},
		{IP: net.ParseIP("::ffff:10.0.0.1"), Port: 7},
		{IP: net.ParseIP("::ffff:10.0.0.1"), Port: 7, Zone: "x"},
		{Port: 5060},
		{IP: net.IP{1, 2, 3}, Port: 5060},
	} {
		if got, want := sourceString(a), a.String(); got != want {
			t.Errorf("sourceString(%#v) = %q, want %q", a, got, want)
		}
	}
}
