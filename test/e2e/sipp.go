package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// SIPpResult is the outcome of one SIPp run.
type SIPpResult struct {
	Code   int    // SIPp exit code: 0 all calls succeeded, 1 some failed
	Output string // screen + errors
	// Messages is SIPp's whole -trace_msg log: every message sent and
	// received, each after a "----...----" separator line.
	Messages string
}

// SIPp runs `sipp ADDR -sf scenario ...` bound to 127.0.0.1 on a free port,
// bounded by -m calls and a timeout, and returns its exit status. It runs
// with -nr (no UDP retransmissions): loopback loses nothing, and on a
// loaded machine an answer slower than the scenarios' 500 ms retrans
// timer would otherwise be asked for twice, the second answer arriving
// as an unexpected message (a failed call) or an extra message in an
// exact exchange. (TestRegisterRetransmission tests retransmissions with
// its own client.) Extra
// arguments are appended (e.g. -inf users.csv, -s 2002, -t t1).
// The scenario path is relative to test/e2e/testdata/sipp when not absolute.
func SIPp(t testing.TB, target, scenario string, calls int, extra ...string) SIPpResult {
	t.Helper()
	Need(t, "sipp")
	if !filepath.IsAbs(scenario) {
		abs, err := filepath.Abs(filepath.Join("testdata", "sipp", scenario))
		if err != nil {
			t.Fatal(err)
		}
		scenario = abs
	}
	// The local port is free for UDP and TCP (-t t1 binds TCP) when
	// chosen; another process can still take it before SIPp binds it (an
	// outgoing connection's ephemeral port), so a run that could not bind
	// its socket, and so sent nothing, is started again on another port.
	var (
		dir, errFile string
		out          []byte
		code         int
	)
	for attempt := 0; ; attempt++ {
		dir = t.TempDir()
		errFile = filepath.Join(dir, "errors.log")
		args := []string{target, "-sf", scenario, "-m", fmt.Sprint(calls), "-i", "127.0.0.1",
			"-p", fmt.Sprint(freePorts(t, 1, "udp", "tcp")), "-nostdin", "-nr", "-timeout", "30", "-timeout_error", "-trace_err",
			"-error_file", errFile, "-trace_msg", "-message_file", filepath.Join(dir, "messages.log")}
		args = append(args, extra...)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, "sipp", args...)
		cmd.Dir = dir
		out, _ = cmd.CombinedOutput()
		cancel()
		code = cmd.ProcessState.ExitCode()
		if attempt < 2 && bytes.Contains(out, []byte("Unable to bind main socket")) {
			continue
		}
		break
	}
	errs, _ := os.ReadFile(errFile)
	msgs, _ := os.ReadFile(filepath.Join(dir, "messages.log"))
	return SIPpResult{Code: code, Output: string(out) + "\n--- errors ---\n" + string(errs) + "\n--- messages ---\n" + tail(string(msgs), 6000),
		Messages: string(msgs)}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// CSV writes a SIPp injection file with the given rows (fields joined by ';').
func CSV(t testing.TB, mode string, rows ...[]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(mode + "\n")
	for _, r := range rows {
		b.WriteString(strings.Join(r, ";") + "\n")
	}
	p := filepath.Join(t.TempDir(), "users.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// AuthRow is a CSV row: user;password;[authentication ...] (SIPp 3.6 cannot
// expand fields inside [authentication], so the whole keyword is a field).
func AuthRow(user, password string, more ...string) []string {
	return append([]string{user, password, fmt.Sprintf("[authentication username=%s password=%s]", user, password)}, more...)
}
