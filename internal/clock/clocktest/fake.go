// Package clocktest holds the manual clock tests drive time with instead
// of sleeping. It owns fakes only: nothing built into a binary may import
// it. It imports no `testing`, so a test helper package of any kind can
// use it; for a clock that moves by itself on every reading, see
// internal/testsupport.StepClock.
package clocktest

import (
	"sync"
	"time"

	"github.com/warden-ir/warden/internal/clock"
)

// Fake is a manual clock: it stands still until Advance moves it, and its
// timers (After and AfterFunc) fire from Advance, in the order of their
// deadlines, each seeing the clock at its own deadline. Safe for
// concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	pending []*fakeTimer // in the order they were armed
}

var _ clock.Clock = (*Fake)(nil)

type fakeTimer struct {
	c  *Fake
	at time.Time
	// Exactly one of ch (After) and f (AfterFunc) is set.
	ch   chan time.Time
	f    func()
	done bool // fired or stopped
}

// NewFake returns a clock that reads start until it is advanced.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// Now implements clock.Clock.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After implements clock.Clock: the channel receives the deadline when an
// Advance reaches it, or at once when d <= 0.
func (c *Fake) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.pending = append(c.pending, &fakeTimer{c: c, at: c.now.Add(d), ch: ch})
	return ch
}

// AfterFunc implements clock.Clock: f runs in the goroutine of the Advance
// that reaches its deadline (Advance(0) runs those already due), never
// inside AfterFunc itself, so the caller may hold locks f takes.
func (c *Fake) AfterFunc(d time.Duration, f func()) clock.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(max(d, 0)), f: f}
	c.pending = append(c.pending, t)
	return t
}

// Stop implements clock.Timer.
func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

// Advance moves the clock forward by d, firing every timer that falls due
// on the way, in deadline order (in the order they were armed when
// deadlines are equal), including timers armed by the callbacks it runs.
// A fake clock never goes back: a negative d panics.
func (c *Fake) Advance(d time.Duration) {
	if d < 0 {
		panic("clocktest: Advance with a negative duration")
	}
	c.mu.Lock()
	target := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *fakeTimer
		live := c.pending[:0]
		for _, t := range c.pending {
			if t.done {
				continue
			}
			live = append(live, t)
			if !t.at.After(target) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		clear(c.pending[len(live):]) // let fired timers go
		c.pending = live
		if next == nil {
			c.now = target
			c.mu.Unlock()
			return
		}
		next.done = true
		if next.at.After(c.now) {
			c.now = next.at
		}
		at := c.now
		c.mu.Unlock()
		if next.ch != nil {
			next.ch <- at // buffered, and sent once
		} else {
			next.f()
		}
	}
}
