package linux

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// boundNamespace is the network namespace a backend was constructed in. Every
// kernel call and every iptables process of the backend runs there, whichever
// goroutine (and so whichever OS thread) calls it.
type boundNamespace struct{ h netns.NsHandle }

func captureNamespace() (boundNamespace, error) {
	h, err := netns.Get()
	if err != nil {
		return boundNamespace{}, fmt.Errorf("reading the calling thread's network namespace: %w", err)
	}
	return boundNamespace{h: h}, nil
}

// do runs fn on the calling goroutine's OS thread, locked and switched into
// the bound namespace for the duration (a no-op switch when it is already
// there). Processes started inside fn are forked from that thread and so
// inherit the namespace.
func (b boundNamespace) do(fn func() error) (err error) {
	runtime.LockOSThread()
	cur, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("reading the thread's network namespace: %w", err)
	}
	defer cur.Close()
	if cur.Equal(b.h) {
		defer runtime.UnlockOSThread()
		return fn()
	}
	if err := netns.Set(b.h); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering the firewall's network namespace: %w", err)
	}
	defer func() {
		if rerr := netns.Set(cur); rerr != nil {
			// Leave the thread locked: the runtime discards it when the
			// goroutine exits rather than run other code in this namespace.
			err = errors.Join(err, fmt.Errorf("restoring the thread's network namespace: %w", rerr))
			return
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

func (b boundNamespace) close() error { return b.h.Close() }
