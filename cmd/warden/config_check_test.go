package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/policies"
)

// defaultPolicyDir copies the embedded default policies into a directory.
func defaultPolicyDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "policies")
	if err := os.CopyFS(dir, policies.DefaultFS()); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tlsFiles are the key material `warden agent init` writes.
type tlsFiles struct{ ca, caKey, cert, key string }

func agentTLS(t *testing.T) tlsFiles {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := agent.Init(dir, []string{"127.0.0.1"}, agent.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	at := func(name string) string { return filepath.Join(dir, name) }
	return tlsFiles{ca: at(agent.CAFile), caKey: at(agent.CAKeyFile), cert: at(agent.ControllerCertFile), key: at(agent.ControllerKeyFile)}
}

// TestConfigCheckRunsServesChecks: `config check` refuses what `serve`
// would refuse (short of connecting), naming the key and the config file,
// warns about what works but is probably a mistake, and prints no secret.
func TestConfigCheckRunsServesChecks(t *testing.T) {
	hermetic(t)
	dir := t.TempDir()
	tlsf := agentTLS(t)
	pol := defaultPolicyDir(t)
	const token = "config-check-secret-token"
	const longToken = "config-check-secret-token-0123456789abcdef"

	// A policy directory whose runbook names an action no controller has,
	// and one whose policy does not compile.
	unknownAction := defaultPolicyDir(t)
	writeFile(t, unknownAction, "extra.yaml", "runbooks:\n  - name: teleport-away\n    steps:\n      - action: teleport\n")
	badCEL := filepath.Join(dir, "bad-cel")
	if err := os.Mkdir(badCEL, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, badCEL, "policies.yaml", "policies:\n  - name: broken\n    match: 'indicator.kind ==='\n    runbook: notify-only\n    approval: auto\nrunbooks:\n  - name: notify-only\n    steps:\n      - action: notify\n")
	openKey := writeFile(t, dir, "master-open.key", strings.Repeat("ab", 32))
	if err := os.Chmod(openKey, 0o644); err != nil {
		t.Fatal(err)
	}
	plainFile := writeFile(t, dir, "plain", "x")
	missing := filepath.Join(dir, "missing")
	odd := filepath.Join(dir, "odd?dir#1%x")
	if err := os.Mkdir(odd, 0o700); err != nil {
		t.Fatal(err)
	}

	const base = `
server:
  listen: %LISTEN%
  api_token: %TOKEN%
%SERVER%
store:
  path: %STORE%
%SECTIONS%
inventory:
  sites:
    - {name: hq, time_zone: Asia/Tokyo}
  gateways:
    - {id: gw-hq, site: hq, vm: gw-hq, addresses: [203.0.113.10], management_networks: [%MGMT%]}
`
	type edits struct{ listen, token, server, store, sections, mgmt string }
	render := func(e edits) string {
		def := func(v, d string) string {
			if v == "" {
				return d
			}
			return v
		}
		return strings.NewReplacer(
			"%LISTEN%", def(e.listen, "127.0.0.1:8780"),
			"%TOKEN%", def(e.token, token),
			"%SERVER%", e.server,
			"%STORE%", def(e.store, filepath.Join(dir, "warden.db")),
			"%SECTIONS%", e.sections,
			"%MGMT%", def(e.mgmt, "192.168.100.0/24"),
		).Replace(base)
	}

	tests := map[string]struct {
		edits
		wantErr  []string // substrings of the error; nil: success
		wantWarn []string // substrings of stderr
	}{
		"good":                     {},
		"policies dir that exists": {edits: edits{sections: "policies:\n  dir: " + pol}},
		"policies dir missing": {edits: edits{sections: "policies:\n  dir: /nonexistent"},
			wantErr: []string{"policies.dir", "/nonexistent"}},
		"policy that does not compile": {edits: edits{sections: "policies:\n  dir: " + badCEL},
			wantErr: []string{"policies.dir", filepath.Join(badCEL, "policies.yaml")}},
		"runbook with an unknown action": {edits: edits{sections: "policies:\n  dir: " + unknownAction},
			wantErr: []string{"policies.dir", filepath.Join(unknownAction, "extra.yaml"), `"teleport"`}},
		"store directory missing": {edits: edits{store: filepath.Join(missing, "warden.db")},
			wantErr: []string{"store.path", missing}},
		"store directory is a file": {edits: edits{store: filepath.Join(plainFile, "warden.db")},
			wantErr: []string{"store.path", plainFile}},
		"store path with ? # %": {edits: edits{store: `"` + filepath.Join(odd, "w?a#r%d.db") + `"`}},
		// People have their own tokens (the first admin's from
		// server.bootstrap_token_file): the shared one is deprecated.
		"api token missing": {edits: edits{token: `""`}},
		"server tls loads":  {edits: edits{server: "  tls_cert_file: " + tlsf.cert + "\n  tls_key_file: " + tlsf.key}},
		"server tls missing": {edits: edits{server: "  tls_cert_file: " + missing + "\n  tls_key_file: " + tlsf.key},
			wantErr: []string{"server.tls_cert_file", missing}},
		"agent files load": {edits: edits{sections: "agents:\n  cert_file: " + tlsf.cert + "\n  key_file: " + tlsf.key + "\n  ca_file: " + tlsf.ca}},
		"agent ca missing": {edits: edits{sections: "agents:\n  cert_file: " + tlsf.cert + "\n  key_file: " + tlsf.key + "\n  ca_file: " + missing},
			wantErr: []string{"agents.ca_file", missing}},
		"vcenter ca missing": {edits: edits{sections: "vsphere:\n  url: https://vc.example.net/sdk\n  username: warden\n  password: vc-secret-password\n  ca_file: " + missing},
			wantErr: []string{"vsphere.ca_file", missing}},
		"vcenter password missing": {edits: edits{sections: "vsphere:\n  url: https://vc.example.net/sdk\n  username: warden\n  ca_file: " + tlsf.ca},
			wantErr: []string{"vsphere.password"}},
		"master key file missing": {edits: edits{sections: "credentials:\n  master_key_file: " + missing},
			wantErr: []string{"credentials.master_key_file", missing}},
		"master key file readable by others": {edits: edits{sections: "credentials:\n  master_key_file: " + openKey},
			wantErr: []string{"credentials.master_key_file", openKey, "0600"}},
		"credential CA loads": {edits: edits{sections: "credentials:\n  ca_cert_file: " + tlsf.ca + "\n  ca_key_file: " + tlsf.caKey}},
		"credential CA key missing": {edits: edits{sections: "credentials:\n  ca_cert_file: " + tlsf.ca + "\n  ca_key_file: " + missing},
			wantErr: []string{"credentials.ca_cert_file and credentials.ca_key_file", missing}},
		"notify header set by warden": {edits: edits{sections: "notify:\n  default: soc\n  channels:\n    - {name: soc, url: \"https://chat.example.net/h\", secret: notify-secret-value, headers: {Content-Type: text/plain}}"},
			wantErr: []string{"notify.channels", "Content-Type"}},
		"evidence dir under a file": {edits: edits{sections: "evidence:\n  dir: " + filepath.Join(plainFile, "evidence")},
			wantErr: []string{"evidence.dir", plainFile}},
		"management network is everything": {edits: edits{mgmt: "0.0.0.0/0"},
			wantWarn: []string{"warning: inventory.gateways (gw-hq).management_networks: 0.0.0.0/0", "cut nothing"}},
		"management network is every IPv6 address": {edits: edits{mgmt: `"::/0"`},
			wantWarn: []string{"management_networks: ::/0"}},
		"short token on a public listener": {edits: edits{listen: "0.0.0.0:8780"},
			wantWarn: []string{"warning: server.api_token: shorter than 32 characters on 0.0.0.0:8780"}},
		"long token on a public listener":           {edits: edits{listen: "0.0.0.0:8780", token: longToken}},
		"short token on a public listener with TLS": {edits: edits{listen: "0.0.0.0:8780", server: "  tls_cert_file: " + tlsf.cert + "\n  tls_key_file: " + tlsf.key}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			file := writeFile(t, t.TempDir(), "warden.yaml", render(tc.edits))
			out, stderr, err := runCLI(t, "config", "check", "-c", file)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("config check: %v\n%s", err, render(tc.edits))
				}
				if !strings.Contains(out, "configuration OK") {
					t.Errorf("config check printed %q, want configuration OK", out)
				}
			} else {
				if err == nil {
					t.Fatalf("config check passed, want an error containing %q; stdout %q", tc.wantErr, out)
				}
				for _, w := range append([]string{"checking config " + file}, tc.wantErr...) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
			}
			for _, w := range tc.wantWarn {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not contain %q", stderr, w)
				}
			}
			if tc.wantWarn == nil && strings.Contains(stderr, "warning:") {
				t.Errorf("unexpected warning: %q", stderr)
			}
			all := out + stderr
			if err != nil {
				all += err.Error()
			}
			for _, secret := range []string{token, longToken, "vc-secret-password", "notify-secret-value"} {
				if strings.Contains(all, secret) {
					t.Errorf("config check printed the secret %q:\n%s", secret, all)
				}
			}
			// Checking is not starting: no database appears.
			if _, err := os.Stat(filepath.Join(dir, "warden.db")); err == nil {
				t.Errorf("config check created the database")
			}
		})
	}
}
