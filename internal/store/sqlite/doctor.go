package sqlite

import (
	"context"
	"fmt"
	"time"
)

// ExtensionNumbers returns the numbers of domain's extensions: only the
// numbers, so the doctor's typo search does not read whole rows.
func (db *DB) ExtensionNumbers(ctx context.Context, domain string) ([]string, error) {
	return db.column(ctx, `SELECT e.number FROM extensions e JOIN domains d ON d.id = e.domain_id
		WHERE d.name = ?`, domain)
}

// DomainsWithExtension returns the other domains that have number, sorted.
func (db *DB) DomainsWithExtension(ctx context.Context, number, except string) ([]string, error) {
	return db.column(ctx, `SELECT d.name FROM extensions e JOIN domains d ON d.id = e.domain_id
		WHERE e.number = ? AND d.name != ? ORDER BY d.name`, number, except)
}

// CountRegistrations returns how many bindings are unexpired at now.
func (db *DB) CountRegistrations(ctx context.Context, now time.Time) (int, error) {
	var n int
	if err := db.sql.QueryRowContext(ctx, "SELECT count(*) FROM bindings WHERE expires_at > ?", now.UnixMilli()).Scan(&n); err != nil {
		return 0, fmt.Errorf("count registrations: %w", err)
	}
	return n, nil
}

// column runs a query that returns one text column.
func (db *DB) column(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := db.sql.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read directory: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read directory: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read directory: %w", err)
	}
	return out, nil
}
