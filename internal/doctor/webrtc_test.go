package doctor

import (
	"context"
	"strings"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/store"
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

// TestDiagnoseClosedWebSocket: a browser phone whose WebSocket closed (the
// server journaled connection_closed and marked it unreachable) is
// explained by the closed connection, with a fix for browser phones, not
// by NAT or OPTIONS advice.
func TestDiagnoseClosedWebSocket(t *testing.T) {
	in := base()
	const src, ua = "203.0.113.7:52144", "JsSIP 3.13.8"
	in.Bindings = []store.Binding{binding(src, ua, func(b *store.Binding) {
		b.Transport, b.Contact = "WSS", "sip:x7k2@df7jal23ls0d.invalid;transport=ws"
		b.PingStatus, b.PingAt = "unreachable", at("14:02:11")
	})}
	detail := "registered over WSS from 203.0.113.7; the WebSocket closed at 14:02:11 (the browser tab was probably closed or lost network); " +
		"contact sip:x7k2@df7jal23ls0d.invalid;transport=ws is unreachable: calls get 480 until it registers again"
	in.History.Recent = newestFirst(
		ev(at("14:00:00"), cause.Registered, src, ua, func(e *journal.Event) { e.Transport = "WSS" }),
		ev(at("14:02:11"), cause.ConnectionClosed, src, ua, func(e *journal.Event) {
			e.Kind, e.Transport, e.Detail = journal.KindBinding, "WSS", detail
		}))
	in.Bindings[0].RegisteredAt = at("14:00:00")
	r := Diagnose(context.Background(), in)
	if r.Callable || r.Cause != cause.ConnectionClosed || !strings.Contains(r.Verdict, "the WebSocket closed at 14:02:11") {
		t.Fatalf("verdict %q cause %s", r.Verdict, r.Cause)
	}
	for _, f := range r.Findings {
		if f.Check != CheckReachability {
			continue
		}
		ev := strings.Join(f.Evidence, "\n")
		if f.Status != Fail || !strings.Contains(ev, "the WebSocket closed") || strings.Contains(ev, "OPTIONS") ||
			!strings.Contains(f.Fix, "browser tab") || strings.Contains(f.Fix, "SIP ALG") {
			t.Fatalf("reachability finding %+v", f)
		}
		return
	}
	t.Fatal("no reachability finding")
}

// TestDiagnoseMediaRelayCalls: calls to an extension refused for want of a
// media relay get a fix that says so, not the generic one.
func TestDiagnoseMediaRelayCalls(t *testing.T) {
	in := scenarios()["registered"]()
	in.Calls.Available = true
	in.Calls.Failed = []Call{{Time: at("14:20:00"), From: "2001", To: "2002", Status: 488, Cause: cause.WebRTCNeedsMediaRelay}}
	r := Diagnose(context.Background(), in)
	for _, f := range r.Findings {
		if f.Check == CheckCalls {
			if f.Status != Warn || f.Cause != cause.WebRTCNeedsMediaRelay || !strings.Contains(f.Fix, "media relay") {
				t.Fatalf("calls finding %+v", f)
			}
			return
		}
	}
	t.Fatal("no calls finding")
}
