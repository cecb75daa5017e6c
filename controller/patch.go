package controller

import (
	"context"
	"fmt"
	"strconv"
	"strings"

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
// untouched. Each gateway's patch is a durable, audited run.
func (c *Controller) PatchWave(ctx context.Context, req PatchWaveRequest) (patching.WaveReport, error) {
	if len(req.Gateways) == 0 {
		return patching.WaveReport{}, fmt.Errorf("%w: gateways: name the gateways to patch (an empty list never means all)", ErrInvalid)
	}
	if strings.TrimSpace(req.Packages) == "" && !req.Security {
		return patching.WaveReport{}, fmt.Errorf("%w: packages: name packages (name=version,...) or ask for security updates", ErrInvalid)
	}
	if req.Actor == "" {
		return patching.WaveReport{}, fmt.Errorf("%w: by: who asks is required", ErrInvalid)
	}
	for _, g := range req.Gateways {
		if _, err := c.resolveGateway(g); err != nil {
			return patching.WaveReport{}, err
		}
	}
	if _, ok := c.pol.Runbooks["patch-gateway"]; !ok {
		return patching.WaveReport{}, fmt.Errorf("%w: no patch-gateway runbook is loaded", ErrInvalid)
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
			run, err := c.StartRunbook(ctx, StartRequest{Runbook: "patch-gateway", Gateway: gw, Actor: req.Actor, Params: params})
			if err != nil {
				return patching.Result{}, err
			}
			done, err := c.WaitRun(ctx, run.ID)
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

func (c *Controller) auditNow(ctx context.Context, actor, action string, data map[string]any) {
	if err := c.st.Tx(ctx, func(tx *store.Tx) error {
		return tx.Audit(ctx, audit.Entry{At: c.clock.Now(), Actor: actor, Action: action, Data: mustJSON(data)})
	}); err != nil {
		c.log.Error("auditing", "action", action, "err", err)
	}
}
