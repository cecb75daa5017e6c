package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/patching"
	"github.com/warden-ir/warden/store"
)

// PatchWaveRequest patches named gateways in waves.
type PatchWaveRequest struct {
	// Gateways to patch, each named; an empty list is an error, never
	// "all".
	Gateways []string `json:"gateways"`
	// Packages as "name=version,name2" (version optional = newest).
	Packages string `json:"packages"`
	// Security installs every pending security update.
	Security bool `json:"security"`
	// Canary gateways go first, alone (default 1); then waves of
	// WaveSize (default 5).
	Canary   int    `json:"canary"`
	WaveSize int    `json:"wave_size"`
	Actor    string `json:"by"`
}

// PatchWave patches the gateways with the patch-gateway runbook, canary
// first, verifying each (versions read back, baseline passes) before the
// next wave, and stops at the first gateway that fails, leaving the rest
// untouched. Each gateway's patch is a durable, audited run; once verified,
// its patch step re-records the gateway's integrity manifest for exactly
// the files the upgraded packages installed (old and new hashes in the
// step's result and in evidence), so the baseline that follows does not
// read a sanctioned update as an integrity violation.
func (c *patcher) PatchWave(ctx context.Context, req PatchWaveRequest) (patching.WaveReport, error) {
	if err := c.checkPatchWave(req); err != nil {
		return patching.WaveReport{}, err
	}
	params := map[string]string{"packages": req.Packages, "security": strconv.FormatBool(req.Security)}
	c.auditNow(ctx, req.Actor, "patch.wave.started", map[string]any{"gateways": req.Gateways, "packages": req.Packages, "security": req.Security,
		"canary": req.Canary, "wave_size": req.WaveSize})
	canary := req.Canary
	if canary <= 0 {
		canary = patching.DefaultCanary
	}
	rep, err := patching.RunWaves(ctx, req.Gateways, patching.WaveOptions{
		Canary: canary, WaveSize: req.WaveSize, Log: c.log,
		Apply: func(ctx context.Context, gw string) (patching.Result, error) {
			run, err := c.runs.StartRunbook(ctx, StartRequest{Runbook: "patch-gateway", Gateway: gw, Actor: req.Actor, Params: params})
			if err != nil {
				return patching.Result{}, err
			}
			done, err := c.runs.WaitRun(ctx, run.ID)
			if err != nil {
				return patching.Result{}, err
			}
			switch done.State {
			case store.RunSucceeded:
				return patching.Result{Changed: true}, nil
			case store.RunAwaitingApproval:
				return patching.Result{}, fmt.Errorf("run %s waits for approval (%s): a wave does not go on without it", done.ID, done.ApprovalReason)
			default:
				return patching.Result{}, fmt.Errorf("run %s %s: %s", done.ID, done.State, done.Error)
			}
		},
		// The run verified the versions and the baseline already.
		Verify: func(context.Context, string) error { return nil },
	})
	c.auditNow(ctx, req.Actor, "patch.wave.finished", map[string]any{"patched": rep.Patched, "failed": rep.Failed,
		"not_touched": rep.NotTouched, "reason": rep.Reason})
	return rep, err
}

// checkPatchWave refuses a wave request that names no gateway, a wildcard
// or unknown one, nothing to install, or nobody asking.
func (c *patcher) checkPatchWave(req PatchWaveRequest) error {
	if len(req.Gateways) == 0 {
		return fmt.Errorf("%w: gateways: name the gateways to patch (an empty list never means all)", ErrInvalid)
	}
	if strings.TrimSpace(req.Packages) == "" && !req.Security {
		return fmt.Errorf("%w: packages: name packages (name=version,...) or ask for security updates", ErrInvalid)
	}
	if req.Actor == "" {
		return fmt.Errorf("%w: by: who asks is required", ErrInvalid)
	}
	for _, g := range req.Gateways {
		if _, err := c.resolveGateway(g); err != nil {
			return err
		}
	}
	if _, ok := c.pol.Runbooks["patch-gateway"]; !ok {
		return fmt.Errorf("%w: no patch-gateway runbook is loaded", ErrInvalid)
	}
	return nil
}

// ErrNotRunning is returned for work that needs the controller's loops
// (Start) when they are not running.
var ErrNotRunning = errors.New("controller loops are not running")

// StartPatchWave checks req, records it as a durable wave and patches in
// the background (see PatchWave); it returns the wave at once, running.
// A wave still running when the controller stops is resumed at its next
// start: gateways already patched are patched again as a no-op, which
// reads their versions back. Progress and the final report: PatchWaveOf.
//
// Only the leader runs waves: a replica that does not lead records the
// wave and the leader's executor adopts it within a second.
func (c *patcher) StartPatchWave(ctx context.Context, req PatchWaveRequest) (store.PatchWave, error) {
	if err := c.checkPatchWave(req); err != nil {
		return store.PatchWave{}, err
	}
	life := c.lifeContext()
	if life == nil && !c.opt.Replicated {
		return store.PatchWave{}, ErrNotRunning
	}
	raw, err := json.Marshal(req)
	if err != nil {
		return store.PatchWave{}, fmt.Errorf("encoding the wave request: %w", err)
	}
	now := c.clock.Now()
	w := store.PatchWave{ID: store.NewID("wave"), Actor: req.Actor, Request: raw, State: store.WaveRunning, CreatedAt: now, UpdatedAt: now}
	if err := c.st.Tx(ctx, func(tx store.Tx) error {
		if err := tx.InsertPatchWave(ctx, w); err != nil {
			return err
		}
		return tx.Audit(ctx, audit.Entry{At: now, Actor: req.Actor, Action: "patch.wave.accepted", Subject: w.ID, Data: raw})
	}); err != nil {
		return store.PatchWave{}, err
	}
	if _, err := c.leaseEpoch(); err == nil && life != nil && life.Err() == nil {
		c.goWave(life, w.ID, req)
	}
	return w, nil
}

// PatchWaveOf reads a wave: its state and, once it ended, its report.
func (c *patcher) PatchWaveOf(ctx context.Context, id string) (store.PatchWave, error) {
	return c.st.PatchWave(ctx, id)
}

func (c *patcher) goWave(ctx context.Context, id string, req PatchWaveRequest) {
	c.mu.Lock()
	if c.wavesInFlight[id] {
		c.mu.Unlock()
		return
	}
	c.wavesInFlight[id] = true
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { c.mu.Lock(); delete(c.wavesInFlight, id); c.mu.Unlock() }()
		rep, err := c.PatchWave(ctx, req)
		if ctx.Err() != nil {
			return // stopping: the wave stays running and resumes at the next start
		}
		state := store.WaveSucceeded
		switch {
		case err != nil && len(rep.Failed) > 0:
			state = store.WaveStopped
		case err != nil:
			state = store.WaveFailed
		}
		report, _ := json.Marshal(rep)
		errText := ""
		if err != nil {
			errText = err.Error()
		}
		if ferr := c.st.Tx(ctx, func(tx store.Tx) error {
			return tx.FinishPatchWave(ctx, id, state, report, errText, c.clock.Now())
		}); ferr != nil {
			c.log.Error("recording the end of a patch wave", "wave", id, "err", ferr)
		}
	}()
}

// waveLoop adopts waves every second.
func (c *patcher) waveLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.clock.After(time.Second):
		}
		c.adoptWaves(ctx)
	}
}

// adoptWaves runs the waves recorded as running that no goroutine of this
// controller runs: those a stopped or deposed controller left, and those
// a replica that does not lead recorded. Only the lease holder adopts.
func (c *patcher) adoptWaves(ctx context.Context) {
	if _, err := c.leaseEpoch(); err != nil {
		return
	}
	waves, err := c.st.PatchWaves(ctx, store.WaveRunning)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Error("listing patch waves to adopt", "err", err)
		}
		return
	}
	for _, w := range waves {
		c.mu.Lock()
		running := c.wavesInFlight[w.ID]
		c.mu.Unlock()
		if running {
			continue
		}
		var req PatchWaveRequest
		if err := json.Unmarshal(w.Request, &req); err != nil {
			c.log.Error("a stored patch wave cannot be read; it is not resumed", "wave", w.ID, "err", err)
			continue
		}
		c.log.Info("resuming patch wave", "wave", w.ID, "gateways", len(req.Gateways))
		c.auditNow(ctx, "controller", "patch.wave.resumed", map[string]any{"wave": w.ID})
		c.goWave(ctx, w.ID, req)
	}
}

func (c *patcher) auditNow(ctx context.Context, actor, action string, data map[string]any) {
	if err := c.st.Tx(ctx, func(tx store.Tx) error {
		return tx.Audit(ctx, audit.Entry{At: c.clock.Now(), Actor: actor, Action: action, Data: mustJSON(data)})
	}); err != nil {
		c.log.Error("auditing", "action", action, "err", err)
	}
}
