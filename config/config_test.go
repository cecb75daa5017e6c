package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestDefaultsGolden(t *testing.T) {
	got, err := DefaultsYAML()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "defaults.golden.yaml")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("reading golden file (run with -update): %v", err)
	}
	if string(got) != string(want) {
		t.Fatalf("defaults changed; review and run go test ./config -update\n--- got\n%s", got)
	}
}

const validInventory = `
inventory:
  sites:
    - {name: hq, time_zone: Asia/Tokyo}
  gateways:
    - {id: gw-hq, site: hq, vm: gw-hq, addresses: ["198.51.100.1"], management_networks: ["192.0.2.0/28"]}
`

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	tests := map[string]struct {
		body    string
		env     map[string]string
		wantErr []string
		check   func(t *testing.T, c Config)
	}{
		"defaults applied": {
			body: validInventory,
			check: func(t *testing.T, c Config) {
				if c.Server.MaxBodyBytes != 1<<20 || c.Intake.DedupWindow != 10*time.Minute || c.Store.Sync != "full" {
					t.Fatalf("defaults not applied: %+v", c)
				}
			},
		},
		"unknown top-level key names key and file": {
			body:    validInventory + "colour: blue\n",
			wantErr: []string{"unknown key", "colour", "warden.yaml"},
		},
		"unknown nested key": {
			body:    validInventory + "server:\n  lisen: 1.2.3.4:5\n",
			wantErr: []string{"unknown key", "lisen", "server"},
		},
		"unknown inventory key": {
			body:    validInventory + "    - {id: gw-2, site: hq, colour: red, addresses: [], management_networks: [\"192.0.2.0/28\"]}\n",
			wantErr: []string{"colour"},
		},
		"durations parse": {
			body: validInventory + "intake:\n  dedup_window: 90s\n",
			check: func(t *testing.T, c Config) {
				if c.Intake.DedupWindow != 90*time.Second {
					t.Fatalf("dedup %v", c.Intake.DedupWindow)
				}
			},
		},
		"env overrides file": {
			body: validInventory + "server:\n  listen: 127.0.0.1:9000\n",
			env:  map[string]string{"WARDEN_SERVER_LISTEN": "127.0.0.1:9100", "WARDEN_VSPHERE_PASSWORD": "from-env"},
			check: func(t *testing.T, c Config) {
				if c.Server.Listen != "127.0.0.1:9100" || c.VSphere.Password != "from-env" {
					t.Fatalf("env not applied: %s %q", c.Server.Listen, c.VSphere.Password)
				}
			},
		},
		"invalid values name fields": {
			body:    validInventory + "store:\n  sync: sometimes\nguards:\n  breaker_fraction: 2\nvsphere:\n  url: https://admin:pw@vc.example.net/sdk\n",
			wantErr: []string{"store.sync", "guards.breaker_fraction", "vsphere.url: must not carry credentials"},
		},
		"notify default must name a channel": {
			body:    validInventory + "notify:\n  channels:\n    - {name: soc, url: \"https://chat.example.net/hook\"}\n",
			wantErr: []string{`notify.default: "default" is not one of notify.channels`},
		},
		"inventory problems": {
			body: `
inventory:
  sites: [{name: hq, time_zone: Mars/Olympus}]
  gateways:
    - {id: a, site: nowhere, addresses: ["198.51.100.1"], management_networks: ["192.0.2.0/28"]}
    - {id: b, site: hq, addresses: ["198.51.100.1"]}
  tunnels:
    - {a: a, b: ghost, kind: wireguard}
`,
			wantErr: []string{"unknown time zone", `unknown site "nowhere"`, "duplicate address 198.51.100.1", "management network", `tunnel to unknown gateway "ghost"`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := Load(write(t, tc.body))
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatal("expected an error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestSecretsNeverInErrorsOrRedacted(t *testing.T) {
	_, err := Load(write(t, validInventory+"vsphere:\n  url: https://admin:s3cr3t-pw@vc.example.net/sdk\n"))
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("error leaks or is missing: %v", err)
	}
	c := Defaults()
	c.Server.APIToken, c.VSphere.Password = "tok-123", "pw-456"
	c.Notify.Channels = []Channel{{Name: "x", URL: "https://hooks.example.net/T0/abc?token=q-789", Secret: "hm-000"}}
	r := c.Redacted()
	b, _ := DefaultsYAMLOf(r)
	for _, s := range []string{"tok-123", "pw-456", "q-789", "hm-000"} {
		if strings.Contains(string(b), s) {
			t.Fatalf("secret %s kept in redacted config:\n%s", s, b)
		}
	}
}

// The README's configuration example is what people copy: it must load.
func TestReadmeExampleLoads(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "```yaml\nserver:")
	if i < 0 {
		t.Fatal("README has no configuration example")
	}
	j := strings.Index(s[i+8:], "```")
	if _, err := Load(write(t, s[i+8:i+8+j])); err != nil {
		t.Fatalf("README example: %v", err)
	}
}
