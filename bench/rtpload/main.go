// Command rtpload is the media relay benchmark's load tool (bench/media.sh):
// N concurrent G.711 calls, each two RTP streams of 160-byte PCMU payloads
// at 50 packets/s each way, through a relay or directly, over loopback. Each
// packet carries its stream, sequence number and send time, so the
// receiving side counts loss and one-way latency. Targets:
//
//   - switchboard: each call is set up through a running switchboard over
//     SIP/UDP (the callee registers its own socket; the caller INVITEs with
//     SDP, answers the 407, the callee answers 200 with SDP, ACK; BYE at the
//     end), and the parties send to the addresses in the SDP the server
//     rewrote (run the server with --media-relay always).
//   - rtpengine: the relay addresses come from rtpengine's ng protocol
//     (offer, answer; delete at the end).
//   - direct: the parties send to each other (the baseline: what the
//     relays add is measured against it).
//
// Loss counts every packet; latency only packets sent in the steady window
// (after -warmup), from the send call to the kernel's receive timestamp at
// the receiving socket (SO_TIMESTAMPNS), so this tool's own delay in
// reading is left out; send_lag_p99_ms and send_lag_max_ms say how far its
// senders fell behind their 20 ms schedule (large: the tool, not the
// relay, is short of CPU). With -pid, the relay process's CPU (utime+stime from /proc/PID/stat over
// the steady window, after -warmup) and its RSS/PSS before the calls and at
// the end of the window are reported. It prints one tab-separated line
// (-header: column names first) and a readable summary on stderr.
//
// Bounded: every party sends exactly duration/20ms packets and stops, the
// receivers stop -drain after the last send; setup and teardown answers
// have a -timeout. It sends only to loopback addresses (127.0.0.0/8, ::1):
// a relay that advertises any other address fails that call.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "rtpload:", err)
		os.Exit(1)
	}
}

type config struct {
	target           string
	calls            int
	duration, warmup time.Duration
	drain, timeout   time.Duration
	bind             netip.Addr
	sip, ng          netip.AddrPort
	domain           string
	callerFirst      int
	calleeFirst      int
	passwordPrefix   string
	pid              int
	concurrency      int
	label            string
	header           bool
	cpuProfile       string
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("rtpload", flag.ContinueOnError)
	fs.StringVar(&c.target, "target", "direct", "switchboard, rtpengine or direct")
	fs.IntVar(&c.calls, "calls", 10, "concurrent calls (1..5000)")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "how long each party sends (2s..60s)")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "start of the steady window (CPU, latency) after the first packets")
	fs.DurationVar(&c.drain, "drain", 500*time.Millisecond, "how long receivers wait after the last send")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "wait for each SIP or ng answer")
	bind := fs.String("bind", "127.0.0.1", "local address of every socket (loopback)")
	sip := fs.String("sip", "127.0.0.1:5070", "switchboard's SIP/UDP address (target switchboard)")
	ng := fs.String("ng", "127.0.0.1:2223", "rtpengine's ng control address (target rtpengine)")
	fs.StringVar(&c.domain, "domain", "127.0.0.1", "switchboard's SIP domain (and digest realm)")
	fs.IntVar(&c.callerFirst, "caller-first", 100000, "call i is made by extension caller-first+i")
	fs.IntVar(&c.calleeFirst, "callee-first", 101000, "call i goes to extension callee-first+i (registered by the tool)")
	fs.StringVar(&c.passwordPrefix, "password-prefix", "pw", "an extension's password is this prefix and its number")
	fs.IntVar(&c.pid, "pid", 0, "the relay's process id, for its CPU and memory (0: not measured)")
	fs.IntVar(&c.concurrency, "setup-concurrency", 32, "calls set up (and torn down) at a time")
	fs.StringVar(&c.label, "label", "", "first column of the result line (default: the target)")
	fs.BoolVar(&c.header, "header", false, "print the column names first")
	columnsOnly := fs.Bool("columns", false, "print the column names and exit")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write this tool's CPU profile to the file (to check the tool is not the bottleneck)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	if *columnsOnly {
		fmt.Println(columns)
		return c, flag.ErrHelp
	}
	switch c.target {
	case "switchboard", "rtpengine", "direct":
	default:
		return c, fmt.Errorf("-target %q: want switchboard, rtpengine or direct", c.target)
	}
	if c.calls < 1 || c.calls > 5000 {
		return c, fmt.Errorf("-calls %d: want 1..5000", c.calls)
	}
	if c.duration < 2*time.Second || c.duration > time.Minute {
		return c, fmt.Errorf("-duration %s: want 2s..60s", c.duration)
	}
	if c.warmup < 0 || c.warmup >= c.duration-time.Second {
		return c, fmt.Errorf("-warmup %s: want 0 up to a second less than -duration", c.warmup)
	}
	if c.drain < 0 || c.drain > 5*time.Second || c.timeout <= 0 || c.timeout > time.Minute {
		return c, fmt.Errorf("-drain (0..5s) or -timeout (up to 1m) out of range")
	}
	if c.concurrency < 1 || c.concurrency > 256 {
		return c, fmt.Errorf("-setup-concurrency %d: want 1..256", c.concurrency)
	}
	var err error
	if c.bind, err = loopbackAddr(*bind); err != nil {
		return c, fmt.Errorf("-bind: %w", err)
	}
	if c.sip, err = loopbackAddrPort(*sip); err != nil {
		return c, fmt.Errorf("-sip: %w", err)
	}
	if c.ng, err = loopbackAddrPort(*ng); err != nil {
		return c, fmt.Errorf("-ng: %w", err)
	}
	if c.label == "" {
		c.label = c.target
	}
	return c, nil
}

func loopbackAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, err
	}
	if !a.Unmap().IsLoopback() {
		return a, fmt.Errorf("%s: only loopback addresses (127.0.0.0/8, ::1) are load-tested", s)
	}
	return a.Unmap(), nil
}

func loopbackAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, err
	}
	if !ap.Addr().Unmap().IsLoopback() {
		return ap, fmt.Errorf("%s: only loopback addresses (127.0.0.0/8, ::1) are load-tested", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// call is one call of the run: parties[0] is the caller (A), parties[1]
// the callee (B).
type call struct {
	i       int
	parties [2]*party
	sip     *sipCall
	ngID    string
	ok      bool
}

// result is what a run measured.
type result struct {
	established, setupFailed, teardownFailed int
	setup                                    time.Duration
	t                                        totals
	cpuPct                                   float64 // relay CPU, % of one core, steady window
	mem0, mem1                               memory
	loadCPUPct                               float64 // this tool, % of one core, streaming
	firstErr                                 string
	measured                                 bool
}

func run(args []string) error {
	c, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if c.pid > 0 {
		if _, err := cpuTicks(c.pid); err != nil {
			return fmt.Errorf("-pid: %w", err)
		}
	}
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	count := int(c.duration / packetGap)
	ctx, cancel := context.WithTimeout(context.Background(), c.duration+time.Duration(c.calls/c.concurrency+1)*4*c.timeout+time.Minute)
	defer cancel()
	res, err := load(ctx, c, count)
	if err != nil {
		return err
	}
	printResult(c, count, res)
	return nil
}

func load(ctx context.Context, c config, count int) (result, error) {
	var res result
	runID := rand.Uint32()
	calls := make([]*call, c.calls)
	defer func() {
		for _, cl := range calls {
			if cl == nil {
				continue
			}
			for _, p := range cl.parties {
				if p != nil {
					p.conn.Close()
				}
			}
			if cl.sip != nil {
				cl.sip.a.Close()
				cl.sip.b.Close()
			}
		}
	}()
	for i := range calls {
		cl := &call{i: i}
		calls[i] = cl
		for j := range cl.parties {
			p, err := openParty(c.bind)
			if err != nil {
				return res, fmt.Errorf("RTP socket of call %d: %w (raise ulimit -n?)", i, err)
			}
			p.out, p.in = uint32(2*i+j), uint32(2*i+1-j)
			cl.parties[j] = p
		}
	}
	if c.pid > 0 {
		m, err := memOf(c.pid)
		if err != nil {
			return res, err
		}
		res.mem0 = m
	}

	// Set up every call, c.concurrency at a time.
	var (
		firstErr  atomic.Value
		failed    atomic.Int64
		unrelayed atomic.Int64
	)
	fail := func(cl *call, err error) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, fmt.Sprintf("call %d: %v", cl.i, err))
	}
	tag := strconv.FormatUint(uint64(runID), 36)
	t0 := time.Now()
	forEach(calls, c.concurrency, func(ng *ngClient, cl *call) {
		a, b := cl.parties[0], cl.parties[1]
		var aDest, bDest netip.AddrPort
		var err error
		switch c.target {
		case "direct":
			aDest, bDest = b.addr, a.addr
		case "rtpengine":
			cl.ngID = "rl" + tag + "-" + strconv.Itoa(cl.i)
			aDest, bDest, err = ngSetup(ctx, ng, cl.ngID, a.addr, b.addr)
		case "switchboard":
			aDest, bDest, err = sipSetup(ctx, c, tag, cl)
		}
		if err == nil && (!aDest.Addr().Unmap().IsLoopback() || !bDest.Addr().Unmap().IsLoopback()) {
			err = fmt.Errorf("the relay gave non-loopback media addresses %s and %s (set its media address to 127.0.0.1)", aDest, bDest)
		}
		if err != nil {
			fail(cl, err)
			return
		}
		a.dest, b.dest = netip.AddrPortFrom(aDest.Addr().Unmap(), aDest.Port()), netip.AddrPortFrom(bDest.Addr().Unmap(), bDest.Port())
		if c.target != "direct" && (a.dest == b.addr || b.dest == a.addr) {
			unrelayed.Add(1) // the SDP was passed through: media goes direct
		}
		cl.ok = true
	}, c)
	res.setup = time.Since(t0)
	var parties []*party
	for _, cl := range calls {
		if cl.ok {
			parties = append(parties, cl.parties[0], cl.parties[1])
			res.established++
		}
	}
	res.setupFailed = int(failed.Load())
	if n := unrelayed.Load(); n > 0 {
		firstErr.CompareAndSwap(nil, fmt.Sprintf("%d calls not relayed: their SDP was not rewritten, media went direct (is switchboard running with --media-relay always?)", n))
	}
	fmt.Fprintf(os.Stderr, "rtpload: %s: %d of %d calls set up in %.2fs\n", c.target, res.established, c.calls, res.setup.Seconds())

	if len(parties) > 0 {
		start := time.Now().Add(200 * time.Millisecond)
		end := start.Add(time.Duration(count) * packetGap)
		stopAt := end.Add(c.drain)
		// The steady window: CPU from start+warmup to end, memory at end.
		var mwg sync.WaitGroup
		if c.pid > 0 {
			mwg.Add(1)
			go func() {
				defer mwg.Done()
				time.Sleep(time.Until(start.Add(c.warmup)))
				k0, err0 := cpuTicks(c.pid)
				w0 := time.Now()
				time.Sleep(time.Until(end))
				k1, err1 := cpuTicks(c.pid)
				w1 := time.Now()
				m, err2 := memOf(c.pid)
				if err0 == nil && err1 == nil && err2 == nil {
					res.cpuPct = 100 * float64(k1-k0) / clockTicks / w1.Sub(w0).Seconds()
					res.mem1 = m
					res.measured = true
				}
			}()
		}
		r0 := rusage()
		res.t = stream(parties, runID, start, start.Add(c.warmup), stopAt, count)
		res.loadCPUPct = 100 * (rusage() - r0).Seconds() / time.Since(start).Seconds()
		mwg.Wait()
	}

	// Tear down.
	var tdFailed atomic.Int64
	forEach(calls, c.concurrency, func(ng *ngClient, cl *call) {
		if !cl.ok {
			return
		}
		var err error
		switch c.target {
		case "rtpengine":
			_, err = ng.request(ctx, map[string]any{"command": "delete", "call-id": cl.ngID, "from-tag": "a" + cl.ngID})
		case "switchboard":
			err = cl.sip.bye(ctx, c.timeout)
		}
		if err != nil {
			tdFailed.Add(1)
			firstErr.CompareAndSwap(nil, fmt.Sprintf("teardown of call %d: %v", cl.i, err))
		}
	}, c)
	res.teardownFailed = int(tdFailed.Load())
	if v, ok := firstErr.Load().(string); ok {
		res.firstErr = v
	}
	if res.t.firstSendErr != "" && res.firstErr == "" {
		res.firstErr = "send: " + res.t.firstSendErr
	}
	return res, nil
}

// forEach runs f for every call, n at a time; each worker has its own ng
// client for the rtpengine target.
func forEach(calls []*call, n int, f func(ng *ngClient, cl *call), c config) {
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for w := 0; w < n && w < len(calls); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ng *ngClient
			if c.target == "rtpengine" {
				var err error
				if ng, err = dialNG(c.ng, "rl"+strconv.Itoa(w)+strconv.FormatInt(time.Now().UnixNano(), 36)); err != nil {
					fmt.Fprintln(os.Stderr, "rtpload:", err)
					return
				}
				defer ng.Close()
			}
			for {
				i := int(next.Add(1)) - 1
				if i >= len(calls) {
					return
				}
				f(ng, calls[i])
			}
		}()
	}
	wg.Wait()
}

// ngSetup asks rtpengine for the call's relay addresses: the offer carries
// A's SDP (rtpengine's rewritten one tells B where to send), the answer B's
// (the rewritten one tells A).
func ngSetup(ctx context.Context, ng *ngClient, id string, a, b netip.AddrPort) (aDest, bDest netip.AddrPort, err error) {
	if ng == nil {
		return aDest, bDest, errors.New("no ng socket")
	}
	d, err := ng.request(ctx, map[string]any{"command": "offer", "call-id": id, "from-tag": "a" + id,
		"sdp": buildSDP(a, 1), "replace": []string{"origin", "session-connection"}})
	if err != nil {
		return aDest, bDest, err
	}
	sdp, err := ngSDP(d)
	if err != nil {
		return aDest, bDest, err
	}
	if bDest, err = sdpAudioAddr(sdp); err != nil {
		return aDest, bDest, fmt.Errorf("offer SDP: %w", err)
	}
	d, err = ng.request(ctx, map[string]any{"command": "answer", "call-id": id, "from-tag": "a" + id, "to-tag": "b" + id,
		"sdp": buildSDP(b, 2), "replace": []string{"origin", "session-connection"}})
	if err != nil {
		return aDest, bDest, err
	}
	if sdp, err = ngSDP(d); err != nil {
		return aDest, bDest, err
	}
	if aDest, err = sdpAudioAddr(sdp); err != nil {
		return aDest, bDest, fmt.Errorf("answer SDP: %w", err)
	}
	return aDest, bDest, nil
}

// sipSetup registers the callee and places the call through switchboard.
func sipSetup(ctx context.Context, c config, tag string, cl *call) (aDest, bDest netip.AddrPort, err error) {
	a, err := newSIPUA(c.bind, c.sip)
	if err != nil {
		return aDest, bDest, err
	}
	b, err := newSIPUA(c.bind, c.sip)
	if err != nil {
		a.conn.Close()
		return aDest, bDest, err
	}
	sc := &sipCall{id: tag + "-" + strconv.Itoa(cl.i), a: a, b: b, domain: c.domain,
		caller: strconv.Itoa(c.callerFirst + cl.i), callee: strconv.Itoa(c.calleeFirst + cl.i),
		password: func(u string) string { return c.passwordPrefix + u },
		aRTP:     cl.parties[0].addr, bRTP: cl.parties[1].addr}
	b.onRequest = sc.answerB
	cl.sip = sc
	go a.run()
	go b.run()
	if err := sc.register(ctx, c.timeout); err != nil {
		return aDest, bDest, err
	}
	return sc.setup(ctx, c.timeout)
}

func rusage() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const columns = "label\ttarget\tcalls\testablished\tsetup_failed\tsetup_s\tduration_s\tsent\treceived\tlost\tloss_pct\tdup\tforeign\tsend_err" +
	"\tlat_p50_us\tlat_p99_us\tlat_max_us\trelay_cpu_pct\trss_before_kib\trss_after_kib\tpss_before_kib\tpss_after_kib\tpss_per_call_kib" +
	"\tload_cpu_pct\tsend_lag_p99_ms\tsend_lag_max_ms\tteardown_failed\tfirst_error"

func printResult(c config, count int, r result) {
	t := r.t
	lost := int64(t.sent) - int64(t.received)
	lossPct := 0.0
	if t.sent > 0 {
		lossPct = 100 * float64(lost) / float64(t.sent)
	}
	us := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64) }
	var p50, p99, pmax string = "-", "-", "-"
	if t.lat != nil && t.lat.count.Load() > 0 {
		p50, p99, pmax = us(t.lat.quantile(0.50)), us(t.lat.quantile(0.99)), us(time.Duration(t.lat.max.Load()))
	}
	lagP99, lagMax := "-", "-"
	if t.lag != nil && t.lag.count.Load() > 0 {
		ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) }
		lagP99, lagMax = ms(t.lag.quantile(0.99)), ms(time.Duration(t.lag.max.Load()))
	}
	cpu, rss0, rss1, pss0, pss1, perCall := "-", "-", "-", "-", "-", "-"
	if r.measured {
		cpu = strconv.FormatFloat(r.cpuPct, 'f', 1, 64)
		rss0, rss1 = strconv.FormatInt(r.mem0.RSS, 10), strconv.FormatInt(r.mem1.RSS, 10)
		pss0, pss1 = strconv.FormatInt(r.mem0.PSS, 10), strconv.FormatInt(r.mem1.PSS, 10)
		if r.established > 0 {
			perCall = strconv.FormatFloat(float64(r.mem1.PSS-r.mem0.PSS)/float64(r.established), 'f', 1, 64)
		}
	}
	fe := r.firstErr
	if fe == "" && t.userStamped > 0 {
		fe = fmt.Sprintf("%d latency samples without a kernel receive timestamp (taken when read)", t.userStamped)
	}
	if fe == "" {
		fe = "-"
	}
	if c.header {
		fmt.Println(columns)
	}
	f := []string{c.label, c.target, strconv.Itoa(c.calls), strconv.Itoa(r.established), strconv.Itoa(r.setupFailed),
		strconv.FormatFloat(r.setup.Seconds(), 'f', 2, 64), strconv.FormatFloat(c.duration.Seconds(), 'f', 0, 64),
		strconv.FormatUint(t.sent, 10), strconv.FormatUint(t.received, 10), strconv.FormatInt(lost, 10),
		strconv.FormatFloat(lossPct, 'f', 4, 64), strconv.FormatUint(t.dup, 10), strconv.FormatUint(t.foreign, 10),
		strconv.FormatUint(t.sendErr, 10), p50, p99, pmax, cpu, rss0, rss1, pss0, pss1, perCall,
		strconv.FormatFloat(r.loadCPUPct, 'f', 1, 64), lagP99, lagMax, strconv.Itoa(r.teardownFailed),
		strings.NewReplacer("\t", " ", "\n", " ").Replace(fe)}
	fmt.Println(strings.Join(f, "\t"))
	fmt.Fprintf(os.Stderr, "rtpload: %s: %d calls, %d packets/party planned; sent %d, received %d, lost %d (%.4f %%), dup %d, foreign %d; latency p50 %s µs p99 %s µs max %s µs; relay CPU %s %%, PSS %s -> %s KiB (%s KiB/call); load tool CPU %.1f %%, send lag p99 %s ms max %s ms; first error: %s\n",
		c.label, r.established, count, t.sent, t.received, lost, lossPct, t.dup, t.foreign, p50, p99, pmax, cpu, pss0, pss1, perCall, r.loadCPUPct, lagP99, lagMax, fe)
}
