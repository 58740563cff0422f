package journal

import (
	"context"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Stats summarises the events of one cause for one extension.
type Stats = store.CauseStats

// CauseStats counts the events with cause c recorded for extension ext in
// domain (exact, canonical name as the registrar records it) at or after
// since, stopping at limit (0 = 10,000) so an extension under a password
// brute force of millions of attempts still answers in milliseconds.
func CauseStats(ctx context.Context, db store.Journal, ext, domain string, c cause.Code, since time.Time, limit int) (Stats, error) {
	return db.CauseStats(ctx, ext, domain, c, since, limit)
}

// LastOf returns the newest event with cause c for extension ext in domain,
// or ok=false when there is none.
func LastOf(ctx context.Context, db store.Journal, ext, domain string, c cause.Code) (e Event, ok bool, err error) {
	return db.LastEventOf(ctx, ext, domain, c)
}

// ByID returns one event; ok is false when it does not exist (pruned).
func ByID(ctx context.Context, db store.Journal, id int64) (e Event, ok bool, err error) {
	return db.EventByID(ctx, id)
}

// LastID returns the newest event id (0 for an empty journal); `journal
// --follow` starts after it.
func LastID(ctx context.Context, db store.Journal) (int64, error) {
	return db.LastEventID(ctx)
}

// OldestTime returns the time of the oldest event still in the journal
// (zero when it is empty): how far back "never seen" reaches.
func OldestTime(ctx context.Context, db store.Journal) (time.Time, error) {
	return db.OldestEventTime(ctx)
}
