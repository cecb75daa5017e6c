package host

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/patching"
)

// Patch installs updates with apt under root ("/" on a gateway; another
// root for labs and tests) and verifies the installed versions.
//
// hooks are the checks beyond versions (see PatchHooks); a zero value runs
// none.
func Patch(root string, log *slog.Logger, hooks patching.VerifyHooks) agent.PatchFunc {
	if root == "" {
		root = "/"
	}
	return func(ctx context.Context, p wire.PatchParams) (wire.PatchResult, error) {
		var res wire.PatchResult
		targets := make([]patching.Target, len(p.Packages))
		for i, t := range p.Packages {
			targets[i] = patching.Target{Name: t.Name, Version: t.Version}
		}
		if !p.VerifyOnly {
			r, err := patching.Apply(ctx, patching.Request{Root: root, Packages: targets, SecurityOnly: p.SecurityOnly, Log: log})
			if err != nil {
				return res, err
			}
			res.Changed = r.Changed
			for _, in := range r.Installed {
				res.Installed = append(res.Installed, wire.PatchInstalled{Name: in.Name, Before: in.Before, After: in.After})
			}
			if p.SecurityOnly {
				targets = r.Targets()
			}
		}
		checks, err := patching.Verify(ctx, root, targets, hooks)
		if err != nil && len(checks) == 0 {
			return res, fmt.Errorf("verifying installed versions: %w", err)
		}
		res.Passed = true
		for _, c := range checks {
			res.Checks = append(res.Checks, wire.PatchCheck{Name: c.Name, Passed: c.Passed, Expected: c.Expected, Observed: c.Observed, Message: c.Message})
			if !c.Passed {
				res.Passed = false
			}
		}
		return res, nil
	}
}
