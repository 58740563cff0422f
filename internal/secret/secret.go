// Package secret keeps the server's signing key: the HMAC key of its
// digest nonces and Record-Route tokens. It lives in its own file in the
// data directory, DATA/secret.key (mode 0600, 64 hex digits and a line
// break), not in the database, so a copy of the database (a backup, an
// export of its rows) does not carry it.
//
// Load reads the key at the start of serve, creating it on the first
// start, or moving it out of the database's meta table where earlier
// versions kept it. Rotate writes a new key, which a running server uses
// from its next start: nonces and route tokens signed with the old key
// then fail their check, and phones simply authenticate again.
//
//	key, origin, err := secret.Load(ctx, dataDir, db)
package secret

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/privfile"
)

// FileName is the key file inside the data directory.
const FileName = "secret.key"

// Size is the key length in bytes.
const Size = 32

// LegacyMetaKey is the meta table entry where versions before the key file
// kept the key (hex); Load moves it into the file and deletes it.
const LegacyMetaKey = "nonce_key"

// Meta is the database's settings table, where the key used to live.
type Meta interface {
	Meta(ctx context.Context, key string) (value string, ok bool, err error)
	// DeleteMeta removes a setting, overwriting its bytes in the file.
	DeleteMeta(ctx context.Context, key string) error
}

// Origin says where Load found the key.
type Origin int

const (
	// FromFile: the key file existed.
	FromFile Origin = iota
	// Created: there was no key anywhere; a new one was written.
	Created
	// Migrated: the key was moved from the database into the file.
	Migrated
)

// Path is the key file of dataDir.
func Path(dataDir string) string { return filepath.Join(dataDir, FileName) }

// Load returns the signing key of dataDir (see the package comment). A
// key left in meta is deleted from it once the file holds the key, also
// when an earlier start wrote the file but stopped before deleting it.
// A malformed key file is an error (never silently replaced: that would
// sign everything with a key nobody chose).
func Load(ctx context.Context, dataDir string, meta Meta) ([]byte, Origin, error) {
	path := Path(dataDir)
	origin := FromFile
	key, err := read(path)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		old, ok, merr := meta.Meta(ctx, LegacyMetaKey)
		if merr != nil {
			return nil, 0, fmt.Errorf("signing key: %w", merr)
		}
		if ok {
			if key, err = hex.DecodeString(old); err != nil || len(key) < 16 {
				return nil, 0, fmt.Errorf("signing key: the database's %s is not a hex key; delete it (a new key is then made)", LegacyMetaKey)
			}
			origin = Migrated
		} else {
			key, origin = newKey(), Created
		}
		if err := write(dataDir, key); err != nil {
			return nil, 0, err
		}
	default:
		return nil, 0, err
	}
	if _, ok, err := meta.Meta(ctx, LegacyMetaKey); err != nil {
		return nil, 0, fmt.Errorf("signing key: %w", err)
	} else if ok {
		if err := meta.DeleteMeta(ctx, LegacyMetaKey); err != nil {
			return nil, 0, fmt.Errorf("signing key: remove the old copy from the database: %w", err)
		}
	}
	return key, origin, nil
}

// Rotate writes a new key to dataDir's key file (atomically: a reader sees
// the old key or the new one) and returns the file's path.
func Rotate(dataDir string) (string, error) {
	if err := write(dataDir, newKey()); err != nil {
		return "", err
	}
	return Path(dataDir), nil
}

func newKey() []byte {
	k := make([]byte, Size)
	if _, err := rand.Read(k); err != nil {
		panic("secret: no randomness: " + err.Error())
	}
	return k
}

// read returns the key in path; fs.ErrNotExist when there is none.
func read(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("signing key %s is unreadable: %w", path, err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) < 16 {
		return nil, fmt.Errorf("signing key %s is malformed (want %d hex digits): restore it from a backup, or make a new one with `switchboard key rotate`", path, 2*Size)
	}
	return key, nil
}

// write replaces dataDir's key file with key: a temporary file (0600)
// written and synced, renamed over the old one, and the directory synced.
func write(dataDir string, key []byte) error {
	if err := privfile.Write(Path(dataDir), []byte(hex.EncodeToString(key)+"\n"), true); err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	return nil
}
