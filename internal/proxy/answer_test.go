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
