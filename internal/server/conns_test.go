package server

import (
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestLongestExpiry(t *testing.T) {
	res := sip.NewResponse(200, "OK")
	if got := longestExpiry(res); got != 0 {
		t.Fatalf("no contacts: %d", got)
	}
	res.AppendHeader(sip.NewHeader("Contact", "<sip:2002@10.0.0.5:5060;transport=tcp>;expires=120"))
	res.AppendHeader(sip.NewHeader("Contact", "<sip:2002@10.0.0.6:5060;expires=9999>;q=0.5;EXPIRES=3600"))
	if got := longestExpiry(res); got != 3600 {
		t.Fatalf("got %d, want 3600 (a URI parameter does not count)", got)
	}
	only := sip.NewResponse(200, "OK")
	only.AppendHeader(sip.NewHeader("Expires", "300"))
	if got := longestExpiry(only); got != 300 {
		t.Fatalf("Expires header: %d", got)
	}
}
