package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// blobStore keeps content under dir/sha256/ab/abcdef…. It never changes a
// blob once written.
type blobStore struct{ dir string }

func openBlobStore(dir string) (blobStore, error) {
	if dir == "" {
		return blobStore{}, errors.New("an evidence directory is required")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return blobStore{}, fmt.Errorf("resolving evidence directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Join(abs, "sha256"), 0o700); err != nil {
		return blobStore{}, fmt.Errorf("making evidence directory %s: %w", abs, err)
	}
	for _, d := range []string{abs, filepath.Join(abs, "sha256")} {
		if err := os.Chmod(d, 0o700); err != nil {
			return blobStore{}, fmt.Errorf("restricting evidence directory %s: %w", d, err)
		}
	}
	return blobStore{dir: abs}, nil
}

// validHex guards paths: a hash read back from the database is only used
// to build a path when it is exactly 64 lower-case hex digits.
func validHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (b blobStore) path(sum string) (string, error) {
	if !validHex(sum) {
		return "", fmt.Errorf("%q is not a SHA-256 hex digest", sum)
	}
	return filepath.Join(b.dir, "sha256", sum[:2], sum), nil
}

// put stores data under sum unless an intact blob is already there. A blob
// at that address whose content does not hash to sum (damaged or tampered)
// is renamed aside, never overwritten or deleted, and its new name returned
// so the caller can record it.
func (b blobStore) put(sum string, data []byte) (keptAside string, err error) {
	final, err := b.path(sum)
	if err != nil {
		return "", err
	}
	if got, err := hashFile(final); err == nil {
		if got == sum {
			return "", nil // deduplicated
		}
		keptAside = fmt.Sprintf("%s.mismatch-%d", final, time.Now().UnixNano())
		if err := os.Rename(final, keptAside); err != nil {
			return "", fmt.Errorf("moving damaged blob aside: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("checking existing blob: %w", err)
	}
	sub := filepath.Dir(final)
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return "", fmt.Errorf("making blob directory: %w", err)
	}
	if err := os.Chmod(sub, 0o700); err != nil {
		return "", fmt.Errorf("restricting blob directory: %w", err)
	}
	tmp, err := os.CreateTemp(sub, ".incoming-*")
	if err != nil {
		return "", fmt.Errorf("creating temporary blob: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // a no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", fmt.Errorf("writing temporary blob: %w", err)
	}
	if err := tmp.Chmod(0o400); err != nil {
		tmp.Close()
		return "", fmt.Errorf("making blob read-only: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("syncing blob: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("closing blob: %w", err)
	}
	if err := os.Rename(tmpName, final); err != nil {
		return "", fmt.Errorf("moving blob into place: %w", err)
	}
	// The rename is durable only once the directory entry is.
	if d, err := os.Open(sub); err == nil {
		serr := d.Sync()
		d.Close()
		if serr != nil {
			return "", fmt.Errorf("syncing blob directory: %w", serr)
		}
	}
	return keptAside, nil
}

func (b blobStore) open(sum string) (*os.File, error) {
	p, err := b.path(sum)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob sha256/%s/%s is missing: %w", sum[:2], sum, ErrTampered)
	}
	return f, err
}

// hash re-reads a blob and returns its actual SHA-256.
func (b blobStore) hash(sum string) (string, error) {
	p, err := b.path(sum)
	if err != nil {
		return "", err
	}
	return hashFile(p)
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
