// Package cause is the one place that maps a decision switchboard takes to
// what goes on the wire (SIP status, reason phrase, Q.850 Reason header) and
// to the stable names operators and scripts read in the journal, in call
// records and in the doctor's findings.
//
// Registration outcomes use switchboard's snake_case codes (wrong_password,
// acl_denied, ...). Call outcomes use FreeSWITCH hangup cause names
// (USER_NOT_REGISTERED, NORMAL_CLEARING, ...) so admins coming from
// FreeSWITCH/FusionPBX recognise them.
package cause

import "strconv"

// Code is a stable cause name.
type Code string

// Registration and request-level outcomes (journal and doctor causes).
const (
	Registered        Code = "registered"
	Unregistered      Code = "unregistered"
	Challenged        Code = "challenged"
	StaleNonce        Code = "stale_nonce"
	BadNonce          Code = "bad_nonce"
	NonceReplay       Code = "nonce_replay"
	ExtensionMissing  Code = "extension_missing"
	ExtensionDisabled Code = "extension_disabled"
	NeverSeen         Code = "never_seen"
	WrongPassword     Code = "wrong_password"
	AuthUserMismatch  Code = "auth_user_mismatch"
	WrongDomain       Code = "wrong_domain"
	ACLDenied         Code = "acl_denied"
	IPBanned          Code = "ip_banned"
	MaxRegistrations  Code = "max_registrations"
	IntervalTooBrief  Code = "interval_too_brief"
	Expired           Code = "registration_expired"
	Unreachable       Code = "unreachable"
	Reachable         Code = "reachable"
	ListenerDown      Code = "listener_down"
	BadRequest        Code = "bad_request"
	OutOfOrder        Code = "out_of_order"
	RateLimited       Code = "rate_limited"
	Scanner           Code = "scanner"
	// DigestNoQOP: the phone answered the challenge without qop (RFC 2069
	// style) although qop="auth" was offered; refused unless serve runs
	// with --digest-allow-rfc2069.
	DigestNoQOP Code = "digest_no_qop"
	// DigestURIMismatch: the digest uri parameter does not name the
	// Request-URI (RFC 7616 §3.4.6): the answer was made for another request.
	DigestURIMismatch Code = "digest_uri_mismatch"
	// RouteTokenRefused: an in-dialog request (a To tag, usually a Route
	// with switchboard's Record-Route token) that the proxy will not route:
	// forged or missing token, a dialog it does not know (ended, never
	// set up, or set up before a restart: answered 481), a sender that is
	// not one of the dialog's parties, or a target or route the dialog did
	// not record. Answered 403 unless the dialog is unknown.
	RouteTokenRefused Code = "route_token_refused"
	// RemovedByAdmin: an operator dropped the registration (switchboard reg
	// rm / reg flush); nothing was sent to the phone.
	RemovedByAdmin Code = "removed_by_admin"
	// ConnectionLimit: a TCP connection was closed at accept (the
	// per-address or total cap) or evicted; AcceptFailed: the TCP listener
	// could not accept (file descriptors exhausted) and retries.
	ConnectionLimit Code = "connection_limit"
	AcceptFailed    Code = "accept_failed"
	// StoreUnavailable: the database cannot write (a full disk, a
	// read-only file system), so a binding change could not be made
	// durable and was refused: 503 with Retry-After, never a 200.
	StoreUnavailable Code = "store_unavailable"
	// TLSHandshakeFailed: a client's TLS handshake failed (it does not
	// trust the certificate, speaks no TLS on the TLS port, or offers no
	// common version/cipher); HandshakeTimeout: a TLS handshake or a
	// WebSocket upgrade request did not complete in time.
	TLSHandshakeFailed Code = "tls_handshake_failed"
	HandshakeTimeout   Code = "handshake_timeout"
	// WSOriginRefused: a WebSocket upgrade from a web page whose Origin is
	// neither this host, a loopback page nor in --ws-origins;
	// WSNoSIPSubprotocol: an upgrade without Sec-WebSocket-Protocol: sip;
	// WSBadUpgrade: not a WebSocket upgrade at all.
	WSOriginRefused    Code = "ws_origin_refused"
	WSNoSIPSubprotocol Code = "ws_no_sip_subprotocol"
	WSBadUpgrade       Code = "ws_bad_upgrade"
	// WSFrameTooLarge: a WebSocket frame over 64 KiB; the connection was
	// closed.
	WSFrameTooLarge Code = "ws_frame_too_large"
	// ConnectionClosed: the TCP, TLS or WebSocket connection a phone
	// registered over closed; its bindings are unreachable (calls get 480)
	// until it registers again.
	ConnectionClosed Code = "connection_closed"
	// TLSCertificate: the certificate served on TLS/WSS has expired, is
	// about to, or does not name the domain phones register to.
	TLSCertificate Code = "tls_certificate"
)

// Operator actions, journaled by the CLI (journal kind "admin", the OS user
// who ran it in the event's auth_user) so the doctor can tell past evidence
// from the state in force: a ban lifted or added, an ACL or the profile
// edited. The doctor also answers BanLifted and ACLChanged when a phone was
// refused for a reason that no longer holds and has not retried since.
const (
	BanLifted      Code = "ban_lifted"
	BanAdded       Code = "ban_added"
	ACLChanged     Code = "acl_changed"
	ProfileChanged Code = "profile_changed"
)

// Web console and HTTP API (package web). A refused console login is
// journaled with kind "console", the name tried in auth_user and the
// client's address in source: wrong_password, unknown_admin, or
// login_locked (too many failures from that address or for that name).
// Changes made in the console or with `switchboard admin` are kind
// "admin" events naming the admin: admin_changed (admins, API tokens),
// extension_changed (extensions edited in the console).
const (
	UnknownAdmin     Code = "unknown_admin"
	LoginLocked      Code = "login_locked"
	AdminChanged     Code = "admin_changed"
	ExtensionChanged Code = "extension_changed"
)

// Call outcomes, FreeSWITCH hangup cause names.
const (
	NormalClearing        Code = "NORMAL_CLEARING"
	UserNotRegistered     Code = "USER_NOT_REGISTERED"
	UserBusy              Code = "USER_BUSY"
	NoAnswer              Code = "NO_ANSWER"
	NoUserResponse        Code = "NO_USER_RESPONSE"
	UnallocatedNumber     Code = "UNALLOCATED_NUMBER"
	CallRejected          Code = "CALL_REJECTED"
	OriginatorCancel      Code = "ORIGINATOR_CANCEL"
	RecoveryOnTimerExpire Code = "RECOVERY_ON_TIMER_EXPIRE"
	TooManyHops           Code = "EXCHANGE_ROUTING_ERROR"
	TemporaryFailure      Code = "NORMAL_TEMPORARY_FAILURE"
	LoopDetected          Code = "LOOP_DETECTED"
	// SystemShutdown ends the record of a call that was still up when
	// switchboard stopped (or was killed): the proxy lost track of it, so its
	// real end time is unknown. It never goes on the wire.
	SystemShutdown Code = "SYSTEM_SHUTDOWN"
	// WebRTCNeedsMediaRelay: a call between a WebRTC browser (DTLS-SRTP
	// and ICE, registered over WS/WSS) and a plain-RTP phone, refused
	// with 488 because only a media relay could carry its audio and
	// switchboard has none yet (package sdpkind decides).
	WebRTCNeedsMediaRelay Code = "webrtc_needs_media_relay"
)

// Answer is what the caller or phone gets on the wire for a cause.
type Answer struct {
	Status int
	Reason string // reason phrase
	Q850   int    // 0: no Reason header
}

// answers maps every cause that ends a request to its SIP answer.
var answers = map[Code]Answer{
	// Registration failures: a wrong password, an unknown user and a domain
	// we do not serve get the very same answer, so a scanner cannot tell
	// which extensions exist.
	WrongPassword:     {403, "Forbidden", 0},
	ExtensionMissing:  {403, "Forbidden", 0},
	ExtensionDisabled: {403, "Forbidden", 0},
	WrongDomain:       {403, "Forbidden", 0},
	AuthUserMismatch:  {403, "Forbidden", 0},
	ACLDenied:         {403, "Forbidden", 0},
	MaxRegistrations:  {403, "Forbidden", 0},
	IntervalTooBrief:  {423, "Interval Too Brief", 0},
	BadRequest:        {400, "Bad Request", 0},
	OutOfOrder:        {500, "Server Internal Error", 0},
	DigestNoQOP:       {403, "Forbidden", 0},
	DigestURIMismatch: {400, "Bad Request", 0},
	RouteTokenRefused: {403, "Forbidden", 0},
	StoreUnavailable:  {503, "Service Unavailable", 0},

	NormalClearing:        {200, "OK", 16},
	UserNotRegistered:     {480, "Temporarily Unavailable", 20},
	UserBusy:              {486, "Busy Here", 17},
	NoAnswer:              {480, "Temporarily Unavailable", 19},
	NoUserResponse:        {408, "Request Timeout", 18},
	UnallocatedNumber:     {404, "Not Found", 1},
	CallRejected:          {603, "Decline", 21},
	OriginatorCancel:      {487, "Request Terminated", 127},
	RecoveryOnTimerExpire: {408, "Request Timeout", 102},
	TooManyHops:           {483, "Too Many Hops", 25},
	TemporaryFailure:      {503, "Service Unavailable", 41},
	LoopDetected:          {482, "Loop Detected", 25},
	// Q.850 88: incompatible destination, as FreeSWITCH answers 488.
	WebRTCNeedsMediaRelay: {488, "Not Acceptable Here", 88},
	// Q.850 47: resource unavailable.
	MediaPortsExhausted: {503, "Service Unavailable", 47},
	// Q.850 88: incompatible destination (FreeSWITCH's
	// INCOMPATIBLE_DESTINATION for a codec mismatch).
	MediaCodecMismatch: {488, "Not Acceptable Here", 88},
	// Not an answer (the call was up): the Reason of the BYEs the server
	// sends both parties. Q.850 102: recovery on timer expiry.
	MediaTimeout: {408, "Request Timeout", 102},
}

// AnswerFor returns the SIP answer for a cause; ok is false for causes that
// do not end a request (e.g. Registered).
func AnswerFor(c Code) (Answer, bool) {
	a, ok := answers[c]
	return a, ok
}

// ReasonHeader returns the value of a Reason header for a call cause, e.g.
// `Q.850;cause=20;text="USER_NOT_REGISTERED"`, or "" when the cause has no
// Q.850 value.
func ReasonHeader(c Code) string {
	a, ok := answers[c]
	if !ok || a.Q850 == 0 {
		return ""
	}
	return "Q.850;cause=" + strconv.Itoa(a.Q850) + ";text=\"" + string(c) + "\""
}

// FromCalleeStatus maps a final failure status a callee answered with to the
// call cause recorded and relayed (FreeSWITCH's sip_cause_to_hangup rules).
func FromCalleeStatus(status int) Code {
	switch {
	case status >= 200 && status < 300:
		return NormalClearing
	case status == 486 || status == 600:
		return UserBusy
	case status == 603 || status == 401 || status == 403 || status == 407:
		return CallRejected
	case status == 404 || status == 604:
		return UnallocatedNumber
	case status == 480:
		return NoUserResponse
	case status == 408 || status == 504:
		return RecoveryOnTimerExpire
	case status == 487:
		return OriginatorCancel
	default:
		return TemporaryFailure
	}
}

// All returns every cause code, registration outcomes first, then call
// outcomes. A new Code constant belongs here too (journal --cause accepts
// the codes listed here and those already in the journal).
func All() []Code {
	return []Code{Registered, Unregistered, Challenged, StaleNonce, BadNonce, NonceReplay, ExtensionMissing,
		ExtensionDisabled, NeverSeen, WrongPassword, AuthUserMismatch, WrongDomain, ACLDenied, IPBanned,
		MaxRegistrations, IntervalTooBrief, Expired, Unreachable, Reachable, ListenerDown, BadRequest, OutOfOrder,
		RateLimited, Scanner, DigestNoQOP, DigestURIMismatch, RouteTokenRefused, RemovedByAdmin, ConnectionLimit,
		AcceptFailed, StoreUnavailable, TLSHandshakeFailed, HandshakeTimeout, WSOriginRefused, WSNoSIPSubprotocol,
		WSBadUpgrade, WSFrameTooLarge, ConnectionClosed, TLSCertificate, BanLifted, BanAdded, ACLChanged, ProfileChanged,
		NormalClearing, UserNotRegistered, UserBusy, NoAnswer, NoUserResponse, UnallocatedNumber, CallRejected,
		OriginatorCancel, RecoveryOnTimerExpire, TooManyHops, TemporaryFailure, LoopDetected, SystemShutdown,
		NodeDown, UnknownAdmin, LoginLocked, AdminChanged, ExtensionChanged, WebRTCNeedsMediaRelay,
		MediaPortsExhausted, MediaCodecMismatch, MediaTimeout,
		MediaNeverArrived, MediaStopped, MediaBehindNAT, MediaSIPALG, WebRTCNoDTLS}
}

// NodeDown: the extension's phones are registered on another node (serve
// --node) whose lease ran out (killed, or cut off from the database):
// lookups skip its bindings until the phones register on a live node.
// The doctor's verdict; calls get USER_NOT_REGISTERED.
const NodeDown Code = "node_down"

// Media relay causes (serve --media-relay).
const (
	// MediaPortsExhausted: a call that needed the media relay was refused
	// with 503 because every port pair of serve --rtp-ports was in use
	// (journaled).
	MediaPortsExhausted Code = "media_ports_exhausted"
	// MediaCodecMismatch: a relayed call was refused with 488 because the
	// caller and the callee offered no audio codec in common (the Reason
	// and Warning name both sides' codecs).
	MediaCodecMismatch Code = "media_codec_mismatch"
	// MediaTimeout: a relayed call was hung up by the server (BYE to both
	// parties) because neither party sent media for serve
	// --media-timeout: both phones lost their network, or a BYE was lost.
	MediaTimeout Code = "media_timeout"
)

// Media findings of the doctor (`doctor call`), read from what the media
// relay counted per leg of a call (store.MediaLeg). They never go on the
// wire.
const (
	// MediaNeverArrived: no RTP ever arrived from one party: it sent
	// nothing (muted, no audio device, its packets blocked on the way).
	MediaNeverArrived Code = "media_never_arrived"
	// MediaStopped: RTP from one party arrived, then stopped while the
	// call went on (a NAT pinhole or firewall state expired, the phone's
	// network changed, hold without a re-INVITE).
	MediaStopped Code = "media_stopped"
	// MediaBehindNAT: a party's SDP gives a private address while its SIP
	// came from a public one: it is behind NAT and the other side's audio
	// is sent where it cannot arrive unless a relay latches onto it.
	MediaBehindNAT Code = "media_behind_nat"
	// MediaSIPALG: media came from an address that is neither the one in
	// the party's SDP nor the one its SIP came from (packets dropped as
	// strays, or latched elsewhere): usually a router's SIP ALG rewrote the
	// SDP.
	MediaSIPALG Code = "media_sip_alg"
	// WebRTCNoDTLS: a browser's DTLS handshake with the relay never
	// completed, so no audio could flow to or from it (ICE/UDP blocked,
	// wrong --media-ip).
	WebRTCNoDTLS Code = "webrtc_no_dtls"
)
