// Package doctor explains why an extension cannot register or be called,
// the way an experienced admin would walk the runbook: is it in the
// directory, does the server listen, is it registered, what did its phone
// send (wrong password, wrong domain, auth user, ACL, ban, interval,
// max registrations, expiry), can it be reached, and how did its last calls
// end. Each check yields Findings with a status, a stable cause code, the
// evidence that proves it and the fix written for the admin; the first
// line of a Report is a verdict in plain words.
//
// Diagnose and DiagnoseCall are pure logic over the facts in Inputs, so
// they are unit tested with golden files. Reader gathers those facts from
// the data directory (directory, bindings, journal, bans, calls) and the
// runtime (is serve running, do its ports answer, does the host firewall
// drop SIP). The doctor only reads: it never imports the SIP transport and
// works whether or not serve is running.
package doctor

import (
	"context"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/trace"
)

// Status is the outcome of one finding.
type Status string

// Finding statuses.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
	Skip Status = "skip" // could not check, or nothing to check
)

// Check names, in the order Diagnose runs them.
const (
	CheckDirectory    = "directory"
	CheckListeners    = "listeners" // the profile's ports and the host firewall
	CheckRegistration = "registration"
	CheckHistory      = "history"
	CheckReachability = "reachability"
	CheckCalls        = "calls"
	CheckLastCall     = "last_call"
)

// Finding is the result of one check. Cause is one of the stable doctor
// cause codes (see the README section "Doctor causes"), or "" when the
// check has nothing to name. Evidence holds one fact per line; Fix is what
// the admin should do, "" when nothing.
type Finding struct {
	Check    string     `json:"check"`
	Status   Status     `json:"status"`
	Cause    cause.Code `json:"cause"`
	Evidence []string   `json:"evidence"`
	Fix      string     `json:"fix"`
}

// Report is the doctor's answer for one extension.
type Report struct {
	Extension string `json:"extension"`
	Domain    string `json:"domain"`
	// Verdict is one line in plain words, e.g. "2002 cannot be called: not
	// registered — the phone at 192.168.1.50 (Grandstream GXP1625) has sent
	// a wrong password 37 times since 14:02".
	Verdict string `json:"verdict"`
	// Cause is the most important problem's code, or "registered" when
	// there is none.
	Cause cause.Code `json:"cause"`
	// Callable is true when the extension is registered and reachable (the
	// CLI then exits 0).
	Callable bool `json:"callable"`
	// ServeRunning tells whether `switchboard serve` held the data
	// directory while the doctor looked.
	ServeRunning bool      `json:"serve_running"`
	Findings     []Finding `json:"findings"`
	// LastSIP are the last SIP messages with the extension or its phone's
	// addresses that the running server still buffers from a recent
	// `switchboard trace` (none when nobody traced); the CLI fills it.
	LastSIP []trace.Message `json:"last_sip,omitempty"`
}

// Inputs are the facts Diagnose reasons about. Reader.Gather fills them;
// tests build them by hand.
type Inputs struct {
	// Now is the time the facts were read; Loc is the zone times are
	// written in (time.Local in the CLI).
	Now time.Time
	Loc *time.Location
	// DataDir is the data directory (for the commands in fixes).
	DataDir string
	// Number is the extension asked about, Domain its canonical domain.
	Number        string
	Domain        string
	DomainEnabled bool
	// DefaultDomain is the server's default domain ("" = Domain): fixes
	// leave out --domain for it.
	DefaultDomain string
	// Ext is the directory entry; nil when Number does not exist in Domain.
	Ext *store.Extension
	// Similar lists numbers in Domain that look like Number (typos);
	// OtherDomains the domains where Number exists.
	Similar      []string
	OtherDomains []string
	Serve        Serve
	Firewall     Firewall
	// Bindings are the saved bindings of the extension, expired included.
	Bindings []store.Binding
	History  History
	Bans     Bans
	Calls    Calls
	// Storage is the data directory's file system (full disk).
	Storage Storage
	// Nodes are the servers sharing the database (serve --node) and
	// NodeLease how long a lease lasts: a binding of a node whose lease
	// ran out is skipped by lookups. No nodes: not judged.
	Nodes     []store.Node
	NodeLease time.Duration
	// Access is the access control in force now, against which the
	// doctor weighs past ACL refusals.
	Access Access
}

// Access is the access control in force when the doctor looked.
type Access struct {
	// Available is false when it could not be read: past ACL refusals
	// are then reported as they were.
	Available bool
	// RegisterACL and InboundACL are the profile's lists ("" = none).
	RegisterACL, InboundACL string
	// Lists are the ACLs by name.
	Lists map[string]acl.List
}

// Serve is what is known about `switchboard serve` on the data directory.
type Serve struct {
	Running bool
	PID     int
	// Known is true when a server ever published its listeners (the meta
	// "runtime" record); StartedAt and Listeners then describe the running
	// (or last) server.
	Known     bool
	StartedAt time.Time
	Listeners []Listener
}

// Listener is one socket of the internal profile and what probing it found.
type Listener struct {
	Proto string // "udp" or "tcp"
	Addr  string // bound ip:port
	// Probed is true when the doctor tried the port; OK whether it answered;
	// Detail says how (e.g. "answers OPTIONS in 0.3 ms" or the error).
	Probed bool
	OK     bool
	Detail string
	// Cert is the certificate a TLS or WSS listener served to the probe
	// (nil otherwise).
	Cert *CertFacts
}

// CertFacts describe a served certificate.
type CertFacts struct {
	Subject    string
	Names      []string // DNS and IP SANs
	NotBefore  time.Time
	NotAfter   time.Time
	SelfSigned bool // issuer == subject and signed by its own key
	Trusted    bool // verifies against the host's CA roots
}

// Firewall is what the host firewall says about the SIP ports.
type Firewall struct {
	// Checked names the tools whose ruleset was read ("nft", "iptables",
	// "ufw"); empty when none could be read.
	Checked []string
	// Blocks are rules (one line each) that drop or reject a SIP port.
	Blocks []string
	// Errors say why a tool could not be read.
	Errors []string
}

// History is what the journal holds about the extension.
type History struct {
	// Available is false when the journal could not be read.
	Available bool
	// Recent are the newest journal events recorded for Number in any
	// domain (newest first, at most Limit): the doctor classifies them.
	Recent []journal.Event
	Limit  int
	// Oldest is the time of the oldest event still in the journal (the
	// horizon of "never seen").
	Oldest time.Time
	// Stats counts, per cause, the events for Number in Domain since the
	// last successful registration (capped), for when Recent is full.
	Stats map[cause.Code]journal.Stats
	// Last holds the newest event of registered, unregistered and
	// registration_expired for Number in Domain, even when older than
	// Recent reaches.
	Last map[cause.Code]journal.Event
	// Handshakes are the newest refused TLS handshakes and WebSocket
	// upgrades (any address, the last day, newest first): they name no
	// extension, but explain a phone whose REGISTER never arrives.
	Handshakes []journal.Event
	// Admin are the newest operator changes (journal kind "admin": bans
	// lifted or added, ACL and profile edits), newest first: the doctor
	// names who lifted what a past refusal was about.
	Admin []journal.Event
}

// Bans are the active bans of the addresses the extension's phones use.
type Bans struct {
	Available bool
	Active    []Ban
}

// Ban is one banned address.
type Ban struct {
	IP       string
	Reason   string
	Failures int
	Since    time.Time
	Until    time.Time // zero: permanent
}

// Calls are the call records that involve the extension.
type Calls struct {
	Available bool
	// Failed are the last failed calls to the extension, newest first.
	Failed []Call
}

// Call is one call record.
type Call struct {
	Time time.Time
	// Active is true while the call is still up (no end yet).
	Active   bool
	From, To string
	Domain   string
	Status   int        // final SIP status the caller got
	Cause    cause.Code // hangup cause, e.g. USER_NOT_REGISTERED
	Source   string     // where the INVITE came from
	Detail   string
	Answered bool
	// ID is the record's number (`calls show ID`) and CallID its SIP
	// Call-ID; AnswerTime and End are zero when not reached.
	ID         int64
	CallID     string
	AnswerTime time.Time
	End        time.Time
	// Media is what the media relay counted per leg (caller, callee);
	// empty when the media was not relayed.
	Media []store.MediaLeg
}

// Diagnose runs the checks over in and returns the report. It never fails:
// a fact that could not be read becomes a "skip" finding. ctx is accepted
// for symmetry with the reader and is not used.
func Diagnose(_ context.Context, in Inputs) Report {
	d := newDiag(in)
	return d.run()
}

// Causes returns the stable cause codes a Report's Cause takes, in the
// order of the README's "Doctor causes" table. (Findings of the calls check
// also carry call causes such as USER_NOT_REGISTERED.)
func Causes() []cause.Code {
	return []cause.Code{cause.Registered, cause.ExtensionMissing, cause.ExtensionDisabled, cause.NeverSeen,
		cause.WrongPassword, cause.AuthUserMismatch, cause.WrongDomain, cause.ACLDenied, cause.IPBanned,
		cause.MaxRegistrations, cause.IntervalTooBrief, cause.Expired, cause.RemovedByAdmin, cause.Unreachable,
		cause.ListenerDown, cause.DigestNoQOP, cause.DigestURIMismatch, cause.StoreUnavailable, cause.BanLifted,
		cause.ACLChanged, cause.NodeDown, cause.ConnectionClosed, cause.TLSCertificate,
		cause.MediaNeverArrived, cause.MediaStopped, cause.MediaBehindNAT, cause.MediaSIPALG, cause.WebRTCNoDTLS}
}
