package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// traceProc is a running `switchboard trace`.
type traceProc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer // stdout; guarded by mu
	errOut bytes.Buffer // stderr; guarded by mu
	done   chan struct{}
	code   int
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// startTrace runs `switchboard trace ARGS --data DATA` and returns once it
// captures (it printed "tracing SIP").
func startTrace(t *testing.T, s *Server, args ...string) *traceProc {
	t.Helper()
	p := &traceProc{done: make(chan struct{})}
	p.cmd = exec.Command(Binary(t), append(append([]string{"trace"}, args...), "--data", s.Data)...)
	p.cmd.Env = ChildEnv("SWITCHBOARD_DATA=")
	p.cmd.Stdout = lockedWriter{&p.mu, &p.out}
	p.cmd.Stderr = lockedWriter{&p.mu, &p.errOut}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		p.code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			p.code = ee.ExitCode()
		} else if err != nil {
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	WaitFor(t, 20*time.Second, "trace to start", func() bool {
		select {
		case <-p.done:
			t.Fatalf("trace %v ended (exit %d) before it started:\n%s%s", args, p.code, p.stdout(), p.stderr())
		default:
		}
		return strings.Contains(p.stderr(), "tracing SIP")
	})
	return p
}

func (p *traceProc) stdout() string { p.mu.Lock(); defer p.mu.Unlock(); return p.out.String() }
func (p *traceProc) stderr() string { p.mu.Lock(); defer p.mu.Unlock(); return p.errOut.String() }

// wait waits for the trace to end by itself and returns its exit code.
func (p *traceProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		t.Fatalf("trace still runs after %s:\n%s", timeout, p.stderr())
		return 0
	}
}

// traceMsg is one line of `switchboard trace --json`.
type traceMsg struct {
	Time      time.Time `json:"time"`
	Direction string    `json:"direction"`
	Transport string    `json:"transport"`
	Local     string    `json:"local"`
	Remote    string    `json:"remote"`
	FirstLine string    `json:"first_line"`
	CallID    string    `json:"call_id"`
	Method    string    `json:"method"`
	Message   string    `json:"message"`
}

func traceMsgs(t *testing.T, out string) []traceMsg {
	t.Helper()
	var ms []traceMsg
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m traceMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("trace --json line %q: %v", sc.Text(), err)
		}
		ms = append(ms, m)
	}
	return ms
}

// summary is "in REGISTER sip:..." / "out SIP/2.0 401 ..." per message.
func summary(ms []traceMsg) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Direction+" "+m.FirstLine)
	}
	return out
}

// registerExchange is what a trace shows of reg-ok.xml against s.
func registerExchange(s *Server) []string {
	return []string{
		"in REGISTER sip:" + s.Addr + " SIP/2.0",
		"out SIP/2.0 401 Unauthorized",
		"in REGISTER sip:" + s.Addr + " SIP/2.0",
		"out SIP/2.0 200 OK",
	}
}

// TestTrace: `switchboard trace --ext 2001` shows a real SIPp REGISTER of
// 2001 while it runs (the REGISTER in, the 401 out, the REGISTER with
// credentials in, the 200 out) with transport, addresses, Call-ID and
// CSeq method; it ends cleanly on SIGTERM; its pcap opens in tshark with
// SIP decoded. The REGISTER of 2002 shows in no --ext 2001 trace, a trace
// whose filter matches nothing prints nothing and ends after --duration,
// and --method REGISTER also shows the responses. Afterwards the doctor
// shows the buffered exchange as evidence (and none before any trace).
func TestTrace(t *testing.T) {
	t.Parallel()
	Need(t, "sipp", "tshark")
	s := Start(t, "")
	s.AddExt("2001", "trace-pass-2001")
	s.AddExt("2002", "trace-pass-2002")
	pcap := filepath.Join(t.TempDir(), "sip.pcap")
	wantRegister := registerExchange(s)
	// Nobody traced yet: the doctor has no SIP evidence (capture was off).
	reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "trace-pass-2001", Expires: 3600})
	if doc, _, _ := s.TryCLI("doctor", "2001"); strings.Contains(doc, "Last SIP messages") {
		t.Fatalf("doctor shows SIP messages nobody traced:\n%s", doc)
	}

	js := startTrace(t, s, "--ext", "2001", "--json", "--pcap", pcap, "--duration", "60s")
	text := startTrace(t, s, "--ext", "2001", "--duration", "60s")
	byMethod := startTrace(t, s, "--method", "register", "--json", "--duration", "60s")
	none := startTrace(t, s, "--ext", "2999", "--duration", "2s")

	port := FreeUDPPort(t)
	reg(t, s, "reg-ok.xml", regCall{User: "2002", Password: "trace-pass-2002", Expires: 3600})
	reg(t, s, "reg-ok.xml", regCall{User: "2001", Password: "trace-pass-2001", Expires: 3600, Port: port})

	// The trace shows the exchange while it runs.
	WaitFor(t, 10*time.Second, "the REGISTER exchange in the trace", func() bool {
		return len(traceMsgs(t, js.stdout())) >= 4 && strings.Count(text.stdout(), "\n") >= 4
	})
	if err := js.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := js.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("trace ended by SIGTERM: exit %d\n%s", code, js.stderr())
	}
	ms := traceMsgs(t, js.stdout())
	if got := summary(ms); strings.Join(got, "\n") != strings.Join(wantRegister, "\n") {
		t.Fatalf("trace --ext 2001:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantRegister, "\n"))
	}
	remote := "127.0.0.1:" + strconv.Itoa(port)
	for _, m := range ms {
		if m.Transport != "UDP" || m.Local != s.Addr || m.Remote != remote || m.Method != "REGISTER" ||
			m.CallID == "" || m.CallID != ms[0].CallID || m.Time.IsZero() || !strings.HasPrefix(m.Message, m.FirstLine+"\r\n") {
			t.Errorf("message %+v: want UDP %s<->%s, CSeq REGISTER, the Call-ID of the first", m, s.Addr, remote)
		}
	}

	// The text view: one line per message, arrows, no 2002.
	if err := text.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := text.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("trace ended by SIGINT: exit %d\n%s", code, text.stderr())
	}
	lines := strings.Split(strings.TrimSpace(text.stdout()), "\n")
	if len(lines) != 4 || strings.Contains(text.stdout(), "2002") {
		t.Fatalf("trace --ext 2001 text:\n%s", text.stdout())
	}
	for i, want := range []string{"<-- UDP " + remote, "--> UDP " + remote, "<-- UDP " + remote, "--> UDP " + remote} {
		if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], strings.TrimPrefix(strings.TrimPrefix(wantRegister[i], "in "), "out ")) {
			t.Errorf("line %d %q: want %q and %q", i, lines[i], want, wantRegister[i])
		}
	}

	// --method REGISTER: both registrations, responses included.
	WaitFor(t, 10*time.Second, "both exchanges in the --method trace", func() bool { return len(traceMsgs(t, byMethod.stdout())) >= 8 })
	_ = byMethod.cmd.Process.Signal(syscall.SIGTERM)
	byMethod.wait(t, 10*time.Second)
	if got := summary(traceMsgs(t, byMethod.stdout())); strings.Join(got, "\n") != strings.Join(append(wantRegister, wantRegister...), "\n") {
		t.Errorf("trace --method register:\n%s", strings.Join(got, "\n"))
	}

	// A filter that matches nothing prints nothing and ends by itself.
	if code := none.wait(t, 20*time.Second); code != 0 || none.stdout() != "" {
		t.Errorf("trace --ext 2999: exit %d, printed %q", code, none.stdout())
	}

	// The pcap opens in tshark with SIP decoded.
	if fi, err := os.Stat(pcap); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pcap file: %v %v", fi, err)
	}
	out, err := exec.Command("tshark", "-r", pcap, "-d", "udp.port=="+s.Port+",sip", "-Y", "sip",
		"-T", "fields", "-e", "sip.Method", "-e", "sip.Status-Code").Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	if got := strings.Fields(string(out)); strings.Join(got, " ") != "REGISTER 401 REGISTER 200" {
		t.Fatalf("tshark decodes %q, want REGISTER 401 REGISTER 200", got)
	}
	// The doctor shows the buffered exchange as evidence.
	doc, _, _ := s.TryCLI("doctor", "2001")
	if !strings.Contains(doc, "Last SIP messages with this phone") || !strings.Contains(doc, "SIP/2.0 401 Unauthorized") ||
		!strings.Contains(doc, "<-- UDP "+remote+" ") || !strings.Contains(doc, "--> UDP "+remote+" ") {
		t.Errorf("doctor 2001 after a trace shows no SIP evidence:\n%s", doc)
	}
	var rep struct {
		LastSIP []traceMsg `json:"last_sip"`
	}
	docJSON, _, _ := s.TryCLI("doctor", "2001", "--json")
	if err := json.Unmarshal([]byte(docJSON), &rep); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, docJSON)
	}
	if len(rep.LastSIP) < 4 || rep.LastSIP[len(rep.LastSIP)-1].FirstLine != "SIP/2.0 200 OK" {
		t.Errorf("doctor --json last_sip: %+v", rep.LastSIP)
	}

	// An existing pcap file is not overwritten without --force.
	_, errOut, code := s.TryCLI("trace", "--pcap", pcap, "--duration", "1s")
	if code != 1 || !strings.Contains(errOut, "--force") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("trace onto an existing pcap: exit %d, %q", code, errOut)
	}
}

// TestTraceNotRunning: trace without a running server says so in one line
// and exits 1.
func TestTraceNotRunning(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	_, errOut, code := RunCLI(t, data, "", "trace", "--ext", "2001")
	if code != 1 || !strings.Contains(errOut, "not running") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("trace without a server: exit %d, stderr %q", code, errOut)
	}
}
