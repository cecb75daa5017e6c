package capture

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strongswan/govici/vici"
	"github.com/warden-ir/warden/agent/wire"
	"golang.org/x/sys/unix"
)

const (
	charonPath      = "/usr/lib/ipsec/charon"
	charonHelperEnv = "WARDEN_CAPTURE_CHARON_CONF"
)

// TestCaptureCharonHelper is not a test: run by TestCaptureStrongSwanSAs as
// a child process inside the test's namespace, it gives itself a private
// /run (charon's pid file path is fixed, and another charon may be running)
// and replaces itself with charon.
func TestCaptureCharonHelper(t *testing.T) {
	conf := os.Getenv(charonHelperEnv)
	if conf == "" {
		t.Skip("helper process for TestCaptureStrongSwanSAs")
	}
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		t.Fatalf("unsharing the mount namespace: %v", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("making mounts private: %v", err)
	}
	if err := unix.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("mounting a private /run: %v", err)
	}
	env := []string{"STRONGSWAN_CONF=" + conf, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	t.Fatal(syscall.Exec(charonPath, []string{"charon"}, env))
}

// TestCaptureStrongSwanSAs runs a real charon in a namespace, loads a
// connection with a pre-shared key and starts it towards a silent peer,
// then checks the capture lists the half-open IKE SA from the real VICI
// socket and never the PSK.
func TestCaptureStrongSwanSAs(t *testing.T) {
	requireCaptureRoot(t)
	if _, err := os.Stat(charonPath); err != nil {
		t.Skip("needs strongSwan's charon (Debian packages strongswan-charon, strongswan-swanctl)")
	}
	ns := newCaptureNamespace(t)
	runCaptureCmd(t, nil, "ip", "-n", ns, "link", "add", "capv0", "type", "veth", "peer", "name", "capv1")
	runCaptureCmd(t, nil, "ip", "-n", ns, "addr", "add", "10.77.0.1/24", "dev", "capv0")
	runCaptureCmd(t, nil, "ip", "-n", ns, "link", "set", "capv0", "up")
	runCaptureCmd(t, nil, "ip", "-n", ns, "link", "set", "capv1", "up")

	dir := t.TempDir()
	sock := filepath.Join(dir, "charon.vici")
	conf := filepath.Join(dir, "strongswan.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`charon {
  load_modular = yes
  install_routes = no
  plugins {
    include /etc/strongswan.d/charon/*.conf
    vici {
      socket = unix://%s
    }
    stroke {
      load = no
    }
  }
  filelog {
    log {
      path = %s
      default = 1
    }
  }
}
`, sock, filepath.Join(dir, "charon.log"))), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestCaptureCharonHelper$")
	cmd.Env = append(os.Environ(), charonHelperEnv+"="+conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "charon.log")); err == nil {
				t.Logf("charon log:\n%s", b)
			}
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	waitForSocket(t, sock, deadline, "charon made no VICI socket")

	psk := "capture-psk-" + rand.Text()
	loadHalfOpenSA(t, sock, psk)

	leave := enterCaptureNamespace(t, ns)
	defer leave()
	var rep strongSwanReport
	var arts []wire.Artefact
	for {
		var err error
		arts, _, err = Collect(t.Context(), Options{VICISocket: sock})
		if err != nil {
			t.Fatalf("Collect: %v", err)
		}
		decodeArtefact(t, arts, "strongswan-sas.json", &rep)
		if len(rep.SAs) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	leave()

	if len(rep.SAs) != 1 {
		t.Fatalf("got %d SAs, want 1: %+v", len(rep.SAs), rep)
	}
	ike, _ := rep.SAs[0]["capture-peer"].(map[string]any)
	if ike == nil || ike["remote-host"] != "10.77.0.2" || ike["local-host"] != "10.77.0.1" || ike["version"] != "2" {
		t.Errorf("SA = %+v", rep.SAs[0])
	}
	if rep.IKESAsTotal != "1" || len(rep.Incomplete) != 0 {
		t.Errorf("stats total %q, incomplete %q", rep.IKESAsTotal, rep.Incomplete)
	}
	for _, a := range arts {
		if strings.Contains(string(a.Content), psk) {
			t.Errorf("%s contains the PSK", a.Name)
		}
	}
}

// loadHalfOpenSA loads a PSK connection to 10.77.0.2, which never answers,
// and initiates it without waiting: charon keeps a CONNECTING IKE SA.
func loadHalfOpenSA(t *testing.T, sock, psk string) {
	t.Helper()
	s, err := vici.NewSession(vici.WithSocketPath(sock))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msg := func(kv ...any) *vici.Message {
		m := vici.NewMessage()
		for i := 0; i < len(kv); i += 2 {
			if err := m.Set(kv[i].(string), kv[i+1]); err != nil {
				t.Fatal(err)
			}
		}
		return m
	}
	child := msg("local_ts", []string{"10.1.0.0/16"}, "remote_ts", []string{"10.2.0.0/16"}, "start_action", "none")
	conn := msg(
		"version", "2",
		"local_addrs", []string{"10.77.0.1"},
		"remote_addrs", []string{"10.77.0.2"},
		"proposals", []string{"aes128-sha256-modp2048"},
		"local", msg("auth", "psk", "id", "site-a.example.net"),
		"remote", msg("auth", "psk", "id", "site-b.example.net"),
		"children", msg("net", child),
	)
	for _, c := range []struct {
		cmd string
		in  *vici.Message
	}{
		{"load-conn", msg("capture-peer", conn)},
		{"load-shared", msg("type", "IKE", "data", psk, "owners", []string{"site-a.example.net", "site-b.example.net"})},
		{"initiate", msg("child", "net", "ike", "capture-peer", "timeout", "-1")},
	} {
		if _, err := s.Call(t.Context(), c.cmd, c.in); err != nil {
			t.Fatalf("%s: %v", c.cmd, err)
		}
	}
}
