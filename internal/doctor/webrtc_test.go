package doctor

import (
	"context"
	"strings"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/cause"
)

// TestDiagnoseCallMediaRelay: a last call refused for want of a media
// relay (a browser and a plain-RTP phone) makes the verdict say so, and
// the last-call finding explains it and says what to do.
func TestDiagnoseCallMediaRelay(t *testing.T) {
	sc := scenarios()
	caller := sc["registered"]()
	caller.Number, caller.Ext.Number = "2001", "2001"
	for i := range caller.Bindings {
		caller.Bindings[i].Extension, caller.Bindings[i].Contact = "2001", "sip:2001@192.168.1.50:5060"
	}
	for i := range caller.History.Recent {
		caller.History.Recent[i].Extension = "2001"
	}
	in := CallInputs{Caller: caller, Callee: sc["registered"](), CallsAvailable: true,
		Last: &Call{Time: at("14:20:00"), From: "2001", To: "2002", Status: 488, Cause: cause.WebRTCNeedsMediaRelay,
			Detail: "WebRTC offer to 2002 registered over UDP 192.168.1.60:5060: ..."}}
	r := DiagnoseCall(context.Background(), in)
	if r.WouldWork || r.Cause != cause.WebRTCNeedsMediaRelay || !strings.Contains(r.Verdict, "fails with 488") ||
		!strings.Contains(r.Verdict, "media relay") {
		t.Fatalf("verdict %q cause %s would_work %v", r.Verdict, r.Cause, r.WouldWork)
	}
	f := r.Findings[0]
	if f.Status != Warn || f.Cause != cause.WebRTCNeedsMediaRelay || f.Fix == "" ||
		!strings.Contains(strings.Join(f.Evidence, "\n"), "WebRTC browser") {
		t.Fatalf("finding %+v", f)
	}
}
