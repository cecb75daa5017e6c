// Package clock owns Warden's one time source: the Clock interface that
// code reads the time and waits with, so that tests can drive time instead
// of sleeping, and Real, the wall clock every default falls back to.
// internal/clock/clocktest has the fake for tests.
//
// It must not import any other Warden package, so that any package can
// import it without a cycle, nor `testing`: the gateway agent links it.
package clock

import "time"

// Clock tells the time and waits. Real is the wall clock; a fake one
// (clocktest.Fake) moves only when a test says so.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives the time once d has passed.
	After(d time.Duration) <-chan time.Time
	// AfterFunc calls f once d has passed: for Real in its own goroutine
	// (time.AfterFunc), for a fake clock from whoever moves it.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc. It is an alias of an interface literal, not
// a defined type, so that a fake in a package that may not import this one
// (internal/testsupport) can still declare an AfterFunc that satisfies
// Clock.
type Timer = interface {
	// Stop prevents the call if it has not happened yet, and reports
	// whether it did.
	Stop() bool
}

// Real is the wall clock. Code takes a Clock and defaults a nil one to
// Real.
var Real Clock = Wall{}

// Wall is Real's type. Use Real; Wall is exported only so that names
// older callers still spell with a composite literal can alias it.
type Wall struct{}

// Now implements Clock with time.Now.
func (Wall) Now() time.Time { return time.Now() }

// After implements Clock with time.After.
func (Wall) After(d time.Duration) <-chan time.Time { return time.After(d) }

// AfterFunc implements Clock with time.AfterFunc.
func (Wall) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
