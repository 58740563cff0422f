package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/cluster"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/media"
	"github.com/switchboard-pbx/switchboard/internal/registrar"
	"github.com/switchboard-pbx/switchboard/internal/router"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// branch is one binding an INVITE is forked to. Its fields are owned by
// the fork's goroutine (fork.run); watch only reads tx.
type branch struct {
	b         store.Binding
	dest      string // where requests go: router.Destination (NAT-aware)
	transport string
	req       *sip.Request
	tx        sip.ClientTransaction
	sent      time.Time

	responded   bool // any response, 100 included
	provisional bool // a 1xx: CANCEL may be sent (RFC 3261 §9.1)
	ringing     bool // 180/183
	final       int  // final status; 0 while pending
	res         *sip.Response
	synthetic   bool // final is ours: the branch never answered
	reason      string

	cancelWanted bool
	cancelAt     time.Time // when CANCEL was sent
	terminated   bool      // we gave up on the transaction
}

// bevent is a response of a branch, or nil res when its transaction ended.
type bevent struct {
	br  *branch
	res *sip.Response
}

// fork runs one call from the routed INVITE to the last branch's end.
type fork struct {
	p           *Proxy
	req         *sip.Request
	tx          sip.ServerTransaction
	rec         calls.Record
	ev          journal.Event
	decision    router.Decision
	upDest      string
	upTransport string

	token     string
	branches  []*branch
	events    chan bevent // the watch goroutines' (nil with a single branch)
	live      int         // watch goroutines still running
	finalSent bool
	finalAt   time.Time
	answered  *branch
	dlg       *dialog
	early     map[string]*dialog // dialogs followed, by callee tag
	keep      map[*dialog]bool   // dialogs of late 2xx: followed after the fork ends
	cause     cause.Code
	by        string
	pending   bool // counted in Proxy.setups: no callee answered yet
	// media is the call's relayed media (nil: not relayed) and offer the
	// caller's SDP rewritten for the callees (nil: the INVITE's own).
	media *callMedia
	offer []byte
	// offerAddr is the audio address of the caller's SDP offer (invalid:
	// none) and offerWebRTC whether it is a browser's: recorded with the
	// callee's answer when the call is not relayed (unrelayedLegs).
	offerAddr   netip.AddrPort
	offerWebRTC bool
}

// settled ends the fork's count in Proxy.setups (a callee answered
// something, or the fork ended).
func (f *fork) settled() {
	if f.pending {
		f.pending = false
		f.p.setups.Add(-1)
	}
}

func (f *fork) run() {
	p := f.p
	f.token = p.newToken(f.rec.CallID, tagOf(f.req.From().Params))
	cancelled := make(chan struct{})
	var once sync.Once
	if !f.tx.OnCancel(func(*sip.Request) { once.Do(func() { close(cancelled) }) }) {
		// Cancelled (or gone) before anything was forwarded.
		f.finalSent, f.finalAt = true, p.now()
		f.rec.SIPStatus, f.cause, f.by = 487, cause.OriginatorCancel, calls.ByCaller
		f.finish()
		return
	}
	// Waiting for a callee's first answer (Config.MaxSetups).
	f.pending = true
	p.setups.Add(1)
	defer f.settled()
	for _, b := range f.decision.Targets {
		f.start(b)
	}
	// A single branch (the usual call) is read by this loop directly;
	// with more, each gets a watch goroutine feeding f.events.
	var one *branch
	var oneRes <-chan *sip.Response
	var oneDone <-chan struct{}
	if f.live > 1 {
		f.events = make(chan bevent, 4*f.live+4)
	}
	for _, br := range f.branches {
		if br.tx == nil {
			continue
		}
		if f.live == 1 {
			one, oneRes, oneDone = br, br.tx.Responses(), br.tx.Done()
			break
		}
		go f.watch(br)
	}
	f.rec.Branches = f.branchRecords()
	p.d.Calls.Save(f.rec)

	ring := time.NewTimer(f.decision.Timeout)
	defer ring.Stop()
	ringC := ring.C
	var touchC <-chan time.Time
	if f.media != nil {
		// Ringing sends no media: the relay session must not time out.
		t := time.NewTicker(max(p.cfg.MediaTimeout/4, 100*time.Millisecond))
		defer t.Stop()
		touchC = t.C
	}
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	for {
		if !f.finalSent && f.allFinal() {
			f.sendBest()
		}
		if f.live == 0 {
			break
		}
		f.resetWake(wake)
		select {
		case ev := <-f.events:
			f.onEvent(ev)
		case res := <-oneRes:
			if res.StatusCode >= 200 {
				oneRes, oneDone = nil, nil
			}
			f.onEvent(bevent{br: one, res: res})
		case <-oneDone:
			oneRes, oneDone = nil, nil
			f.onEvent(bevent{br: one})
		case <-ringC:
			ringC = nil
			f.onRingTimeout()
		case <-cancelled:
			cancelled = nil
			f.onCallerCancel()
		case <-wake.C:
			f.onDeadlines()
		case <-touchC:
			f.media.sess.Touch()
		}
	}
	f.finish()
}

// start forwards the INVITE to one binding.
func (f *fork) start(b store.Binding) {
	p := f.p
	br := &branch{b: b, sent: p.now(), transport: strings.ToUpper(b.Transport)}
	br.dest, _ = router.Destination(b)
	nodeAddr, remote := p.remote(b)
	if remote { // the owning node sends it down the phone's flow
		br.dest, br.transport = nodeAddr, "UDP"
	}
	if br.transport == "" {
		br.transport = "UDP"
	}
	f.branches = append(f.branches, br)
	var u sip.Uri
	if err := sip.ParseUri(b.Contact, &u); err != nil {
		br.final, br.synthetic, br.reason = 500, true, "unusable contact "+b.Contact
		return
	}
	r := forwardCopy(f.req)
	r.Recipient = u
	if f.offer != nil {
		r.SetBody(f.offer)
	}
	p.popOwnRoutes(r)
	for r.RemoveHeader("Proxy-Authorization") {
	}
	for r.RemoveHeader(cluster.Header) {
	}
	if remote {
		r.AppendHeader(sip.NewHeader(cluster.Header, p.d.Nodes.Sign(f.rec.CallID, r.Recipient.String(), fromValue(r), f.decision.Domain)))
	}
	p.prepareForward(r, br.dest, br.transport)
	in := strings.ToUpper(f.req.Transport())
	if in != br.transport {
		// RFC 5658: one entry per side when the transport changes.
		r.PrependHeader(p.recordRoute(in, f.token))
	}
	r.PrependHeader(p.recordRoute(br.transport, f.token))
	tx, err := p.d.Client.TransactionRequest(context.Background(), r, prebuilt)
	if err != nil {
		br.final, br.synthetic = 408, true
		br.reason = "could not send the INVITE to " + br.dest + " over " + br.transport + ": " + err.Error()
		f.unreachable(br, br.reason)
		return
	}
	br.req, br.tx = r, tx
	tx.OnRetransmission(p.forwardStateless)
	f.live++
}

// watch passes a branch's responses to the fork until the final one or
// the end of its transaction (when the call is forked to more than one
// branch; run reads a single branch itself).
func (f *fork) watch(br *branch) {
	for {
		select {
		case res := <-br.tx.Responses():
			f.events <- bevent{br: br, res: res}
			if res.StatusCode >= 200 {
				return
			}
		case <-br.tx.Done():
			f.events <- bevent{br: br}
			return
		}
	}
}

func (f *fork) onEvent(ev bevent) {
	br, res := ev.br, ev.res
	if res == nil {
		f.live--
		if br.final == 0 {
			br.final, br.synthetic = 408, true
			if br.reason == "" {
				br.reason = "no final response"
				if err := br.tx.Err(); err != nil {
					br.reason += " (" + err.Error() + ")"
				}
			}
			if !br.responded {
				f.unreachable(br, br.reason)
			}
		}
		return
	}
	br.responded = true
	f.settled()
	code := res.StatusCode
	if code < 200 {
		br.provisional = true
		if code >= 180 {
			br.ringing = true
		}
		if br.cancelWanted && br.cancelAt.IsZero() && br.final == 0 {
			f.cancel(br)
		}
		if code > 100 && !f.finalSent {
			// Followed first: a PRACK may come back as soon as it is sent.
			f.follow(br, res, false)
			f.p.respond(f.tx, f.upstream(res))
		}
		return
	}
	f.live--
	late := br.final != 0 // we had given up on it already
	br.res = res
	if !late || res.IsSuccess() {
		br.final, br.synthetic = code, false
		if br.reason == "" || res.IsSuccess() {
			br.reason = res.Reason
		}
	}
	if res.IsSuccess() {
		if f.finalSent {
			// A 2xx after the caller got its final answer (cancelled, timed
			// out, or answered by another phone) is still relayed: RFC 3261
			// §16.7 step 5. The caller ACKs and hangs up through us: its
			// dialog is followed (without a call record of its own).
			if d := f.follow(br, res, false); d != nil {
				if f.keep == nil {
					f.keep = map[*dialog]bool{}
				}
				f.keep[d] = true
			}
			f.p.forwardStateless(res)
			br.reason = res.Reason + " (answered after the call was settled; relayed to the caller)"
			return
		}
		f.answer(br, res)
		return
	}
	if code >= 600 && !f.finalSent {
		f.cancelOthers(br, "cancelled: another phone declined with "+res.Reason)
	}
}

// answer relays the first 2xx, cancels the other branches and starts
// following the dialog.
func (f *fork) answer(br *branch, res *sip.Response) {
	p := f.p
	now := p.now()
	f.finalSent, f.finalAt, f.answered = true, now, br
	f.rec.Answer, f.rec.SIPStatus = now, res.StatusCode
	f.cancelOthers(br, "cancelled: answered on another phone")
	f.rec.Branches = f.branchRecords()
	if f.media == nil {
		f.rec.Media = unrelayedLegs(f.offerAddr, registrar.SourceAddr(f.req.Source()), f.offerWebRTC,
			res.Body(), registrar.SourceAddr(res.Source()))
	}
	// The dialog is followed before the 2xx goes up: the caller's ACK and
	// an immediate BYE may arrive (on another goroutine) as soon as it has.
	if f.dlg = f.follow(br, res, true); f.dlg == nil {
		p.log.Warn("proxy: call not followed: too many dialogs or duplicate", "call_id", f.rec.CallID)
	}
	p.respond(f.tx, f.upstream(res))
	if f.live > 0 {
		// Else finish saves the record right away.
		p.d.Calls.Save(f.rec)
	}
}

// upstream turns a callee's response into the caller's (see upstream),
// its SDP rewritten when the call's media are relayed.
func (f *fork) upstream(res *sip.Response) *sip.Response {
	r := upstream(res, f.upDest, f.upTransport)
	if f.media != nil && len(r.Body()) > 0 {
		if err := f.p.relaySDP(f.media, media.Callee, r, registrar.SourceAddr(res.Source())); err != nil {
			f.p.log.Info("proxy: media relay: SDP of the callee's answer not rewritten", "call_id", f.rec.CallID, "error", err)
		}
	}
	return r
}

// follow records the dialog a response with a To tag from branch br
// creates or confirms (answered: a 2xx, with the call record): both
// parties' addresses, targets and route sets, so that its in-dialog
// requests can be routed (nextHop). It returns nil when the table is full.
func (f *fork) follow(br *branch, res *sip.Response, answered bool) *dialog {
	p := f.p
	to := res.To()
	if to == nil {
		return nil
	}
	tag := tagOf(to.Params)
	if tag == "" {
		return nil
	}
	d := f.early[tag]
	if d == nil {
		d = &dialog{callID: f.rec.CallID, callerTag: tagOf(f.req.From().Params), calleeTag: tag, token: f.token,
			caller: side{dest: f.req.Source(), transport: strings.ToUpper(f.req.Transport()),
				routes: routeSet(f.req.GetHeaders("Record-Route")),
				ips:    []netip.Addr{registrar.SourceAddr(f.req.Source())}},
			callee: side{dest: br.dest, transport: br.transport, routes: calleeRoutes(p, res),
				ips: []netip.Addr{registrar.SourceAddr(br.dest)}},
			last: p.now()}
		d.caller.addr, d.callee.addr = f.req.From().Value(), to.Value()
		if cs := f.req.CSeq(); cs != nil {
			d.caller.cseq, d.inviteCSeq = cs.SeqNo, cs.SeqNo
		}
		if ip := registrar.SourceAddr(br.b.Source); ip.IsValid() && ip != d.callee.ips[0] {
			d.callee.ips = append(d.callee.ips, ip)
		}
		d.setContact(&d.caller, f.req.Contact())
		if !p.dialogs.add(d) {
			return nil
		}
		if f.early == nil {
			f.early = map[string]*dialog{}
		}
		f.early[tag] = d
	}
	d.addIP(&d.callee, registrar.SourceAddr(res.Source()))
	d.setContact(&d.callee, res.Contact())
	if answered {
		d.mu.Lock()
		d.confirmed, d.rec, d.last = true, f.rec, p.now()
		if f.media != nil && d.media == nil {
			d.media = f.media
		}
		d.mu.Unlock()
	}
	return d
}

// calleeRoutes returns the Routes that follow ours in requests to the
// callee: the Record-Route entries above ours in its answer (proxies
// between us and the callee), in reverse order (RFC 3261 §12.1.2).
func calleeRoutes(p *Proxy, res *sip.Response) []string {
	var above []string
	for _, h := range res.GetHeaders("Record-Route") {
		rr, ok := h.(*sip.RecordRouteHeader)
		if ok && p.isOwnURI(&rr.Address) {
			break
		}
		above = append(above, routeSet([]sip.Header{h})...)
	}
	slices.Reverse(above)
	return above
}

// cancelOthers CANCELs every pending branch but except (RFC 3261 §16.7
// step 10, §16.10). A branch that has not answered anything yet gets its
// CANCEL after its first provisional response.
func (f *fork) cancelOthers(except *branch, reason string) {
	for _, br := range f.branches {
		if br == except || br.final != 0 || br.cancelWanted || br.tx == nil {
			continue
		}
		br.cancelWanted, br.reason = true, reason
		if br.provisional {
			f.cancel(br)
		}
	}
}

func (f *fork) cancel(br *branch) {
	br.cancelAt = f.p.now()
	f.p.sendCancel(br.req)
}

// onRingTimeout ends ringing after the callee's call timeout: 480
// NO_ANSWER, or 408 RECOVERY_ON_TIMER_EXPIRE when no phone answered
// anything at all (dead phones, closed NAT pinholes).
func (f *fork) onRingTimeout() {
	if f.finalSent {
		return
	}
	p := f.p
	anyResponse := false
	for _, br := range f.branches {
		if br.responded {
			anyResponse = true
		}
	}
	for _, br := range f.branches {
		if br.final == 0 && !br.responded {
			f.giveUp(br, fmt.Sprintf("no response within the ring time (%s)", f.decision.Timeout))
		}
	}
	f.cancelOthers(nil, fmt.Sprintf("cancelled: no answer within %s (call timeout of %s)", f.decision.Timeout, f.rec.To))
	c := cause.NoAnswer
	if !anyResponse {
		c = cause.RecoveryOnTimerExpire
	}
	status := p.answerCause(f.req, f.tx, c)
	f.finalSent, f.finalAt = true, p.now()
	f.rec.SIPStatus, f.cause, f.by = status, c, calls.ByServer
}

// onCallerCancel: sipgo already answered the CANCEL (200) and the INVITE
// (487); every pending branch is cancelled.
func (f *fork) onCallerCancel() {
	if f.finalSent {
		return
	}
	f.finalSent, f.finalAt = true, f.p.now()
	f.rec.SIPStatus, f.cause, f.by = 487, cause.OriginatorCancel, calls.ByCaller
	f.cancelOthers(nil, "cancelled by the caller")
}

// giveUp ends a branch that never answered: 408, binding unreachable.
func (f *fork) giveUp(br *branch, reason string) {
	br.final, br.synthetic, br.reason, br.terminated = 408, true, reason, true
	f.unreachable(br, reason)
	br.tx.Terminate()
}

// onDeadlines gives up on silent branches and on branches that ignore
// their CANCEL.
func (f *fork) onDeadlines() {
	now := f.p.now()
	for _, br := range f.branches {
		if br.final != 0 || br.terminated || br.tx == nil {
			continue
		}
		switch {
		case !br.responded && now.Sub(br.sent) >= f.p.cfg.NoResponseTimeout:
			f.giveUp(br, fmt.Sprintf("no response at all (not even 100 Trying) within %s", f.p.cfg.NoResponseTimeout))
		case !br.cancelAt.IsZero() && now.Sub(br.cancelAt) >= sip.Timer_B:
			br.final, br.synthetic, br.terminated = 408, true, true
			br.reason += "; no final response to the CANCEL"
			br.tx.Terminate()
		}
	}
}

// resetWake arms t for the earliest branch deadline.
func (f *fork) resetWake(t *time.Timer) {
	var next time.Time
	for _, br := range f.branches {
		if br.final != 0 || br.terminated || br.tx == nil {
			continue
		}
		var d time.Time
		switch {
		case !br.responded:
			d = br.sent.Add(f.p.cfg.NoResponseTimeout)
		case !br.cancelAt.IsZero():
			d = br.cancelAt.Add(sip.Timer_B)
		default:
			continue
		}
		if next.IsZero() || d.Before(next) {
			next = d
		}
	}
	wait := time.Hour
	if !next.IsZero() {
		wait = max(next.Sub(f.p.now()), time.Millisecond)
	}
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(wait)
}

func (f *fork) allFinal() bool {
	for _, br := range f.branches {
		if br.final == 0 {
			return false
		}
	}
	return true
}

// sendBest answers the caller with the best final response of the
// branches (RFC 3261 §16.7 step 6): a 6xx if any, else the lowest class; a
// real answer before one we made up for a silent phone; busy first among
// the 4xx. The answer carries a Q.850 Reason naming the cause.
func (f *fork) sendBest() {
	p := f.p
	var best *branch
	for _, br := range f.branches {
		if best == nil || rank(br) < rank(best) {
			best = br
		}
	}
	f.finalSent, f.finalAt = true, p.now()
	if best == nil || best.synthetic || best.res == nil {
		f.cause = cause.RecoveryOnTimerExpire
		f.rec.SIPStatus = p.answerCause(f.req, f.tx, f.cause)
		f.by = calls.ByServer
		return
	}
	res := upstream(best.res, f.upDest, f.upTransport)
	f.cause = cause.FromCalleeStatus(best.final)
	if best.final == 488 && f.media != nil {
		// The callee accepted none of the caller's codecs (the relay does
		// not transcode): say which each side has.
		f.cause = f.p.codecRefusal(f.media, best.res, res)
	}
	if res.StatusCode == 503 {
		// A 503 from a phone is not about us: 500 (RFC 3261 §16.7 step 6).
		res.StatusCode, res.Reason = 500, "Server Internal Error"
	}
	if res.GetHeader("Reason") == nil {
		if rh := cause.ReasonHeader(f.cause); rh != "" {
			res.AppendHeader(sip.NewHeader("Reason", rh))
		}
	}
	p.respond(f.tx, res)
	f.rec.SIPStatus, f.by = res.StatusCode, calls.ByCallee
}

func rank(br *branch) int {
	class := br.final / 100
	if class == 6 {
		class = 0
	}
	r := class * 10
	if br.synthetic {
		r += 4
	}
	if br.final != 486 && br.final != 600 {
		r++
	}
	return r
}

// unreachable marks a branch's binding unreachable (it did not answer an
// INVITE) and journals the change.
func (f *fork) unreachable(br *branch, reason string) {
	p := f.p
	prev, b, ok := p.d.Loc.SetPing(br.b.Key(), false, 0)
	if !ok || prev == b.PingStatus {
		return
	}
	p.d.Journal.Record(journal.Event{Kind: journal.KindQualify, Cause: cause.Unreachable, Extension: b.Extension,
		Domain: b.Domain, Source: b.Source, Transport: b.Transport, UserAgent: b.UserAgent, CallID: f.rec.CallID,
		AuthUser: b.AuthUser, Realm: b.Realm,
		Detail: "contact " + b.Contact + " did not answer a call's INVITE: " + reason})
}

func (f *fork) branchRecords() []calls.Branch {
	out := make([]calls.Branch, len(f.branches))
	for i, br := range f.branches {
		out[i] = calls.Branch{Contact: br.b.Contact, Destination: br.dest, Transport: br.transport,
			UserAgent: br.b.UserAgent, Status: br.final, Reason: br.reason, Ringing: br.ringing}
	}
	return out
}

// finish completes the call record and journals the decision once every
// branch has ended.
func (f *fork) finish() {
	p := f.p
	for _, d := range f.early {
		if d != f.dlg && !f.keep[d] {
			p.dialogs.drop(d)
		}
	}
	branches := f.branchRecords()
	ev := f.ev
	ev.Time = f.finalAt
	ev.Status = f.rec.SIPStatus
	var tried []string
	for _, b := range branches {
		s := b.Contact + " " + strconv.Itoa(b.Status)
		if b.Reason != "" {
			s += " " + b.Reason
		}
		tried = append(tried, s)
	}
	summary := f.rec.From + " -> " + f.rec.To + ": "
	if f.answered != nil {
		ev.Cause = cause.NormalClearing
		ev.Detail = summary + "answered by " + f.answered.b.Contact + "; tried " + strings.Join(tried, ", ")
		p.d.Journal.Record(ev)
		if f.dlg != nil {
			f.dlg.mu.Lock()
			f.dlg.rec.Branches = branches
			rec := f.dlg.rec
			f.dlg.mu.Unlock()
			p.d.Calls.Save(rec)
			return
		}
		f.rec.Branches = branches
		f.rec.End, f.rec.Cause, f.rec.HangupBy = f.finalAt, cause.NormalClearing, calls.ByServer
		f.rec.Detail = "answered, but the call could not be followed (dialog table full): end time unknown"
		if f.media != nil {
			f.rec.Media = p.closeMedia(f.media)
		}
		p.d.Calls.Save(f.rec)
		return
	}
	f.rec.Branches = branches
	f.rec.End, f.rec.Cause, f.rec.HangupBy = f.finalAt, f.cause, f.by
	if f.media != nil {
		f.rec.Media = p.closeMedia(f.media)
	}
	if len(tried) > 0 {
		f.rec.Detail = "tried " + strings.Join(tried, ", ")
	}
	p.d.Calls.Save(f.rec)
	ev.Cause = f.cause
	ev.Detail = summary + string(f.cause)
	if len(tried) > 0 {
		ev.Detail += "; tried " + strings.Join(tried, ", ")
	}
	p.d.Journal.Record(ev)
}

// sendCancel CANCELs a forwarded INVITE (RFC 3261 §9.1): same Request-URI,
// top Via, Route, Call-ID, From, To and CSeq number. Its answer is awaited
// in the background and discarded.
func (p *Proxy) sendCancel(inv *sip.Request) {
	c := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	c.AppendHeader(inv.Via().Clone())
	for _, h := range inv.GetHeaders("Route") {
		c.AppendHeader(sip.HeaderClone(h))
	}
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	c.AppendHeader(sip.HeaderClone(inv.From()))
	c.AppendHeader(sip.HeaderClone(inv.To()))
	c.AppendHeader(sip.HeaderClone(inv.CallID()))
	c.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	c.SetBody(nil)
	c.SetTransport(inv.Transport())
	c.SetDestination(inv.Destination())
	c.Laddr = inv.Laddr
	tx, err := p.d.Client.TransactionRequest(context.Background(), c, prebuilt)
	if err != nil {
		p.log.Debug("proxy: send CANCEL", "to", inv.Destination(), "error", err)
		return
	}
	go func() {
		defer tx.Terminate()
		t := time.NewTimer(sip.Timer_F)
		defer t.Stop()
		for {
			select {
			case res := <-tx.Responses():
				if res.StatusCode >= 200 {
					return
				}
			case <-tx.Done():
				return
			case <-t.C:
				return
			}
		}
	}()
}
