package patching_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/warden-ir/warden/internal/testsupport"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/patching"
)

func TestPlanWaves(t *testing.T) {
	gws := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("gw%d", i+1)
		}
		return out
	}
	tests := map[string]struct {
		gateways         []string
		canary, waveSize int
		want             [][]string
	}{
		"defaults":                      {gws(7), 0, 0, [][]string{{"gw1"}, {"gw2", "gw3", "gw4", "gw5", "gw6"}, {"gw7"}}},
		"canary of two, waves of three": {gws(8), 2, 3, [][]string{{"gw1", "gw2"}, {"gw3", "gw4", "gw5"}, {"gw6", "gw7", "gw8"}}},
		"single gateway":                {gws(1), 0, 0, [][]string{{"gw1"}}},
		"canary larger than the fleet":  {gws(2), 5, 1, [][]string{{"gw1", "gw2"}}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := patching.PlanWaves(tc.gateways, tc.canary, tc.waveSize)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("waves %v, want %v", got, tc.want)
			}
		})
	}
	bad := map[string]struct {
		gateways         []string
		canary, waveSize int
	}{
		"no gateways":     {nil, 1, 1},
		"empty name":      {[]string{"gw1", ""}, 1, 1},
		"duplicate":       {[]string{"gw1", "gw2", "gw1"}, 1, 1},
		"negative canary": {[]string{"gw1"}, -1, 1},
		"negative wave":   {[]string{"gw1"}, 1, -1},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := patching.PlanWaves(tc.gateways, tc.canary, tc.waveSize); !errors.Is(err, patching.ErrInvalidRequest) {
				t.Errorf("PlanWaves = %v; want ErrInvalidRequest", err)
			}
		})
	}
}

// fleet is a fake fleet: per-gateway failures, and a log of what ran.
type fleet struct {
	mu          sync.Mutex
	events      []string
	applyErr    map[string]error
	verifyErr   map[string]error
	beforeApply func(ctx context.Context, gw string)
}

func (f *fleet) record(e string) {
	f.mu.Lock()
	f.events = append(f.events, e)
	f.mu.Unlock()
}

func (f *fleet) options() patching.WaveOptions {
	return patching.WaveOptions{
		Apply: func(ctx context.Context, gw string) (patching.Result, error) {
			f.record("apply " + gw)
			if f.beforeApply != nil {
				f.beforeApply(ctx, gw)
			}
			if err := f.applyErr[gw]; err != nil {
				f.record("failed " + gw)
				return patching.Result{}, err
			}
			return patching.Result{Changed: true, Installed: []patching.Installed{{Name: "openssl:amd64", Before: "1", After: "2"}}}, nil
		},
		Verify: func(ctx context.Context, gw string) error {
			f.record("verify " + gw)
			if err := f.verifyErr[gw]; err != nil {
				f.record("failed " + gw)
				return err
			}
			f.record("done " + gw)
			return nil
		},
	}
}

func (f *fleet) applied() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.events {
		if gw, ok := cutPrefix(e, "apply "); ok {
			out = append(out, gw)
		}
	}
	slices.Sort(out)
	return out
}

func (f *fleet) index(e string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Index(f.events, e)
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return "", false
}

var seven = []string{"gw1", "gw2", "gw3", "gw4", "gw5", "gw6", "gw7"}

func TestRunWavesAllPass(t *testing.T) {
	f := &fleet{}
	opts := f.options()
	opts.Canary, opts.WaveSize = 1, 3
	opts.Clock = testsupport.NewStepClock(time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC), time.Second)
	rep, err := patching.RunWaves(t.Context(), seven, opts)
	if err != nil {
		t.Fatalf("RunWaves: %v", err)
	}
	if !slices.Equal(rep.Patched, seven) || len(rep.Failed) != 0 || len(rep.NotTouched) != 0 {
		t.Errorf("report %+v", rep)
	}
	if rep.StoppedAfterWave != -1 || rep.Reason != "" || rep.Duration <= 0 {
		t.Errorf("report end: stopped after %d, reason %q, duration %v", rep.StoppedAfterWave, rep.Reason, rep.Duration)
	}
	// The canary is applied and verified before any other gateway starts,
	// and each wave is done before the next starts.
	canaryDone := f.index("done gw1")
	for _, gw := range seven[1:] {
		if f.index("apply "+gw) < canaryDone {
			t.Errorf("%s started before the canary was verified", gw)
		}
	}
	for _, first := range []string{"gw2", "gw3", "gw4"} {
		for _, second := range []string{"gw5", "gw6", "gw7"} {
			if f.index("apply "+second) < f.index("done "+first) {
				t.Errorf("%s (wave 2) started before %s (wave 1) was verified", second, first)
			}
		}
	}
	o, ok := rep.Outcome("gw3")
	if !ok || o.Wave != 1 || o.Status != patching.StatusPatched || !o.Result.Changed || o.Duration <= 0 {
		t.Errorf("outcome of gw3 = %+v", o)
	}
}

func TestRunWavesStopsAtFirstFailure(t *testing.T) {
	boom := errors.New("E: unmet dependencies")
	tests := map[string]struct {
		applyErr, verifyErr map[string]error
		concurrency         int
		wantFailed          []string
		wantPhase           string
		wantPatched         []string
		wantApplied         []string
		wantIs              error
		wantStoppedAfter    int
	}{
		"canary fails to apply": {
			applyErr:   map[string]error{"gw1": boom},
			wantFailed: []string{"gw1"}, wantPhase: patching.PhaseApply,
			wantApplied: []string{"gw1"}, wantIs: boom, wantStoppedAfter: 0,
		},
		"canary fails verification": {
			verifyErr:  map[string]error{"gw1": fmt.Errorf("tunnels down: %w", actions.ErrNotVerified)},
			wantFailed: []string{"gw1"}, wantPhase: patching.PhaseVerify,
			wantApplied: []string{"gw1"}, wantIs: actions.ErrNotVerified, wantStoppedAfter: 0,
		},
		"second wave, one at a time": {
			applyErr: map[string]error{"gw3": boom}, concurrency: 1,
			wantFailed: []string{"gw3"}, wantPhase: patching.PhaseApply,
			wantPatched: []string{"gw1", "gw2"}, wantApplied: []string{"gw1", "gw2", "gw3"}, wantIs: boom, wantStoppedAfter: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := &fleet{applyErr: tc.applyErr, verifyErr: tc.verifyErr}
			opts := f.options()
			opts.Canary, opts.WaveSize, opts.Concurrency = 1, 3, tc.concurrency
			rep, err := patching.RunWaves(t.Context(), seven, opts)
			if !errors.Is(err, patching.ErrWaveFailed) || !errors.Is(err, tc.wantIs) {
				t.Fatalf("error %v; want ErrWaveFailed wrapping %v", err, tc.wantIs)
			}
			if !slices.Equal(rep.Failed, tc.wantFailed) || !slices.Equal(rep.Patched, tc.wantPatched) {
				t.Errorf("failed %v patched %v; want %v and %v", rep.Failed, rep.Patched, tc.wantFailed, tc.wantPatched)
			}
			if got := f.applied(); !slices.Equal(got, tc.wantApplied) {
				t.Errorf("applied to %v, want only %v", got, tc.wantApplied)
			}
			var untouched []string
			for _, g := range seven {
				if !slices.Contains(tc.wantApplied, g) {
					untouched = append(untouched, g)
				}
			}
			if !slices.Equal(rep.NotTouched, untouched) {
				t.Errorf("not touched %v, want %v", rep.NotTouched, untouched)
			}
			o, _ := rep.Outcome(tc.wantFailed[0])
			if o.Status != patching.StatusFailed || o.Phase != tc.wantPhase || o.Error == "" {
				t.Errorf("failed outcome %+v", o)
			}
			if rep.StoppedAfterWave != tc.wantStoppedAfter || rep.Reason == "" {
				t.Errorf("stopped after wave %d (%q), want %d", rep.StoppedAfterWave, rep.Reason, tc.wantStoppedAfter)
			}
		})
	}
}

func TestRunWavesLetsRunningSiblingsFinish(t *testing.T) {
	// Wave 1 is gw2 and gw3 together: gw2 fails while gw3 is still
	// installing. gw3 must be left to finish (and is reported patched);
	// wave 2 never starts.
	gw2Failed := make(chan struct{})
	f := &fleet{applyErr: map[string]error{"gw2": errors.New("dpkg error")}}
	f.beforeApply = func(ctx context.Context, gw string) {
		if gw == "gw3" {
			select {
			case <-gw2Failed:
			case <-ctx.Done():
			}
		}
	}
	opts := f.options()
	apply := opts.Apply
	opts.Apply = func(ctx context.Context, gw string) (patching.Result, error) {
		res, err := apply(ctx, gw)
		if gw == "gw2" {
			close(gw2Failed)
		}
		return res, err
	}
	opts.Canary, opts.WaveSize = 1, 2
	rep, err := patching.RunWaves(t.Context(), []string{"gw1", "gw2", "gw3", "gw4", "gw5"}, opts)
	if !errors.Is(err, patching.ErrWaveFailed) {
		t.Fatalf("error %v", err)
	}
	if !slices.Equal(rep.Patched, []string{"gw1", "gw3"}) || !slices.Equal(rep.Failed, []string{"gw2"}) || !slices.Equal(rep.NotTouched, []string{"gw4", "gw5"}) {
		t.Errorf("patched %v failed %v not touched %v", rep.Patched, rep.Failed, rep.NotTouched)
	}
}

func TestRunWavesConcurrency(t *testing.T) {
	t.Run("bounded", func(t *testing.T) {
		var inFlight, peak atomic.Int32
		f := &fleet{beforeApply: func(context.Context, string) {
			n := inFlight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			inFlight.Add(-1)
		}}
		opts := f.options()
		opts.Canary, opts.WaveSize, opts.Concurrency = 1, 6, 2
		if _, err := patching.RunWaves(t.Context(), seven, opts); err != nil {
			t.Fatal(err)
		}
		if peak.Load() > 2 {
			t.Errorf("%d gateways patched at once, bound is 2", peak.Load())
		}
	})
	t.Run("a wave runs together", func(t *testing.T) {
		// Each gateway of the wave waits until all three have started:
		// this only completes if they run concurrently.
		var started sync.WaitGroup
		started.Add(3)
		f := &fleet{beforeApply: func(ctx context.Context, gw string) {
			if gw == "gw1" {
				return
			}
			started.Done()
			done := make(chan struct{})
			go func() { started.Wait(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
			}
		}}
		opts := f.options()
		opts.Canary, opts.WaveSize = 1, 3
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		rep, err := patching.RunWaves(ctx, []string{"gw1", "gw2", "gw3", "gw4"}, opts)
		if err != nil || len(rep.Patched) != 4 {
			t.Fatalf("RunWaves = %+v, %v", rep, err)
		}
	})
}

func TestRunWavesStopAndCancel(t *testing.T) {
	t.Run("stop requested during the canary", func(t *testing.T) {
		var stop atomic.Bool
		f := &fleet{beforeApply: func(context.Context, string) { stop.Store(true) }}
		opts := f.options()
		opts.Stop = &stop
		rep, err := patching.RunWaves(t.Context(), seven, opts)
		if !errors.Is(err, patching.ErrStopped) {
			t.Fatalf("error %v, want ErrStopped", err)
		}
		if !slices.Equal(rep.Patched, []string{"gw1"}) || len(rep.NotTouched) != 6 || rep.StoppedAfterWave != 0 {
			t.Errorf("report %+v", rep)
		}
	})
	t.Run("context cancelled during the canary", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		f := &fleet{beforeApply: func(context.Context, string) { cancel() }}
		rep, err := patching.RunWaves(ctx, seven, f.options())
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
		if got := f.applied(); !slices.Equal(got, []string{"gw1"}) || len(rep.NotTouched) != 6 {
			t.Errorf("applied %v, not touched %v", got, rep.NotTouched)
		}
	})
	t.Run("options incomplete", func(t *testing.T) {
		if _, err := patching.RunWaves(t.Context(), seven, patching.WaveOptions{}); !errors.Is(err, patching.ErrInvalidRequest) {
			t.Errorf("RunWaves without Apply = %v", err)
		}
		if _, err := patching.RunWaves(t.Context(), nil, (&fleet{}).options()); !errors.Is(err, patching.ErrInvalidRequest) {
			t.Errorf("RunWaves of no gateways = %v", err)
		}
	})
}
