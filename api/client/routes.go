package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	v1 "github.com/warden-ir/warden/api/v1"
)

// One method per route of openapi.yaml. Bodies a caller holds as bytes (a
// file to submit, an Alertmanager message) go as they are, so that the
// controller judges them, not a re-encoding.

// SubmitIndicators sends indicators to POST /v1/indicators as one batch.
func (c *Client) SubmitIndicators(ctx context.Context, inds ...v1.Indicator) (v1.IntakeResponse, error) {
	var out v1.IntakeResponse
	_, err := c.Call(ctx, http.MethodPost, "/v1/indicators", v1.IndicatorBatch{Indicators: inds}, &out)
	return out, err
}

// SubmitIndicatorsJSON sends body (one indicator, or {"indicators": [...]})
// to POST /v1/indicators as it is.
func (c *Client) SubmitIndicatorsJSON(ctx context.Context, body []byte) (v1.IntakeResponse, error) {
	var out v1.IntakeResponse
	_, err := c.Call(ctx, http.MethodPost, "/v1/indicators", body, &out)
	return out, err
}

// SubmitAlertmanager sends an Alertmanager webhook message to POST
// /v1/intake/alertmanager as it is.
func (c *Client) SubmitAlertmanager(ctx context.Context, message []byte) (v1.IntakeResponse, error) {
	var out v1.IntakeResponse
	_, err := c.Call(ctx, http.MethodPost, "/v1/intake/alertmanager", message, &out)
	return out, err
}

// Plan asks POST /v1/plan for the decision and the plan for one indicator;
// nothing is applied.
func (c *Client) Plan(ctx context.Context, in v1.Indicator) (v1.PlanResponse, error) {
	var out v1.PlanResponse
	_, err := c.Call(ctx, http.MethodPost, "/v1/plan", in, &out)
	return out, err
}

// PlanJSON is Plan for an indicator held as JSON, sent as it is.
func (c *Client) PlanJSON(ctx context.Context, indicator []byte) (v1.PlanResponse, error) {
	var out v1.PlanResponse
	_, err := c.Call(ctx, http.MethodPost, "/v1/plan", indicator, &out)
	return out, err
}

// Incidents lists incidents, newest first (limit 0: the controller's
// default).
func (c *Client) Incidents(ctx context.Context, limit int) ([]v1.Incident, error) {
	path := "/v1/incidents"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	var out v1.IncidentList
	_, err := c.Call(ctx, http.MethodGet, path, nil, &out)
	return out.Incidents, err
}

// Incident reads one incident with its indicators and runs.
func (c *Client) Incident(ctx context.Context, id string) (v1.IncidentDetail, error) {
	var out v1.IncidentDetail
	_, err := c.Call(ctx, http.MethodGet, "/v1/incidents/"+url.PathEscape(id), nil, &out)
	return out, err
}

// Report fetches an incident's report in lang (ja, en) and format (html,
// md); empty means the controller's default.
func (c *Client) Report(ctx context.Context, incident, lang, format string) ([]byte, error) {
	q := url.Values{}
	if lang != "" {
		q.Set("lang", lang)
	}
	if format != "" {
		q.Set("format", format)
	}
	path := "/v1/incidents/" + url.PathEscape(incident) + "/report"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out []byte
	_, err := c.Call(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// RunFilter narrows Runs; the zero value lists every run.
type RunFilter struct {
	Incident string
	Gateway  string
	States   []string
}

// Runs lists runs (without their steps), newest first.
func (c *Client) Runs(ctx context.Context, f RunFilter) ([]v1.Run, error) {
	q := url.Values{}
	if len(f.States) > 0 {
		q.Set("state", strings.Join(f.States, ","))
	}
	if f.Incident != "" {
		q.Set("incident", f.Incident)
	}
	if f.Gateway != "" {
		q.Set("gateway", f.Gateway)
	}
	var out v1.RunList
	_, err := c.Call(ctx, http.MethodGet, "/v1/runs?"+q.Encode(), nil, &out)
	return out.Runs, err
}

// Run reads one run with its steps.
func (c *Client) Run(ctx context.Context, id string) (v1.Run, error) {
	var out v1.Run
	_, err := c.Call(ctx, http.MethodGet, "/v1/runs/"+url.PathEscape(id), nil, &out)
	return out, err
}

// Approve approves a run that waits for a person.
func (c *Client) Approve(ctx context.Context, run string, req v1.ApproveRequest) (v1.Run, error) {
	var out v1.Run
	_, err := c.Call(ctx, http.MethodPost, "/v1/runs/"+url.PathEscape(run)+"/approve", req, &out)
	return out, err
}

// Cancel cancels a run that has not finished.
func (c *Client) Cancel(ctx context.Context, run string, req v1.CancelRequest) (v1.Run, error) {
	var out v1.Run
	_, err := c.Call(ctx, http.MethodPost, "/v1/runs/"+url.PathEscape(run)+"/cancel", req, &out)
	return out, err
}

// StartRunbook starts runbook against req.Gateway and returns the run,
// which may wait for an approval. req.DryRun is ignored: see PlanRunbook.
func (c *Client) StartRunbook(ctx context.Context, runbook string, req v1.StartRunbookRequest) (v1.Run, error) {
	req.DryRun = false
	var out v1.Run
	_, err := c.Call(ctx, http.MethodPost, "/v1/runbooks/"+url.PathEscape(runbook)+"/runs", req, &out)
	return out, err
}

// PlanRunbook is StartRunbook as a dry run: the plan and its gates as they
// stand now; nothing starts.
func (c *Client) PlanRunbook(ctx context.Context, runbook string, req v1.StartRunbookRequest) (v1.RunbookDryRun, error) {
	req.DryRun = true
	var out v1.RunbookDryRun
	_, err := c.Call(ctx, http.MethodPost, "/v1/runbooks/"+url.PathEscape(runbook)+"/runs", req, &out)
	return out, err
}

// Release asks to release req.Gateway (the release-gateway runbook): the
// run always waits for a person's approval.
func (c *Client) Release(ctx context.Context, req v1.StartRunbookRequest) (v1.Run, error) {
	return c.StartRunbook(ctx, v1.ReleaseRunbook, req)
}

// ResolveIndicator records that a person judged an indicator no longer a
// threat.
func (c *Client) ResolveIndicator(ctx context.Context, indicator string, req v1.ResolveRequest) (v1.Resolved, error) {
	var out v1.Resolved
	_, err := c.Call(ctx, http.MethodPost, "/v1/indicators/"+url.PathEscape(indicator)+"/resolve", req, &out)
	return out, err
}

// Gateways lists every gateway with its posture.
func (c *Client) Gateways(ctx context.Context) ([]v1.Gateway, error) {
	var out v1.GatewayList
	_, err := c.Call(ctx, http.MethodGet, "/v1/gateways", nil, &out)
	return out.Gateways, err
}

// Gateway reads one gateway with its posture.
func (c *Client) Gateway(ctx context.Context, id string) (v1.Gateway, error) {
	var out v1.Gateway
	_, err := c.Call(ctx, http.MethodGet, "/v1/gateways/"+url.PathEscape(id), nil, &out)
	return out, err
}

// AuditVerify asks the controller to verify its audit chain. A broken
// chain is an answer (OK false), not an error.
func (c *Client) AuditVerify(ctx context.Context) (v1.AuditVerification, error) {
	var out v1.AuditVerification
	_, err := c.Call(ctx, http.MethodGet, "/v1/audit/verify", nil, &out)
	return out, err
}

// ResetBreaker closes the fleet circuit breaker.
func (c *Client) ResetBreaker(ctx context.Context, req v1.BreakerResetRequest) (v1.BreakerReset, error) {
	var out v1.BreakerReset
	_, err := c.Call(ctx, http.MethodPost, "/v1/breaker/reset", req, &out)
	return out, err
}

// DriftCheck checks hardened baselines now (req.Gateway, or "all").
func (c *Client) DriftCheck(ctx context.Context, req v1.DriftCheckRequest) ([]v1.DriftResult, error) {
	var out v1.DriftCheckResponse
	_, err := c.Call(ctx, http.MethodPost, "/v1/drift/check", req, &out)
	return out.Results, err
}

// StartPatchWave starts a patch wave; it runs in the controller, and
// PatchWave follows it.
func (c *Client) StartPatchWave(ctx context.Context, req v1.PatchWaveRequest) (v1.PatchWave, error) {
	var out v1.PatchWave
	_, err := c.Call(ctx, http.MethodPost, "/v1/patch/waves", req, &out)
	return out, err
}

// PatchWave reads a patch wave's state and, once it ended, its report.
func (c *Client) PatchWave(ctx context.Context, id string) (v1.PatchWave, error) {
	var out v1.PatchWave
	_, err := c.Call(ctx, http.MethodGet, "/v1/patch/waves/"+url.PathEscape(id), nil, &out)
	return out, err
}

// Ready returns nil when the controller is ready (GET /readyz answers
// 200), and the *Error of its answer otherwise.
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.Call(ctx, http.MethodGet, "/readyz", nil, nil)
	return err
}

// Metrics reads the Prometheus text of GET /metrics.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	var out []byte
	_, err := c.Call(ctx, http.MethodGet, "/metrics", nil, &out)
	return out, err
}
