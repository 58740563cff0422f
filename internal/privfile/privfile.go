// Package privfile writes files that hold secrets (password hashes,
// signing keys, captures): mode 0600 whatever the umask, complete or not at
// all.
package privfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write writes b to path with mode 0600 through a temporary file in the
// same directory, synced, then linked to path (failing with an error that
// wraps os.ErrExist when path exists) or, with overwrite, renamed over it;
// the directory is synced after. Nobody can read the file between its
// creation and its mode being set, and a crash leaves the old file or the
// new one, never a part.
func Write(path string, b []byte, overwrite bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after the rename or link: nothing to remove, or the spare name
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if overwrite {
		err = os.Rename(tmp.Name(), path)
	} else {
		err = os.Link(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
