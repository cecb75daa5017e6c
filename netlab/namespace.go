package netlab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// namespaceDir is where named network namespaces are bind-mounted; `ip netns`
// and github.com/vishvananda/netns both use it.
const namespaceDir = "/run/netns"

// Namespace is one named network namespace created by this package and owned
// by the caller, who must Close it.
type Namespace struct {
	// Name is the namespace's name as `ip netns list` shows it.
	Name string
}

// NewNamespace creates an empty named network namespace with its loopback
// up. A namespace of the same name left over by a crashed run is removed
// first, so name it after the test that owns it.
func NewNamespace(name string) (*Namespace, error) {
	if !validName(name, 64, true) {
		return nil, fmt.Errorf("creating namespace: name %q must be 1 to 64 lower-case letters, digits or dashes, starting with a letter or digit", name)
	}
	if err := deleteNamespace(name); err != nil {
		return nil, fmt.Errorf("removing stale namespace %q: %w", name, err)
	}
	if err := createNamespace(name); err != nil {
		return nil, err
	}
	n := &Namespace{Name: name}
	if err := n.Do(setLoopbackUp); err != nil {
		return nil, errors.Join(err, n.Close())
	}
	return n, nil
}

// Do runs fn inside the namespace; see the package-level Do.
func (n *Namespace) Do(fn func() error) error { return Do(n.Name, fn) }

// Run executes argv inside the namespace; see the package-level Run.
func (n *Namespace) Run(ctx context.Context, argv ...string) ([]byte, error) {
	return Run(ctx, n.Name, argv...)
}

// Close deletes the namespace. Closing twice is not an error.
func (n *Namespace) Close() error {
	if err := deleteNamespace(n.Name); err != nil {
		return fmt.Errorf("deleting namespace %q: %w", n.Name, err)
	}
	return nil
}

// Do runs fn on the calling goroutine, locked to its OS thread, with that
// thread switched into the named network namespace; the thread is switched
// back (and unlocked) afterwards, even when fn panics or calls
// runtime.Goexit (t.Fatal). Sockets created inside fn belong to the
// namespace for their whole life, so they can be used after Do returns.
// Goroutines started inside fn run on other threads and therefore in the
// caller's original namespace: they must call Do themselves.
func Do(ns string, fn func() error) error {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("opening network namespace %q: %w", ns, err)
	}
	defer target.Close()
	return doIn(target, fn)
}

func doIn(target netns.NsHandle, fn func() error) (err error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("reading the thread's network namespace: %w", err)
	}
	if err := netns.Set(target); err != nil {
		_ = orig.Close()
		runtime.UnlockOSThread()
		return fmt.Errorf("entering network namespace: %w", err)
	}
	defer func() {
		if rerr := netns.Set(orig); rerr != nil {
			// The thread is stuck in the wrong namespace. Leaving it locked
			// makes the runtime discard it when this goroutine exits, so no
			// other goroutine ever runs there.
			err = errors.Join(err, fmt.Errorf("restoring the thread's network namespace: %w", rerr))
		} else {
			runtime.UnlockOSThread()
		}
		_ = orig.Close()
	}()
	return fn()
}

// Run executes argv (an argument array, never a shell string) inside the
// named namespace with `ip netns exec` and returns its combined output. The
// error, if any, includes the output.
func Run(ctx context.Context, ns string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("running in namespace: empty command")
	}
	args := append([]string{"netns", "exec", ns}, argv...)
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("running %q in namespace %q: %w: %s", argv, ns, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// createNamespace creates a named namespace on a dedicated goroutine: if the
// thread cannot be switched back, that goroutine exits still locked and the
// runtime throws the thread away instead of reusing it.
func createNamespace(name string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("reading the thread's network namespace: %w", err)
			return
		}
		h, nerr := netns.NewNamed(name)
		rerr := netns.Set(orig)
		_ = orig.Close()
		if rerr != nil {
			errc <- errors.Join(nerr, fmt.Errorf("restoring the thread's network namespace: %w", rerr))
			return // still locked: the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
		if nerr != nil {
			// NewNamed may leave the mount-point file behind.
			errc <- errors.Join(fmt.Errorf("creating namespace %q: %w", name, nerr), deleteNamespace(name))
			return
		}
		_ = h.Close()
		errc <- nil
	}()
	return <-errc
}

// deleteNamespace unmounts and removes a named namespace; a missing one is
// not an error. The kernel frees the namespace, and every link in it, once no
// process or socket holds it any more.
func deleteNamespace(name string) error {
	path := filepath.Join(namespaceDir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// namespacesWithPrefix lists named namespaces whose names start with prefix.
func namespacesWithPrefix(prefix string) ([]string, error) {
	entries, err := os.ReadDir(namespaceDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", namespaceDir, err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func setLoopbackUp() error {
	// Inside Do: a plain netlink call acts on the thread's namespace.
	return linkUpByName("lo")
}

// validName reports whether s is 1 to max characters of [a-z0-9], plus '-'
// after the first character when dash is true. Such names are safe as one
// path element, as an `ip` argument and inside interface names.
func validName(s string, max int, dash bool) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case r == '-' && dash && i > 0:
		default:
			return false
		}
	}
	return true
}
