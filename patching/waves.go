package patching

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/warden-ir/warden/internal/clock"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/warden-ir/warden/internal/waves"
)

// Wave defaults.
const (
	DefaultCanary   = 1
	DefaultWaveSize = 5
)

// WaveOptions configure RunWaves.
type WaveOptions struct {
	// Canary is how many gateways form the first wave; zero means
	// DefaultCanary.
	Canary int
	// WaveSize is how many gateways form each later wave; zero means
	// DefaultWaveSize.
	WaveSize int
	// Concurrency bounds how many gateways of a wave are patched at once;
	// zero means the whole wave.
	Concurrency int
	// Apply patches one gateway (through its agent, or patching.Apply on a
	// root). Required.
	Apply func(ctx context.Context, gateway string) (Result, error)
	// Verify checks one gateway after Apply (version, services, tunnels,
	// baseline). It runs even when Apply changed nothing. Required.
	Verify func(ctx context.Context, gateway string) error
	// Stop, when set to true by someone else, stops the run before the
	// next gateway starts; gateways already running finish.
	Stop *atomic.Bool
	// Log receives one line per gateway and per wave; nil discards.
	Log *slog.Logger
	// Clock times the gateways and the run; nil means clock.Real.
	Clock clock.Clock
}

// GatewayStatus is where one gateway ended.
type GatewayStatus string

// Gateway statuses.
const (
	// StatusPatched: applied and verified (possibly with nothing to
	// change).
	StatusPatched GatewayStatus = "patched"
	// StatusFailed: Apply or Verify returned an error.
	StatusFailed GatewayStatus = "failed"
	// StatusNotTouched: never started because the run stopped first.
	StatusNotTouched GatewayStatus = "not_touched"
)

// Phases a gateway can fail in.
const (
	PhaseApply  = "apply"
	PhaseVerify = "verify"
)

// GatewayOutcome is what happened to one gateway.
type GatewayOutcome struct {
	Gateway string `json:"gateway"`
	// Wave is the gateway's wave; 0 is the canary wave.
	Wave   int           `json:"wave"`
	Status GatewayStatus `json:"status"`
	// Result is what Apply reported (also on a verify failure).
	Result Result `json:"result"`
	// Phase and Error say where and why a failed gateway failed.
	Phase    string        `json:"phase,omitempty"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`

	err error
}

// WaveReport is the account of a run.
type WaveReport struct {
	// Waves is the plan: the canary wave first.
	Waves [][]string `json:"waves"`
	// Outcomes has one entry per gateway, in plan order.
	Outcomes []GatewayOutcome `json:"outcomes"`
	// Patched, Failed and NotTouched name the gateways by status, in plan
	// order (Failed in the order the failures happened).
	Patched    []string `json:"patched"`
	Failed     []string `json:"failed,omitempty"`
	NotTouched []string `json:"not_touched,omitempty"`
	// StoppedAfterWave is the last wave that started when the run stopped
	// early; -1 when every wave ran.
	StoppedAfterWave int `json:"stopped_after_wave"`
	// Reason says why the run stopped early; empty when it completed.
	Reason   string        `json:"reason,omitempty"`
	Duration time.Duration `json:"duration"`
}

// Outcome returns the outcome of gateway.
func (r WaveReport) Outcome(gateway string) (GatewayOutcome, bool) {
	for _, o := range r.Outcomes {
		if o.Gateway == gateway {
			return o, true
		}
	}
	return GatewayOutcome{}, false
}

// ErrWaveFailed is wrapped by RunWaves when a gateway failed; the error
// also wraps that gateway's own error.
var ErrWaveFailed = errors.New("patch wave failed")

// ErrStopped is returned by RunWaves when WaveOptions.Stop was set.
var ErrStopped = errors.New("patch waves stopped on request")

// PlanWaves splits gateways into the canary wave and waves of waveSize,
// keeping their order. An empty list, an empty name or a duplicate is an
// error: an empty target never means "all".
func PlanWaves(gateways []string, canary, waveSize int) ([][]string, error) {
	if err := waves.Check(gateways, func(g string) string { return g }); err != nil {
		return nil, invalid("gateways: %v", err)
	}
	if canary < 0 || waveSize < 0 {
		return nil, invalid("canary and wave size must not be negative")
	}
	return waves.Plan(gateways, waves.Layout[string]{Canary: cmp.Or(canary, DefaultCanary), Size: cmp.Or(waveSize, DefaultWaveSize)}), nil
}

// RunWaves patches gateways in waves: the canary wave first, then the rest
// WaveSize at a time. Each gateway is applied then verified; the next wave
// starts only when every gateway of the current one passed. At the first
// failure (or a stop request, or ctx ending) no further gateway starts;
// gateways of the same wave already running are left to finish, since
// cutting a package install short is worse than finishing it. The report
// is complete in every case; the error wraps ErrWaveFailed and the first
// failing gateway's error, ErrStopped, or ctx's error.
func RunWaves(ctx context.Context, gateways []string, opts WaveOptions) (WaveReport, error) {
	plan, err := PlanWaves(gateways, opts.Canary, opts.WaveSize)
	if err != nil {
		return WaveReport{}, err
	}
	if opts.Apply == nil || opts.Verify == nil {
		return WaveReport{}, invalid("wave options need both Apply and Verify")
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := clock.Real.Now
	if opts.Clock != nil {
		now = opts.Clock.Now
	}
	start := now()
	rep := WaveReport{Waves: plan}
	for w, wave := range plan {
		for _, g := range wave {
			rep.Outcomes = append(rep.Outcomes, GatewayOutcome{Gateway: g, Wave: w, Status: StatusNotTouched})
		}
	}
	res := waves.Run(ctx, plan, waves.RunOptions{
		Concurrency:  opts.Concurrency,
		Stop:         opts.Stop,
		WaveStarting: func(w int) { log.Info("patch wave starting", "wave", w, "gateways", plan[w]) },
	}, func(ctx context.Context, at waves.Pos, _ string) error {
		// Each gateway owns its element of Outcomes: no lock needed.
		rep.Outcomes[at.Index] = patchGateway(ctx, rep.Outcomes[at.Index], opts, now, log)
		return rep.Outcomes[at.Index].err
	})
	rep.StoppedAfterWave, rep.Duration = res.StoppedAfterWave, now().Sub(start)
	rep.Reason = map[waves.Reason]string{waves.ItemFailed: "a gateway failed", waves.StopRequested: "stop requested",
		waves.ContextEnded: fmt.Sprint("context ended: ", ctx.Err())}[res.Reason]
	for _, o := range rep.Outcomes {
		switch o.Status {
		case StatusPatched:
			rep.Patched = append(rep.Patched, o.Gateway)
		case StatusNotTouched:
			rep.NotTouched = append(rep.NotTouched, o.Gateway)
		}
	}
	for _, i := range res.Failed {
		rep.Failed = append(rep.Failed, rep.Outcomes[i].Gateway)
	}
	switch {
	case len(res.Failed) > 0:
		o := rep.Outcomes[res.Failed[0]]
		return rep, fmt.Errorf("%w: gateway %s in wave %d failed to %s: %w", ErrWaveFailed, o.Gateway, o.Wave, o.Phase, o.err)
	case res.Reason == waves.StopRequested:
		return rep, ErrStopped
	case res.Reason != waves.Completed:
		return rep, fmt.Errorf("running patch waves: %w", ctx.Err())
	}
	log.Info("patch waves complete", "gateways", len(rep.Patched), "duration", rep.Duration)
	return rep, nil
}

func patchGateway(ctx context.Context, o GatewayOutcome, opts WaveOptions, now func() time.Time, log *slog.Logger) GatewayOutcome {
	start := now()
	fail := func(phase string, err error) GatewayOutcome {
		o.Status, o.Phase, o.Error, o.err = StatusFailed, phase, redact(err.Error()), err
		o.Duration = now().Sub(start)
		log.Warn("patching gateway failed", "gateway", o.Gateway, "wave", o.Wave, "phase", phase, "err", o.Error)
		return o
	}
	res, err := opts.Apply(ctx, o.Gateway)
	o.Result = res
	if err != nil {
		return fail(PhaseApply, err)
	}
	if err := opts.Verify(ctx, o.Gateway); err != nil {
		return fail(PhaseVerify, err)
	}
	o.Status = StatusPatched
	o.Duration = now().Sub(start)
	log.Info("gateway patched", "gateway", o.Gateway, "wave", o.Wave, "changed", res.Changed, "duration", o.Duration)
	return o
}
