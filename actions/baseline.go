package actions

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
)

// BaselineVerifier checks a gateway's hardened baseline
// (providers/linux's AgentPool, through the gateway's agent).
type BaselineVerifier interface {
	GatewayAgent
	// VerifyBaseline evaluates every check of the baseline and records
	// the integrity manifest when none is recorded yet. remediate names
	// remediations to apply to failing checks first ("safe"); the agent
	// evaluates again after them.
	VerifyBaseline(ctx context.Context, gw inventory.Gateway, remediate []string) (wire.BaselineResult, error)
}

// BaselineRecorder keeps baseline results (history, for drift and for the
// release gate).
type BaselineRecorder interface {
	RecordBaseline(ctx context.Context, gw inventory.Gateway, source string, res wire.BaselineResult) error
}

// NewVerifyBaseline returns verify_baseline, each verdict kept in rec. Param
// "remediate" = "safe" first applies every failing check's remediation
// that is marked safe. The step fails (terminal) when the baseline does not
// pass, naming the failing checks, so a runbook never goes on to release an
// unhardened gateway.
func NewVerifyBaseline(b BaselineVerifier, rec BaselineRecorder) Action {
	return &baselineAction{b: b, rec: rec}
}

type baselineAction struct {
	b   BaselineVerifier
	rec BaselineRecorder
}

func (a *baselineAction) Name() string { return NameVerifyBaseline }

func (a *baselineAction) Plan(_ context.Context, req Request) (Change, error) {
	if err := a.b.CheckAgent(req.Gateway); err != nil {
		return Change{}, err
	}
	ch := Change{Summary: "check the hardened baseline of " + req.Gateway.ID + " (sshd, sysctl, firewall, tunnels, packages, integrity)"}
	if req.Params["remediate"] == "safe" {
		ch.Changes = []string{"apply the safe remediation of every failing check (sysctl values), then check again"}
	}
	return ch, nil
}

func (a *baselineAction) Apply(ctx context.Context, req Request) (Result, error) {
	var remediate []string
	if req.Params["remediate"] == "safe" {
		remediate = []string{"safe"}
	}
	res, err := a.b.VerifyBaseline(ctx, req.Gateway, remediate)
	if err != nil {
		return Result{}, err
	}
	if a.rec != nil {
		if err := a.rec.RecordBaseline(ctx, req.Gateway, "runbook", res); err != nil {
			return Result{}, err
		}
	}
	failing := failingChecks(res)
	details := map[string]any{"passed": res.Passed, "failing": failing, "remediated": res.Remediated, "warnings": res.Warnings}
	if !res.Passed {
		return Result{}, Terminal(fmt.Errorf("baseline of %s does not pass: %s: %w", req.Gateway.ID, strings.Join(failing, ", "), ErrNotVerified))
	}
	return Result{Changed: len(res.Remediated) > 0, Summary: fmt.Sprintf("baseline of %s passes (remediated: %v)", req.Gateway.ID, res.Remediated), Details: details}, nil
}

func (a *baselineAction) Verify(_ context.Context, req Request) (Result, error) {
	// Apply already read the verdict from the gateway; a second full
	// evaluation here would double the cost for no new information.
	if err := a.b.CheckAgent(req.Gateway); err != nil {
		return Result{}, err
	}
	return Result{Summary: "baseline verdict recorded"}, nil
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
