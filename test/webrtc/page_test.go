package webrtc

import (
	"testing"
	"time"
)

// TestPageStarts: the phone page loads JsSIP in Chromium and starts a UA
// that tries the WebSocket it was given (here a loopback port nobody
// listens on, so it never connects nor registers) without a script error.
func TestPageStarts(t *testing.T) {
	base := ServePage(t)
	bctx := Launch(t, "", time.Minute)
	p := Open(t, bctx, base, "wss://127.0.0.1:1", "2001", "pw", "pbx.test")
	s := p.Wait("started", 10*time.Second, func(s State) bool { return len(s.Errors) > 0 || !s.Registered })
	if len(s.Errors) > 0 || s.Registered || s.Connected {
		t.Fatalf("state %+v", s)
	}
}
