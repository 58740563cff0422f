package e2e

import "testing"

// TestRegisterSmoke: SIPp registers 2001 with digest auth and `reg --json`
// shows the binding with its source, transport and user agent.
func TestRegisterSmoke(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "secret-2001")
	r := SIPp(t, s.Addr, "register.xml", 1, "-inf", CSV(t, "SEQUENTIAL", AuthRow("2001", "secret-2001")))
	if r.Code != 0 {
		t.Fatalf("sipp failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	regs := s.Regs("2001")
	if len(regs) != 1 {
		t.Fatalf("want 1 registration, got %+v", regs)
	}
	g := regs[0]
	if g.Extension != "2001" || g.Transport != "UDP" || g.UserAgent != "SIPp anchor" || g.ExpiresIn < 3500 || g.Source == "" {
		t.Fatalf("unexpected registration %+v", g)
	}
}
