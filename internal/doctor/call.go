package doctor

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
)

// CallInputs are the facts about a call from one extension to another.
type CallInputs struct {
	Caller Inputs
	Callee Inputs
	// CallsAvailable is false when call records cannot be read; Last is
	// then nil. Otherwise Last is the newest call from Caller to Callee
	// (nil: none on record).
	CallsAvailable bool
	Last           *Call
	// ByID is true when Last is the call the admin named (`doctor call
	// --id`), not the newest between the two.
	ByID bool
}

// CallReport is the doctor's answer for `doctor call FROM TO`.
type CallReport struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Domain string `json:"domain"`
	// Verdict says in one line whether the call works and, if not, why.
	Verdict string     `json:"verdict"`
	Cause   cause.Code `json:"cause"`
	// WouldWork is true when nothing found stops the call (exit 0).
	WouldWork bool `json:"would_work"`
	// Callable is the same as WouldWork, under the name `doctor EXT`
	// uses, so scripts read one boolean either way (never null).
	Callable     bool `json:"callable"`
	ServeRunning bool `json:"serve_running"`
	// Caller holds the caller-side checks (directory, registration,
	// authentication history, bans); Callee the full doctor report.
	Caller Report `json:"caller"`
	Callee Report `json:"callee"`
	// LastCall is the newest call from From to To on record (null: none).
	LastCall *CallView `json:"last_call"`
	// Findings are the call-level findings (the last call).
	Findings []Finding `json:"findings"`
}

// CallView is the JSON shape of a call record.
type CallView struct {
	Time time.Time `json:"time"`
	// InProgress is true while the call is still up; Status and Cause
	// are then what it has reached so far ("" cause).
	InProgress bool       `json:"in_progress"`
	From       string     `json:"from"`
	To         string     `json:"to"`
	Status     int        `json:"sip_status"`
	Cause      cause.Code `json:"cause"`
	Detail     string     `json:"detail"`
}

// authFailure reports whether a cause means the caller cannot
// authenticate its INVITEs (the same credentials and path as REGISTER).
func authFailure(c cause.Code) bool {
	switch c {
	case cause.WrongPassword, cause.AuthUserMismatch, cause.WrongDomain, cause.ACLDenied, cause.IPBanned:
		return true
	}
	return false
}

// DiagnoseCall explains why a call from in.Caller to in.Callee fails or
// would fail: the caller must exist, be enabled and able to authenticate
// (its phone's password, auth user and domain right, its address not
// banned or denied); the callee gets every check of Diagnose; the last
// such call's SIP status and cause close the report.
func DiagnoseCall(_ context.Context, in CallInputs) CallReport {
	ed := newDiag(in.Callee)
	callee := ed.run()
	cd := newDiag(in.Caller)
	cd.checkDirectory()
	cd.checkRegistration()
	cd.checkHistory()
	cv := cd.verdict()
	caller := Report{Extension: in.Caller.Number, Domain: in.Caller.Domain, ServeRunning: in.Caller.Serve.Running,
		Cause: cv.cause, Callable: len(cd.live) > 0, Verdict: callerVerdict(cd, cv)}
	for _, f := range cd.findings {
		switch {
		case f.Check == CheckDirectory && f.Cause == cause.MaxRegistrations:
			// Full registrations do not stop the phone from calling.
			f.Status = OK
		case f.Check == CheckRegistration && f.Status == Fail:
			// A caller need not be registered, only able to authenticate.
			f.Status = Warn
			f.Cause = cv.cause
			f.Evidence = append(f.Evidence, "a phone that cannot register usually cannot authenticate its calls either")
		case f.Check == CheckHistory && f.Status == Fail && !authFailure(f.Cause):
			f.Status = Warn
		}
		caller.Findings = append(caller.Findings, f)
	}
	refusals, lifted := callerRefusals(in, cd)
	if len(refusals) > 0 {
		caller.Findings = append(caller.Findings, cd.refusalFinding(in, refusals))
	}
	if len(lifted) > 0 && (len(refusals) == 0 || lifted[0].Time.After(refusals[0].Time)) {
		e := lifted[0]
		why, _ := cd.aclLifted(e)
		caller.Findings = append(caller.Findings, Finding{Check: CheckHistory, Status: OK, Evidence: []string{
			"history, not the answer now:",
			fmt.Sprintf("%s to %s refused (%d) at %s from %s %s (%s): %s", plural(len(lifted), "INVITE", "INVITEs"),
				in.Callee.Number, e.Status, cd.stamp(e.Time), e.Source, e.Transport, uaOr(e.UserAgent), e.Detail),
			"no longer in force: " + why}})
	}
	r := CallReport{From: in.Caller.Number, To: in.Callee.Number, Domain: in.Callee.Domain,
		ServeRunning: in.Callee.Serve.Running, Caller: caller, Callee: callee}
	r.Findings = []Finding{cd.lastCallFinding(in)}
	if in.Last != nil {
		r.Findings = append(r.Findings, cd.mediaFindings(in.Last)...)
	}
	if in.Last != nil {
		l := in.Last
		r.LastCall = &CallView{Time: l.Time, InProgress: l.Active, From: l.From, To: l.To, Status: l.Status, Cause: l.Cause, Detail: l.Detail}
	}
	r.Cause, r.Verdict, r.WouldWork = callVerdict(cd, ed, in, refusals)
	if mf, ok := mediaProblem(r.Findings); ok && r.WouldWork {
		// The call connects, but its audio failed: that is the answer.
		r.Cause, r.WouldWork = mf.Cause, false
		r.Verdict = fmt.Sprintf("a call from %s to %s connects, but its audio fails — %s (%s)", r.From, r.To,
			mf.Evidence[0], cd.callRef(in.Last))
	}
	r.Callable = r.WouldWork
	return r
}

// callerRefusals returns the caller's INVITEs to the callee that the server
// refused before they became calls (credentials, inbound ACL), newest
// first. The proxy journals them under the dialled extension with the
// caller's auth user and "(call from N)"; an ACL denial names only the
// address, matched against the caller's phones. ACL denials that no longer
// hold (the list allows the address now, or the profile applies another
// or none) are returned apart, in lifted: history, not the answer.
func callerRefusals(in CallInputs, cd *diag) (out, lifted []journal.Event) {
	from := in.Caller.Number
	ips := map[string]bool{}
	for _, p := range cd.phones {
		ips[p.ip] = true
	}
	for _, b := range in.Caller.Bindings {
		ips[ipOf(b.Source)] = true
	}
	for _, e := range in.Callee.History.Recent {
		if e.Kind != journal.KindInvite {
			continue
		}
		switch e.Cause {
		case cause.WrongPassword, cause.AuthUserMismatch, cause.WrongDomain, cause.ExtensionMissing, cause.ExtensionDisabled:
			if e.AuthUser == from || strings.Contains(e.Detail, "call from "+from+")") {
				out = append(out, e)
			}
		case cause.ACLDenied:
			if !ips[e.SourceIP()] {
				continue
			}
			if _, ok := cd.aclLifted(e); ok {
				lifted = append(lifted, e)
			} else {
				out = append(out, e)
			}
		}
	}
	return out, lifted
}

func (d *diag) refusalFinding(in CallInputs, refusals []journal.Event) Finding {
	e := refusals[0]
	c := e.Cause
	if c == cause.ExtensionMissing && e.AuthUser != in.Caller.Number {
		c = cause.AuthUserMismatch
	}
	f := Finding{Check: CheckHistory, Status: Fail, Cause: c}
	f.Evidence = []string{
		fmt.Sprintf("%s to %s refused (%d) at %s from %s %s (%s): %s", plural(len(refusals), "INVITE", "INVITEs"),
			in.Callee.Number, e.Status, d.stamp(e.Time), e.Source, e.Transport, uaOr(e.UserAgent), e.Detail)}
	switch c {
	case cause.ACLDenied:
		list := "?"
		if m := listRE.FindStringSubmatch(e.Detail); m != nil {
			list = m[1]
		}
		f.Fix = fmt.Sprintf("if %s may place calls, allow it: %s", e.SourceIP(), d.cmd("acl allow "+list+" "+hostCIDR(e.SourceIP()), false))
	case cause.AuthUserMismatch:
		f.Fix = fmt.Sprintf("set the calling phone's authentication ID (auth user) to %s, its own extension", in.Caller.Number)
	case cause.WrongDomain:
		f.Fix = fmt.Sprintf("set the calling phone's SIP domain to %s", in.Caller.Domain)
	default:
		f.Fix = fmt.Sprintf("enter %s's password on the calling phone; to set a new one: %s", in.Caller.Number,
			d.cmd("ext passwd "+in.Caller.Number, true))
	}
	return f
}

// listRE finds the ACL name in a refusal's detail ("rejected by office" or
// "rejected by register acl office").
var listRE = regexp.MustCompile(`rejected by (?:\S+ acl )?(\S+?)\)?$`)

func callerVerdict(cd *diag, v verdictT) string {
	switch {
	case cd.in.Ext == nil:
		return cd.in.Number + " does not exist in " + cd.in.Domain
	case !cd.in.Ext.Enabled || !cd.in.DomainEnabled:
		return cd.in.Number + " is disabled"
	case len(cd.live) > 0:
		return cd.in.Number + " is registered: its credentials work"
	}
	return cd.in.Number + " is " + v.why
}

func (d *diag) lastCallFinding(in CallInputs) Finding {
	f := Finding{Check: CheckLastCall}
	switch {
	case !in.CallsAvailable:
		f.Status = Skip
		f.Evidence = []string{"call records: not available"}
	case in.Last == nil:
		f.Status = Skip
		f.Evidence = []string{fmt.Sprintf("no call from %s to %s on record", in.Caller.Number, in.Callee.Number)}
	case in.Last.Active:
		l := in.Last
		state := "ringing"
		if l.Answered {
			state = "answered"
		}
		f.Status = OK
		f.Evidence = []string{fmt.Sprintf("%s from %s to %s is in progress since %s (%s)", lastName(in),
			in.Caller.Number, in.Callee.Number, d.stamp(l.Time), state)}
	default:
		l := in.Last
		f.Evidence = []string{fmt.Sprintf("%s from %s to %s, at %s, ended with %d %s", lastName(in),
			in.Caller.Number, in.Callee.Number, d.stamp(l.Time), l.Status, l.Cause)}
		if l.Detail != "" {
			f.Evidence = append(f.Evidence, "detail: "+l.Detail)
		}
		f.Status, f.Cause = OK, l.Cause
		switch {
		case callerChoice(l.Cause):
			f.Evidence = append(f.Evidence, "the caller hung up before the answer: its choice, not a fault")
		case l.Cause == cause.WebRTCNeedsMediaRelay:
			f.Status = Warn
			f.Evidence = append(f.Evidence, "one side is a WebRTC browser (registered over WS/WSS: DTLS-SRTP and ICE) and the other a plain-RTP phone; "+
				"their audio can only meet in a media relay, which switchboard does not have yet, so the call was refused with 488 instead of connecting in silence")
			f.Fix = "call between two browsers or between two SIP phones; for a browser to reach a desk phone, register the desk phone's user in a SIP softphone over UDP/TCP/TLS instead, until switchboard has a media relay"
		case !l.Answered && l.Cause != cause.NormalClearing:
			f.Status = Warn
		}
	}
	return f
}

// lastName names the call the last_call finding is about.
func lastName(in CallInputs) string {
	if in.ByID && in.Last != nil {
		return fmt.Sprintf("call %d", in.Last.ID)
	}
	return "the last call"
}

// callRef names a call for a verdict: "call 12 at 14:20", or "the last
// call, at 14:20" for one without a record number.
func (d *diag) callRef(l *Call) string {
	if l.ID != 0 {
		return fmt.Sprintf("call %d at %s", l.ID, d.clock(l.Time))
	}
	return "the last call, at " + d.clock(l.Time)
}

// lastCallPhrase says how the last call went, for the verdict: "ended
// with 486 USER_BUSY" or "is in progress since 14:20".
func (d *diag) lastCallPhrase(l *Call) string {
	if l.Active {
		return fmt.Sprintf("the last call is in progress since %s", d.clock(l.Time))
	}
	return fmt.Sprintf("the last call, at %s, ended with %d %s", d.clock(l.Time), l.Status, l.Cause)
}

func callVerdict(cd, ed *diag, in CallInputs, refusals []journal.Event) (cause.Code, string, bool) {
	from, to := in.Caller.Number, in.Callee.Number
	fails := "a call from " + from + " to " + to + " fails: "
	ev := ed.verdict()
	switch {
	case in.Callee.Ext == nil:
		return ev.cause, fails + ev.why + " (404 UNALLOCATED_NUMBER)", false
	case !in.Callee.Serve.Running:
		return cause.ListenerDown, fails + "switchboard serve is not running", false
	case cd.in.Ext == nil:
		return cause.ExtensionMissing, fails + "the caller " + from + " does not exist in " + cd.in.Domain + ": its INVITEs are refused (403)", false
	case !cd.in.Ext.Enabled || !cd.in.DomainEnabled:
		return cause.ExtensionDisabled, fails + "the caller " + from + " is disabled: its INVITEs are refused (403)", false
	}
	if len(cd.banned) > 0 {
		return cause.IPBanned, fails + "the caller's address " + cd.banned[0].IP + " is banned: its INVITEs are dropped", false
	}
	if len(cd.live) == 0 && len(cd.failing) > 0 && authFailure(cd.failing[0].latestC) {
		p := cd.failing[0]
		return p.latestC, fails + "the caller cannot authenticate — " + cd.phoneProblem(p), false
	}
	if len(refusals) > 0 && (in.Last == nil || refusals[0].Time.After(in.Last.Time)) {
		e := refusals[0]
		c, why := e.Cause, "its credentials were refused"
		switch e.Cause {
		case cause.ACLDenied:
			why = "its address " + e.SourceIP() + " may not place calls (inbound ACL)"
		case cause.WrongPassword:
			why = "it sent a wrong password"
		case cause.AuthUserMismatch, cause.ExtensionMissing:
			c, why = cause.AuthUserMismatch, fmt.Sprintf("it authenticates as %q", e.AuthUser)
		case cause.WrongDomain:
			why = "it uses the wrong domain"
		}
		return c, fmt.Sprintf("%sthe caller's last INVITE, at %s from %s, was refused with %d: %s", fails, cd.clock(e.Time),
			e.SourceIP(), e.Status, why), false
	}
	if !ev.callable {
		switch ev.cause {
		case cause.ExtensionDisabled, cause.ListenerDown:
			return ev.cause, fails + to + ": " + ev.why, false
		case cause.Unreachable:
			return ev.cause, "a call from " + from + " to " + to + " times out (408): " + to + " is " + ev.why, false
		}
		return ev.cause, "a call from " + from + " to " + to + " fails with 480 USER_NOT_REGISTERED: " + to + " is " + ev.why, false
	}
	if l := in.Last; l != nil && !l.Active && l.Cause == cause.WebRTCNeedsMediaRelay {
		return l.Cause, fmt.Sprintf("a call from %s to %s fails with 488 %s: one is a WebRTC browser and the other a plain-RTP phone, "+
			"and switchboard has no media relay yet (the last call, at %s)", from, to, l.Cause, cd.clock(l.Time)), false
	}
	s := "a call from " + from + " to " + to + " should work: " + to + " is registered"
	if len(cd.live) == 0 {
		s += " (" + from + " is not registered, but nothing shows it cannot authenticate)"
	}
	if in.Last != nil && in.ByID {
		s += fmt.Sprintf("; call %d, at %s, ", in.Last.ID, cd.clock(in.Last.Time))
		if in.Last.Active {
			s += "is in progress"
		} else {
			s += fmt.Sprintf("ended with %d %s", in.Last.Status, in.Last.Cause)
		}
	} else if in.Last != nil {
		s += "; " + cd.lastCallPhrase(in.Last)
	}
	return cause.Registered, s, true
}
