package agentd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/agentd"
	"github.com/warden-ir/warden/agent/agenttest"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
)

// TestBuildServesOverMutualTLS wires the agent as `warden-agent` does, from
// its command line to a serving agent, with the real host seams inside a
// throw-away network namespace (so no rule ever lands on the test host),
// and asks it for its health and its state over mutual TLS as the
// controller.
func TestBuildServesOverMutualTLS(t *testing.T) {
	tests := map[string]struct {
		backend string
		tools   []string
	}{
		"iptables": {backend: "iptables", tools: []string{"iptables", "ip6tables"}},
		"nftables": {backend: "nftables"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			netlabtest.Skip(t, tc.tools...)
			pki := agenttest.PKI(t)
			root := t.TempDir()
			a, err := buildInNamespace(t, "agentd-wiring-"+name,
				"--cert", filepath.Join(pki, agent.AgentCertFile),
				"--key", filepath.Join(pki, agent.AgentKeyFile),
				"--client-ca", filepath.Join(pki, agent.CAFile),
				"--state-dir", filepath.Join(t.TempDir(), "state"),
				"--backend", tc.backend,
				"--management", "192.0.2.0/24, 2001:db8::/64",
				"--vici-socket=",
				"--baseline-root", root,
				"--patch-root", root,
			)
			if err != nil {
				t.Fatalf("building the agent: %v", err)
			}
			if got := len(a.Config().Management); got != 2 {
				t.Errorf("management networks parsed: %d, want 2", got)
			}

			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, stop := context.WithCancel(t.Context())
			served := make(chan error, 1)
			go func() { served <- a.Serve(ctx, ln) }()

			client := controllerClient(t, pki)
			url := "https://" + ln.Addr().String()

			resp, err := client.Get(url + wire.HealthPath)
			if err != nil {
				t.Fatalf("health: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("health: status %d: %s", resp.StatusCode, body)
			}

			cmd, err := wire.NewCommand(wire.KindObserve, nil, time.Now(), 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := json.Marshal(cmd)
			if err != nil {
				t.Fatal(err)
			}
			resp, err = client.Post(url+wire.CommandsPath, "application/json", bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("observe: %v", err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("observe: status %d: %s", resp.StatusCode, body)
			}
			var st wire.State
			if err := json.Unmarshal(body, &st); err != nil {
				t.Fatalf("decoding the state %s: %v", body, err)
			}
			if st.Quarantined || st.Firewall == nil || st.Firewall.Backend != tc.backend || st.Firewall.Quarantined {
				t.Errorf("state of a fresh agent = %s; want not quarantined, firewall read back from %s", body, tc.backend)
			}

			stop()
			if err := <-served; err != nil {
				t.Errorf("serving until cancelled: %v", err)
			}
		})
	}
}

// TestBuildRefusesBadOptions checks that Build fails with the operator's
// mistake named, also after it opened the host's seams (which it must
// release).
func TestBuildRefusesBadOptions(t *testing.T) {
	netlabtest.Skip(t, "iptables", "ip6tables")
	pki := agenttest.PKI(t)
	tests := map[string]struct {
		args []string
		want string
	}{
		"a malformed management network": {
			args: []string{"--management", "192.0.2.0/33"},
			want: `--management "192.0.2.0/33"`,
		},
		"a missing server certificate": {
			args: []string{"--cert", filepath.Join(t.TempDir(), "none.pem")},
			want: "loading agent certificate",
		},
		"an unknown firewall backend": {
			args: []string{"--backend", "pf"},
			want: `firewall backend "pf"`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			args := append([]string{
				"--cert", filepath.Join(pki, agent.AgentCertFile),
				"--key", filepath.Join(pki, agent.AgentKeyFile),
				"--client-ca", filepath.Join(pki, agent.CAFile),
				"--state-dir", filepath.Join(t.TempDir(), "state"),
				"--vici-socket=",
			}, tc.args...)
			a, err := buildInNamespace(t, "agentd-refuses", args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build = %v, %v; want an error mentioning %q", a, err, tc.want)
			}
		})
	}
}

// buildInNamespace parses args as warden-agent's command line and builds
// the agent inside a new network namespace called name.
func buildInNamespace(t *testing.T, name string, args ...string) (*agentd.Agent, error) {
	t.Helper()
	var opt agentd.Options
	flags := pflag.NewFlagSet("warden-agent", pflag.ContinueOnError)
	opt.BindFlags(flags)
	if err := flags.Parse(args); err != nil {
		t.Fatal(err)
	}
	ns, err := netlab.NewNamespace(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	var a *agentd.Agent
	derr := ns.Do(func() error {
		a, err = agentd.Build(opt, slog.New(slog.DiscardHandler))
		return nil
	})
	if derr != nil {
		t.Fatal(derr)
	}
	return a, err
}

// controllerClient speaks to the agent as the controller of the lab PKI in
// dir.
func controllerClient(t *testing.T, dir string) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: agenttest.ControllerTLS(t, dir)}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}
