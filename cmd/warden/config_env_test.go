package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The README tells client users to export WARDEN_SERVER and
// WARDEN_API_TOKEN; with them set, the commands that load the configuration
// must still load the file as written (WARDEN_SERVER is not the server
// section).
func TestClientVariablesDoNotBreakConfig(t *testing.T) {
	hermetic(t)
	t.Setenv("WARDEN_SERVER", "http://127.0.0.1:8780")
	t.Setenv("WARDEN_API_TOKEN", "client-token")
	t.Setenv("WARDEN_MASTER_KEY", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")

	readme := filepath.Join("..", "..", "config", "testdata", "readme-example.yaml")
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	const readmeStore = "/var/lib/warden/warden.db"
	if !strings.Contains(string(b), readmeStore) {
		t.Fatalf("%s no longer sets store.path %s", readme, readmeStore)
	}
	dir := t.TempDir()
	withStore := writeFile(t, dir, "warden.yaml", strings.Replace(string(b), readmeStore, auditedStore(t, dir, false), 1))
	// config check looks at the files the example names: give it real
	// ones, and the secrets the example leaves to the environment.
	t.Setenv("WARDEN_SERVER_API_TOKEN", "server-token-of-at-least-32-characters")
	t.Setenv("WARDEN_VSPHERE_PASSWORD", "vsphere-password")
	runnable := writeFile(t, dir, "runnable.yaml", strings.NewReplacer(
		readmeStore, filepath.Join(dir, "fresh.db"),
		"/etc/warden/policies", defaultPolicyDir(t),
		"/etc/warden/vcenter-ca.pem", agentTLS(t).ca,
	).Replace(string(b)))

	tests := map[string]struct {
		configEnv string // WARDEN_CONFIG, when set
		args      []string
		wantOut   string
	}{
		"config check":                   {args: []string{"config", "check", "-c", runnable}, wantOut: "configuration OK: 2 sites, 2 gateways, 1 tunnels"},
		"config check WARDEN_CONFIG":     {configEnv: runnable, args: []string{"config", "check"}, wantOut: "configuration OK: 2 sites, 2 gateways, 1 tunnels"},
		"audit verify store from config": {args: []string{"audit", "verify", "-c", withStore}, wantOut: "audit chain intact: 3 entries"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.configEnv != "" {
				t.Setenv("WARDEN_CONFIG", tc.configEnv)
			}
			out, _, err := runCLI(t, tc.args...)
			if err != nil {
				t.Fatalf("warden %v with WARDEN_SERVER set: %v", tc.args, err)
			}
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("warden %v printed %q, want %q", tc.args, out, tc.wantOut)
			}
		})
	}
}
