package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestLateOfferToBrowser: a UDP phone (SIPp) calls an extension registered
// only over WSS with a late offer (INVITE without SDP). The browser would
// offer DTLS-SRTP and ICE in its 200, which the phone cannot answer, so the call is
// refused at once with 488 and Reason webrtc_needs_media_relay, recorded
// as a late offer, and the WebSocket never sees the INVITE.
func TestLateOfferToBrowser(t *testing.T) {
	t.Parallel()
	Need(t, "sipp")
	s := Start(t, "", "--wss", "127.0.0.1:0")
	s.AddExt("2001", "secret-2001")
	s.AddExt("2002", "secret-2002")
	addr := s.ListenerAddr("wss")
	if addr == "" {
		t.Fatalf("no wss listener in the start line:\n%s", s.Log())
	}
	u, err := dialWS(t, s, "wss", addr, "https://127.0.0.1")
	if err != nil {
		t.Fatalf("WSS dial: %v\n%s", err, tail(s.Log(), 3000))
	}
	if r := u.register("2002", "secret-2002", 300); r.Status != 200 {
		t.Fatalf("REGISTER over WSS: %d\n%s", r.Status, r.Raw)
	}

	r := SIPp(t, s.Addr, "call-uac-late-offer-fail.xml", 1,
		"-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2002")))
	if r.Code != 0 {
		t.Fatalf("caller scenario failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, tail(s.Log(), 3000))
	}
	fin := lastFinalResponse(t, r)
	c := wantFailure(t, s, fin, "2002", "488", `Q.850;cause=88;text="webrtc_needs_media_relay"`, "webrtc_needs_media_relay")
	if !strings.Contains(c.Detail, "late offer") || !strings.Contains(c.Detail, "media relay") {
		t.Fatalf("call record detail %q, want it to name the late offer and the media relay", c.Detail)
	}
	if w := strings.Join(fin.Get("Warning"), " "); !strings.Contains(w, "media relay") {
		t.Fatalf("Warning %q, want it to say why", w)
	}
	if m := u.read(300 * time.Millisecond); strings.HasPrefix(m, "INVITE ") {
		t.Fatalf("the browser got the INVITE of a refused call:\n%s", m)
	}
}
