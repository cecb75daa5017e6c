package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/warden-ir/warden/store"
	"github.com/warden-ir/warden/store/storetest"
)

// TestConformance runs the backend conformance suite against SQLite: each
// case gets a fresh file in its own temporary directory, and a second
// handle on that file where it needs two.
func TestConformance(t *testing.T) {
	files := newSQLiteFiles(t)
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Backend {
			return files.open(t, files.fresh(t))
		},
		Reopen: func(t *testing.T, b store.Backend) store.Backend {
			path, err := files.path(b)
			if err != nil {
				t.Fatal(err)
			}
			return files.open(t, path)
		},
		AcquireWriter: func(ctx context.Context, b store.Backend, opt store.LeaseOptions) (storetest.Writer, error) {
			path, err := files.path(b)
			if err != nil {
				return nil, err
			}
			w, err := b.(*store.Store).AcquireWriter(ctx, path, opt)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			return w, nil
		},
	})
}

// sqliteFiles makes fresh store files and remembers which file each open
// store is on: a second handle and the writer lease are found by path.
type sqliteFiles struct {
	// empty is a store created by Open and closed again. Each case starts
	// from a copy, which Open then opens as it would any existing store:
	// creating the schema anew for every case would double the suite's
	// time under the race detector.
	empty []byte
	paths locations
}

// locations remembers where the database of each open backend is (a
// file, a URL), so that a second handle and the writer lease find it.
type locations struct {
	mu sync.Mutex
	m  map[store.Backend]string
}

func (l *locations) remember(b store.Backend, loc string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[store.Backend]string{}
	}
	l.m[b] = loc
}

func (l *locations) of(b store.Backend) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	loc, ok := l.m[b]
	if !ok {
		return "", fmt.Errorf("no database known for backend %p", b)
	}
	return loc, nil
}

func newSQLiteFiles(t *testing.T) *sqliteFiles {
	t.Helper()
	path := filepath.Join(t.TempDir(), "empty.db")
	s, err := store.Open(t.Context(), path, "normal")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // checkpoints the WAL into the file
		t.Fatal(err)
	}
	empty, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return &sqliteFiles{empty: empty}
}

// fresh writes an empty store file in t's temporary directory.
func (f *sqliteFiles) fresh(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "warden.db")
	if err := os.WriteFile(path, f.empty, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (f *sqliteFiles) open(t *testing.T, path string) store.Backend {
	t.Helper()
	s := openStore(t, path)
	f.paths.remember(s, path)
	return s
}

func (f *sqliteFiles) path(b store.Backend) (string, error) { return f.paths.of(b) }
