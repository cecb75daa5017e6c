package actions

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
)

// Patcher patches a gateway's packages (providers/linux's AgentPool,
// through the gateway's agent with apt).
type Patcher interface {
	GatewayAgent
	// Patch installs the targets (idempotent: what is installed already
	// is reported unchanged) or, with p.VerifyOnly, reads the installed
	// versions back and runs the agent's verify hooks.
	Patch(ctx context.Context, gw inventory.Gateway, p wire.PatchParams) (wire.PatchResult, error)
	// SanctionPatch has the agent re-record its integrity manifest for
	// the files the named packages installed, and only those. It returns
	// nil, and no error, when the agent is too old to do so. Idempotent:
	// the agent re-records a file once and reports the same entries when
	// asked again.
	SanctionPatch(ctx context.Context, gw inventory.Gateway, packages []string) (*wire.ManifestSanction, error)
}

// NewPatch returns patch. Params: "packages" = "name=version,name2"
// (version optional: newest) and/or "security" = "true" for every security
// update. Patching is destructive: on a compromised gateway it never runs
// before evidence is preserved (the controller's gate).
//
// Once the patch is verified, Verify has the agent re-record the integrity
// manifest for the files the upgraded packages installed (and only those:
// see wire.BaselineParams.SanctionPackages), so a sanctioned update of
// sshd or sudo does not read as an integrity violation afterwards; the
// old and new hashes are in Verify's result under "manifest".
func NewPatch(p Patcher) Action {
	return &patchAction{p: p, applied: map[string]wire.PatchResult{}}
}

type patchAction struct {
	p  Patcher
	mu sync.Mutex
	// applied holds, per step (idempotency key), what its Apply attempts
	// installed, for its Verify: which packages the patch upgraded. A step
	// resumed by another controller process has no entry; its Verify then
	// knows only the named targets.
	applied map[string]wire.PatchResult
}

func (a *patchAction) Name() string { return NamePatch }

func patchParams(req Request) (wire.PatchParams, error) {
	var p wire.PatchParams
	for _, item := range strings.Split(req.Params["packages"], ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, version, _ := strings.Cut(item, "=")
		p.Packages = append(p.Packages, wire.PatchTarget{Name: strings.TrimSpace(name), Version: strings.TrimSpace(version)})
	}
	p.SecurityOnly = req.Params["security"] == "true"
	if len(p.Packages) == 0 && !p.SecurityOnly {
		return p, Terminal(fmt.Errorf("patch needs param packages (name=version,…) or security=true"))
	}
	return p, nil
}

// checked checks the agent, then the params.
func (a *patchAction) checked(req Request) (wire.PatchParams, error) {
	if err := a.p.CheckAgent(req.Gateway); err != nil {
		return wire.PatchParams{}, err
	}
	return patchParams(req)
}

func (a *patchAction) Plan(_ context.Context, req Request) (Change, error) {
	p, err := a.checked(req)
	if err != nil {
		return Change{}, err
	}
	ch := Change{Summary: "patch " + req.Gateway.ID + " with apt", Destructive: true}
	for _, t := range p.Packages {
		v := t.Version
		if v == "" {
			v = "newest"
		}
		ch.Changes = append(ch.Changes, fmt.Sprintf("%s to %s", t.Name, v))
	}
	if p.SecurityOnly {
		ch.Changes = append(ch.Changes, "every pending security update")
	}
	return ch, nil
}

func (a *patchAction) Apply(ctx context.Context, req Request) (Result, error) {
	p, err := a.checked(req)
	if err != nil {
		return Result{}, err
	}
	res, err := a.p.Patch(ctx, req.Gateway, p)
	if err != nil {
		return Result{}, err
	}
	a.mu.Lock()
	// A retried Apply finds the earlier attempt's packages installed and
	// reports nothing: keep what every attempt of the step installed.
	kept := a.applied[req.IdempotencyKey]
	kept.Installed = append(kept.Installed, res.Installed...)
	a.applied[req.IdempotencyKey] = kept
	a.mu.Unlock()
	summary := fmt.Sprintf("%s already at the target versions", req.Gateway.ID)
	if res.Changed {
		summary = fmt.Sprintf("patched %d package(s) on %s", len(res.Installed), req.Gateway.ID)
	}
	return Result{Changed: res.Changed, Summary: summary, Details: map[string]any{"installed": res.Installed, "checks": res.Checks}}, nil
}

// Verify reads the installed versions back and has the agent's verify
// hooks (services answering, tunnels back) run; only when they pass does
// it ask the agent to re-record the integrity manifest for the packages
// the patch upgraded: those this step's Apply reported installed, and the
// named targets (a resumed step's Apply finds them installed already and
// reports nothing). Verify is idempotent, as SanctionPatch is.
func (a *patchAction) Verify(ctx context.Context, req Request) (Result, error) {
	p, err := a.checked(req)
	if err != nil {
		return Result{}, err
	}
	a.mu.Lock()
	applied, haveApplied := a.applied[req.IdempotencyKey]
	a.mu.Unlock()
	p.VerifyOnly = true
	if p.SecurityOnly && len(p.Packages) == 0 {
		for _, in := range applied.Installed {
			if in.After == "" {
				continue
			}
			// The latest attempt's version of a package replaces an
			// earlier one's.
			p.Packages = slices.DeleteFunc(p.Packages, func(t wire.PatchTarget) bool { return t.Name == in.Name })
			p.Packages = append(p.Packages, wire.PatchTarget{Name: in.Name, Version: in.After})
		}
		if len(p.Packages) == 0 {
			// What a security run installed is only known to the Apply
			// that ran it, whose own check already ran; nothing more to
			// read back, and nothing known to re-record: files changed by
			// an update stay violations until a person records the
			// manifest again.
			summary := "security updates applied and checked by the agent"
			if !haveApplied {
				summary += "; the step was resumed, so the integrity manifest was not re-recorded"
			}
			return Result{Summary: summary}, nil
		}
	}
	res, err := a.p.Patch(ctx, req.Gateway, p)
	if err != nil {
		return Result{}, err
	}
	if !res.Passed {
		var bad []string
		for _, ch := range res.Checks {
			if !ch.Passed {
				bad = append(bad, fmt.Sprintf("%s: %s (want %s)", ch.Name, ch.Observed, ch.Expected))
			}
		}
		return Result{}, fmt.Errorf("%s: %s: %w", req.Gateway.ID, strings.Join(bad, "; "), ErrNotVerified)
	}
	// Verified: now, and only now, the patch's files may be re-recorded.
	s, err := a.p.SanctionPatch(ctx, req.Gateway, upgradedPackages(p.Packages, applied.Installed))
	if err != nil {
		return Result{}, err
	}
	a.mu.Lock()
	delete(a.applied, req.IdempotencyKey)
	a.mu.Unlock()
	summary := "installed versions at or above target"
	switch {
	case s == nil:
		// An agent older than manifest re-records refuses the field: the
		// patch stands, its files stay violations until recorded again.
		summary += "; the agent cannot re-record its integrity manifest (upgrade it), so files the patch changed will read as violations"
	case s.NoManifest:
		summary += "; no integrity manifest recorded yet, nothing to re-record"
	default:
		summary += fmt.Sprintf("; integrity manifest: %d file(s) re-recorded, %d difference(s) left as violations", len(s.Rerecorded), len(s.Refused))
	}
	return Result{Summary: summary, Details: map[string]any{"checks": res.Checks, "manifest": s}}, nil
}

// upgradedPackages names the packages a patch upgraded: the targets and
// every package whose version the install changed (dependencies pulled
// in), once each.
func upgradedPackages(targets []wire.PatchTarget, installed []wire.PatchInstalled) []string {
	var out []string
	for _, t := range targets {
		out = append(out, t.Name)
	}
	for _, in := range installed {
		if in.After != "" {
			out = append(out, in.Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
