package e2e

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/switchboard-pbx/switchboard/internal/store/pgtest"
)

// cluster is several switchboard nodes on one PostgreSQL.
type cluster struct {
	t *testing.T
	// pg is the cluster's own PostgreSQL (ownPG), nil on the tests' shared
	// one.
	pg    *pgtest.Server
	URL   string
	Nodes []*Server
}

// startCluster starts one node per address (127.0.0.11, .12, ...), named
// n1, n2, ..., with a 3 s lease and qualify off, on a new database of the
// tests' shared PostgreSQL (its own server, which the test may stop, when
// ownPG), and adds extensions 2001..2003 (passwords secret-NNNN).
func startCluster(t *testing.T, ownPG bool, hosts ...string) *cluster {
	t.Helper()
	Need(t, "sipp")
	c := &cluster{t: t}
	if ownPG {
		srv, err := pgtest.Start()
		if err != nil {
			(&pgtest.Server{Err: err}).Need(t)
		}
		t.Cleanup(func() { _ = srv.Stop() })
		c.pg, c.URL = srv, srv.NewDB(t)
	} else {
		c.URL = pg.NewDB(t)
	}
	for i, h := range hosts {
		s := Start(t, "", "--sip", h+":0", "--db", c.URL, "--node", "n"+string(rune('1'+i)),
			"--node-lease", "3s", "--qualify-interval", "0")
		t.Cleanup(func() {
			s.Stop()
			if log := s.Log(); strings.Contains(log, "DATA RACE") || strings.Contains(log, "panic:") {
				t.Errorf("node %s reported a data race or a panic:\n%s", h, log)
			}
		})
		c.Nodes = append(c.Nodes, s)
	}
	for _, e := range []string{"2001", "2002", "2003"} {
		c.CLI(0, "ext", "add", e, "--password", "secret-"+e)
	}
	return c
}

// CLI runs a command against node i (its data directory and the shared
// database) and returns stdout; it fails the test on a non-zero exit.
func (c *cluster) CLI(i int, args ...string) string {
	c.t.Helper()
	out, errOut, code := c.TryCLI(i, args...)
	if code != 0 {
		c.t.Fatalf("switchboard %s (node %d): exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), i+1, code, out, errOut)
	}
	return out
}

// TryCLI runs a command against node i.
func (c *cluster) TryCLI(i int, args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	return RunCLI(c.t, c.Nodes[i].Data, "", append(args, "--db", c.URL)...)
}

// logs returns every node's log, for failure messages.
func (c *cluster) logs() string {
	var b strings.Builder
	for i, s := range c.Nodes {
		b.WriteString("--- node " + string(rune('1'+i)) + " ---\n" + tail(s.Log(), 4000) + "\n")
	}
	return b.String()
}

// TestNodesCallAcrossNodes: a phone registered on node 1 is called from a
// phone on node 2; node 2 forwards the INVITE to node 1, which sends it
// down the phone's own flow; ACK and BYE follow both Record-Routes; `reg`
// on node 3 shows the binding's node; `status` lists the three nodes up.
func TestNodesCallAcrossNodes(t *testing.T) {
	t.Parallel()
	c := startCluster(t, false, "127.0.0.11", "127.0.0.12", "127.0.0.13")
	n1, n2 := c.Nodes[0], c.Nodes[1]
	callee := NewPhone(t, n1, "2001", "secret-2001")
	RunJSON := func(i int, v any, args ...string) {
		t.Helper()
		out := c.CLI(i, append(args, "--json")...)
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("%v --json: %v\n%s", args, err, out)
		}
	}
	var withNode []struct {
		Extension string `json:"extension"`
		Node      string `json:"node"`
	}
	RunJSON(2, &withNode, "reg")
	if len(withNode) != 1 || withNode[0].Extension != "2001" || withNode[0].Node != "n1" {
		t.Fatalf("reg on node 3: %+v; want 2001 on n1", withNode)
	}
	var st struct {
		Nodes []struct {
			Name, Address, State string
		} `json:"nodes"`
	}
	RunJSON(1, &st, "status")
	if len(st.Nodes) != 3 || st.Nodes[0].Name != "n1" || st.Nodes[0].State != "up" || !strings.HasPrefix(st.Nodes[0].Address, "127.0.0.11:") {
		t.Fatalf("status nodes: %+v", st.Nodes)
	}

	callee.Start("call-phone-answer.xml", "-d", "300")
	// Node 2 sees node 1's binding within its refresh (0.5 s).
	var r SIPpResult
	WaitFor(t, 10*time.Second, "a call from node 2 to 2001 on node 1 completes", func() bool {
		r = SIPp(t, n2.Addr, "call-uac.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2002", "secret-2002", "2001")), "-d", "1000")
		return r.Code == 0
	})
	msgs := callee.MustSucceed(15 * time.Second)
	inv := receivedRequests(msgs, "INVITE")
	if len(inv) != 1 {
		t.Fatalf("callee got %d INVITEs:\n%s", len(inv), msgs)
	}
	rr := strings.Join(inv[0].Get("Record-Route"), ",")
	if !strings.Contains(rr, "127.0.0.11:"+n1.Port) || !strings.Contains(rr, "127.0.0.12:"+n2.Port) {
		t.Fatalf("INVITE's Record-Route lacks node 1 or node 2: %q", rr)
	}
	if len(inv[0].Get("X-Switchboard-Node")) != 0 || len(inv[0].Get("Proxy-Authorization")) != 0 {
		t.Fatalf("the node header or the caller's credentials reached the phone: %+v", inv[0].Headers)
	}
	if len(receivedRequests(msgs, "ACK")) == 0 || len(receivedRequests(msgs, "BYE")) == 0 {
		t.Fatalf("ACK or BYE did not reach the callee through the nodes:\n%s\n%s", msgs, c.logs())
	}
	// Both nodes recorded the call, under ids of their own (neither record
	// overwrote the other), and both records ended NORMAL_CLEARING.
	var recs []CallRecord
	WaitFor(t, 10*time.Second, "node 1's and node 2's records of the call", func() bool {
		recs = nil
		out, _, code := c.TryCLI(2, "calls", "--json")
		if code != 0 || json.Unmarshal([]byte(out), &recs) != nil {
			return false
		}
		n := 0
		for _, r := range recs {
			if r.CallID == inv[0].Get("Call-ID")[0] && r.Cause == "NORMAL_CLEARING" {
				n++
			}
		}
		return n == 2
	})
}

// registerStatus sends one REGISTER of ext (password pw) to addr from a
// fresh port and returns the final status ("200", "403", ...).
func registerStatus(t *testing.T, addr, ext, pw string) string {
	t.Helper()
	r := SIPp(t, addr, "register.xml", 1, "-inf", CSV(t, "SEQUENTIAL", AuthRow(ext, pw)))
	last := "none" // the answer to the authenticated REGISTER, after the 401
	for _, m := range Responses(ParseSIPpMessages(r.Messages)) {
		if st := m.Status(); len(st) >= 3 && st[0] >= '2' {
			last = st[:3]
		}
	}
	return last
}

// TestNodesDirectoryChangeReachesEveryNode: `ext set 2001 --enabled=false`
// run on node 3 refuses 2001's next REGISTER on node 1 within a second;
// enabling it again is as quick.
//
// Serial: it bounds the time for a change on one node to reach another to 1
// s.
func TestNodesDirectoryChangeReachesEveryNode(t *testing.T) {
	c := startCluster(t, false, "127.0.0.11", "127.0.0.12", "127.0.0.13")
	n1 := c.Nodes[0]
	if st := registerStatus(t, n1.Addr, "2001", "secret-2001"); st != "200" {
		t.Fatalf("REGISTER on node 1 before the change: %s\n%s", st, c.logs())
	}
	for _, step := range []struct{ enabled, want string }{{"false", "403"}, {"true", "200"}} {
		c.CLI(2, "ext", "set", "2001", "--enabled="+step.enabled)
		start := time.Now()
		var st string
		WaitFor(t, time.Second, "node 1 answers 2001's REGISTER "+step.want+" after ext set --enabled="+step.enabled+" on node 3", func() bool {
			st = registerStatus(t, n1.Addr, "2001", "secret-2001")
			return st == step.want
		})
		t.Logf("--enabled=%s on node 3: node 1 answered %s after %s", step.enabled, st, time.Since(start).Round(time.Millisecond))
	}
}

// TestNodesKillOwningNode: node 1, holding 2001's registration, is killed
// (kill -9); once its lease runs out, `doctor 2001` on node 3 says the
// phone is registered on node n1, which has not renewed its lease since a
// time, shows what node 1 journaled, and `status` shows n1 DOWN; a call
// from node 2 gets 480; after the phone registers on node 2 it is
// reachable again from node 3.
func TestNodesKillOwningNode(t *testing.T) {
	t.Parallel()
	c := startCluster(t, false, "127.0.0.11", "127.0.0.12", "127.0.0.13")
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	NewPhone(t, n1, "2001", "secret-2001")
	WaitFor(t, 5*time.Second, "node 1's journal of the REGISTER is in the database", func() bool {
		out, _, _ := c.TryCLI(2, "journal", "--ext", "2001")
		return strings.Contains(out, "registered")
	})
	// Under load: node 2 keeps answering REGISTERs while node 1 dies.
	load := make(chan SIPpResult, 1)
	go func() {
		load <- SIPp(t, n2.Addr, "register.xml", 100, "-inf", CSV(t, "SEQUENTIAL", AuthRow("2003", "secret-2003")), "-r", "25")
	}()
	WaitFor(t, 10*time.Second, "the load registers 2003 on node 2 before the kill", func() bool {
		out, _, _ := c.TryCLI(1, "reg", "2003")
		return strings.Contains(out, "Registered(")
	})
	n1.Kill()
	if r := <-load; r.Code != 0 {
		t.Fatalf("REGISTER load on node 2 while node 1 was killed failed (%d):\n%s", r.Code, r.Output)
	}
	var out string
	WaitFor(t, 15*time.Second, "the doctor on node 3 explains that node n1 is down", func() bool {
		out, _, _ = c.TryCLI(2, "doctor", "2001")
		return strings.Contains(out, "registered on node n1, which has not renewed its lease since")
	})
	if !strings.Contains(out, "node_down") || !strings.Contains(out, "last REGISTER accepted") {
		t.Fatalf("doctor on node 3 lacks the cause or node 1's journal:\n%s", out)
	}
	st := c.CLI(2, "status")
	if !strings.Contains(st, "DOWN (lease ran out)") {
		t.Fatalf("status on node 3 does not show n1 down:\n%s", st)
	}
	fin := failCall(t, n2, "2002", "secret-2002", "2001")
	if !strings.HasPrefix(fin.Status(), "480") {
		t.Fatalf("call to 2001 (on dead node 1) from node 2: %s, want 480", fin.First)
	}
	// The phone registers on node 2: reachable from node 3.
	callee := NewPhone(t, n2, "2001", "secret-2001")
	callee.Start("call-phone-answer.xml", "-d", "300")
	WaitFor(t, 10*time.Second, "a call from node 3 reaches 2001, now on node 2", func() bool {
		r := SIPp(t, n3.Addr, "call-uac.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2003", "secret-2003", "2001")), "-d", "500")
		return r.Code == 0
	})
	callee.MustSucceed(15 * time.Second)
}

// TestNodesDatabaseOutage: PostgreSQL stopped with `pg_ctl stop -m
// immediate` under a REGISTER load and started again: the node answers
// every REGISTER 200 from memory meanwhile (authenticating from its cached
// directory; none gets 503 below the backlog's bound), the doctor says the
// database is unreachable, and once PostgreSQL is back every acknowledged
// binding is in the database.
func TestNodesDatabaseOutage(t *testing.T) {
	t.Parallel()
	c := startCluster(t, true, "127.0.0.11")
	n1 := c.Nodes[0]
	var rows [][]string
	for i := 3001; i <= 3012; i++ {
		e := strconv.Itoa(i)
		c.CLI(0, "ext", "add", e, "--password", "secret-"+e)
		rows = append(rows, AuthRow(e, "secret-"+e))
	}
	// 240 REGISTERs of 12 extensions at 30/s: about 8 s, the database
	// stopped from the first second to well after the last.
	load := make(chan SIPpResult, 1)
	go func() {
		load <- SIPp(t, n1.Addr, "register.xml", 240, "-inf", CSV(t, "SEQUENTIAL", rows...), "-r", "30")
	}()
	WaitFor(t, 10*time.Second, "the load registers with the database up", func() bool {
		out, _, _ := c.TryCLI(0, "reg", "3001")
		return strings.Contains(out, "Registered(")
	})
	if err := c.pg.StopServer("immediate"); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := c.TryCLI(0, "doctor", "3001")
	if code == 0 || !strings.Contains(errOut, "is unreachable") {
		t.Fatalf("doctor with the database down: exit %d, stderr %q; want it to say the database is unreachable", code, errOut)
	}
	r := <-load
	if r.Code != 0 {
		t.Fatalf("REGISTERs while the database was down were not all answered 200 (%d):\n%s\n%s", r.Code, r.Output, c.logs())
	}
	if !strings.Contains(n1.Log(), "answered from memory") {
		t.Fatalf("the node did not log the outage:\n%s", n1.Log())
	}
	if err := c.pg.StartServer(); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 20*time.Second, "every acknowledged binding is in the database", func() bool {
		out, _, code := c.TryCLI(0, "reg", "--json")
		var regs []Registration
		if code != 0 || json.Unmarshal([]byte(out), &regs) != nil {
			return false
		}
		return len(regs) == len(rows)
	})
}

// TestNodesForgedNodeHeader: an outsider who cannot read the database
// sends node 1 an INVITE for a registered phone's contact carrying an
// X-Switchboard-Node header as if node 2 had forwarded it: node 1 answers
// 407 (the call must authenticate) and the phone gets nothing.
func TestNodesForgedNodeHeader(t *testing.T) {
	t.Parallel()
	c := startCluster(t, false, "127.0.0.11", "127.0.0.12")
	n1 := c.Nodes[0]
	callee := NewPhone(t, n1, "2001", "secret-2001")
	callee.Start("call-phone-answer.xml", "-d", "300")
	contact := "sip:2001@127.0.0.1:" + strconv.Itoa(callee.Port) + ";transport=UDP"
	from := "127.0.0.66:" + strconv.Itoa(FreeUDPPort(t))
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	inv := "INVITE " + contact + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + from + ";branch=z9hG4bK-forged1;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:2002@127.0.0.1>;tag=f1\r\n" +
		"To: <sip:2001@127.0.0.1>\r\n" +
		"Call-ID: forged-node-1\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:2002@" + from + ">\r\n" +
		"X-Switchboard-Node: node=n2;ts=" + ts + ";domain=127.0.0.1;mac=" + strings.Repeat("ab", 32) + "\r\n" +
		"Content-Length: 0\r\n\r\n"
	got := sendUDP(t, n1.Addr, from, []byte(inv), 3*time.Second)
	if len(got) != 1 || got[0] != 407 {
		t.Fatalf("forged node INVITE: answered %v, want [407]\n%s", got, n1.Log())
	}
	time.Sleep(300 * time.Millisecond) // a forwarded INVITE would be there by now
	if invs := receivedRequests(callee.Messages(), "INVITE"); len(invs) != 0 {
		t.Fatalf("the phone got the forged INVITE: %+v", invs[0].Headers)
	}
}

// TestNodesBanReachesEveryNode: a ban made on node 2 drops the banned
// address's packets on node 1 within a second (loopback untrusted first,
// on node 2 too, so that it can be banned).
//
// Serial: it bounds the time for a ban on one node to reach another to 1 s
// (and wants an answer within 300 ms before it).
func TestNodesBanReachesEveryNode(t *testing.T) {
	c := startCluster(t, false, "127.0.0.11", "127.0.0.12")
	n1 := c.Nodes[0]
	register := func() []int {
		port := strconv.Itoa(FreeUDPPort(t))
		from := "127.0.0.1:" + port
		reg := "REGISTER sip:127.0.0.1 SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + from + ";branch=z9hG4bK-ban" + port + ";rport\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sip:2001@127.0.0.1>;tag=b" + port + "\r\n" +
			"To: <sip:2001@127.0.0.1>\r\n" +
			"Call-ID: ban-" + port + "\r\n" +
			"CSeq: 1 REGISTER\r\n" +
			"Contact: <sip:2001@" + from + ">\r\n" +
			"Content-Length: 0\r\n\r\n"
		return sendUDP(t, n1.Addr, from, []byte(reg), 300*time.Millisecond)
	}
	if got := register(); len(got) != 1 || got[0] != 401 {
		t.Fatalf("REGISTER before the ban: %v, want [401]", got)
	}
	c.CLI(1, "profile", "set", "internal", "--trusted-acl", "")
	c.CLI(1, "ban", "add", "127.0.0.1", "--for", "1h", "--reason", "e2e")
	start := time.Now()
	WaitFor(t, time.Second, "node 1 drops packets of 127.0.0.1, banned on node 2", func() bool {
		return len(register()) == 0
	})
	t.Logf("node 1 dropped the banned address %s after the ban on node 2", time.Since(start).Round(time.Millisecond))
}

// TestNodesLazyRefresh: on PostgreSQL, refreshes that only move a
// binding's expiry (same Call-ID and contact, a moment apart, of a 3600 s
// registration) are answered 200 without a database write: the stored row
// keeps the first registration's CSeq (0 writes per refresh here; the
// target is fewer than 0.1).
func TestNodesLazyRefresh(t *testing.T) {
	t.Parallel()
	c := startCluster(t, false, "127.0.0.11")
	r := SIPp(t, c.Nodes[0].Addr, "reg-refresh.xml", 1, "-inf", CSV(t, "SEQUENTIAL", AuthRow("2001", "secret-2001")))
	if r.Code != 0 {
		t.Fatalf("register and refresh 6 times (%d):\n%s", r.Code, r.Output)
	}
	if ok := strings.Count(r.Messages, "SIP/2.0 200 OK"); ok != 7 {
		t.Fatalf("%d REGISTERs answered 200, want 7:\n%s", ok, r.Output)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n, cseq int64
	if err := conn.QueryRow(ctx, "SELECT count(*), coalesce(max(cseq), 0) FROM bindings WHERE extension = '2001'").Scan(&n, &cseq); err != nil {
		t.Fatal(err)
	}
	if n != 1 || cseq != 2 {
		t.Fatalf("stored: %d rows, CSeq %d; want the first registration's row (CSeq 2) unwritten since", n, cseq)
	}
}
