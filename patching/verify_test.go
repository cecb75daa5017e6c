package patching_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/patching"
)

func TestVerify(t *testing.T) {
	root := fakeRoot(t, map[string]string{"openssl": "3.0.15-1~deb12u1", "libssl3": "3.0.11-1~deb12u1"})
	healthy := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("charon not running") }
	tests := map[string]struct {
		targets    []patching.Target
		hooks      patching.VerifyHooks
		wantFailed []string // names of failed checks
		wantChecks int
	}{
		"at target": {
			targets:    []patching.Target{{Name: "openssl", Version: "3.0.15-1~deb12u1"}},
			wantChecks: 1,
		},
		"above target": {
			targets:    []patching.Target{{Name: "openssl", Version: "3.0.11"}},
			wantChecks: 1,
		},
		"below target": {
			targets:    []patching.Target{{Name: "openssl", Version: "3.0.15-1~deb12u1"}, {Name: "libssl3", Version: "3.0.15-1~deb12u1"}},
			wantFailed: []string{"version libssl3"}, wantChecks: 2,
		},
		"not installed": {
			targets:    []patching.Target{{Name: "strongswan", Version: "5.9.8-5"}},
			wantFailed: []string{"version strongswan"}, wantChecks: 1,
		},
		"newest: installed is enough": {
			targets:    []patching.Target{{Name: "libssl3"}},
			wantChecks: 1,
		},
		"hooks all pass": {
			targets:    []patching.Target{{Name: "openssl", Version: "3.0.15-1~deb12u1"}},
			hooks:      patching.VerifyHooks{Services: healthy, Tunnels: healthy, Baseline: healthy},
			wantChecks: 4,
		},
		"tunnels not back": {
			targets:    []patching.Target{{Name: "openssl", Version: "3.0.15-1~deb12u1"}},
			hooks:      patching.VerifyHooks{Services: healthy, Tunnels: down},
			wantFailed: []string{"tunnels"}, wantChecks: 3,
		},
		"no targets, hooks only": {
			hooks:      patching.VerifyHooks{Baseline: down},
			wantFailed: []string{"baseline"}, wantChecks: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			checks, err := patching.Verify(t.Context(), root, tc.targets, tc.hooks)
			if len(checks) != tc.wantChecks {
				t.Errorf("%d checks %+v, want %d", len(checks), checks, tc.wantChecks)
			}
			var failed []string
			for _, c := range checks {
				if !c.Passed {
					failed = append(failed, c.Name)
					if c.Message == "" {
						t.Errorf("failed check %q has no message", c.Name)
					}
				}
			}
			if strings.Join(failed, ",") != strings.Join(tc.wantFailed, ",") {
				t.Errorf("failed checks %v, want %v", failed, tc.wantFailed)
			}
			if len(tc.wantFailed) > 0 && !errors.Is(err, actions.ErrNotVerified) {
				t.Errorf("error %v, want ErrNotVerified", err)
			}
			if len(tc.wantFailed) == 0 && err != nil {
				t.Errorf("error %v, want none", err)
			}
		})
	}
}

func TestVerifyEvidence(t *testing.T) {
	root := fakeRoot(t, map[string]string{"libssl3": "3.0.11-1~deb12u1"})
	checks, err := patching.Verify(t.Context(), root, []patching.Target{{Name: "libssl3", Version: "3.0.15-1~deb12u1"}}, patching.VerifyHooks{})
	if !errors.Is(err, actions.ErrNotVerified) || len(checks) != 1 {
		t.Fatalf("Verify = %+v, %v", checks, err)
	}
	c := checks[0]
	if c.Expected != "≥ 3.0.15-1~deb12u1" || c.Observed != "libssl3:amd64 3.0.11-1~deb12u1" || !strings.Contains(c.Message, "3.0.11-1~deb12u1 < 3.0.15-1~deb12u1") {
		t.Errorf("check evidence %+v", c)
	}
	if !strings.Contains(err.Error(), "libssl3") {
		t.Errorf("error %q does not name the package", err)
	}
}

func TestVerifyUnreadable(t *testing.T) {
	_, err := patching.Verify(t.Context(), t.TempDir(), []patching.Target{{Name: "openssl", Version: "1"}}, patching.VerifyHooks{})
	if err == nil || errors.Is(err, actions.ErrNotVerified) {
		t.Errorf("Verify of a root without dpkg database = %v; want a read error, not ErrNotVerified", err)
	}
	if _, err := patching.Verify(t.Context(), "relative", nil, patching.VerifyHooks{}); !errors.Is(err, patching.ErrInvalidRequest) {
		t.Errorf("Verify of a relative root = %v; want ErrInvalidRequest", err)
	}
}
