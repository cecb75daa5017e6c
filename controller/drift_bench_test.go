package controller

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/warden-ir/warden/baseline"
	"github.com/warden-ir/warden/inventory"
)

// simulatedAgent evaluates the shipped gateway baseline in process against
// a gateway's file tree, as the agent on that gateway would (fleet-scale
// benchmark: agents simulated in-process).
type simulatedAgent struct {
	b   *baseline.Baseline
	env baseline.Env
}

func (s simulatedAgent) CheckBaseline(ctx context.Context, _ inventory.Gateway) (baseline.Report, error) {
	return s.b.Evaluate(ctx, s.env)
}

func writeTree(tb testing.TB, root string, files map[string]string) {
	tb.Helper()
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkDriftCheckFleet checks 1,000 and 10,000 gateways' baselines
// through the controller (evaluation, history, diff, audit) and reports the
// fleet time. The agents are simulated in process: each evaluates the
// shipped baseline against the same file tree, on this machine's cores
// rather than on its own gateway. Target: 10,000 gateways <= 60 s on 2
// cores.
func BenchmarkDriftCheckFleet(b *testing.B) {
	for _, fleet := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("gateways-%d", fleet), func(b *testing.B) { benchmarkDriftCheckFleet(b, fleet) })
	}
}

func benchmarkDriftCheckFleet(b *testing.B, fleet int) {
	root := b.TempDir()
	files := map[string]string{
		"etc/ssh/sshd_config":              "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitEmptyPasswords no\nMaxAuthTries 3\nCiphers aes256-gcm@openssh.com,chacha20-poly1305@openssh.com\nMACs hmac-sha2-512-etm@openssh.com\nKexAlgorithms curve25519-sha256\n",
		"etc/sysctl.d/90-gateway.conf":     "net.ipv4.ip_forward = 1\nnet.ipv4.conf.all.rp_filter = 2\nnet.ipv4.conf.all.accept_redirects = 0\nnet.ipv4.conf.all.send_redirects = 0\nnet.ipv4.conf.all.accept_source_route = 0\nnet.ipv4.tcp_syncookies = 1\nnet.ipv4.conf.all.log_martians = 1\nnet.ipv6.conf.all.accept_redirects = 0\n",
		"etc/swanctl/swanctl.conf":         "connections {\n  hq {\n    proposals = aes256gcm16-prfsha384-ecp384\n    children {\n      net {\n        esp_proposals = aes256gcm16-ecp384\n      }\n    }\n  }\n}\n",
		"etc/passwd":                       "root:x:0:0:root:/root:/bin/bash\nwarden:x:1000:1000::/home/warden:/bin/sh\n",
		"var/lib/dpkg/status":              "Package: openssh-server\nStatus: install ok installed\nVersion: 1:9.2p1-2+deb12u5\n\n",
		"proc/sys/net/ipv4/ip_forward":     "1\n",
		"proc/sys/net/ipv4/tcp_syncookies": "1\n",
	}
	writeTree(b, root, files)
	bl, err := baseline.Default()
	if err != nil {
		b.Fatal(err)
	}
	agent := simulatedAgent{b: bl, env: baseline.Env{Root: root, Runtime: baseline.ProcRuntime{Root: root},
		Firewall: baseline.StaticRulesets{}, Tunnels: baseline.StaticWireGuard{}}}
	h := newHarness(b, func(o *Options) {
		inv := &inventory.Inventory{Sites: []inventory.Site{{Name: "s", TimeZone: "UTC"}}}
		for i := range fleet {
			inv.Gateways = append(inv.Gateways, inventory.Gateway{ID: fmt.Sprintf("gw-%05d", i), Site: "s",
				Addresses: []string{fmt.Sprintf("10.%d.%d.1", i/250%250, i%250)}, ManagementNetworks: []string{"192.0.2.0/28"}})
		}
		if err := inv.Validate(); err != nil {
			b.Fatal(err)
		}
		o.Inventory = inv
		o.Baseline = agent
	})
	b.ResetTimer()
	for range b.N {
		res, err := h.c.DriftCheck(b.Context(), "all", "bench")
		if err != nil || len(res) != fleet {
			b.Fatalf("%d results, %v", len(res), err)
		}
		for _, r := range res {
			if r.Error != "" {
				b.Fatal(r.Error)
			}
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/fleet-check")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*fleet)/1000, "ms/gateway")
}
