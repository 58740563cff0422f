package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// relayedLeg is a leg that carried 30 s of G.711 both ways from 14:20:02
// to 14:20:32 (the call ends at 14:20:32).
func relayedLeg(side, sdp, sip, latched string) store.MediaLeg {
	return store.MediaLeg{Side: side, Relayed: true, Codec: "PCMU", SignalledAddr: sdp, SIPSource: sip, LatchedAddr: latched,
		PacketsIn: 1500, BytesIn: 258000, PacketsOut: 1500, BytesOut: 258000,
		FirstPacketIn: at("14:20:02"), LastPacketIn: at("14:20:32"), Lost: 2, JitterMS: 1.4, MOS: 4.4}
}

func silent(l store.MediaLeg) store.MediaLeg {
	l.PacketsIn, l.BytesIn, l.FirstPacketIn, l.LastPacketIn, l.LatchedAddr, l.Lost, l.JitterMS, l.MOS =
		0, 0, time.Time{}, time.Time{}, "", 0, 0, 0
	return l
}

// mediaScenarios are synthetic records of an answered call 2001 -> 2002
// (call 12, 14:20:00 to 14:20:32), one per media verdict.
func mediaScenarios() map[string]struct {
	media []store.MediaLeg
	want  cause.Code // the report's cause
	words []string   // in the verdict
} {
	caller := relayedLeg("caller", "192.168.1.50:4000", "192.168.1.50", "192.168.1.50:4000")
	callee := relayedLeg("callee", "192.168.1.60:5000", "192.168.1.60", "192.168.1.60:5000")
	natCallee := relayedLeg("callee", "10.0.0.5:4000", "203.0.113.7", "")
	stopped := callee
	stopped.LastPacketIn, stopped.PacketsIn = at("14:20:13"), 550
	stray := silent(callee)
	stray.Stray, stray.StraySource = 812, "198.51.100.23:31000"
	alg := callee
	alg.SignalledAddr, alg.SIPSource, alg.LatchedAddr = "10.0.0.5:4000", "203.0.113.7", "198.51.100.23:31000"
	browser := silent(callee)
	browser.WebRTC, browser.DTLS, browser.SignalledAddr, browser.SIPSource = true, "failed", "[2001:db8::5]:9", "2001:db8::5"
	iceOnly := browser
	iceOnly.DTLS = "ice-connected"
	unrelayed := []store.MediaLeg{{Side: "caller", SignalledAddr: "192.168.1.50:4000", SIPSource: "192.168.1.50"},
		{Side: "callee", SignalledAddr: "10.0.0.5:4000", SIPSource: "203.0.113.7"}}
	// Not relayed (--media-relay never), the caller's SDP address is not its
	// SIP source, neither private nor public: the rule of --media-relay auto.
	mismatch := []store.MediaLeg{{Side: "caller", SignalledAddr: "127.0.0.77:4000", SIPSource: "127.0.0.1"},
		{Side: "callee", SignalledAddr: "127.0.0.1:7000", SIPSource: "127.0.0.1"}}
	return map[string]struct {
		media []store.MediaLeg
		want  cause.Code
		words []string
	}{
		"media_ok":              {[]store.MediaLeg{caller, callee}, cause.Registered, []string{"should work"}},
		"media_never_arrived":   {[]store.MediaLeg{caller, silent(callee)}, cause.MediaNeverArrived, []string{"2002 → 2001: no RTP ever arrived from 2002 (signalled 192.168.1.60:5000, SIP from 192.168.1.60)", "call 12 at 14:20"}},
		"media_behind_nat":      {[]store.MediaLeg{caller, silent(natCallee)}, cause.MediaBehindNAT, []string{"2002 → 2001: no RTP ever arrived from 2002 (signalled 10.0.0.5:4000, SIP from 203.0.113.7)"}},
		"media_stopped":         {[]store.MediaLeg{caller, stopped}, cause.MediaStopped, []string{"2002 → 2001: RTP from 2002 stopped at 14:20:13 after 11s"}},
		"media_sip_alg":         {[]store.MediaLeg{caller, stray}, cause.MediaSIPALG, []string{"no RTP from 2002 was accepted"}},
		"media_sip_alg_latched": {[]store.MediaLeg{caller, alg}, cause.Registered, []string{"should work"}},
		"webrtc_no_dtls":        {[]store.MediaLeg{caller, browser}, cause.WebRTCNoDTLS, []string{"DTLS handshake with the relay never completed (state failed"}},
		"webrtc_no_dtls_ice":    {[]store.MediaLeg{caller, iceOnly}, cause.WebRTCNoDTLS, []string{"its ICE checks reached the relay", "path MTU"}},
		"media_not_relayed":     {unrelayed, cause.Registered, []string{"should work"}},
		"media_none_recorded":   {nil, cause.Registered, []string{"should work"}},
		"media_not_relayed_mismatch": {mismatch, cause.Registered, []string{"should work", "media_behind_nat the media of this call was not relayed",
			"2001's SDP names 127.0.0.77:4000 while its SIP came from 127.0.0.1: 2001 is behind NAT", "--media-relay auto"}},
	}
}

func mediaCallInputs(media []store.MediaLeg) CallInputs {
	sc := scenarios()
	caller := sc["registered"]()
	caller.Number, caller.Ext.Number = "2001", "2001"
	for i := range caller.Bindings {
		caller.Bindings[i].Extension, caller.Bindings[i].Contact = "2001", "sip:2001@192.168.1.50:5060"
	}
	for i := range caller.History.Recent {
		caller.History.Recent[i].Extension = "2001"
	}
	return CallInputs{Caller: caller, Callee: sc["registered"](), CallsAvailable: true,
		Last: &Call{ID: 12, CallID: "abc@192.168.1.50", Time: at("14:20:00"), From: "2001", To: "2002", Domain: "127.0.0.1",
			Status: 200, Cause: cause.NormalClearing, Answered: true, AnswerTime: at("14:20:02"), End: at("14:20:32"),
			Source: "192.168.1.50:5060", Media: media}}
}

// TestMediaVerdicts: each synthetic call record gets its verdict and
// cause; the call section is pinned in a golden file per verdict (UTF-8,
// ASCII, and the JSON of the media findings).
func TestMediaVerdicts(t *testing.T) {
	for name, sc := range mediaScenarios() {
		t.Run(name, func(t *testing.T) {
			r := DiagnoseCall(context.Background(), mediaCallInputs(sc.media))
			if r.Cause != sc.want {
				t.Errorf("cause %s, want %s (verdict %q)", r.Cause, sc.want, r.Verdict)
			}
			for _, w := range sc.words {
				if !strings.Contains(r.Verdict+"\n"+findingsText(r.Findings), w) {
					t.Errorf("%q not in the report:\n%s\n%s", w, r.Verdict, findingsText(r.Findings))
				}
			}
			media := r.Cause != cause.Registered
			if r.WouldWork == media || r.Callable != r.WouldWork {
				t.Errorf("would_work %v callable %v for cause %s", r.WouldWork, r.Callable, r.Cause)
			}
			var buf bytes.Buffer
			for _, o := range []TextOptions{{UTF8: true}, {}} {
				buf.WriteString(o.verdict(r.Verdict, r.WouldWork) + "\n")
				if err := writeFindings(&buf, r.Findings, o, "  "); err != nil {
					t.Fatal(err)
				}
				buf.WriteString("\n")
			}
			b, _ := json.MarshalIndent(r.Findings, "", "  ")
			buf.Write(b)
			buf.WriteString("\n")
			golden(t, name, buf.Bytes())
		})
	}
}

func findingsText(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(string(f.Cause) + " " + strings.Join(f.Evidence, "\n") + "\n" + f.Fix + "\n")
	}
	return b.String()
}

// TestMediaDirections: the direction named is the one whose packets did
// not arrive, whichever side it is, and a silent caller is named as such.
func TestMediaDirections(t *testing.T) {
	caller := relayedLeg("caller", "192.168.1.50:4000", "192.168.1.50", "192.168.1.50:4000")
	callee := relayedLeg("callee", "192.168.1.60:5000", "192.168.1.60", "192.168.1.60:5000")
	r := DiagnoseCall(context.Background(), mediaCallInputs([]store.MediaLeg{silent(caller), callee}))
	if r.Cause != cause.MediaNeverArrived || !strings.Contains(r.Verdict, "2001 → 2002: no RTP ever arrived from 2001") {
		t.Fatalf("silent caller: %s %q", r.Cause, r.Verdict)
	}
	var media []Finding
	for _, f := range r.Findings {
		if f.Check == CheckMedia {
			media = append(media, f)
		}
	}
	if len(media) != 2 || media[0].Status != Fail || media[1].Status != OK {
		t.Fatalf("findings %+v", media)
	}
	// Legs recorded in the other order are still told apart by side.
	r = DiagnoseCall(context.Background(), mediaCallInputs([]store.MediaLeg{callee, silent(caller)}))
	if !strings.Contains(r.Verdict, "2001 → 2002") {
		t.Fatalf("sides swapped: %q", r.Verdict)
	}
	// The callee is not registered now: `doctor call 2001 2002` says so,
	// `doctor call --id 12` answers about that call's audio.
	in0 := mediaCallInputs([]store.MediaLeg{silent(caller), callee})
	in0.Callee = scenarios()["never_seen"]()
	if r := DiagnoseCall(context.Background(), in0); r.Cause != cause.NeverSeen {
		t.Fatalf("newest call, callee gone: %s %q", r.Cause, r.Verdict)
	}
	in0.ByID = true
	if r := DiagnoseCall(context.Background(), in0); r.Cause != cause.MediaNeverArrived || r.WouldWork ||
		!strings.Contains(r.Verdict, "(call 12 at 14:20)") || !strings.Contains(findingsText(r.Findings), "call 12 from 2001 to 2002") {
		t.Fatalf("by id, callee gone: %s %q", r.Cause, r.Verdict)
	}
	// Unanswered and silent: nothing expected, nothing flagged.
	in := mediaCallInputs([]store.MediaLeg{silent(caller), silent(callee)})
	in.Last.Answered, in.Last.AnswerTime, in.Last.Status, in.Last.Cause = false, time.Time{}, 487, cause.OriginatorCancel
	r = DiagnoseCall(context.Background(), in)
	if _, bad := mediaProblem(r.Findings); bad || !r.WouldWork {
		t.Fatalf("unanswered call flagged: %+v", r.Findings)
	}
	// A browser callee that never answered while the caller sent early
	// media: no DTLS was expected.
	browser := silent(callee)
	browser.WebRTC, browser.DTLS = true, "new"
	in = mediaCallInputs([]store.MediaLeg{caller, browser})
	in.Last.Answered, in.Last.AnswerTime, in.Last.Status, in.Last.Cause = false, time.Time{}, 487, cause.OriginatorCancel
	if r := DiagnoseCall(context.Background(), in); r.Cause == cause.WebRTCNoDTLS || !r.WouldWork {
		t.Fatalf("unanswered browser flagged: %s %s", r.Cause, findingsText(r.Findings))
	}
	// Media of a call still up stopped 20 s ago: stopped, "is still up".
	in = mediaCallInputs([]store.MediaLeg{caller, callee})
	in.Last.Active, in.Last.End = true, time.Time{}
	in.Callee.Now, in.Caller.Now = at("14:20:52"), at("14:20:52")
	r = DiagnoseCall(context.Background(), in)
	if r.Cause != cause.MediaStopped || !strings.Contains(findingsText(r.Findings), "the call is still up") {
		t.Fatalf("live call: %s %s", r.Cause, findingsText(r.Findings))
	}
	// Answered 2 s ago and nothing from the callee yet: too early to say.
	in = mediaCallInputs([]store.MediaLeg{caller, silent(callee)})
	in.Last.Active, in.Last.End = true, time.Time{}
	in.Callee.Now, in.Caller.Now = at("14:20:04"), at("14:20:04")
	r = DiagnoseCall(context.Background(), in)
	if _, bad := mediaProblem(r.Findings); bad || !strings.Contains(findingsText(r.Findings), "no RTP from 2002 yet") {
		t.Fatalf("just answered: %s %s", r.Cause, findingsText(r.Findings))
	}
	// The same 20 s later: never arrived.
	in.Callee.Now, in.Caller.Now = at("14:20:24"), at("14:20:24")
	if r = DiagnoseCall(context.Background(), in); r.Cause != cause.MediaNeverArrived {
		t.Fatalf("live one-way call: %s %s", r.Cause, findingsText(r.Findings))
	}
}

// TestMediaCausesDocumented: every media cause is in cause.All and has a
// row in the README's Doctor causes table (checked with Causes by
// TestCausesDocumented).
func TestMediaCausesDocumented(t *testing.T) {
	all := map[cause.Code]bool{}
	for _, c := range cause.All() {
		all[c] = true
	}
	stable := map[cause.Code]bool{}
	for _, c := range Causes() {
		stable[c] = true
	}
	for _, c := range MediaCauses() {
		if !all[c] || !stable[c] {
			t.Errorf("%s: in cause.All %v, in Causes %v", c, all[c], stable[c])
		}
	}
}
