package proxy

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// respondSpy is a server transaction that only records what Respond saw.
type respondSpy struct {
	sip.ServerTransaction // nil: any other method panics
	respond               func(*sip.Response)
}

func (s respondSpy) Respond(res *sip.Response) error { s.respond(res); return nil }

// TestAnswerFollowsDialogFirst: when a branch answers, the dialog is in
// the table before the 2xx goes to the caller, whose ACK and BYE may come
// back (on another goroutine) at once.
func TestAnswerFollowsDialogFirst(t *testing.T) {
	p := testProxy()
	invite := newReq(t, "INVITE sip:2002@192.0.2.10 SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:2001@pbx.example>;tag=a\r\n"+
		"To: <sip:2002@pbx.example>\r\nCall-ID: call-7\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"+
		"Contact: <sip:2001@10.0.0.1:5060>\r\nContent-Length: 0\r\n\r\n")
	ok := newReq(t, "INVITE sip:2002@10.0.0.2:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"+
		"From: <sip:2001@pbx.example>;tag=a\r\nTo: <sip:2002@pbx.example>\r\nCall-ID: call-7\r\n"+
		"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	res := sip.NewResponseFromRequest(ok, 200, "OK", nil)
	res.To().Params.Add("tag", "b")

	relayed, followed := false, false
	f := &fork{p: p, req: invite, upDest: "10.0.0.1:5060", upTransport: "UDP",
		tx: respondSpy{respond: func(r *sip.Response) {
			relayed = r.StatusCode == 200
			d, _, _ := p.dialogs.find("call-7", "a", "b", time.Now())
			followed = d != nil
		}}}
	f.rec.CallID = "call-7"
	br := &branch{dest: "10.0.0.2:5062", transport: "UDP"}
	f.branches = []*branch{br}
	f.answer(br, res)
	if !relayed {
		t.Fatal("the 2xx was not relayed to the caller")
	}
	if !followed {
		t.Fatal("the 2xx went up before the dialog was followed")
	}
}

// TestEarlyDialogs: a 1xx with a To tag makes an early dialog (so PRACK
// and UPDATE before the answer are routed), the 2xx confirms the same
// dialog, and the fork's end forgets the early dialogs of the branches
// that did not answer.
func TestEarlyDialogs(t *testing.T) {
	p := testProxy()
	invite := newReq(t, "INVITE sip:2002@192.0.2.10 SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:2001@pbx.example>;tag=a\r\n"+
		"To: <sip:2002@pbx.example>\r\nCall-ID: call-8\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"+
		"Contact: <sip:2001@10.0.0.1:5060>\r\nContent-Length: 0\r\n\r\n")
	invite.SetSource("10.0.0.1:5060")
	mk := func(status int, reason, tag, src string) *sip.Response {
		res := sip.NewResponseFromRequest(invite, status, reason, nil)
		res.To().Params.Add("tag", tag)
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: "10.0.0.2", Port: 5062}})
		res.SetSource(src)
		return res
	}
	f := &fork{p: p, req: invite, upDest: "10.0.0.1:5060", upTransport: "UDP", token: p.newToken("call-8", "a"),
		tx: respondSpy{respond: func(*sip.Response) {}}}
	f.rec.CallID = "call-8"
	b1 := &branch{dest: "10.0.0.2:5062", transport: "UDP"}
	b2 := &branch{dest: "10.0.0.3:5062", transport: "UDP"}
	f.branches = []*branch{b1, b2}

	early := f.follow(b1, mk(183, "Session Progress", "b", "10.0.0.2:5062"), false)
	if early == nil || early.isConfirmed() {
		t.Fatal("no early dialog from a 183 with a To tag")
	}
	prack := newReq(t, "PRACK sip:10.0.0.2:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK2\r\n"+
		"Route: <sip:192.0.2.10:5070;lr;sb="+f.token+">\r\nFrom: <sip:2001@pbx.example>;tag=a\r\n"+
		"To: <sip:2002@pbx.example>;tag=b\r\nCall-ID: call-8\r\nCSeq: 2 PRACK\r\nRAck: 1 1 INVITE\r\n"+
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
	prack.SetSource("10.0.0.1:5060")
	if h, r := p.nextHop(prack); r != nil || h.dest != "10.0.0.2:5062" {
		t.Fatalf("PRACK in the early dialog: %+v %+v", h, r)
	}
	other := f.follow(b2, mk(180, "Ringing", "c", "10.0.0.3:5062"), false)
	if other == nil {
		t.Fatal("no early dialog for the second phone")
	}
	f.answer(b1, mk(200, "OK", "b", "10.0.0.2:5062"))
	if f.dlg != early || !early.isConfirmed() || p.dialogs.len() != 2 {
		t.Fatalf("the 2xx did not confirm the early dialog (dialogs %d)", p.dialogs.len())
	}
	f.finish()
	if d, _, _ := p.dialogs.find("call-8", "a", "c", time.Now()); d != nil {
		t.Fatal("the unanswered phone's early dialog outlived the fork")
	}
	if d, _, _ := p.dialogs.find("call-8", "a", "b", time.Now()); d != early {
		t.Fatal("the answered dialog was dropped")
	}
}
