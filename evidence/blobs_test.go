package evidence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// blobContract is what the ledger relies on from any BlobStore: run
// against every implementation.
func blobContract(t *testing.T, bs BlobStore, damage func(sum string)) {
	t.Helper()
	ctx := t.Context()
	data := []byte("tcp 203.0.113.7:443 ESTABLISHED\n")
	want := sum(string(data))
	if _, err := bs.Hash(ctx, want); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Hash of a blob never put: %v, want fs.ErrNotExist", err)
	}
	if _, err := bs.Open(ctx, want); !errors.Is(err, ErrTampered) {
		t.Errorf("Open of a blob never put: %v, want ErrTampered", err)
	}
	for i := range 2 { // the second Put of the same content is a no-op
		if kept, err := bs.Put(ctx, want, data); err != nil || kept != "" {
			t.Fatalf("Put %d: kept %q, %v", i+1, kept, err)
		}
	}
	rc, err := bs.Open(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != string(data) {
		t.Errorf("Open read %q, %v", got, err)
	}
	if h, err := bs.Hash(ctx, want); err != nil || h != want {
		t.Errorf("Hash = %s, %v; want %s", h, err, want)
	}
	if _, err := bs.Put(ctx, "../../etc/passwd", data); err == nil {
		t.Error("Put accepted an address that is no SHA-256")
	}
	// Damaged content is kept aside, and the good content put back.
	damage(want)
	if h, _ := bs.Hash(ctx, want); h == want {
		t.Fatal("damaging the blob changed nothing")
	}
	kept, err := bs.Put(ctx, want, data)
	if err != nil || kept == "" {
		t.Fatalf("Put over a damaged blob: kept %q, %v; want it kept aside", kept, err)
	}
	if h, err := bs.Hash(ctx, want); err != nil || h != want {
		t.Errorf("after the Put the blob hashes to %s, %v", h, err)
	}
}

func TestFileBlobsKeepTheContract(t *testing.T) {
	dir := t.TempDir()
	bs, err := OpenFileBlobs(dir)
	if err != nil {
		t.Fatal(err)
	}
	blobContract(t, bs, func(s string) { flipByte(t, filepath.Join(bs.Where(), "sha256", s[:2], s), 0) })
	if bs.Where() != dir {
		t.Errorf("Where = %s, want %s", bs.Where(), dir)
	}
}

// memBlobs is a BlobStore in memory: the seam's contract holds for a
// store that is no folder, and the ledger works over it.
type memBlobs struct {
	mu sync.Mutex
	m  map[string][]byte
	n  int
}

func (b *memBlobs) Where() string { return "memory" }

func (b *memBlobs) Put(_ context.Context, s string, data []byte) (string, error) {
	if !validHex(s) {
		return "", fmt.Errorf("%q is not a SHA-256 hex digest", s)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := ""
	if old, ok := b.m[s]; ok {
		if sum(string(old)) == s {
			return "", nil
		}
		b.n++
		kept = fmt.Sprintf("%s.mismatch-%d", s, b.n)
		b.m[kept] = old
	}
	b.m[s] = append([]byte(nil), data...)
	return kept, nil
}

func (b *memBlobs) Open(_ context.Context, s string) (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.m[s]
	if !ok {
		return nil, fmt.Errorf("blob %s is missing: %w", s, ErrTampered)
	}
	return io.NopCloser(strings.NewReader(string(d))), nil
}

func (b *memBlobs) Hash(_ context.Context, s string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.m[s]
	if !ok {
		return "", fs.ErrNotExist
	}
	return sum(string(d)), nil
}

func TestLedgerOverAnotherBlobStore(t *testing.T) {
	mem := &memBlobs{m: map[string][]byte{}}
	blobContract(t, mem, func(s string) { mem.m[s] = []byte("edited") })

	mem = &memBlobs{m: map[string][]byte{}}
	_, st := newLedger(t)
	l, err := Open(t.Context(), st.DB(), "", WithBlobs(mem))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := l.Add(t.Context(), item("conns.txt", "tcp 203.0.113.7:443"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mem.m[rec.SHA256]; !ok || l.Dir() != "memory" {
		t.Fatalf("the content is not in the blob store given (%v, %s)", mem.m, l.Dir())
	}
	rc, err := l.Open(t.Context(), rec.ID, "user:alice")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != "tcp 203.0.113.7:443" {
		t.Errorf("reading the evidence back: %q, %v", got, err)
	}
	if _, err := Open(t.Context(), st.DB(), ""); err == nil {
		t.Error("a ledger with neither a folder nor a blob store opened")
	}
}
