package secret

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// memMeta is an in-memory meta table (a fake is fine: Load's own logic is
// under test; the sqlite package tests DeleteMeta).
type memMeta struct {
	m       map[string]string
	deletes int
}

func (m *memMeta) Meta(_ context.Context, k string) (string, bool, error) {
	v, ok := m.m[k]
	return v, ok, nil
}

func (m *memMeta) DeleteMeta(_ context.Context, k string) error {
	delete(m.m, k)
	m.deletes++
	return nil
}

func fileMode(t *testing.T, dir string) os.FileMode {
	t.Helper()
	st, err := os.Stat(Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestLoadCreates(t *testing.T) {
	dir := t.TempDir()
	meta := &memMeta{m: map[string]string{}}
	key, origin, err := Load(context.Background(), dir, meta)
	if err != nil || origin != Created || len(key) != Size {
		t.Fatalf("Load: %x %v %v", key, origin, err)
	}
	if m := fileMode(t, dir); m != 0o600 {
		t.Errorf("key file %04o, want 0600", m)
	}
	again, origin, err := Load(context.Background(), dir, meta)
	if err != nil || origin != FromFile || !bytes.Equal(again, key) {
		t.Fatalf("second Load: %x %v %v", again, origin, err)
	}
	if len(meta.m) != 0 {
		t.Errorf("meta written: %v", meta.m)
	}
}

// TestLoadMigrates: the key an earlier version kept in meta moves to the
// file (same key: nonces and tokens stay valid) and leaves the database.
func TestLoadMigrates(t *testing.T) {
	dir := t.TempDir()
	old := bytes.Repeat([]byte{7}, 32)
	meta := &memMeta{m: map[string]string{LegacyMetaKey: hex.EncodeToString(old), "other": "x"}}
	key, origin, err := Load(context.Background(), dir, meta)
	if err != nil || origin != Migrated || !bytes.Equal(key, old) {
		t.Fatalf("Load: %x %v %v", key, origin, err)
	}
	if _, ok := meta.m[LegacyMetaKey]; ok || meta.m["other"] != "x" {
		t.Fatalf("meta after migration: %v", meta.m)
	}
	b, _ := os.ReadFile(Path(dir))
	if string(b) != hex.EncodeToString(old)+"\n" {
		t.Fatalf("file holds %q", b)
	}
	// A start that wrote the file but died before the delete: the file
	// wins and the copy in the database goes.
	meta.m[LegacyMetaKey] = hex.EncodeToString(bytes.Repeat([]byte{9}, 32))
	key, origin, err = Load(context.Background(), dir, meta)
	if err != nil || origin != FromFile || !bytes.Equal(key, old) {
		t.Fatalf("Load: %x %v %v", key, origin, err)
	}
	if _, ok := meta.m[LegacyMetaKey]; ok {
		t.Fatal("meta copy kept")
	}
}

func TestRotate(t *testing.T) {
	dir := t.TempDir()
	meta := &memMeta{m: map[string]string{}}
	key, _, err := Load(context.Background(), dir, meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(Path(dir), 0o644); err != nil {
		t.Fatal(err)
	}
	path, err := Rotate(dir)
	if err != nil || path != filepath.Join(dir, FileName) {
		t.Fatalf("Rotate: %s %v", path, err)
	}
	if m := fileMode(t, dir); m != 0o600 {
		t.Errorf("rotated key file %04o, want 0600", m)
	}
	next, origin, err := Load(context.Background(), dir, meta)
	if err != nil || origin != FromFile || bytes.Equal(next, key) || len(next) != Size {
		t.Fatalf("after Rotate: %x (old %x) %v %v", next, key, origin, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("files left in the directory: %v", ents)
	}
}

func TestLoadMalformed(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(Path(dir), []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(context.Background(), dir, &memMeta{m: map[string]string{}})
	if err == nil || !strings.Contains(err.Error(), "switchboard key rotate") {
		t.Fatalf("err = %v", err)
	}
	b, _ := os.ReadFile(Path(dir))
	if string(b) != "not a key\n" {
		t.Fatal("malformed key file replaced")
	}
	if _, _, err := Load(context.Background(), filepath.Join(dir, "missing"), &memMeta{m: map[string]string{}}); err == nil {
		t.Fatal("Load in a missing directory succeeded")
	}
}
