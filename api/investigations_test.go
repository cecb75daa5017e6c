package api_test

import (
	"net/http"
	"strings"
	"testing"

	v1 "github.com/warden-ir/warden/api/v1"
)

// TestStartInvestigation: POST /v1/incidents/{id}/investigations starts
// investigate-intrusion on the incident's gateway, within the incident, as
// the caller, with the look-back asked for; bad input names the field.
func TestStartInvestigation(t *testing.T) {
	s := newStack(t, nil, nil)
	accepted := decodeReply[intakeReply](t, s.call(t, "POST", "/v1/indicators", readFixture(t, "native_single.json"))).Results[0]

	r := s.call(t, "POST", "/v1/incidents/"+accepted.IncidentID+"/investigations", []byte(`{"since":"48h"}`))
	expectStatus(t, r, http.StatusAccepted)
	run := decodeReply[v1.Run](t, r)
	if run.Runbook != v1.InvestigationRunbook || run.Incident != accepted.IncidentID || run.Gateway != "gw-hq" || run.Trigger != "manual" {
		t.Errorf("run %+v, want investigate-intrusion on gw-hq within %s", run, accepted.IncidentID)
	}
	if len(run.Steps) != 1 || run.Steps[0].Action != "investigate" {
		t.Errorf("steps %+v", run.Steps)
	}
	stored, err := s.d.Store.Run(t.Context(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Steps[0].Params["since"] != "48h" || !strings.HasPrefix(stored.RequestedBy, "user:") {
		t.Errorf("stored run: params %v, requested by %q", stored.Steps[0].Params, stored.RequestedBy)
	}

	// An empty body takes the configured look-back.
	expectStatus(t, s.call(t, "POST", "/v1/incidents/"+accepted.IncidentID+"/investigations", nil), http.StatusAccepted)

	for name, tc := range map[string]struct {
		incident, body string
		want           int
		wantIn         string
	}{
		"bad since":        {accepted.IncidentID, `{"since":"yesterday"}`, http.StatusBadRequest, "since"},
		"negative since":   {accepted.IncidentID, `{"since":"-1h"}`, http.StatusBadRequest, "since"},
		"unknown field":    {accepted.IncidentID, `{"gateway":"gw-dc"}`, http.StatusBadRequest, "gateway"},
		"unknown incident": {"inc-nope", `{}`, http.StatusNotFound, "inc-nope"},
	} {
		t.Run(name, func(t *testing.T) {
			e := expectError(t, s.call(t, "POST", "/v1/incidents/"+tc.incident+"/investigations", []byte(tc.body)), tc.want)
			if !strings.Contains(e.Error, tc.wantIn) {
				t.Errorf("message %q does not name %q", e.Error, tc.wantIn)
			}
		})
	}
}

// TestStartCapture: POST /v1/gateways/{id}/captures starts packet-capture
// on the gateway as the caller with the capture's shape; bad input names
// the field.
func TestStartCapture(t *testing.T) {
	s := newStack(t, nil, nil)
	r := s.call(t, "POST", "/v1/gateways/gw-hq/captures", []byte(`{"op":"start","duration":"5m","max_bytes":1048576,"filter":"host 203.0.113.9"}`))
	expectStatus(t, r, http.StatusAccepted)
	run := decodeReply[v1.Run](t, r)
	if run.Runbook != v1.CaptureRunbook || run.Gateway != "gw-hq" || len(run.Steps) != 1 || run.Steps[0].Action != "capture" {
		t.Errorf("run %+v", run)
	}
	stored, err := s.d.Store.Run(t.Context(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p := stored.Steps[0].Params; p["op"] != "start" || p["duration"] != "5m" || p["max_bytes"] != "1048576" || p["filter"] != "host 203.0.113.9" {
		t.Errorf("params %v", p)
	}
	expectStatus(t, s.call(t, "POST", "/v1/gateways/gw-hq/captures", []byte(`{"op":"stop"}`)), http.StatusAccepted)
	for name, tc := range map[string]struct {
		gw, body, wantIn string
		want             int
	}{
		"no op":            {"gw-hq", `{}`, "op", http.StatusBadRequest},
		"bad duration":     {"gw-hq", `{"op":"start","duration":"forever"}`, "duration", http.StatusBadRequest},
		"too small":        {"gw-hq", `{"op":"start","max_bytes":10}`, "max_bytes", http.StatusBadRequest},
		"bad filter":       {"gw-hq", `{"op":"start","filter":"host nowhere"}`, "filter", http.StatusBadRequest},
		"stop with shape":  {"gw-hq", `{"op":"stop","filter":"tcp"}`, "filter", http.StatusBadRequest},
		"wildcard gateway": {"*", `{"op":"stop"}`, "wildcard", http.StatusBadRequest},
		"unknown gateway":  {"gw-nowhere", `{"op":"stop"}`, "gw-nowhere", http.StatusBadRequest},
	} {
		t.Run(name, func(t *testing.T) {
			e := expectError(t, s.call(t, "POST", "/v1/gateways/"+tc.gw+"/captures", []byte(tc.body)), tc.want)
			if !strings.Contains(e.Error, tc.wantIn) {
				t.Errorf("message %q does not name %q", e.Error, tc.wantIn)
			}
		})
	}
}
