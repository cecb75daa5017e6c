package config

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
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
		"blocks and a TAXII feed": {
			body: validInventory + "blocks:\n  max_auto_prefix_v4: 20\n  protected: [\"203.0.113.0/24\"]\n" +
				"intake:\n  taxii:\n    - {url: \"https://taxii.example/api1/\", collection: c2-feed, token_file: /etc/warden/taxii.token, interval: 30m}\n",
			check: func(t *testing.T, c Config) {
				if c.Blocks.MaxAutoPrefixV4 != 20 || c.Blocks.MaxAutoPrefixV6 != 32 || len(c.Blocks.Protected) != 1 ||
					len(c.Intake.TAXII) != 1 || c.Intake.TAXII[0].Collection != "c2-feed" || c.Intake.TAXII[0].Interval != 30*time.Minute {
					t.Fatalf("blocks %+v, taxii %+v", c.Blocks, c.Intake.TAXII)
				}
			},
		},
		"a TAXII feed over plain http": {
			body:    validInventory + "intake:\n  taxii:\n    - {url: \"http://taxii.example/api1/\", collection: c2-feed}\n",
			wantErr: []string{"intake.taxii[0].url"},
		},
		"agent listener without its certificate": {
			body:    validInventory + "server:\n  agent_listen: 0.0.0.0:8781\n",
			wantErr: []string{"agents.server_cert_file: is required with server.agent_listen", "agents.server_key_file", "agents.ca_file"},
		},
		"blocks out of range": {
			body:    validInventory + "blocks:\n  max_auto_prefix_v6: 129\n  protected: [nope]\n  default_ttl: 0s\n",
			wantErr: []string{"blocks.max_auto_prefix_v6", "blocks.protected[0]", "blocks.default_ttl"},
		},
		"the console": {
			body: validInventory + "console:\n  session_ttl: 8h\n  external_url: https://warden.example.net\n",
			check: func(t *testing.T, c Config) {
				if !c.Console.Enabled || c.Console.SessionTTL != 8*time.Hour || c.Console.ExternalURL != "https://warden.example.net" {
					t.Fatalf("console %+v", c.Console)
				}
			},
		},
		"console values name their keys": {
			body:    validInventory + "console:\n  session_ttl: 720h\n  external_url: \"https://ops:secret@warden.example.net/?x=1\"\n",
			wantErr: []string{"console.session_ttl: 720h0m0s is not between 1m and 168h0m0s", "console.external_url: \"https://REDACTED@warden.example.net/\" must not carry credentials"},
		},
		"a console link that is no URL": {
			body:    validInventory + "console:\n  external_url: warden.example.net\n",
			wantErr: []string{"console.external_url: \"warden.example.net\" is not an absolute http(s) URL"},
		},
		"postgres store": {
			body: validInventory + "store:\n  driver: postgres\n  dsn: postgres://warden@db.example.net/warden?sslmode=verify-full\nevidence:\n  dir: /srv/warden/evidence\n",
			check: func(t *testing.T, c Config) {
				if !c.Store.Postgres() || c.Store.DSN != "postgres://warden@db.example.net/warden?sslmode=verify-full" {
					t.Fatalf("store %+v", c.Store)
				}
			},
		},
		"postgres store from WARDEN_STORE_DSN": {
			body: validInventory + "store:\n  driver: postgres\nevidence:\n  dir: /srv/warden/evidence\n",
			env:  map[string]string{"WARDEN_STORE_DSN": "postgres://warden:pw@db.example.net/warden"},
			check: func(t *testing.T, c Config) {
				if c.Store.DSN != "postgres://warden:pw@db.example.net/warden" {
					t.Fatalf("store.dsn %q, want the variable's", c.Store.DSN)
				}
			},
		},
		"postgres store needs a dsn and a shared evidence dir": {
			body:    validInventory + "store:\n  driver: postgres\n",
			wantErr: []string{"store.dsn: is required", "evidence.dir: is required with store.driver postgres"},
		},
		"store driver and dsn are checked": {
			body:    validInventory + "store:\n  driver: mysql\n",
			wantErr: []string{"store.driver: must be sqlite or postgres"},
		},
		"a dsn that is no postgres url": {
			body:    validInventory + "store:\n  driver: postgres\n  dsn: host=db user=warden\nevidence:\n  dir: /srv/e\n",
			wantErr: []string{"store.dsn: must be a postgres:// URL"},
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
		"leaf variables override beside client ones": {
			body: validInventory + "server:\n  listen: 127.0.0.1:9000\n",
			env: map[string]string{
				"WARDEN_SERVER": "http://127.0.0.1:8780", "WARDEN_API_TOKEN": "client-token",
				"WARDEN_SERVER_LISTEN": "127.0.0.1:9100", "WARDEN_SERVER_API_TOKEN": "server-token",
				"WARDEN_INTAKE_DEDUP_WINDOW": "90s", "WARDEN_VSPHERE_INSECURE": "true",
			},
			check: func(t *testing.T, c Config) {
				if c.Server.Listen != "127.0.0.1:9100" || c.Server.APIToken != "server-token" ||
					c.Intake.DedupWindow != 90*time.Second || !c.VSphere.Insecure {
					t.Fatalf("leaf variables not applied: %+v", c)
				}
			},
		},
		"client token is not the server's": {
			body: validInventory,
			env:  map[string]string{"WARDEN_API_TOKEN": "client-token"},
			check: func(t *testing.T, c Config) {
				if c.Server.APIToken != "" {
					t.Fatalf("WARDEN_API_TOKEN read as server.api_token: %q", c.Server.APIToken)
				}
			},
		},
		"bad leaf variable names key and file": {
			body:    validInventory,
			env:     map[string]string{"WARDEN_EXECUTOR_MAX_ATTEMPTS": "many"},
			wantErr: []string{"executor.max_attempts", "warden.yaml"},
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
	hermetic(t)
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
	c.Store.DSN = "postgres://warden:db-321@db.example.net/warden"
	c.Notify.Channels = []Channel{{Name: "x", URL: "https://hooks.example.net/T0/abc?token=q-789", Secret: "hm-000"}}
	r := c.Redacted()
	b, _ := DefaultsYAMLOf(r)
	for _, s := range []string{"tok-123", "pw-456", "q-789", "hm-000", "db-321"} {
		if strings.Contains(string(b), s) {
			t.Fatalf("secret %s kept in redacted config:\n%s", s, b)
		}
	}
}

func TestStorePasswordFromFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "db-password")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pw, err := (Store{PasswordFile: file}).Password(); err != nil || pw != "s3cret" {
		t.Errorf("Password() = %q, %v; want the file's line", pw, err)
	}
	if pw, err := (Store{}).Password(); err != nil || pw != "" {
		t.Errorf("Password() without a file = %q, %v", pw, err)
	}
	_, err := (Store{PasswordFile: filepath.Join(dir, "missing")}).Password()
	if err == nil || !strings.Contains(err.Error(), "store.password_file") {
		t.Errorf("a missing password file: %v, want an error naming store.password_file", err)
	}
}

// hermetic clears every WARDEN_* variable of the developer's environment so
// that a test sees only what it sets (an empty variable counts as unset).
func hermetic(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "WARDEN_") {
			t.Setenv(k, "")
		}
	}
}

const readmeExample = "testdata/readme-example.yaml"

// readmeConfigBlock returns the YAML block under "## Configuration" in the
// README: the example people copy.
func readmeConfigBlock(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	_, section, ok := strings.Cut(s, "\n## Configuration\n")
	if !ok {
		t.Fatal("README.md has no \"## Configuration\" section")
	}
	_, block, ok := strings.Cut(section, "```yaml\n")
	if !ok {
		t.Fatal("README.md: no yaml block under \"## Configuration\"")
	}
	block, _, ok = strings.Cut(block, "\n```")
	if !ok {
		t.Fatal("README.md: the yaml block under \"## Configuration\" is not closed")
	}
	return block + "\n"
}

// The tests load the README's example from testdata; this keeps the two
// from drifting.
func TestReadmeExampleMatchesTestdata(t *testing.T) {
	want := readmeConfigBlock(t)
	if *update {
		if err := os.WriteFile(readmeExample, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(readmeExample)
	if err != nil {
		t.Fatalf("reading %s (run go test ./config -update): %v", readmeExample, err)
	}
	if string(got) != want {
		t.Fatalf("%s differs from the README's configuration example; run go test ./config -update\n--- README\n%s", readmeExample, want)
	}
}

// The client's variables (README: export WARDEN_SERVER=... WARDEN_API_TOKEN=...)
// and the other WARDEN_* variables that are not configuration keys must not
// change what the README's example loads as.
func TestClientVariablesAreNotConfig(t *testing.T) {
	hermetic(t)
	want, err := Load(readmeExample)
	if err != nil {
		t.Fatalf("README example: %v", err)
	}
	if want.Server.Listen != "127.0.0.1:8780" || want.Store.Path != "/var/lib/warden/warden.db" ||
		want.VSphere.URL != "https://vcenter.example.net/sdk" || want.Notify.Default != "soc" ||
		len(want.Inventory.Gateways) != 2 || want.Server.APIToken != "" {
		t.Fatalf("README example loaded without the file's values: %+v", want)
	}
	client := map[string]string{
		"WARDEN_SERVER":     "http://127.0.0.1:8780",
		"WARDEN_API_TOKEN":  "client-token",
		"WARDEN_CONFIG":     "/nonexistent/warden.yaml",
		"WARDEN_MASTER_KEY": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	}
	tests := map[string]map[string]string{"all at once": client}
	for k, v := range client {
		tests[k+" alone"] = map[string]string{k: v}
	}
	for name, env := range tests {
		t.Run(name, func(t *testing.T) {
			for k, v := range env {
				t.Setenv(k, v)
			}
			got, err := Load(readmeExample)
			if err != nil {
				t.Fatalf("loading %s with %v: %v", readmeExample, env, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%v changed the configuration:\n got %+v\nwant %+v", env, got, want)
			}
		})
	}
}

// Only leaves bind, each to WARDEN_<SECTION>_<KEY>: a section name alone
// would replace the whole section, and a client variable read as a key
// is the collision this guards against.
func TestEnvBindings(t *testing.T) {
	b := envBindings()
	seen := map[string]string{}
	for key, env := range b {
		if !strings.Contains(key, ".") {
			t.Errorf("%s binds section-level key %q", env, key)
		}
		if want := "WARDEN_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_")); env != want {
			t.Errorf("%s binds %s, want %s", key, env, want)
		}
		if other, dup := seen[env]; dup {
			t.Errorf("%s binds both %s and %s", env, key, other)
		}
		seen[env] = key
	}
	for _, env := range []string{"WARDEN_SERVER", "WARDEN_API_TOKEN", "WARDEN_CONFIG", "WARDEN_MASTER_KEY"} {
		if key, ok := seen[env]; ok {
			t.Errorf("client variable %s binds config key %s", env, key)
		}
	}
	for key, env := range map[string]string{
		"server.listen":                     "WARDEN_SERVER_LISTEN",
		"server.api_token":                  "WARDEN_SERVER_API_TOKEN",
		"vsphere.password":                  "WARDEN_VSPHERE_PASSWORD",
		"intake.alertmanager.gateway_label": "WARDEN_INTAKE_ALERTMANAGER_GATEWAY_LABEL",
	} {
		if b[key] != env {
			t.Errorf("%s binds %q, want %s", key, b[key], env)
		}
	}
}

// TestTwoPersonOnlyFromTheFile: four eyes is on by default, the
// configuration file can turn it off, and no environment variable can
// (safety invariant 9: a variable set in a unit file or a shell must not
// quietly let one person act alone).
func TestTwoPersonOnlyFromTheFile(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.yaml")
	off := filepath.Join(dir, "off.yaml")
	if err := os.WriteFile(empty, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(off, []byte("guards:\n  two_person: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, bound := envBindings()["guards.two_person"]; bound {
		t.Error("guards.two_person is bound to an environment variable")
	}
	for _, env := range []string{"WARDEN_GUARDS_TWO_PERSON", "WARDEN_GUARDS_TWOPERSON"} {
		t.Setenv(env, "false")
	}
	c, err := Load(empty)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Guards.FourEyes() {
		t.Error("an environment variable turned four eyes off")
	}
	if c, err = Load(off); err != nil || c.Guards.FourEyes() {
		t.Errorf("two_person: false in the file: four eyes %t, %v", c.Guards.FourEyes(), err)
	}
}
