package registrar

import (
	"fmt"
	"strings"
	"testing"
	"time"

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

// TestCountsDetail: the journal detail of a registration reads as before
// (doctor and operators read it).
func TestCountsDetail(t *testing.T) {
	for _, c := range [][4]int{{0, 0, 0, 0}, {1, 0, 0, 1}, {2, 13, 104, 5000}} {
		want := fmt.Sprintf("%d added, %d refreshed, %d removed, %d bound", c[0], c[1], c[2], c[3])
		if got := countsDetail(c[0], c[1], c[2], c[3]); got != want {
			t.Errorf("countsDetail(%v) = %q, want %q", c, got, want)
		}
	}
}

// TestHTTPDate: the Date of a 200 is always the time it is sent, to the
// second, though it is written only once a second.
func TestHTTPDate(t *testing.T) {
	var r Registrar
	base := time.Date(2026, 12, 3, 13, 59, 58, 0, time.FixedZone("CET", 3600))
	for _, d := range []time.Duration{0, 400 * time.Millisecond, 999 * time.Millisecond, time.Second,
		1500 * time.Millisecond, 2 * time.Second, time.Hour, 0} {
		now := base.Add(d)
		if got, want := r.httpDate(now), now.UTC().Format(http1123); got != want {
			t.Errorf("httpDate(%v) = %q, want %q", now, got, want)
		}
	}
}

// TestURIString: a binding keeps the text sipgo's String gives its URI.
func TestURIString(t *testing.T) {
	var r Registrar
	for _, s := range []string{"sip:2001@127.0.0.1:5062", "sips:alice@[2001:db8::1]:5061;transport=tls;ob",
		"sip:2001@example.org;user=phone?X-h=1", "sip:127.0.0.1", strings.Repeat("sip:x@a", 1) + ";" + strings.Repeat("p", 2000)} {
		var u sip.Uri
		if err := sip.ParseUri(s, &u); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second from a pooled buffer
			if got, want := r.uriString(&u), u.String(); got != want {
				t.Errorf("uriString = %q, want %q", got, want)
			}
		}
	}
}
