package registrar

import (
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/auth"
)

// TestFirstHeaderAnyCase: the registrar's header lookups ignore the case
// of header names, as sipgo's GetHeader does, and find compact forms.
func TestFirstHeaderAnyCase(t *testing.T) {
	raw := "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n" +
		"From: <sip:2001@127.0.0.1>;tag=1\r\nTo: <sip:2001@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\n" +
		"m: <sip:2001@127.0.0.1:5062>\r\nEXPIRES: 120\r\nuser-agent: Phone 1\r\nContent-Length: 0\r\n\r\n"
	msg, err := sip.NewParser().ParseSIP([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	for name, want := range map[string]string{"Expires": "120", "User-Agent": "Phone 1", "Contact": "<sip:2001@127.0.0.1:5062>"} {
		h := firstHeader(req, name)
		if h == nil || h.Value() != want {
			t.Errorf("%s: got %v, want %q", name, h, want)
		}
		if sh := req.GetHeader(name); sh == nil || sh.Value() != want {
			t.Errorf("%s: sipgo's lookup disagrees: %v", name, sh)
		}
	}
	if h := firstHeader(req, "Expire"); h != nil {
		t.Errorf("a prefix matched: %v", h)
	}
	if auth.HeaderIs("Expireſ", "Expires") || auth.HeaderIs("Expires", "Expirez") {
		t.Error("headerIs folds beyond ASCII or ignores a letter")
	}
}
