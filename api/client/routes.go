package client

import (
	"context"
	"io"
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
	return call[v1.IntakeResponse](ctx, c, http.MethodPost, "/v1/indicators", v1.IndicatorBatch{Indicators: inds})
}

// SubmitIndicatorsJSON sends body (one indicator, or {"indicators": [...]})
// to POST /v1/indicators as it is.
func (c *Client) SubmitIndicatorsJSON(ctx context.Context, body []byte) (v1.IntakeResponse, error) {
	return call[v1.IntakeResponse](ctx, c, http.MethodPost, "/v1/indicators", body)
}

// SubmitAlertmanager sends an Alertmanager webhook message to POST
// /v1/intake/alertmanager as it is.
func (c *Client) SubmitAlertmanager(ctx context.Context, message []byte) (v1.IntakeResponse, error) {
	return call[v1.IntakeResponse](ctx, c, http.MethodPost, "/v1/intake/alertmanager", message)
}

// Plan asks POST /v1/plan for the decision and the plan for one indicator;
// nothing is applied.
func (c *Client) Plan(ctx context.Context, in v1.Indicator) (v1.PlanResponse, error) {
	return call[v1.PlanResponse](ctx, c, http.MethodPost, "/v1/plan", in)
}

// PlanJSON is Plan for an indicator held as JSON, sent as it is.
func (c *Client) PlanJSON(ctx context.Context, indicator []byte) (v1.PlanResponse, error) {
	return call[v1.PlanResponse](ctx, c, http.MethodPost, "/v1/plan", indicator)
}

// Incidents lists incidents, newest first (limit 0: the controller's
// default).
func (c *Client) Incidents(ctx context.Context, limit int) ([]v1.Incident, error) {
	path := "/v1/incidents"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	out, err := call[v1.IncidentList](ctx, c, http.MethodGet, path, nil)
	return out.Incidents, err
}

// Incident reads one incident with its indicators and runs.
func (c *Client) Incident(ctx context.Context, id string) (v1.IncidentDetail, error) {
	return call[v1.IncidentDetail](ctx, c, http.MethodGet, "/v1/incidents/"+url.PathEscape(id), nil)
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
	out, err := call[v1.RunList](ctx, c, http.MethodGet, "/v1/runs?"+q.Encode(), nil)
	return out.Runs, err
}

// Run reads one run with its steps.
func (c *Client) Run(ctx context.Context, id string) (v1.Run, error) {
	return call[v1.Run](ctx, c, http.MethodGet, "/v1/runs/"+url.PathEscape(id), nil)
}

// Approve approves a run that waits for a person.
func (c *Client) Approve(ctx context.Context, run string, req v1.ApproveRequest) (v1.Run, error) {
	return call[v1.Run](ctx, c, http.MethodPost, "/v1/runs/"+url.PathEscape(run)+"/approve", req)
}

// Cancel cancels a run that has not finished.
func (c *Client) Cancel(ctx context.Context, run string, req v1.CancelRequest) (v1.Run, error) {
	return call[v1.Run](ctx, c, http.MethodPost, "/v1/runs/"+url.PathEscape(run)+"/cancel", req)
}

// StartRunbook starts runbook against req.Gateway and returns the run,
// which may wait for an approval. req.DryRun is ignored: see PlanRunbook.
func (c *Client) StartRunbook(ctx context.Context, runbook string, req v1.StartRunbookRequest) (v1.Run, error) {
	req.DryRun = false
	return call[v1.Run](ctx, c, http.MethodPost, "/v1/runbooks/"+url.PathEscape(runbook)+"/runs", req)
}

// StartInvestigation starts the investigation of an incident (POST
// /v1/incidents/{id}/investigations): the investigate-intrusion runbook
// on its gateway.
func (c *Client) StartInvestigation(ctx context.Context, incident string, req v1.StartInvestigationRequest) (v1.Run, error) {
	return call[v1.Run](ctx, c, http.MethodPost, "/v1/incidents/"+url.PathEscape(incident)+"/investigations", req)
}

// Capture starts or stops a packet capture on a gateway (POST
// /v1/gateways/{id}/captures): the packet-capture runbook.
func (c *Client) Capture(ctx context.Context, gateway string, req v1.CaptureRequest) (v1.Run, error) {
	return call[v1.Run](ctx, c, http.MethodPost, "/v1/gateways/"+url.PathEscape(gateway)+"/captures", req)
}

// PlanRunbook is StartRunbook as a dry run: the plan and its gates as they
// stand now; nothing starts.
func (c *Client) PlanRunbook(ctx context.Context, runbook string, req v1.StartRunbookRequest) (v1.RunbookDryRun, error) {
	req.DryRun = true
	return call[v1.RunbookDryRun](ctx, c, http.MethodPost, "/v1/runbooks/"+url.PathEscape(runbook)+"/runs", req)
}

// Release asks to release req.Gateway (the release-gateway runbook): the
// run always waits for a person's approval.
func (c *Client) Release(ctx context.Context, req v1.StartRunbookRequest) (v1.Run, error) {
	return c.StartRunbook(ctx, v1.ReleaseRunbook, req)
}

// ResolveIndicator records that a person judged an indicator no longer a
// threat.
func (c *Client) ResolveIndicator(ctx context.Context, indicator string, req v1.ResolveRequest) (v1.Resolved, error) {
	return call[v1.Resolved](ctx, c, http.MethodPost, "/v1/indicators/"+url.PathEscape(indicator)+"/resolve", req)
}

// Gateways lists every gateway with its posture.
func (c *Client) Gateways(ctx context.Context) ([]v1.Gateway, error) {
	out, err := call[v1.GatewayList](ctx, c, http.MethodGet, "/v1/gateways", nil)
	return out.Gateways, err
}

// Gateway reads one gateway with its posture.
func (c *Client) Gateway(ctx context.Context, id string) (v1.Gateway, error) {
	return call[v1.Gateway](ctx, c, http.MethodGet, "/v1/gateways/"+url.PathEscape(id), nil)
}

// AuditVerify asks the controller to verify its audit chain. A broken
// chain is an answer (OK false), not an error.
func (c *Client) AuditVerify(ctx context.Context) (v1.AuditVerification, error) {
	return call[v1.AuditVerification](ctx, c, http.MethodGet, "/v1/audit/verify", nil)
}

// ResetBreaker closes the fleet circuit breaker.
func (c *Client) ResetBreaker(ctx context.Context, req v1.BreakerResetRequest) (v1.BreakerReset, error) {
	return call[v1.BreakerReset](ctx, c, http.MethodPost, "/v1/breaker/reset", req)
}

// DriftCheck checks hardened baselines now (req.Gateway, or "all").
func (c *Client) DriftCheck(ctx context.Context, req v1.DriftCheckRequest) ([]v1.DriftResult, error) {
	out, err := call[v1.DriftCheckResponse](ctx, c, http.MethodPost, "/v1/drift/check", req)
	return out.Results, err
}

// StartPatchWave starts a patch wave; it runs in the controller, and
// PatchWave follows it.
func (c *Client) StartPatchWave(ctx context.Context, req v1.PatchWaveRequest) (v1.PatchWave, error) {
	return call[v1.PatchWave](ctx, c, http.MethodPost, "/v1/patch/waves", req)
}

// PatchWave reads a patch wave's state and, once it ended, its report.
func (c *Client) PatchWave(ctx context.Context, id string) (v1.PatchWave, error) {
	return call[v1.PatchWave](ctx, c, http.MethodGet, "/v1/patch/waves/"+url.PathEscape(id), nil)
}

// Ready returns nil when the controller is ready (GET /readyz answers
// 200), and the *Error of its answer otherwise.
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.Call(ctx, http.MethodGet, "/readyz", nil, nil)
	return err
}

// Metrics reads the Prometheus text of GET /metrics.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	return call[[]byte](ctx, c, http.MethodGet, "/metrics", nil)
}

// call sends body to the route and returns the answer, decoded.
func call[T any](ctx context.Context, c *Client, method, path string, body any) (T, error) {
	var out T
	_, err := c.Call(ctx, method, path, body, &out)
	return out, err
}

// Status asks GET /v1/status for the replicas on the store and who leads.
func (c *Client) Status(ctx context.Context) (v1.Status, error) {
	return call[v1.Status](ctx, c, http.MethodGet, "/v1/status", nil)
}

// WhoAmI asks GET /v1/whoami who the controller takes the caller for.
func (c *Client) WhoAmI(ctx context.Context) (v1.WhoAmI, error) {
	return call[v1.WhoAmI](ctx, c, http.MethodGet, "/v1/whoami", nil)
}

// Users lists users (admin).
func (c *Client) Users(ctx context.Context) ([]v1.User, error) {
	out, err := call[v1.UserList](ctx, c, http.MethodGet, "/v1/users", nil)
	return out.Users, err
}

// AddUser creates a user and returns their first token (admin).
func (c *Client) AddUser(ctx context.Context, req v1.AddUserRequest) (v1.IssuedToken, error) {
	return call[v1.IssuedToken](ctx, c, http.MethodPost, "/v1/users", req)
}

// DisableUser disables a user; their tokens stop working at once (admin).
func (c *Client) DisableUser(ctx context.Context, name string) (v1.User, error) {
	return call[v1.User](ctx, c, http.MethodPost, "/v1/users/"+url.PathEscape(name)+"/disable", nil)
}

// RotateToken revokes a user's tokens and issues a new one (admin).
func (c *Client) RotateToken(ctx context.Context, name string) (v1.IssuedToken, error) {
	return call[v1.IssuedToken](ctx, c, http.MethodPost, "/v1/users/"+url.PathEscape(name)+"/token", nil)
}

// Evidence lists an incident's evidence.
func (c *Client) Evidence(ctx context.Context, incident string) ([]v1.Evidence, error) {
	out, err := call[v1.EvidenceList](ctx, c, http.MethodGet, "/v1/incidents/"+url.PathEscape(incident)+"/evidence", nil)
	return out.Evidence, err
}

// ShowEvidence reads an artefact's record and chain of custody; the access
// is recorded in the chain as the caller's.
func (c *Client) ShowEvidence(ctx context.Context, id string) (v1.EvidenceDetail, error) {
	return call[v1.EvidenceDetail](ctx, c, http.MethodGet, "/v1/evidence/"+url.PathEscape(id), nil)
}

// ExportEvidence streams an incident's evidence archive (tar.gz) into w;
// each artefact's custody records the caller's export. A failure after
// the first bytes leaves a truncated archive in w, which its gzip
// checksum and SHA256SUMS give away.
func (c *Client) ExportEvidence(ctx context.Context, incident string, w io.Writer) error {
	_, err := c.Call(ctx, http.MethodPost, "/v1/incidents/"+url.PathEscape(incident)+"/evidence/export", nil, w)
	return err
}

// SubmitFormat sends a detector's body as it is to POST
// /v1/intake/FORMAT (suricata, zeek, wazuh, falco).
func (c *Client) SubmitFormat(ctx context.Context, format string, body []byte) (v1.IntakeResponse, error) {
	return call[v1.IntakeResponse](ctx, c, http.MethodPost, "/v1/intake/"+url.PathEscape(format), body)
}

// Blocks lists blocks of remote addresses, newest first, with what each
// gateway held at the last pass (state "" lists every state).
func (c *Client) Blocks(ctx context.Context, state string, limit int) (v1.BlockList, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/blocks"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return call[v1.BlockList](ctx, c, http.MethodGet, path, nil)
}

// Block reads one block.
func (c *Client) Block(ctx context.Context, number int64) (v1.Block, error) {
	return call[v1.Block](ctx, c, http.MethodGet, "/v1/blocks/"+strconv.FormatInt(number, 10), nil)
}

// RequestBlock asks for addresses to be blocked at every gateway.
func (c *Client) RequestBlock(ctx context.Context, req v1.BlockRequest) (v1.Block, error) {
	return call[v1.Block](ctx, c, http.MethodPost, "/v1/blocks", req)
}

// PlanBlock says what RequestBlock would do (the state the block would
// take and why it would wait for approval) and records nothing.
func (c *Client) PlanBlock(ctx context.Context, req v1.BlockRequest) (v1.Block, error) {
	return call[v1.Block](ctx, c, http.MethodPost, "/v1/blocks?dry_run=true", req)
}

// DecideBlock approves, refuses or withdraws a block (decision "approve",
// "refuse" or "withdraw").
func (c *Client) DecideBlock(ctx context.Context, number int64, decision, reason string) (v1.Block, error) {
	return call[v1.Block](ctx, c, http.MethodPost, "/v1/blocks/"+strconv.FormatInt(number, 10)+"/"+url.PathEscape(decision), v1.BlockDecision{Reason: reason})
}

// SubmitThreatIntel sends a STIX 2.1 bundle or a MISP event (format "stix"
// or "misp") to POST /v1/intake/FORMAT as it is.
func (c *Client) SubmitThreatIntel(ctx context.Context, format string, body []byte) (v1.ThreatIntakeResponse, error) {
	return call[v1.ThreatIntakeResponse](ctx, c, http.MethodPost, "/v1/intake/"+url.PathEscape(format), body)
}

// Sensors asks a gateway's agent what its sensors watch and have learned.
func (c *Client) Sensors(ctx context.Context, gateway string) (v1.GatewaySensors, error) {
	return call[v1.GatewaySensors](ctx, c, http.MethodGet, "/v1/gateways/"+url.PathEscape(gateway)+"/sensors", nil)
}
