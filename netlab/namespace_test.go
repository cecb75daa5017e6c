package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

const (
	// freshRunEnv marks a child started by inFreshRun.
	freshRunEnv = "WARDEN_NETLAB_FRESH_RUN"
	// labBuilderEnv tells TestLabBuilderHelper which prefix to build.
	labBuilderEnv = "WARDEN_NETLAB_BUILD_LAB"
)

// runPropagations are the two shapes /run has on real hosts: part of a
// private root file system (this project's CI machines, containers) or a
// shared tmpfs (systemd).
var runPropagations = map[string]uintptr{
	"run private": unix.MS_PRIVATE,
	"run shared":  unix.MS_SHARED,
}

// inFreshRun runs body in a child of this test binary that has its own
// mount namespace with an empty tmpfs on /run, with the given propagation:
// the state of a freshly booted host, where /run/netns is not a mount point,
// which cannot be recreated on the real /run while other tests use it.
// Nothing the child mounts reaches the host, and when the child exits, pass
// or fail, the kernel drops its mounts and with them every namespace it
// created.
func inFreshRun(t *testing.T, propagation uintptr, body func(t *testing.T)) {
	t.Helper()
	if os.Getenv(freshRunEnv) != "" {
		if err := unix.Mount("zzwarden-run", "/run", "tmpfs", 0, "mode=0755"); err != nil {
			t.Fatalf("mounting a fresh /run: %v", err)
		}
		if err := unix.Mount("", "/run", "none", propagation, ""); err != nil {
			t.Fatalf("setting the propagation of /run: %v", err)
		}
		body(t)
		return
	}
	skip(t)
	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run="+strings.Join(parts, "/"), "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), freshRunEnv+"=1")
	// Go makes / recursively private in the child after unsharing, so no
	// mount propagates back to the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("%s in a fresh /run: %v\n%s", t.Name(), err, out)
	}
	t.Logf("child in a fresh /run:\n%s", out)
}

// TestLabBuilderHelper is not a test on its own:
// TestParallelLabsFromUnmountedDir runs it in separate processes so that
// their preparations of /run/netns race across processes, as parallel test
// binaries do, and not only across goroutines.
func TestLabBuilderHelper(t *testing.T) {
	prefix := os.Getenv(labBuilderEnv)
	if prefix == "" {
		t.Skip("helper process of TestParallelLabsFromUnmountedDir")
	}
	if err := labRoundTrip(t.Context(), prefix); err != nil {
		t.Fatal(err)
	}
}

// labRoundTrip builds a one-site lab, proves it carries a TCP connection
// across the internet, and closes it; the lab is closed whatever fails.
func labRoundTrip(ctx context.Context, prefix string) error {
	lab, err := New(ctx, Options{Prefix: prefix, Sites: []string{"hq"}})
	if err != nil {
		return err
	}
	err = func() error {
		hq, _ := lab.Site("hq")
		if _, err := lab.ServeEcho(lab.C2().NS, netip.AddrPortFrom(netip.IPv6Unspecified(), echoPort)); err != nil {
			return err
		}
		return lab.TCPConnect(ctx, hq.LAN.NS, netip.AddrPortFrom(lab.C2().V6, echoPort), okWait)
	}()
	if err != nil {
		err = fmt.Errorf("using lab %q: %w", prefix, err)
	}
	if cerr := lab.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("closing lab %q: %w", prefix, cerr))
	}
	return err
}

// TestParallelLabsFromUnmountedDir builds three labs at once, two in other
// processes and one in this one, starting from a /run/netns that does not
// exist yet, and checks that the preparation of /run/netns happened exactly
// once (no stacked binds, whose lower layer would shadow namespaces), that
// every lab worked, and that closing them left no file and no namespace
// mount behind.
func TestParallelLabsFromUnmountedDir(t *testing.T) {
	for name, propagation := range runPropagations {
		t.Run(name, func(t *testing.T) {
			inFreshRun(t, propagation, func(t *testing.T) {
				if _, err := os.Stat(namespaceDir); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("precondition: %s exists in a fresh /run (%v)", namespaceDir, err)
				}
				ctx := t.Context()
				var g errgroup.Group
				for _, prefix := range []string{"nlpara", "nlparb"} {
					g.Go(func() error {
						cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLabBuilderHelper$", "-test.v", "-test.count=1")
						cmd.Env = append(os.Environ(), labBuilderEnv+"="+prefix)
						out, err := cmd.CombinedOutput()
						if err != nil || !bytes.Contains(out, []byte("--- PASS: TestLabBuilderHelper")) {
							return fmt.Errorf("lab %q in its own process: %v\n%s", prefix, err, out)
						}
						return nil
					})
				}
				g.Go(func() error { return labRoundTrip(ctx, "nlparc") })
				if err := g.Wait(); err != nil {
					t.Fatal(err)
				}

				entries, err := os.ReadDir(namespaceDir)
				if err != nil {
					t.Fatal(err)
				}
				if len(entries) != 0 {
					t.Errorf("%s after every lab closed: %v, want it empty", namespaceDir, entries)
				}
				// Only the fresh /run's subtree: the child also holds
				// private copies of the host's mounts, hidden under it.
				mounts := mountsBelow(t, "/run")
				dirMounts := slices.DeleteFunc(slices.Clone(mounts), func(m mountEntry) bool { return m.MountPoint != namespaceDir })
				if len(dirMounts) != 1 || !slices.ContainsFunc(dirMounts[0].Optional, func(o string) bool { return strings.HasPrefix(o, "shared:") }) {
					t.Errorf("mounts on %s: %+v, want exactly one, shared", namespaceDir, dirMounts)
				}
				for _, m := range mounts {
					if m.FSType == "nsfs" && strings.HasPrefix(m.MountPoint, "/run/") {
						t.Errorf("namespace mount left behind: %+v", m)
					}
				}
			})
		})
	}
}

// TestNamespaceDirBindIsSerialised holds the lock file while
// makeNamespaceDir runs, binds the directory itself as a competing process
// would, and releases the lock: makeNamespaceDir must have waited for the
// lock, then found the mount point and left it alone, so that there is one
// bind, not two stacked.
func TestNamespaceDirBindIsSerialised(t *testing.T) {
	inFreshRun(t, unix.MS_PRIVATE, func(t *testing.T) {
		dir, lockPath := "/run/zzwarden-netns", "/run/zzwarden-netns.lock"
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Close()
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(lock.Fd()), &st); err != nil {
			t.Fatal(err)
		}

		done := make(chan error, 1)
		go func() { done <- makeNamespaceDir(dir, lockPath) }()
		// A blocked flock shows in /proc/locks as "-> FLOCK ... dev:ino".
		waiter := fmt.Sprintf(":%d ", st.Ino)
		for {
			select {
			case err := <-done:
				t.Fatalf("makeNamespaceDir returned (%v) while another holder had the lock", err)
			default:
			}
			b, err := os.ReadFile("/proc/locks")
			if err != nil {
				t.Fatal(err)
			}
			if slices.ContainsFunc(strings.Split(string(b), "\n"), func(l string) bool {
				return strings.Contains(l, "-> FLOCK") && strings.Contains(l, waiter)
			}) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			t.Fatal(err)
		}
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_UN); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("makeNamespaceDir: %v", err)
		}
		var on []mountEntry
		for _, m := range mountsBelow(t, "/run") {
			if m.MountPoint == dir {
				on = append(on, m)
			}
		}
		if len(on) != 1 {
			t.Errorf("mounts on %s: %+v, want exactly the competitor's one", dir, on)
		}
	})
}

// TestDeletionReachesIPNetnsExec: a command started with `ip netns exec`
// (Run, daemons in tests) runs in a mount namespace of its own, holding a
// copy of every namespace mount that existed when it started. Deleting a
// namespace must remove that copy too, or the command would keep the
// namespace, and its links, alive for as long as it runs.
func TestDeletionReachesIPNetnsExec(t *testing.T) {
	inFreshRun(t, unix.MS_PRIVATE, func(t *testing.T) {
		var nss []*Namespace
		for _, name := range []string{"nlprop-gone", "nlprop-exec"} {
			n, err := NewNamespace(name)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = n.Close() })
			nss = append(nss, n)
		}
		gone, host := nss[0], nss[1]
		cmd := exec.Command("ip", "netns", "exec", host.Name, "sleep", "3600")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		pid := strconv.Itoa(cmd.Process.Pid)
		// ip replaces itself with sleep once its mount namespace is set up.
		for {
			if exe, _ := os.Readlink("/proc/" + pid + "/exe"); filepath.Base(exe) == "sleep" {
				break
			}
			if processState(cmd.Process.Pid) == "Z" {
				t.Fatal("ip netns exec exited early")
			}
			time.Sleep(time.Millisecond)
		}
		path := filepath.Join(namespaceDir, gone.Name)
		holds := func() bool {
			return slices.ContainsFunc(mountTableOf(t, pid), func(m mountEntry) bool {
				return m.FSType == "nsfs" && m.MountPoint == path
			})
		}
		if !holds() {
			t.Fatalf("precondition: the command's mount namespace has no copy of %s", path)
		}
		if err := gone.Close(); err != nil {
			t.Fatal(err)
		}
		if holds() {
			t.Errorf("deleting %s left its mount in the mount namespace of `ip netns exec`", gone.Name)
		}
	})
}

// TestDeleteShadowedNamespace reproduces issue #10: a namespace mounted
// before /run/netns was a mount point gets copied by the recursive bind of
// the directory onto itself, and removing its file after unmounting the
// copy fails with EBUSY where /run is private. Deleting must succeed
// anyway, and the name must be usable again at once.
func TestDeleteShadowedNamespace(t *testing.T) {
	for name, propagation := range runPropagations {
		t.Run(name, func(t *testing.T) {
			inFreshRun(t, propagation, func(t *testing.T) {
				const oldName, newName = "nlshd-old", "nlshd-new"
				oldPath := filepath.Join(namespaceDir, oldName)
				if err := os.MkdirAll(namespaceDir, 0o755); err != nil {
					t.Fatal(err)
				}
				// What `unshare --net=/run/netns/x` or netlab before the
				// fix leaves: a namespace on a directory that is not a
				// mount point.
				if err := mountNewNamespace(oldPath); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _, _ = deleteNamespace(oldName) })
				origID, _, err := namespaceAt(oldPath)
				if err != nil {
					t.Fatal(err)
				}
				n, err := NewNamespace(newName) // binds the directory onto itself
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = n.Close() })
				if got := nsfsMountsAt(t, oldPath); got != 2 {
					t.Fatalf("precondition: %d mounts on %s, want 2 (the original, and its copy in the bind)", got, oldPath)
				}

				shadowed, err := deleteNamespace(oldName)
				if err != nil {
					t.Fatalf("deleting a namespace with a shadowed mount: %v", err)
				}
				// A shared /run propagates the copy's unmount to the
				// original; a private one cannot.
				wantShadowed := propagation == unix.MS_PRIVATE
				if shadowed != wantShadowed {
					t.Errorf("shadowed = %v, want %v", shadowed, wantShadowed)
				}
				if _, mounted, _ := namespaceAt(oldPath); mounted {
					t.Errorf("%s still shows a namespace after deletion", oldPath)
				}
				_, statErr := os.Stat(oldPath)
				if wantShadowed && (statErr != nil || nsfsMountsAt(t, oldPath) != 1) {
					t.Errorf("want the plain file left over (stat: %v) and the hidden original (mounts: %d)", statErr, nsfsMountsAt(t, oldPath))
				}
				if !wantShadowed && (!errors.Is(statErr, fs.ErrNotExist) || nsfsMountsAt(t, oldPath) != 0) {
					t.Errorf("want %s gone (stat: %v) with no mount (mounts: %d)", oldPath, statErr, nsfsMountsAt(t, oldPath))
				}

				// The same name again: its stale removal meets the
				// leftover, and the new namespace is mounted over it.
				again, err := NewNamespace(oldName)
				if err != nil {
					t.Fatalf("re-creating %s: %v", oldName, err)
				}
				t.Cleanup(func() { _ = again.Close() })
				newID, mounted, err := namespaceAt(oldPath)
				if err != nil || !mounted || newID == origID {
					t.Fatalf("re-created %s: mounted %v, id %v (original %v), err %v", oldName, mounted, newID, origID, err)
				}
				if err := again.Do(func() error {
					var st unix.Stat_t
					if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
						return err
					}
					if (namespaceID{st.Dev, st.Ino}) != newID {
						return errors.New("Do ran in another namespace")
					}
					return nil
				}); err != nil {
					t.Errorf("using the re-created namespace: %v", err)
				}

				for _, c := range []*Namespace{again, n} {
					if err := c.Close(); err != nil {
						t.Errorf("closing %s: %v", c.Name, err)
					}
				}
				if err := removeStaleNamespaces("nlshd-"); err != nil {
					t.Errorf("stale cleanup over the leftover: %v", err)
				}
				left, err := namespacesWithPrefix("nlshd-")
				if err != nil {
					t.Fatal(err)
				}
				want := []string(nil)
				if wantShadowed {
					want = []string{oldName} // the plain file over the hidden original
				}
				if !slices.Equal(left, want) {
					t.Errorf("left in %s: %v, want %v", namespaceDir, left, want)
				}
				if got, want := nsfsMountsAt(t, oldPath), len(want); got != want {
					t.Errorf("%d mounts on %s, want %d", got, oldPath, want)
				}
			})
		})
	}
}

// TestStaleCleanupTouchesOnlyItsPrefix plants namespaces, each with a
// process inside, under the lab's prefix and under names that merely look
// alike, then builds the lab: only "<prefix>-..." namespaces and their
// processes may go.
func TestStaleCleanupTouchesOnlyItsPrefix(t *testing.T) {
	skip(t, "sleep")
	const prefix = "nlstk"
	tests := map[string]struct {
		ns          string
		wantRemoved bool
	}{
		"lab node":                {ns: "nlstk-wan", wantRemoved: true},
		"node of an older layout": {ns: "nlstk-gw-old", wantRemoved: true},
		"prefix without dash":     {ns: "nlstk", wantRemoved: false},
		"longer prefix":           {ns: "nlstkx-wan", wantRemoved: false},
		"shorter prefix":          {ns: "nlst-wan", wantRemoved: false},
	}
	type planted struct {
		id  namespaceID
		cmd *exec.Cmd
	}
	plants := map[string]planted{}
	for name, tc := range tests {
		n, err := NewNamespace(tc.ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close() })
		id, _, err := namespaceAt(filepath.Join(namespaceDir, tc.ns))
		if err != nil {
			t.Fatal(err)
		}
		plants[name] = planted{id: id, cmd: startSleeper(t, n)}
	}

	newLab(t, prefix, "hq")

	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := plants[name]
			path := filepath.Join(namespaceDir, tc.ns)
			id, mounted, err := namespaceAt(path)
			if err != nil {
				t.Fatal(err)
			}
			state := processState(p.cmd.Process.Pid)
			if tc.wantRemoved {
				if mounted && id == p.id {
					t.Errorf("stale namespace %s survived New", tc.ns)
				}
				if state != "Z" {
					t.Errorf("process %d in stale namespace %s: state %q, want killed (Z until reaped)", p.cmd.Process.Pid, tc.ns, state)
				} else if err := p.cmd.Wait(); !killedBySIGKILL(err) {
					t.Errorf("process in stale namespace %s ended with %v, want SIGKILL", tc.ns, err)
				}
				return
			}
			if !mounted || id != p.id {
				t.Errorf("namespace %s outside the prefix was replaced or removed (mounted %v)", tc.ns, mounted)
			}
			if got, ok := processNamespace(p.cmd.Process.Pid); !ok || got != p.id || state == "Z" {
				t.Errorf("process in %s outside the prefix was disturbed: state %q, in namespace %v", tc.ns, state, ok && got == p.id)
			}
		})
	}
}

// TestDeleteNamespace checks each shape a namespace file can be in when it
// is deleted or created.
func TestDeleteNamespace(t *testing.T) {
	skip(t, "sleep")
	tests := map[string]struct {
		// arrange prepares name; act is what is under test.
		arrange func(t *testing.T, name string)
		act     func(t *testing.T, name string) error
		// wantMounted: a namespace is expected on the path afterwards.
		wantMounted bool
	}{
		"missing namespace": {
			arrange: func(*testing.T, string) {},
			act:     deleteOnce,
		},
		"deleted twice": {
			arrange: mustCreate,
			act: func(t *testing.T, name string) error {
				return errors.Join(deleteOnce(t, name), deleteOnce(t, name))
			},
		},
		"stacked mounts": {
			arrange: func(t *testing.T, name string) {
				mustCreate(t, name)
				other := name + "-under"
				mustCreate(t, other)
				t.Cleanup(func() { _, _ = deleteNamespace(other) })
				// Stack a second namespace on the path, as a mount over
				// a mount (a second recursive bind of the directory
				// leaves such stacks, of the same namespace).
				path := filepath.Join(namespaceDir, name)
				if err := unix.Mount(filepath.Join(namespaceDir, other), path, "none", unix.MS_BIND, ""); err != nil {
					t.Fatal(err)
				}
				if got := nsfsMountsAt(t, path); got != 2 {
					t.Fatalf("precondition: %d mounts on %s, want 2", got, path)
				}
			},
			act: deleteOnce,
		},
		"process inside is ended": {
			arrange: mustCreate,
			act: func(t *testing.T, name string) error {
				cmd := startSleeper(t, &Namespace{Name: name})
				if err := (&Namespace{Name: name}).Close(); err != nil {
					return err
				}
				if state := processState(cmd.Process.Pid); state != "Z" {
					return fmt.Errorf("process %d: state %q after Close, want killed", cmd.Process.Pid, state)
				}
				if err := cmd.Wait(); !killedBySIGKILL(err) {
					return fmt.Errorf("process ended with %v, want SIGKILL", err)
				}
				return nil
			},
		},
		"create over a leftover plain file": {
			arrange: func(t *testing.T, name string) {
				path := filepath.Join(namespaceDir, name)
				if err := prepareNamespaceDir(); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, nil, 0o444); err != nil {
					t.Fatal(err)
				}
			},
			act:         func(_ *testing.T, name string) error { return createNamespace(name) },
			wantMounted: true,
		},
		"create refuses a live namespace": {
			arrange: mustCreate,
			act: func(t *testing.T, name string) error {
				before, _, _ := namespaceAt(filepath.Join(namespaceDir, name))
				if err := createNamespace(name); !errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("second create = %v, want fs.ErrExist", err)
				}
				if after, _, _ := namespaceAt(filepath.Join(namespaceDir, name)); after != before {
					return errors.New("the refused create replaced the live namespace")
				}
				return nil
			},
			wantMounted: true,
		},
	}
	i := 0
	for name, tc := range tests {
		i++
		ns := "nldel-" + strconv.Itoa(i)
		t.Run(name, func(t *testing.T) {
			t.Cleanup(func() { _, _ = deleteNamespace(ns) })
			tc.arrange(t, ns)
			if err := tc.act(t, ns); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(namespaceDir, ns)
			_, mounted, err := namespaceAt(path)
			if err != nil {
				t.Fatal(err)
			}
			if mounted != tc.wantMounted {
				t.Errorf("namespace mounted on %s: %v, want %v", path, mounted, tc.wantMounted)
			}
			if !tc.wantMounted {
				if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s left behind (stat: %v)", path, err)
				}
				if got := nsfsMountsAt(t, path); got != 0 {
					t.Errorf("%d mounts left on %s", got, path)
				}
			}
		})
	}
}

func mustCreate(t *testing.T, name string) {
	t.Helper()
	if err := createNamespace(name); err != nil {
		t.Fatal(err)
	}
}

func deleteOnce(_ *testing.T, name string) error {
	_, err := deleteNamespace(name)
	return err
}

// startSleeper starts a long sleep inside n: fork inherits the network
// namespace of the forking thread, which Do has switched. The process is
// killed and reaped when the test ends.
func startSleeper(t *testing.T, n *Namespace) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "3600")
	if err := n.Do(cmd.Start); err != nil {
		t.Fatalf("starting a process in %s: %v", n.Name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	want, _, err := namespaceAt(filepath.Join(namespaceDir, n.Name))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := processNamespace(cmd.Process.Pid); !ok || got != want {
		t.Fatalf("precondition: process %d is not inside %s", cmd.Process.Pid, n.Name)
	}
	return cmd
}

// processState returns the state letter of /proc/<pid>/stat ("S", "Z", ...)
// or "" when the process is gone.
func processState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	_, after, ok := bytes.Cut(b[bytes.LastIndexByte(b, ')')+1:], []byte(" "))
	if !ok || len(after) == 0 {
		return ""
	}
	return string(after[:1])
}

func killedBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// mountEntry is one line of /proc/self/mountinfo (see
// proc_pid_mountinfo(5)). Paths are compared escaped: ours have no spaces.
type mountEntry struct {
	ID, Parent int
	MountPoint string
	// Optional holds the propagation fields: "shared:N", "master:N", ...
	Optional []string
	FSType   string
}

func mountTable(t *testing.T) []mountEntry { t.Helper(); return mountTableOf(t, "self") }

// mountTableOf reads the mount table of process pid ("self" for this one).
func mountTableOf(t *testing.T, pid string) []mountEntry {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []mountEntry
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if len(f) < 6 || sep < 6 || sep+1 >= len(f) {
			t.Fatalf("malformed mountinfo line %q", line)
		}
		id, err1 := strconv.Atoi(f[0])
		parent, err2 := strconv.Atoi(f[1])
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("mountinfo line %q: %v", line, err)
		}
		out = append(out, mountEntry{ID: id, Parent: parent, MountPoint: f[4], Optional: f[6:sep], FSType: f[sep+1]})
	}
	return out
}

// mountsBelow returns the mounts stacked inside the mount that path lookup
// finds at path, leaving out what lies hidden under it.
func mountsBelow(t *testing.T, path string) []mountEntry {
	t.Helper()
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_MNT_ID, &stx); err != nil {
		t.Fatal(err)
	}
	all := mountTable(t)
	in := map[int]bool{int(stx.Mnt_id): true}
	for grew := true; grew; {
		grew = false
		for _, m := range all {
			if !in[m.ID] && in[m.Parent] {
				in[m.ID], grew = true, true
			}
		}
	}
	return slices.DeleteFunc(all, func(m mountEntry) bool { return !in[m.ID] || m.ID == int(stx.Mnt_id) })
}

// nsfsMountsAt counts the namespace mounts on path in the mount table,
// visible or hidden under a later mount.
func nsfsMountsAt(t *testing.T, path string) int {
	t.Helper()
	n := 0
	for _, m := range mountTable(t) {
		if m.FSType == "nsfs" && m.MountPoint == path {
			n++
		}
	}
	return n
}
