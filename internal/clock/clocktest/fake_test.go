package clocktest

import (
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func TestFakeStandsStillUntilAdvanced(t *testing.T) {
	c := NewFake(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("Now() = %v, want %v", got, t0)
	}
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("second Now() = %v, want %v: reading must not move the clock", got, t0)
	}
	c.Advance(90 * time.Second)
	if got, want := c.Now(), t0.Add(90*time.Second); !got.Equal(want) {
		t.Fatalf("after Advance(90s) Now() = %v, want %v", got, want)
	}
}

// TestFakeTimers arms timers, advances, and checks which fired, in what
// order and at what time of the clock.
func TestFakeTimers(t *testing.T) {
	tests := map[string]struct {
		arm     func(t *testing.T, c *Fake, fire func(name string))
		advance []time.Duration
		want    []string // "name@offset from t0"
	}{
		"in deadline order, not arming order": {
			arm: func(t *testing.T, c *Fake, fire func(string)) {
				c.AfterFunc(3*time.Second, func() { fire("c") })
				c.AfterFunc(time.Second, func() { fire("a") })
				c.AfterFunc(2*time.Second, func() { fire("b") })
			},
			advance: []time.Duration{5 * time.Second},
			want:    []string{"a@1s", "b@2s", "c@3s"},
		},
		"equal deadlines in arming order": {
			arm: func(t *testing.T, c *Fake, fire func(string)) {
				c.AfterFunc(time.Second, func() { fire("first") })
				c.AfterFunc(time.Second, func() { fire("second") })
			},
			advance: []time.Duration{time.Second},
			want:    []string{"first@1s", "second@1s"},
		},
		"only what falls due": {
			arm: func(t *testing.T, c *Fake, fire func(string)) {
				c.AfterFunc(time.Second, func() { fire("due") })
				c.AfterFunc(time.Minute, func() { fire("later") })
			},
			advance: []time.Duration{30 * time.Second},
			want:    []string{"due@1s"},
		},
		"a callback arms a timer that falls due in the same Advance": {
			arm: func(t *testing.T, c *Fake, fire func(string)) {
				c.AfterFunc(time.Second, func() {
					fire("tick")
					c.AfterFunc(time.Second, func() { fire("tock") })
				})
			},
			advance: []time.Duration{5 * time.Second},
			want:    []string{"tick@1s", "tock@2s"},
		},
		"a zero delay waits for the next Advance": {
			arm: func(t *testing.T, c *Fake, fire func(string)) {
				c.AfterFunc(0, func() { fire("now") })
			},
			advance: []time.Duration{0},
			want:    []string{"now@0s"},
		},
		"a stopped timer never fires": {
			arm: func(t *testing.T, c *Fake, fire func(string)) {
				tm := c.AfterFunc(time.Second, func() { fire("stopped") })
				if !tm.Stop() {
					t.Error("Stop of a pending timer = false, want true")
				}
				if tm.Stop() {
					t.Error("second Stop = true, want false")
				}
			},
			advance: []time.Duration{time.Hour},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := NewFake(t0)
			var got []string
			tc.arm(t, c, func(name string) { got = append(got, name+"@"+c.Now().Sub(t0).String()) })
			if len(got) != 0 {
				t.Fatalf("fired before any Advance: %v", got)
			}
			for _, d := range tc.advance {
				c.Advance(d)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("fired %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFakeAfter(t *testing.T) {
	c := NewFake(t0)
	ch := c.After(time.Minute)
	c.Advance(59 * time.Second)
	select {
	case at := <-ch:
		t.Fatalf("After(1m) fired at %v, 59s in", at)
	default:
	}
	c.Advance(time.Hour)
	select {
	case at := <-ch:
		if want := t0.Add(time.Minute); !at.Equal(want) {
			t.Errorf("After(1m) delivered %v, want its deadline %v", at, want)
		}
	default:
		t.Fatal("After(1m) did not fire an hour later")
	}

	select {
	case at := <-c.After(0):
		if !at.Equal(c.Now()) {
			t.Errorf("After(0) delivered %v, want now (%v)", at, c.Now())
		}
	default:
		t.Fatal("After(0) is not ready at once")
	}
}

// TestFakeTimerStoppedAfterFiring: Stop reports false once the call has
// happened, as time.Timer's does.
func TestFakeTimerStoppedAfterFiring(t *testing.T) {
	c := NewFake(t0)
	tm := c.AfterFunc(time.Second, func() {})
	c.Advance(time.Second)
	if tm.Stop() {
		t.Error("Stop after the timer fired = true, want false")
	}
}

func TestFakeNeverGoesBack(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Advance(-1s) did not panic")
		}
	}()
	NewFake(t0).Advance(-time.Second)
}
