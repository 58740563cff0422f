package sqlite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestOpenExistingCreatesAndMigratesNothing(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := OpenExisting(ctx, dir); !errors.Is(err, ErrNoDatabase) {
		t.Fatalf("missing directory: %v, want ErrNoDatabase", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("OpenExisting created %s", dir)
	}
	db, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	// An older schema is reported, not upgraded.
	if _, err := db.sql.ExecContext(ctx, "PRAGMA user_version = 1"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := OpenExisting(ctx, dir); !errors.Is(err, ErrSchema) {
		t.Fatalf("older schema: %v, want ErrSchema", err)
	}
	for _, f := range []string{"", "-wal", "-shm"} {
		os.Remove(filepath.Join(dir, FileName+f))
	}
	os.WriteFile(filepath.Join(dir, FileName), nil, 0o600)
	if _, err := OpenExisting(ctx, dir); !errors.Is(err, ErrNoDatabase) {
		t.Fatalf("empty file: %v, want ErrNoDatabase", err)
	}
}

func TestBackupToAndCheckFile(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.EnsureDomain(ctx, "pbx.test"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "b.db")
	if err := db.BackupTo(ctx, out); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
		t.Fatalf("backup mode %v, want 0600", st.Mode())
	}
	if err := CheckFile(ctx, out); err != nil {
		t.Fatalf("CheckFile of a fresh backup: %v", err)
	}
	if err := db.BackupTo(ctx, out); !errors.Is(err, os.ErrExist) {
		t.Fatalf("backup over an existing file: %v, want ErrExist", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.db")
	os.WriteFile(junk, make([]byte, 4096), 0o600)
	if err := CheckFile(ctx, junk); err == nil {
		t.Fatal("CheckFile accepted zeros")
	}
}
