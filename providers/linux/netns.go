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

// Namespace is the network namespace of the thread that called
// CurrentNamespace, for callers outside this package that must run kernel
// work there from any goroutine (the agent's flow killing and capture).
type Namespace struct{ b boundNamespace }

// CurrentNamespace binds the calling thread's network namespace. Close it
// when done.
func CurrentNamespace() (Namespace, error) {
	b, err := captureNamespace()
	return Namespace{b: b}, err
}

// Do runs fn on a locked OS thread inside the namespace.
func (n Namespace) Do(fn func() error) error { return n.b.do(fn) }

// Close releases the namespace handle.
func (n Namespace) Close() error { return n.b.h.Close() }
