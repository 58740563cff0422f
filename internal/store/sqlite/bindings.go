package sqlite

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

func stringsContains(s, sub string) bool { return strings.Contains(s, sub) }

// bindingCols is the number of bindingColumns.
const bindingCols = 18

const bindingColumns = `domain, extension, contact, source, transport, user_agent, call_id, cseq, auth_user, realm,
	registered_at, expires_at, ping_status, ping_rtt_ms, ping_at, node, path, updated_at`

// LoadBindings returns every stored binding, expired ones included (the
// caller drops those).
func (db *DB) LoadBindings(ctx context.Context) ([]store.Binding, error) {
	return db.queryBindings(ctx, "SELECT "+bindingColumns+" FROM bindings ORDER BY domain, extension, registered_at")
}

// BindingsOf returns the stored bindings of one extension ("" number = all
// of the domain; "" domain = all).
func (db *DB) BindingsOf(ctx context.Context, domain, number string) ([]store.Binding, error) {
	q := "SELECT " + bindingColumns + " FROM bindings WHERE 1=1"
	var args []any
	if domain != "" {
		q += " AND domain = ?"
		args = append(args, domain)
	}
	if number != "" {
		q += " AND extension = ?"
		args = append(args, number)
	}
	q += " ORDER BY domain, length(extension), extension, registered_at"
	return db.queryBindings(ctx, q, args...)
}

func (db *DB) queryBindings(ctx context.Context, q string, args ...any) ([]store.Binding, error) {
	rows, err := db.sql.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read bindings: %w", err)
	}
	defer rows.Close()
	var out []store.Binding
	for rows.Next() {
		var b store.Binding
		var reg, exp, ping, upd int64
		if err := rows.Scan(&b.Domain, &b.Extension, &b.Contact, &b.Source, &b.Transport, &b.UserAgent, &b.CallID,
			&b.CSeq, &b.AuthUser, &b.Realm, &reg, &exp, &b.PingStatus, &b.PingRTT, &ping, &b.Node, &b.Path, &upd); err != nil {
			return nil, fmt.Errorf("read bindings: %w", err)
		}
		b.RegisteredAt, b.ExpiresAt, b.PingAt = fromMs(reg), fromMs(exp), fromMs(ping)
		out = append(out, b)
	}
	return out, rows.Err()
}

// ApplyBindings upserts and deletes bindings in one transaction. An
// upsert replaces the row of the same contact whichever node owned it (the
// phone registered last there); a delete removes the row only while it is
// owned by the key's node or by none.
//
// It is an urgent write (see writeGate): REGISTERs wait for it.
func (db *DB) ApplyBindings(ctx context.Context, upsert []store.Binding, del []store.BindingKey) error {
	if err := db.bindUpsert.Prepare(ctx); err != nil {
		return fmt.Errorf("save bindings: %w", err)
	}
	return db.gate.do(true, func() error { return db.applyBindings(ctx, upsert, del) })
}

func (db *DB) applyBindings(ctx context.Context, upsert []store.Binding, del []store.BindingKey) error {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save bindings: %w", err)
	}
	defer tx.Rollback()
	if len(upsert) > 0 {
		now := unixMs(time.Now())
		// Values of the driver's own types (string, int64, float64):
		// database/sql converts any other (uint32, int) by reflection.
		args := make([]any, 0, len(upsert)*bindingCols)
		for i := range upsert {
			b := &upsert[i]
			args = append(args, b.Domain, b.Extension, b.Contact, b.Source, b.Transport, b.UserAgent,
				b.CallID, int64(b.CSeq), b.AuthUser, b.Realm, unixMs(b.RegisteredAt), unixMs(b.ExpiresAt), b.PingStatus,
				b.PingRTT, unixMs(b.PingAt), b.Node, b.Path, now)
		}
		if err := db.bindUpsert.Exec(ctx, tx, args); err != nil {
			return fmt.Errorf("save bindings: %w", err)
		}
	}
	if len(del) > 0 {
		stmt, err := tx.PrepareContext(ctx, "DELETE FROM bindings WHERE domain = ? AND extension = ? AND contact = ? AND node IN (?, '')")
		if err != nil {
			return fmt.Errorf("delete bindings: %w", err)
		}
		defer stmt.Close()
		for _, k := range del {
			if _, err := stmt.ExecContext(ctx, k.Domain, k.Extension, k.Contact, k.Node); err != nil {
				return fmt.Errorf("delete binding %s@%s: %w", k.Extension, k.Domain, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save bindings: commit: %w", err)
	}
	return nil
}

// RenewNode inserts or updates n's lease row.
func (db *DB) RenewNode(ctx context.Context, n store.Node) error {
	_, err := db.sql.ExecContext(ctx, `INSERT INTO nodes(name, address, started_at, renewed_at) VALUES (?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET address = excluded.address, started_at = excluded.started_at,
		renewed_at = excluded.renewed_at`, n.Name, n.Address, unixMs(n.StartedAt), unixMs(n.RenewedAt))
	if err != nil {
		return fmt.Errorf("renew lease of node %s: %w", n.Name, err)
	}
	return nil
}

// ListNodes returns every node row, by name.
func (db *DB) ListNodes(ctx context.Context) ([]store.Node, error) {
	rows, err := db.sql.QueryContext(ctx, "SELECT name, address, started_at, renewed_at FROM nodes ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("read nodes: %w", err)
	}
	defer rows.Close()
	var out []store.Node
	for rows.Next() {
		var n store.Node
		var st, rn int64
		if err := rows.Scan(&n.Name, &n.Address, &st, &rn); err != nil {
			return nil, fmt.Errorf("read nodes: %w", err)
		}
		n.StartedAt, n.RenewedAt = fromMs(st), fromMs(rn)
		out = append(out, n)
	}
	return out, rows.Err()
}

// OtherBindings returns the unexpired bindings of nodes other than node
// written at or after since.
func (db *DB) OtherBindings(ctx context.Context, node string, since, now time.Time) ([]store.Binding, error) {
	return db.queryBindings(ctx, "SELECT "+bindingColumns+
		" FROM bindings WHERE updated_at >= ? AND node <> ? AND node <> '' AND expires_at > ? ORDER BY registered_at",
		unixMs(since), node, unixMs(now))
}

// ReserveIDs atomically reserves n numbers of the counter key (a meta row
// holding the end of the last range) and returns the first.
func (db *DB) ReserveIDs(ctx context.Context, key string, n int64) (int64, error) {
	var end int64
	err := db.sql.QueryRowContext(ctx, `INSERT INTO meta(key, value) VALUES (?, CAST(? AS TEXT))
		ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(meta.value AS INTEGER) + ? AS TEXT) RETURNING CAST(value AS INTEGER)`,
		key, n, n).Scan(&end)
	if err != nil {
		return 0, fmt.Errorf("reserve %d ids of %s: %w", n, key, err)
	}
	return end - n, nil
}
