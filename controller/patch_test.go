package controller

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/patching"
	"github.com/warden-ir/warden/store"
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

func waitWave(t *testing.T, c *Controller, id string) store.PatchWave {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		w, err := c.PatchWaveOf(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if w.Terminal() {
			return w
		}
		if time.Now().After(deadline) {
			t.Fatalf("wave %s still %s", id, w.State)
		}
	}
}

func TestStartPatchWaveRunsInTheBackground(t *testing.T) {
	h := newHarness(t, nil)
	req := PatchWaveRequest{Gateways: []string{"gw-hq", "gw-osaka", "gw-dc"}, Packages: "openssh-server", Canary: 1, WaveSize: 2, Actor: "alice"}
	if _, err := h.c.StartPatchWave(t.Context(), req); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("before Start: %v, want ErrNotRunning", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	h.c.Start(ctx)
	defer func() { cancel(); h.c.Wait() }()
	if _, err := h.c.StartPatchWave(t.Context(), PatchWaveRequest{Gateways: []string{"*"}, Packages: "x", Actor: "a"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a wildcard wave: %v", err)
	}
	w, err := h.c.StartPatchWave(t.Context(), req)
	if err != nil || w.State != store.WaveRunning {
		t.Fatalf("StartPatchWave = %+v, %v", w, err)
	}
	w = waitWave(t, h.c, w.ID)
	var rep patching.WaveReport
	if err := json.Unmarshal(w.Report, &rep); err != nil {
		t.Fatal(err)
	}
	if w.State != store.WaveSucceeded || len(rep.Patched) != 3 || h.acts["patch"].calls() != 3 {
		t.Fatalf("wave %s, report %+v, patch applied %d times", w.State, rep, h.acts["patch"].calls())
	}
}

// A wave accepted by a controller that stopped before it ended is resumed
// by the next one: nothing accepted is lost.
func TestPatchWaveResumesAfterARestart(t *testing.T) {
	h := newHarness(t, nil)
	req := PatchWaveRequest{Gateways: []string{"gw-hq", "gw-osaka"}, Packages: "openssh-server", Canary: 1, WaveSize: 1, Actor: "alice"}
	raw, _ := json.Marshal(req)
	now := time.Now()
	left := store.PatchWave{ID: "wave-left-running", Actor: "alice", Request: raw, State: store.WaveRunning, CreatedAt: now, UpdatedAt: now}
	if err := h.st.Tx(t.Context(), func(tx store.Tx) error { return tx.InsertPatchWave(t.Context(), left) }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	h.c.Start(ctx)
	defer func() { cancel(); h.c.Wait() }()
	if w := waitWave(t, h.c, left.ID); w.State != store.WaveSucceeded || h.acts["patch"].calls() != 2 {
		t.Fatalf("resumed wave %s (%s), patch applied %d times", w.State, w.Error, h.acts["patch"].calls())
	}
}
