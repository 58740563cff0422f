package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
)

// CallBranch is one binding a call was forked to and what it answered.
type CallBranch struct {
	// Contact is the binding's contact URI (the INVITE's Request-URI).
	Contact string `json:"contact"`
	// Destination is the address the INVITE was sent to (where the phone
	// registered from) and Transport how.
	Destination string `json:"destination"`
	Transport   string `json:"transport"`
	UserAgent   string `json:"user_agent"`
	// Status is the final SIP status the branch answered (0: none; 408 is
	// also used when it never answered at all).
	Status int `json:"sip_status"`
	// Reason is the reason phrase, or what happened ("no response",
	// "cancelled: another phone answered", ...).
	Reason string `json:"reason"`
	// Ringing is true once the branch sent 180/183.
	Ringing bool `json:"ringing"`
}

// Call is one call attempt (package calls records them).
type Call struct {
	ID        int64  `json:"id"`
	CallID    string `json:"call_id"`
	From      string `json:"from"` // caller's user part, e.g. "2001"
	To        string `json:"to"`   // dialled user part, e.g. "2002"
	Domain    string `json:"domain"`
	Source    string `json:"caller_source"` // ip:port the INVITE came from
	Transport string `json:"transport"`
	UserAgent string `json:"user_agent"`
	// Start, Answer and End are zero when not (yet) reached.
	Start     time.Time    `json:"start"`
	Answer    time.Time    `json:"answer"`
	End       time.Time    `json:"end"`
	SIPStatus int          `json:"sip_status"` // final status sent to the caller (0 while ringing)
	Cause     cause.Code   `json:"cause"`      // "" while in progress
	HangupBy  string       `json:"hangup_by"`  // "caller", "callee", "server", "admin"; "" while in progress
	Branches  []CallBranch `json:"branches"`
	Detail    string       `json:"detail"`
	// Media holds the relay's facts per leg (caller first, then callee).
	// For an answered call whose media were not relayed, one leg per side
	// with Relayed false and no counters: only the SDP audio address and
	// the SIP source (empty when neither side's SDP had audio).
	Media []MediaLeg `json:"media"`
}

// MediaLeg is what the media relay saw on one leg of a call: "in" is from
// the party to the relay, "out" from the relay to the party. Addresses are
// "ip:port" ("" when unknown); times are zero when nothing arrived.
type MediaLeg struct {
	Side          string    `json:"side"` // "caller" | "callee"
	Relayed       bool      `json:"relayed"`
	WebRTC        bool      `json:"webrtc"`
	DTLS          string    `json:"dtls,omitempty"` // bridge state for WebRTC legs
	Codec         string    `json:"codec"`
	SignalledAddr string    `json:"signalled_addr"` // SDP c=/m=
	SIPSource     string    `json:"sip_source"`
	LatchedAddr   string    `json:"latched_addr"`
	PacketsIn     uint64    `json:"packets_in"`
	BytesIn       uint64    `json:"bytes_in"`
	PacketsOut    uint64    `json:"packets_out"`
	BytesOut      uint64    `json:"bytes_out"`
	FirstPacketIn time.Time `json:"first_packet_in"`
	LastPacketIn  time.Time `json:"last_packet_in"`
	Lost          int64     `json:"lost"`
	JitterMS      float64   `json:"jitter_ms"`
	MOS           float64   `json:"mos"`
	Stray         uint64    `json:"stray"`
	StraySource   string    `json:"stray_source,omitempty"`
	Malformed     uint64    `json:"malformed"`
}

// Active reports whether the call is still in progress.
func (r *Call) Active() bool { return r.End.IsZero() }

// Duration is the talk time: from answer to end (or to now while the call
// is up); 0 for a call that was never answered.
func (r *Call) Duration(now time.Time) time.Duration {
	if r.Answer.IsZero() {
		return 0
	}
	end := r.End
	if end.IsZero() {
		end = now
	}
	if end.Before(r.Answer) {
		return 0
	}
	return end.Sub(r.Answer)
}

// CallFilter selects calls. Zero fields match everything.
type CallFilter struct {
	From   string // caller user part
	To     string // dialled user part
	Ext    string // either side
	Domain string // case-insensitive
	CallID string
	// Active selects calls in progress only.
	Active bool
	// Failed selects ended calls whose cause is not NORMAL_CLEARING.
	Failed bool
	Since  time.Time
	Limit  int // default 100
}

// Calls stores call records. Times are kept to the microsecond.
type Calls interface {
	// SaveCalls inserts or updates records (by ID) in one transaction, all
	// or nothing; for several snapshots of one ID the last one wins. An
	// update changes the answer and end times, status, cause, hangup
	// party, branches, detail and media; the rest stays as first saved.
	SaveCalls(ctx context.Context, recs []Call) error
	// LastCallID returns the highest stored ID (0 when there is none).
	LastCallID(ctx context.Context) (int64, error)
	// EndActiveCalls ends every call in progress at time at with cause c
	// and hangup party by, appending detail to theirs; it returns how many.
	EndActiveCalls(ctx context.Context, at time.Time, c cause.Code, by, detail string) (int64, error)
	// QueryCalls returns the records matching f, newest (highest ID) first;
	// never nil.
	QueryCalls(ctx context.Context, f CallFilter) ([]Call, error)
	// CallByID returns one record; the error wraps ErrNotFound when there
	// is none.
	CallByID(ctx context.Context, id int64) (Call, error)
	// CountActiveCalls returns how many calls are in progress.
	CountActiveCalls(ctx context.Context) (int, error)
	// PruneCalls deletes ended calls that started before before, and ended
	// calls whose ID is more than keep below the highest.
	PruneCalls(ctx context.Context, before time.Time, keep int) error
}

// EncodeMedia is the JSON text both backends keep in the calls table's
// media column: "[]" for no legs; times are cut to the microsecond and
// kept in UTC, like the record's other times.
func EncodeMedia(legs []MediaLeg) (string, error) {
	if len(legs) == 0 {
		return "[]", nil
	}
	cp := make([]MediaLeg, len(legs))
	for i, l := range legs {
		l.FirstPacketIn = microUTC(l.FirstPacketIn)
		l.LastPacketIn = microUTC(l.LastPacketIn)
		cp[i] = l
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return "", fmt.Errorf("encode media legs: %w", err)
	}
	return string(b), nil
}

// DecodeMedia reads what EncodeMedia wrote; "" and "[]" give an empty,
// non-nil slice.
func DecodeMedia(s string) ([]MediaLeg, error) {
	legs := []MediaLeg{}
	if s == "" || s == "[]" {
		return legs, nil
	}
	if err := json.Unmarshal([]byte(s), &legs); err != nil {
		return nil, fmt.Errorf("decode media legs: %w", err)
	}
	for i := range legs {
		legs[i].FirstPacketIn = localTime(legs[i].FirstPacketIn)
		legs[i].LastPacketIn = localTime(legs[i].LastPacketIn)
	}
	return legs, nil
}

func microUTC(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Truncate(time.Microsecond).UTC()
}

// localTime gives a decoded time the local zone, as the backends' other
// times (time.UnixMicro) have.
func localTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Local()
}
