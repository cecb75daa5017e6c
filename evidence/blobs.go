package evidence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// BlobStore keeps the content of evidence by its SHA-256: the seam between
// the ledger (records, custody, the audit chain, in the store's database)
// and where the bytes live. With several controller replicas every one of
// them reads and writes the same blobs, so they must be on storage all of
// them share (docs/ha.md says which and why).
//
// A blob never changes once written: Put of content already there is a
// no-op, and a blob whose content no longer hashes to its address is kept
// aside, never overwritten or deleted, so that the damage can be examined.
type BlobStore interface {
	// Put stores data (whose SHA-256 is sum, lower-case hex) durably
	// before it returns. A blob already at sum that hashes to it is left
	// alone; one that does not is moved aside and its new name returned.
	Put(ctx context.Context, sum string, data []byte) (keptAside string, err error)
	// Open returns the content stored at sum; a missing blob is an error
	// wrapping ErrTampered.
	Open(ctx context.Context, sum string) (io.ReadCloser, error)
	// Hash re-reads the blob at sum and returns the SHA-256 of what is
	// there; a missing blob is an error wrapping fs.ErrNotExist.
	Hash(ctx context.Context, sum string) (string, error)
	// Where names the place for people (a folder, a bucket).
	Where() string
}

var _ BlobStore = (*FileBlobs)(nil)

// FileBlobs keeps blobs in a folder, under dir/sha256/ab/abcdef…, each
// read-only, written to a temporary file, synced and renamed into place
// (the folder synced after), so that a crash leaves either the whole blob
// or none. A network file system every replica mounts (NFS with close-to-
// open consistency) serves replicas; the rename makes a blob appear whole
// to them too.
type FileBlobs struct{ dir string }

// OpenFileBlobs prepares dir (made 0700 if missing) as a blob folder.
func OpenFileBlobs(dir string) (*FileBlobs, error) {
	if dir == "" {
		return nil, errors.New("an evidence directory is required")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving evidence directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Join(abs, "sha256"), 0o700); err != nil {
		return nil, fmt.Errorf("making evidence directory %s: %w", abs, err)
	}
	for _, d := range []string{abs, filepath.Join(abs, "sha256")} {
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("restricting evidence directory %s: %w", d, err)
		}
	}
	return &FileBlobs{dir: abs}, nil
}

// Where is the folder.
func (b *FileBlobs) Where() string { return b.dir }

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

func (b *FileBlobs) path(sum string) (string, error) {
	if !validHex(sum) {
		return "", fmt.Errorf("%q is not a SHA-256 hex digest", sum)
	}
	return filepath.Join(b.dir, "sha256", sum[:2], sum), nil
}

// Put implements BlobStore.
func (b *FileBlobs) Put(_ context.Context, sum string, data []byte) (keptAside string, err error) {
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

// Open implements BlobStore.
func (b *FileBlobs) Open(_ context.Context, sum string) (io.ReadCloser, error) {
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

// Hash implements BlobStore.
func (b *FileBlobs) Hash(_ context.Context, sum string) (string, error) {
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
