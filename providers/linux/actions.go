package linux

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
)

// AgentPool hands out one client per gateway agent URL.
type AgentPool struct {
	tls  AgentTLS
	log  *slog.Logger
	mu   sync.Mutex
	byID map[string]*AgentClient
}

// NewAgentPool makes clients with the controller's mTLS material.
func NewAgentPool(t AgentTLS, log *slog.Logger) *AgentPool {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &AgentPool{tls: t, log: log, byID: map[string]*AgentClient{}}
}

// For returns the client for gw's agent; a gateway without an agent gets
// ErrUnsupported (terminal), so combined actions skip the OS layer.
func (p *AgentPool) For(gw inventory.Gateway) (*AgentClient, error) {
	if gw.Agent == "" {
		return nil, fmt.Errorf("gateway %s has no agent configured: %w", gw.ID, actions.ErrUnsupported)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.byID[gw.ID]; ok {
		return c, nil
	}
	c, err := NewAgentClient(gw.Agent, p.tls, p.log.With("gateway", gw.ID))
	if err != nil {
		return nil, actions.Terminal(fmt.Errorf("building agent client for %s: %w", gw.ID, err))
	}
	p.byID[gw.ID] = c
	return c, nil
}

// Close drops idle connections.
func (p *AgentPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.byID {
		c.Close()
	}
}

// Agents resolves a gateway's agent.
type Agents interface {
	For(gw inventory.Gateway) (*AgentClient, error)
}

// StoredArtefact is what the controller kept of one captured artefact.
type StoredArtefact struct {
	Name     string `json:"name"`
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
	Evidence string `json:"evidence_id,omitempty"`
	Error    string `json:"error,omitempty"`
}

// EvidenceSink keeps captured artefacts as evidence with chain of custody.
// Captured reports what was already stored under an idempotency key, so a
// retried or resumed step does not capture twice.
type EvidenceSink interface {
	Captured(ctx context.Context, incident, key string) ([]StoredArtefact, bool, error)
	StoreCapture(ctx context.Context, incident string, gw inventory.Gateway, key string, res wire.CaptureResult) ([]StoredArtefact, error)
	// VerifyStored re-hashes what was stored under key.
	VerifyStored(ctx context.Context, incident, key string) error
}

// NewCaptureAction is capture_volatile through the gateway's agent.
func NewCaptureAction(agents Agents, sink EvidenceSink) actions.Action {
	return &captureAction{agents: agents, sink: sink}
}

type captureAction struct {
	agents Agents
	sink   EvidenceSink
}

func (a *captureAction) Name() string  { return actions.NameCaptureVolatile }
func (a *captureAction) Layer() string { return "os" }

func (a *captureAction) Plan(ctx context.Context, req actions.Request) (actions.Change, error) {
	if _, err := a.agents.For(req.Gateway); err != nil {
		return actions.Change{}, err
	}
	return actions.Change{Summary: "collect volatile evidence on " + req.Gateway.ID + " through its agent at " + hostOf(req.Gateway.Agent),
		Changes: []string{"store connections, processes, routes, firewall rules, tunnel state, users and log tails with SHA-256 and custody records"}}, nil
}

func (a *captureAction) Apply(ctx context.Context, req actions.Request) (actions.Result, error) {
	c, err := a.agents.For(req.Gateway)
	if err != nil {
		return actions.Result{}, err
	}
	if stored, ok, err := a.sink.Captured(ctx, req.Incident, req.IdempotencyKey); err != nil {
		return actions.Result{}, err
	} else if ok {
		return actions.Result{Changed: false, Summary: fmt.Sprintf("volatile evidence already captured (%d artefacts)", len(stored)),
			Details: map[string]any{"artefacts": stored}}, nil
	}
	res, err := c.Capture(ctx, wire.CaptureParams{Incident: req.Incident})
	if err != nil {
		return actions.Result{}, fmt.Errorf("capturing volatile evidence on %s: %w", req.Gateway.ID, err)
	}
	for _, art := range res.Artefacts {
		sum := sha256.Sum256(art.Content)
		if hex.EncodeToString(sum[:]) != art.SHA256 {
			return actions.Result{}, fmt.Errorf("artefact %s from %s does not match its SHA-256 (damaged in transit?)", art.Name, req.Gateway.ID)
		}
	}
	stored, err := a.sink.StoreCapture(ctx, req.Incident, req.Gateway, req.IdempotencyKey, res)
	if err != nil {
		return actions.Result{}, fmt.Errorf("storing evidence from %s: %w", req.Gateway.ID, err)
	}
	failed := 0
	for _, s := range stored {
		if s.Error != "" {
			failed++
		}
	}
	summary := fmt.Sprintf("captured %d artefacts from %s", len(stored), req.Gateway.ID)
	if failed > 0 {
		summary += fmt.Sprintf(" (%d collectors reported errors)", failed)
	}
	return actions.Result{Changed: true, Summary: summary, Details: map[string]any{"artefacts": stored}}, nil
}

func (a *captureAction) Verify(ctx context.Context, req actions.Request) (actions.Result, error) {
	if _, err := a.agents.For(req.Gateway); err != nil {
		return actions.Result{}, err
	}
	if err := a.sink.VerifyStored(ctx, req.Incident, req.IdempotencyKey); err != nil {
		return actions.Result{}, fmt.Errorf("%w: %v", actions.ErrNotVerified, err)
	}
	return actions.Result{Summary: "evidence hashes verified"}, nil
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable agent URL)"
	}
	return u.Host
}

// NewIsolateAction is the OS layer of isolate: the agent's quarantine,
// commit-confirmed only after the controller has reached the agent through
// it. Management networks come from the inventory.
func NewIsolateAction(agents Agents) actions.Action { return &isolateAction{agents: agents} }

type isolateAction struct{ agents Agents }

func (a *isolateAction) Name() string  { return actions.NameIsolate }
func (a *isolateAction) Layer() string { return "os" }

func (a *isolateAction) Plan(ctx context.Context, req actions.Request) (actions.Change, error) {
	st, err := observeAgent(ctx, a.agents, req.Gateway)
	if err != nil {
		return actions.Change{}, err
	}
	if st.Quarantined && st.Confirmed && st.Firewall != nil && st.Firewall.Quarantined && len(st.Firewall.Drift) == 0 {
		return actions.Change{Summary: req.Gateway.ID + " OS quarantine already in force"}, nil
	}
	return actions.Change{Summary: "quarantine " + req.Gateway.ID + " at the OS (IPv4 and IPv6)", Changes: []string{
		"drop all traffic in INPUT, OUTPUT and FORWARD except loopback and management " + strings.Join(req.Gateway.ManagementNetworks, ", "),
		"kill established flows other than management",
		"bring tunnel links down and terminate IPsec SAs",
		"agent reverts by itself unless the controller confirms it can still reach it",
	}}, nil
}

func (a *isolateAction) Apply(ctx context.Context, req actions.Request) (actions.Result, error) {
	c, err := a.agents.For(req.Gateway)
	if err != nil {
		return actions.Result{}, err
	}
	res, err := c.IsolateConfirmed(ctx, wire.IsolateParams{Management: req.Gateway.ManagementNetworks})
	if err != nil {
		return actions.Result{}, fmt.Errorf("quarantining %s at the OS: %w", req.Gateway.ID, err)
	}
	summary := "OS quarantine of " + req.Gateway.ID + " already in force"
	if res.Changed {
		summary = fmt.Sprintf("OS quarantine of %s in force and confirmed (killed %d flows, links down: %v)", req.Gateway.ID, res.KilledFlows, res.LinksDown)
	}
	return actions.Result{Changed: res.Changed, Summary: summary, Details: map[string]any{
		"generation": res.Generation, "management": res.Management, "killed_flows": res.KilledFlows,
		"links_down": res.LinksDown, "sas_terminated": res.SAsTerminated, "warnings": res.Warnings}}, nil
}

func (a *isolateAction) Verify(ctx context.Context, req actions.Request) (actions.Result, error) {
	st, err := observeAgent(ctx, a.agents, req.Gateway)
	if err != nil {
		return actions.Result{}, err
	}
	switch {
	case !st.Quarantined || !st.Confirmed:
		return actions.Result{}, fmt.Errorf("agent on %s reports quarantined=%t confirmed=%t: %w", req.Gateway.ID, st.Quarantined, st.Confirmed, actions.ErrNotVerified)
	case st.Firewall == nil || !st.Firewall.Quarantined:
		return actions.Result{}, fmt.Errorf("rules on %s are not enforced for IPv4 and IPv6: %w", req.Gateway.ID, actions.ErrNotVerified)
	case len(st.Firewall.Drift) > 0:
		return actions.Result{}, fmt.Errorf("rules on %s drifted (%s): %w", req.Gateway.ID, strings.Join(st.Firewall.Drift, "; "), actions.ErrNotVerified)
	}
	// Reaching the agent to read this back proves the management path
	// survived the quarantine.
	return actions.Result{Summary: "OS quarantine enforced (v4+v6, backend " + st.Firewall.Backend + "), agent reachable over management",
		Details: map[string]any{"generation": st.Generation, "backend": st.Firewall.Backend}}, nil
}

func (a *isolateAction) Undo(ctx context.Context, req actions.Request) (actions.Result, error) {
	return (&releaseAction{agents: a.agents}).Apply(ctx, req)
}

// NewReleaseAction is the OS layer of release.
func NewReleaseAction(agents Agents) actions.Action { return &releaseAction{agents: agents} }

type releaseAction struct{ agents Agents }

func (a *releaseAction) Name() string  { return actions.NameRelease }
func (a *releaseAction) Layer() string { return "os" }

func (a *releaseAction) Plan(ctx context.Context, req actions.Request) (actions.Change, error) {
	st, err := observeAgent(ctx, a.agents, req.Gateway)
	if err != nil {
		return actions.Change{}, err
	}
	if !st.Quarantined && (st.Firewall == nil || st.Firewall.Absent) {
		return actions.Change{Summary: req.Gateway.ID + " has no OS quarantine"}, nil
	}
	return actions.Change{Summary: "lift the OS quarantine of " + req.Gateway.ID, Changes: []string{
		"remove Warden's rules (only those)", "bring back tunnel links: " + strings.Join(st.LinksDown, ", ")}}, nil
}

func (a *releaseAction) Apply(ctx context.Context, req actions.Request) (actions.Result, error) {
	c, err := a.agents.For(req.Gateway)
	if err != nil {
		return actions.Result{}, err
	}
	changed, err := c.Release(ctx)
	if err != nil {
		return actions.Result{}, fmt.Errorf("releasing %s at the OS: %w", req.Gateway.ID, err)
	}
	s := "OS quarantine of " + req.Gateway.ID + " lifted"
	if !changed {
		s = req.Gateway.ID + " had no OS quarantine"
	}
	return actions.Result{Changed: changed, Summary: s}, nil
}

func (a *releaseAction) Verify(ctx context.Context, req actions.Request) (actions.Result, error) {
	st, err := observeAgent(ctx, a.agents, req.Gateway)
	if err != nil {
		return actions.Result{}, err
	}
	if st.Quarantined || st.Firewall == nil || !st.Firewall.Absent {
		return actions.Result{}, fmt.Errorf("%s still shows quarantine rules: %w", req.Gateway.ID, actions.ErrNotVerified)
	}
	return actions.Result{Summary: "no Warden rules left on " + req.Gateway.ID}, nil
}

// observeAgent reads the agent's quarantine record and rules of gw.
func observeAgent(ctx context.Context, agents Agents, gw inventory.Gateway) (wire.State, error) {
	c, err := agents.For(gw)
	if err != nil {
		return wire.State{}, err
	}
	st, err := c.Observe(ctx)
	if err != nil {
		return st, fmt.Errorf("reading quarantine state of %s through its agent: %w", gw.ID, err)
	}
	return st, nil
}

// ObserveQuarantine reports whether the gateway's OS quarantine is in force
// (for the controller's reconcile loop).
func ObserveQuarantine(ctx context.Context, agents Agents, gw inventory.Gateway) (bool, wire.State, error) {
	st, err := observeAgent(ctx, agents, gw)
	if err != nil {
		return false, st, err
	}
	ok := st.Quarantined && st.Firewall != nil && st.Firewall.Quarantined && len(st.Firewall.Drift) == 0
	return ok, st, nil
}

// BaselineRecorder keeps baseline results (history, for drift and for the
// release gate).
type BaselineRecorder interface {
	RecordBaseline(ctx context.Context, gw inventory.Gateway, source string, res wire.BaselineResult) error
}

// NewVerifyBaselineAction is verify_baseline through the agent. Param
// "remediate" = "safe" first applies every failing check's remediation that
// is marked safe (the agent re-evaluates after). The step fails (terminal)
// when the baseline does not pass, naming the failing checks, so a runbook
// never goes on to release an unhardened gateway.
func NewVerifyBaselineAction(agents Agents, rec BaselineRecorder) actions.Action {
	return &baselineAction{agents: agents, rec: rec}
}

type baselineAction struct {
	agents Agents
	rec    BaselineRecorder
}

func (a *baselineAction) Name() string { return actions.NameVerifyBaseline }

func (a *baselineAction) Plan(_ context.Context, req actions.Request) (actions.Change, error) {
	if _, err := a.agents.For(req.Gateway); err != nil {
		return actions.Change{}, err
	}
	ch := actions.Change{Summary: "check the hardened baseline of " + req.Gateway.ID + " (sshd, sysctl, firewall, tunnels, packages, integrity)"}
	if req.Params["remediate"] == "safe" {
		ch.Changes = []string{"apply the safe remediation of every failing check (sysctl values), then check again"}
	}
	return ch, nil
}

// CheckBaseline runs the check through gw's agent and records it.
func CheckBaseline(ctx context.Context, agents Agents, rec BaselineRecorder, gw inventory.Gateway, source string, remediate []string) (wire.BaselineResult, error) {
	c, err := agents.For(gw)
	if err != nil {
		return wire.BaselineResult{}, err
	}
	res, err := c.Baseline(ctx, wire.BaselineParams{Management: gw.ManagementNetworks, RecordManifest: true, Remediate: remediate})
	if err != nil {
		return res, fmt.Errorf("checking the baseline of %s: %w", gw.ID, err)
	}
	if rec != nil {
		if err := rec.RecordBaseline(ctx, gw, source, res); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (a *baselineAction) Apply(ctx context.Context, req actions.Request) (actions.Result, error) {
	var remediate []string
	if req.Params["remediate"] == "safe" {
		remediate = []string{"safe"}
	}
	res, err := CheckBaseline(ctx, a.agents, a.rec, req.Gateway, "runbook", remediate)
	if err != nil {
		return actions.Result{}, err
	}
	failing := failingChecks(res)
	details := map[string]any{"passed": res.Passed, "failing": failing, "remediated": res.Remediated, "warnings": res.Warnings}
	if !res.Passed {
		return actions.Result{}, actions.Terminal(fmt.Errorf("baseline of %s does not pass: %s: %w", req.Gateway.ID, strings.Join(failing, ", "), actions.ErrNotVerified))
	}
	return actions.Result{Changed: len(res.Remediated) > 0, Summary: fmt.Sprintf("baseline of %s passes (remediated: %v)", req.Gateway.ID, res.Remediated), Details: details}, nil
}

func (a *baselineAction) Verify(ctx context.Context, req actions.Request) (actions.Result, error) {
	// Apply already read the verdict from the gateway; a second full
	// evaluation here would double the cost for no new information.
	if _, err := a.agents.For(req.Gateway); err != nil {
		return actions.Result{}, err
	}
	return actions.Result{Summary: "baseline verdict recorded"}, nil
}

// failingChecks lists "id (status)" of every check that did not pass.
func failingChecks(res wire.BaselineResult) []string {
	var rep struct {
		Results []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"results"`
	}
	_ = json.Unmarshal(res.Report, &rep)
	var out []string
	for _, r := range rep.Results {
		if r.Status == "fail" || r.Status == "error" {
			out = append(out, r.ID+" ("+r.Status+")")
		}
	}
	return out
}

// NewPatchAction is patch through the agent. Params: "packages" =
// "name=version,name2" (version optional: newest) and/or "security" =
// "true" for every security update. Patching is destructive: on a
// compromised gateway it never runs before evidence is preserved (the
// controller's gate).
//
// Once the patch is verified, Verify has the agent re-record the integrity
// manifest for the files the upgraded packages installed (and only those:
// see wire.BaselineParams.SanctionPackages), so a sanctioned update of
// sshd or sudo does not read as an integrity violation afterwards; the
// old and new hashes are in Verify's result under "manifest".
func NewPatchAction(agents Agents) actions.Action {
	return &patchAction{agents: agents, applied: map[string]wire.PatchResult{}}
}

type patchAction struct {
	agents Agents
	mu     sync.Mutex
	// applied holds, per step (idempotency key), what its Apply attempts
	// installed, for its Verify: which packages the patch upgraded. A step
	// resumed by another controller process has no entry; its Verify then
	// knows only the named targets.
	applied map[string]wire.PatchResult
}

func (a *patchAction) Name() string { return actions.NamePatch }

func patchParams(req actions.Request) (wire.PatchParams, error) {
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
		return p, actions.Terminal(fmt.Errorf("patch needs param packages (name=version,…) or security=true"))
	}
	return p, nil
}

func (a *patchAction) Plan(_ context.Context, req actions.Request) (actions.Change, error) {
	if _, err := a.agents.For(req.Gateway); err != nil {
		return actions.Change{}, err
	}
	p, err := patchParams(req)
	if err != nil {
		return actions.Change{}, err
	}
	ch := actions.Change{Summary: "patch " + req.Gateway.ID + " with apt", Destructive: true}
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

func (a *patchAction) Apply(ctx context.Context, req actions.Request) (actions.Result, error) {
	c, err := a.agents.For(req.Gateway)
	if err != nil {
		return actions.Result{}, err
	}
	p, err := patchParams(req)
	if err != nil {
		return actions.Result{}, err
	}
	res, err := c.Patch(ctx, p)
	if err != nil {
		return actions.Result{}, fmt.Errorf("patching %s: %w", req.Gateway.ID, err)
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
	return actions.Result{Changed: res.Changed, Summary: summary, Details: map[string]any{"installed": res.Installed, "checks": res.Checks}}, nil
}

// Verify reads the installed versions back and has the agent's verify
// hooks (services answering, tunnels back) run; only when they pass does
// it ask the agent to re-record the integrity manifest for the packages
// the patch upgraded: those this step's Apply reported installed, and the
// named targets (a resumed step's Apply finds them installed already and
// reports nothing). Verify is idempotent: the agent re-records a file
// once, never one whose content is not what dpkg installed, and reports
// the same entries when asked again.
func (a *patchAction) Verify(ctx context.Context, req actions.Request) (actions.Result, error) {
	c, err := a.agents.For(req.Gateway)
	if err != nil {
		return actions.Result{}, err
	}
	p, err := patchParams(req)
	if err != nil {
		return actions.Result{}, err
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
			return actions.Result{Summary: summary}, nil
		}
	}
	res, err := c.Patch(ctx, p)
	if err != nil {
		return actions.Result{}, fmt.Errorf("reading versions back from %s: %w", req.Gateway.ID, err)
	}
	if !res.Passed {
		var bad []string
		for _, ch := range res.Checks {
			if !ch.Passed {
				bad = append(bad, fmt.Sprintf("%s: %s (want %s)", ch.Name, ch.Observed, ch.Expected))
			}
		}
		return actions.Result{}, fmt.Errorf("%s: %s: %w", req.Gateway.ID, strings.Join(bad, "; "), actions.ErrNotVerified)
	}
	// Verified: now, and only now, the patch's files may be re-recorded.
	br, err := c.Baseline(ctx, wire.BaselineParams{Management: req.Gateway.ManagementNetworks, SanctionPackages: upgradedPackages(p.Packages, applied.Installed)})
	if err != nil && !agentLacksField(err, "sanction_packages") {
		return actions.Result{}, fmt.Errorf("re-recording the integrity manifest of %s after the verified patch: %w", req.Gateway.ID, err)
	}
	a.mu.Lock()
	delete(a.applied, req.IdempotencyKey)
	a.mu.Unlock()
	summary := "installed versions at or above target"
	switch s := br.Sanction; {
	case s == nil:
		// An agent older than manifest re-records refuses the field: the
		// patch stands, its files stay violations until recorded again.
		summary += "; the agent cannot re-record its integrity manifest (upgrade it), so files the patch changed will read as violations"
	case s.NoManifest:
		summary += "; no integrity manifest recorded yet, nothing to re-record"
	default:
		summary += fmt.Sprintf("; integrity manifest: %d file(s) re-recorded, %d difference(s) left as violations", len(s.Rerecorded), len(s.Refused))
	}
	return actions.Result{Summary: summary, Details: map[string]any{"checks": res.Checks, "manifest": br.Sanction}}, nil
}

// agentLacksField reports whether the agent refused a command for a
// parameter it does not know (an agent older than the controller): agents
// decode parameters strictly and answer 400 naming the field.
func agentLacksField(err error, field string) bool {
	var ae *AgentError
	return errors.As(err, &ae) && ae.Status == http.StatusBadRequest && strings.Contains(ae.Message, `unknown field "`+field+`"`)
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
