package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestJournalHoldsAnsweredChallenges: a challenge the phone answers with a
// successful REGISTER is not journaled (the registered event says it);
// one nobody answers is, and a CLI read sees it at once (the server
// records held events when asked to flush), not 2 s later.
func TestJournalHoldsAnsweredChallenges(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	s.AddExt("2001", "secret-2001")
	s.AddExt("2002", "secret-2002")
	p := newUDPPhone(t, s.Addr)

	status, resp := p.roundTrip(p.register("hold1", 1, ""))
	if !strings.HasPrefix(status, "SIP/2.0 401") {
		t.Fatalf("first REGISTER: %s", status)
	}
	nonce, realm := nonceValueRE.FindStringSubmatch(resp)[1], realmRE.FindStringSubmatch(resp)[1]
	uri := "sip:" + s.Addr
	answer := md5hex(md5hex("2001:"+realm+":secret-2001") + ":" + nonce + ":00000001:c0ffee:auth:" + md5hex("REGISTER:"+uri))
	auth := fmt.Sprintf(`Digest username="2001", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"`,
		realm, nonce, uri, answer)
	if status, resp := p.roundTrip(p.register("hold1", 2, auth)); !strings.HasPrefix(status, "SIP/2.0 200") {
		t.Fatalf("authenticated REGISTER: %s\n%s", status, resp)
	}

	// 2002's phone is challenged and never answers.
	unanswered := strings.ReplaceAll(p.register("hold2", 1, ""), "2001", "2002")
	if status, _ := p.roundTrip(unanswered); !strings.HasPrefix(status, "SIP/2.0 401") {
		t.Fatalf("2002's REGISTER: %s", status)
	}

	causes := func(ext string) []string {
		var out []string
		for _, e := range callJournal(s, "--ext", ext) {
			out = append(out, e.Cause)
		}
		return out
	}
	if got := causes("2001"); strings.Join(got, ",") != "registered" {
		t.Errorf("2001 (answered its challenge): journal causes %v, want only registered", got)
	}
	if got := causes("2002"); strings.Join(got, ",") != "challenged" {
		t.Errorf("2002 (never answered): journal causes %v, want challenged at once", got)
	}
}
