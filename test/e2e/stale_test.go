package e2e

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStaleRegistersDroppedUnread: REGISTERs that waited in the UDP
// socket's queue past their limit (here the server is stopped with SIGSTOP
// for 0.6 s, longer than both limits: 200 ms for a first REGISTER, 400 ms
// for one with credentials) are dropped unread, without an answer; their
// retransmissions, arriving fresh, are handled as the first tries would
// have been (the credentials were never used, so they are still good: 200),
// the answered registration is durable (there after a restart), the drop is
// logged, and the server goes on.
//
// Serial: it stops the server for 0.6 s and expects the retransmissions
// that follow to be answered within 200 ms of their arrival, which a
// machine loaded by parallel tests can break.
func TestStaleRegistersDroppedUnread(t *testing.T) {
	s := Start(t, "")
	s.AddExt("2001", "secret-2001")
	p := newUDPPhone(t, s.Addr)
	q := newUDPPhone(t, s.Addr)

	status, resp := p.roundTrip(p.register("stale-p", 1, ""))
	if !strings.HasPrefix(status, "SIP/2.0 401") {
		t.Fatalf("first REGISTER: %s", status)
	}
	nonce, realm := nonceValueRE.FindStringSubmatch(resp)[1], realmRE.FindStringSubmatch(resp)[1]
	uri := "sip:" + s.Addr
	ha1 := md5hex("2001:" + realm + ":secret-2001")
	answer := md5hex(ha1 + ":" + nonce + ":00000001:c0ffee:auth:" + md5hex("REGISTER:"+uri))
	auth := fmt.Sprintf(`Digest username="2001", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"`,
		realm, nonce, uri, answer)
	authed := p.register("stale-p", 2, auth)
	fresh := q.register("stale-q", 1, "")

	// The server's readers stop; the kernel queues (and stamps) both.
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = s.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	// kill returns before the stop takes effect: a server thread that is
	// running (or woken by the signal but not yet scheduled) could still
	// read and answer what is sent now. Send only once every thread is
	// stopped.
	waitStopped(t, s.cmd.Process.Pid)
	for _, c := range []struct {
		ph  *udpPhone
		msg string
	}{{p, authed}, {q, fresh}} {
		if _, err := c.ph.conn.WriteToUDP([]byte(c.msg), c.ph.srv); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(600 * time.Millisecond) // the queue ages past both limits
	resume()

	// Neither is answered: a phone would retransmit after 0.5 s anyway.
	// (The server answers an OPTIONS sent after them, so it read them.)
	if st, _ := p.roundTrip(options(p, "stale-ping")); !strings.HasPrefix(st, "SIP/2.0 200") {
		t.Fatalf("OPTIONS after the stop: %s", st)
	}
	for name, ph := range map[string]*udpPhone{"with credentials": p, "first": q} {
		buf := make([]byte, 65535)
		_ = ph.conn.SetReadDeadline(time.Now().Add(time.Second))
		if n, _, err := ph.conn.ReadFromUDP(buf); err == nil {
			t.Errorf("stale REGISTER (%s) was answered: %s", name, strings.SplitN(string(buf[:n]), "\r\n", 2)[0])
		}
	}

	// The retransmissions (the very same datagrams) are handled.
	if status, resp := p.roundTrip(authed); !strings.HasPrefix(status, "SIP/2.0 200") {
		t.Fatalf("retransmitted REGISTER with credentials: %s\n%s", status, resp)
	}
	if status, _ := q.roundTrip(fresh); !strings.HasPrefix(status, "SIP/2.0 401") {
		t.Fatalf("retransmitted first REGISTER: %s, want 401", status)
	}
	WaitFor(t, 10*time.Second, "the drop logged", func() bool {
		return strings.Contains(s.Log(), "dropped unread")
	})
	s.Stop()
	s.Restart()
	if regs := s.Regs("2001"); len(regs) != 1 || regs[0].CallID != "stale-p" {
		t.Fatalf("registrations after a restart: %+v", regs)
	}
}

// waitStopped waits until every thread of process pid is in the stopped
// state (T in /proc/<pid>/task/<tid>/stat), at most 5 s.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	WaitFor(t, 5*time.Second, "every server thread stopped", func() bool {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil || len(tasks) == 0 {
			return false
		}
		for _, task := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
			if err != nil {
				return false
			}
			// The state follows the command name, which is in parentheses.
			i := strings.LastIndexByte(string(b), ')')
			if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
				return false
			}
		}
		return true
	})
}

// options is an OPTIONS from ph (answered by the server itself).
func options(ph *udpPhone, callID string) string {
	return fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;rport;branch=z9hG4bK-%s\r\n"+
		"From: <sip:2001@127.0.0.1>;tag=o%s\r\nTo: <sip:%s>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		ph.srv, ph.port(), callID, callID, ph.srv, callID)
}
