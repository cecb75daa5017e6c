package controller

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/warden-ir/warden/actions"
)

func TestPatchWave(t *testing.T) {
	tests := map[string]struct {
		failures    []error
		wantPatched []string
		wantFailed  []string
		wantErr     bool
	}{
		"canary then waves": {nil, []string{"gw-hq", "gw-osaka", "gw-dc"}, nil, false},
		"failing canary stops the wave": {[]error{actions.Terminal(errors.New("unmet dependency"))},
			nil, []string{"gw-hq"}, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.acts["patch"].failures = tc.failures
			ctx, cancel := context.WithCancel(t.Context())
			h.c.Start(ctx)
			defer func() { cancel(); h.c.Wait() }()
			rep, err := h.c.PatchWave(t.Context(), PatchWaveRequest{Gateways: []string{"gw-hq", "gw-osaka", "gw-dc"},
				Packages: "openssh-server=1:9.2p1-2+deb12u5", Canary: 1, WaveSize: 2, Actor: "alice"})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v", err)
			}
			if strings.Join(rep.Patched, ",") != strings.Join(tc.wantPatched, ",") || strings.Join(rep.Failed, ",") != strings.Join(tc.wantFailed, ",") {
				t.Fatalf("patched %v failed %v (reason %s)", rep.Patched, rep.Failed, rep.Reason)
			}
			if tc.wantErr && (len(rep.NotTouched) != 2 || h.acts["patch"].calls() != 0) {
				t.Fatalf("after a failing canary: not touched %v, patch applied %d times", rep.NotTouched, h.acts["patch"].calls())
			}
			if !tc.wantErr && h.acts["patch"].calls() != 3 {
				t.Fatalf("patch applied %d times", h.acts["patch"].calls())
			}
		})
	}
}

func TestPatchWaveRefusesVagueTargets(t *testing.T) {
	h := newHarness(t, nil)
	for _, req := range []PatchWaveRequest{
		{Packages: "x", Actor: "a"},
		{Gateways: []string{"*"}, Packages: "x", Actor: "a"},
		{Gateways: []string{"gw-hq"}, Actor: "a"},
		{Gateways: []string{"gw-hq"}, Packages: "x"},
	} {
		if _, err := h.c.PatchWave(t.Context(), req); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", req, err)
		}
	}
}
