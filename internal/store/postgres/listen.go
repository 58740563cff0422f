package postgres

import (
	"context"
	"time"
)

// changesChannel is the NOTIFY channel of the change feed (see sb_change
// in the schema).
const changesChannel = "switchboard_changes"

// ListenChanges calls notify each time another transaction appends to the
// change feed (LISTEN on its NOTIFY channel), until ctx ends, so that a
// server applies a change made on another node at once instead of at its
// next poll. It holds one connection of the pool. When the connection
// fails it connects again (after a second, then backing off to 10 s) and
// calls notify once, for what it may have missed; onErr (nil: none) is
// told why.
func (db *DB) ListenChanges(ctx context.Context, notify func(), onErr func(error)) {
	pause := time.Second
	for ctx.Err() == nil {
		err := db.listen(ctx, notify)
		if ctx.Err() != nil {
			return
		}
		if onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 10*time.Second)
		notify()
	}
}

// listen runs one LISTEN session until its connection fails or ctx ends.
func (db *DB) listen(ctx context.Context, notify func()) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+changesChannel); err != nil {
		return err
	}
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			// The connection's state is unknown (a LISTEN may be left on
			// it): close it rather than give it back to the pool.
			conn.Conn().Close(context.WithoutCancel(ctx))
			return err
		}
		notify()
	}
}
