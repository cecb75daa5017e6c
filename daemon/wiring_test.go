package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/intake"
	"github.com/warden-ir/warden/inventory"
)

// serve builds the daemon from cfg, as `warden serve` does, listens on
// cfg.Server.Listen and serves until stop, which fails the test unless
// Serve then returns cleanly, and closes the daemon.
func serve(t *testing.T, cfg config.Config) (d *daemon.Daemon, addr string, stop func()) {
	t.Helper()
	d, err := daemon.Build(t.Context(), cfg, daemon.Options{})
	if err != nil {
		t.Fatalf("building the controller: %v", err)
	}
	addr, err = d.Listen(cfg.Server.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx) }()
	return d, addr, func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serving until cancelled: %v", err)
		}
		d.Close(context.WithoutCancel(t.Context()))
	}
}

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
	_, addr, stop := serve(t, cfg)
	defer stop()

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

// TestTAXIIFeedBecomesBlocks: a TAXII 2.1 collection configured under
// intake.taxii is polled once Serve starts, and its C2 indicator becomes
// a block in force, asked for by the feed.
func TestTAXIIFeedBecomesBlocks(t *testing.T) {
	polled := make(chan string, 4)
	feed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api1/collections/c2-feed/objects/" {
			http.NotFound(w, r)
			return
		}
		polled <- r.URL.Query().Get("added_after")
		w.Header().Set("Content-Type", "application/taxii+json;version=2.1")
		w.Header().Set("X-TAXII-Date-Added-Last", "2026-12-01T00:00:00.000Z")
		fmt.Fprint(w, `{"more": false, "objects": [{"type": "indicator", "spec_version": "2.1",
			"id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", "created": "2026-12-01T00:00:00Z", "modified": "2026-12-01T00:00:00Z",
			"name": "C2 server", "indicator_types": ["malicious-activity"], "pattern_type": "stix",
			"pattern": "[ipv4-addr:value = '203.0.113.66']", "valid_from": "2026-12-01T00:00:00Z"}]}`)
	}))
	defer feed.Close()

	dir := t.TempDir()
	cfg := config.Defaults()
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Server.BootstrapTokenFile = filepath.Join(dir, "admin.token")
	cfg.Store.Path = filepath.Join(dir, "warden.db")
	cfg.Intake.TAXII = []intake.TAXIICollection{{URL: feed.URL + "/api1/", Collection: "c2-feed"}}
	cfg.Inventory = inventory.Inventory{
		Sites:    []inventory.Site{{Name: "hq", TimeZone: "UTC"}},
		Gateways: []inventory.Gateway{{ID: "gw-hq", Site: "hq", Addresses: []string{"198.51.100.10"}, ManagementNetworks: []string{"192.0.2.0/28"}}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, _, stop := serve(t, cfg)
	defer stop()
	select {
	case after := <-polled:
		if after != "" {
			t.Errorf("the first poll asked for objects added after %q, want everything", after)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the TAXII collection was never polled")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		blocks, err := d.Controller.Blocks(t.Context(), controller.BlockFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(blocks) == 1 {
			b := blocks[0]
			if b.State != controller.BlockActive || b.RequestedBy != "feed:taxii/c2-feed" || b.Source != "stix" ||
				len(b.Prefixes) != 1 || b.Prefixes[0].String() != "203.0.113.66/32" {
				t.Fatalf("block %+v", b)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the poll there are %d blocks, want 1", len(blocks))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
