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
