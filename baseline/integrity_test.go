package baseline

import (
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestRecord(t *testing.T) {
	f := newGatewayFixture(t)
	f.write("/etc/sudoers.d/.hidden", "x\n")
	if err := os.MkdirAll(f.host("/etc/sudoers.d/subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.symlink("xtables-nft-multi", "/usr/sbin/iptables")
	f.chmod("/usr/bin/su", 0o755|os.ModeSetuid)
	m, err := Record(f.root, []string{"/etc/sudoers.d/*", "/etc/ld.so.preload", "/usr/sbin/iptables", "/usr/bin/su", "/etc/sudoers.d/*"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/etc/sudoers.d/*", "/etc/ld.so.preload", "/usr/sbin/iptables", "/usr/bin/su"}; !slices.Equal(m.Patterns, want) {
		t.Errorf("patterns %q, want %q", m.Patterns, want)
	}
	files := slices.Sorted(maps.Keys(m.Files))
	if want := []string{"/etc/sudoers.d/README", "/usr/bin/su", "/usr/sbin/iptables"}; !slices.Equal(files, want) {
		t.Errorf("files %q, want %q (no dot files, no directories, absent paths only as patterns)", files, want)
	}
	if m.Files["/usr/sbin/iptables"].SHA256 != sha256Hex("ELF xtables") {
		t.Error("a symlink is recorded by its target's content")
	}
	if m.Files["/usr/bin/su"].Mode != "4755" || m.Files["/etc/sudoers.d/README"].Mode != "0644" {
		t.Errorf("modes %+v", m.Files)
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back Manifest
	if err := json.Unmarshal(data, &back); err != nil || !slices.Equal(back.Patterns, m.Patterns) || back.Files["/usr/bin/su"] != m.Files["/usr/bin/su"] {
		t.Errorf("manifest does not survive JSON: %v", err)
	}
	if _, err := Record(f.root, []string{"etc/passwd"}); err == nil {
		t.Error("recorded a relative path")
	}
}

func TestIntegrityPathsFollowAuthorizedKeysFile(t *testing.T) {
	b, _ := Default()
	f := newGatewayFixture(t)
	paths, err := b.IntegrityPaths(f.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"/root/.ssh/authorized_keys", "/root/.ssh/authorized_keys2", "/usr/sbin/sshd", "/etc/ld.so.preload"} {
		if !slices.Contains(paths, want) {
			t.Errorf("IntegrityPaths lacks %s", want)
		}
	}
	f.appendTo("/etc/ssh/sshd_config.d/10-hardening.conf", "AuthorizedKeysFile /etc/ssh/keys/%u %h/.ssh/authorized_keys\n")
	paths, err = b.IntegrityPaths(f.root)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(paths, "/etc/ssh/keys/root") || slices.Contains(paths, "/root/.ssh/authorized_keys2") {
		t.Errorf("paths %q do not follow AuthorizedKeysFile", paths)
	}
	// A key file appearing at the configured place after recording fails.
	f.record(b)
	f.write("/etc/ssh/keys/root", "ssh-ed25519 AAAAC3attacker\n")
	rep, err := b.Evaluate(t.Context(), f.env())
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := rep.Result("integrity-authorized-keys"); r.Status != StatusFail {
		t.Errorf("%s: %s", r.Status, r.Message)
	}
}

func TestIntegrityWithoutManifest(t *testing.T) {
	b, _ := Default()
	f := newGatewayFixture(t)
	rep, err := b.Evaluate(t.Context(), f.env())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"integrity-authorized-keys", "integrity-binaries", "integrity-configs"} {
		if r, _ := rep.Result(id); r.Status != StatusSkip || !strings.Contains(r.Message, "no recorded manifest") {
			t.Errorf("%s: %s %q", id, r.Status, r.Message)
		}
	}
	if r, _ := rep.Result("integrity-uid0"); r.Status != StatusPass {
		t.Errorf("uid0 needs no manifest: %s", r.Status)
	}
	if !rep.Passed || rep.Counts.Skip != 3 {
		t.Errorf("Passed=%v counts=%+v", rep.Passed, rep.Counts)
	}
}

func TestIntegrityManifestOlderThanBaseline(t *testing.T) {
	b, _ := Default()
	f := newGatewayFixture(t)
	m, err := Record(f.root, []string{"/usr/sbin/sshd"})
	if err != nil {
		t.Fatal(err)
	}
	f.recorded = &m
	rep, err := b.Evaluate(t.Context(), f.env())
	if err != nil {
		t.Fatal(err)
	}
	bins, _ := rep.Result("integrity-binaries")
	if bins.Status != StatusPass || !evidenceMentions(bins.Evidence, "not in the recorded manifest") {
		t.Errorf("binaries: %s %+v", bins.Status, bins.Evidence)
	}
	if cfg, _ := rep.Result("integrity-configs"); cfg.Status != StatusSkip {
		t.Errorf("configs: %s, want skip when nothing was recorded", cfg.Status)
	}
	// An existing authorized_keys the manifest never covered counts as
	// appeared: a key file where none was recorded.
	if keys, _ := rep.Result("integrity-authorized-keys"); keys.Status != StatusFail {
		t.Errorf("authorized keys: %s", keys.Status)
	}
}
