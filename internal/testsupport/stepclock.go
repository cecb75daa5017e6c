package testsupport

import (
	"sync"
	"time"
)

// StepClock is a clock that moves only when read: every Now advances it
// by its step, so durations are real and ordered without sleeping, and
// every After and AfterFunc has already fired, so a wait ends at once. It
// satisfies clock.Clock (internal/clock) without importing it.
type StepClock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

// NewStepClock returns a clock whose first reading is start+step.
func NewStepClock(start time.Time, step time.Duration) *StepClock {
	return &StepClock{now: start, step: step}
}

// Now advances the clock by its step and returns the new time.
func (c *StepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.step)
	return c.now
}

// After returns a channel that already holds the next reading of the clock,
// whatever the duration.
func (c *StepClock) After(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	ch <- c.Now()
	return ch
}

// AfterFunc calls f at once in its own goroutine, whatever the duration,
// the way every wait of the clock ends at once. Its Stop reports false:
// the call is already under way.
func (c *StepClock) AfterFunc(_ time.Duration, f func()) interface{ Stop() bool } {
	go f()
	return firedTimer{}
}

// firedTimer is a timer whose call has already been made.
type firedTimer struct{}

func (firedTimer) Stop() bool { return false }
