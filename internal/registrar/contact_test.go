package registrar

import (
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

func TestSameURI(t *testing.T) {
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"sip:2001@192.0.2.1:5060", "sip:2001@192.0.2.1:5060", true},
		{"SIP:2001@EXAMPLE.com:5060", "sip:2001@example.COM:5060", true},
		{"sip:2001@192.0.2.1:5060;transport=UDP", "sip:2001@192.0.2.1:5060;transport=udp", true},
		{"sip:2001@192.0.2.1:5060;a=1;transport=udp", "sip:2001@192.0.2.1:5060;transport=udp;a=1", true},
		{"sip:2001@192.0.2.1:5060;line=abc", "sip:2001@192.0.2.1:5060", true}, // only in one: ignored
		{"sip:2001@192.0.2.1:5060;line=abc", "sip:2001@192.0.2.1:5060;line=xyz", false},
		{"sip:2001@192.0.2.1:5060;transport=tcp", "sip:2001@192.0.2.1:5060", false},
		{"sip:2001@192.0.2.1", "sip:2001@192.0.2.1:5060", false},
		{"sip:alice@192.0.2.1:5060", "sip:ALICE@192.0.2.1:5060", false},
		{"sip:2001@192.0.2.1:5060", "sips:2001@192.0.2.1:5060", false},
		{"sip:2001@192.0.2.1:5060;maddr=192.0.2.9", "sip:2001@192.0.2.1:5060", false},
	} {
		var a, b sip.Uri
		if err := sip.ParseUri(c.a, &a); err != nil {
			t.Fatal(c.a, err)
		}
		if err := sip.ParseUri(c.b, &b); err != nil {
			t.Fatal(c.b, err)
		}
		if got := sameURI(&a, &b); got != c.same {
			t.Errorf("sameURI(%s, %s) = %v, want %v", c.a, c.b, got, c.same)
		}
	}
}

func TestFindBinding(t *testing.T) {
	bs := []store.Binding{
		{Contact: "sip:2001@192.0.2.1:5060;transport=udp", Source: "192.0.2.1:5060", Transport: "UDP", CallID: "a"},
		{Contact: "sip:2001-x1@192.0.2.2:5062", Source: "192.0.2.2:5062", Transport: "UDP", CallID: "b"},
	}
	for _, c := range []struct {
		name                     string
		contact, src, tp, callID string
		idx                      int
		restarted                bool
	}{
		{"same string", "sip:2001@192.0.2.1:5060;transport=udp", "192.0.2.1:5060", "UDP", "a", 0, false},
		{"same URI, other spelling, new Call-ID", "sip:2001@192.0.2.1:5060;TRANSPORT=UDP", "192.0.2.1:5060", "UDP", "new", 0, false},
		{"restarted phone: same socket, new Contact and Call-ID", "sip:2001-y7@192.0.2.2:5062", "192.0.2.2:5062", "UDP", "c", 1, true},
		{"same socket, same Call-ID: a second contact of one phone", "sip:2001-y7@192.0.2.2:5062", "192.0.2.2:5062", "UDP", "b", -1, false},
		{"same address over another transport", "sip:2001-y7@192.0.2.2:5062", "192.0.2.2:5062", "TCP", "c", -1, false},
		{"another phone", "sip:2001@192.0.2.3:5060", "192.0.2.3:5060", "UDP", "d", -1, false},
	} {
		idx, restarted := findBinding(bs, c.contact, c.src, c.tp, c.callID)
		if idx != c.idx || restarted != c.restarted {
			t.Errorf("%s: findBinding = %d, %v; want %d, %v", c.name, idx, restarted, c.idx, c.restarted)
		}
	}
}
