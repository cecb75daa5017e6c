package store_test

import (
	"crypto/sha256"
	"path/filepath"
	"testing"
	"time"

	"github.com/warden-ir/warden/intake"
	"github.com/warden-ir/warden/intake/replaytest"
	"github.com/warden-ir/warden/store"
)

var _ intake.ReplayLedger = (*store.Store)(nil)

func openStore(t *testing.T, path string) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), path, "normal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestReplayLedgerConformance(t *testing.T) {
	replaytest.Run(t, func(t *testing.T) intake.ReplayLedger {
		return openStore(t, filepath.Join(t.TempDir(), "warden.db"))
	})
}

// TestReplayLedgerSurvivesRestart: what one process remembered, the next
// one on the same file still refuses, until it expires.
func TestReplayLedgerSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "warden.db")
	now := time.Date(2025, 3, 14, 3, 0, 0, 0, time.UTC)
	expiry := now.Add(5 * time.Minute)
	d := sha256.Sum256([]byte("t=1741921200,v1=…"))

	first := openStore(t, path)
	if fresh, err := first.RememberSignature(t.Context(), d[:], expiry, now); err != nil || !fresh {
		t.Fatalf("first use: fresh=%t err=%v", fresh, err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	second := openStore(t, path)
	if fresh, err := second.RememberSignature(t.Context(), d[:], expiry, now.Add(time.Minute)); err != nil || fresh {
		t.Fatalf("replay after restart: fresh=%t err=%v, want a replay", fresh, err)
	}
	if fresh, err := second.RememberSignature(t.Context(), d[:], now.Add(11*time.Minute), now.Add(6*time.Minute)); err != nil || !fresh {
		t.Fatalf("after expiry: fresh=%t err=%v, want fresh", fresh, err)
	}
	var n int
	if err := second.DB().QueryRowContext(t.Context(), `SELECT count(*) FROM webhook_signatures`).Scan(&n); err != nil || n != 1 {
		t.Errorf("table holds %d rows (err %v), want 1 after pruning", n, err)
	}
}
