package netns

import (
	"errors"
	"runtime"
	"testing"

	vnetns "github.com/vishvananda/netns"
)

// TestDoRunsInTheBoundNamespace binds the test's namespace, moves a locked
// thread into a fresh namespace, and checks that Do runs its function back
// in the bound one and returns the thread to where it was.
func TestDoRunsInTheBoundNamespace(t *testing.T) {
	bound, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	defer bound.Close()

	done := make(chan error, 1)
	go func() {
		// This thread ends in a namespace of its own: never unlock it, so
		// the runtime discards it instead of reusing it.
		runtime.LockOSThread()
		fresh, err := vnetns.New()
		if err != nil {
			done <- errSkip{err}
			return
		}
		defer fresh.Close()
		var inside vnetns.NsHandle
		err = bound.Do(func() error {
			var err error
			inside, err = vnetns.Get()
			return err
		})
		if err != nil {
			done <- err
			return
		}
		defer inside.Close()
		after, err := vnetns.Get()
		if err != nil {
			done <- err
			return
		}
		defer after.Close()
		switch {
		case !inside.Equal(bound.h):
			done <- errors.New("fn did not run in the bound namespace")
		case !after.Equal(fresh):
			done <- errors.New("the thread did not return to its own namespace")
		default:
			done <- nil
		}
	}()
	err = <-done
	var skip errSkip
	if errors.As(err, &skip) {
		t.Skipf("cannot create a network namespace here: %v", skip.err)
	}
	if err != nil {
		t.Fatal(err)
	}
}

type errSkip struct{ err error }

func (e errSkip) Error() string { return e.err.Error() }
