package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// TestOpenCreatesPrivate: under the usual umask 022, what Open creates is
// private, the -wal and -shm files SQLite makes included.
func TestOpenCreatesPrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "data")
	db := openTest(t, dir)
	if err := db.SetMeta(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("data directory %04o, want 0700", m)
	}
	for _, f := range Files {
		if m := mode(t, filepath.Join(dir, f)); m != 0o600 {
			t.Errorf("%s %04o, want 0600", f, m)
		}
	}
}

// TestTighten: a data directory of an earlier version (0755, files 0644)
// is made private, and what changed is reported; a private one is left
// alone.
func TestTighten(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{FileName, FileName + "-wal", "secret.key", "other"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Tighten(dir, "secret.key", "missing")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].Path != dir || got[0].Old != 0o755 || got[0].New != 0o700 {
		t.Fatalf("changed %v", got)
	}
	if s := got[1].String(); s != filepath.Join(dir, FileName)+" 0644->0600" {
		t.Errorf("String() = %q", s)
	}
	for f, want := range map[string]os.FileMode{FileName: 0o600, FileName + "-wal": 0o600, "secret.key": 0o600, "other": 0o644} {
		if m := mode(t, filepath.Join(dir, f)); m != want {
			t.Errorf("%s %04o, want %04o", f, m, want)
		}
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("directory %04o", m)
	}
	if again, err := Tighten(dir, "secret.key"); err != nil || len(again) != 0 {
		t.Fatalf("second run changed %v, %v", again, err)
	}
}

func TestDeleteMeta(t *testing.T) {
	db := openTest(t, t.TempDir())
	ctx := context.Background()
	if err := db.SetMeta(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteMeta(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := db.Meta(ctx, "k"); ok || err != nil {
		t.Fatalf("still there: %v %v", ok, err)
	}
	if err := db.DeleteMeta(ctx, "k"); err != nil {
		t.Fatalf("deleting a missing setting: %v", err)
	}
}
