package netlab

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// This file holds what the WireGuard and strongSwan meshes share: tunnel
// daemons started inside a site's namespace, machine-wide unique interface
// names, and Flow, a continuous probe that measures the longest gap in
// traffic between two namespaces.

// daemon is a tunnel daemon (wireguard-go, charon) started by the lab inside
// a namespace. It is started from a locked OS thread that lives as long as
// the daemon does, so the daemon's parent-death signal (SIGKILL) fires when
// the test binary dies, and no daemon outlives a crashed run.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
	err  error         // from Wait, valid after done
}

// daemonSpec says how to start a daemon.
type daemonSpec struct {
	name string // for messages ("wireguard-go wgx1")
	ns   string // network namespace
	argv []string
	env  []string
	// privateRun gives the daemon its own mount namespace with a tmpfs on
	// /run, for daemons (charon) whose pid file path is fixed there.
	privateRun bool
	// prepare, when set, runs on the daemon's thread after the private
	// /run is mounted and before the daemon starts (mounts of its own).
	prepare func() error
	// output receives the daemon's stdout and stderr (nil: discarded).
	output io.Writer
}

// startDaemon starts spec inside its namespace and returns once the process
// exists (not once it is ready: the caller waits for its socket).
func startDaemon(spec daemonSpec) (*daemon, error) {
	target, err := netns.GetFromName(spec.ns)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %q: %w", spec.ns, err)
	}
	d := &daemon{name: spec.name, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		defer close(d.done)
		defer target.Close()
		// The thread is never unlocked: it has been moved into other
		// namespaces, so the runtime must discard it when this goroutine
		// returns. Holding it while the daemon runs is what keeps the
		// parent-death signal from firing early.
		runtime.LockOSThread()
		if spec.privateRun {
			if err := privateRunMount(); err != nil {
				started <- err
				return
			}
		}
		if spec.prepare != nil {
			if err := spec.prepare(); err != nil {
				started <- fmt.Errorf("preparing %s: %w", spec.name, err)
				return
			}
		}
		if err := netns.Set(target); err != nil {
			started <- fmt.Errorf("entering network namespace %q: %w", spec.ns, err)
			return
		}
		cmd := exec.Command(spec.argv[0], spec.argv[1:]...)
		cmd.Env = spec.env
		cmd.Stdout, cmd.Stderr = spec.output, spec.output
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("starting %s in %q: %w", spec.name, spec.ns, err)
			return
		}
		d.cmd = cmd
		started <- nil
		d.err = cmd.Wait()
	}()
	if err := <-started; err != nil {
		<-d.done
		return nil, err
	}
	return d, nil
}

// privateRunMount gives the calling (locked) thread a mount namespace of its
// own with an empty tmpfs on /run. Mounts are made private first so nothing
// propagates back to the host.
func privateRunMount() error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unsharing the mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if err := unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mounting a private /run: %w", err)
	}
	return nil
}

// running reports whether the daemon has not exited.
func (d *daemon) running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, waits up to grace, then sends SIGKILL, and waits for
// the process to be reaped. It is idempotent.
func (d *daemon) stop(grace time.Duration) error {
	if !d.running() {
		return nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-d.done:
		return nil
	case <-t.C:
	}
	_ = d.cmd.Process.Kill()
	select {
	case <-d.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("stopping %s (pid %d): still running after SIGKILL", d.name, d.cmd.Process.Pid)
	}
}

// waitForSocket polls until path is a unix socket that accepts connections,
// the daemon exits, or ctx ends.
func waitForSocket(ctx context.Context, d *daemon, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Type() == os.ModeSocket {
			var dl net.Dialer
			if c, err := dl.DialContext(ctx, "unix", path); err == nil {
				_ = c.Close()
				return nil
			}
		}
		select {
		case <-d.done:
			return fmt.Errorf("%s exited before creating %s: %v", d.name, path, d.err)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to create %s: %w", d.name, path, ctx.Err())
		case <-tick.C:
		}
	}
}

// tunnelIfName returns an interface name for site index i of a lab with
// this prefix: "<kind><prefix><i>" when that fits the kernel's 15
// characters, else "<kind><8 hex of the prefix's hash><i>". Names must be
// unique machine-wide for userspace WireGuard, whose UAPI socket directory
// is shared by every namespace; lab prefixes already are.
func tunnelIfName(kind, prefix string, i int) string {
	n := kind + prefix + strconv.Itoa(i)
	if len(n) <= 15 {
		return n
	}
	h := sha256.Sum256([]byte(prefix))
	return kind + hex.EncodeToString(h[:4]) + strconv.Itoa(i)
}

// sitePairs lists the unordered pairs of names, each as (lower, higher) in
// the order given, so the first name of a pair sorts first.
func sitePairs(names []string) [][2]string {
	s := append([]string(nil), names...)
	sort.Strings(s)
	var out [][2]string
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			out = append(out, [2]string{s[i], s[j]})
		}
	}
	return out
}

// Flow is a continuous UDP probe from one namespace to an echo server (see
// ServeEcho): it sends a numbered datagram every interval and records when
// each echo came back, so that the longest gap in traffic over any window
// can be read while it runs. It is how the tunnel tests measure what a
// rotation costs a healthy pair.
type Flow struct {
	conn     *net.UDPConn
	to       netip.AddrPort
	interval time.Duration
	started  time.Time

	mu      sync.Mutex
	sent    uint64
	replies []time.Time // arrival times of echoes, in order

	stop context.CancelFunc
	wg   sync.WaitGroup
}

// FlowStats summarises a Flow over a window.
type FlowStats struct {
	// Sent and Received count datagrams over the flow's whole life.
	Sent, Received uint64
	// LongestGap is the longest time without an echo inside the window,
	// including the stretch from the window's start to the first echo and
	// from the last echo to the window's end. With no loss it is about one
	// interval.
	LongestGap time.Duration
}

// StartFlow starts a Flow from namespace ns to the echo server at to,
// sending every interval (20 to 50 ms gives 50 to 20 Hz). Stop it with
// Stop; it is also stopped when the lab is closed.
func (l *Lab) StartFlow(ns string, to netip.AddrPort, interval time.Duration) (*Flow, error) {
	f, err := StartFlow(ns, to, interval)
	if err != nil {
		return nil, err
	}
	l.onClose(func() error { f.Stop(); return nil })
	return f, nil
}

// StartFlow starts a Flow from namespace ns; see Lab.StartFlow.
func StartFlow(ns string, to netip.AddrPort, interval time.Duration) (*Flow, error) {
	if interval <= 0 {
		return nil, errors.New("starting flow: interval must be positive")
	}
	conn, err := listenUDP(ns)
	if err != nil {
		return nil, fmt.Errorf("opening flow socket in %q: %w", ns, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Flow{conn: conn, to: to, interval: interval, started: time.Now(), stop: cancel}
	f.wg.Add(2)
	go f.send(ctx)
	go f.receive()
	return f, nil
}

func (f *Flow) send(ctx context.Context) {
	defer f.wg.Done()
	t := time.NewTicker(f.interval)
	defer t.Stop()
	buf := make([]byte, 16)
	copy(buf[8:], "wardenfl")
	for seq := uint64(1); ; seq++ {
		binary.BigEndian.PutUint64(buf, seq)
		if _, err := f.conn.WriteToUDPAddrPort(buf, f.to); err == nil {
			f.mu.Lock()
			f.sent++
			f.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (f *Flow) receive() {
	defer f.wg.Done()
	buf := make([]byte, 64)
	for {
		n, _, err := f.conn.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil || n != 16 || string(buf[8:16]) != "wardenfl" {
			continue // ICMP errors while the tunnel is down, stray packets
		}
		now := time.Now()
		f.mu.Lock()
		f.replies = append(f.replies, now)
		f.mu.Unlock()
	}
}

// Stats summarises the flow between from and to (zero to: now).
func (f *Flow) Stats(from, to time.Time) FlowStats {
	if to.IsZero() {
		to = time.Now()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st := FlowStats{Sent: f.sent, Received: uint64(len(f.replies))}
	prev := from
	i := sort.Search(len(f.replies), func(i int) bool { return !f.replies[i].Before(from) })
	for ; i < len(f.replies) && !f.replies[i].After(to); i++ {
		st.LongestGap = max(st.LongestGap, f.replies[i].Sub(prev))
		prev = f.replies[i]
	}
	st.LongestGap = max(st.LongestGap, to.Sub(prev))
	return st
}

// LastReply returns when the latest echo arrived (zero: none yet).
func (f *Flow) LastReply() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.replies) == 0 {
		return time.Time{}
	}
	return f.replies[len(f.replies)-1]
}

// Stop stops the flow. It is idempotent.
func (f *Flow) Stop() {
	f.stop()
	_ = f.conn.Close()
	f.wg.Wait()
}
