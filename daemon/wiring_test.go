package daemon_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/daemon"
)

// TestBuildServesFromConfigFile wires the controller as `warden serve`
// does: a configuration file read by config.Load, daemon.Build, Listen and
// Serve; then one authenticated API call must reach the controller and
// its inventory.
func TestBuildServesFromConfigFile(t *testing.T) {
	dir := t.TempDir()
	const token = "wiring-test-token-0123456789abcdef"
	path := filepath.Join(dir, "warden.yaml")
	if err := os.WriteFile(path, []byte(`server:
  listen: 127.0.0.1:0
  api_token: `+token+`
store:
  path: `+filepath.Join(dir, "warden.db")+`
evidence:
  dir: `+filepath.Join(dir, "evidence")+`
inventory:
  sites:
    - {name: hq, time_zone: Asia/Tokyo}
  gateways:
    - {id: gw-hq, site: hq, vm: gw-hq, addresses: [203.0.113.10], management_networks: [192.0.2.0/28]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("loading the configuration: %v", err)
	}
	d, err := daemon.Build(t.Context(), cfg, daemon.Options{})
	if err != nil {
		t.Fatalf("building the controller: %v", err)
	}
	addr, err := d.Listen(cfg.Server.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serving until cancelled: %v", err)
		}
		d.Close(context.WithoutCancel(t.Context()))
	}()

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/v1/gateways", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET /v1/gateways: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"gw-hq"`) {
		t.Errorf("GET /v1/gateways = %d %s; want 200 listing gw-hq", resp.StatusCode, body)
	}
}
