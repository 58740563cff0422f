package guard_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/server"
)

// Run a short pass with:
//
//	go test -run '^$' -fuzz '^FuzzServer$' -fuzztime 20s ./internal/guard/

// logSink collects the server's log; safe for concurrent use.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// inProcess is a real switchboard server (database, registrar, proxy,
// filter) running in this process on 127.0.0.1:0.
type inProcess struct {
	udp string
	log *logSink
	seq atomic.Int64
}

func startInProcess(tb testing.TB) *inProcess {
	tb.Helper()
	cfg := config.Default()
	cfg.DataDir = tb.TempDir()
	cfg.SIP = "127.0.0.1:0"
	cfg.Domain = "127.0.0.1"
	cfg.QualifyInterval = 0
	cfg.HTTP = "" // no console: tests run side by side
	sink := &logSink{}
	log := slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	return &inProcess{udp: srv.Stack.Listeners[0].Addr, log: sink}
}

// alive sends an OPTIONS and waits for its 200.
func (p *inProcess) alive(t *testing.T) {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := p.seq.Add(1)
	msg := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;rport;branch=z9hG4bK-alive-%d\r\nFrom: <sip:probe@127.0.0.1>;tag=%d\r\n"+
		"To: <sip:%s>\r\nCall-ID: alive-%d\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		p.udp, c.LocalAddr(), n, n, p.udp, n)
	dst, _ := net.ResolveUDPAddr("udp", p.udp)
	buf := make([]byte, 8192)
	for try := 0; try < 3; try++ {
		if _, err := c.WriteTo([]byte(msg), dst); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if k, _, err := c.ReadFrom(buf); err == nil && bytes.HasPrefix(buf[:k], []byte("SIP/2.0 200 ")) {
			return
		}
	}
	t.Fatalf("the server stopped answering OPTIONS; log:\n%s", p.log.String())
}

// FuzzServer sends arbitrary messages (seeded with REGISTERs, INVITEs and
// the RFC 4475 messages) to a real in-process server over UDP; after each,
// the server must still answer, and its log must show no panic and no
// sipgo parse error. (Not over TCP: a request whose connection closes
// before its answer makes sipgo connect to the Via host, DNS included,
// which tests must not do; the TCP framing is fuzzed by FuzzFilter.)
func FuzzServer(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "test", "e2e", "testdata", "rfc4475", "*.dat"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK1\r\nFrom: <sip:2001@127.0.0.1>;tag=1\r\n" +
			"To: <sip:2001@127.0.0.1>\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\nContact: <sip:2001@127.0.0.1:5999>;expires=60\r\n" +
			"Expires: 3600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK2\r\nFrom: <sip:2001@127.0.0.1>;tag=1\r\n" +
			"To: <sip:2001@127.0.0.1>\r\nCall-ID: r2\r\nCSeq: 2 REGISTER\r\nContact: *\r\nExpires: 0\r\n" +
			"Authorization: Digest username=\"2001\", realm=\"127.0.0.1\", nonce=\"abc\", uri=\"sip:127.0.0.1\", response=\"0123456789abcdef0123456789abcdef\"\r\n" +
			"Content-Length: 0\r\n\r\n",
		"INVITE sip:2002@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK3\r\nFrom: <sip:2001@127.0.0.1>;tag=1\r\n" +
			"To: <sip:2002@127.0.0.1>\r\nCall-ID: i1\r\nCSeq: 1 INVITE\r\nContact: <sip:2001@127.0.0.1:5999>\r\nMax-Forwards: 70\r\n" +
			"Proxy-Authorization: Digest username=\"2001\", realm=\"127.0.0.1\", nonce=\"x\", uri=\"sip:2002@127.0.0.1\", response=\"y\"\r\n" +
			"Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n",
		"BYE sip:2002@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK4\r\nFrom: <sip:2001@127.0.0.1>;tag=1\r\n" +
			"To: <sip:2002@127.0.0.1>;tag=2\r\nCall-ID: b1\r\nCSeq: 2 BYE\r\nRoute: <sip:127.0.0.1;lr;sb=x>\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	p := startInProcess(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("udp", p.udp)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(data)
		c.Close()
		p.alive(t)
		log := p.log.String()
		for _, bad := range []string{"panic", "failed to parse"} {
			if strings.Contains(log, bad) {
				t.Fatalf("server log shows %q after %q:\n%s", bad, data, log)
			}
		}
	})
}
