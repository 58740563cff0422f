package e2e

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// MediaLegRecord is one leg of a relayed call in `calls --json`.
type MediaLegRecord struct {
	Side          string `json:"side"`
	Relayed       bool   `json:"relayed"`
	Codec         string `json:"codec"`
	SignalledAddr string `json:"signalled_addr"`
	SIPSource     string `json:"sip_source"`
	LatchedAddr   string `json:"latched_addr"`
	PacketsIn     uint64 `json:"packets_in"`
	BytesIn       uint64 `json:"bytes_in"`
	PacketsOut    uint64 `json:"packets_out"`
	BytesOut      uint64 `json:"bytes_out"`
	Stray         uint64 `json:"stray"`
	StraySource   string `json:"stray_source"`
	Malformed     uint64 `json:"malformed"`
}

// mediaCall is a call record with its media legs.
type mediaCall struct {
	ID        int64            `json:"id"`
	CallID    string           `json:"call_id"`
	SIPStatus int              `json:"sip_status"`
	Cause     string           `json:"cause"`
	HangupBy  string           `json:"hangup_by"`
	Detail    string           `json:"detail"`
	Media     []MediaLegRecord `json:"media"`
}

// lastMediaCall waits until the newest call record satisfies ok.
func lastMediaCall(t *testing.T, s *Server, what string, ok func(mediaCall) bool) mediaCall {
	t.Helper()
	return findMediaCall(t, s, 1, what, ok)
}

// findMediaCall waits until one of the newest n call records satisfies ok
// and returns it.
func findMediaCall(t *testing.T, s *Server, n int, what string, ok func(mediaCall) bool) mediaCall {
	t.Helper()
	var last []mediaCall
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		last = nil
		s.JSON(&last, "calls", "--limit", strconv.Itoa(n))
		for _, c := range last {
			if ok(c) {
				return c
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no call record with %s; last: %+v\nserver log:\n%s", what, last, s.Log())
	return mediaCall{}
}

// mediaPhones starts two baresip phones, 2001 (tone 440 Hz) and 2002 (auto
// answer, tone 1000 Hz), recording what they receive, registered with s.
// extra2001 are further config lines for 2001.
func mediaPhones(t *testing.T, s *Server, extra2001 ...string) (a, b *Baresip, recA, recB string) {
	t.Helper()
	recA, recB = t.TempDir(), t.TempDir()
	a = StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2001", "secret-2001", s.Addr, "udp")},
		Modules: []string{"sndfile"}, Config: append([]string{"audio_source ausine,440", "ausrc_srate 48000", "ausrc_channels 2", "snd_path " + recA}, extra2001...)})
	b = StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2002", "secret-2002", s.Addr, "udp", "answermode=auto")},
		Modules: []string{"sndfile"}, Config: []string{"audio_source ausine,1000", "ausrc_srate 48000", "ausrc_channels 2", "snd_path " + recB}})
	a.WaitRegistered("2001@127.0.0.1", 15*time.Second)
	b.WaitRegistered("2002@127.0.0.1", 15*time.Second)
	return a, b, recA, recB
}

// checkTone asserts that the largest recording of what a phone received
// (in dir) holds the other side's tone at wantHz.
func checkTone(t *testing.T, dir, who string, wantHz float64) {
	t.Helper()
	files := Recordings(dir, "dec")
	if len(files) == 0 {
		all, _ := filepath.Glob(filepath.Join(dir, "*"))
		t.Fatalf("%s recorded nothing it received (files: %v)", who, all)
	}
	st, err := ReadWAVStats(files[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s received %.1f s of audio: RMS %.3f, peak %.3f, ~%.0f Hz", who, st.Seconds, st.RMS, st.Peak, st.FreqHz)
	if st.Seconds < 1 || st.RMS < 0.01 || st.Peak < 0.05 {
		t.Fatalf("%s's recording is silent or short: %+v", who, st)
	}
	if math.Abs(st.FreqHz-wantHz) > wantHz*0.15 {
		t.Fatalf("%s heard %.0f Hz, want the other side's %.0f Hz tone", who, st.FreqHz, wantHz)
	}
}

// relayedCall makes 2001 call 2002, keeps the call up for hold, hangs up,
// and returns the call record once it has its media legs.
func relayedCall(t *testing.T, s *Server, a, b *Baresip, hold time.Duration) mediaCall {
	t.Helper()
	if err := a.Dial("sip:2002@" + s.Addr); err != nil {
		t.Fatalf("dial: %v\n%s", err, a.Log())
	}
	a.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	b.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	time.Sleep(hold)
	if err := a.Hangup(); err != nil {
		t.Fatalf("hangup: %v", err)
	}
	b.WaitEvent("CALL_CLOSED", 0, 10*time.Second)
	a.WaitEvent("CALL_CLOSED", 0, 10*time.Second)
	return lastMediaCall(t, s, "NORMAL_CLEARING and media legs", func(c mediaCall) bool {
		return c.Cause == "NORMAL_CLEARING" && len(c.Media) == 2
	})
}

// checkRelayed asserts that both parties sent their RTP to the relay and
// got the other's from it: each leg counted packets in and out (a phone
// only sends to the relay's port if the SDP it received named it), from
// the address it latched.
func checkRelayed(t *testing.T, c mediaCall) {
	t.Helper()
	for _, l := range c.Media {
		t.Logf("%s leg: signalled %s, SIP %s, latched %s, in %d pkts, out %d pkts, stray %d, malformed %d, codec %s",
			l.Side, l.SignalledAddr, l.SIPSource, l.LatchedAddr, l.PacketsIn, l.PacketsOut, l.Stray, l.Malformed, l.Codec)
		if !l.Relayed || l.PacketsIn < 50 || l.PacketsOut < 50 || l.LatchedAddr == "" || l.BytesIn == 0 {
			t.Fatalf("%s leg did not carry audio through the relay: %+v", l.Side, l)
		}
	}
	if c.Media[0].Side != "caller" || c.Media[1].Side != "callee" {
		t.Fatalf("legs out of order: %+v", c.Media)
	}
}

// TestMediaRelayAlways: with --media-relay always, baresip 2001 calls
// baresip 2002: each phone's tone reaches the other (recordings), each
// phone sent its RTP to the relay (the SDP each got named the relay: the
// relay counted packets in on both legs), and the call record keeps the
// media counters.
func TestMediaRelayAlways(t *testing.T) {
	t.Parallel()
	s := callSetup(t, "--media-relay", "always", "--rtp-ports", "12000-12099")
	a, b, recA, recB := mediaPhones(t, s)
	c := relayedCall(t, s, a, b, 2*time.Second)
	checkRelayed(t, c)
	a.Stop()
	b.Stop()
	checkTone(t, recB, "2002", 440)
	checkTone(t, recA, "2001", 1000)
}

// TestMediaRelayNAT: in the default auto mode, a phone behind NAT calls
// baresip 2002: its SDP names 127.0.0.77:4000 (where nothing listens: its
// private address) while its SIP and RTP come from 127.0.0.1 (another
// port: its NAT's). The relay anchors the call: the phone's 440 Hz tone
// reaches 2002 (recording) and 2002's 1000 Hz tone reaches the phone at
// the address its RTP came from (decoded here). Without the relay, 2002
// would send to 127.0.0.77 and the phone would hear nothing.
func TestMediaRelayNAT(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	recB := t.TempDir()
	b := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2002", "secret-2002", s.Addr, "udp", "answermode=auto")},
		Modules: []string{"sndfile"}, Config: []string{"audio_source ausine,1000", "ausrc_srate 48000", "ausrc_channels 2", "snd_path " + recB}})
	b.WaitRegistered("2002@127.0.0.1", 15*time.Second)

	phone := NewRTPPhone(t)
	file := filepath.Join(t.TempDir(), "answer-addr")
	done := make(chan SIPpResult, 1)
	go func() {
		done <- SIPp(t, s.Addr, "call-uac-media.xml", 1, "-inf",
			CSV(t, "SEQUENTIAL", AuthRow("2001", "secret-2001", "2002", "127.0.0.77", "4000", file)), "-d", "4000")
	}()
	relay, ok := WaitRelayAddr(file, 15*time.Second)
	if !ok {
		r := <-done
		t.Fatalf("the phone's call got no SDP answer with an audio address (SIPp %d):\n%s\nserver log:\n%s", r.Code, r.Output, s.Log())
	}
	t.Logf("the SDP answer the NATed phone got names %s", relay)
	phone.SendTone(relay, 440, 3*time.Second, 0x1234, 0, nil)
	r := <-done
	if r.Code != 0 {
		t.Fatalf("the call failed (%d):\n%s", r.Code, r.Output)
	}
	c := lastMediaCall(t, s, "NORMAL_CLEARING and media legs", func(c mediaCall) bool {
		return c.Cause == "NORMAL_CLEARING" && len(c.Media) == 2
	})
	checkRelayed(t, c)
	if c.Media[0].SignalledAddr != "127.0.0.77:4000" || c.Media[0].LatchedAddr != phone.Addr().String() {
		t.Fatalf("the caller leg should be signalled at 127.0.0.77:4000 and latched to %s: %+v", phone.Addr(), c.Media[0])
	}
	tone := phone.Tone()
	t.Logf("the NATed phone received %.1f s of audio: RMS %.3f, ~%.0f Hz, from %v", tone.Seconds, tone.RMS, tone.FreqHz, phone.Sources())
	if tone.Seconds < 1 || tone.RMS < 0.01 || math.Abs(tone.FreqHz-1000) > 150 {
		t.Fatalf("the NATed phone did not hear 2002's 1000 Hz tone: %+v", tone)
	}
	if src := phone.Sources(); len(src) != 1 || src[0] != relay {
		t.Fatalf("audio reached the phone from %v, want only the relay %s", src, relay)
	}
	b.Stop()
	checkTone(t, recB, "2002", 440)
}

// TestMediaRelayDTMF: RFC 4733 telephone-events cross the relay both
// ways: baresip 2002 sends the digit 7 (ctrl_tcp sndcode), and the phone
// behind NAT (relayed in auto) decodes event 7 from what arrives; the
// phone sends the digit 5 as RFC 4733 packets, and baresip reports that it
// received DTMF 5.
func TestMediaRelayDTMF(t *testing.T) {
	t.Parallel()
	s := callSetup(t)
	b := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2002", "secret-2002", s.Addr, "udp", "answermode=auto")},
		Config: []string{"audio_source ausine,1000", "ausrc_srate 48000", "ausrc_channels 2"}})
	b.WaitRegistered("2002@127.0.0.1", 15*time.Second)
	phone := NewRTPPhone(t)
	file := filepath.Join(t.TempDir(), "answer-addr")
	done := make(chan SIPpResult, 1)
	go func() {
		done <- SIPp(t, s.Addr, "call-uac-media.xml", 1, "-inf",
			CSV(t, "SEQUENTIAL", AuthRow("2001", "secret-2001", "2002", "127.0.0.77", "4000", file)), "-d", "5000")
	}()
	relay, ok := WaitRelayAddr(file, 15*time.Second)
	if !ok {
		r := <-done
		t.Fatalf("the phone's call got no SDP answer with an audio address (SIPp %d):\n%s\nbaresip:\n%s", r.Code, r.Output, b.Log())
	}
	b.WaitEvent("CALL_ESTABLISHED", 0, 10*time.Second)
	// The phone's audio latches its leg; 2002's reaches the phone.
	n := phone.SendTone(relay, 440, time.Second, 0x4321, 0, nil)
	WaitFor(t, 5*time.Second, "2002's audio at the phone", func() bool { return phone.Received(0) > 10 })

	if _, err := b.Command("sndcode", "7"); err != nil {
		t.Fatalf("sndcode: %v", err)
	}
	WaitFor(t, 5*time.Second, "telephone-event 7 from 2002 at the phone", func() bool {
		return bytes.Contains(phone.Events(), []byte{7})
	})
	// The event continues the phone's RTP stream (sequence and timestamp),
	// and audio follows (baresip's jitter buffer releases a packet when
	// the next arrives).
	phone.SendEvent(relay, 5, uint16(n), uint32(n*160), 0x4321)
	phone.SendTone(relay, 440, time.Second, 0x4321, n+5, nil)
	ev := b.WaitEvent("CALL_DTMF_START", 0, 5*time.Second)
	if !strings.Contains(ev.Param, "5") {
		t.Fatalf("baresip received DTMF %q, want 5", ev.Param)
	}
	if r := <-done; r.Code != 0 {
		t.Fatalf("the call failed (%d):\n%s", r.Code, r.Output)
	}
	c := lastMediaCall(t, s, "NORMAL_CLEARING and media legs", func(c mediaCall) bool {
		return c.Cause == "NORMAL_CLEARING" && len(c.Media) == 2
	})
	if c.Media[0].PacketsIn == 0 || c.Media[1].PacketsIn == 0 {
		t.Fatalf("the call was not relayed: %+v", c.Media)
	}
	t.Logf("phone received events %v; PT 101 packets %d", phone.Events(), phone.Received(101))
}

// failScenario writes a copy of call-uac-fail.xml whose authenticated
// INVITE carries body as its SDP and that accepts 400 and 488 too, and
// returns its path.
func failScenario(t *testing.T, body string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "sipp", "call-uac-fail.xml"))
	if err != nil {
		t.Fatal(err)
	}
	x := string(b)
	sdp := "      v=0\n      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]\n      s=-\n      c=IN IP[media_ip_type] [media_ip]\n" +
		"      t=0 0\n      m=audio [media_port] RTP/AVP 0\n      a=rtpmap:0 PCMU/8000\n"
	i := strings.LastIndex(x, sdp)
	if i < 0 {
		t.Fatal("call-uac-fail.xml: SDP of the second INVITE not found")
	}
	var nb strings.Builder
	for _, l := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		nb.WriteString("      " + l + "\n")
	}
	x = x[:i] + nb.String() + x[i+len(sdp):]
	x = strings.Replace(x, `<recv response="403" optional="true" next="ack"/>`,
		`<recv response="400" optional="true" next="ack"/>
  <recv response="488" optional="true" next="ack"/>
  <recv response="403" optional="true" next="ack"/>`, 1)
	path := filepath.Join(t.TempDir(), "call-uac-badsdp.xml")
	if err := os.WriteFile(path, []byte(x), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// serverSockets counts the sockets the server process holds open.
func serverSockets(t *testing.T, s *Server) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("count the server's sockets: %v", err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// TestMediaRelayFaults: bad input and resource limits of the relay, on a
// server with --media-relay always, a range of 4 ports (one relayed call)
// and a 3 s media timeout:
//   - SDP offers with hundreds of m= lines or an absurd port: 400 with a
//     Warning saying why, nothing relayed;
//   - during a call, RTP from a third address is not latched (the phone's
//     audio goes on, the stray packets are counted with their source) and
//     malformed RTP, RTCP and STUN sent to the relay's ports are dropped
//     and counted;
//   - with the range taken by a call, the next call gets 503
//     media_ports_exhausted and a journal event;
//   - a call whose parties vanish without a BYE ends after the media
//     timeout (media_timeout, hung up by the server, a BYE to each party)
//     and its ports are released: the server holds as many sockets after
//     as before (counted in /proc/PID/fd).
func TestMediaRelayFaults(t *testing.T) {
	t.Parallel()
	s := callSetup(t, "--media-relay", "always", "--rtp-ports", "12200-12203", "--media-timeout", "3s")

	recB := t.TempDir()
	b := StartBaresip(t, BaresipOptions{Accounts: []string{BaresipAccount("2003", "secret-2003", s.Addr, "udp", "answermode=auto")},
		Modules: []string{"sndfile"}, Config: []string{"audio_source ausine,1000", "ausrc_srate 48000", "ausrc_channels 2", "snd_path " + recB}})
	b.WaitRegistered("2003@127.0.0.1", 15*time.Second)

	t.Run("bad SDP", func(t *testing.T) {
		many := "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n" + strings.Repeat("m=audio 4000 RTP/AVP 0\n", 200)
		absurd := "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 99999 RTP/AVP 0\n"
		for _, tc := range []struct{ name, body, want string }{
			{"200 m= lines", many, "too many media lines"},
			{"port 99999", absurd, "port 99999 out of range"},
		} {
			r := SIPp(t, s.Addr, failScenario(t, tc.body), 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2003")))
			fin := lastFinalResponse(t, r)
			warn := strings.Join(fin.Get("Warning"), " ")
			if fin.Status() != "400 Bad Request" || !strings.Contains(warn, tc.want) {
				t.Fatalf("%s: got %q Warning %q, want 400 with a Warning saying %q\n%s", tc.name, fin.Status(), warn, tc.want, r.Output)
			}
		}
	})

	t.Run("stray and malformed packets", func(t *testing.T) {
		phone := NewRTPPhone(t)
		file := filepath.Join(t.TempDir(), "answer-addr")
		done := make(chan SIPpResult, 1)
		go func() {
			done <- SIPp(t, s.Addr, "call-uac-media.xml", 1, "-inf",
				CSV(t, "SEQUENTIAL", AuthRow("2001", "secret-2001", "2003", "127.0.0.1", strconv.Itoa(int(phone.Addr().Port())), file)), "-d", "4000")
		}()
		relay, ok := WaitRelayAddr(file, 15*time.Second)
		if !ok {
			r := <-done
			t.Fatalf("no SDP answer (SIPp %d):\n%s", r.Code, r.Output)
		}
		// A third party at 127.0.0.5 sends a 2000 Hz tone and garbage to
		// the phone's leg once the phone's own RTP latched it.
		attacker, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 5)})
		if err != nil {
			t.Fatal(err)
		}
		defer attacker.Close()
		stop := make(chan struct{})
		go func() {
			time.Sleep(500 * time.Millisecond)
			SendTone(attacker, relay, 2000, 2*time.Second, 0x6666, 0, stop)
		}()
		go func() {
			time.Sleep(700 * time.Millisecond)
			rtcp := netip.AddrPortFrom(relay.Addr(), relay.Port()+1)
			stun := []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
			for _, pkt := range [][]byte{{}, {0x80}, {0x40, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1}, stun, bytes.Repeat([]byte{0xff}, 3000),
				{0x80, 0xc8, 0xff, 0xff}, []byte("INVITE sip:x SIP/2.0\r\n\r\n")} {
				for _, dst := range []netip.AddrPort{relay, rtcp} {
					_, _ = phone.Conn.WriteToUDPAddrPort(pkt, dst) // from the latched phone itself
				}
			}
		}()
		phone.SendTone(relay, 440, 3*time.Second, 0x1234, 0, nil)
		close(stop)
		if r := <-done; r.Code != 0 {
			t.Fatalf("the call failed (%d):\n%s", r.Code, r.Output)
		}
		c := lastMediaCall(t, s, "NORMAL_CLEARING and media legs", func(c mediaCall) bool {
			return c.Cause == "NORMAL_CLEARING" && len(c.Media) == 2
		})
		checkRelayed(t, c)
		l := c.Media[0]
		if l.LatchedAddr != phone.Addr().String() || l.Stray < 20 || !strings.HasPrefix(l.StraySource, "127.0.0.5:") || l.Malformed < 3 {
			t.Fatalf("caller leg: want latched to the phone %s, the attacker's packets counted as stray from 127.0.0.5 and the garbage as malformed: %+v",
				phone.Addr(), l)
		}
		if tone := phone.Tone(); tone.RMS < 0.01 || math.Abs(tone.FreqHz-1000) > 150 {
			t.Fatalf("the phone lost 2003's audio: %+v", tone)
		}
		// 2003 heard the phone's 440 Hz, not the attacker's 2000 Hz.
		b.WaitEvent("CALL_CLOSED", 0, 10*time.Second)
		b.Stop()
		checkTone(t, recB, "2003", 440)
	})

	t.Run("ports exhausted and media timeout", func(t *testing.T) {
		callee := NewPhone(t, s, "2002", "secret-2002")
		callee.Start("call-phone-answer.xml")
		NewPhone(t, s, "2003", "secret-2003") // registered, never rung
		base := serverSockets(t, s)
		// 2001 calls 2002; neither sends any media, and neither hangs up.
		file := filepath.Join(t.TempDir(), "answer-addr")
		done := make(chan SIPpResult, 1)
		go func() {
			done <- SIPp(t, s.Addr, "call-uac-media.xml", 1, "-inf",
				CSV(t, "SEQUENTIAL", AuthRow("2001", "secret-2001", "2002", "127.0.0.1", "4000", file)), "-d", "20000")
		}()
		if _, ok := WaitRelayAddr(file, 15*time.Second); !ok {
			r := <-done
			t.Fatalf("no SDP answer (SIPp %d):\n%s", r.Code, r.Output)
		}
		if n := serverSockets(t, s); n < base+4 {
			t.Fatalf("the relayed call holds %d sockets more, want its 4 relay ports", n-base)
		}
		var st struct {
			MediaRelay struct {
				Mode       string `json:"mode"`
				RTPPorts   string `json:"rtp_ports"`
				MediaIP    string `json:"media_ip"`
				PortsInUse int    `json:"ports_in_use"`
			} `json:"media_relay"`
		}
		s.JSON(&st, "status")
		if m := st.MediaRelay; m.Mode != "always" || m.RTPPorts != "12200-12203" || m.MediaIP != "127.0.0.1" || m.PortsInUse != 4 {
			t.Fatalf("status --json media_relay during the call: %+v", m)
		}
		// The range is taken: the next call is refused.
		r := SIPp(t, s.Addr, "call-uac-fail.xml", 1, "-inf", CSV(t, "SEQUENTIAL", callerRow("2001", "secret-2001", "2003")))
		fin := lastFinalResponse(t, r)
		if fin.Status() != "503 Service Unavailable" || !strings.Contains(strings.Join(fin.Get("Reason"), " "), "media_ports_exhausted") {
			t.Fatalf("second call: %q %v, want 503 with Reason media_ports_exhausted", fin.Status(), fin.Get("Reason"))
		}
		WaitFor(t, 5*time.Second, "a media_ports_exhausted journal event", func() bool {
			return len(callJournal(s, "--cause", "media_ports_exhausted")) > 0
		})
		// No media for 3 s: the server hangs up.
		c := findMediaCall(t, s, 3, "media_timeout", func(c mediaCall) bool { return c.Cause == "media_timeout" })
		if c.HangupBy != "server" || len(c.Media) != 2 {
			t.Fatalf("timed-out call record: %+v", c)
		}
		<-done // the caller got its BYE (SIPp fails on it: not in its scenario)
		WaitFor(t, 10*time.Second, "the server's sockets back to where they were", func() bool {
			return serverSockets(t, s) <= base
		})
		// The callee got the server's BYE.
		if got := receivedRequests(callee.Messages(), "BYE"); len(got) == 0 {
			t.Fatalf("the callee got no BYE from the server")
		}
	})
}
