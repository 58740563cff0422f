// Package media is switchboard's embedded RTP relay: it anchors the media of
// a call on the server so that two parties that cannot reach each other
// directly (NAT, a SIP ALG, a browser and a desk phone) still hear each other.
// It copies packets; it never transcodes and never changes a payload or a
// header (SRTP passes through untouched).
//
// # Sessions, legs and ports
//
// The proxy opens one Session per relayed call (Relay.Open). A session has
// two legs, Caller and Callee; each leg is a pair of UDP sockets facing one
// party: an even RTP port and the next odd port for RTCP, both taken from
// [Config.PortMin, Config.PortMax] (serve --rtp-ports, default 16384-32768,
// the FreeSWITCH default; PortMin is rounded up to even). A call therefore
// uses 4 ports and the default range holds 4096 relayed calls; these UDP
// ports must be open in a firewall, towards Config.BindIP (default: all
// addresses), and Config.AdvertiseIP (serve --media-ip) is the address
// written into SDP, so behind NAT it must be the public address whose ports
// are forwarded to the server.
//
// Allocation goes round the range, so a freed pair is not reused at once
// (late packets of the last call do not reach the next); a port another
// program holds (EADDRINUSE) is skipped, not an error. When no pair is left
// Open fails with ErrPortsExhausted. Every socket is closed by
// Session.Close, by a media timeout, by Relay.Close (server stop) and when
// Open fails half-way: ports never leak. Relay.PortsInUse counts the
// sockets held.
//
// A packet that arrives on leg X comes from party X and leaves from the
// other leg's socket towards the other party, so each party sees the
// relay's address as the source of everything it receives (symmetric RTP).
//
// # Latching: which source a leg accepts, and where packets for a party go
//
// Leg.SetPeer records the party's media address from its SDP (the
// "signalled" RTP address, c= and m=, and RTCP address, a=rtcp or RTP port
// + 1) and the IP its SIP came from. The first packet that arrives on the
// leg latches its source address:port when
//
//   - (a) it comes from the signalled address:port, or
//   - (b) it comes from the SIP source IP, any port (a NAT that kept the IP
//     but changed the port), or
//   - (c) it arrives within LatchWindow (default 3 s) after SetPeer, from
//     any address (a SIP ALG or a NAT that also changed the IP).
//
// Once a leg has latched, packets from any other source are dropped and
// counted as Stray (LegStats.StraySource keeps the last one): a third party
// can never redirect media after latching, and can take a leg only within
// the window of rule (c) and only before the party's own first packet. A
// packet that matches no rule before latching is dropped as Stray too.
// LegStats.LatchedBy names the rule that latched ("signalled",
// "sip_source", "window").
//
// Packets for a party go to its latched address; before anything latched
// they go to the signalled address, unless that is not a usable
// destination (port 0, 0.0.0.0 as in an old-style hold, multicast,
// broadcast): then nothing is sent until the party's first packet latches.
// Nothing is forwarded to a party whose leg has no SetPeer yet, and packets
// that arrive on a leg before its SetPeer are dropped (counted as Early).
// A re-INVITE (SetPeer again) reopens latching with a new window; counters
// are kept.
//
// RTP and RTCP latch separately. RTCP latches by the same rules against the
// signalled RTCP address, and also from the IP that RTP latched to (any
// port), so RTCP works behind an ALG after the window. While RTCP has not
// latched but RTP latched to another IP than the signalled one (NAT), RTCP
// for the party goes to the latched RTP IP at the latched RTP port + 1.
// With rtcp-mux (RFC 5761, Peer.RTCPMux) RTCP travels on the RTP port: the
// relay tells the two apart by the second byte (RTCP packet types 192-223,
// i.e. 64-95 without the marker bit), latches RTCP against the RTP address
// and sends a muxing party its RTCP from the leg's RTP socket.
//
// # What is dropped
//
// Every datagram is checked first (see Classify): datagrams that are too
// short, not version 2, whose headers do not fit, RTP on the RTCP port, and
// datagrams of 2048 bytes or more (the read buffer's size: such a datagram
// may have been truncated) are dropped and counted as Malformed; they
// neither latch nor count as media. STUN and DTLS on a plain leg are
// Malformed too. A packet whose source is a port the relay itself holds on
// one of its own addresses (an SDP pointing a leg at the relay) is dropped
// as Stray, so the relay never feeds itself. Per-packet work allocates
// nothing and state per leg has a fixed size whatever arrives.
//
// # Timeouts
//
// A session on which neither leg has accepted a packet for Config.Timeout
// (serve --media-timeout, default 60 s; negative: never) since its last
// accepted packet, Open, SetPeer or Session.Touch is closed by the relay
// (ports released) and then Config.OnTimeout runs in its own goroutine; the
// proxy ends the call. Stray, early and malformed packets do not keep a
// session alive. One ticker per Relay checks every session (period
// Timeout/8, within 10 ms-1 s). A call on hold that sends nothing at all
// ("a=inactive") times out too, so the proxy calls Touch or SetPeer on
// re-INVITEs; most phones keep sending on "a=sendonly" hold.
//
// # Statistics
//
// Per leg, "in" is from the party to the relay and "out" from the relay to
// the party: packets, bytes, first and last packet in, RFC 3550 A.3 loss of
// the in stream (sequence wrap, reordering and duplicates handled; a new
// SSRC starts a new count and keeps the old loss; a packet more than 64
// behind the newest counts as lost), A.8 interarrival jitter measured on the
// stream's first payload type (clock rate 8000 Hz unless Leg.SetClockRate),
// and an estimated MOS (see MOS).
//
// # Goroutines
//
// Each socket has one reader goroutine with a fixed 2 KiB buffer that reads,
// checks, counts and writes the packet out of the other leg's socket
// (ReadFromUDPAddrPort/WriteToUDPAddrPort, no allocation, no queue, so no
// buffering inside the relay). Session.Close and Relay.Close return only
// after the goroutines they stop have ended.
//
// # WebRTC
//
// Leg.External hands a leg to the WebRTC bridge (package wrtc): the leg
// stops reading its sockets, closes its RTCP socket (WebRTC muxes) and
// returns its RTP socket, which the bridge reads (ICE, DTLS-SRTP); the
// bridge passes the decrypted packets to Leg.Receive and receives what the
// other party sends through its Endpoint. The relay still owns the socket:
// Session.Close closes it and the Endpoint.
package media
