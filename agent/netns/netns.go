// Package netns binds gateway-side kernel work to one network namespace:
// the namespace of the thread that called Current, whatever goroutine (and
// so whatever OS thread) later runs the work. The netfilter backends, flow
// killing and evidence capture all act through it, so a stray goroutine can
// never change or read the wrong namespace.
//
// It owns only that binding. It must not create, delete or configure
// namespaces (netlab does, for tests and labs) and must not leave a thread
// in a foreign namespace that the runtime could reuse.
package netns

import (
	"errors"
	"fmt"
	"runtime"

	vnetns "github.com/vishvananda/netns"
)

// Namespace is the network namespace of the thread that called Current.
// Every kernel call and every process started inside Do runs there.
type Namespace struct{ h vnetns.NsHandle }

// Current binds the calling thread's network namespace. Close it when done.
func Current() (Namespace, error) {
	h, err := vnetns.Get()
	if err != nil {
		return Namespace{}, fmt.Errorf("reading the calling thread's network namespace: %w", err)
	}
	return Namespace{h: h}, nil
}

// Do runs fn on the calling goroutine's OS thread, locked and switched into
// the bound namespace for the duration (a no-op switch when it is already
// there). Processes started inside fn are forked from that thread and so
// inherit the namespace.
func (n Namespace) Do(fn func() error) (err error) {
	runtime.LockOSThread()
	cur, err := vnetns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("reading the thread's network namespace: %w", err)
	}
	defer cur.Close()
	if cur.Equal(n.h) {
		defer runtime.UnlockOSThread()
		return fn()
	}
	if err := vnetns.Set(n.h); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering the firewall's network namespace: %w", err)
	}
	defer func() {
		if rerr := vnetns.Set(cur); rerr != nil {
			// Leave the thread locked: the runtime discards it when the
			// goroutine exits rather than run other code in this namespace.
			err = errors.Join(err, fmt.Errorf("restoring the thread's network namespace: %w", rerr))
			return
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// FD is the namespace's file descriptor, for kernel interfaces that take a
// namespace by descriptor instead of the calling thread's (nftables'
// WithNetNSFd). It stays valid until Close.
func (n Namespace) FD() int { return int(n.h) }

// Close releases the namespace handle.
func (n Namespace) Close() error { return n.h.Close() }
