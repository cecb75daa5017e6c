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
