package daemon_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/sensors"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/internal/mtls"
	"github.com/warden-ir/warden/inventory"
)

// agentDaemon builds a controller with one gateway, gw-hq, and a lab PKI
// in which gw-hq has its own certificate.
func agentDaemon(t *testing.T) (*daemon.Daemon, string) {
	t.Helper()
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	if _, err := agent.Init(pki, []string{"gw-hq.example", "203.0.113.10"}, agent.InitOptions{Gateway: "gw-hq"}); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Server.APIToken = "agent-listener-test-token-0123456789"
	cfg.Store.Path = filepath.Join(dir, "warden.db")
	cfg.Evidence.Dir = filepath.Join(dir, "evidence")
	cfg.Inventory = inventory.Inventory{
		Sites: []inventory.Site{{Name: "hq", TimeZone: "Asia/Tokyo"}},
		Gateways: []inventory.Gateway{{ID: "gw-hq", Site: "hq", VM: "gw-hq", Addresses: []string{"203.0.113.10"},
			ManagementNetworks: []string{"192.0.2.0/28"}}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Build(t.Context(), cfg, daemon.Options{})
	if err != nil {
		t.Fatalf("building the controller: %v", err)
	}
	t.Cleanup(func() { d.Close(context.WithoutCancel(t.Context())) })
	return d, pki
}

func agentListenerOf(pki string) daemon.AgentListener {
	return daemon.AgentListener{Addr: "127.0.0.1:0", CertFile: filepath.Join(pki, agent.ControllerCertFile),
		KeyFile: filepath.Join(pki, agent.ControllerKeyFile), CAFile: filepath.Join(pki, agent.CAFile)}
}

// TestAgentListenerDelivers wires both ends as they run: the gateway's
// queue and sender with its per-gateway certificate, and the controller's
// agent listener; the finding becomes an indicator about gw-hq, the
// public API does not serve the route, and the listener stops with ctx.
func TestAgentListenerDelivers(t *testing.T) {
	d, pki := agentDaemon(t)
	ai, err := d.ListenAgents(agentListenerOf(pki))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- ai.Serve(ctx) }()

	m, err := mtls.Load(mtls.Files{CertFile: filepath.Join(pki, agent.GatewayCertFile("gw-hq")), KeyFile: filepath.Join(pki, agent.GatewayKeyFile("gw-hq")),
		CAFile: filepath.Join(pki, agent.CAFile), CertName: "agent certificate", CAName: "controller CA"})
	if err != nil {
		t.Fatal(err)
	}
	q, err := sensors.OpenQueue(filepath.Join(t.TempDir(), "queue"), sensors.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	q.Emit(wire.Finding{Kind: "config_change", Severity: "medium", Confidence: 0.8, Summary: "/etc/swanctl/swanctl.conf changed",
		Evidence: []string{"-  secret = <redacted>", "+  proposals = aes128-sha256-modp2048"}, ObservedAt: time.Now().Add(-time.Minute),
		Key: "config_change/etc/swanctl/swanctl.conf", Sensor: "config"})
	sender, err := sensors.NewSender(q, sensors.SenderOptions{URL: "https://" + ai.Addr(), TLS: sensors.ControllerTLS(m, wire.DefaultControllerIdentity)})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	if dl := sender.DeliverBatch(t.Context()); !dl.Delivered || dl.Findings != 1 {
		t.Fatalf("delivery %+v (err %v)", dl, dl.Err)
	}
	incs, err := d.Store.Incidents(t.Context(), 10)
	if err != nil || len(incs) != 1 {
		t.Fatalf("incidents %+v (%v), want one", incs, err)
	}
	inds, err := d.Store.IndicatorsOfIncident(t.Context(), incs[0].ID)
	if err != nil || len(inds) != 1 {
		t.Fatalf("indicators %+v (%v)", inds, err)
	}
	if in := inds[0].Indicator; in.Gateway != "gw-hq" || in.Source != "warden-agent" || in.Kind != "config_change" || in.Labels["sensor"] != "config" {
		t.Fatalf("indicator %+v", in)
	}

	// The public API knows nothing of the route.
	pub := httptest.NewServer(d.API)
	defer pub.Close()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, pub.URL+sensors.AgentFindingsPath, strings.NewReader(`{"findings":[]}`))
	req.Header.Set("Authorization", "Bearer "+d.Config.Server.APIToken)
	resp, err := pub.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the public API answered %d to %s, want 404", resp.StatusCode, sensors.AgentFindingsPath)
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	q.Emit(wire.Finding{Kind: "crash", Severity: "high", Summary: "charon restarted", Key: "crash/charon", Sensor: "health"})
	if dl := sender.DeliverBatch(t.Context()); dl.Delivered || !dl.Retry {
		t.Fatalf("after the listener stopped: %+v", dl)
	}
}

// TestAgentListenerRefuses: missing settings and bad material are errors
// naming the setting, before anything is bound.
func TestAgentListenerRefuses(t *testing.T) {
	d, pki := agentDaemon(t)
	notPEM := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(notPEM, []byte("junk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		edit func(l *daemon.AgentListener)
		want string
	}{
		"no address":       {func(l *daemon.AgentListener) { l.Addr = "" }, "server.agent_listen"},
		"no certificate":   {func(l *daemon.AgentListener) { l.CertFile = "" }, "agents.server_cert_file"},
		"missing key":      {func(l *daemon.AgentListener) { l.KeyFile = filepath.Join(pki, "nope.pem") }, "agents.server_cert_file"},
		"a CA without PEM": {func(l *daemon.AgentListener) { l.CAFile = notPEM }, "agents.ca_file"},
		"a bad address":    {func(l *daemon.AgentListener) { l.Addr = "127.0.0.1:99999" }, "listening for agents on 127.0.0.1:99999"},
	} {
		t.Run(name, func(t *testing.T) {
			l := agentListenerOf(pki)
			tc.edit(&l)
			ai, err := d.ListenAgents(l)
			if err == nil {
				_ = ai.Close()
				t.Fatalf("ListenAgents succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ListenAgents = %v, want it to name %q", err, tc.want)
			}
		})
	}
	var none *daemon.AgentIntake // no server.agent_listen
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := none.Serve(ctx); err != nil || none.Addr() != "" || none.Close() != nil {
		t.Fatalf("a nil intake: Serve %v, Addr %q", err, none.Addr())
	}
}
