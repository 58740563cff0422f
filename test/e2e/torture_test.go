package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// tortureAnswer is what switchboard answers to one RFC 4475 message: the
// final status (0 = no answer at all) and, over TCP, whether it closes the
// connection afterwards.
type tortureAnswer struct {
	status int
	closed bool
}

// tortureExpect holds switchboard's answer to every RFC 4475 message
// (testdata/rfc4475/INDEX.tsv lists them with what the RFC asks), over UDP
// and over TCP. switchboard is a registrar and proxy that requires digest
// authentication, so some answers follow from that rather than from the
// message's syntax. Deliberate deviations from INDEX.tsv:
//
//   - cparam01, cparam02, regescrt, escnull, dblreq (VALID REGISTERs that
//     "should succeed"): 401. Every REGISTER is challenged before its
//     contacts are looked at; the messages parse and reach the registrar.
//   - regbadct (Contact without <> around a URI with headers; "reasonable to
//     answer 400"): 401 for the same reason.
//   - baddate, esc01, invut, longreq, sdp01 (INVITEs): 407. Unauthenticated
//     INVITEs are challenged, never routed; the messages parse and reach the
//     proxy.
//   - wsinv (VALID, the short tortuous INVITE): 481. Its To carries a tag,
//     so it is a request inside a dialog, and the proxy knows no dialog of
//     that Call-ID and no Route names it: it relays nothing it did not
//     record-route. sipgo reads its "tag = 98asjd8" (LWS around '=') as no
//     tag, so without an RFC 3261 branch it could not key a transaction:
//     the filter hands sipgo the message normalized (unfolded, no white
//     space around ';' and '='), as RFC 3261 §7.3.1 allows.
//   - inv2543 (VALID, RFC 2543 syntax) over UDP: 407, the challenge of any
//     new call. It has no branch and no From tag, which sipgo's transaction
//     layer cannot key, so it is answered on the stateless path (the
//     challenge needs no transaction); an RFC 2543 request that needs a
//     transaction (one with credentials) would still get 400.
//   - mpart01 (a MESSAGE outside a dialog): 405; switchboard relays MESSAGE
//     only inside dialogs.
//   - badbranch (branch is only the magic cookie): 200; sipgo matches it
//     the RFC 2543 way, which the RFC allows.
//   - inv2543 over TCP: 400 and the connection closed. Without
//     Content-Length a stream cannot be framed: RFC 3261 §18.3 and §20.14
//     make the header mandatory on streams, and RFC 4475 §3.4.1 describes
//     the message as a datagram ("the body is assumed to be all octets in
//     the datagram after the null-line").
//   - baddn and clerr over TCP: no answer; the message never completes
//     (baddn has no empty line, clerr's body is short), so the connection
//     is closed after the stream timeout (10 s), as RFC 4475 §3.1.2.2 asks.
//   - dblreq is a UDP test (RFC 4475 §3.1.1.8); over TCP its trailing
//     octets are garbage that ends the connection, so it is not sent.
//   - test.dat (not in any RFC section) has no Via: no answer is possible.
var tortureExpect = map[string]struct{ udp, tcp tortureAnswer }{
	"badaspec":   {tortureAnswer{400, false}, tortureAnswer{400, false}},
	"badbranch":  {tortureAnswer{200, false}, tortureAnswer{200, false}},
	"baddate":    {tortureAnswer{407, false}, tortureAnswer{407, false}},
	"baddn":      {tortureAnswer{400, false}, tortureAnswer{0, true}},
	"badinv01":   {tortureAnswer{400, false}, tortureAnswer{400, false}},
	"badvers":    {tortureAnswer{505, false}, tortureAnswer{505, false}},
	"bcast":      {tortureAnswer{0, false}, tortureAnswer{0, false}},
	"bext01":     {tortureAnswer{420, false}, tortureAnswer{420, false}},
	"bigcode":    {tortureAnswer{0, false}, tortureAnswer{0, false}},
	"clerr":      {tortureAnswer{400, false}, tortureAnswer{0, true}},
	"cparam01":   {tortureAnswer{401, false}, tortureAnswer{401, false}},
	"cparam02":   {tortureAnswer{401, false}, tortureAnswer{401, false}},
	"dblreq":     {tortureAnswer{401, false}, tortureAnswer{-1, false}},
	"esc01":      {tortureAnswer{407, false}, tortureAnswer{407, false}},
	"esc02":      {tortureAnswer{501, false}, tortureAnswer{501, false}},
	"escnull":    {tortureAnswer{401, false}, tortureAnswer{401, false}},
	"escruri":    {tortureAnswer{400, false}, tortureAnswer{400, false}},
	"insuf":      {tortureAnswer{400, false}, tortureAnswer{400, false}},
	"intmeth":    {tortureAnswer{501, false}, tortureAnswer{501, false}},
	"inv2543":    {tortureAnswer{407, false}, tortureAnswer{400, true}},
	"invut":      {tortureAnswer{407, false}, tortureAnswer{407, false}},
	"longreq":    {tortureAnswer{407, false}, tortureAnswer{407, false}},
	"ltgtruri":   {tortureAnswer{400, false}, tortureAnswer{400, false}},
	"lwsdisp":    {tortureAnswer{200, false}, tortureAnswer{200, false}},
	"lwsruri":    {tortureAnswer{400, false}, tortureAnswer{400, true}},
	"lwsstart":   {tortureAnswer{400, false}, tortureAnswer{400, true}},
	"mcl01":      {tortureAnswer{400, false}, tortureAnswer{400, true}},
	"mismatch01": {tortureAnswer{400, false}, tortureAnswer{400, false}},
	"mismatch02": {tortureAnswer{501, false}, tortureAnswer{501, false}},
	"mpart01":    {tortureAnswer{405, false}, tortureAnswer{405, false}},
	"multi01":    {tortureAnswer{400, false}, tortureAnswer{400, false}},
	"ncl":        {tortureAnswer{400, false}, tortureAnswer{400, true}},
	"noreason":   {tortureAnswer{0, false}, tortureAnswer{0, false}},
	"novelsc":    {tortureAnswer{416, false}, tortureAnswer{416, false}},
	"quotbal":    {tortureAnswer{400, false}, tortureAnswer{400, false}},
	"regaut01":   {tortureAnswer{401, false}, tortureAnswer{401, false}},
	"regbadct":   {tortureAnswer{401, false}, tortureAnswer{401, false}},
	"regescrt":   {tortureAnswer{401, false}, tortureAnswer{401, false}},
	"scalar02":   {tortureAnswer{400, false}, tortureAnswer{400, false}},
	"scalarlg":   {tortureAnswer{0, false}, tortureAnswer{0, false}},
	"sdp01":      {tortureAnswer{407, false}, tortureAnswer{407, false}},
	"semiuri":    {tortureAnswer{200, false}, tortureAnswer{200, false}},
	"test":       {tortureAnswer{0, false}, tortureAnswer{0, true}},
	"transports": {tortureAnswer{200, false}, tortureAnswer{200, false}},
	"trws":       {tortureAnswer{400, false}, tortureAnswer{400, true}},
	"unkscm":     {tortureAnswer{416, false}, tortureAnswer{416, false}},
	"unksm2":     {tortureAnswer{400, false}, tortureAnswer{400, false}},
	"unreason":   {tortureAnswer{0, false}, tortureAnswer{0, false}},
	"wsinv":      {tortureAnswer{481, false}, tortureAnswer{481, false}},
	"zeromf":     {tortureAnswer{200, false}, tortureAnswer{200, false}},
}

// tortureCase is one row of INDEX.tsv with its bytes.
type tortureCase struct {
	file, section, class, title, rfc string
	data                             []byte
}

func loadTorture(t *testing.T) []tortureCase {
	t.Helper()
	dir := filepath.Join("testdata", "rfc4475")
	index, err := os.ReadFile(filepath.Join(dir, "INDEX.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []tortureCase
	for _, line := range strings.Split(string(index), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 7 {
			t.Fatalf("INDEX.tsv: bad row %q", line)
		}
		data, err := os.ReadFile(filepath.Join(dir, f[0]))
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := strconv.Atoi(f[2]); n != len(data) {
			t.Fatalf("%s: %d bytes, INDEX.tsv says %s (was the file converted? keep .gitattributes *.dat -text)", f[0], len(data), f[2])
		}
		cases = append(cases, tortureCase{file: f[0], section: f[1], class: f[4], title: f[5], rfc: f[6], data: data})
	}
	if len(cases) != 50 {
		t.Fatalf("INDEX.tsv lists %d messages, want 50", len(cases))
	}
	return cases
}

var statusLineRE = regexp.MustCompile(`(?m)^SIP/2\.0 (\d{3}) `)

// finals returns the final (>= 200) status codes in a stream of responses.
func finals(text string) []int {
	var out []int
	for _, m := range statusLineRE.FindAllStringSubmatch(text, -1) {
		if c, _ := strconv.Atoi(m[1]); c >= 200 {
			out = append(out, c)
		}
	}
	return out
}

// sendUDP sends one datagram from a fresh socket bound to from and returns
// the final statuses answered within wait (returning early after the
// first). Without rport in the top Via, RFC 3261 §18.2.2 sends the answer
// to the source address and the Via port (5060 when absent), so from should
// use that port: each caller takes its own loopback address.
func sendUDP(t *testing.T, addr, from string, data []byte, wait time.Duration) []int {
	t.Helper()
	got, err := exchangeUDP(addr, from, data, wait)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// exchangeUDP is sendUDP without a test: safe in any goroutine.
func exchangeUDP(addr, from string, data []byte, wait time.Duration) ([]int, error) {
	c, err := net.ListenPacket("udp", from)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.WriteTo(data, raddr); err != nil {
		return nil, err
	}
	var got []int
	buf := make([]byte, 65536)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		_ = c.SetReadDeadline(deadline)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			break
		}
		if f := finals(string(buf[:n])); len(f) > 0 {
			got = append(got, f...)
			// Give a wrong second answer a moment to show up.
			deadline = time.Now().Add(200 * time.Millisecond)
		}
	}
	return got, nil
}

// exchangeTCP sends data on a new connection and returns the final
// statuses answered within wait, and whether the server closed the
// connection. It needs no test: safe in any goroutine.
func exchangeTCP(addr string, data []byte, wait time.Duration) (got []int, closed bool, err error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return nil, false, err
	}
	defer c.Close()
	if _, err := c.Write(data); err != nil {
		return nil, false, err
	}
	r := bufio.NewReader(c)
	var text strings.Builder
	deadline := time.Now().Add(wait)
	buf := make([]byte, 4096)
	for {
		_ = c.SetReadDeadline(deadline)
		n, err := r.Read(buf)
		text.Write(buf[:n])
		if errors.Is(err, io.EOF) || (err != nil && strings.Contains(err.Error(), "reset")) {
			return finals(text.String()), true, nil
		}
		if err != nil {
			return finals(text.String()), false, nil
		}
		if len(finals(text.String())) > 0 && deadline.Sub(time.Now()) > 500*time.Millisecond {
			deadline = time.Now().Add(500 * time.Millisecond)
		}
	}
}

// TestTortureRFC4475 sends every RFC 4475 torture message to a running
// server over UDP and over TCP and checks each answer (tortureExpect); then
// the server must still register a phone, and its log must hold no parse
// error with message bytes and no panic.
//
// Several messages share a transaction key (same top Via and method), so a
// server would rightly take the second for a retransmission of the first:
// messages are spread over servers so that no server sees a key twice.
func TestTortureRFC4475(t *testing.T) {
	t.Parallel()
	cases := loadTorture(t)
	for _, c := range cases {
		if _, ok := tortureExpect[strings.TrimSuffix(c.file, ".dat")]; !ok {
			t.Fatalf("%s (%s, %s) has no expectation in tortureExpect", c.file, c.section, c.class)
		}
	}
	// Every valid message gets an answer other than 400, but for the two
	// deviations documented at tortureExpect.
	for _, c := range cases {
		name := strings.TrimSuffix(c.file, ".dat")
		if c.class != "VALID" {
			continue
		}
		w := tortureExpect[name]
		if w.udp.status == 400 || (w.tcp.status == 400 && name != "inv2543") {
			t.Errorf("%s (VALID) is expected to get 400: %+v", name, w)
		}
	}
	groups := txKeyGroups(cases)
	for _, tr := range []string{"udp", "tcp"} {
		for g, idx := range groups {
			t.Run(fmt.Sprintf("%s-server%d", tr, g+1), func(t *testing.T) {
				s := Start(t, "")
				s.AddExt("2001", "secret-2001")
				// Every message of the group at once, each from its own
				// socket (goroutines, not parallel subtests: those would
				// wait for -parallel slots behind the other tests), then
				// one subtest per message checks its answer.
				res := make([]tortureResult, len(idx))
				var wg sync.WaitGroup
				for k, i := range idx {
					wg.Add(1)
					go func() {
						defer wg.Done()
						res[k] = exchangeTorture(s.Addr, tr, i, cases[i])
					}()
				}
				wg.Wait()
				t.Run("messages", func(t *testing.T) {
					for k, i := range idx {
						checkTorture(t, tr, cases[i], res[k])
					}
				})
				// After the messages: the server still serves.
				if r := SIPp(t, s.Addr, "register.xml", 1, "-inf", CSV(t, "SEQUENTIAL", AuthRow("2001", "secret-2001"))); r.Code != 0 {
					t.Errorf("REGISTER after the torture messages failed (%d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
				}
				if t.Failed() {
					out, _, _ := s.TryCLI("journal")
					t.Logf("journal:\n%s", out)
				}
				log := s.Log()
				for _, bad := range []string{"failed to parse", "panic", "Read filter error", "level=ERROR", "DATA RACE"} {
					if strings.Contains(log, bad) {
						t.Errorf("server log contains %q:\n%s", bad, log)
					}
				}
			})
		}
	}
}

// txKeyGroups colours the messages so that no two in a group share a top
// Via and CSeq method (sipgo's transaction key); it returns the indexes of
// each group.
func txKeyGroups(cases []tortureCase) [][]int {
	var keys []map[string]bool
	var groups [][]int
	for i, c := range cases {
		k := txKey(c.data)
		g := 0
		for g < len(keys) && keys[g][k] {
			g++
		}
		if g == len(keys) {
			keys = append(keys, map[string]bool{})
			groups = append(groups, nil)
		}
		keys[g][k] = true
		groups[g] = append(groups[g], i)
	}
	return groups
}

var (
	viaLineRE  = regexp.MustCompile(`(?im)^(?:via|v)\s*:(.*(?:\r\n[ \t].*)*)`)
	cseqLineRE = regexp.MustCompile(`(?im)^cseq\s*:\s*\d+\s+(\S+)`)
)

func txKey(data []byte) string {
	via, method := "", ""
	if m := viaLineRE.FindSubmatch(data); m != nil {
		via = strings.Join(strings.Fields(string(m[1])), "")
	}
	if m := cseqLineRE.FindSubmatch(data); m != nil {
		method = string(m[1])
	}
	return via + "|" + method
}

// tortureResult is what one torture message got: the final statuses, and
// for TCP whether the server closed the connection.
type tortureResult struct {
	skip   bool // not sent: no expectation over this transport
	got    []int
	closed bool
	err    error
}

// exchangeTorture sends message i over tr to addr and waits for its
// answers (longer where none is expected, or a close is).
func exchangeTorture(addr, tr string, i int, c tortureCase) tortureResult {
	want := tortureExpect[strings.TrimSuffix(c.file, ".dat")]
	if tr == "udp" {
		// Without rport the answer goes to the Via port (5060 when absent):
		// each message from its own loopback address (no other test uses
		// 127.0.1.x).
		wait := 3 * time.Second
		if want.udp.status == 0 {
			wait = time.Second
		}
		got, err := exchangeUDP(addr, fmt.Sprintf("127.0.1.%d:5060", i+1), c.data, wait)
		return tortureResult{got: got, err: err}
	}
	if want.tcp.status < 0 {
		return tortureResult{skip: true}
	}
	wait := 3 * time.Second
	if want.tcp.closed && want.tcp.status == 0 {
		wait = 15 * time.Second // the stream timeout is 10 s
	} else if want.tcp.status == 0 {
		wait = time.Second
	}
	got, closed, err := exchangeTCP(addr, c.data, wait)
	return tortureResult{got: got, closed: closed, err: err}
}

// checkTorture checks, in a subtest named after the message, what it got
// over tr against tortureExpect.
func checkTorture(t *testing.T, tr string, c tortureCase, r tortureResult) {
	name := strings.TrimSuffix(c.file, ".dat")
	want := tortureExpect[name]
	if r.skip {
		return
	}
	t.Run(name, func(t *testing.T) {
		if r.err != nil {
			t.Fatal(r.err)
		}
		if tr == "udp" {
			if !answered(r.got, want.udp.status) {
				t.Errorf("%s %s %q: answered %v, want %s (RFC: %s)", c.section, c.class, c.title, r.got, statusWord(want.udp.status), c.rfc)
			}
			return
		}
		if !answered(r.got, want.tcp.status) || r.closed != want.tcp.closed {
			t.Errorf("%s %s %q: answered %v, closed %v; want %s, closed %v (RFC: %s)", c.section, c.class, c.title,
				r.got, r.closed, statusWord(want.tcp.status), want.tcp.closed, c.rfc)
		}
	})
}

func answered(got []int, want int) bool {
	if want == 0 {
		return len(got) == 0
	}
	if len(got) == 0 {
		return false
	}
	for _, g := range got {
		if g != want {
			return false
		}
	}
	return true
}

func statusWord(s int) string {
	if s == 0 {
		return "no answer"
	}
	return strconv.Itoa(s)
}

// TestUDPOversize513 sends datagrams of 40 KiB and of the IPv4 maximum
// (65,507 bytes): sipgo reads 32 KiB of a datagram, so they must get 513
// Message Too Large, not the 400 "body shorter than Content-Length" of a
// body cut by the kernel. A 30 KiB one is answered normally.
func TestUDPOversize513(t *testing.T) {
	t.Parallel()
	s := Start(t, "")
	for i, c := range []struct{ size, want int }{{40 * 1024, 513}, {65507, 513}, {30 * 1024, 200}} {
		head := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bK-big-%d\r\n"+
			"From: <sip:probe@127.0.0.1>;tag=big%d\r\nTo: <sip:%s>\r\nCall-ID: big-%d@127.0.0.1\r\nCSeq: 1 OPTIONS\r\n"+
			"Max-Forwards: 70\r\nContent-Type: text/plain\r\n", s.Addr, i, i, s.Addr, i)
		clen := c.size - len(head) - len("Content-Length: 00000\r\n\r\n")
		msg := []byte(head + fmt.Sprintf("Content-Length: %05d\r\n\r\n", clen) + strings.Repeat("x", clen))
		if len(msg) != c.size {
			t.Fatalf("built %d bytes, want %d", len(msg), c.size)
		}
		got := sendUDP(t, s.Addr, "127.0.0.1:0", msg, 3*time.Second)
		if !answered(got, c.want) {
			t.Errorf("%d-byte datagram: answered %v, want %d\nserver log:\n%s", c.size, got, c.want, s.Log())
		}
	}
}
