package api

import (
	"github.com/warden-ir/warden/actions"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/baseline"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/plan"
	"github.com/warden-ir/warden/policies"
	"github.com/warden-ir/warden/store"
)

// The functions below turn the controller's and the store's values into
// the API's (api/v1). They copy field by field, and keep nil slices nil
// and empty ones empty: "results": null and "results": [] are both part of
// what v1 has always sent (convert_test.go pins it).

func convertAll[T, U any](in []T, f func(T) U) []U {
	if in == nil {
		return nil
	}
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

func acceptedV1(a controller.Accepted) v1.Accepted {
	return v1.Accepted{Index: a.Index, IndicatorID: a.IndicatorID, Gateway: a.Gateway, Matched: a.Matched, Reason: a.Reason,
		IncidentID: a.IncidentID, Duplicate: a.Duplicate, Status: a.Status, Policy: a.Policy, RunID: a.RunID, RunState: a.RunState, Queued: a.Queued}
}

func runV1(r store.Run) v1.Run {
	return v1.Run{ID: r.ID, Incident: r.Incident, Gateway: r.Gateway, Site: r.Site, Runbook: r.Runbook, Policy: r.Policy,
		Trigger: r.Trigger, State: r.State, ApprovalRequired: r.ApprovalRequired, ApprovalReason: r.ApprovalReason,
		ApprovedBy: r.ApprovedBy, ApprovedAt: r.ApprovedAt, AutoIsolation: r.AutoIsolation, OverrideReason: r.OverrideReason,
		RequestedBy: r.RequestedBy, OverriddenBy: r.OverriddenBy, Plan: r.Plan, Error: r.Error, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
		Steps: convertAll(r.Steps, stepV1)}
}

func stepV1(s store.Step) v1.Step {
	return v1.Step{Index: s.Index, Name: s.Name, Action: s.Action, Params: s.Params, Optional: s.Optional, State: s.State,
		Attempts: s.Attempts, IdempotencyKey: s.IdemKey, Epoch: s.Epoch, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt,
		Result: s.Result, Error: s.Error}
}

func incidentV1(in store.Incident) v1.Incident {
	return v1.Incident{ID: in.ID, Gateway: in.Gateway, Site: in.Site, OpenedAt: in.OpenedAt, UpdatedAt: in.UpdatedAt,
		Status: in.Status, Severity: in.Severity, Title: in.Title, LastAlertStatus: in.LastStatus}
}

func incidentDetailV1(d IncidentDetail) v1.IncidentDetail {
	return v1.IncidentDetail{Incident: incidentV1(d.Incident), Indicators: convertAll(d.Indicators, indicatorRecordV1),
		Runs: convertAll(d.Runs, runV1)}
}

func indicatorRecordV1(r store.IndicatorRecord) v1.IndicatorRecord {
	out := v1.IndicatorRecord{ID: r.ID, ReceivedAt: r.ReceivedAt, Incident: r.Incident, Matched: r.Matched, Reason: r.Reason,
		Duplicate: r.Duplicate, Indicator: recordedIndicatorV1(r.Indicator), Sender: r.Sender}
	if d := r.Decision; d != nil {
		out.Decision = &v1.IndicatorDecision{At: d.At, Triage: d.Triage, DuplicateOf: d.DuplicateOf, Policy: d.Policy, Runbook: d.Runbook,
			Approval: d.Approval, BusinessHours: d.BusinessHours, ActiveRun: d.ActiveRun, RecentRun: d.RecentRun, Note: d.Note}
	}
	return out
}

func recordedIndicatorV1(in indicator.Indicator) v1.RecordedIndicator {
	return v1.RecordedIndicator{ID: in.ID, Kind: string(in.Kind), Gateway: in.Gateway, Severity: string(in.Severity),
		Confidence: in.Confidence, Observables: v1.Observables{IPs: in.Observables.IPs, Domains: in.Observables.Domains, Hashes: in.Observables.Hashes},
		ObservedAt: in.ObservedAt, Source: in.Source, Summary: in.Summary, Status: in.Status, Fingerprint: in.Fingerprint,
		Labels: in.Labels, Raw: in.Raw}
}

func gatewayV1(g controller.GatewayView) v1.Gateway {
	out := v1.Gateway{ID: g.ID, Site: g.Site, VM: g.VM, Hostname: g.Hostname, Addresses: g.Addresses,
		ManagementNetworks: g.ManagementNetworks, ManagementNICs: g.ManagementNICs, ManagementPortgroup: g.ManagementPortgroup,
		Agent: g.Agent, Posture: postureV1(g.Posture)}
	if wg := g.WireGuard; wg != nil {
		out.WireGuard = &v1.WireGuardEnd{Device: wg.Device, Endpoint: wg.Endpoint, PublicKey: wg.PublicKey}
	}
	if sw := g.StrongSwan; sw != nil {
		out.StrongSwan = &v1.StrongSwanEnd{Identity: sw.Identity, Auth: sw.Auth, CertificateSerial: sw.CertificateSerial}
	}
	return out
}

func postureV1(p store.Posture) v1.Posture {
	return v1.Posture{Gateway: p.Gateway, Desired: p.Desired, Incident: p.Incident, Observed: p.Observed,
		ObservedDetail: p.ObservedDetail, ObservedAt: p.ObservedAt, UpdatedAt: p.UpdatedAt}
}

func planV1(p plan.Plan) v1.Plan {
	return v1.Plan{Incident: p.Incident, Gateway: p.Gateway, Site: p.Site, VM: p.VM, Runbook: p.Runbook, Policy: p.Policy,
		Steps: convertAll(p.Steps, planStepV1), Gates: convertAll(p.Gates, gateV1), ApprovalRequired: p.ApprovalRequired}
}

func planStepV1(s plan.Step) v1.PlanStep {
	return v1.PlanStep{Index: s.Index, Name: s.Name, Action: s.Action, Target: s.Target, Params: s.Params, Optional: s.Optional,
		Evidence: s.Evidence, Destructive: s.Destructive, Expected: changeV1(s.Expected), PlanError: s.PlanError}
}

func changeV1(c *actions.Change) *v1.Change {
	if c == nil {
		return nil
	}
	return &v1.Change{Summary: c.Summary, Changes: c.Changes, Destructive: c.Destructive, Warnings: c.Warnings, CutsAgent: c.CutsAgent}
}

func gateV1(g plan.Gate) v1.Gate {
	return v1.Gate{Name: g.Name, Passed: g.Passed, Blocking: g.Blocking, Detail: g.Detail}
}

func decisionV1(d policies.Decision) v1.Decision {
	return v1.Decision{Matched: d.Matched, Policy: d.Policy, Runbook: d.Runbook, Approval: string(d.Approval),
		CountsAgainstBudget: d.CountsAgainstBudget, BusinessHours: d.BusinessHours,
		Explanations: convertAll(d.Explanations, func(e policies.Explanation) v1.Explanation {
			return v1.Explanation{Policy: e.Policy, Matched: e.Matched, Reason: e.Reason}
		})}
}

func driftResultV1(r controller.DriftResult) v1.DriftResult {
	c := r.Counts
	return v1.DriftResult{Gateway: r.Gateway, Passed: r.Passed, Counts: v1.BaselineCounts{Pass: c.Pass, Fail: c.Fail, Error: c.Error, Skip: c.Skip},
		Failing: r.Failing, Changes: convertAll(r.Changes, baselineChangeV1), Indicators: convertAll(r.Indicators, acceptedV1),
		Skipped: r.Skipped, Error: r.Error}
}

func baselineChangeV1(c baseline.Change) v1.BaselineChange {
	return v1.BaselineChange{ID: c.ID, Title: c.Title, Type: string(c.Type), Severity: string(c.Severity), Kind: string(c.Kind),
		From: string(c.From), To: string(c.To), Message: c.Message,
		Evidence: convertAll(c.Evidence, func(e baseline.Evidence) v1.BaselineEvidence {
			return v1.BaselineEvidence{Source: e.Source, Value: e.Value, Expected: e.Expected}
		})}
}

func patchWaveV1(w store.PatchWave) v1.PatchWave {
	return v1.PatchWave{ID: w.ID, Actor: w.Actor, Request: w.Request, State: w.State, Report: w.Report, Error: w.Error,
		CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt}
}

// patchWaveRequest is the controller's request for a v1 one.
func patchWaveRequest(r v1.PatchWaveRequest) controller.PatchWaveRequest {
	return controller.PatchWaveRequest{Gateways: r.Gateways, Packages: r.Packages, Security: r.Security, Canary: r.Canary,
		WaveSize: r.WaveSize, Actor: r.By}
}
