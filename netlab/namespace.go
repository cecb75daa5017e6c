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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// namespaceDir is where named network namespaces are bind-mounted; `ip netns`
// and github.com/vishvananda/netns both use it.
const namespaceDir = "/run/netns"

// namespaceDirLock serialises, across processes, the check-and-bind that
// makes namespaceDir a mount point: test binaries run in parallel, and two
// binds stacked on each other would hide the namespaces mounted on the lower
// one. It lies outside namespaceDir so that `ip netns list` does not show it.
const namespaceDirLock = "/run/warden-netns.lock"

// processExitWait bounds how long deleting a namespace waits for the
// processes it killed to exit. A process that outlives it (stuck in an
// uninterruptible sleep) only delays the kernel's freeing of the namespace,
// not the deletion of its name.
const processExitWait = 5 * time.Second

// maxStackedMounts bounds the unmount loop of deleteNamespaceAt; real stacks
// are one or two deep.
const maxStackedMounts = 64

// Namespace is one named network namespace created by this package and owned
// by the caller, who must Close it.
type Namespace struct {
	// Name is the namespace's name as `ip netns list` shows it.
	Name string
}

// NewNamespace creates an empty named network namespace with its loopback
// up. A namespace of the same name left over by a crashed run is removed
// first (with any process still inside it), so name it after the test that
// owns it, uniquely across test binaries. This, and New, are the only ways
// tests should create named namespaces: `ip netns add` run in parallel with
// a lab is what once hid a lab's namespaces under a bind mount.
func NewNamespace(name string) (*Namespace, error) {
	if !validName(name, 64, true) {
		return nil, fmt.Errorf("creating namespace: name %q must be 1 to 64 lower-case letters, digits or dashes, starting with a letter or digit", name)
	}
	if _, err := deleteNamespace(name); err != nil {
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

// Close deletes the namespace, ending every process still inside it.
// Closing twice is not an error.
func (n *Namespace) Close() error {
	if _, err := deleteNamespace(n.Name); err != nil {
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

// doValue is Do for fn that makes something inside the namespace (a socket,
// most often) and returns it.
func doValue[T any](ns string, fn func() (T, error)) (T, error) {
	var v T
	err := Do(ns, func() error {
		var err error
		v, err = fn()
		return err
	})
	return v, err
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

// createNamespace creates the named namespace, after making sure
// namespaceDir is a mount point (see prepareNamespaceDir).
func createNamespace(name string) error {
	if err := prepareNamespaceDir(); err != nil {
		return fmt.Errorf("creating namespace %q: %w", name, err)
	}
	if err := mountNewNamespace(filepath.Join(namespaceDir, name)); err != nil {
		return fmt.Errorf("creating namespace %q: %w", name, err)
	}
	return nil
}

// mountNewNamespace creates a network namespace and bind-mounts it on path.
//
// It does not create path with O_EXCL, as netns.NewNamed and `ip netns add`
// do: a deletion that found a shadowed mount (see deleteNamespaceAt) leaves
// an ordinary empty file that cannot be removed, and that file must not block
// the name for ever. What O_EXCL guarded against, a live namespace already
// mounted there, is checked explicitly instead.
//
// The namespace is made on a dedicated goroutine: if the thread cannot be
// switched back, that goroutine exits still locked and the runtime throws
// the thread away instead of reusing it.
func mountNewNamespace(path string) error {
	if _, mounted, err := namespaceAt(path); err != nil {
		return err
	} else if mounted {
		return fmt.Errorf("mounting a namespace on %s: %w", path, fs.ErrExist)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o444)
	if err != nil {
		return fmt.Errorf("creating mount point %s: %w", path, err)
	}
	_ = f.Close()

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("reading the thread's network namespace: %w", err)
			return
		}
		merr := unix.Unshare(unix.CLONE_NEWNET)
		if merr != nil {
			merr = fmt.Errorf("unsharing the network namespace: %w", merr)
		} else if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			merr = fmt.Errorf("bind-mounting the new namespace on %s: %w", path, err)
		}
		rerr := netns.Set(orig)
		_ = orig.Close()
		if rerr != nil {
			errc <- errors.Join(merr, fmt.Errorf("restoring the thread's network namespace: %w", rerr))
			return // still locked: the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- merr
	}()
	if err := <-errc; err != nil {
		_, derr := deleteNamespaceAt(path)
		return errors.Join(err, derr)
	}
	return nil
}

// deleteNamespace deletes a named namespace; see deleteNamespaceAt.
func deleteNamespace(name string) (shadowed bool, err error) {
	return deleteNamespaceAt(filepath.Join(namespaceDir, name))
}

// deleteNamespaceAt deletes the namespace mounted on path; a missing one is
// not an error. It is idempotent.
//
//  1. It kills every process (but this one) inside the namespace: a process
//     keeps a namespace, its links and its sockets alive after its name is
//     gone, so a daemon left by a crashed run would otherwise live on
//     unseen.
//  2. It unmounts path until nothing is mounted there: mounts can stack on
//     one path (a mount over a mount, binds of namespaceDir stacked by a
//     race with `ip netns add`), and each unmount uncovers the next.
//  3. It removes the file. EBUSY means a mount hidden under the bind mount
//     of namespaceDir still sits on the same file: the namespace was
//     mounted before `ip netns add` or prepareNamespaceDir bound the
//     directory onto itself, on a host whose /run is not shared (where it
//     is, unmounting the copy unmounted the original too). Nothing can
//     reach that mount by path, so the visible file stays as an ordinary
//     empty file, which mountNewNamespace can mount over later;
//     deleteNamespaceAt reports it as shadowed and returns nil. The hidden
//     mount keeps its namespace alive until reboot.
//
// The kernel frees the namespace, and every link in it, once no mount,
// process or socket holds it any more.
func deleteNamespaceAt(path string) (shadowed bool, err error) {
	for i := 0; ; i++ {
		if i == maxStackedMounts {
			return false, fmt.Errorf("unmounting %s: still mounted after %d unmounts", path, i)
		}
		id, mounted, err := namespaceAt(path)
		if err != nil {
			return false, err
		}
		if mounted {
			if err := endProcessesIn(id); err != nil {
				return false, fmt.Errorf("ending the processes in %s: %w", path, err)
			}
		}
		err = unix.Unmount(path, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break // not (or no longer) a mount point
		}
		if err != nil {
			return false, fmt.Errorf("unmounting %s: %w", path, err)
		}
	}
	switch err := os.Remove(path); {
	case err == nil, errors.Is(err, fs.ErrNotExist):
		return false, nil
	case errors.Is(err, unix.EBUSY):
		return true, nil
	default:
		return false, fmt.Errorf("removing %s: %w", path, err)
	}
}

// removeStaleNamespaces deletes every named namespace whose name starts with
// prefix, which must end in "-" so that, say, lab "a" never deletes the
// namespaces of lab "ab". It is what a run does first to clear what a
// crashed run of the same owner left behind.
func removeStaleNamespaces(prefix string) error {
	if !strings.HasSuffix(prefix, "-") {
		return fmt.Errorf("removing stale namespaces: prefix %q must end in a dash", prefix)
	}
	stale, err := namespacesWithPrefix(prefix)
	if err != nil {
		return fmt.Errorf("removing stale namespaces: %w", err)
	}
	for _, ns := range stale {
		if _, err := deleteNamespace(ns); err != nil {
			return fmt.Errorf("removing stale namespace %q: %w", ns, err)
		}
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

// namespaceDirReady records that this process has made namespaceDir a mount
// point. Unlike sync.Once, a failed attempt leaves it unset, so that the
// next caller retries.
var namespaceDirReady struct {
	sync.Mutex
	done bool
}

// prepareNamespaceDir makes namespaceDir a mount point, once per process,
// before any namespace is mounted in it; see makeNamespaceDir.
func prepareNamespaceDir() error {
	namespaceDirReady.Lock()
	defer namespaceDirReady.Unlock()
	if namespaceDirReady.done {
		return nil
	}
	if err := makeNamespaceDir(namespaceDir, namespaceDirLock); err != nil {
		return err
	}
	namespaceDirReady.done = true
	return nil
}

// makeNamespaceDir creates dir and, unless it already is one, makes it a
// mount point the way iproute2 does: a recursive bind mount of itself with
// shared propagation. Doing this before the first namespace exists is what
// keeps a later `ip netns add` (which binds the directory onto itself when
// it is not a mount point) from copying our namespace mounts and hiding the
// originals under the copy, so that their deletion fails with EBUSY.
//
// The bind is recursive so that namespaces mounted in dir by others before
// now stay reachable by name (as copies); a plain bind would hide them.
//
// Shared rather than private, for two reasons. First, `ip netns add` sets
// MS_SHARED|MS_REC on the directory every time it runs, so a private mount
// would not stay private, and every path here must work with shared
// propagation anyway; matching iproute2 makes the directory behave the same
// whoever prepared it. Second, where /run itself is shared (systemd hosts),
// the bind joins /run's peer group: unmounting the visible copy of a
// namespace then also unmounts an original shadowed under the bind (one
// mounted before it), so the deletion leaves nothing behind, whereas a
// private bind would leave that original hidden until reboot
// (TestDeleteShadowedNamespace shows both). The price, also iproute2's, is
// a hidden twin of every namespace mount on /run itself, which the same
// propagation removes on deletion. (The reason iproute2 gives, deletions
// reaching the mount namespaces of `ip netns exec`, holds anyway since
// Linux 3.18: removing the file detaches the mounts on it in every mount
// namespace.)
//
// The check and the bind happen under an exclusive flock on lockPath,
// because test binaries run in parallel and two binds would stack. A
// directory that is already a mount point is left as it is: whoever made it
// chose its propagation.
func makeNamespaceDir(dir, lockPath string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening lock file %s: %w", lockPath, err)
	}
	defer lock.Close() // releases the flock
	for {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("locking %s: %w", lockPath, err)
	}
	mounted, err := isMountPoint(dir)
	if err != nil {
		return err
	}
	if mounted {
		return nil
	}
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mounting %s onto itself: %w", dir, err)
	}
	// Should this fail, dir stays a mount point, with its parent's
	// propagation; the retry then finds it mounted and leaves it so.
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("making %s shared: %w", dir, err)
	}
	return nil
}

// isMountPoint reports whether dir, as path lookup sees it, is the root of
// a mount. It asks statx for STATX_ATTR_MOUNT_ROOT (Linux 5.8) because the
// alternatives fail here: comparing the device of dir with its parent's
// cannot see a bind mount of a directory onto itself (both sides are on the
// same file system), and /proc/self/mountinfo also lists mounts hidden under
// a later mount on a parent directory, with the same path.
func isMountPoint(dir string) (bool, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, 0, unix.STATX_BASIC_STATS, &stx); err != nil {
		return false, fmt.Errorf("inspecting %s: %w", dir, err)
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, fmt.Errorf("inspecting %s: the kernel does not tell mount roots (Linux 5.8 or later needed): %w", dir, errors.ErrUnsupported)
	}
	return stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}

// namespaceID identifies a network namespace as nsfs does: the device and
// inode that stat reports for /proc/<pid>/ns/net and for every bind mount
// of it.
type namespaceID struct{ dev, ino uint64 }

// namespaceAt reports whether a namespace is mounted (visibly) on path, and
// which. A missing path is not an error.
func namespaceAt(path string) (id namespaceID, mounted bool, err error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return namespaceID{}, false, nil
		}
		return namespaceID{}, false, fmt.Errorf("inspecting %s: %w", path, err)
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return namespaceID{}, false, nil
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return namespaceID{}, false, fmt.Errorf("inspecting %s: %w", path, err)
	}
	return namespaceID{dev: st.Dev, ino: st.Ino}, true, nil
}

// processNamespace returns the network namespace of pid's main thread;
// false when the process is gone or a zombie (which holds no namespace).
func processNamespace(pid int) (namespaceID, bool) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/ns/net", &st); err != nil {
		return namespaceID{}, false
	}
	return namespaceID{dev: st.Dev, ino: st.Ino}, true
}

// endProcessesIn kills every process, but this one, whose network namespace
// is ns, and waits (at most processExitWait per round) for them to exit.
// Rounds repeat while the scan finds processes, so that children forked
// before their parent died are caught too; the number of rounds is bounded.
func endProcessesIn(ns namespaceID) error {
	for range 8 {
		pidfds, err := killProcessesIn(ns)
		if len(pidfds) > 0 {
			waitForExit(pidfds, processExitWait)
			for _, fd := range pidfds {
				_ = unix.Close(fd)
			}
		}
		if err != nil || len(pidfds) == 0 {
			return err
		}
	}
	return nil
}

// killProcessesIn sends SIGKILL to every process, but this one, inside ns,
// and returns a pidfd for each. Signalling through a pidfd, after checking
// the namespace again with the pidfd held, guarantees that a recycled pid
// never gets the signal.
func killProcessesIn(ns namespaceID) (pidfds []int, err error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, perr := strconv.Atoi(e.Name())
		if perr != nil || pid == self {
			continue
		}
		if id, ok := processNamespace(pid); !ok || id != ns {
			continue
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if errors.Is(err, unix.ESRCH) {
			continue
		}
		if err != nil {
			return pidfds, fmt.Errorf("opening a pidfd for process %d: %w", pid, err)
		}
		if id, ok := processNamespace(pid); !ok || id != ns {
			_ = unix.Close(fd)
			continue
		}
		if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			_ = unix.Close(fd)
			return pidfds, fmt.Errorf("killing process %d: %w", pid, err)
		}
		pidfds = append(pidfds, fd)
	}
	return pidfds, nil
}

// waitForExit waits until every pidfd reports its process's exit, or until
// max has passed. A process has left its namespaces by the time its pidfd
// becomes readable.
func waitForExit(pidfds []int, max time.Duration) {
	deadline := time.Now().Add(max)
	pending := slices.Clone(pidfds)
	for len(pending) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		pfds := make([]unix.PollFd, len(pending))
		for i, fd := range pending {
			pfds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
		}
		if _, err := unix.Poll(pfds, int(left.Milliseconds())+1); err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		pending = pending[:0]
		for _, p := range pfds {
			if p.Revents == 0 {
				pending = append(pending, int(p.Fd))
			}
		}
	}
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
