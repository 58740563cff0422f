// Package qualify pings every registered binding with SIP OPTIONS and
// records whether it answers (Reachable, with the round-trip time) or not
// (Unreachable) in the location table, which `switchboard reg` shows as
// Ping-Status and Ping-Time, like FreeSWITCH's sofia status.
//
// UDP bindings are pinged every Interval (config.QualifyInterval, flag
// --qualify-interval, default 30 s), stream bindings (TCP) every second
// interval: their connection already tells us when they go away. Pings are
// spread over the interval by a hash of the binding, so 100,000 bindings
// make a steady ~3,300 pings/s rather than a burst, and at most Concurrency
// pings are in flight. Any answer (200, 404, 405, ...) proves the phone is
// alive; no answer within Timeout marks it unreachable.
//
// A binding turning unreachable is journaled (journal.KindQualify, cause
// unreachable), and so is its recovery (cause reachable); steady states are
// not, so the journal shows changes only.
package qualify

import (
	"context"
	"hash/maphash"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/router"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Locator is what qualify needs from the location table (location.Table
// satisfies it).
type Locator interface {
	All() []store.Binding
	SetPing(key store.BindingKey, reachable bool, rtt time.Duration) (prev string, b store.Binding, ok bool)
}

// Config configures the pinger.
type Config struct {
	// Interval between pings of one UDP binding; TCP bindings get twice
	// this. 0 disables qualify.
	Interval time.Duration
	// Timeout is how long a ping waits for an answer; default Interval,
	// capped to 1..5 s.
	Timeout time.Duration
	// Concurrency bounds the pings in flight (default 1024).
	Concurrency int
	// Host and Port are our address for Via and From.
	Host string
	Port int
	// UDPLocal is the UDP listener's local address as bound: UDP pings
	// leave from this socket, the one the phone registered to.
	UDPLocal string
}

// Pinger qualifies bindings. Create with New and run Run.
type Pinger struct {
	cfg     Config
	loc     Locator
	client  *sipgo.Client
	journal *journal.Writer
	log     *slog.Logger
	seed    maphash.Seed
	udpAddr sip.Addr
	sem     chan struct{}

	// mu guards inflight: bindings with a ping under way.
	mu       sync.Mutex
	inflight map[store.BindingKey]struct{}
	// wg tracks the ping goroutines Run started.
	wg sync.WaitGroup
}

// New returns a pinger.
func New(cfg Config, loc Locator, client *sipgo.Client, j *journal.Writer, log *slog.Logger) *Pinger {
	if cfg.Timeout <= 0 {
		cfg.Timeout = min(max(cfg.Interval, time.Second), 5*time.Second)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1024
	}
	q := &Pinger{cfg: cfg, loc: loc, client: client, journal: j, log: log, seed: maphash.MakeSeed(),
		sem: make(chan struct{}, cfg.Concurrency), inflight: map[store.BindingKey]struct{}{}}
	if h, port, err := net.SplitHostPort(cfg.UDPLocal); err == nil {
		n, _ := strconv.Atoi(port)
		q.udpAddr = sip.Addr{IP: net.ParseIP(h), Port: n, Hostname: h}
	}
	return q
}

// Run pings bindings until ctx ends, then waits for the pings in flight.
// It returns at once when the interval is 0.
func (q *Pinger) Run(ctx context.Context) {
	if q.cfg.Interval <= 0 {
		return
	}
	defer q.wg.Wait()
	for cycle := 0; ctx.Err() == nil; cycle++ {
		start := time.Now()
		q.cycle(ctx, start, cycle)
		if !sleepUntil(ctx, start.Add(q.cfg.Interval)) {
			return
		}
	}
}

type slot struct {
	at time.Duration
	b  store.Binding
}

// cycle pings, over one interval, every binding due in this cycle.
func (q *Pinger) cycle(ctx context.Context, start time.Time, cycle int) {
	all := q.loc.All()
	plan := make([]slot, 0, len(all))
	for _, b := range all {
		if sip.IsReliable(b.Transport) && cycle%2 == 1 {
			continue
		}
		plan = append(plan, slot{at: q.offset(b), b: b})
	}
	sort.Slice(plan, func(i, j int) bool { return plan[i].at < plan[j].at })
	for _, s := range plan {
		if !sleepUntil(ctx, start.Add(s.at)) {
			return
		}
		if !q.begin(s.b.Key()) {
			continue
		}
		select {
		case q.sem <- struct{}{}:
		case <-ctx.Done():
			q.end(s.b.Key())
			return
		}
		q.wg.Add(1)
		go func(b store.Binding) {
			defer q.wg.Done()
			defer func() { <-q.sem }()
			defer q.end(b.Key())
			q.Qualify(ctx, b)
		}(s.b)
	}
}

// offset places a binding in the interval, the same place every cycle.
func (q *Pinger) offset(b store.Binding) time.Duration {
	var h maphash.Hash
	h.SetSeed(q.seed)
	h.WriteString(b.Domain)
	h.WriteByte(0)
	h.WriteString(b.Extension)
	h.WriteByte(0)
	h.WriteString(b.Contact)
	return time.Duration(h.Sum64() % uint64(q.cfg.Interval))
}

func (q *Pinger) begin(k store.BindingKey) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, busy := q.inflight[k]; busy {
		return false
	}
	q.inflight[k] = struct{}{}
	return true
}

func (q *Pinger) end(k store.BindingKey) {
	q.mu.Lock()
	delete(q.inflight, k)
	q.mu.Unlock()
}

// Qualify pings one binding, records the result in the location table and
// journals a change to unreachable or back to reachable. It returns
// whether the binding answered and the round-trip time.
func (q *Pinger) Qualify(ctx context.Context, b store.Binding) (reachable bool, rtt time.Duration) {
	reachable, rtt, status, why := q.Ping(ctx, b)
	if ctx.Err() != nil {
		return reachable, rtt
	}
	prev, nb, ok := q.loc.SetPing(b.Key(), reachable, rtt)
	if !ok || prev == nb.PingStatus {
		return reachable, rtt
	}
	ev := journal.Event{Kind: journal.KindQualify, Extension: nb.Extension, Domain: nb.Domain, Source: nb.Source,
		Transport: nb.Transport, UserAgent: nb.UserAgent, CallID: nb.CallID, AuthUser: nb.AuthUser, Realm: nb.Realm,
		Status: status}
	switch {
	case !reachable:
		ev.Cause = cause.Unreachable
		dest, _ := router.Destination(nb)
		ev.Detail = "contact " + nb.Contact + " at " + dest + " did not answer OPTIONS: " + why
	case prev == "unreachable": // the table's status, not b's: b may predate a concurrent ping's result
		ev.Cause = cause.Reachable
		ev.Detail = "contact " + nb.Contact + " answers OPTIONS again (" + strconv.Itoa(status) + ", " +
			strconv.FormatFloat(float64(rtt.Microseconds())/1000, 'f', 1, 64) + " ms)"
	default:
		return reachable, rtt
	}
	q.journal.Record(ev)
	return reachable, rtt
}

// Ping sends one OPTIONS to a binding, where calls to it go
// (router.Destination: the address it registered from when behind NAT),
// and waits up to Timeout for any answer.
func (q *Pinger) Ping(ctx context.Context, b store.Binding) (ok bool, rtt time.Duration, status int, why string) {
	var u sip.Uri
	if err := sip.ParseUri(b.Contact, &u); err != nil {
		return false, 0, 0, "unusable contact: " + err.Error()
	}
	tp := strings.ToUpper(b.Transport)
	if tp == "" {
		tp = "UDP"
	}
	req := sip.NewRequest(sip.OPTIONS, u)
	vp := sip.NewParams()
	vp.Add("branch", sip.RFC3261BranchMagicCookie+"-sb"+sip.GenerateTagN(20))
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: tp, Host: q.cfg.Host,
		Port: q.cfg.Port, Params: vp})
	fp := sip.NewParams()
	fp.Add("tag", sip.GenerateTagN(12))
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "switchboard", Host: b.Domain}, Params: fp})
	to := sip.Uri{Scheme: u.Scheme, User: u.User, Host: u.Host, Port: u.Port}
	req.AppendHeader(&sip.ToHeader{Address: to})
	cid := sip.CallIDHeader(sip.GenerateTagN(24))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.NewHeader("User-Agent", "switchboard"))
	req.SetBody(nil)
	req.SetTransport(tp)
	dest, _ := router.Destination(b)
	req.SetDestination(dest)
	if tp == "UDP" {
		req.Laddr = q.udpAddr
	}
	start := time.Now()
	tx, err := q.client.TransactionRequest(ctx, req, func(*sipgo.Client, *sip.Request) error { return nil })
	if err != nil {
		return false, 0, 0, "cannot send: " + err.Error()
	}
	defer tx.Terminate()
	t := time.NewTimer(q.cfg.Timeout)
	defer t.Stop()
	select {
	case res := <-tx.Responses():
		return true, time.Since(start), res.StatusCode, ""
	case <-tx.Done():
		why = "no answer"
		if err := tx.Err(); err != nil {
			why += " (" + err.Error() + ")"
		}
		return false, 0, 0, why
	case <-t.C:
		return false, 0, 0, "no answer within " + q.cfg.Timeout.String()
	case <-ctx.Done():
		return false, 0, 0, "stopped"
	}
}

// sleepUntil waits until t or ctx ends; it reports false when ctx ended.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 2*time.Millisecond {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
