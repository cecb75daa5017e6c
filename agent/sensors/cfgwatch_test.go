package sensors

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock/clocktest"
)

var cfgwT0 = time.Date(2026, 12, 6, 14, 0, 0, 0, time.UTC)

// cfgwSecrets are the secret values of the fixtures: none may ever leave
// the watcher or reach its state.
var cfgwSecrets = []string{
	"0sv+NkxY9LLZvwj4qCC2o/gGrWDF2d21jL", "This is a strong password", `My "home" is my "castle"!`,
	"Andi's home", "0x45a30759df97dc26a15b88ff",
	"oK56DE9Ue9zK76rAc8pBl6opph+1v36lm7cXXsQKrQM=", "/UwcSPg38hW/D9Y3tcS1FOV0K1wuURMbS0sesJEP5ak=",
}

func cfgwFixture(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// cfgwRoot is a fake filesystem root with a gateway's configuration.
type cfgwRoot struct {
	t    *testing.T
	root string
}

func newCfgwRoot(t *testing.T) *cfgwRoot {
	t.Helper()
	r := &cfgwRoot{t: t, root: t.TempDir()}
	r.write("etc/swanctl/swanctl.conf", cfgwFixture(t, "cfgwatch_swanctl.conf"), 0o600)
	r.write("etc/ipsec.secrets", cfgwFixture(t, "cfgwatch_ipsec.secrets"), 0o600)
	r.write("etc/wireguard/wg0.conf", cfgwFixture(t, "cfgwatch_wg0.conf"), 0o600)
	r.write("etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\nPasswordAuthentication no\nUsePAM yes\n", 0o644)
	r.write("etc/sudoers", "Defaults\tenv_reset\nroot\tALL=(ALL:ALL) ALL\n%sudo\tALL=(ALL:ALL) ALL\n", 0o440)
	r.write("etc/hostname", "gw-tokyo\n", 0o644)
	if err := os.MkdirAll(filepath.Join(r.root, "home"), 0o755); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *cfgwRoot) path(rel string) string { return filepath.Join(r.root, rel) }

func (r *cfgwRoot) write(rel, content string, mode os.FileMode) {
	r.t.Helper()
	p := r.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		r.t.Fatal(err)
	}
}

func (r *cfgwRoot) read(rel string) string {
	r.t.Helper()
	data, err := os.ReadFile(r.path(rel))
	if err != nil {
		r.t.Fatal(err)
	}
	return string(data)
}

// replace writes rel the way editors and config tools do: a temporary file
// in the same directory, renamed over the old one.
func (r *cfgwRoot) replace(rel, content string) {
	r.t.Helper()
	tmp := r.path(rel) + ".tmp~"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, r.path(rel)); err != nil {
		r.t.Fatal(err)
	}
}

// cfgwRunning is a watcher running in the background of a test.
type cfgwRunning struct {
	w     *ConfigWatch
	scans chan int // findings per look
	got   chan wire.Finding
	mu    sync.Mutex
	all   []wire.Finding
	stop  func() error
	// ended counts findings received later whose look next saw end.
	ended int
}

func cfgwStart(t *testing.T, cfg ConfigWatchConfig, deps ConfigWatchDeps) *cfgwRunning {
	t.Helper()
	s, err := NewConfigWatch(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	c := &cfgwRunning{w: s.(*ConfigWatch), scans: make(chan int, 1024), got: make(chan wire.Finding, 256)}
	started := make(chan struct{})
	c.w.started = func() { close(started) }
	c.w.scanned = func(n int) { c.scans <- n }
	c.stop = sensorsStart(t, started, func(ctx context.Context) error {
		return c.w.Run(ctx, func(f wire.Finding) {
			c.mu.Lock()
			c.all = append(c.all, f)
			c.mu.Unlock()
			c.got <- f
		})
	})
	return c
}

func (c *cfgwRunning) findings() []wire.Finding {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.all)
}

// next advances clk a debounce at a time until a finding arrives, and
// returns it once the look that made it is over (the real-time deadline
// only fails the test).
func (c *cfgwRunning) next(t *testing.T, clk *clocktest.Fake) wire.Finding {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case f := <-c.got:
			if c.ended > 0 { // its look is already over
				c.ended--
				return f
			}
			for n := 0; n == 0; { // looks without findings before it do not count
				select {
				case n = <-c.scans:
					c.ended = max(0, n-1) // the look's other findings
				case <-deadline:
					t.Fatal("the look did not end within 10s")
				}
			}
			return f
		case <-deadline:
			t.Fatal("no finding within 10s")
		case <-time.After(20 * time.Millisecond):
			clk.Advance(c.w.cfg.Debounce)
		}
	}
}

// quiet forces a look (every look compares every file; Rescan makes sure
// there is one) and returns the findings it made: with every earlier
// change already reported, there must be none.
func (c *cfgwRunning) quiet(t *testing.T, clk *clocktest.Fake) int {
	t.Helper()
	for len(c.scans) > 0 {
		<-c.scans
	}
	deadline := time.After(10 * time.Second)
	for {
		clk.Advance(c.w.cfg.Rescan)
		select {
		case n := <-c.scans:
			return n
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatal("no look within 10s")
		}
	}
}

func cfgwCheck(t *testing.T, f wire.Finding, labels map[string]string) {
	t.Helper()
	if f.Kind != KindConfigChange || f.Severity != SeverityHigh || f.Sensor != ConfigSensorName || f.Key == "" || f.Summary == "" {
		t.Errorf("finding %+v: want a high config_change from the config sensor with a key and a summary", f)
	}
	for k, v := range labels {
		if f.Labels[k] != v {
			t.Errorf("label %s = %q, want %q (finding %s)", k, f.Labels[k], v, f.Summary)
		}
	}
	cfgwNoSecrets(t, f)
}

// cfgwNoSecrets fails when any fixture secret is anywhere in f.
func cfgwNoSecrets(t *testing.T, f wire.Finding) {
	t.Helper()
	text := f.Summary + "\n" + f.Key + "\n" + strings.Join(f.Evidence, "\n")
	for k, v := range f.Labels {
		text += "\n" + k + "=" + v
	}
	for _, s := range cfgwSecrets {
		if strings.Contains(text, s) {
			t.Errorf("finding %q carries the secret %q", f.Summary, s)
		}
	}
}

func cfgwHas(lines []string, want string) bool {
	return slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, want) })
}

func TestConfigWatchValidate(t *testing.T) {
	tests := map[string]struct {
		cfg  ConfigWatchConfig
		want []string
	}{
		"defaults":        {cfg: ConfigWatchConfig{}},
		"relative root":   {cfg: ConfigWatchConfig{Root: "lab"}, want: []string{"sensors.config.root"}},
		"relative path":   {cfg: ConfigWatchConfig{Paths: []string{"/etc/ssh", "etc/sudoers"}}, want: []string{"sensors.config.paths[1]", "absolute"}},
		"unclean path":    {cfg: ConfigWatchConfig{Paths: []string{"/etc/../root"}}, want: []string{"sensors.config.paths[0]", "clean"}},
		"root itself":     {cfg: ConfigWatchConfig{Paths: []string{"/"}}, want: []string{"sensors.config.paths[0]"}},
		"bad glob":        {cfg: ConfigWatchConfig{Paths: []string{"/home/[a/.ssh"}}, want: []string{"sensors.config.paths[0]", "pattern"}},
		"severity":        {cfg: ConfigWatchConfig{Severity: "urgent"}, want: []string{"sensors.config.severity"}},
		"bad redaction":   {cfg: ConfigWatchConfig{Redact: []string{`password=(\S+)`, `(`}}, want: []string{"sensors.config.redact[1]"}},
		"long debounce":   {cfg: ConfigWatchConfig{Debounce: time.Hour}, want: []string{"sensors.config.debounce"}},
		"fast rescan":     {cfg: ConfigWatchConfig{Rescan: time.Millisecond}, want: []string{"sensors.config.rescan_interval"}},
		"tiny diff":       {cfg: ConfigWatchConfig{MaxDiffLines: 1}, want: []string{"sensors.config.max_diff_lines"}},
		"negative sizes":  {cfg: ConfigWatchConfig{MaxFileBytes: -1, MaxFiles: -1}, want: []string{"sensors.config.max_file_bytes", "sensors.config.max_files"}},
		"glob home paths": {cfg: ConfigWatchConfig{Paths: []string{"/home/*/.ssh/authorized_keys"}}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			sensorsCheckValidate(t, tc.cfg.WithDefaults().Validate(), tc.want...)
		})
	}
	if _, err := NewConfigWatch(ConfigWatchConfig{}, ConfigWatchDeps{}); err == nil || !strings.Contains(err.Error(), "state dir") {
		t.Errorf("NewConfigWatch without a state dir = %v, want an error naming the state dir", err)
	}
}

// TestConfigUnifiedDiff compares with what GNU diff -u prints for the same
// inputs (checked on the build machine, diffutils 3.8).
func TestConfigUnifiedDiff(t *testing.T) {
	tests := map[string]struct {
		a, b           string
		want           string
		added, removed int
	}{
		"same": {a: "a\nb\n", b: "a\nb\n"},
		"one line": {a: "a\nb\nc\nd\ne\nf\ng\n", b: "a\nb\nc\nX\ne\nf\ng\n",
			want: "@@ -1,7 +1,7 @@| a| b| c|-d|+X| e| f| g", added: 1, removed: 1},
		"insert at start": {a: "x\ny\n", b: "n\nx\ny\n", want: "@@ -1,2 +1,3 @@|+n| x| y", added: 1},
		"created":         {a: "", b: "n\nm\n", want: "@@ -0,0 +1,2 @@|+n|+m", added: 2},
		"deleted":         {a: "n\nm\n", b: "", want: "@@ -1,2 +0,0 @@|-n|-m", removed: 2},
		"appended":        {a: "a\nb\n", b: "a\nb\nc\n", want: "@@ -1,2 +1,3 @@| a| b|+c", added: 1},
		"two hunks": {a: "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n", b: "1\nA\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\nB\n15\n",
			want: "@@ -1,5 +1,5 @@| 1|-2|+A| 3| 4| 5|@@ -11,5 +11,5 @@| 11| 12| 13|-14|+B| 15", added: 2, removed: 2},
		"merged hunks": {a: "1\n2\n3\n4\n5\n6\n7\n8\n9\n", b: "1\nA\n3\n4\n5\n6\n7\nB\n9\n",
			want: "@@ -1,9 +1,9 @@| 1|-2|+A| 3| 4| 5| 6| 7|-8|+B| 9", added: 2, removed: 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, added, removed := unifiedDiff("a", "b", textLines(tc.a), textLines(tc.b), 100)
			want := []string(nil)
			if tc.want != "" {
				want = append([]string{"--- a", "+++ b"}, strings.Split(tc.want, "|")...)
			}
			if !slices.Equal(got, want) || added != tc.added || removed != tc.removed {
				t.Fatalf("unifiedDiff = %q (+%d -%d)\nwant %q (+%d -%d)", got, added, removed, want, tc.added, tc.removed)
			}
		})
	}
	// Cut to maxLines, saying how much was left out.
	var a, b []string
	for i := range 50 {
		a = append(a, "old"+string(rune('a'+i%26)))
		b = append(b, "new"+string(rune('a'+i%26)))
	}
	got, added, removed := unifiedDiff("a", "b", a, b, 10)
	if len(got) != 10 || !strings.Contains(got[9], "94 more diff lines left out") || added != 50 || removed != 50 {
		t.Errorf("cut diff = %q (+%d -%d), want 10 lines ending in how many were left out", got, added, removed)
	}
}

func TestConfigRedact(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	pemBody := strings.Split(pemKey, "\n")[1]

	s, err := NewConfigWatch(ConfigWatchConfig{Redact: []string{`(?m)^password=(\S+)`}}, ConfigWatchDeps{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	r := &configRun{w: s.(*ConfigWatch), key: []byte("0123456789abcdef0123456789abcdef")}
	tests := map[string]struct {
		in      string
		n       int
		secrets []string
		keep    []string // lines that must come out as they went in
	}{
		"swanctl.conf": {in: cfgwFixture(t, "cfgwatch_swanctl.conf"), n: 5, secrets: cfgwSecrets[:4],
			keep: []string{"      id-1 = moon.strongswan.org", "            esp_proposals = aes128gcm128-x25519", "         auth = psk"}},
		"ipsec.secrets": {in: cfgwFixture(t, "cfgwatch_ipsec.secrets"), n: 5, secrets: cfgwSecrets[:5],
			keep: []string{"# /etc/ipsec.secrets - strongSwan IPsec secrets file"}},
		"wg0.conf": {in: cfgwFixture(t, "cfgwatch_wg0.conf"), n: 2, secrets: cfgwSecrets[5:],
			keep: []string{"PublicKey = GtL7fZc/bLnqZldpVofMCD6hDjrK28SsdLxevJ+qtKU=", "Endpoint = demo.wireguard.com:51820"}},
		"commented secret": {in: "   # secret = oldpsk-left-behind\n", n: 1, secrets: []string{"oldpsk-left-behind"}},
		"key passphrase":   {in: ": RSA moonKey.pem \"passphrase-1\"\n", n: 1, secrets: []string{"passphrase-1"}, keep: nil},
		"pem key":          {in: "-- key --\n" + pemKey, n: 1, secrets: []string{pemBody}, keep: []string{"-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----"}},
		"own pattern":      {in: "user=admin\npassword=hunter2-xyz\n", n: 1, secrets: []string{"hunter2-xyz"}, keep: []string{"user=admin"}},
		"no secrets":       {in: "PermitRootLogin no\n", n: 0, keep: []string{"PermitRootLogin no"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, n := r.redact(tc.in)
			if n != tc.n {
				t.Errorf("redacted %d secrets, want %d:\n%s", n, tc.n, out)
			}
			for _, s := range tc.secrets {
				if strings.Contains(out, s) {
					t.Errorf("secret %q survived:\n%s", s, out)
				}
			}
			for _, k := range tc.keep {
				if !slices.Contains(strings.Split(out, "\n"), k) {
					t.Errorf("line %q did not survive:\n%s", k, out)
				}
			}
		})
	}
	// The same secret gets the same tag wherever it is; another, another.
	a, _ := r.redact("secret = same-secret\n")
	b, _ := r.redact("x : PSK same-secret\n")
	c, _ := r.redact("secret = other-secret\n")
	tagOf := func(s string) string { return s[strings.Index(s, "<redacted:") : strings.Index(s, ">")+1] }
	if tagOf(a) != tagOf(b) || tagOf(a) == tagOf(c) {
		t.Errorf("tags %s %s %s: want the first two equal, the third different", tagOf(a), tagOf(b), tagOf(c))
	}
}

func TestConfigPathMatchesPrefix(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"/etc/swanctl", "/etc/swanctl/conf.d/site.conf", true},
		{"/etc/swanctl", "/etc", true},
		{"/etc/swanctl", "/etc/hostname", false},
		{"/home/*/.ssh/authorized_keys", "/home/alice", true},
		{"/home/*/.ssh/authorized_keys", "/home/alice/.ssh/authorized_keys", true},
		{"/home/*/.ssh/authorized_keys", "/home/alice/.bashrc", false},
		{"/etc/ssh/sshd_config", "/etc/ssh/sshd_config.tmp~", false},
	}
	for _, tc := range tests {
		if got := pathMatchesPrefix(tc.pattern, tc.path); got != tc.want {
			t.Errorf("pathMatchesPrefix(%q, %q) = %t, want %t", tc.pattern, tc.path, got, tc.want)
		}
	}
}

// TestConfigWatchChanges runs the watcher over a fake root and changes
// its files the ways people and tools do. Rescans are a day apart, so every
// finding before the last step came from inotify.
func TestConfigWatchChanges(t *testing.T) {
	root := newCfgwRoot(t)
	clk := clocktest.NewFake(cfgwT0)
	state := t.TempDir()
	c := cfgwStart(t, ConfigWatchConfig{Root: root.root, Rescan: 24 * time.Hour}, ConfigWatchDeps{StateDir: state, Clock: clk})
	if n := <-c.scans; n != 0 {
		t.Fatalf("first look on a first run made %d findings, want 0 (it records)", n)
	}

	t.Run("secret changed in swanctl.conf", func(t *testing.T) {
		before := root.read("etc/swanctl/swanctl.conf")
		after := strings.Replace(before, "secret = 0sv+NkxY9LLZvwj4qCC2o/gGrWDF2d21jL", "secret = 0sOtherSecretValue1234", 1)
		after = strings.Replace(after, "      version = 2\n", "      version = 2\n      aggressive = yes\n", 1)
		root.write("etc/swanctl/swanctl.conf", after, 0o600)
		f := c.next(t, clk)
		cfgwCheck(t, f, map[string]string{"path": "/etc/swanctl/swanctl.conf", "change": "modified", "sha256_of": "redacted_content"})
		if strings.Contains(strings.Join(f.Evidence, "\n"), "0sOtherSecretValue1234") {
			t.Error("the new secret is in the evidence")
		}
		if !cfgwHas(f.Evidence, "-      secret = <redacted:") || !cfgwHas(f.Evidence, "+      secret = <redacted:") || !cfgwHas(f.Evidence, "+      aggressive = yes") {
			t.Errorf("diff %q: want the secret line's tags changed and the added line", f.Evidence)
		}
		if f.Labels["old_sha256"] == sha256Hex([]byte(before)) || f.Labels["new_sha256"] == sha256Hex([]byte(after)) || f.Labels["old_sha256"] == f.Labels["new_sha256"] {
			t.Errorf("hashes %s → %s: a file with secrets must show the redacted content's hashes, and they must differ", f.Labels["old_sha256"], f.Labels["new_sha256"])
		}
		if !strings.Contains(f.Summary, "+2 −1") {
			t.Errorf("summary %q, want +2 −1 (the secret line replaced, a line added)", f.Summary)
		}
	})

	t.Run("sshd_config replaced by rename", func(t *testing.T) {
		before := root.read("etc/ssh/sshd_config")
		after := strings.Replace(before, "PermitRootLogin no", "PermitRootLogin yes", 1)
		root.replace("etc/ssh/sshd_config", after)
		f := c.next(t, clk)
		cfgwCheck(t, f, map[string]string{"path": "/etc/ssh/sshd_config", "change": "modified", "sha256_of": "file",
			"old_sha256": sha256Hex([]byte(before)), "new_sha256": sha256Hex([]byte(after))})
		want := []string{"--- a/etc/ssh/sshd_config", "+++ b/etc/ssh/sshd_config", "@@ -1,4 +1,4 @@",
			" Include /etc/ssh/sshd_config.d/*.conf", "-PermitRootLogin no", "+PermitRootLogin yes", " PasswordAuthentication no", " UsePAM yes"}
		if !slices.Equal(f.Evidence, want) {
			t.Errorf("diff = %q\nwant %q", f.Evidence, want)
		}
	})

	t.Run("sudoers made writable", func(t *testing.T) {
		if err := os.Chmod(root.path("etc/sudoers"), 0o666); err != nil {
			t.Fatal(err)
		}
		f := c.next(t, clk)
		cfgwCheck(t, f, map[string]string{"path": "/etc/sudoers", "change": "metadata", "old_mode": "0440", "new_mode": "0666"})
	})

	t.Run("authorized_keys created for a new user", func(t *testing.T) {
		root.write("home/mallory/.ssh/authorized_keys", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl mallory@laptop\n", 0o600)
		f := c.next(t, clk)
		cfgwCheck(t, f, map[string]string{"path": "/home/mallory/.ssh/authorized_keys", "change": "created", "new_mode": "0600"})
		if len(f.Evidence) < 4 || f.Evidence[0] != "--- /dev/null" || !strings.HasPrefix(f.Evidence[3], "+ssh-ed25519 ") {
			t.Errorf("diff = %q, want the whole new file added", f.Evidence)
		}
	})

	t.Run("root's authorized_keys where /root did not exist", func(t *testing.T) {
		root.write("root/.ssh/authorized_keys", "ssh-rsa AAAAB3NzaC1yc2E root@elsewhere\n", 0o600)
		f := c.next(t, clk)
		cfgwCheck(t, f, map[string]string{"path": "/root/.ssh/authorized_keys", "change": "created"})
	})

	t.Run("WireGuard config deleted", func(t *testing.T) {
		if err := os.Remove(root.path("etc/wireguard/wg0.conf")); err != nil {
			t.Fatal(err)
		}
		f := c.next(t, clk)
		cfgwCheck(t, f, map[string]string{"path": "/etc/wireguard/wg0.conf", "change": "deleted", "sha256_of": "redacted_content"})
		if f.Evidence[1] != "+++ /dev/null" || !cfgwHas(f.Evidence, "-PrivateKey = <redacted:") {
			t.Errorf("diff = %q, want every line removed, the key redacted", f.Evidence)
		}
	})

	t.Run("two quick writes are one change", func(t *testing.T) {
		base := root.read("etc/ssh/sshd_config")
		root.write("etc/ssh/sshd_config", base+"# being edited\n", 0o644)
		root.write("etc/ssh/sshd_config", base+"AllowUsers admin\n", 0o644)
		f := c.next(t, clk)
		cfgwCheck(t, f, map[string]string{"path": "/etc/ssh/sshd_config", "change": "modified"})
		if cfgwHas(f.Evidence, "being edited") || !cfgwHas(f.Evidence, "+AllowUsers admin") {
			t.Errorf("diff = %q, want only the final content", f.Evidence)
		}
		if n := c.quiet(t, clk); n != 0 {
			t.Errorf("a rescan after the burst made %d findings, want 0: %+v", n, c.findings()[len(c.findings())-n:])
		}
	})

	t.Run("files outside the watched paths", func(t *testing.T) {
		root.write("etc/hostname", "gw-osaka\n", 0o644)
		root.write("home/mallory/.bashrc", "alias ls='rm -rf'\n", 0o644)
		if n := c.quiet(t, clk); n != 0 {
			t.Errorf("a look after unwatched changes made %d findings, want 0", n)
		}
	})

	if err := c.stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	for _, f := range c.findings() {
		cfgwNoSecrets(t, f)
	}
	cfgwStateHasNoSecrets(t, state)
}

// cfgwStateHasNoSecrets checks the kept copies: private, and without a
// single fixture secret.
func cfgwStateHasNoSecrets(t *testing.T, state string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(filepath.Join(state, ConfigStateDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: mode %v, want 0700", p, fi.Mode().Perm())
			}
			return nil
		}
		files++
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range cfgwSecrets {
			if strings.Contains(string(data), s) {
				t.Errorf("%s keeps the secret %q", p, s)
			}
		}
		return nil
	})
	if err != nil || files < 3 {
		t.Fatalf("walking the state: %v (%d files)", err, files)
	}
}

// TestConfigWatchWhileDown: a change made while the agent was stopped is
// reported when it starts; a path new to the configuration is recorded,
// not reported, then watched like the others.
func TestConfigWatchWhileDown(t *testing.T) {
	root := newCfgwRoot(t)
	root.write("etc/nftables.conf", "table inet filter {\n}\n", 0o644)
	clk := clocktest.NewFake(cfgwT0)
	state := t.TempDir()
	paths := []string{"/etc/swanctl", "/etc/ipsec.secrets"}
	c := cfgwStart(t, ConfigWatchConfig{Root: root.root, Paths: paths}, ConfigWatchDeps{StateDir: state, Clock: clk})
	if n := <-c.scans; n != 0 {
		t.Fatalf("first run: %d findings, want 0", n)
	}
	if err := c.stop(); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}

	secrets := root.read("etc/ipsec.secrets")
	root.write("etc/ipsec.secrets", secrets+"@moon.strongswan.org 10.9.9.9 : PSK \"an-added-psk\"\n", 0o600)
	c = cfgwStart(t, ConfigWatchConfig{Root: root.root, Paths: append(paths, "/etc/nftables.conf")}, ConfigWatchDeps{StateDir: state, Clock: clk})
	if n := <-c.scans; n != 1 {
		t.Fatalf("restart after a change: %d findings, want 1", n)
	}
	f := <-c.got
	cfgwCheck(t, f, map[string]string{"path": "/etc/ipsec.secrets", "change": "modified", "sha256_of": "redacted_content"})
	if strings.Contains(strings.Join(f.Evidence, "\n"), "an-added-psk") || !cfgwHas(f.Evidence, "+@moon.strongswan.org 10.9.9.9 : PSK <redacted:") {
		t.Errorf("diff = %q, want the added line with its PSK redacted", f.Evidence)
	}
	// The redaction key outlived the restart: the old secrets' tags match.
	if !strings.Contains(f.Summary, "+1 −0") {
		t.Errorf("summary %q, want +1 −0: only the added line", f.Summary)
	}

	root.replace("etc/nftables.conf", "table inet filter {\n  chain input { type filter hook input priority 0; policy accept; }\n}\n")
	f = c.next(t, clk)
	cfgwCheck(t, f, map[string]string{"path": "/etc/nftables.conf", "change": "modified"})
	cfgwStateHasNoSecrets(t, state)
}

// TestConfigWatchLargeAndBinary: such files are hashed, never kept or
// diffed.
func TestConfigWatchLargeAndBinary(t *testing.T) {
	root := newCfgwRoot(t)
	root.write("etc/swanctl/private/key.der", "\x30\x82\x01\x00binary\x00key", 0o600)
	root.write("etc/swanctl/big.conf", strings.Repeat("x", 100)+"\n", 0o644)
	clk := clocktest.NewFake(cfgwT0)
	c := cfgwStart(t, ConfigWatchConfig{Root: root.root, Paths: []string{"/etc/swanctl"}, MaxFileBytes: 50}, ConfigWatchDeps{StateDir: t.TempDir(), Clock: clk})
	<-c.scans
	root.write("etc/swanctl/private/key.der", "\x30\x82\x01\x00other\x00key", 0o600)
	f := c.next(t, clk)
	cfgwCheck(t, f, map[string]string{"path": "/etc/swanctl/private/key.der", "change": "modified"})
	if len(f.Evidence) != 1 || !strings.Contains(f.Summary, "no diff") || strings.Contains(f.Evidence[0], "other") {
		t.Errorf("binary change: summary %q evidence %q, want hashes only", f.Summary, f.Evidence)
	}
	root.write("etc/swanctl/big.conf", strings.Repeat("y", 100)+"\n", 0o644)
	f = c.next(t, clk)
	if f.Labels["path"] != "/etc/swanctl/big.conf" || !strings.Contains(f.Summary, "no diff") {
		t.Errorf("large change: %+v, want hashes only", f)
	}
}

// TestConfigWatchLostState: kept copies deleted or corrupted (perhaps to
// hide a change) are reported, never taken for a first run.
func TestConfigWatchLostState(t *testing.T) {
	for name, damage := range map[string]func(index string) error{
		"deleted":   os.Remove,
		"corrupted": func(index string) error { return os.WriteFile(index, []byte("{not json"), 0o600) },
	} {
		t.Run(name, func(t *testing.T) {
			root := newCfgwRoot(t)
			clk := clocktest.NewFake(cfgwT0)
			state := t.TempDir()
			cfg := ConfigWatchConfig{Root: root.root, Paths: []string{"/etc/ssh/sshd_config"}}
			c := cfgwStart(t, cfg, ConfigWatchDeps{StateDir: state, Clock: clk})
			<-c.scans
			_ = c.stop()
			if err := damage(filepath.Join(state, ConfigStateDir, configIndexFile)); err != nil {
				t.Fatal(err)
			}
			c = cfgwStart(t, cfg, ConfigWatchDeps{StateDir: state, Clock: clk})
			if n := <-c.scans; n != 1 {
				t.Fatalf("restart with the index %s: %d findings, want 1", name, n)
			}
			f := <-c.got
			if f.Kind != KindConfigChange || f.Labels["change"] != "state_lost" || f.Severity != SeverityMedium {
				t.Errorf("finding %+v, want a medium config_change saying the state was lost", f)
			}
			// Watching goes on from the new record.
			root.replace("etc/ssh/sshd_config", "PermitRootLogin yes\n")
			f = c.next(t, clk)
			cfgwCheck(t, f, map[string]string{"path": "/etc/ssh/sshd_config", "change": "modified"})
		})
	}
}

func TestConfigModeString(t *testing.T) {
	tests := map[fs.FileMode]string{
		0o644:                                 "0644",
		0o440:                                 "0440",
		fs.ModeSetuid | 0o755:                 "4755",
		fs.ModeSetgid | fs.ModeSticky | 0o775: "3775",
		fs.ModeSymlink | 0o777:                "symlink",
	}
	for m, want := range tests {
		if got := modeString(m); got != want {
			t.Errorf("modeString(%v) = %q, want %q", m, got, want)
		}
	}
}

// BenchmarkConfigLook is one look at an unchanged fake root (every file
// stat'ed, none read).
func BenchmarkConfigLook(b *testing.B) {
	root := b.TempDir()
	for i := range 200 {
		p := filepath.Join(root, "etc/systemd/system", "unit"+string(rune('a'+i%26))+strings.Repeat("x", i/26)+".service")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("[Service]\nExecStart=/bin/true\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	s, err := NewConfigWatch(ConfigWatchConfig{Root: root}, ConfigWatchDeps{StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	r, err := s.(*ConfigWatch).begin()
	if err != nil {
		b.Fatal(err)
	}
	defer r.close()
	r.look(func(wire.Finding) {})
	for b.Loop() {
		r.look(func(wire.Finding) { b.Fatal("a finding from an unchanged root") })
	}
}
