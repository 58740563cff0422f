package proxy

// The in-process harness: the real proxy on a real sipstack (UDP on
// 127.0.0.1:0, wired as internal/server wires it), a real directory,
// location table, authenticator, journal and call writers on a SQLite
// store in t.TempDir(), and scripted phones: UDP sockets on 127.0.0.x:0
// that send hand-built SIP messages and answer with the responses a test
// chooses, so a test controls every message (retransmissions, forged
// routes, silence) and sees every message the proxy sends.

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/auth"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/digest"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/location"
	"github.com/switchboard-pbx/switchboard/internal/media"
	"github.com/switchboard-pbx/switchboard/internal/sipstack"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

const (
	testDomain   = "pbx.test"
	testPassword = "secret-pw"
	// wait bounds every poll of the harness: generous, since a poll
	// returns as soon as its condition holds.
	wait = 5 * time.Second
)

// env is one running proxy and its services.
type env struct {
	t     testing.TB
	ctx   context.Context
	db    *sqlite.DB
	loc   *location.Table
	jw    *journal.Writer
	cw    *calls.Writer
	stack *sipstack.Stack
	p     *Proxy
	addr  *net.UDPAddr // the proxy's UDP address
}

// newEnv starts a proxy with cfg (Host, Port, UDPLocal, OwnHosts and Key
// are filled in) and extensions 2001..2004 (password testPassword; 2004
// has a call timeout of 1 s).
func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	return newEnvMedia(t, cfg, nil)
}

// newEnvMedia is newEnv with the media relay mr (nil: none).
func newEnvMedia(t testing.TB, cfg Config, mr *media.Relay) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.EnsureDomain(ctx, testDomain); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"2001", "2002", "2003", "2004"} {
		timeout := 30
		if n == "2004" {
			timeout = 1
		}
		if _, err := db.AddExtension(ctx, store.Extension{Domain: testDomain, Number: n, Enabled: true,
			MaxRegistrations: 5, CallTimeout: timeout,
			HA1MD5: digest.HA1(digest.MD5, n, testDomain, testPassword)}); err != nil {
			t.Fatal(err)
		}
	}
	dir := directory.New(db, log)
	if err := dir.Load(ctx); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, db: db}
	e.jw = journal.NewWriter(db, log, journal.Retention{}, 0)
	e.cw = calls.NewWriter(db, log, calls.Retention{}, 0)
	if _, err := e.cw.Init(ctx); err != nil {
		t.Fatal(err)
	}
	e.loc = location.New(db, log, nil)
	if _, err := e.loc.Load(ctx); err != nil {
		t.Fatal(err)
	}
	key := []byte("test-key-0123456789abcdef")
	au := &auth.Authenticator{Dir: dir, Nonces: digest.NewNonces(key, time.Minute, nil),
		Algorithms: []digest.Algorithm{digest.MD5}}
	e.stack, err = sipstack.Listen(sipstack.Options{Addr: "127.0.0.1:0", UDPReaders: 1, Logger: log,
		// As internal/server wires it (after its packet guard).
		Filter: func(transport string, remote net.Addr, data []byte) []byte {
			if e.p.Take(transport, remote, data) {
				return nil
			}
			return data
		},
		UnhandledResponse: func(r *sip.Response) { e.p.ForwardResponse(r) }})
	if err != nil {
		t.Fatal(err)
	}
	udp := e.stack.Listeners[0].Addr
	e.addr, _ = net.ResolveUDPAddr("udp", udp)
	dir.SetLocal(directory.Local{DefaultDomain: testDomain, Hosts: []string{"127.0.0.1", testDomain}})
	cfg.Host, cfg.Port, cfg.UDPLocal, cfg.Key = "127.0.0.1", e.addr.Port, udp, key
	cfg.OwnHosts = []string{"127.0.0.1", testDomain}
	e.p = New(cfg, Deps{Dir: dir, Auth: au, Loc: e.loc, Journal: e.jw, Calls: e.cw, Client: e.stack.Client,
		Server: e.stack.Server, Log: log, Media: mr})
	e.p.Register(e.stack)

	var wg sync.WaitGroup
	for _, run := range []func(context.Context){e.jw.Run, e.cw.Run, e.loc.Run, e.p.Run,
		func(ctx context.Context) { _ = e.stack.Serve(ctx) }} {
		wg.Add(1)
		go func() { defer wg.Done(); run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		db.Close()
	})
	return e
}

// register adds a UDP binding of ext at phone ph (contact = its address).
func (e *env) register(ext string, ph *phone) store.Binding {
	e.t.Helper()
	now := time.Now()
	b := store.Binding{Domain: testDomain, Extension: ext, Contact: "sip:" + ext + "@" + ph.addr,
		Source: ph.addr, Transport: "UDP", UserAgent: "phone-" + ext, CallID: "reg-" + ph.addr,
		RegisteredAt: now, ExpiresAt: now.Add(time.Hour)}
	if _, err := e.loc.Update(e.ctx, testDomain, ext, func(cur []store.Binding) ([]store.Binding, error) {
		return append(cur, b), nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return b
}

// record polls the call record of callID until ok accepts it.
func (e *env) record(callID string, ok func(calls.Record) bool) calls.Record {
	e.t.Helper()
	var last []calls.Record
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		e.cw.Flush(e.ctx)
		recs, err := calls.Query(e.ctx, e.db, calls.Filter{CallID: callID})
		if err != nil {
			e.t.Fatal(err)
		}
		if len(recs) == 1 && ok(recs[0]) {
			return recs[0]
		}
		last = recs
	}
	e.t.Fatalf("call record of %s never matched; last: %+v", callID, last)
	return calls.Record{}
}

// event polls the journal until an event matching ok is there.
func (e *env) event(f journal.Filter, ok func(journal.Event) bool) journal.Event {
	e.t.Helper()
	var last []journal.Event
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		e.jw.Flush(e.ctx)
		evs, err := journal.Query(e.ctx, e.db, f)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, ev := range evs {
			if ok(ev) {
				return ev
			}
		}
		last = evs
	}
	e.t.Fatalf("no journal event matched %+v; last: %+v", f, last)
	return journal.Event{}
}

// binding returns the current binding of ext at ph.
func (e *env) binding(ext string, ph *phone) store.Binding {
	for _, b := range e.loc.Lookup(testDomain, ext) {
		if b.Source == ph.addr {
			return b
		}
	}
	e.t.Fatalf("no binding of %s at %s", ext, ph.addr)
	return store.Binding{}
}

// eventually polls cond until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// phone is a scripted SIP endpoint on a UDP socket.
type phone struct {
	t     testing.TB
	conn  *net.UDPConn
	addr  string
	proxy *net.UDPAddr
	in    chan sip.Message
	// got is every message received, for assertions about what did not
	// happen (guarded by mu).
	mu  sync.Mutex
	got []sip.Message
}

// phone opens a phone on ip (127.0.0.1, 127.0.0.2, ...).
func (e *env) phone(ip string) *phone {
	e.t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		e.t.Fatal(err)
	}
	ph := &phone{t: e.t, conn: c, addr: c.LocalAddr().String(), proxy: e.addr, in: make(chan sip.Message, 256)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			m, err := sip.ParseMessage(slices.Clone(buf[:n]))
			if err != nil {
				continue
			}
			ph.mu.Lock()
			ph.got = append(ph.got, m)
			ph.mu.Unlock()
			select {
			case ph.in <- m:
			default:
			}
		}
	}()
	e.t.Cleanup(func() { c.Close(); <-done })
	return ph
}

func (ph *phone) send(m sip.Message) {
	ph.t.Helper()
	if _, err := ph.conn.WriteToUDP([]byte(m.String()), ph.proxy); err != nil {
		ph.t.Fatal(err)
	}
}

// next returns the next message that match accepts, skipping others
// (retransmissions, provisional answers a test does not care about).
func (ph *phone) next(what string, match func(sip.Message) bool) sip.Message {
	ph.t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case m := <-ph.in:
			if match(m) {
				return m
			}
		case <-timer.C:
			ph.mu.Lock()
			for _, m := range ph.got {
				ph.t.Logf("got: %s", strings.SplitN(m.String(), "\r\n", 2)[0]+" "+m.CSeq().Value())
			}
			ph.mu.Unlock()
			ph.t.Fatalf("phone %s: no %s", ph.addr, what)
			return nil
		}
	}
}

// request waits for a request of method.
func (ph *phone) request(method sip.RequestMethod) *sip.Request {
	ph.t.Helper()
	return ph.next(string(method), func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && r.Method == method
	}).(*sip.Request)
}

// response waits for a response with a status in codes to a request of
// method.
func (ph *phone) response(method sip.RequestMethod, codes ...int) *sip.Response {
	ph.t.Helper()
	return ph.next(fmt.Sprintf("%v response to %s", codes, method), func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.CSeq() != nil && r.CSeq().MethodName == method && slices.Contains(codes, r.StatusCode)
	}).(*sip.Response)
}

// count returns how many received messages match.
func (ph *phone) count(match func(sip.Message) bool) int {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	n := 0
	for _, m := range ph.got {
		if match(m) {
			n++
		}
	}
	return n
}

func isReq(method sip.RequestMethod) func(sip.Message) bool {
	return func(m sip.Message) bool { r, ok := m.(*sip.Request); return ok && r.Method == method }
}

func isRes(method sip.RequestMethod, code int) func(sip.Message) bool {
	return func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.StatusCode == code && r.CSeq() != nil && r.CSeq().MethodName == method
	}
}

// reply answers req with code; toTag, when set, is added to To; a 2xx and
// 1xx with a tag carry the phone's Contact.
func (ph *phone) reply(req *sip.Request, code int, toTag string) *sip.Response {
	ph.t.Helper()
	var body []byte
	if code == 200 && req.Method == sip.INVITE {
		body = []byte("v=0\r\n")
	}
	res := sip.NewResponseFromRequest(req, code, reasonOf(code), body)
	if toTag != "" {
		res.To().Params.Add("tag", toTag) // sipgo made one up
	}
	if toTag != "" && code > 100 && code < 300 {
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "callee", Host: host(ph.addr), Port: port(ph.addr)}})
	}
	ph.send(res)
	return res
}

func reasonOf(code int) string {
	switch code {
	case 100:
		return "Trying"
	case 180:
		return "Ringing"
	case 200:
		return "OK"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 603:
		return "Decline"
	}
	return "Status"
}

func host(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

func newBranch() string { return sip.RFC3261BranchMagicCookie + sip.GenerateTagN(12) }

// invite builds a dialog-creating INVITE from ph as from to "to@pbx.test".
func (ph *phone) invite(from, to, callID string, cseq uint32) *sip.Request {
	raw := "INVITE sip:" + to + "@" + testDomain + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + ph.addr + ";branch=" + newBranch() + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:" + from + "@" + testDomain + ">;tag=caller-" + callID + "\r\n" +
		"To: <sip:" + to + "@" + testDomain + ">\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: " + strconv.Itoa(int(cseq)) + " INVITE\r\n" +
		"Contact: <sip:" + from + "@" + ph.addr + ">\r\n" +
		"User-Agent: scripted\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		ph.t.Fatal(err)
	}
	return m.(*sip.Request)
}

var challengeParam = regexp.MustCompile(`(\w+)="([^"]*)"`)

func md5hex(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }

// ackFor is the ACK of a non-2xx final answer (same branch, RFC 3261
// §17.1.1.3).
func ackFor(inv *sip.Request, res *sip.Response) *sip.Request {
	ack := sip.NewRequest(sip.ACK, inv.Recipient)
	ack.AppendHeader(inv.Via().Clone())
	mf := sip.MaxForwardsHeader(70)
	ack.AppendHeader(&mf)
	ack.AppendHeader(sip.HeaderClone(inv.From()))
	ack.AppendHeader(sip.HeaderClone(res.To()))
	ack.AppendHeader(sip.HeaderClone(inv.CallID()))
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.ACK})
	ack.SetBody(nil)
	return ack
}

// call places a call from ph (extension from) to number to: INVITE, 407,
// ACK, INVITE with credentials. It returns the authenticated INVITE; the
// caller then reads the 100 Trying and what follows.
func (ph *phone) call(from, to, callID string) *sip.Request {
	ph.t.Helper()
	return ph.callAs(from, from, to, callID)
}

// callAs is call with the credentials of user authUser.
func (ph *phone) callAs(authUser, from, to, callID string) *sip.Request {
	ph.t.Helper()
	inv := ph.invite(from, to, callID, 1)
	ph.send(inv)
	ch := ph.response(sip.INVITE, 407)
	ph.send(ackFor(inv, ch))
	params := map[string]string{}
	for _, m := range challengeParam.FindAllStringSubmatch(ch.GetHeader("Proxy-Authenticate").Value(), -1) {
		params[m[1]] = m[2]
	}
	uri := inv.Recipient.String()
	ha1 := md5hex(authUser + ":" + params["realm"] + ":" + testPassword)
	resp := md5hex(ha1 + ":" + params["nonce"] + ":00000001:cn:auth:" + md5hex("INVITE:"+uri))
	inv = ph.invite(from, to, callID, 2)
	inv.AppendHeader(sip.NewHeader("Proxy-Authorization", fmt.Sprintf(
		`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="cn", opaque="%s"`,
		authUser, params["realm"], params["nonce"], uri, resp, params["opaque"])))
	ph.send(inv)
	return inv
}

// leg is one side's view of a dialog: what its in-dialog requests carry.
type leg struct {
	callID       string
	local        string // From of this side's requests (with tag)
	remote       string // To (with tag)
	target       sip.Uri
	routes       []string
	cseq         uint32
	localContact string
}

// callerLeg is the caller's dialog from the 2xx (or 1xx) it got.
func callerLeg(inv *sip.Request, res *sip.Response) *leg {
	l := &leg{callID: inv.CallID().Value(), local: inv.From().Value(), remote: res.To().Value(),
		cseq: inv.CSeq().SeqNo, localContact: inv.Contact().Address.String()}
	if c := res.Contact(); c != nil {
		l.target = *c.Address.Clone()
	}
	rrs := res.GetHeaders("Record-Route")
	for i := len(rrs) - 1; i >= 0; i-- {
		l.routes = append(l.routes, rrs[i].Value())
	}
	return l
}

// calleeLeg is the callee's dialog from the INVITE it got and its tag.
func calleeLeg(inv *sip.Request, tag string, ph *phone) *leg {
	to := inv.To().Value() + ";tag=" + tag
	l := &leg{callID: inv.CallID().Value(), local: to, remote: inv.From().Value(), cseq: 100,
		localContact: "sip:callee@" + ph.addr}
	if c := inv.Contact(); c != nil {
		l.target = *c.Address.Clone()
	}
	for _, h := range inv.GetHeaders("Record-Route") {
		l.routes = append(l.routes, h.Value())
	}
	return l
}

// request builds an in-dialog request of the leg from ph (ACK reuses the
// INVITE's CSeq number).
func (l *leg) request(ph *phone, method sip.RequestMethod) *sip.Request {
	if method != sip.ACK {
		l.cseq++
	}
	req := sip.NewRequest(method, *l.target.Clone())
	v := sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: host(ph.addr),
		Port: port(ph.addr), Params: sip.NewParams()}
	v.Params.Add("branch", newBranch())
	req.AppendHeader(&v)
	for _, r := range l.routes {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.NewHeader("From", l.local))
	req.AppendHeader(sip.NewHeader("To", l.remote))
	cid := sip.CallIDHeader(l.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: l.cseq, MethodName: method})
	if method == sip.INVITE || method == sip.UPDATE {
		req.AppendHeader(sip.NewHeader("Contact", "<"+l.localContact+">"))
	}
	req.SetBody(nil)
	// Reparse so typed headers (From, To, Route) are what the proxy sees.
	m, err := sip.ParseMessage([]byte(req.String()))
	if err != nil {
		panic(err)
	}
	return m.(*sip.Request)
}

// answered is a call set up through the proxy: caller 2001 at a, callee
// 2002 at b.
type answered struct {
	inv        *sip.Request // the caller's INVITE
	binv       *sip.Request // the INVITE the callee got
	ok         *sip.Response
	a, b       *phone
	aLeg, bLeg *leg
}

// setupCall places and answers a call 2001 -> 2002 (callee b registered)
// and ACKs it.
func (e *env) setupCall(a, b *phone, callID string) *answered {
	e.t.Helper()
	c := &answered{a: a, b: b}
	c.inv = a.call("2001", "2002", callID)
	a.response(sip.INVITE, 100)
	c.binv = b.request(sip.INVITE)
	b.reply(c.binv, 180, "callee-tag")
	a.response(sip.INVITE, 180)
	b.reply(c.binv, 200, "callee-tag")
	c.ok = a.response(sip.INVITE, 200)
	c.aLeg = callerLeg(c.inv, c.ok)
	c.bLeg = calleeLeg(c.binv, "callee-tag", b)
	a.send(c.aLeg.request(a, sip.ACK))
	b.request(sip.ACK)
	return c
}

func hasPrefixFold(s, p string) bool {
	return strings.HasPrefix(strings.ToLower(s), strings.ToLower(p))
}

type journalEvent = journal.Event

func journalFilter(ext string) journal.Filter {
	return journal.Filter{Extension: ext, Domain: testDomain}
}
