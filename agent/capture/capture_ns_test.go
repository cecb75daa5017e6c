package capture

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/netlab"
)

// requireCaptureRoot skips unless the test runs as root with the tools it
// needs (each a Debian package: iproute2, iptables, wireguard-go).
func requireCaptureRoot(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace; run the tests as root")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := lookEvidenceTool(tool); err != nil {
			t.Skipf("needs %s installed", tool)
		}
	}
}

func runCaptureCmd(t testing.TB, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newCaptureNamespace creates a network namespace with loopback up and
// deletes it when the test ends. It goes through netlab, never `ip netns
// add`: run in parallel with a lab on a host where /run/netns is not yet a
// mount point, `ip netns add` hid the lab's namespaces under its bind mount
// and broke their deletion (issue #10).
func newCaptureNamespace(t testing.TB) string {
	t.Helper()
	ns, err := netlab.NewNamespace("wcap-" + strings.ToLower(rand.Text()[:10]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Errorf("deleting namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// enterCaptureNamespace locks the calling goroutine to its OS thread and
// moves that thread into the namespace; leave moves it back and may be
// called more than once. Sockets the goroutine opens, and Collect called
// from it, belong to the namespace.
func enterCaptureNamespace(t testing.TB, name string) (leave func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	var left bool
	return func() {
		if left {
			return
		}
		left = true
		defer orig.Close()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime discards it with the
			// goroutine instead of reusing it in the wrong namespace.
			t.Errorf("leaving namespace %s: %v", name, err)
			return
		}
		runtime.UnlockOSThread()
	}
}

// captureLoopbackPair opens a listener on 127.0.0.1 and one established
// connection to it, from the calling thread's namespace.
func captureLoopbackPair(t testing.TB) (ln net.Listener, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, ok := <-accepted
	if !ok {
		t.Fatal("accepting the loopback connection failed")
	}
	t.Cleanup(func() { server.Close() })
	return ln, client
}

// waitForSocket waits until a daemon started by the test has made its
// unix socket at path, failing the test with failure (and path) once the
// deadline has passed.
// waitForSocket waits until the unix socket at path accepts a connection:
// a daemon binds (the file appears) before it listens, and a client that
// connects in between is refused.
func waitForSocket(t testing.TB, path string, deadline time.Time, failure string) {
	t.Helper()
	for {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Type() == fs.ModeSocket {
			if c, err := net.Dial("unix", path); err == nil {
				c.Close()
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s", failure, path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func socketOwnedBy(s socketRecord, pid int) bool {
	return slices.ContainsFunc(s.Processes, func(o socketOwner) bool { return o.PID == pid })
}

// TestCaptureInNamespace captures a fresh namespace holding a known
// listener, connection and iptables rule, and checks each is in the
// evidence with this process as owner — and that the host's own sockets are
// not.
func TestCaptureInNamespace(t *testing.T) {
	requireCaptureRoot(t, "iptables", "iptables-save")
	ns := newCaptureNamespace(t)
	comment := "warden-capture-" + strings.ToLower(rand.Text()[:12])
	runCaptureCmd(t, nil, "ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-s", "192.0.2.0/24", "-m", "comment", "--comment", comment, "-j", "DROP")
	// A rule that uses connection tracking: without one the kernel tracks
	// nothing in a namespace.
	runCaptureCmd(t, nil, "ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT")

	leave := enterCaptureNamespace(t, ns)
	defer leave()
	ln, client := captureLoopbackPair(t)
	arts, m, err := Collect(t.Context(), Options{})
	// The /proc fallback, read from the same thread, must see the same
	// namespace's sockets.
	procSocks, procErr := socketsFromProcNet("/proc/thread-self/net")
	leave()
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	if err := m.Verify(arts); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	pid := os.Getpid()

	t.Run("connections", func(t *testing.T) {
		var rep connectionsReport
		decodeArtefact(t, arts, "connections.json", &rep)
		var listener, est bool
		for _, s := range rep.Sockets {
			if !strings.HasPrefix(s.Local, "127.0.0.1:") {
				t.Errorf("socket outside the namespace's loopback: %+v", s)
			}
			if s.Protocol == "tcp" && s.State == "LISTEN" && s.Local == ln.Addr().String() && socketOwnedBy(s, pid) {
				listener = true
			}
			if s.Protocol == "tcp" && s.State == "ESTABLISHED" && s.Local == client.LocalAddr().String() && s.Remote == ln.Addr().String() && socketOwnedBy(s, pid) {
				est = true
			}
		}
		if !listener || !est {
			t.Errorf("listener %s found: %v; connection %s found: %v; sockets: %+v", ln.Addr(), listener, client.LocalAddr(), est, rep.Sockets)
		}
	})
	t.Run("proc fallback agrees", func(t *testing.T) {
		if procErr != nil {
			t.Fatal(procErr)
		}
		if !slices.ContainsFunc(procSocks, func(s socketRecord) bool { return s.State == "LISTEN" && s.Local == ln.Addr().String() }) {
			t.Errorf("/proc/thread-self/net lacks the listener %s: %+v", ln.Addr(), procSocks)
		}
	})
	t.Run("conntrack", func(t *testing.T) {
		var rep conntrackReport
		decodeArtefact(t, arts, "conntrack.json", &rep)
		if !slices.ContainsFunc(rep.Flows, func(f flowRecord) bool {
			return f.Protocol == "tcp" && f.Family == "ipv4" && f.Original.Src == client.LocalAddr().String() && f.Original.Dst == ln.Addr().String() && f.State == "ESTABLISHED"
		}) {
			t.Errorf("conntrack.json lacks the flow %s -> %s: %+v", client.LocalAddr(), ln.Addr(), rep.Flows)
		}
	})
	t.Run("iptables rule", func(t *testing.T) {
		a := artefactNamed(t, arts, "iptables-save.txt")
		if a.Error != "" || !strings.Contains(string(a.Content), comment) {
			t.Errorf("iptables-save.txt (error %q) lacks comment %q:\n%s", a.Error, comment, a.Content)
		}
	})
	t.Run("loopback routes", func(t *testing.T) {
		var rep routesReport
		decodeArtefact(t, arts, "routes.json", &rep)
		if !slices.ContainsFunc(rep.Routes, func(r routeRecord) bool {
			return r.Device == "lo" && r.Dst == "127.0.0.0/8" && r.Table == 255 && r.Type == "local"
		}) {
			t.Errorf("no local route 127.0.0.0/8 dev lo: %+v", rep.Routes)
		}
		if len(rep.Rules) == 0 {
			t.Error("no policy rules; every namespace has the default ones")
		}
	})
	t.Run("addresses", func(t *testing.T) {
		var rep addressesReport
		decodeArtefact(t, arts, "addresses.json", &rep)
		if len(rep.Links) != 1 || rep.Links[0].Name != "lo" || !slices.Contains(rep.Links[0].Addresses, "127.0.0.1/8") {
			t.Errorf("links = %+v, want only lo with 127.0.0.1/8", rep.Links)
		}
	})
	t.Run("this process and its executable hash", func(t *testing.T) {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(exe)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		var rep processesReport
		decodeArtefact(t, arts, "processes.json", &rep)
		i := slices.IndexFunc(rep.Processes, func(p processRecord) bool { return p.PID == pid })
		if i < 0 {
			t.Fatalf("pid %d not in processes.json", pid)
		}
		if p := rep.Processes[i]; p.ExeSHA256 != hex.EncodeToString(sum[:]) || p.PPID != os.Getppid() {
			t.Errorf("process = %+v, want exe hash %x and ppid %d", p, sum, os.Getppid())
		}
	})
}

// TestCaptureWireGuardSecrets runs a real userspace WireGuard device in a
// namespace, gives it a private key and a peer with a preshared key, and
// checks the capture shows the public state and neither secret, in any
// spelling, in any artefact.
func TestCaptureWireGuardSecrets(t *testing.T) {
	requireCaptureRoot(t, "wireguard-go")
	ns := newCaptureNamespace(t)
	iface := "wgcap" + strconv.Itoa(os.Getpid()%100000)
	sock := filepath.Join(DefaultWireGuardSocketDir, iface+".sock")

	cmd := exec.Command("ip", "netns", "exec", ns, "wireguard-go", "-f", iface)
	cmd.Env = append(os.Environ(), "WG_PROCESS_FOREGROUND=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.Remove(sock)
	})
	waitForSocket(t, sock, time.Now().Add(10*time.Second), "wireguard-go made no socket")

	priv, psk, peerPriv := wgTestKeys(t)
	wg, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	defer wg.Close()
	port := 40000 + os.Getpid()%20000
	if err := wg.ConfigureDevice(iface, wgtypes.Config{
		PrivateKey: &priv,
		ListenPort: &port,
		Peers: []wgtypes.PeerConfig{{
			PublicKey:    peerPriv.PublicKey(),
			PresharedKey: &psk,
			Endpoint:     &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 51999},
			AllowedIPs:   []net.IPNet{{IP: net.IPv4(10, 99, 0, 2).To4(), Mask: net.CIDRMask(32, 32)}},
		}},
	}); err != nil {
		t.Fatalf("configuring %s: %v", iface, err)
	}

	leave := enterCaptureNamespace(t, ns)
	defer leave()
	arts, _, err := Collect(t.Context(), Options{})
	leave()
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}

	var rep wireGuardReport
	decodeArtefact(t, arts, "wireguard.json", &rep)
	i := slices.IndexFunc(rep.Devices, func(d wgDeviceRecord) bool { return d.Name == iface })
	if i < 0 {
		t.Fatalf("device %s not captured: %+v", iface, rep.Devices)
	}
	d := rep.Devices[i]
	if d.Error != "" || d.PublicKey != priv.PublicKey().String() || d.ListenPort != port || len(d.Peers) != 1 {
		t.Fatalf("device = %+v", d)
	}
	if p := d.Peers[0]; p.PublicKey != peerPriv.PublicKey().String() || !p.HasPresharedKey || p.Endpoint != "127.0.0.1:51999" || !slices.Equal(p.AllowedIPs, []string{"10.99.0.2/32"}) {
		t.Errorf("peer = %+v", p)
	}
	var links addressesReport
	decodeArtefact(t, arts, "addresses.json", &links)
	if !slices.ContainsFunc(links.Links, func(l linkRecord) bool { return l.Name == iface }) {
		t.Errorf("the namespace's links lack %s: %+v", iface, links.Links)
	}
	for _, a := range arts {
		assertNoSecret(t, a.Name, a.Content, priv, psk)
	}
}

// BenchmarkCapture measures one full capture: in a namespace with a
// listener and a connection when root, otherwise of the host.
func BenchmarkCapture(b *testing.B) {
	if os.Geteuid() == 0 {
		if _, err := lookEvidenceTool("ip"); err == nil {
			ns := newCaptureNamespace(b)
			leave := enterCaptureNamespace(b, ns)
			defer leave()
			captureLoopbackPair(b)
		}
	}
	var failed []string
	for b.Loop() {
		arts, _, err := Collect(context.Background(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		failed = failed[:0]
		for _, a := range arts {
			if a.Error != "" {
				failed = append(failed, a.Name)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
	b.Logf("artefacts with errors on this host (expected where a source is absent): %v", failed)
}
