// Package fault is the one error class both sides of Warden share: an
// error that retrying will not fix (bad input, a missing object, a refusal)
// is marked terminal where it is made, and every retry layer stops on it.
// The agent marks its answers with it and the controller's catalogue reads
// it, without either importing the other.
package fault

import "errors"

type terminalError struct{ err error }

func (e *terminalError) Error() string { return e.err.Error() }
func (e *terminalError) Unwrap() error { return e.err }

// Terminal marks err as not worth retrying. Nil stays nil.
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return &terminalError{err}
}

// IsTerminal reports whether err, or anything it wraps, was marked
// terminal.
func IsTerminal(err error) bool {
	var t *terminalError
	return errors.As(err, &t)
}

// ErrNotVerified is wrapped when state read back does not match what a
// change promised (a step's Verify, a patch's verification on the agent).
var ErrNotVerified = errors.New("state not verified")
