package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/switchboard-pbx/switchboard/internal/regload"
)

// The TLS and WebSocket benchmarks of bench/README.md ("TLS and
// WebSocket"). They load the machine for tens of seconds, so they run only
// with SWITCHBOARD_BENCH=1:
//
//	SWITCHBOARD_BENCH=1 go test -count=1 -v -run 'TestBenchWSS|TestBenchRegisterTLS' ./test/e2e/
//
// Everything goes to 127.0.0.1; every loop is bounded in count and time.

func needBench(t *testing.T) {
	t.Helper()
	if os.Getenv("SWITCHBOARD_BENCH") != "1" {
		t.Skip("benchmark: set SWITCHBOARD_BENCH=1 to run")
	}
}

// benchServer imports n extensions (first..first+n-1, password pw<N>,
// as digest hashes for realm 127.0.0.1) and starts a server with TLS, WSS
// and no per-address connection cap (loopback is trusted by default).
func benchServer(t *testing.T, first, n int, extra ...string) *Server {
	t.Helper()
	data := t.TempDir()
	var b strings.Builder
	b.WriteString("extension,domain,ha1_md5,ha1_sha256\n")
	for i := first; i < first+n; i++ {
		a1 := fmt.Sprintf("%d:127.0.0.1:pw%d", i, i)
		sum := sha256.Sum256([]byte(a1))
		fmt.Fprintf(&b, "%d,127.0.0.1,%s,%s\n", i, md5Hex(a1), hex.EncodeToString(sum[:]))
	}
	csv := filepath.Join(t.TempDir(), "exts.csv")
	if err := os.WriteFile(csv, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := RunCLI(t, data, "", "domain", "add", "127.0.0.1", "--data", data); code != 0 {
		t.Fatalf("domain add: %s", stderr)
	}
	if _, stderr, code := RunCLI(t, data, "", "ext", "import", csv, "--data", data); code != 0 {
		t.Fatalf("ext import: %s", stderr)
	}
	return Start(t, data, append([]string{"--tcp-max-per-ip", "0", "--rate-limit", "0", "--qualify-interval", "0",
		"--tcp-idle-timeout", "60s"}, extra...)...)
}

var rssRE = regexp.MustCompile(`VmRSS:\s+(\d+) kB`)

// rssKiB is the server process's resident memory.
func (s *Server) rssKiB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	m := rssRE.FindSubmatch(b)
	if m == nil {
		t.Fatal("no VmRSS")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

var pssRE = regexp.MustCompile(`(?m)^Pss:\s+(\d+) kB`)

// pssKiB is the server process's proportional set size (smaps_rollup), 0
// when the kernel does not report it.
func (s *Server) pssKiB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	m := pssRE.FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

var memStatRE = regexp.MustCompile(`(?m)^# (HeapAlloc|HeapInuse|HeapIdle|HeapReleased|Stack|NextGC|Sys|NumGC) = (\d+)`)

// goMem reads the server's runtime.MemStats from its pprof listener (the
// heap profile's debug=1 text, without forcing a collection).
func goMem(pprofAddr string) (map[string]int, error) {
	b, err := exec.Command("curl", "-sf", "http://"+pprofAddr+"/debug/pprof/heap?debug=1").Output()
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, m := range memStatRE.FindAllSubmatch(b, -1) {
		out[string(m[1])], _ = strconv.Atoi(string(m[2]))
	}
	return out, nil
}

// streamRegister sends REGISTER, answers the 401 and waits for the 200 on
// one connection (send/recv frame one SIP message each).
func streamRegister(send func(string) error, recv func() (string, error), proto, local string, user int, seq *int) error {
	reg := func(cseq int, auth string) string {
		if auth != "" {
			auth = "Authorization: " + auth + "\r\n"
		}
		*seq++
		return fmt.Sprintf("REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/%s %s;rport;branch=z9hG4bK-b%d-%d\r\nMax-Forwards: 70\r\n"+
			"From: <sip:%d@127.0.0.1>;tag=b%d\r\nTo: <sip:%d@127.0.0.1>\r\nCall-ID: bench-%d-%s\r\nCSeq: %d REGISTER\r\n"+
			"Contact: <sip:%d@%s;transport=%s>\r\nExpires: 3600\r\nUser-Agent: bench\r\n%sContent-Length: 0\r\n\r\n",
			proto, local, user, *seq, user, user, user, user, local, cseq, user, local, strings.ToLower(proto), auth)
	}
	final := func() (string, error) {
		for {
			m, err := recv()
			if err != nil {
				return "", err
			}
			if strings.HasPrefix(m, "SIP/2.0 1") {
				continue
			}
			return m, nil
		}
	}
	if err := send(reg(1, "")); err != nil {
		return err
	}
	r, err := final()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(r, "SIP/2.0 401") {
		return fmt.Errorf("want 401, got %.40q", r)
	}
	nonce, realm := rawNonceRE.FindStringSubmatch(r)[1], rawRealmRE.FindStringSubmatch(r)[1]
	u := strconv.Itoa(user)
	if err := send(reg(2, digestAnswer(u, realm, "pw"+u, nonce, "sip:127.0.0.1", "auth", "00000001"))); err != nil {
		return err
	}
	if r, err = final(); err != nil {
		return err
	}
	if !strings.HasPrefix(r, "SIP/2.0 200") {
		return fmt.Errorf("want 200, got %.40q", r)
	}
	return nil
}

// TestBenchWSSIdleMemory opens 10,000 WSS connections (TLS 1.3 full
// handshakes, WebSocket upgrade with sip), registers one extension on
// each and holds them idle; it reports the handshake rate and the server's
// resident memory per idle registered connection (target < 20 KiB).
//
// Serial: a measurement: thousands of WSS handshakes, and the server's
// memory with them.
func TestBenchWSSIdleMemory(t *testing.T) {
	needBench(t)
	const first = 100000
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("SWITCHBOARD_BENCH_N")); err == nil && v > 0 && v <= 10000 {
		n = v
	}
	var extra []string
	pprofAddr := os.Getenv("SWITCHBOARD_BENCH_PPROF") // e.g. 127.0.0.1:6061: the heap profile is saved at the end
	if pprofAddr != "" {
		extra = append(extra, "--pprof", pprofAddr)
	}
	s := benchServer(t, first, n, extra...)
	addr := s.ListenerAddr("wss")
	ccfg := s.ClientTLS(t)
	time.Sleep(2 * time.Second) // let start-up garbage settle
	before, pssBefore := s.rssKiB(t), s.pssKiB(t)

	conns := make([]net.Conn, n)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	var next, fails atomic.Int64
	var firstErr atomic.Value
	dial := func(i int) (net.Conn, error) {
		d := ws.Dialer{Protocols: []string{"sip"}, TLSConfig: ccfg, Timeout: 10 * time.Second}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, _, err := d.Dial(ctx, "wss://"+addr+"/")
		return c, err
	}
	// Phase 1: handshakes only (TLS + upgrade), 8 dialers.
	start := time.Now()
	deadline := start.Add(5 * time.Minute)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := dial(i)
				if err != nil {
					fails.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	hsDur := time.Since(start)
	if f := fails.Load(); f > 0 {
		t.Fatalf("%d of %d WSS handshakes failed (first: %v)", f, n, firstErr.Load())
	}
	// Phase 2: one REGISTER (with digest) per connection.
	next.Store(0)
	start = time.Now()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := 0
			for time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c := conns[i]
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				err := streamRegister(func(m string) error { return wsutil.WriteClientText(c, []byte(m)) },
					func() (string, error) { b, err := wsutil.ReadServerText(c); return string(b), err },
					"WSS", "k"+strconv.Itoa(i)+".invalid", first+i, &seq)
				_ = c.SetDeadline(time.Time{})
				if err != nil {
					fails.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	regDur := time.Since(start)
	if f := fails.Load(); f > 0 {
		t.Fatalf("%d of %d REGISTERs over WSS failed (first: %v)", f, n, firstErr.Load())
	}
	time.Sleep(3 * time.Second) // idle
	after, pssAfter := s.rssKiB(t), s.pssKiB(t)
	var st struct {
		Registrations int `json:"registrations"`
	}
	s.JSON(&st, "status")
	t.Logf("%d WSS connections: handshakes (TLS 1.3 + upgrade) %.1f s = %.0f/s; REGISTER+401+REGISTER+200 %.1f s = %.0f/s; "+
		"server RSS %d -> %d KiB: %.1f KiB per idle registered WSS connection; registrations %d",
		n, hsDur.Seconds(), float64(n)/hsDur.Seconds(), regDur.Seconds(), float64(n)/regDur.Seconds(),
		before, after, float64(after-before)/float64(n), st.Registrations)
	t.Logf("server PSS %d -> %d KiB: %.1f KiB per connection", pssBefore, pssAfter, float64(pssAfter-pssBefore)/float64(n))
	if pprofAddr != "" {
		if m, err := goMem(pprofAddr); err != nil {
			t.Logf("runtime.MemStats: %v", err)
		} else {
			per := func(k string) float64 { return float64(m[k]) / 1024 / float64(n) }
			t.Logf("Go runtime after the idle wait, per connection: heap allocated %.1f KiB (live + not yet collected), heap in use %.1f KiB, "+
				"heap idle not released %.1f KiB, stacks %.1f KiB, next GC at %.1f KiB; %d GCs; Sys %d MiB",
				per("HeapAlloc"), per("HeapInuse"), float64(m["HeapIdle"]-m["HeapReleased"])/1024/float64(n), per("Stack"), per("NextGC"),
				m["NumGC"], m["Sys"]>>20)
		}
		if b, err := exec.Command("curl", "-sf", "http://"+pprofAddr+"/debug/pprof/goroutine?debug=1").Output(); err == nil {
			if i := bytes.IndexByte(b, '\n'); i > 0 {
				t.Logf("%s", b[:i])
			}
			_ = os.WriteFile(filepath.Join(os.TempDir(), "switchboard-wss-goroutines.txt"), b, 0o600)
		}
		out := filepath.Join(os.TempDir(), "switchboard-wss-heap.pb.gz")
		if b, err := exec.Command("curl", "-sf", "-o", out, "http://"+pprofAddr+"/debug/pprof/heap?gc=1").CombinedOutput(); err != nil {
			t.Logf("heap profile: %v %s", err, b)
		} else {
			t.Logf("heap profile in %s (go tool pprof -top -inuse_space %s)", out, out)
			if m, err := goMem(pprofAddr); err == nil { // the profile's gc=1 collected
				t.Logf("after a forced collection, per connection: live heap %.1f KiB, stacks %.1f KiB; server RSS %d KiB",
					float64(m["HeapAlloc"])/1024/float64(n), float64(m["Stack"])/1024/float64(n), s.rssKiB(t))
			}
		}
	}
	if st.Registrations < n {
		t.Errorf("registrations %d, want %d", st.Registrations, n)
	}
}

// TestBenchRegisterTLS compares authenticated registrations per second
// over TLS (persistent connections, one per client, as phones keep them)
// with UDP, for 10 s each, 32 clients, new registration each time, with
// the load client of bench/tls.sh (package regload), which also runs it
// against Kamailio's TLS module. (Debian's SIPp 3.6.1 is built without
// OpenSSL: `-t l1` is refused, so this Go client drives both transports
// alike.)
//
// Serial: a measurement: the REGISTER rate over TLS and WSS.
func TestBenchRegisterTLS(t *testing.T) {
	needBench(t)
	const clients, first, per = 32, 200000, 2000
	s := benchServer(t, first, clients*per)
	run := func(transport, addr string) regload.Result {
		r, err := regload.Run(context.Background(), regload.Config{Transport: transport, Addr: addr, TLS: s.ClientTLS(t),
			Domain: "127.0.0.1", Clients: clients, First: first, Users: clients * per, Duration: 10 * time.Second,
			Timeout: 2 * time.Second, Password: func(u int) string { return "pw" + strconv.Itoa(u) }})
		if err != nil {
			t.Fatal(err)
		}
		if transport == "TLS" && r.Failed > 0 {
			t.Errorf("%d REGISTERs over TLS failed (first: %s)", r.Failed, r.FirstError)
		}
		return r
	}
	udp := run("UDP", s.Addr)
	tl := run("TLS", s.ListenerAddr("tls"))
	t.Logf("authenticated REGISTERs (REGISTER, 401, REGISTER, 200), %d clients, 10 s: UDP %.0f/s, TLS %.0f/s (%d and %d; UDP lost %d)",
		clients, udp.PerSecond(), tl.PerSecond(), udp.OK, tl.OK, udp.Failed)
}
