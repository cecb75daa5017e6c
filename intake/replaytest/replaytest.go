// Package replaytest is the conformance suite for intake.ReplayLedger: every
// implementation (the verifier's memory, the store's table) must pass it.
//
// It owns the contract's tests and nothing else; only tests import it.
package replaytest

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-ir/warden/intake"
)

// Run checks the ReplayLedger contract. open returns a fresh, empty ledger
// for each subtest.
func Run(t *testing.T, open func(t *testing.T) intake.ReplayLedger) {
	t0 := time.Date(2025, 3, 14, 3, 0, 0, 0, time.UTC)
	window := 5 * time.Minute
	digest := func(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }

	type call struct {
		digest string
		at     time.Duration // after t0; the entry expires at t0+at+window
		now    time.Duration // after t0
		fresh  bool
	}
	tests := map[string][]call{
		"first use is fresh, second is a replay": {
			{digest: "a", fresh: true},
			{digest: "a", now: time.Second, fresh: false},
		},
		"other digests are independent": {
			{digest: "a", fresh: true},
			{digest: "b", fresh: true},
			{digest: "a", fresh: false},
			{digest: "b", fresh: false},
		},
		"remembered up to and including expiry": {
			{digest: "a", fresh: true},
			{digest: "a", now: window, fresh: false},
		},
		"forgotten after expiry": {
			{digest: "a", fresh: true},
			{digest: "a", at: window + time.Second, now: window + time.Second, fresh: true},
			{digest: "a", at: window + time.Second, now: window + 2*time.Second, fresh: false},
		},
		"pruning one entry keeps the others": {
			{digest: "old", fresh: true},
			{digest: "new", at: 4 * time.Minute, now: 4 * time.Minute, fresh: true},
			{digest: "x", at: window + time.Second, now: window + time.Second, fresh: true},
			{digest: "new", at: 4 * time.Minute, now: window + time.Second, fresh: false},
		},
	}
	for name, calls := range tests {
		t.Run(name, func(t *testing.T) {
			l := open(t)
			for i, c := range calls {
				fresh, err := l.RememberSignature(t.Context(), digest(c.digest), t0.Add(c.at+window), t0.Add(c.now))
				if err != nil {
					t.Fatalf("call %d (%s): %v", i, c.digest, err)
				}
				if fresh != c.fresh {
					t.Fatalf("call %d (%s at +%s): fresh=%t, want %t", i, c.digest, c.now, fresh, c.fresh)
				}
			}
		})
	}

	t.Run("concurrent uses: exactly one is fresh", func(t *testing.T) {
		l := open(t)
		var fresh, replays atomic.Int32
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				ok, err := l.RememberSignature(t.Context(), digest("same"), t0.Add(window), t0)
				switch {
				case err != nil:
					t.Error(err)
				case ok:
					fresh.Add(1)
				default:
					replays.Add(1)
				}
			})
		}
		wg.Wait()
		if fresh.Load() != 1 || replays.Load() != 15 {
			t.Errorf("fresh %d, replays %d; want 1 and 15", fresh.Load(), replays.Load())
		}
	})
}
