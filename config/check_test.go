package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/inventory"
)

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if _, err := agent.Init(tlsDir, []string{"127.0.0.1"}, agent.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	tlsFile := func(name string) string { return filepath.Join(tlsDir, name) }
	notADir := filepath.Join(dir, "plain-file")
	junk := filepath.Join(dir, "junk.pem")
	for _, f := range []string{notADir, junk} {
		if err := os.WriteFile(f, []byte("not a certificate\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing")

	tests := map[string]struct {
		edit func(c *Config)
		// want lists substrings of the error; nil: no error.
		want []string
	}{
		"defaults in a writable directory": {},
		"store path with URI characters":   {edit: func(c *Config) { c.Store.Path = filepath.Join(dir, "odd?name#1%.db") }},
		"store directory missing":          {edit: func(c *Config) { c.Store.Path = filepath.Join(missing, "warden.db") }, want: []string{"store.path", missing, "does not exist"}},
		"store directory is a file":        {edit: func(c *Config) { c.Store.Path = filepath.Join(notADir, "warden.db") }, want: []string{"store.path", notADir, "not a directory"}},
		"store path is a directory":        {edit: func(c *Config) { c.Store.Path = dir }, want: []string{"store.path", dir, "is a directory"}},
		"evidence directory creatable":     {edit: func(c *Config) { c.Evidence.Dir = filepath.Join(dir, "new", "evidence") }},
		"evidence under a file": {edit: func(c *Config) { c.Evidence.Dir = filepath.Join(notADir, "evidence") },
			want: []string{"evidence.dir", notADir, "not a directory"}},
		"evidence directory is a file": {edit: func(c *Config) { c.Evidence.Dir = notADir }, want: []string{"evidence.dir", notADir, "not a directory"}},
		"server tls loads": {edit: func(c *Config) {
			c.Server.TLSCertFile, c.Server.TLSKeyFile = tlsFile(agent.AgentCertFile), tlsFile(agent.AgentKeyFile)
		}},
		"server tls missing": {edit: func(c *Config) { c.Server.TLSCertFile, c.Server.TLSKeyFile = missing, missing },
			want: []string{"server.tls_cert_file", missing}},
		"server tls mismatched": {edit: func(c *Config) {
			c.Server.TLSCertFile, c.Server.TLSKeyFile = tlsFile(agent.AgentCertFile), tlsFile(agent.ControllerKeyFile)
		}, want: []string{"server.tls_cert_file", "key pair"}},
		"agent tls loads": {edit: func(c *Config) {
			c.Agents = Agents{CertFile: tlsFile(agent.ControllerCertFile), KeyFile: tlsFile(agent.ControllerKeyFile), CAFile: tlsFile(agent.CAFile)}
		}},
		"agent key missing": {edit: func(c *Config) {
			c.Agents = Agents{CertFile: tlsFile(agent.ControllerCertFile), KeyFile: missing, CAFile: tlsFile(agent.CAFile)}
		}, want: []string{"agents.cert_file and agents.key_file", missing}},
		"agent key unset": {edit: func(c *Config) {
			c.Agents = Agents{CertFile: tlsFile(agent.ControllerCertFile), CAFile: tlsFile(agent.CAFile)}
		},
			want: []string{"agents.cert_file and agents.key_file: set both"}},
		"agent ca not PEM": {edit: func(c *Config) {
			c.Agents = Agents{CertFile: tlsFile(agent.ControllerCertFile), KeyFile: tlsFile(agent.ControllerKeyFile), CAFile: junk}
		}, want: []string{"agents.ca_file", junk, "no PEM certificate"}},
		"vsphere ca missing": {edit: func(c *Config) { c.VSphere.URL, c.VSphere.CAFile = "https://vc.example.net/sdk", missing },
			want: []string{"vsphere.ca_file", missing}},
		"vsphere ca unused without a url": {edit: func(c *Config) { c.VSphere.CAFile = missing }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := Defaults()
			c.Store.Path = filepath.Join(dir, "warden.db")
			if tc.edit != nil {
				tc.edit(&c)
			}
			exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
			watched := []string{c.Store.Path, c.Evidence.Dir, filepath.Join(filepath.Dir(c.Store.Path), "evidence")}
			before := make([]bool, len(watched))
			for i, p := range watched {
				before[i] = exists(p)
			}
			err := c.CheckFiles()
			// Checking creates nothing: not the database, not a directory.
			for i, p := range watched {
				if p != "" && exists(p) != before[i] {
					t.Errorf("CheckFiles created %s", p)
				}
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("CheckFiles: %v", err)
				}
			} else {
				if err == nil {
					t.Fatalf("CheckFiles passed, want an error containing %q", tc.want)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	const shortToken = "short-secret-token"
	gw := func(nets ...string) inventory.Inventory {
		return inventory.Inventory{Gateways: []inventory.Gateway{{ID: "gw-hq", ManagementNetworks: nets}}}
	}
	tests := map[string]struct {
		edit func(c *Config)
		want []string // one substring per expected warning, in order
	}{
		"defaults":                     {},
		"a management network":         {edit: func(c *Config) { c.Inventory = gw("192.0.2.0/28") }},
		"every IPv4 address":           {edit: func(c *Config) { c.Inventory = gw("192.0.2.0/28", "0.0.0.0/0") }, want: []string{"inventory.gateways (gw-hq).management_networks: 0.0.0.0/0"}},
		"every IPv6 address":           {edit: func(c *Config) { c.Inventory = gw("::/0") }, want: []string{"inventory.gateways (gw-hq).management_networks: ::/0"}},
		"short token on loopback":      {edit: func(c *Config) { c.Server.APIToken = shortToken }},
		"short token on localhost":     {edit: func(c *Config) { c.Server.Listen, c.Server.APIToken = "localhost:8780", shortToken }},
		"short token on IPv6 loopback": {edit: func(c *Config) { c.Server.Listen, c.Server.APIToken = "[::1]:8780", shortToken }},
		"short token on every address": {edit: func(c *Config) { c.Server.Listen, c.Server.APIToken = "0.0.0.0:8780", shortToken },
			want: []string{"server.api_token: shorter than 32 characters on 0.0.0.0:8780"}},
		"short token on a LAN address": {edit: func(c *Config) { c.Server.Listen, c.Server.APIToken = "10.0.0.5:8780", shortToken },
			want: []string{"server.api_token"}},
		"short token with TLS": {edit: func(c *Config) {
			c.Server.Listen, c.Server.APIToken, c.Server.TLSCertFile, c.Server.TLSKeyFile = "0.0.0.0:8780", shortToken, "c.pem", "k.pem"
		}},
		"long token on every address": {edit: func(c *Config) {
			c.Server.Listen, c.Server.APIToken = "0.0.0.0:8780", strings.Repeat("x", MinTokenLength)
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := Defaults()
			if tc.edit != nil {
				tc.edit(&c)
			}
			got := c.Warnings()
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d containing %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q does not contain %q", got[i], w)
				}
			}
			if slices.ContainsFunc(got, func(w string) bool { return strings.Contains(w, shortToken) }) {
				t.Errorf("a warning shows the token: %q", got)
			}
		})
	}
}
