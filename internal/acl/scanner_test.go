package acl

import "testing"

func TestIsScanner(t *testing.T) {
	tests := []struct {
		ua   string
		want bool
	}{
		{"friendly-scanner", true},
		{"SIPVicious 0.3.3", true},
		{"sipvicious", true},
		{"Friendly-Scanner", true},
		{"sipcli/v1.8", true},
		{"VaxSIPUserAgent/3.1", true},
		{"PPLSIP", true},
		{"sundayddr", true},
		{"iWar", true},
		{"sip-scan", true},
		{"SIVuS", true},
		{"smap/0.6", true},
		{"Mozilla friendly-scanner suffix", true},
		{"Grandstream GXP1625 1.0.11.23", false},
		{"baresip v3.10.1 (x86_64/linux)", false},
		{"sipsak 0.9.8", false},
		{"Linphone/5.2.5 (belle-sip/5.2.0)", false},
		{"Yealink SIP-T46S 66.86.0.15", false},
		{"Asterisk PBX 20.5.0", false},
		{"FreeSWITCH-mod_sofia/1.10.11", false},
		{"friendly-scanne", false}, // truncated pattern at end of string
		{"", false},
		{"s", false},
	}
	for _, tt := range tests {
		if got := IsScanner(tt.ua); got != tt.want {
			t.Errorf("IsScanner(%q) = %v, want %v", tt.ua, got, tt.want)
		}
	}
}
