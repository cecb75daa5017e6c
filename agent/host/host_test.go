package host

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/agenttest"
	"github.com/warden-ir/warden/agent/netfilter"
	"github.com/warden-ir/warden/agent/wire"
)

// newNamespace creates an empty network namespace with loopback up. It
// needs root; without it the test is skipped.
func newNamespace(t *testing.T) netns.NsHandle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("creating network namespace: %v", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if serr := netns.Set(orig); serr != nil {
		t.Fatalf("leaving the test namespace: %v", serr) // the thread stays locked and dies
	}
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatalf("bringing loopback up: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// inNamespace runs fn on a thread inside ns.
func inNamespace(t *testing.T, ns netns.NsHandle, fn func()) {
	t.Helper()
	if err := inNamespaceErr(ns, fn); err != nil {
		t.Fatal(err)
	}
}

// inNamespaceErr is inNamespace for goroutines other than the test's.
func inNamespaceErr(ns netns.NsHandle, fn func()) error {
	runtime.LockOSThread()
	cur, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer cur.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	fn()
	if err := netns.Set(cur); err != nil {
		return fmt.Errorf("leaving the test namespace: %w", err) // the thread stays locked and dies
	}
	runtime.UnlockOSThread()
	return nil
}

func TestLinks(t *testing.T) {
	ns := newNamespace(t)
	var l *Links
	inNamespace(t, ns, func() {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wgtest0"}, PeerName: "peer0"}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Fatalf("adding veth: %v", err)
		}
		var err error
		if l, err = NewLinks(); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { l.Close() })
	ctx := t.Context()
	state := func() map[string]bool {
		links, err := l.Links(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, k := range links {
			m[k.Name] = k.Up
			if k.Name == "wgtest0" && k.Type != "veth" {
				t.Fatalf("wgtest0 has type %q", k.Type)
			}
		}
		return m
	}
	if st := state(); !st["lo"] || st["wgtest0"] {
		t.Fatalf("links seen from another goroutine: %v (want the namespace's)", st)
	}
	for _, step := range []struct {
		up bool
	}{{true}, {true}, {false}, {false}} {
		var err error
		if step.up {
			err = l.SetUp(ctx, "wgtest0")
		} else {
			err = l.SetDown(ctx, "wgtest0")
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := state()["wgtest0"]; got != step.up {
			t.Fatalf("wgtest0 up = %v, want %v", got, step.up)
		}
	}
	if err := l.SetUp(ctx, "absent0"); err == nil {
		t.Fatal("SetUp of a missing link succeeded")
	}
}

// TestAgentOnRealFirewall runs the agent with the real seams in a fresh
// namespace and drives it over mutual TLS from inside it: isolate, check
// that the rules read back enforced with no drift while the controller's
// connection survives, confirm, release, and read the rules back absent.
func TestAgentOnRealFirewall(t *testing.T) {
	for _, backend := range []string{BackendIPTables, BackendNFTables} {
		t.Run(backend, func(t *testing.T) {
			ns := newNamespace(t)
			pki := agenttest.PKI(t)
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			var (
				deps   agent.Deps
				closer io.Closer
				ln     net.Listener
			)
			inNamespace(t, ns, func() {
				var err error
				deps, closer, err = Deps(Options{Backend: backend, NoVICI: true, Log: log})
				if err != nil {
					t.Skipf("backend unavailable: %v", err)
				}
				veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wg0", Flags: net.FlagUp}, PeerName: "wg0peer"}
				if err := netlink.LinkAdd(veth); err != nil {
					t.Fatalf("adding tunnel stand-in: %v", err)
				}
				if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
					t.Fatal(err)
				}
			})
			t.Cleanup(func() { closer.Close() })
			srv, err := agent.New(agent.Config{
				CertFile:     filepath.Join(pki, agent.AgentCertFile),
				KeyFile:      filepath.Join(pki, agent.AgentKeyFile),
				ClientCAFile: filepath.Join(pki, agent.CAFile),
				StateDir:     t.TempDir(),
			}, deps, log)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, ln) }()
			t.Cleanup(func() {
				cancel()
				<-done
				srv.Close()
			})

			c := nsClient(t, ns, pki)
			url := "https://" + ln.Addr().String() + wire.CommandsPath
			var iso wire.IsolateResult
			nsDo(t, c, url, wire.KindIsolate, wire.IsolateParams{Management: []string{"192.0.2.0/24"}}, &iso)
			if !iso.Changed || !slices.Equal(iso.LinksDown, []string{"wg0"}) {
				t.Fatalf("isolate: %+v", iso)
			}
			// The same keep-alive connection and a new one both still work:
			// the caller's address is part of the quarantine.
			var st wire.State
			nsDo(t, c, url, wire.KindObserve, nil, &st)
			c.CloseIdleConnections()
			nsDo(t, c, url, wire.KindObserve, nil, &st)
			if !st.Firewall.Quarantined || len(st.Firewall.Drift) != 0 || st.Firewall.Backend != backend {
				t.Fatalf("firewall after isolate: %+v", st.Firewall)
			}
			var detail netfilter.State
			if err := json.Unmarshal(st.Firewall.Detail, &detail); err != nil || !detail.Quarantined() {
				t.Fatalf("firewall detail: %v %+v", err, detail)
			}
			nsDo(t, c, url, wire.KindConfirm, wire.ConfirmParams{Generation: iso.Generation}, &wire.ConfirmResult{})

			var rel wire.ReleaseResult
			nsDo(t, c, url, wire.KindRelease, nil, &rel)
			if !rel.Changed || !slices.Equal(rel.LinksUp, []string{"wg0"}) {
				t.Fatalf("release: %+v", rel)
			}
			nsDo(t, c, url, wire.KindObserve, nil, &st)
			if st.Quarantined || !st.Firewall.Absent {
				t.Fatalf("after release: %+v %+v", st, st.Firewall)
			}

			var capRes wire.CaptureResult
			nsDo(t, c, url, wire.KindCapture, wire.CaptureParams{}, &capRes)
			if len(capRes.Artefacts) == 0 || len(capRes.Manifest) == 0 {
				t.Fatalf("capture: %d artefacts, manifest %q", len(capRes.Artefacts), capRes.Manifest)
			}
		})
	}
}

// nsClient is the controller's HTTPS client, dialling from inside ns.
func nsClient(t *testing.T, ns netns.NsHandle, pki string) *http.Client {
	t.Helper()
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: agenttest.ControllerTLS(t, pki),
			DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
				if nerr := inNamespaceErr(ns, func() {
					var d net.Dialer
					conn, err = d.DialContext(ctx, network, addr)
				}); nerr != nil {
					return nil, nerr
				}
				return conn, err
			},
		},
	}
}

func nsDo(t *testing.T, c *http.Client, url, kind string, params, out any) {
	t.Helper()
	cmd, err := wire.NewCommand(kind, params, time.Now(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cmd)
	resp, err := c.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d: %s", kind, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
}
