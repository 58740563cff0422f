package store

import (
	"context"
	"net"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
)

// Event is one decision recorded in the journal (package journal defines
// the kinds and records them).
type Event struct {
	ID        int64      `json:"id"`
	Time      time.Time  `json:"time"`
	Kind      string     `json:"kind"`
	Cause     cause.Code `json:"cause"`
	Extension string     `json:"extension"`
	Domain    string     `json:"domain"`
	AuthUser  string     `json:"auth_user"`
	Realm     string     `json:"realm"`
	Source    string     `json:"source"`
	Transport string     `json:"transport"`
	UserAgent string     `json:"user_agent"`
	Status    int        `json:"sip_status"`
	CallID    string     `json:"call_id"`
	Detail    string     `json:"detail"`
}

// SourceIP returns the IP part of Source.
func (e *Event) SourceIP() string {
	if h, _, err := net.SplitHostPort(e.Source); err == nil {
		return h
	}
	return e.Source
}

// JournalFilter selects events. Zero fields match everything.
type JournalFilter struct {
	Extension string
	Domain    string // case-insensitive
	IP        string // source IP (any port)
	Kind      string
	Cause     cause.Code
	Since     time.Time
	AfterID   int64
	Limit     int // default 1000
	// Oldest returns the oldest first (default newest first), by time and
	// then id.
	Oldest bool
}

// CauseStats summarises the events of one cause for one extension.
type CauseStats struct {
	// Count is how many events matched, at most the limit asked for;
	// Capped is true when there were more.
	Count  int  `json:"count"`
	Capped bool `json:"capped"`
	// First and Last are the times of the oldest and newest match (zero
	// when Count is 0).
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

// Journal stores events. Times are kept to the microsecond.
type Journal interface {
	// InsertEvents writes events in one transaction, in order (ids
	// increase), all or nothing. Their ID fields are ignored.
	InsertEvents(ctx context.Context, events []Event) error
	// QueryEvents returns the events matching f, newest first (by time,
	// then id; by id when f.AfterID is set) unless f.Oldest.
	QueryEvents(ctx context.Context, f JournalFilter) ([]Event, error)
	// AdminEvents returns the newest events of kind with one of causes
	// that name no extension and no domain, newest first, at most limit
	// (0 = 200).
	AdminEvents(ctx context.Context, kind string, causes []cause.Code, limit int) ([]Event, error)
	// LastEventOf returns the newest event with cause c for extension ext
	// in domain (exact names), or ok=false when there is none.
	LastEventOf(ctx context.Context, ext, domain string, c cause.Code) (e Event, ok bool, err error)
	// EventByID returns one event; ok is false when it does not exist.
	EventByID(ctx context.Context, id int64) (e Event, ok bool, err error)
	// LastEventID returns the newest event id (0 for an empty journal).
	LastEventID(ctx context.Context) (int64, error)
	// OldestEventTime returns the time of the oldest event (zero when the
	// journal is empty).
	OldestEventTime(ctx context.Context) (time.Time, error)
	// HasCause reports whether any event has cause c (exactly).
	HasCause(ctx context.Context, c cause.Code) (bool, error)
	// CauseStats counts the events with cause c for ext in domain (exact
	// names) at or after since (zero: all), stopping at limit (0 =
	// 10,000) and reporting Capped when there are more.
	CauseStats(ctx context.Context, ext, domain string, c cause.Code, since time.Time, limit int) (CauseStats, error)
	// PruneEvents deletes the events older than before and all but the
	// newest keep (by id).
	PruneEvents(ctx context.Context, before time.Time, keep int) error
}
