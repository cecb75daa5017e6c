package store_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/warden-ir/warden/store"
)

// TestOpenPathsWithURICharacters: the store lives at exactly the path it
// was given, even when the path holds characters a SQLite URI gives a
// meaning to ('?' starts the query, '#' a fragment, '%' an escape).
func TestOpenPathsWithURICharacters(t *testing.T) {
	tests := map[string]struct {
		dir, file string
	}{
		"question mark":        {file: "what?.db"},
		"question mark in dir": {dir: "a?mode=ro", file: "warden.db"},
		"hash":                 {file: "no#1.db"},
		"percent escape":       {file: "100%41.db"}, // not "100A.db"
		"all three":            {dir: "q?h#p%", file: "w?a#r%d.db"},
		"leading double slash": {dir: "//", file: "warden.db"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, tc.dir)
			if tc.dir == "//" {
				dir = "/" + root // "//tmp/…": the same directory, spelt as a URI authority would be
			} else if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := dir + "/" + tc.file
			st, err := store.Open(t.Context(), path, "full")
			if err != nil {
				t.Fatalf("opening %s: %v", path, err)
			}
			if err := st.ProbeWrite(t.Context(), time.Now()); err != nil {
				t.Fatalf("writing to %s: %v", path, err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil || fi.Size() == 0 {
				t.Fatalf("the database is not at %s (%v)", path, err)
			}
			// Nothing was created anywhere else: only the database and its
			// journal files, in the directory given.
			var stray []string
			_ = filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
				if err == nil && !e.IsDir() {
					if rel, _ := filepath.Rel(filepath.Clean(dir), p); !slices.Contains([]string{tc.file, tc.file + "-wal", tc.file + "-shm"}, rel) {
						stray = append(stray, p)
					}
				}
				return nil
			})
			if len(stray) > 0 {
				t.Errorf("opening %s created %v", path, stray)
			}
			// And it opens again, with what was written.
			st, err = store.Open(t.Context(), path, "full")
			if err != nil {
				t.Fatalf("reopening %s: %v", path, err)
			}
			defer st.Close()
			var n int
			if err := st.DB().QueryRowContext(t.Context(), `SELECT count FROM write_probe`).Scan(&n); err != nil || n != 1 {
				t.Errorf("reopened %s: probe count %d (%v), want 1", path, n, err)
			}
		})
	}
}
