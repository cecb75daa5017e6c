package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReplayGuard(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		run func(t *testing.T, dir string)
	}{
		"a nonce is admitted once": {func(t *testing.T, dir string) {
			g := mustGuard(t, dir, now, 10)
			if err := g.admit("a", now.Add(time.Minute), now); err != nil {
				t.Fatal(err)
			}
			if err := g.admit("a", now.Add(time.Minute), now); !errors.Is(err, errReplay) {
				t.Fatalf("second admit: %v, want errReplay", err)
			}
		}},
		"a reopened journal still refuses a live nonce": {func(t *testing.T, dir string) {
			g := mustGuard(t, dir, now, 10)
			if err := g.admit("a", now.Add(time.Minute), now); err != nil {
				t.Fatal(err)
			}
			if err := g.admit("b", now.Add(time.Second), now); err != nil {
				t.Fatal(err)
			}
			g.close()
			later := now.Add(30 * time.Second)
			g = mustGuard(t, dir, later, 10)
			if err := g.admit("a", now.Add(time.Minute), later); !errors.Is(err, errReplay) {
				t.Fatalf("after reopen: %v, want errReplay", err)
			}
			if _, ok := g.seen["b"]; ok {
				t.Fatalf("expired nonce kept after reopen")
			}
		}},
		"a read-only command's nonce is refused again but not journalled": {func(t *testing.T, dir string) {
			g := mustGuard(t, dir, now, 10)
			if err := g.admitReadOnly("r", now.Add(time.Minute), now); err != nil {
				t.Fatal(err)
			}
			if err := g.admitReadOnly("r", now.Add(time.Minute), now); !errors.Is(err, errReplay) {
				t.Fatalf("second read-only admit: %v, want errReplay", err)
			}
			if err := g.admit("r", now.Add(time.Minute), now); !errors.Is(err, errReplay) {
				t.Fatalf("the same nonce for a change: %v, want errReplay", err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, nonceFile)); err != nil || strings.Contains(string(b), `"r"`) {
				t.Fatalf("journal %q (%v): the read-only nonce was written", b, err)
			}
		}},
		"a torn last line is ignored": {func(t *testing.T, dir string) {
			g := mustGuard(t, dir, now, 10)
			if err := g.admit("a", now.Add(time.Minute), now); err != nil {
				t.Fatal(err)
			}
			g.close()
			f, err := os.OpenFile(filepath.Join(dir, nonceFile), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(`{"id":"b","unt`)
			f.Close()
			g = mustGuard(t, dir, now, 10)
			if len(g.seen) != 1 {
				t.Fatalf("seen %v", g.seen)
			}
		}},
		"a full memory refuses until nonces expire": {func(t *testing.T, dir string) {
			g := mustGuard(t, dir, now, 2)
			for _, id := range []string{"a", "b"} {
				if err := g.admit(id, now.Add(time.Minute), now); err != nil {
					t.Fatal(err)
				}
			}
			if err := g.admit("c", now.Add(time.Minute), now); !errors.Is(err, errTooManyNonces) {
				t.Fatalf("third admit: %v, want errTooManyNonces", err)
			}
			later := now.Add(2 * time.Minute)
			if err := g.admit("c", later.Add(time.Minute), later); err != nil {
				t.Fatalf("after expiry: %v", err)
			}
		}},
		"the journal is compacted": {func(t *testing.T, dir string) {
			g := mustGuard(t, dir, now, 100000)
			for i := range 3000 {
				at := now.Add(time.Duration(i) * time.Second)
				if err := g.admit(fmt.Sprint(i), at.Add(time.Second), at); err != nil {
					t.Fatal(err)
				}
			}
			if g.lines > 1100 {
				t.Fatalf("journal holds %d lines for %d live nonces", g.lines, len(g.seen))
			}
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) { tc.run(t, t.TempDir()) })
	}
}

func mustGuard(t *testing.T, dir string, now time.Time, max int) *replayGuard {
	t.Helper()
	g, err := openReplayGuard(dir, now, max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.close() })
	return g
}
