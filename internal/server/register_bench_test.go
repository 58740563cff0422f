package server

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/digest"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

// benchUsers is how many extensions the REGISTER benchmarks register in
// turn (each iteration a different one, as SIPp's bench does).
const benchUsers = 1000

// startBenchServer runs a real server (SQLite store, guard, registrar,
// group-committed location table, sipgo stack) on 127.0.0.1:0 with
// benchUsers extensions 1000.. (password pw<N>) and returns its UDP
// address; the server stops when the benchmark ends.
func startBenchServer(b *testing.B) *net.UDPAddr {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := b.TempDir()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.EnsureDomain(ctx, "127.0.0.1"); err != nil {
		b.Fatal(err)
	}
	for i := range benchUsers {
		n := strconv.Itoa(1000 + i)
		if _, err := db.AddExtension(ctx, store.Extension{Domain: "127.0.0.1", Number: n, Enabled: true,
			HA1MD5:    digest.HA1(digest.MD5, n, "127.0.0.1", "pw"+n),
			HA1SHA256: digest.HA1(digest.SHA256, n, "127.0.0.1", "pw"+n), MaxRegistrations: 5}); err != nil {
			b.Fatal(err)
		}
	}
	db.Close()
	cfg := config.Default()
	cfg.DataDir, cfg.SIP, cfg.Domain, cfg.QualifyInterval = dir, "127.0.0.1:0", "127.0.0.1", 0
	cfg.HTTP = "" // no console: another run may hold its port, and it is not on the REGISTER path
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(ctx, cfg, log)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := s.Stack.WaitServing(wctx); err != nil {
		b.Fatal(err)
	}
	addr, err := net.ResolveUDPAddr("udp", s.Stack.Listeners[0].Addr)
	if err != nil {
		b.Fatal(err)
	}
	return addr
}

// cpuMeter reports the process's CPU time (user and system, server and
// phones together: they share the process) per op as cpu-µs/op, a figure
// that, unlike ns/op, does not grow when other processes take the cores.
func cpuMeter(b *testing.B) func() {
	start := cpuTime()
	return func() {
		b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/op")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// regClient is one UDP phone registering the bench's users.
type regClient struct {
	b    *testing.B
	c    *net.UDPConn
	srv  *net.UDPAddr
	buf  []byte
	seq  int
	self string
}

func newRegClient(b *testing.B, srv *net.UDPAddr) *regClient {
	c, err := net.DialUDP("udp", nil, srv)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return &regClient{b: b, c: c, srv: srv, buf: make([]byte, 65536), self: c.LocalAddr().String()}
}

func (rc *regClient) request(user, callID string, cseq int, authz string) string {
	rc.seq++
	var sb strings.Builder
	sb.WriteString("REGISTER sip:" + rc.srv.String() + " SIP/2.0\r\n")
	sb.WriteString("Via: SIP/2.0/UDP " + rc.self + ";branch=z9hG4bK-b" + strconv.Itoa(rc.seq) + ";rport\r\n")
	sb.WriteString("From: <sip:" + user + "@127.0.0.1>;tag=t" + callID + "\r\n")
	sb.WriteString("To: <sip:" + user + "@127.0.0.1>\r\n")
	sb.WriteString("Call-ID: " + callID + "\r\n")
	sb.WriteString("CSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n")
	sb.WriteString("Contact: <sip:" + user + "@" + rc.self + ">\r\n")
	if authz != "" {
		sb.WriteString("Authorization: " + authz + "\r\n")
	}
	sb.WriteString("Max-Forwards: 70\r\nExpires: 3600\r\nUser-Agent: bench\r\nContent-Length: 0\r\n\r\n")
	return sb.String()
}

// roundTrip sends msg and returns the status code and the answer.
func (rc *regClient) roundTrip(msg string) (int, string) {
	if _, err := rc.c.Write([]byte(msg)); err != nil {
		rc.b.Fatal(err)
	}
	_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := rc.c.Read(rc.buf)
	if err != nil {
		rc.b.Fatal(err)
	}
	ans := string(rc.buf[:n])
	if len(ans) < 12 {
		rc.b.Fatalf("short answer %q", ans)
	}
	code, _ := strconv.Atoi(ans[8:11])
	return code, ans
}

// param returns name="value" (or name=value) from a challenge.
func param(ch, name string) string {
	i := strings.Index(ch, name+"=")
	if i < 0 {
		return ""
	}
	v := ch[i+len(name)+1:]
	if strings.HasPrefix(v, `"`) {
		v = v[1:]
		return v[:strings.IndexByte(v, '"')]
	}
	if j := strings.IndexAny(v, ", \r"); j >= 0 {
		v = v[:j]
	}
	return v
}

// authorize answers the 401's MD5 challenge (or its first) for user.
func authorize(ans, user, uri string) string {
	var ch string
	for _, line := range strings.Split(ans, "\r\n") {
		if v, ok := strings.CutPrefix(line, "WWW-Authenticate: "); ok {
			if ch == "" || strings.Contains(v, "MD5") {
				ch = v
			}
		}
	}
	realm, nonce, alg := param(ch, "realm"), param(ch, "nonce"), param(ch, "algorithm")
	var h func() hash.Hash = md5.New
	if strings.HasPrefix(alg, "SHA-256") {
		h = sha256.New
	}
	sum := func(s string) string { x := h(); x.Write([]byte(s)); return hex.EncodeToString(x.Sum(nil)) }
	ha1 := sum(user + ":" + realm + ":pw" + user)
	ha2 := sum("REGISTER:" + uri)
	resp := sum(ha1 + ":" + nonce + ":00000001:c0ffee:auth:" + ha2)
	return `Digest username="` + user + `", realm="` + realm + `", nonce="` + nonce + `", uri="` + uri +
		`", response="` + resp + `", algorithm=` + alg + `, qop=auth, nc=00000001, cnonce="c0ffee"`
}

// BenchmarkRegisterFlow measures one complete authenticated registration
// through the real server over loopback UDP: REGISTER, 401, REGISTER with
// credentials, 200 (its binding committed to SQLite first), a different
// user and Call-ID each time. Per op: two requests, two answers.
func BenchmarkRegisterFlow(b *testing.B) {
	srv := startBenchServer(b)
	rc := newRegClient(b, srv)
	uri := "sip:" + srv.String()
	b.ReportAllocs()
	b.ResetTimer()
	defer cpuMeter(b)()
	for i := range b.N {
		user := strconv.Itoa(1000 + i%benchUsers)
		callID := "bench-" + strconv.Itoa(i)
		code, ans := rc.roundTrip(rc.request(user, callID, 1, ""))
		if code != 401 {
			b.Fatalf("first REGISTER: %d\n%s", code, ans)
		}
		code, ans = rc.roundTrip(rc.request(user, callID, 2, authorize(ans, user, uri)))
		if code != 200 {
			b.Fatalf("authenticated REGISTER: %d\n%s", code, ans)
		}
	}
}

// BenchmarkRegisterRefresh measures a refresh that changes nothing but
// the binding's expiry: the same phone (user, Call-ID, contact) registers
// again with the next CSeq, REGISTER/401/REGISTER/200 as most phones do.
func BenchmarkRegisterRefresh(b *testing.B) {
	srv := startBenchServer(b)
	rc := newRegClient(b, srv)
	uri := "sip:" + srv.String()
	for i := range benchUsers { // every user registered once
		user := strconv.Itoa(1000 + i)
		_, ans := rc.roundTrip(rc.request(user, "refresh-"+user, 1, ""))
		if code, ans := rc.roundTrip(rc.request(user, "refresh-"+user, 2, authorize(ans, user, uri))); code != 200 {
			b.Fatalf("register %s: %d\n%s", user, code, ans)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	defer cpuMeter(b)()
	for i := range b.N {
		user := strconv.Itoa(1000 + i%benchUsers)
		cseq := 3 + 2*(i/benchUsers)
		code, ans := rc.roundTrip(rc.request(user, "refresh-"+user, cseq, ""))
		if code != 401 {
			b.Fatalf("refresh: %d\n%s", code, ans)
		}
		code, ans = rc.roundTrip(rc.request(user, "refresh-"+user, cseq+1, authorize(ans, user, uri)))
		if code != 200 {
			b.Fatalf("authenticated refresh: %d\n%s", code, ans)
		}
	}
}

// BenchmarkRegisterFlowParallel is BenchmarkRegisterFlow from 64 phones at
// once (each its own socket), so that the commits are shared as under
// load: ns/op is the server's throughput, not one registration's latency.
func BenchmarkRegisterFlowParallel(b *testing.B) {
	srv := startBenchServer(b)
	uri := "sip:" + srv.String()
	var next, phones atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32) // 64 phones on 2 CPUs
	b.ResetTimer()
	defer cpuMeter(b)()
	b.RunParallel(func(pb *testing.PB) {
		// Each phone (socket) registers its own users, so that a user's
		// binding is replaced, not added to (MaxRegistrations).
		rc := newRegClient(b, srv)
		const perPhone = 15
		first := int(phones.Add(1)-1) * perPhone % benchUsers
		for j := 0; pb.Next(); j++ {
			i := next.Add(1)
			user := strconv.Itoa(1000 + (first+j%perPhone)%benchUsers)
			callID := "bench-p-" + strconv.FormatInt(i, 10)
			code, ans := rc.roundTrip(rc.request(user, callID, 1, ""))
			if code != 401 {
				b.Errorf("first REGISTER: %d\n%s", code, ans)
				return
			}
			code, ans = rc.roundTrip(rc.request(user, callID, 2, authorize(ans, user, uri)))
			if code != 200 {
				b.Errorf("authenticated REGISTER: %d\n%s", code, ans)
				return
			}
		}
	})
}
