package clock_test

import (
	"testing"
	"time"

	"github.com/warden-ir/warden/internal/clock"
	"github.com/warden-ir/warden/internal/clock/clocktest"
	"github.com/warden-ir/warden/internal/testsupport"
)

// The fakes satisfy Clock; testsupport's does without importing this
// package, which is what Timer being an alias allows.
var (
	_ clock.Clock = (*clocktest.Fake)(nil)
	_ clock.Clock = (*testsupport.StepClock)(nil)
)

func TestRealIsTheWallClock(t *testing.T) {
	before := time.Now()
	got := clock.Real.Now()
	if got.Before(before) || got.After(time.Now()) {
		t.Fatalf("Real.Now() = %v, not between two readings of time.Now", got)
	}
	select {
	case at := <-clock.Real.After(time.Millisecond):
		if at.Before(before) {
			t.Errorf("After delivered %v, before it was armed (%v)", at, before)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Real.After(1ms) did not fire")
	}
}

func TestRealAfterFunc(t *testing.T) {
	fired := make(chan struct{})
	clock.Real.AfterFunc(time.Millisecond, func() { close(fired) })
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("Real.AfterFunc(1ms) did not call f")
	}

	stopped := clock.Real.AfterFunc(time.Hour, func() { t.Error("a stopped timer fired") })
	if !stopped.Stop() {
		t.Error("Stop of a pending timer = false, want true")
	}
	if stopped.Stop() {
		t.Error("second Stop = true, want false")
	}
}
