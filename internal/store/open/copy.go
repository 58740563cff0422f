package open

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-pbx/switchboard/internal/store/postgres"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

// ErrTargetNotEmpty: Copy's target already holds switchboard data.
var ErrTargetNotEmpty = errors.New("the target database is not empty")

// CopyReport says what Copy moved: rows per table, in copy order.
type CopyReport struct {
	From   string      `json:"from"`
	To     string      `json:"to"`
	Tables []TableRows `json:"tables"`
}

// TableRows is one table's row count.
type TableRows struct {
	Table string `json:"table"`
	Rows  int64  `json:"rows"`
}

// Copy copies every switchboard table from one database to a PostgreSQL
// database, all or nothing: the target is migrated first, then filled in
// one transaction, which commits only when each table's row count equals
// the source's. The source is read in one read-only transaction (a
// consistent snapshot, so a running server may keep writing). A target
// holding domains, extensions, registrations, journal events, call
// records, bans or settings is refused unless force, which replaces them.
// The change feed is not copied (its sequence continues past the
// source's); the identity sequences are moved past the copied ids.
func Copy(ctx context.Context, from, to Target, force bool) (CopyReport, error) {
	rep := CopyReport{From: from.String(), To: to.String()}
	if to.Kind != Postgres {
		return rep, fmt.Errorf("db copy writes to PostgreSQL only: --to must be postgres://... (to go back to SQLite, restore a backup)")
	}
	if from.Kind == to.Kind && from.URL == to.URL {
		return rep, errors.New("--from and --to are the same database")
	}
	src, err := openSource(ctx, from)
	if err != nil {
		return rep, err
	}
	defer src.close()
	dst, err := postgres.Open(ctx, to.URL)
	if err != nil {
		return rep, err
	}
	defer dst.Close()
	tx, err := dst.Pool().BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return rep, fmt.Errorf("copy: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// One copy at a time into a database, and no server writing during it.
	var n int64
	if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM domains) + (SELECT count(*) FROM extensions) +
		(SELECT count(*) FROM bindings) + (SELECT count(*) FROM journal) + (SELECT count(*) FROM calls) +
		(SELECT count(*) FROM bans) + (SELECT count(*) FROM meta)`).Scan(&n); err != nil {
		return rep, fmt.Errorf("copy: %w", err)
	}
	if n > 0 && !force {
		return rep, fmt.Errorf("%s: %w (%d rows): pass --force to replace its contents", rep.To, ErrTargetNotEmpty, n)
	}
	var names []string
	for _, t := range postgres.Tables {
		names = append(names, t.Name)
	}
	if _, err := tx.Exec(ctx, "TRUNCATE "+strings.Join(names, ", ")+" RESTART IDENTITY"); err != nil {
		return rep, fmt.Errorf("copy: empty the target: %w", err)
	}
	for _, t := range postgres.Tables {
		if t.Name == "changes" {
			continue
		}
		cols, types, err := columns(ctx, tx, t.Name)
		if err != nil {
			return rep, err
		}
		want, err := src.count(ctx, t.Name)
		if err != nil {
			return rep, err
		}
		it, err := src.rows(ctx, t.Name, cols)
		if err != nil {
			return rep, err
		}
		copied, err := tx.CopyFrom(ctx, pgx.Identifier{t.Name}, cols, pgx.CopyFromFunc(func() ([]any, error) {
			row, err := it.next()
			if err != nil || row == nil {
				return nil, err
			}
			for i, v := range row {
				row[i] = convert(v, types[i])
			}
			return row, nil
		}))
		it.close()
		if err != nil {
			return rep, fmt.Errorf("copy table %s: %w", t.Name, err)
		}
		var got int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+t.Name).Scan(&got); err != nil {
			return rep, fmt.Errorf("copy: count %s: %w", t.Name, err)
		}
		if got != want || copied != want {
			return rep, fmt.Errorf("copy table %s: the source has %d rows, %d were copied and the target has %d: nothing was written", t.Name, want, copied, got)
		}
		rep.Tables = append(rep.Tables, TableRows{Table: t.Name, Rows: got})
		if t.Identity != "" {
			if _, err := tx.Exec(ctx, fmt.Sprintf("SELECT setval(pg_get_serial_sequence('%[1]s', '%[2]s'), coalesce(max(%[2]s), 0) + 1, false) FROM %[1]s",
				t.Name, t.Identity)); err != nil {
				return rep, fmt.Errorf("copy: sequence of %s: %w", t.Name, err)
			}
		}
	}
	// The triggers wrote the copied rows into the change feed: drop them,
	// and continue the sequence past the source's, so that a server that
	// read the source's feed misses nothing.
	last, err := src.lastChange(ctx)
	if err != nil {
		return rep, err
	}
	if _, err := tx.Exec(ctx, "DELETE FROM changes"); err != nil {
		return rep, fmt.Errorf("copy: change feed: %w", err)
	}
	if _, err := tx.Exec(ctx, "SELECT setval(pg_get_serial_sequence('changes', 'seq'), greatest((SELECT last_value FROM changes_seq_seq), $1::int8) + 1, false)", last); err != nil {
		return rep, fmt.Errorf("copy: change feed: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return rep, fmt.Errorf("copy: commit: %w", err)
	}
	return rep, nil
}

// columns returns the columns of a target table in order, with their
// types.
func columns(ctx context.Context, tx pgx.Tx, table string) (cols, types []string, err error) {
	rows, err := tx.Query(ctx, `SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`, table)
	if err != nil {
		return nil, nil, fmt.Errorf("copy: columns of %s: %w", table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var c, t string
		if err := rows.Scan(&c, &t); err != nil {
			return nil, nil, fmt.Errorf("copy: columns of %s: %w", table, err)
		}
		cols, types = append(cols, c), append(types, t)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("copy: columns of %s: %w", table, err)
	}
	if len(cols) == 0 {
		return nil, nil, fmt.Errorf("copy: the target has no table %s", table)
	}
	return cols, types, nil
}

// convert turns an SQLite value into the PostgreSQL column's type.
func convert(v any, pgType string) any {
	switch pgType {
	case "boolean":
		switch x := v.(type) {
		case int64:
			return x != 0
		case float64:
			return x != 0
		}
	case "double precision":
		if x, ok := v.(int64); ok {
			return float64(x)
		}
	case "text":
		if x, ok := v.([]byte); ok {
			return string(x)
		}
	case "integer", "bigint":
		if x, ok := v.(float64); ok {
			return int64(x)
		}
	}
	return v
}

// source reads a database's tables within one read-only snapshot.
type source struct {
	sq    *sqlite.DB
	sqTx  *sql.Tx
	pg    *postgres.DB
	pgTx  pgx.Tx
	close func()
}

type rowIter struct {
	next  func() ([]any, error)
	close func()
}

func openSource(ctx context.Context, t Target) (*source, error) {
	if t.Kind == SQLite {
		db, err := sqlite.OpenExisting(ctx, t.Dir)
		if err != nil {
			return nil, fmt.Errorf("--from: %w", err)
		}
		tx, err := db.SQL().BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("--from: %w", err)
		}
		return &source{sq: db, sqTx: tx, close: func() { tx.Rollback(); db.Close() }}, nil
	}
	db, err := postgres.OpenExisting(ctx, t.URL)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	tx, err := db.Pool().BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("--from: %w", err)
	}
	return &source{pg: db, pgTx: tx, close: func() { tx.Rollback(context.Background()); db.Close() }}, nil
}

func (s *source) count(ctx context.Context, table string) (int64, error) {
	var n int64
	var err error
	q := "SELECT count(*) FROM " + table
	if s.sqTx != nil {
		err = s.sqTx.QueryRowContext(ctx, q).Scan(&n)
	} else {
		err = s.pgTx.QueryRow(ctx, q).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("copy: count the source's %s: %w", table, err)
	}
	return n, nil
}

func (s *source) lastChange(ctx context.Context) (int64, error) {
	var n int64
	var err error
	q := "SELECT coalesce(max(seq), 0) FROM changes"
	if s.sqTx != nil {
		err = s.sqTx.QueryRowContext(ctx, q).Scan(&n)
	} else {
		err = s.pgTx.QueryRow(ctx, q).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("copy: read the source's change feed: %w", err)
	}
	return n, nil
}

func (s *source) rows(ctx context.Context, table string, cols []string) (*rowIter, error) {
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = `"` + c + `"`
	}
	q := "SELECT " + strings.Join(quoted, ", ") + " FROM " + table
	if s.sqTx != nil {
		rows, err := s.sqTx.QueryContext(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("copy: read the source's %s: %w", table, err)
		}
		return &rowIter{close: func() { rows.Close() }, next: func() ([]any, error) {
			if !rows.Next() {
				if err := rows.Err(); err != nil {
					return nil, fmt.Errorf("read the source's %s: %w", table, err)
				}
				return nil, nil
			}
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return nil, fmt.Errorf("read the source's %s: %w", table, err)
			}
			return vals, nil
		}}, nil
	}
	rows, err := s.pgTx.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("copy: read the source's %s: %w", table, err)
	}
	return &rowIter{close: rows.Close, next: func() ([]any, error) {
		if !rows.Next() {
			if err := rows.Err(); err != nil {
				return nil, fmt.Errorf("read the source's %s: %w", table, err)
			}
			return nil, nil
		}
		return rows.Values()
	}}, nil
}
