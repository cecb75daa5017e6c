package baseline

import (
	"strings"
	"testing"

	"github.com/warden-ir/warden/internal/clock/clocktest"
)

// TestOfflineEnv evaluates the shipped baseline against a tree that is not
// running: files are judged, the running kernel is never read (the
// fixture's /proc is deliberately wrong), and what needs it is skipped as
// not applicable offline.
func TestOfflineEnv(t *testing.T) {
	b, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		status Status
		says   string
	}
	good := map[string]want{
		"sysctl-accept-source-route": {StatusSkip, "not applicable offline"},
		"sysctl-tcp-syncookies":      {StatusSkip, "not applicable offline"},
		"fw-default-policy":          {StatusSkip, "not applicable offline"},
		"fw-listeners":               {StatusSkip, "not applicable offline"},
		"integrity-authorized-keys":  {StatusSkip, "no recorded manifest"},
		"integrity-binaries":         {StatusSkip, "no recorded manifest"},
		"integrity-configs":          {StatusSkip, "no recorded manifest"},
	}
	tests := map[string]struct {
		setup func(f *gatewayFixture)
		// changed lists the checks whose verdict differs from the good
		// image's.
		changed map[string]want
	}{
		"a good image passes what can be judged offline": {},
		"runtime values are not read": {
			setup: func(f *gatewayFixture) {
				f.setRuntime("net.ipv4.ip_forward", "0")
				f.setRuntime("net.ipv4.tcp_syncookies", "0")
				f.remove("/proc/net")
			},
		},
		"a boot file that turns forwarding off fails": {
			setup: func(f *gatewayFixture) {
				f.edit("/etc/sysctl.d/60-gateway.conf", "net.ipv4.ip_forward = 1", "net.ipv4.ip_forward = 0")
			},
			changed: map[string]want{"sysctl-ip-forward": {StatusFail, "net.ipv4.ip_forward is set to 0 at boot by /etc/sysctl.d/60-gateway.conf:2"}},
		},
		"a key only in an unlinked sysctl.conf is not set at boot": {
			setup: func(f *gatewayFixture) {
				f.remove("/etc/sysctl.d/99-sysctl.conf")
				f.edit("/etc/sysctl.d/60-gateway.conf", "net.ipv4.conf.all.log_martians = 1\n", "")
				f.appendTo("/etc/sysctl.conf", "net.ipv4.conf.all.log_martians = 1\n")
			},
			changed: map[string]want{"sysctl-log-martians": {StatusFail, "no boot-time file sets net.ipv4.conf.all.log_martians"}},
		},
		"a key the baseline does not require at boot, set wrong at boot, fails": {
			setup: func(f *gatewayFixture) {
				f.appendTo("/etc/sysctl.conf", "net.ipv4.tcp_syncookies = 0\n")
			},
			changed: map[string]want{"sysctl-tcp-syncookies": {StatusFail, "set to 0 at boot by /etc/sysctl.conf:6 (through /etc/sysctl.d/99-sysctl.conf)"}},
		},
		"sshd in the image": {
			setup: func(f *gatewayFixture) {
				f.edit("/etc/ssh/sshd_config.d/10-hardening.conf", "MaxAuthTries 3", "MaxAuthTries 0")
			},
			changed: map[string]want{"ssh-max-auth-tries": {StatusFail, "is invalid"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newGatewayFixture(t)
			if tc.setup != nil {
				tc.setup(f)
			}
			env := OfflineEnv(f.root)
			env.Clock = clocktest.NewFake(fixtureNow)
			rep, err := b.Evaluate(t.Context(), env)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rep.Results {
				w, ok := tc.changed[r.ID]
				if !ok {
					w, ok = good[r.ID]
				}
				if !ok {
					w = want{status: StatusPass}
				}
				if r.Status != w.status || !strings.Contains(r.Message, w.says) {
					t.Errorf("%s = %s %q, want %s saying %q\n%+v", r.ID, r.Status, r.Message, w.status, w.says, r.Evidence)
				}
				if evidenceMentions(r.Evidence, "runtime /proc") && !evidenceMentions(r.Evidence, "not read (offline evaluation)") {
					t.Errorf("%s read the running kernel: %+v", r.ID, r.Evidence)
				}
			}
		})
	}
}
