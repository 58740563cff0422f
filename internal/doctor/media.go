package doctor

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// CheckMedia is the check of a call's audio, one finding per direction,
// read from what the media relay counted on each leg.
const CheckMedia = "media"

// mediaStopGap is how long before the end of the call a direction's last
// packet must have come for the doctor to say its audio stopped (a BYE
// ends the streams within a packet time; a hangup after silence does not
// stop RTP, phones send comfort noise or silence).
const mediaStopGap = 5 * time.Second

// MediaCauses are the causes of the media check, in the order of the
// README's "Doctor causes" table.
func MediaCauses() []cause.Code {
	return []cause.Code{cause.MediaNeverArrived, cause.MediaStopped, cause.MediaBehindNAT, cause.MediaSIPALG, cause.WebRTCNoDTLS}
}

// mediaFindings explains a call's audio: for a relayed call one finding
// per direction (the caller's audio to the callee first), saying whether
// it arrived, from where, when it stopped and why it likely failed; for a
// call the relay did not carry, what can be inferred from the SDP and SIP
// addresses and the setting that would let the relay see it. A call that
// was never answered and was not relayed has no media finding.
func (d *diag) mediaFindings(c *Call) []Finding {
	legs := mediaPair(c.Media)
	relayed := legs[0].Relayed || legs[1].Relayed
	if !relayed {
		if !c.Answered {
			return nil
		}
		return d.unrelayedFindings(c, legs)
	}
	if !c.Answered && legs[0].PacketsIn == 0 && legs[1].PacketsIn == 0 {
		return []Finding{{Check: CheckMedia, Status: Skip, Evidence: []string{
			"the call was never answered and no early media (ringback, announcements) came from either side: no audio was expected"}}}
	}
	parties := [2]string{c.From, c.To}
	out := make([]Finding, 0, 2)
	for x := range 2 {
		out = append(out, d.directionFinding(c, parties[x], parties[1-x], &legs[x]))
	}
	return out
}

// mediaPair returns the caller's and the callee's legs (zero legs for
// what the record lacks).
func mediaPair(ms []store.MediaLeg) [2]store.MediaLeg {
	var legs [2]store.MediaLeg
	for i, m := range ms {
		switch {
		case m.Side == "caller":
			legs[0] = m
		case m.Side == "callee":
			legs[1] = m
		case i < 2:
			legs[i] = m
		}
	}
	return legs
}

// directionFinding explains the audio from party x to party y, sent on
// x's leg l (what l received "in").
func (d *diag) directionFinding(c *Call, x, y string, l *store.MediaLeg) Finding {
	dir := x + " → " + y + ": "
	f := Finding{Check: CheckMedia, Status: OK}
	where := fmt.Sprintf("signalled %s, SIP from %s", orUnknown(l.SignalledAddr), orUnknown(l.SIPSource))
	sdpIP, sipIP := mediaIP(l.SignalledAddr), mediaIP(l.SIPSource)
	nat := privateAddr(sdpIP) && publicAddr(sipIP)
	natLine := fmt.Sprintf("%s's SDP gives a private address (%s) while its SIP came from a public one (%s): %s is behind NAT",
		x, sdpIP, sipIP, x)
	end, ended := c.End, !c.End.IsZero()
	if !ended {
		end = d.in.Now
	}
	switch {
	case l.PacketsIn == 0 && !c.Answered:
		f.Status = Skip
		f.Evidence = []string{dir + fmt.Sprintf("no early media from %s before the call ended unanswered (%s)", x, where)}
		if !ended {
			f.Evidence = []string{dir + fmt.Sprintf("no early media from %s while it rings (%s)", x, where)}
		}
	case l.PacketsIn == 0 && l.Stray == 0 && !ended && d.in.Now.Sub(c.AnswerTime) < mediaStopGap:
		f.Status = Skip
		f.Evidence = []string{dir + fmt.Sprintf("no RTP from %s yet: the call was answered %s ago (%s); ask again in a few seconds",
			x, span(d.in.Now.Sub(c.AnswerTime)), where)}
	case l.WebRTC && !dtlsUp(l.DTLS) && l.PacketsIn == 0:
		f.Status, f.Cause = Fail, cause.WebRTCNoDTLS
		f.Evidence = []string{
			dir + fmt.Sprintf("no audio from %s: its browser's DTLS handshake with the relay never completed (state %s; SIP from %s)",
				x, orUnknown(l.DTLS), orUnknown(l.SIPSource)),
			"without DTLS there are no SRTP keys: the browser sends and receives no audio"}
		f.Fix = "the browser could not reach the relay's UDP port: open the --rtp-ports range (UDP) in the server's firewall and set `serve --media-ip` to an address the browser reaches (the public one behind NAT); the browser's chrome://webrtc-internals (about:webrtc in Firefox) shows the ICE candidates it tried"
		if l.DTLS == "ice-connected" {
			f.Evidence = append(f.Evidence, "its ICE checks reached the relay (UDP gets through), but the DTLS handshake that follows did not complete")
			f.Fix = "UDP reaches the relay, so look at what cuts the handshake: a firewall or VPN dropping large or fragmented UDP packets (DTLS handshake packets are about 1200 bytes; check the path MTU), or a browser extension or policy blocking WebRTC; reload the page and call again"
		}
	case l.PacketsIn == 0 && l.Stray > 0:
		f.Status, f.Cause = Fail, cause.MediaSIPALG
		f.Evidence = []string{
			dir + fmt.Sprintf("no RTP from %s was accepted (%s)", x, where),
			fmt.Sprintf("%s from %s came from neither the SDP address nor the SIP source and %s dropped (not latched, so that a third party cannot take the call's audio)",
				plural(int(min(l.Stray, 1<<30)), "packet", "packets"), orUnknown(l.StraySource), wasWere(l.Stray)),
			"something between the phone and the server rewrote the addresses: usually a router's SIP ALG"}
		f.Fix = fmt.Sprintf("disable SIP ALG (\"SIP helper\", \"SIP passthrough\", \"SIP fixup\") on %s's router or firewall; switchboard handles NAT itself", x)
	case l.PacketsIn == 0 && nat:
		f.Status, f.Cause = Fail, cause.MediaBehindNAT
		f.Evidence = []string{dir + fmt.Sprintf("no RTP ever arrived from %s (%s)", x, where),
			natLine + ", and its audio never reached the relay"}
		f.Fix = fmt.Sprintf("let %s's audio reach the relay: open the --rtp-ports range (UDP) in the server's firewall, set `serve --media-ip` to the server's public address, disable SIP ALG on %s's router and turn on NAT keepalives (rport, symmetric RTP) on the phone", x, x)
	case l.PacketsIn == 0:
		f.Status, f.Cause = Fail, cause.MediaNeverArrived
		f.Evidence = []string{dir + fmt.Sprintf("no RTP ever arrived from %s (%s)", x, where),
			fmt.Sprintf("%s heard nothing from %s for the whole call (%d packets went the other way, to %s)", y, x, l.PacketsOut, x)}
		f.Fix = fmt.Sprintf("check that %s sends audio (not muted, a microphone or audio source present) and that nothing between %s and the server blocks UDP to the --rtp-ports range on --media-ip", x, x)
	case c.Answered && end.Sub(l.LastPacketIn) > mediaStopGap && !l.LastPacketIn.IsZero():
		f.Status, f.Cause = Fail, cause.MediaStopped
		until := "is still up"
		if ended {
			until = "went on until " + d.stamp(end)
		}
		f.Evidence = []string{
			dir + fmt.Sprintf("RTP from %s stopped at %s after %s (%d packets from %s); the call %s",
				x, d.stamp(l.LastPacketIn), span(l.LastPacketIn.Sub(l.FirstPacketIn).Round(time.Second)), l.PacketsIn,
				orUnknown(l.LatchedAddr), until)}
		f.Fix = fmt.Sprintf("a NAT or firewall on %s's side likely forgot the flow: turn on NAT keepalives on the phone, lengthen the router's UDP timeout, disable SIP ALG; or %s's network changed, or it held the call without a re-INVITE", x, x)
	default:
		f.Evidence = []string{dir + fmt.Sprintf("%d packets (%s) from %s since %s; loss %s, jitter %.1f ms, MOS %.1f",
			l.PacketsIn, bytesText(l.BytesIn), orUnknown(l.LatchedAddr), d.stamp(l.FirstPacketIn),
			lossText(l.Lost, l.PacketsIn), l.JitterMS, l.MOS)}
		latchIP := mediaIP(l.LatchedAddr)
		switch {
		case latchIP.IsValid() && latchIP != sdpIP && latchIP != sipIP && (sdpIP.IsValid() || sipIP.IsValid()):
			f.Status, f.Cause = Warn, cause.MediaSIPALG
			f.Evidence = append(f.Evidence, fmt.Sprintf("the audio came from %s, neither %s's SDP address (%s) nor its SIP source (%s): the relay latched onto it; usually a router's SIP ALG rewrote the SDP",
				latchIP, x, orUnknown(l.SignalledAddr), orUnknown(l.SIPSource)))
			f.Fix = fmt.Sprintf("disable SIP ALG on %s's router; without the relay this call would have had one-way audio", x)
		case nat:
			f.Evidence = append(f.Evidence, natLine+"; the relay sends its audio back to where it comes from")
		}
		if l.Stray > 0 {
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s from %s (not the latched address) %s dropped",
				plural(int(min(l.Stray, 1<<30)), "packet", "packets"), orUnknown(l.StraySource), wasWere(l.Stray)))
			if f.Status == OK {
				f.Status, f.Cause = Warn, cause.MediaSIPALG
				f.Fix = fmt.Sprintf("if %s's address changed mid-call, disable SIP ALG on its router; a host that is none of the call's parties sending there is refused", x)
			}
		}
		if f.Status == OK && l.MOS > 0 && l.MOS < 3.6 {
			f.Status = Warn
			f.Evidence = append(f.Evidence, "poor audio (MOS below 3.6): the network between the phone and the server loses or delays packets")
		}
	}
	if l.WebRTC && f.Status != Fail {
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s is a WebRTC browser (DTLS %s)", x, orUnknown(l.DTLS)))
	}
	return f
}

// unrelayedFindings explains an answered call whose media the relay did
// not carry: nothing is known about its audio, except what the SDP and
// SIP addresses (when recorded) imply.
func (d *diag) unrelayedFindings(c *Call, legs [2]store.MediaLeg) []Finding {
	f := Finding{Check: CheckMedia, Status: Skip, Evidence: []string{
		"the media of this call was not relayed: the phones sent their audio to each other, and switchboard did not see it, so it cannot tell which direction failed"}}
	f.Fix = "to have the relay carry and count every call's audio: `switchboard serve --media-relay always`"
	parties := [2]string{c.From, c.To}
	for x := range 2 {
		l := legs[x]
		sdpIP, sipIP := mediaIP(l.SignalledAddr), mediaIP(l.SIPSource)
		switch {
		case privateAddr(sdpIP) && publicAddr(sipIP):
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s's SDP gives a private address (%s) while its SIP came from a public one (%s): %s is behind NAT, so %s's audio went to an address it cannot reach: expect one-way or no audio",
				parties[x], l.SignalledAddr, sipIP, parties[x], parties[1-x]))
		case addrMismatch(l):
			// The rule of serve --media-relay auto (the proxy's relayReason):
			// a party whose SDP address is not its SIP source is behind NAT.
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s's SDP names %s while its SIP came from %s: %s is behind NAT (or a SIP ALG rewrote one of them), so %s's audio went to an address that likely does not reach it: expect one-way or no audio",
				parties[x], l.SignalledAddr, sipIP, parties[x], parties[1-x]))
		default:
			continue
		}
		f.Status, f.Cause = Warn, cause.MediaBehindNAT
		f.Fix = fmt.Sprintf("relay such calls: `switchboard serve --media-relay auto` (the default) relays a call when a party is behind NAT, `--media-relay always` every call; also disable SIP ALG on %s's router", parties[x])
	}
	return []Finding{f}
}

// addrMismatch reports a leg of a plain phone whose SDP audio address is
// not the address its SIP came from: the NAT rule of `serve --media-relay
// auto` (a browser's SDP is left to ICE, 0.0.0.0 is a hold).
func addrMismatch(l store.MediaLeg) bool {
	sdpIP, sipIP := mediaIP(l.SignalledAddr), mediaIP(l.SIPSource)
	return !l.WebRTC && sdpIP.IsValid() && sipIP.IsValid() && !sdpIP.IsUnspecified() && sdpIP != sipIP
}

// mediaProblem returns the first failing media finding, if any.
func mediaProblem(fs []Finding) (Finding, bool) {
	for _, f := range fs {
		if f.Check == CheckMedia && f.Status == Fail {
			return f, true
		}
	}
	return Finding{}, false
}

func dtlsUp(state string) bool {
	return state == "dtls-connected" || state == "connected"
}

// mediaIP reads the IP of "ip", "ip:port" or "[ip]:port" (invalid when
// none).
func mediaIP(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(strings.Trim(s, "[]"))
	return a.Unmap()
}

// privateAddr reports an address that is not reachable from the Internet:
// RFC 1918/4193 private, RFC 6598 shared (carrier-grade NAT), link-local.
func privateAddr(a netip.Addr) bool {
	return a.IsValid() && (a.IsPrivate() || a.IsLinkLocalUnicast() || cgnat.Contains(a))
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// publicAddr reports a routable unicast address.
func publicAddr(a netip.Addr) bool {
	return a.IsValid() && a.IsGlobalUnicast() && !privateAddr(a)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func wasWere(n uint64) string {
	if n == 1 {
		return "was"
	}
	return "were"
}

func bytesText(n uint64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 10<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// lossText writes lost packets with their share of those expected.
func lossText(lost int64, got uint64) string {
	if lost <= 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%.1f%%)", lost, 100*float64(lost)/float64(uint64(lost)+got))
}
