package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// BackupTo writes a consistent copy of the whole database to path while
// the database stays in use (SQLite's VACUUM INTO reads one snapshot, so a
// server writing meanwhile neither blocks nor tears the copy). The copy is
// written to a temporary file beside path, checked with integrity_check,
// made 0600 (it holds password hashes) and renamed into place. path must
// not exist.
func (db *DB) BackupTo(ctx context.Context, path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("backup %s: %w", path, os.ErrExist)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("backup %s: %w", path, unwrapPathErr(err))
	}
	tmpName := tmp.Name()
	tmp.Close()
	os.Remove(tmpName) // VACUUM INTO wants to create the file itself
	defer os.Remove(tmpName)
	if _, err := db.sql.ExecContext(ctx, "VACUUM INTO ?", tmpName); err != nil {
		return fmt.Errorf("backup %s: %w", path, err)
	}
	if err := os.Chmod(tmpName, 0o600); err != nil {
		return fmt.Errorf("backup %s: %w", path, err)
	}
	if err := CheckFile(ctx, tmpName); err != nil {
		return fmt.Errorf("backup %s: the copy failed its check: %w", path, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("backup %s: %w", path, unwrapPathErr(err))
	}
	return nil
}

// ErrNotSwitchboard is returned by CheckFile for a file that is not a
// switchboard database.
var ErrNotSwitchboard = errors.New("not a switchboard database")

// CheckFile opens the SQLite file at path read-only and verifies that it is
// intact (PRAGMA integrity_check) and a switchboard database whose schema
// this binary can run (not newer than it knows).
func CheckFile(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err != nil {
		return unwrapPathErr(err)
	}
	sdb, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer sdb.Close()
	var res string
	if err := sdb.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
		if strings.Contains(err.Error(), "not a database") {
			return ErrNotSwitchboard
		}
		return err
	}
	if res != "ok" {
		return fmt.Errorf("integrity check: %s", res)
	}
	var v, tables int
	if err := sdb.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return err
	}
	if err := sdb.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('meta', 'domains', 'extensions')").Scan(&tables); err != nil {
		return err
	}
	if v == 0 || tables != 3 {
		return ErrNotSwitchboard
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this switchboard's (%d): upgrade switchboard first", v, len(migrations))
	}
	return nil
}

// ReplaceFile makes the SQLite file at src the database of dataDir. No
// process may have dataDir's database open. The database it replaces (with
// anything still in its write-ahead log) is first saved, consistently, as
// the returned path (switchboard.db.replaced-SUFFIX); "" when there was
// none. The new file is copied, not moved, made 0600 and migrated.
func ReplaceFile(ctx context.Context, dataDir, src, suffix string) (saved string, err error) {
	if err := CheckFile(ctx, src); err != nil {
		return "", fmt.Errorf("%s: %w", src, err)
	}
	dst := filepath.Join(dataDir, FileName)
	if _, err := os.Stat(dst); err == nil {
		old, err := Open(ctx, dataDir)
		if err != nil {
			return "", err
		}
		saved = dst + ".replaced-" + suffix
		err = old.BackupTo(ctx, saved)
		old.Close()
		if err != nil {
			return "", fmt.Errorf("save the current database first: %w", err)
		}
	}
	tmp := dst + ".restore-tmp"
	if err := copyFile(src, tmp); err != nil {
		return saved, err
	}
	for _, f := range []string{dst + "-wal", dst + "-shm"} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			os.Remove(tmp)
			return saved, err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return saved, err
	}
	db, err := Open(ctx, dataDir)
	if err != nil {
		return saved, err
	}
	return saved, db.Close()
}

func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return unwrapPathErr(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return unwrapPathErr(err)
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := in.WriteTo(out); err != nil {
		return err
	}
	return out.Sync()
}
