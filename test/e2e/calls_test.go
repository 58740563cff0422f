package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CallRecord is the subset of `calls --json` the tests read.
type CallRecord struct {
	ID           int64   `json:"id"`
	CallID       string  `json:"call_id"`
	From         string  `json:"from"`
	To           string  `json:"to"`
	Domain       string  `json:"domain"`
	CallerSource string  `json:"caller_source"`
	Start        string  `json:"start"`
	Answer       string  `json:"answer"`
	End          string  `json:"end"`
	DurationS    float64 `json:"duration_s"`
	Active       bool    `json:"active"`
	State        string  `json:"state"`
	SIPStatus    int     `json:"sip_status"`
	Cause        string  `json:"cause"`
	HangupBy     string  `json:"hangup_by"`
	Branches     []struct {
		Contact     string `json:"contact"`
		Destination string `json:"destination"`
		SIPStatus   int    `json:"sip_status"`
		Reason      string `json:"reason"`
		Ringing     bool   `json:"ringing"`
	} `json:"branches"`
	Detail string `json:"detail"`
}

// Calls returns `switchboard calls --json` plus args.
func (s *Server) Calls(args ...string) []CallRecord {
	s.t.Helper()
	var out []CallRecord
	s.JSON(&out, append([]string{"calls"}, args...)...)
	return out
}

// waitCall waits until the newest call record satisfies ok and returns it.
func waitCall(t *testing.T, s *Server, what string, ok func(CallRecord) bool) CallRecord {
	t.Helper()
	var last []CallRecord
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		last = s.Calls("--limit", "1")
		if len(last) == 1 && ok(last[0]) {
			return last[0]
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no call record with %s; newest: %+v\nserver log:\n%s", what, last, s.Log())
	return CallRecord{}
}

// Phone is a SIPp process playing a registered phone: it REGISTERs from
// 127.0.0.1:Port, then (Start) runs a UAS scenario on that very port, so
// the binding's source address is where the phone listens, as for a phone
// behind NAT.
type Phone struct {
	t    *testing.T
	s    *Server
	Ext  string
	Port int
	dir  string
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
	code int
}

// NewPhone registers ext (password pw) from a fresh port.
func NewPhone(t *testing.T, s *Server, ext, pw string) *Phone {
	t.Helper()
	p := &Phone{t: t, s: s, Ext: ext, Port: FreeUDPPort(t), dir: t.TempDir()}
	r := SIPp(t, s.Addr, "register.xml", 1, "-inf", CSV(t, "SEQUENTIAL", AuthRow(ext, pw)), "-p", strconv.Itoa(p.Port))
	if r.Code != 0 {
		t.Fatalf("phone %s did not register from port %d (%d):\n%s\nserver log:\n%s", ext, p.Port, r.Code, r.Output, s.Log())
	}
	return p
}

// Start runs a UAS scenario (testdata/sipp/NAME) on the phone's port in
// the background, answering OPTIONS automatically (-aa). Extra arguments
// go to SIPp (e.g. -d 500 for the ring time of call-phone-answer.xml).
// Like SIPp, it does not retransmit (-nr): a 200 retransmitted before a
// slow ACK would reach the caller as an unexpected message.
// SIPp counts every automatically answered OPTIONS as a call, and refuses
// new ones past -m: a phone that must keep answering qualify pings needs
// a larger -m (default 1).
func (p *Phone) Start(scenario string, extra ...string) {
	p.t.Helper()
	abs, err := filepath.Abs(filepath.Join("testdata", "sipp", scenario))
	if err != nil {
		p.t.Fatal(err)
	}
	calls := "1"
	for i, a := range extra {
		if a == "-m" && i+1 < len(extra) {
			calls = extra[i+1]
			extra = append(append([]string(nil), extra[:i]...), extra[i+2:]...)
			break
		}
	}
	args := []string{"-sf", abs, "-m", calls, "-i", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-mp", strconv.Itoa(FreeUDPPort(p.t)),
		"-aa", "-nostdin", "-nr", "-timeout", "40", "-timeout_error", "-trace_err", "-error_file", filepath.Join(p.dir, "errors.log"),
		"-trace_msg", "-message_file", filepath.Join(p.dir, "messages.log")}
	args = append(args, extra...)
	p.cmd = exec.Command("sipp", args...)
	p.cmd.Dir = p.dir
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start sipp phone: %v", err)
	}
	p.done = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	p.t.Cleanup(p.Stop)
	// The first INVITE must find SIPp listening.
	WaitFor(p.t, 10*time.Second, fmt.Sprintf("phone %s's SIPp to bind UDP port %d", p.Ext, p.Port), func() bool {
		return udpBound("127.0.0.1", p.Port)
	})
}

// Stop kills the phone's SIPp (by PID) if it still runs.
func (p *Phone) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Wait waits for the scenario to end and returns SIPp's exit code and its
// message trace.
func (p *Phone) Wait(timeout time.Duration) (int, string) {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Stop()
		p.t.Fatalf("phone %s (port %d) did not finish in %s:\n%s\n%s", p.Ext, p.Port, timeout, p.out.String(), p.Messages())
	}
	return p.code, p.Messages()
}

// Messages returns the phone's SIPp message trace so far.
func (p *Phone) Messages() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "messages.log"))
	e, _ := os.ReadFile(filepath.Join(p.dir, "errors.log"))
	return string(b) + "\n--- errors ---\n" + string(e)
}

// MustSucceed waits for the phone's scenario and fails the test unless it
// completed.
func (p *Phone) MustSucceed(timeout time.Duration) string {
	p.t.Helper()
	code, msgs := p.Wait(timeout)
	if code != 0 {
		p.t.Fatalf("phone %s scenario failed (exit %d):\n%s\n%s\nserver log:\n%s", p.Ext, code, p.out.String(), tail(msgs, 8000), p.s.Log())
	}
	return msgs
}

// callerRow is a SIPp injection row: caller;password;[authentication];callee.
func callerRow(caller, pw, callee string) []string { return AuthRow(caller, pw, callee) }

// lastFinalResponse returns the last final response (>= 200) SIPp received.
func lastFinalResponse(t *testing.T, r SIPpResult) SIPMessage {
	t.Helper()
	var fin SIPMessage
	for _, m := range Responses(ParseSIPpMessages(r.Messages)) {
		st := m.Status()
		if len(st) >= 3 && st[0] >= '2' {
			fin = m
		}
	}
	if fin.First == "" {
		t.Fatalf("SIPp received no final response:\n%s", r.Output)
	}
	return fin
}

// receivedRequests returns the requests SIPp received with this method.
func receivedRequests(msgs, method string) []SIPMessage {
	var out []SIPMessage
	for _, m := range ParseSIPpMessages(msgs) {
		if m.Received && strings.HasPrefix(m.First, method+" ") {
			out = append(out, m)
		}
	}
	return out
}

// callSetup starts a server (qualify off unless extra turns it on) with
// extensions 2001, 2002 and 2003 (passwords secret-NNNN), and fails the
// test if the server reports a data race or a panic.
func callSetup(t *testing.T, extra ...string) *Server {
	t.Helper()
	Need(t, "sipp")
	// Qualify pings would be answered by SIPp phones as calls of their own
	// (see Phone.Start): off unless a test turns it on.
	s := Start(t, "", append([]string{"--qualify-interval", "0"}, extra...)...)
	t.Cleanup(func() {
		s.Stop()
		if log := s.Log(); strings.Contains(log, "DATA RACE") || strings.Contains(log, "panic:") {
			t.Errorf("the server reported a data race or a panic:\n%s", log)
		}
	})
	for _, e := range []string{"2001", "2002", "2003"} {
		s.AddExt(e, "secret-"+e)
	}
	return s
}

// TestCallSIPpAnswered: 2001 calls 2002 (a SIPp phone that rings and
// answers); ACK and BYE follow the Record-Route; the record says
// NORMAL_CLEARING with a duration and who hung up.
func TestCallSIPpAnswered(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	callee := NewPhone(t, s, "2002", "secret-2002")
	callee.Start("call-phone-answer.xml", "-d", "300")
	r := SIPp(t, s.Addr, "call-uac.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")), "-d", "1000")
	if r.Code != 0 {
		t.Fatalf("caller failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	msgs := callee.MustSucceed(10 * time.Second)
	invs := receivedRequests(msgs, "INVITE")
	if len(invs) == 0 {
		t.Fatal("callee got no INVITE")
	}
	inv := invs[0]
	rr := strings.Join(inv.Get("Record-Route"), ",")
	if !strings.Contains(rr, ";lr") || !strings.Contains(rr, s.Port) {
		t.Fatalf("INVITE lacks our Record-Route: %q", rr)
	}
	if len(inv.Get("Proxy-Authorization")) != 0 {
		t.Fatal("the caller's credentials were forwarded to the callee")
	}
	if len(receivedRequests(msgs, "ACK")) == 0 || len(receivedRequests(msgs, "BYE")) == 0 {
		t.Fatalf("ACK or BYE did not reach the callee through the proxy:\n%s", msgs)
	}
	c := waitCall(t, s, "NORMAL_CLEARING", func(c CallRecord) bool { return c.Cause == "NORMAL_CLEARING" })
	if c.From != "2001" || c.To != "2002" || c.SIPStatus != 200 || c.HangupBy != "caller" || c.DurationS < 0.8 ||
		c.DurationS > 5 || c.Active || len(c.Branches) != 1 || c.Branches[0].SIPStatus != 200 || !c.Branches[0].Ringing {
		t.Fatalf("unexpected call record %+v", c)
	}
	if !strings.HasSuffix(c.Branches[0].Destination, ":"+strconv.Itoa(callee.Port)) {
		t.Fatalf("INVITE not sent to where the phone registered from: %+v", c.Branches[0])
	}
}

// failCall places an authenticated call that is expected to fail and
// returns the final response the caller got.
func failCall(t *testing.T, s *Server, caller, pw, callee string) SIPMessage {
	t.Helper()
	r := SIPp(t, s.Addr, "call-uac-fail.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow(caller, pw, callee)))
	if r.Code != 0 {
		t.Fatalf("caller scenario failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	return lastFinalResponse(t, r)
}

// wantFailure checks the caller's final answer and the call record.
func wantFailure(t *testing.T, s *Server, fin SIPMessage, to, status, reason, cause string) CallRecord {
	t.Helper()
	if !strings.HasPrefix(fin.Status(), status+" ") {
		t.Fatalf("caller got %q, want %s", fin.Status(), status)
	}
	if reason != "" {
		if got := strings.Join(fin.Get("Reason"), ", "); got != reason {
			t.Fatalf("Reason header %q, want %q (final response %q)", got, reason, fin.First)
		}
	}
	c := waitCall(t, s, "cause "+cause+" to "+to, func(c CallRecord) bool { return c.Cause == cause && c.To == to })
	code, _ := strconv.Atoi(status)
	if c.SIPStatus != code || c.Active || c.End == "" || c.DurationS != 0 || c.Answer != "" {
		t.Fatalf("unexpected record for a failed call: %+v", c)
	}
	return c
}

// TestCallNotRegistered: the callee exists but has no registration: 480
// with Reason USER_NOT_REGISTERED, recorded as such.
func TestCallNotRegistered(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	fin := failCall(t, s, "2001", "secret-2001", "2003")
	c := wantFailure(t, s, fin, "2003", "480", `Q.850;cause=20;text="USER_NOT_REGISTERED"`, "USER_NOT_REGISTERED")
	if c.From != "2001" || c.To != "2003" || len(c.Branches) != 0 || c.Domain != "127.0.0.1" {
		t.Fatalf("unexpected record %+v", c)
	}
}

// TestCallUnknownExtension: 404 UNALLOCATED_NUMBER, as for a disabled one.
func TestCallUnknownExtension(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	fin := failCall(t, s, "2001", "secret-2001", "2999")
	wantFailure(t, s, fin, "2999", "404", `Q.850;cause=1;text="UNALLOCATED_NUMBER"`, "UNALLOCATED_NUMBER")
	NewPhone(t, s, "2002", "secret-2002")
	s.CLI("ext", "set", "2002", "--enabled=false")
	fin = failCall(t, s, "2001", "secret-2001", "2002")
	c := wantFailure(t, s, fin, "2002", "404", `Q.850;cause=1;text="UNALLOCATED_NUMBER"`, "UNALLOCATED_NUMBER")
	if !strings.Contains(c.Detail, "disabled") {
		t.Fatalf("unexpected record %+v", c)
	}
}

// TestCallBusy: the callee answers 486: the caller gets 486 with Reason
// USER_BUSY.
func TestCallBusy(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	p := NewPhone(t, s, "2002", "secret-2002")
	p.Start("call-phone-busy.xml")
	fin := failCall(t, s, "2001", "secret-2001", "2002")
	c := wantFailure(t, s, fin, "2002", "486", `Q.850;cause=17;text="USER_BUSY"`, "USER_BUSY")
	p.MustSucceed(5 * time.Second)
	if len(c.Branches) != 1 || c.Branches[0].SIPStatus != 486 || c.HangupBy != "callee" {
		t.Fatalf("unexpected record %+v", c)
	}
}

// TestCallDeclined: 603 from the callee is CALL_REJECTED.
func TestCallDeclined(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	p := NewPhone(t, s, "2002", "secret-2002")
	p.Start("call-phone-decline.xml")
	fin := failCall(t, s, "2001", "secret-2001", "2002")
	wantFailure(t, s, fin, "2002", "603", `Q.850;cause=21;text="CALL_REJECTED"`, "CALL_REJECTED")
	p.MustSucceed(5 * time.Second)
}

// TestCallNoAnswer: the callee rings past its call timeout (2 s): the
// phone gets a CANCEL, the caller 480 NO_ANSWER.
func TestCallNoAnswer(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	s.CLI("ext", "set", "2002", "--call-timeout", "2")
	p := NewPhone(t, s, "2002", "secret-2002")
	p.Start("call-phone-ring.xml")
	start := time.Now()
	fin := failCall(t, s, "2001", "secret-2001", "2002")
	if took := time.Since(start); took < 2*time.Second || took > 8*time.Second {
		t.Fatalf("the call failed after %s, want about the 2 s call timeout", took)
	}
	c := wantFailure(t, s, fin, "2002", "480", `Q.850;cause=19;text="NO_ANSWER"`, "NO_ANSWER")
	msgs := p.MustSucceed(5 * time.Second)
	if len(receivedRequests(msgs, "CANCEL")) == 0 {
		t.Fatal("the ringing phone got no CANCEL")
	}
	if c.HangupBy != "server" || len(c.Branches) != 1 || !c.Branches[0].Ringing || c.Branches[0].SIPStatus != 487 {
		t.Fatalf("unexpected record %+v", c)
	}
}

// TestCallCallerCancel: the caller hangs up while the callee rings: 487,
// the phone gets the CANCEL, ORIGINATOR_CANCEL.
func TestCallCallerCancel(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	p := NewPhone(t, s, "2002", "secret-2002")
	p.Start("call-phone-ring.xml")
	r := SIPp(t, s.Addr, "call-uac-cancel.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")), "-d", "500")
	if r.Code != 0 {
		t.Fatalf("caller failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	msgs := p.MustSucceed(5 * time.Second)
	if len(receivedRequests(msgs, "CANCEL")) != 1 {
		t.Fatalf("the phone did not get exactly one CANCEL:\n%s", msgs)
	}
	c := waitCall(t, s, "ORIGINATOR_CANCEL", func(c CallRecord) bool { return c.Cause == "ORIGINATOR_CANCEL" })
	if c.SIPStatus != 487 || c.HangupBy != "caller" || c.Active || len(c.Branches) != 1 || c.Branches[0].SIPStatus != 487 {
		t.Fatalf("unexpected record %+v", c)
	}
}

// TestCallForkFirstAnswerWins: 2002 is registered on two phones; both ring,
// the first to answer gets the call and the other one a CANCEL.
func TestCallForkFirstAnswerWins(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	a := NewPhone(t, s, "2002", "secret-2002")
	b := NewPhone(t, s, "2002", "secret-2002")
	if n := len(s.Regs("2002")); n != 2 {
		t.Fatalf("want 2 registrations of 2002, got %d", n)
	}
	a.Start("call-phone-answer.xml", "-d", "1000")
	b.Start("call-phone-ring.xml")
	r := SIPp(t, s.Addr, "call-uac.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")), "-d", "500")
	if r.Code != 0 {
		t.Fatalf("caller failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	a.MustSucceed(10 * time.Second)
	bm := b.MustSucceed(10 * time.Second)
	if len(receivedRequests(bm, "INVITE")) == 0 || len(receivedRequests(bm, "CANCEL")) != 1 {
		t.Fatalf("the second phone was not rung and cancelled:\n%s", bm)
	}
	c := waitCall(t, s, "NORMAL_CLEARING", func(c CallRecord) bool { return c.Cause == "NORMAL_CLEARING" })
	if len(c.Branches) != 2 {
		t.Fatalf("want 2 branches, got %+v", c)
	}
	got := map[int]bool{}
	for _, br := range c.Branches {
		got[br.SIPStatus] = true
		if !br.Ringing {
			t.Fatalf("branch did not ring: %+v", br)
		}
	}
	if !got[200] || !got[487] {
		t.Fatalf("want one 200 and one 487 branch: %+v", c.Branches)
	}
}

// callJournalEvent is the subset of `journal --json` these tests read.
type callJournalEvent struct {
	Kind      string `json:"kind"`
	Cause     string `json:"cause"`
	Extension string `json:"extension"`
	Status    int    `json:"sip_status"`
	Detail    string `json:"detail"`
}

func callJournal(s *Server, args ...string) []callJournalEvent {
	var ev []callJournalEvent
	s.JSON(&ev, append([]string{"journal"}, args...)...)
	return ev
}

// TestCallDeadPhone: a phone that swallows the INVITE: after the proxy's
// no-response timeout the caller gets 408 RECOVERY_ON_TIMER_EXPIRE and the
// binding is marked unreachable (reg, journal).
func TestCallDeadPhone(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	p := NewPhone(t, s, "2002", "secret-2002")
	p.Start("call-phone-swallow.xml", "-nd")
	fin := failCall(t, s, "2001", "secret-2001", "2002")
	c := wantFailure(t, s, fin, "2002", "408", `Q.850;cause=102;text="RECOVERY_ON_TIMER_EXPIRE"`, "RECOVERY_ON_TIMER_EXPIRE")
	if len(c.Branches) != 1 || c.Branches[0].SIPStatus != 408 || c.HangupBy != "server" {
		t.Fatalf("unexpected record %+v", c)
	}
	if regs := s.Regs("2002"); len(regs) != 1 || regs[0].PingStatus != "unreachable" {
		t.Fatalf("binding not marked unreachable: %+v", regs)
	}
	found := false
	for _, e := range callJournal(s, "--ext", "2002", "--kind", "qualify") {
		if e.Cause == "unreachable" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no qualify/unreachable journal event for 2002: %+v", callJournal(s, "--ext", "2002"))
	}
	p.Stop()
}

// TestCallReInviteAndByeThroughRecordRoute: a re-INVITE (hold) and the
// BYE follow the Record-Route, reach the phone and are answered.
func TestCallReInviteAndByeThroughRecordRoute(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	p := NewPhone(t, s, "2002", "secret-2002")
	p.Start("call-phone-reinvite.xml", "-d", "200")
	r := SIPp(t, s.Addr, "call-uac-reinvite.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")), "-d", "300")
	if r.Code != 0 {
		t.Fatalf("caller failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	msgs := p.MustSucceed(10 * time.Second)
	invs := receivedRequests(msgs, "INVITE")
	if len(invs) != 2 {
		t.Fatalf("phone got %d INVITEs, want the call and its re-INVITE", len(invs))
	}
	if route := invs[1].Get("Route"); len(route) != 0 {
		t.Fatalf("our Route was not popped from the re-INVITE: %v", route)
	}
	waitCall(t, s, "NORMAL_CLEARING", func(c CallRecord) bool { return c.Cause == "NORMAL_CLEARING" && c.HangupBy == "caller" })
}

// TestCallMaxForwardsZero: 483 and nothing is forwarded.
func TestCallMaxForwardsZero(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	r := SIPp(t, s.Addr, "call-uac-maxfwd.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")))
	if r.Code != 0 {
		t.Fatalf("caller failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	if fin := lastFinalResponse(t, r); !strings.HasPrefix(fin.Status(), "483 ") {
		t.Fatalf("got %q, want 483", fin.Status())
	}
}

// TestCallAuthentication: an INVITE without credentials gets 407 and is
// never routed; a wrong password and a From user that is not the
// authenticated user get 403; none of them is a call record.
func TestCallAuthentication(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	p := NewPhone(t, s, "2002", "secret-2002")
	p.Start("call-phone-answer.xml")

	r := SIPp(t, s.Addr, "call-uac-noauth.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")))
	if r.Code != 0 {
		t.Fatalf("unauthenticated caller (%d):\n%s", r.Code, r.Output)
	}
	fin := lastFinalResponse(t, r)
	if !strings.HasPrefix(fin.Status(), "407 ") || len(fin.Get("Proxy-Authenticate")) == 0 {
		t.Fatalf("want 407 with Proxy-Authenticate, got %q %v", fin.Status(), fin.Headers)
	}

	fin = failCall(t, s, "2001", "wrong-password", "2002")
	if !strings.HasPrefix(fin.Status(), "403 ") {
		t.Fatalf("wrong password: got %q, want 403", fin.Status())
	}
	fin = failCall(t, s, "2099", "whatever-pw", "2002")
	if !strings.HasPrefix(fin.Status(), "403 ") {
		t.Fatalf("unknown user: got %q, want 403 like a wrong password", fin.Status())
	}
	// Caller says it is 2001 but authenticates as 2003.
	row := []string{"2001", "x", "[authentication username=2003 password=secret-2003]", "2002"}
	r = SIPp(t, s.Addr, "call-uac-fail.xml", 1, "-inf", CSV(t, "SEQUENTIAL", row))
	if r.Code != 0 {
		t.Fatalf("impersonating caller (%d):\n%s", r.Code, r.Output)
	}
	if fin := lastFinalResponse(t, r); !strings.HasPrefix(fin.Status(), "403 ") {
		t.Fatalf("From 2001 authenticated as 2003: got %q, want 403", fin.Status())
	}
	time.Sleep(300 * time.Millisecond)
	if got := receivedRequests(p.Messages(), "INVITE"); len(got) != 0 {
		t.Fatalf("an unauthenticated INVITE reached the callee: %+v", got)
	}
	if cs := s.Calls(); len(cs) != 0 {
		t.Fatalf("refused credentials made call records: %+v", cs)
	}
	causes := map[string]bool{}
	for _, e := range callJournal(s, "--kind", "invite") {
		causes[e.Cause] = true
	}
	for _, c := range []string{"wrong_password", "extension_missing", "auth_user_mismatch", "challenged"} {
		if !causes[c] {
			t.Errorf("journal has no invite event with cause %s: %v", c, causes)
		}
	}
}

// TestCallLargeSDP: an INVITE with a ~3 kB SDP over UDP reaches the callee
// whole and the call completes.
func TestCallLargeSDP(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	p := NewPhone(t, s, "2002", "secret-2002")
	p.Start("call-phone-answer.xml")
	r := SIPp(t, s.Addr, "call-uac-bigsdp.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")), "-d", "200")
	if r.Code != 0 {
		t.Fatalf("caller failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	msgs := p.MustSucceed(10 * time.Second)
	invs := receivedRequests(msgs, "INVITE")
	if len(invs) == 0 {
		t.Fatal("no INVITE at the callee")
	}
	n, _ := strconv.Atoi(strings.Join(invs[0].Get("Content-Length"), ""))
	if n < 2500 {
		t.Fatalf("the callee's INVITE carries %d bytes of SDP, want the whole ~3 kB", n)
	}
	if !strings.Contains(msgs, "a=x-padding-029:") {
		t.Fatal("the end of the large SDP did not reach the callee")
	}
}

// TestQualify: with --qualify-interval 1s a SIPp phone that answers OPTIONS
// (-aa) is Reachable with an RTT and a registered phone that is gone is
// Unreachable; the change is journaled.
func TestQualify(t *testing.T) {
	t.Parallel()
	s := callSetup(t, "--qualify-interval", "1s")
	live := NewPhone(t, s, "2002", "secret-2002")
	live.Start("call-phone-answer.xml", "-m", "1000")
	dead := NewPhone(t, s, "2003", "secret-2003") // registered, then nothing listens there
	var regs []Registration
	WaitFor(t, 10*time.Second, "2002 reachable and 2003 unreachable", func() bool {
		regs = s.Regs()
		st := map[string]string{}
		for _, r := range regs {
			st[r.Extension] = r.PingStatus
		}
		return st["2002"] == "reachable" && st["2003"] == "unreachable"
	})
	var full []struct {
		Extension string  `json:"extension"`
		RTT       float64 `json:"ping_rtt_ms"`
	}
	s.JSON(&full, "reg", "2002")
	if len(full) != 1 || full[0].RTT <= 0 {
		t.Fatalf("reachable phone has no RTT: %+v", full)
	}
	if out := s.CLI("reg", "2002"); !strings.Contains(out, "reachable") {
		t.Fatalf("reg does not show the ping status:\n%s", out)
	}
	WaitFor(t, 5*time.Second, "an unreachable event for 2003", func() bool {
		ev := callJournal(s, "--ext", "2003", "--kind", "qualify")
		return len(ev) > 0 && ev[len(ev)-1].Cause == "unreachable"
	})
	// Only changes are journaled: a steadily reachable phone has no event
	// (or, if a ping was lost on a loaded machine, alternating ones
	// starting with unreachable).
	for i, e := range callJournal(s, "--ext", "2002", "--kind", "qualify") {
		want := "unreachable"
		if i%2 == 1 {
			want = "reachable"
		}
		if e.Cause != want {
			t.Fatalf("qualify event %d of the reachable phone is %q, want %q (changes only)", i, e.Cause, want)
		}
	}
	// 2003's phone comes back on the port it registered from: recovery.
	dead.Start("call-phone-answer.xml", "-m", "1000")
	WaitFor(t, 10*time.Second, "2003 reachable again", func() bool {
		r := s.Regs("2003")
		return len(r) == 1 && r[0].PingStatus == "reachable"
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev := callJournal(s, "--ext", "2003", "--kind", "qualify")
		// The journal lists events oldest first.
		if len(ev) >= 2 && ev[len(ev)-2].Cause == "unreachable" && ev[len(ev)-1].Cause == "reachable" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recovery not journaled: %+v\n%s", ev, s.CLI("journal", "--ext", "2003"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCallBaresipAudio: baresip 2001 dials baresip 2002 (auto answer); the
// call is answered, a 440 Hz tone from 2001 reaches 2002 and a 1000 Hz tone
// goes back (both recorded by the sndfile module and measured here), 2001
// hangs up, the BYE reaches 2002, and the record says NORMAL_CLEARING with
// a duration.
func TestCallBaresipAudio(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	recA, recB := t.TempDir(), t.TempDir()
	a := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2001", "secret-2001", s.Addr, "udp")},
		Modules: []string{"sndfile"}, Config: []string{"audio_source ausine,440", "ausrc_srate 48000", "ausrc_channels 2", "snd_path " + recA}})
	b := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2002", "secret-2002", s.Addr, "udp", "answermode=auto")},
		Modules: []string{"sndfile"}, Config: []string{"audio_source ausine,1000", "ausrc_srate 48000", "ausrc_channels 2", "snd_path " + recB}})
	a.WaitRegistered("2001@127.0.0.1", 15*time.Second)
	b.WaitRegistered("2002@127.0.0.1", 15*time.Second)

	if err := a.Dial("sip:2002@" + s.Addr); err != nil {
		t.Fatalf("dial: %v\n%s", err, a.Log())
	}
	a.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	b.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	var act []CallRecord
	WaitFor(t, 5*time.Second, "the call in `calls --active`", func() bool {
		act = s.Calls("--active")
		return len(act) == 1 && act[0].State == "up"
	})
	if act[0].From != "2001" || act[0].To != "2002" || act[0].Cause != "" || act[0].Answer == "" {
		t.Fatalf("calls --active during the call: %+v", act)
	}
	time.Sleep(2 * time.Second)
	if err := a.Hangup(); err != nil {
		t.Fatalf("hangup: %v", err)
	}
	b.WaitEvent("CALL_CLOSED", 0, 10*time.Second)
	a.WaitEvent("CALL_CLOSED", 0, 10*time.Second)

	c := waitCall(t, s, "NORMAL_CLEARING", func(c CallRecord) bool { return c.Cause == "NORMAL_CLEARING" })
	if c.From != "2001" || c.To != "2002" || c.SIPStatus != 200 || c.HangupBy != "caller" || c.DurationS < 1.5 || c.DurationS > 10 {
		t.Fatalf("unexpected call record %+v", c)
	}
	if act := s.Calls("--active"); len(act) != 0 {
		t.Fatalf("call still active after the BYE: %+v", act)
	}
	// Let baresip close its recordings.
	a.Stop()
	b.Stop()
	checkTone(t, recB, "2002", 440)
	checkTone(t, recA, "2001", 1000)
}

// TestCallBaresipNotRegistered: baresip 2001 dials 2003, which exists but
// is not registered: the 480 carries Reason USER_NOT_REGISTERED (baresip
// shows it) and the record says USER_NOT_REGISTERED.
func TestCallBaresipNotRegistered(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	a := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2001", "secret-2001", s.Addr, "udp")}})
	a.WaitRegistered("2001@127.0.0.1", 15*time.Second)
	if err := a.Dial("sip:2003@" + s.Addr); err != nil {
		t.Fatalf("dial: %v", err)
	}
	ev := a.WaitEvent("CALL_CLOSED", 0, 10*time.Second)
	if !strings.Contains(ev.Param, "480") {
		t.Fatalf("CALL_CLOSED %q does not say 480", ev.Param)
	}
	waitCall(t, s, "USER_NOT_REGISTERED", func(c CallRecord) bool {
		return c.Cause == "USER_NOT_REGISTERED" && c.SIPStatus == 480 && c.To == "2003"
	})
	found := false
	for _, e := range callJournal(s, "--ext", "2003", "--kind", "invite") {
		if e.Cause == "USER_NOT_REGISTERED" && e.Status == 480 {
			found = true
		}
	}
	if !found {
		t.Fatal("no invite journal event with USER_NOT_REGISTERED for 2003")
	}
}

// TestCallStrayInDialogRequests: requests that claim a dialog switchboard
// did not set up are refused, never relayed.
func TestCallStrayInDialogRequests(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	r := SIPp(t, s.Addr, "call-uac-stray.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")))
	if r.Code != 0 {
		t.Fatalf("stray requests were not refused as expected (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
}

// TestCallLeftActiveAcrossRestart: a call that is up when the server is
// killed (kill -9) is ended as SYSTEM_SHUTDOWN at the next start, and the
// call ids continue.
func TestCallLeftActiveAcrossRestart(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	p := NewPhone(t, s, "2002", "secret-2002")
	p.Start("call-phone-answer.xml")
	done := make(chan SIPpResult, 1)
	go func() {
		done <- SIPp(t, s.Addr, "call-uac.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")),
			"-d", "4000")
	}()
	WaitFor(t, 10*time.Second, "the call to be up", func() bool {
		act := s.Calls("--active")
		return len(act) == 1 && act[0].State == "up"
	})
	s.Kill()
	s.Restart()
	c := waitCall(t, s, "SYSTEM_SHUTDOWN", func(c CallRecord) bool { return c.Cause == "SYSTEM_SHUTDOWN" })
	if c.Active || c.HangupBy != "server" || c.End == "" || c.Answer == "" || !strings.Contains(c.Detail, "stopped") {
		t.Fatalf("unexpected record after restart: %+v", c)
	}
	<-done // the caller's BYE may or may not make it; its result does not matter
	p.Stop()
	fin := failCall(t, s, "2001", "secret-2001", "2003")
	if !strings.HasPrefix(fin.Status(), "480 ") {
		t.Fatalf("call after restart: %q", fin.Status())
	}
	n := waitCall(t, s, "the next call", func(n CallRecord) bool { return n.To == "2003" })
	if n.ID != c.ID+1 {
		t.Fatalf("call id after restart = %d, want %d", n.ID, c.ID+1)
	}
}

// TestCallsCLI: the text listing, `calls show`, filters and bad input.
func TestCallsCLI(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	failCall(t, s, "2001", "secret-2001", "2003")
	failCall(t, s, "2002", "secret-2002", "2999")
	waitCall(t, s, "two calls", func(c CallRecord) bool { return c.To == "2999" })

	out := s.CLI("calls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("calls listing:\n%s", out)
	}
	// Newest first; the columns line up (tabwriter).
	if !strings.Contains(lines[1], "2999") || !strings.Contains(lines[1], "UNALLOCATED_NUMBER") ||
		!strings.Contains(lines[2], "USER_NOT_REGISTERED") {
		t.Fatalf("calls listing order or content:\n%s", out)
	}
	if strings.Index(lines[0], "CAUSE") != strings.Index(lines[1], "UNALLOCATED_NUMBER") {
		t.Fatalf("columns are not aligned:\n%s", out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Fatal("color codes without a terminal")
	}
	if got := s.Calls("--to", "2003"); len(got) != 1 || got[0].Cause != "USER_NOT_REGISTERED" {
		t.Fatalf("--to 2003: %+v", got)
	}
	if got := s.Calls("--from", "2002", "--failed"); len(got) != 1 || got[0].To != "2999" {
		t.Fatalf("--from 2002 --failed: %+v", got)
	}
	if got := s.Calls("--active"); len(got) != 0 {
		t.Fatalf("--active: %+v", got)
	}
	all := s.Calls()
	show := s.CLI("calls", "show", strconv.FormatInt(all[1].ID, 10))
	for _, want := range []string{"2001@127.0.0.1", "2003@127.0.0.1", "480", "USER_NOT_REGISTERED", "No phone was rung"} {
		if !strings.Contains(show, want) {
			t.Fatalf("calls show lacks %q:\n%s", want, show)
		}
	}
	var one CallRecord
	s.JSON(&one, "calls", "show", all[0].CallID)
	if one.ID != all[0].ID {
		t.Fatalf("calls show CALL-ID found %+v", one)
	}
	for _, bad := range [][]string{{"calls", "show", "42"}, {"calls", "show"}, {"calls", "--limit", "0"},
		{"calls", "bogus"}, {"calls", "--to", "bad number!"}} {
		stdout, stderr, code := s.TryCLI(bad...)
		msg := strings.TrimSpace(stderr)
		if code != 1 || msg == "" || strings.Count(msg, "\n") > 1 || strings.Contains(stderr, "panic") {
			t.Fatalf("switchboard %v: exit %d, stdout %q, stderr %q; want exit 1 and one line", bad, code, stdout, stderr)
		}
	}
}

// TestCallMany: 20 calls at 10 calls/s through the proxy (bounded in count
// and time) all complete, are all recorded as NORMAL_CLEARING, and none is
// left active.
func TestCallMany(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	p := NewPhone(t, s, "2002", "secret-2002")
	p.Start("call-phone-answer.xml", "-m", "20")
	t0 := time.Now()
	r := SIPp(t, s.Addr, "call-uac.xml", 20, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")),
		"-r", "10", "-l", "10", "-d", "200")
	t.Logf("caller done after %s", time.Since(t0))
	if r.Code != 0 {
		t.Fatalf("caller failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	p.MustSucceed(20 * time.Second)
	t.Logf("callee done after %s", time.Since(t0))
	WaitFor(t, 10*time.Second, "20 ended calls", func() bool {
		cs := s.Calls("--failed")
		all := s.Calls()
		return len(cs) == 0 && len(all) == 20 && !all[0].Active
	})
	if act := s.Calls("--active"); len(act) != 0 {
		t.Fatalf("calls left active: %+v", act)
	}
}

// TestCallTCPCallerToUDPPhone: the caller uses TCP, the callee registered
// over UDP: the proxy changes transport and records both sides (RFC 5658
// double Record-Route), so the ACK and BYE still find their way.
func TestCallTCPCallerToUDPPhone(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	p := NewPhone(t, s, "2002", "secret-2002")
	p.Start("call-phone-answer.xml")
	r := SIPp(t, s.Addr, "call-uac.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")),
		"-t", "t1", "-d", "300")
	if r.Code != 0 {
		t.Fatalf("TCP caller failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	msgs := p.MustSucceed(10 * time.Second)
	invs := receivedRequests(msgs, "INVITE")
	if len(invs) == 0 {
		t.Fatal("no INVITE at the phone")
	}
	rr := invs[0].Get("Record-Route")
	if len(rr) != 2 || strings.Contains(rr[0], "transport=tcp") || !strings.Contains(rr[1], "transport=tcp") {
		t.Fatalf("want a UDP Record-Route on top of a TCP one, got %q", rr)
	}
	c := waitCall(t, s, "NORMAL_CLEARING", func(c CallRecord) bool { return c.Cause == "NORMAL_CLEARING" })
	if c.HangupBy != "caller" {
		t.Fatalf("unexpected record %+v", c)
	}
}

// TestCallNATAndContactPort: where the INVITE goes depends on NAT, as in
// FreeSWITCH. A phone whose contact names a private address it cannot be
// reached at (behind NAT) gets the INVITE at the address its REGISTER came
// from; a phone whose contact has the IP it registers from but another
// port (it sends from one port and listens on another, like the Kamailio
// anchor's SIPp callees) gets it at its contact.
func TestCallNATAndContactPort(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	// Behind NAT: contact 192.168.77.7:5060, REGISTER from 127.0.0.1:PORT.
	natted := &Phone{t: t, s: s, Ext: "2002", Port: FreeUDPPort(t), dir: t.TempDir()}
	r := SIPp(t, s.Addr, "call-register-contact.xml", 1, "-inf", CSV(t, "SEQUENTIAL", AuthRow("2002", "secret-2002")),
		"-p", strconv.Itoa(natted.Port), "-key", "contact_hostport", "192.168.77.7:5060")
	if r.Code != 0 {
		t.Fatalf("register behind NAT (%d):\n%s", r.Code, r.Output)
	}
	natted.Start("call-phone-answer.xml")
	r = SIPp(t, s.Addr, "call-uac.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")), "-d", "200")
	if r.Code != 0 {
		t.Fatalf("call to the phone behind NAT failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	natted.MustSucceed(10 * time.Second)
	c := waitCall(t, s, "the NAT call", func(c CallRecord) bool { return c.Cause == "NORMAL_CLEARING" && c.To == "2002" })
	if c.Branches[0].Destination != "127.0.0.1:"+strconv.Itoa(natted.Port) {
		t.Fatalf("INVITE to the phone behind NAT went to %s, want its source 127.0.0.1:%d", c.Branches[0].Destination, natted.Port)
	}

	// Contact on the same IP, another port: register from port A, listen on B.
	listener := &Phone{t: t, s: s, Ext: "2003", Port: FreeUDPPort(t), dir: t.TempDir()}
	r = SIPp(t, s.Addr, "call-register-contact.xml", 1, "-inf", CSV(t, "SEQUENTIAL", AuthRow("2003", "secret-2003")),
		"-key", "contact_hostport", "127.0.0.1:"+strconv.Itoa(listener.Port))
	if r.Code != 0 {
		t.Fatalf("register with another contact port (%d):\n%s", r.Code, r.Output)
	}
	listener.Start("call-phone-answer.xml")
	r = SIPp(t, s.Addr, "call-uac.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2003")), "-d", "200")
	if r.Code != 0 {
		t.Fatalf("call to the contact port failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	listener.MustSucceed(10 * time.Second)
}
