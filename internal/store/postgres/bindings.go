package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

const bindingColumns = `domain, extension, contact, source, transport, user_agent, call_id, cseq, auth_user, realm,
	registered_at, expires_at, ping_status, ping_rtt_ms, ping_at, node, path, updated_at`

// bindingUpsert writes any number of bindings in one statement: one array
// per column, unnested into rows.
const bindingUpsert = `INSERT INTO bindings(` + bindingColumns + `)
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
		$8::int8[], $9::text[], $10::text[], $11::int8[], $12::int8[], $13::text[], $14::float8[], $15::int8[],
		$16::text[], $17::text[], $18::int8[])
	ON CONFLICT (domain, extension, contact) DO UPDATE SET source = excluded.source, transport = excluded.transport,
		user_agent = excluded.user_agent, call_id = excluded.call_id, cseq = excluded.cseq,
		auth_user = excluded.auth_user, realm = excluded.realm, registered_at = excluded.registered_at,
		expires_at = excluded.expires_at, ping_status = excluded.ping_status, ping_rtt_ms = excluded.ping_rtt_ms,
		ping_at = excluded.ping_at, node = excluded.node, path = excluded.path, updated_at = excluded.updated_at`

// bindingDelete removes a row only while the key's node (or none) owns it.
const bindingDelete = `DELETE FROM bindings b USING unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS k(domain, extension, contact, node)
	WHERE b.domain = k.domain AND b.extension = k.extension AND b.contact = k.contact AND b.node IN (k.node, '')`

// LoadBindings returns every stored binding, expired ones included (the
// caller drops those).
func (db *DB) LoadBindings(ctx context.Context) ([]store.Binding, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	return db.queryBindings(ctx, `SELECT `+bindingColumns+` FROM bindings ORDER BY domain COLLATE "C", extension COLLATE "C", registered_at`)
}

// BindingsOf returns the stored bindings of one extension ("" number = all
// of the domain; "" domain = all).
func (db *DB) BindingsOf(ctx context.Context, domain, number string) ([]store.Binding, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	q := "SELECT " + bindingColumns + " FROM bindings WHERE TRUE"
	var args []any
	if domain != "" {
		args = append(args, domain)
		q += fmt.Sprintf(" AND domain = $%d", len(args))
	}
	if number != "" {
		args = append(args, number)
		q += fmt.Sprintf(" AND extension = $%d", len(args))
	}
	q += ` ORDER BY domain COLLATE "C", length(extension), extension COLLATE "C", registered_at`
	return db.queryBindings(ctx, q, args...)
}

func (db *DB) queryBindings(ctx context.Context, q string, args ...any) ([]store.Binding, error) {
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read bindings: %w", err)
	}
	defer rows.Close()
	var out []store.Binding
	for rows.Next() {
		var b store.Binding
		var reg, exp, ping, cseq, upd int64
		if err := rows.Scan(&b.Domain, &b.Extension, &b.Contact, &b.Source, &b.Transport, &b.UserAgent, &b.CallID,
			&cseq, &b.AuthUser, &b.Realm, &reg, &exp, &b.PingStatus, &b.PingRTT, &ping, &b.Node, &b.Path, &upd); err != nil {
			return nil, fmt.Errorf("read bindings: %w", err)
		}
		b.CSeq = uint32(cseq)
		b.RegisteredAt, b.ExpiresAt, b.PingAt = fromMs(reg), fromMs(exp), fromMs(ping)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read bindings: %w", err)
	}
	return out, nil
}

// ApplyBindings upserts and deletes bindings in one transaction, in one
// round trip whatever their number (the upsert of every row and the delete
// of every key go in one batch). Of several upserts of
// one key the last wins; a key both upserted and deleted is deleted.
func (db *DB) ApplyBindings(ctx context.Context, upsert []store.Binding, del []store.BindingKey) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if len(upsert) == 0 && len(del) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if len(upsert) > 0 {
		last := make(map[store.BindingKey]int, len(upsert))
		for i := range upsert {
			last[upsert[i].Key()] = i
		}
		n := len(last)
		var (
			dom, ext, contact, src, tr, ua, cid, auth, realm, ping = make([]string, 0, n), make([]string, 0, n),
				make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n),
				make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
			cseq, reg, exp, pingAt = make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
			rtt                    = make([]float64, 0, n)
			node, path, upd        = make([]string, 0, n), make([]string, 0, n), make([]int64, 0, n)
			now                    = unixMs(time.Now())
		)
		for i := range upsert {
			x := &upsert[i]
			if last[x.Key()] != i {
				continue
			}
			dom, ext, contact = append(dom, x.Domain), append(ext, x.Extension), append(contact, x.Contact)
			src, tr, ua, cid = append(src, x.Source), append(tr, x.Transport), append(ua, x.UserAgent), append(cid, x.CallID)
			cseq, auth, realm = append(cseq, int64(x.CSeq)), append(auth, x.AuthUser), append(realm, x.Realm)
			reg, exp = append(reg, unixMs(x.RegisteredAt)), append(exp, unixMs(x.ExpiresAt))
			ping, rtt, pingAt = append(ping, x.PingStatus), append(rtt, x.PingRTT), append(pingAt, unixMs(x.PingAt))
			node, path, upd = append(node, x.Node), append(path, x.Path), append(upd, now)
		}
		b.Queue(bindingUpsert, dom, ext, contact, src, tr, ua, cid, cseq, auth, realm, reg, exp, ping, rtt, pingAt,
			node, path, upd)
	}
	if len(del) > 0 {
		dom, ext, contact, node := make([]string, len(del)), make([]string, len(del)), make([]string, len(del)), make([]string, len(del))
		for i, k := range del {
			dom[i], ext[i], contact[i], node[i] = k.Domain, k.Extension, k.Contact, k.Node
		}
		b.Queue(bindingDelete, dom, ext, contact, node)
	}
	return db.runBatch(ctx, b, "save bindings")
}

// runBatch sends a batch in one round trip and reads every result. The
// server runs a batch (up to its one Sync) as one implicit transaction:
// all of it is written, or nothing.
func (db *DB) runBatch(ctx context.Context, b *pgx.Batch, what string) error {
	res := db.pool.SendBatch(ctx, b)
	var first error
	for i := 0; i < b.Len(); i++ {
		if _, err := res.Exec(); err != nil {
			first = err
			break
		}
	}
	if err := res.Close(); err != nil && first == nil {
		first = err
	}
	if first != nil {
		return fmt.Errorf("%s: %w", what, first)
	}
	return nil
}

// RenewNode inserts or updates n's lease row.
func (db *DB) RenewNode(ctx context.Context, n store.Node) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO nodes(name, address, started_at, renewed_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (name) DO UPDATE SET address = excluded.address, started_at = excluded.started_at,
		renewed_at = excluded.renewed_at`, n.Name, n.Address, unixMs(n.StartedAt), unixMs(n.RenewedAt))
	if err != nil {
		return fmt.Errorf("renew lease of node %s: %w", n.Name, err)
	}
	return nil
}

// ListNodes returns every node row, by name.
func (db *DB) ListNodes(ctx context.Context) ([]store.Node, error) {
	rows, err := db.pool.Query(ctx, `SELECT name, address, started_at, renewed_at FROM nodes ORDER BY name COLLATE "C"`)
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
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read nodes: %w", err)
	}
	return out, nil
}

// OtherBindings returns the unexpired bindings of nodes other than node
// written at or after since.
func (db *DB) OtherBindings(ctx context.Context, node string, since, now time.Time) ([]store.Binding, error) {
	return db.queryBindings(ctx, "SELECT "+bindingColumns+
		" FROM bindings WHERE updated_at >= $1 AND node <> $2 AND node <> '' AND expires_at > $3 ORDER BY registered_at",
		unixMs(since), node, unixMs(now))
}

// ReserveIDs atomically reserves n numbers of the counter key (a meta row
// holding the end of the last range) and returns the first.
func (db *DB) ReserveIDs(ctx context.Context, key string, n int64) (int64, error) {
	var end int64
	err := db.pool.QueryRow(ctx, `INSERT INTO meta(key, value) VALUES ($1, $2::bigint::text)
		ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + $2::bigint)::text RETURNING value::bigint`,
		key, n).Scan(&end)
	if err != nil {
		return 0, fmt.Errorf("reserve %d ids of %s: %w", n, key, err)
	}
	return end - n, nil
}
