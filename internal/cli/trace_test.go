package cli

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/trace"
)

// TestTraceMistakes: trace's command-line mistakes and a missing server
// are one-line usage errors saying what to type; nothing is created.
func TestTraceMistakes(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "old.pcap")
	if err := os.WriteFile(existing, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"trace", "2001"}, "--ext 2001"},
		{[]string{"trace", "--ext", "20 01"}, ""},
		{[]string{"trace", "--ip", "192.0.2"}, "--ip 192.0.2.10"},
		{[]string{"trace", "--duration", "-5s"}, "--duration 30s"},
		{[]string{"trace", "--force"}, "--pcap"},
		{[]string{"trace", "--method", "IN VITE"}, "--method INVITE"},
		{[]string{"trace", "--ext", "2001"}, "switchboard serve --data"},
		{[]string{"trace", "--pcap", existing}, "switchboard serve"},
	} {
		_, err := run(t, dir, "", c.args...)
		wantUsage(t, c.args, err, c.want)
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep" {
		t.Fatal("an existing pcap file was touched")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("trace created files: %v", ents)
	}
}

// TestTraceLine: the one-line view is aligned (fixed columns), with the
// direction arrow and a Call-ID cut to 12 characters.
func TestTraceLine(t *testing.T) {
	at := time.Date(2026, 1, 15, 14, 2, 7, 113_000_000, time.Local)
	in := trace.Message{Time: at, Direction: trace.In, Transport: "UDP", Remote: netip.MustParseAddrPort("192.168.1.50:5060"),
		FirstLine: "REGISTER sip:pbx SIP/2.0", CallID: "8f1c2a90b3d4e5f6@host"}
	out := in
	out.Direction, out.FirstLine, out.Remote = trace.Out, "SIP/2.0 200 OK", netip.MustParseAddrPort("10.0.0.1:40000")
	a, b := traceLine(&in), traceLine(&out)
	if !strings.HasPrefix(a, "14:02:07.113 <-- UDP 192.168.1.50:5060 ") || !strings.HasPrefix(b, "14:02:07.113 --> UDP 10.0.0.1:40000 ") {
		t.Fatalf("lines:\n%s\n%s", a, b)
	}
	if !strings.HasSuffix(a, " 8f1c2a90b3d4") || len(a) != len(b) || strings.Index(a, "REGISTER") != strings.Index(b, "SIP/2.0 200") {
		t.Fatalf("not aligned:\n%s\n%s", a, b)
	}
}
