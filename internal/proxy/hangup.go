package proxy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/cause"
)

// ErrNoSuchCall is returned by Hangup when no answered call the proxy
// follows has the Call-ID.
var ErrNoSuchCall = errors.New("no call in progress with this Call-ID")

// hangupWait bounds how long Hangup waits for the parties' answers.
const hangupWait = 5 * time.Second

// HangupResult is what each party answered the BYE Hangup sent it (0: no
// answer in time).
type HangupResult struct {
	Caller, Callee int
}

// findAnswered returns an answered dialog with Call-ID callID.
func (t *dialogTable) findAnswered(callID string) *dialog {
	s := &t.shards[t.shard(callID)]
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, d := range s.m {
		if strings.HasPrefix(k, callID+"\x00") && d.callID == callID && d.isConfirmed() {
			return d
		}
	}
	return nil
}

// Hangup ends an answered call the proxy follows, as if each party had
// hung up on the other: a BYE to each at the address and target recorded
// for the dialog, with the other party's From/To and a CSeq above any seen.
// The call record ends NORMAL_CLEARING, hung up by calls.ByAdmin, with who
// (by) in its detail. The dialog lingers like any ended one, so a crossing
// BYE from a phone is still answered.
func (p *Proxy) Hangup(ctx context.Context, callID, by string) (HangupResult, error) {
	d := p.dialogs.findAnswered(callID)
	if d == nil {
		return HangupResult{}, fmt.Errorf("%w: %s", ErrNoSuchCall, callID)
	}
	if !p.dialogs.remove(d, p.now()) {
		return HangupResult{}, fmt.Errorf("%w: %s (it just ended)", ErrNoSuchCall, callID)
	}
	p.endDialog(d, cause.NormalClearing, calls.ByAdmin, "hung up by "+by+" (switchboard calls hangup)")
	d.mu.Lock()
	const reason = `Q.850;cause=16;text="hung up by the administrator"`
	toCallee := p.byeFor(d, &d.caller, &d.callee, reason)
	toCaller := p.byeFor(d, &d.callee, &d.caller, reason)
	d.mu.Unlock()
	var res HangupResult
	var wg sync.WaitGroup
	for _, b := range []struct {
		req    *sip.Request
		status *int
	}{{toCallee, &res.Callee}, {toCaller, &res.Caller}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			*b.status = p.sendBye(ctx, b.req)
		}()
	}
	wg.Wait()
	return res, nil
}

// byeFor builds the BYE that party from would send to party to, with a
// Reason header reason. d.mu is held.
func (p *Proxy) byeFor(d *dialog, from, to *side, reason string) *sip.Request {
	var target sip.Uri
	if to.target == "" || sip.ParseUri(to.target, &target) != nil {
		// No Contact recorded: the address the party is reached at.
		host, port, _ := strings.Cut(to.dest, ":")
		target = sip.Uri{Scheme: "sip", Host: host}
		target.Port, _ = strconv.Atoi(port)
	}
	req := sip.NewRequest(sip.BYE, target)
	req.AppendHeader(sip.NewHeader("From", from.addr))
	req.AppendHeader(sip.NewHeader("To", to.addr))
	cid := sip.CallIDHeader(d.callID)
	req.AppendHeader(&cid)
	from.cseq++
	req.AppendHeader(&sip.CSeqHeader{SeqNo: from.cseq, MethodName: sip.BYE})
	for _, r := range to.routes {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	req.AppendHeader(sip.NewHeader("Reason", reason))
	req.AppendHeader(sip.NewHeader("Content-Length", "0"))
	p.prepareForward(req, to.dest, to.transport)
	return req
}

// sendBye sends req and returns the final status it got (0: none within
// hangupWait).
func (p *Proxy) sendBye(ctx context.Context, req *sip.Request) int {
	ctx, cancel := context.WithTimeout(ctx, hangupWait)
	defer cancel()
	tx, err := p.d.Client.TransactionRequest(ctx, req, prebuilt)
	if err != nil {
		p.log.Debug("proxy: hangup: send BYE", "to", req.Destination(), "error", err)
		return 0
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode >= 200 {
				return res.StatusCode
			}
		case <-tx.Done():
			return 0
		case <-ctx.Done():
			return 0
		}
	}
}
