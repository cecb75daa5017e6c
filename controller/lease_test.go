package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/store"
)

// testLease is a writer lease a test can take away.
type testLease struct {
	mu    sync.Mutex
	epoch int64
	err   error
}

func (l *testLease) Epoch() int64 { l.mu.Lock(); defer l.mu.Unlock(); return l.epoch }
func (l *testLease) Held() error  { l.mu.Lock(); defer l.mu.Unlock(); return l.err }
func (l *testLease) set(epoch int64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.epoch, l.err = epoch, err
}

// TestNoSideEffectWithoutTheLease: a controller that does not hold the
// store's writer lease applies nothing and leaves the run for the holder,
// which resumes it; every step records the epoch it ran under.
func TestNoSideEffectWithoutTheLease(t *testing.T) {
	lease := &testLease{epoch: 7, err: errors.New("another controller holds the store")}
	h := newHarness(t, func(o *Options) { o.Lease = lease })
	res := h.accept(t, ind(indicator.C2Beacon, "gw-osaka"))
	if err := h.c.ExecuteRun(t.Context(), res[0].RunID); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("executing without the lease: %v, want ErrNotLeader", err)
	}
	for name, a := range h.acts {
		if a.calls() != 0 {
			t.Fatalf("%s applied %d times without the lease", name, a.calls())
		}
	}
	r, err := h.st.Run(t.Context(), res[0].RunID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Terminal() {
		t.Fatalf("a fenced-off controller finished the run: %s %s", r.State, r.Error)
	}

	lease.set(8, nil)
	r = h.run(t, res[0].RunID)
	if r.State != store.RunSucceeded {
		t.Fatalf("run after taking the lease: %s %s", r.State, r.Error)
	}
	for _, s := range r.Steps {
		if s.Epoch != 8 {
			t.Errorf("step %s ran under epoch %d, want 8", s.Name, s.Epoch)
		}
	}
}

// TestLeaseLostMidRunStopsBeforeTheNextStep: the lease is checked right
// before each step, not only when the run starts.
func TestLeaseLostMidRunStopsBeforeTheNextStep(t *testing.T) {
	lease := &testLease{epoch: 1}
	h := newHarness(t, func(o *Options) { o.Lease = lease })
	h.acts["snapshot"].onApply = func() { lease.set(1, errors.New("lease lost")) }
	res := h.accept(t, ind(indicator.C2Beacon, "gw-osaka"))
	if err := h.c.ExecuteRun(t.Context(), res[0].RunID); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("executing after losing the lease: %v, want ErrNotLeader", err)
	}
	if n := h.acts["isolate"].calls(); n != 0 {
		t.Fatalf("isolate applied %d times after the lease was lost", n)
	}
	r, _ := h.st.Run(t.Context(), res[0].RunID)
	if r.Terminal() {
		t.Fatalf("run finished by a controller without the lease: %s", r.State)
	}
}

// TestFencedStepIsLeftForTheLeader: a provider that finds the lease gone
// right before its change (actions.ErrFenced) fails nothing: the step and
// the run stay running, with no retry, and the next holder resumes them.
func TestFencedStepIsLeftForTheLeader(t *testing.T) {
	lease := &testLease{epoch: 3}
	h := newHarness(t, func(o *Options) { o.Lease = lease })
	h.acts["isolate"].failures = []error{fmt.Errorf("reconfiguring vm gw-osaka: %w", actions.ErrFenced)}
	res := h.accept(t, ind(indicator.C2Beacon, "gw-osaka"))
	if err := h.c.ExecuteRun(t.Context(), res[0].RunID); !errors.Is(err, actions.ErrFenced) {
		t.Fatalf("executing a fenced step: %v, want ErrFenced", err)
	}
	r, err := h.st.Run(t.Context(), res[0].RunID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range r.Steps {
		if s.Action == "isolate" && (s.State != store.StepRunning || s.Attempts != 1) {
			t.Errorf("fenced step %s: %s after %d attempts, want running after 1", s.Name, s.State, s.Attempts)
		}
	}
	if r.Terminal() {
		t.Fatalf("a fenced step finished the run: %s %s", r.State, r.Error)
	}
	lease.set(4, nil)
	if r = h.run(t, res[0].RunID); r.State != store.RunSucceeded {
		t.Fatalf("the next holder's run: %s %s", r.State, r.Error)
	}
}

// TestStepFenceCarriesTheEpoch: providers see the epoch of the lease the
// step started under, and a check that reads the store's lease.
func TestStepFenceCarriesTheEpoch(t *testing.T) {
	lease := &testLease{epoch: 9}
	h := newHarness(t, func(o *Options) { o.Lease = lease })
	var seen []int64
	h.acts["snapshot"].onCtx = func(ctx context.Context) {
		epoch, err := actions.CheckFence(ctx)
		if err != nil {
			t.Errorf("checking the fence of a held lease: %v", err)
		}
		seen = append(seen, epoch)
	}
	res := h.accept(t, ind(indicator.C2Beacon, "gw-osaka"))
	if r := h.run(t, res[0].RunID); r.State != store.RunSucceeded {
		t.Fatalf("run: %s %s", r.State, r.Error)
	}
	if len(seen) != 1 || seen[0] != 9 {
		t.Errorf("the snapshot step saw epochs %v, want [9]", seen)
	}
}
