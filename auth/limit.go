package auth

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter bounds failed authentications per source address with a token
// bucket each (golang.org/x/time/rate): Burst failures at once, then one
// per Every. An address with an empty bucket is refused before its token
// is even looked at, so guessing costs the guesser time, not the store.
// Successes cost nothing.
type Limiter struct {
	every time.Duration
	burst int
	max   int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// NewLimiter allows burst failures per address, refilled one per every;
// at most max addresses are tracked (the fullest buckets, those that
// failed least, are forgotten first when it is reached).
func NewLimiter(burst int, every time.Duration, max int) *Limiter {
	return &Limiter{every: every, burst: burst, max: max, now: time.Now, buckets: map[string]*rate.Limiter{}}
}

// DefaultLimiter allows 10 failures per address, then one every 6 s.
func DefaultLimiter() *Limiter { return NewLimiter(10, 6*time.Second, 10000) }

// Blocked reports whether src has no failures left, and for how long.
func (l *Limiter) Blocked(src string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[src]
	if !ok {
		return 0, false
	}
	now := l.now()
	if b.TokensAt(now) >= 1 {
		return 0, false
	}
	r := b.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return max(wait, time.Second), true
}

// Fail records a failure from src.
func (l *Limiter) Fail(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[src]
	if !ok {
		if len(l.buckets) >= l.max {
			l.forget(now)
		}
		b = rate.NewLimiter(rate.Every(l.every), l.burst)
		l.buckets[src] = b
	}
	b.AllowN(now, 1)
}

// forget drops the buckets that are full again, or, if none is, the
// fullest one: an address that failed least, never one that is blocked
// while another is not (a guesser failing from many addresses must not
// push its own blocked one out).
func (l *Limiter) forget(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	for len(l.buckets) > 0 && len(l.buckets) >= l.max {
		fullest, most, first := "", 0.0, true
		for k, b := range l.buckets {
			if n := b.TokensAt(now); first || n > most {
				fullest, most, first = k, n, false
			}
		}
		delete(l.buckets, fullest)
	}
}

// SetClock replaces the limiter's clock (tests).
func (l *Limiter) SetClock(now func() time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.now = now
}

// Tracked is how many addresses the limiter remembers.
func (l *Limiter) Tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
