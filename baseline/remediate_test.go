package baseline

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

func TestRemediateSysctl(t *testing.T) {
	b, _ := Default()
	c, _ := b.Check("sysctl-rp-filter")
	f := newGatewayFixture(t)
	f.edit("/etc/sysctl.d/60-gateway.conf", "net.ipv4.conf.all.rp_filter = 2\nnet.ipv4.conf.default.rp_filter = 2\n", "")
	f.setRuntime("net.ipv4.conf.all.rp_filter", "0")
	f.write(DropInPath, "# Written by Warden's baseline remediation.\nnet.ipv4.conf.all.accept_redirects = 0\n")

	out, err := Remediate(t.Context(), c, f.env())
	if err != nil {
		t.Fatal(err)
	}
	if out.Before.Status != StatusFail || out.After.Status != StatusPass || !out.Changed {
		t.Fatalf("outcome %+v", out)
	}
	want := []string{
		"set net.ipv4.conf.all.rp_filter at runtime: 0 → 2",
		"wrote net.ipv4.conf.all.rp_filter, net.ipv4.conf.default.rp_filter = 2 to " + DropInPath,
	}
	if strings.Join(out.Steps, "\n") != strings.Join(want, "\n") {
		t.Errorf("steps %q, want %q", out.Steps, want)
	}
	if got := strings.TrimSpace(f.read("/proc/sys/net/ipv4/conf/all/rp_filter")); got != "2" {
		t.Errorf("runtime rp_filter = %q", got)
	}
	dropIn := f.read(DropInPath)
	for _, line := range []string{"net.ipv4.conf.all.accept_redirects = 0", "net.ipv4.conf.all.rp_filter = 2", "net.ipv4.conf.default.rp_filter = 2"} {
		if !strings.Contains(dropIn, line+"\n") {
			t.Errorf("drop-in lost or lacks %q:\n%s", line, dropIn)
		}
	}
	if !evidenceMentions(out.After.Evidence, DropInPath+":") {
		t.Errorf("the passing verdict does not rest on the drop-in: %+v", out.After.Evidence)
	}

	// Idempotent: a second run finds nothing to do.
	again, err := Remediate(t.Context(), c, f.env())
	if err != nil || again.Changed || len(again.Steps) != 0 || again.After.Status != StatusPass {
		t.Errorf("second run: %+v, %v", again, err)
	}
	if f.read(DropInPath) != dropIn {
		t.Error("a second run rewrote the drop-in")
	}
}

func TestRemediateRefusals(t *testing.T) {
	b, _ := Default()
	f := newGatewayFixture(t)
	for _, id := range []string{"sysctl-ip-forward", "ssh-permit-root-login", "fw-default-policy"} {
		c, _ := b.Check(id)
		if _, err := Remediate(t.Context(), c, f.env()); !errors.Is(err, ErrNoSafeRemediation) {
			t.Errorf("%s: error = %v, want ErrNoSafeRemediation", id, err)
		}
	}

	c, _ := b.Check("sysctl-send-redirects")
	f.setRuntime("net.ipv4.conf.all.send_redirects", "1")
	env := f.env()
	env.Runtime = readOnlyRuntime{ProcRuntime{Root: f.root}}
	if _, err := Remediate(t.Context(), c, env); err == nil || !strings.Contains(err.Error(), "cannot write sysctl values") {
		t.Errorf("error = %v, want a missing writer", err)
	}
}

// readOnlyRuntime hides ProcRuntime's SysctlWriter.
type readOnlyRuntime struct{ r ProcRuntime }

func (r readOnlyRuntime) Sysctl(ctx context.Context, key string) (string, error) {
	return r.r.Sysctl(ctx, key)
}

func (r readOnlyRuntime) Listeners(ctx context.Context) ([]Listener, error) {
	return r.r.Listeners(ctx)
}

// TestRemediateOverriddenByLaterFile: a sysctl.d file whose name sorts
// after the drop-in is applied after it, so the remediation cannot hold
// across a reboot; Remediate says so instead of claiming success.
func TestRemediateOverriddenByLaterFile(t *testing.T) {
	b, _ := Default()
	c, _ := b.Check("sysctl-send-redirects")
	f := newGatewayFixture(t)
	f.write("/usr/lib/sysctl.d/zz-vendor.conf", "net.ipv4.conf.all.send_redirects = 1\n")
	f.setRuntime("net.ipv4.conf.all.send_redirects", "1")

	out, err := Remediate(t.Context(), c, f.env())
	if !errors.Is(err, ErrRemediationIncomplete) {
		t.Fatalf("error = %v, want ErrRemediationIncomplete", err)
	}
	if out.After.Status != StatusFail || !evidenceMentions(out.After.Evidence, "/usr/lib/sysctl.d/zz-vendor.conf:1") {
		t.Errorf("after: %+v", out.After)
	}
	if got := strings.TrimSpace(f.read("/proc/sys/net/ipv4/conf/all/send_redirects")); got != "0" {
		t.Errorf("runtime value %q, want 0 (the safe part still applies)", got)
	}
}

// TestRemediateUnlinkedSysctlConf: without Debian's 99-sysctl.conf link,
// systemd-sysctl never reads /etc/sysctl.conf, so what it says cannot undo
// the drop-in and the remediation holds.
func TestRemediateUnlinkedSysctlConf(t *testing.T) {
	b, _ := Default()
	c, _ := b.Check("sysctl-send-redirects")
	f := newGatewayFixture(t)
	f.remove("/etc/sysctl.d/99-sysctl.conf")
	f.appendTo("/etc/sysctl.conf", "net.ipv4.conf.all.send_redirects = 1\n")
	f.edit("/etc/sysctl.d/60-gateway.conf", "net.ipv4.conf.all.send_redirects = 0\n", "")
	f.setRuntime("net.ipv4.conf.all.send_redirects", "1")

	out, err := Remediate(t.Context(), c, f.env())
	if err != nil {
		t.Fatalf("error = %v; after: %+v", err, out.After)
	}
	if out.After.Status != StatusPass || !evidenceMentions(out.After.Evidence, DropInPath+":") {
		t.Errorf("after: %+v", out.After)
	}
}

// TestRemediateStaysInsideRoot: with /etc/sysctl.d an absolute symlink in
// a mounted root, the drop-in is written where the gateway will read it
// (inside the root), never through the link onto the host.
func TestRemediateStaysInsideRoot(t *testing.T) {
	b, _ := Default()
	c, _ := b.Check("sysctl-send-redirects")
	f := newGatewayFixture(t)
	hostDir := filepath.Join(t.TempDir(), "host-sysctl.d")
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The gateway keeps its sysctl.d under /srv/sysctl.d; on the host the
	// same absolute path is hostDir.
	f.remove("/etc/sysctl.d")
	f.write(hostDir+"/60-gateway.conf", goodSysctl)
	f.symlink("../sysctl.conf", hostDir+"/99-sysctl.conf")
	f.symlink(hostDir, "/etc/sysctl.d")
	f.setRuntime("net.ipv4.conf.all.send_redirects", "1")
	f.edit(hostDir+"/60-gateway.conf", "net.ipv4.conf.all.send_redirects = 0\n", "")

	if _, err := Remediate(t.Context(), c, f.env()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(hostDir, path.Base(DropInPath))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the drop-in was written on the host through the link: %v", err)
	}
	if !strings.Contains(f.read(hostDir+"/"+path.Base(DropInPath)), "net.ipv4.conf.all.send_redirects = 0") {
		t.Error("the drop-in is not inside the root")
	}
}
