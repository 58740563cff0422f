// Package multirow writes many rows with few statements. One INSERT per row
// costs more in database/sql and the SQLite driver than SQLite's own work,
// so rows go in statements of up to MaxRows rows each. The statements for
// each size (MaxRows, MaxRows/2, ..., 1) are prepared once per database and
// reused by every transaction, so a batch of any size costs at most
// log2(MaxRows)+1 statement executions beyond the full ones, and no
// statement preparation after warm-up.
package multirow

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
)

// MaxRows is the largest number of rows in one statement.
const MaxRows = 32

// Insert is a multi-row INSERT for one table. Create with New; safe for
// concurrent use.
type Insert struct {
	db         *sql.DB
	head, tail string
	tuple      string
	cols       int

	mu    sync.Mutex
	stmts map[int]*sql.Stmt // rows per statement -> prepared statement
}

// New returns an Insert whose statements read
//
//	head VALUES (?,...,?),(?,...,?) tail
//
// with cols placeholders per row; tail may be empty or an ON CONFLICT
// clause (which then applies to each row in turn).
func New(db *sql.DB, head string, cols int, tail string) *Insert {
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	return &Insert{db: db, head: head, tail: tail, tuple: tuple, cols: cols, stmts: map[int]*sql.Stmt{}}
}

// Prepare makes sure the statements for every size are prepared. Call it
// before beginning a transaction for Exec: preparing on the database while
// holding a transaction's connection could wait forever for a free
// connection.
func (in *Insert) Prepare(ctx context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	for n := MaxRows; n >= 1; n /= 2 {
		if in.stmts[n] != nil {
			continue
		}
		var b strings.Builder
		b.WriteString(in.head)
		b.WriteString(" VALUES ")
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(in.tuple)
		}
		if in.tail != "" {
			b.WriteByte(' ')
			b.WriteString(in.tail)
		}
		s, err := in.db.PrepareContext(ctx, b.String())
		if err != nil {
			return err
		}
		in.stmts[n] = s
	}
	return nil
}

// Write inserts len(args)/cols rows in one transaction, in order; args
// holds the rows' values one row after the other. Nothing is written when
// it fails. It returns an error when len(args) is not a multiple of the
// column count.
func (in *Insert) Write(ctx context.Context, args []any) error {
	if len(args) == 0 {
		return nil
	}
	if err := in.Prepare(ctx); err != nil {
		return err
	}
	tx, err := in.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := in.Exec(ctx, tx, args); err != nil {
		return err
	}
	return tx.Commit()
}

// Exec inserts len(args)/cols rows within tx, in order. Prepare must have
// succeeded before tx began.
func (in *Insert) Exec(ctx context.Context, tx *sql.Tx, args []any) error {
	if len(args)%in.cols != 0 {
		return fmt.Errorf("multirow: %d values for %d columns", len(args), in.cols)
	}
	for rows := len(args) / in.cols; rows > 0; {
		n := MaxRows
		for n > rows {
			n /= 2
		}
		in.mu.Lock()
		s := in.stmts[n]
		in.mu.Unlock()
		if s == nil {
			return fmt.Errorf("multirow: Exec before Prepare")
		}
		if _, err := tx.StmtContext(ctx, s).ExecContext(ctx, args[:n*in.cols]...); err != nil {
			return err
		}
		args = args[n*in.cols:]
		rows -= n
	}
	return nil
}

// Close releases the prepared statements.
func (in *Insert) Close() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	var first error
	for n, s := range in.stmts {
		if err := s.Close(); err != nil && first == nil {
			first = err
		}
		delete(in.stmts, n)
	}
	return first
}
