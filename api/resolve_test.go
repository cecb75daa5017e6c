package api_test

import (
	"net/http"
	"strings"
	"testing"

	v1 "github.com/warden-ir/warden/api/v1"
)

// TestResolveIndicator: a person resolves an indicator by id, with a
// reason; every missing piece is a 4xx naming the field, and resolving
// twice is a conflict.
func TestResolveIndicator(t *testing.T) {
	s := newStack(t, nil, nil)
	r := s.call(t, "POST", "/v1/indicators", []byte(indicatorJSON("c2_beacon", "gw-hq", "critical")))
	expectStatus(t, r, http.StatusAccepted)
	got := decodeReply[intakeReply](t, r)
	id := got.Results[0].IndicatorID
	if id == "" {
		t.Fatalf("no indicator id in %s", r)
	}
	for name, tc := range map[string]struct {
		path, body string
		want       int
		says       string
	}{
		"someone else's by": {"/v1/indicators/" + id + "/resolve", `{"by":"carol","reason":"false positive"}`, http.StatusBadRequest, `"field": "by"`},
		"no reason":         {"/v1/indicators/" + id + "/resolve", `{}`, http.StatusBadRequest, "reason"},
		"unknown id":        {"/v1/indicators/ind-nope/resolve", `{"reason":"x"}`, http.StatusNotFound, "ind-nope"},
		"unknown field":     {"/v1/indicators/" + id + "/resolve", `{"reason":"x","extra":1}`, http.StatusBadRequest, "extra"},
	} {
		t.Run(name, func(t *testing.T) {
			r := s.call(t, "POST", tc.path, []byte(tc.body))
			expectStatus(t, r, tc.want)
			if !strings.Contains(string(r.body), tc.says) {
				t.Fatalf("answer %s does not name %q", r, tc.says)
			}
		})
	}
	// An approver resolves it; the answer names them, whatever the body
	// could have said.
	r = s.user(t, "carol", "approver").call(t, "POST", "/v1/indicators/"+id+"/resolve", []byte(`{"by":"carol","reason":"the blocked retry of the known implant"}`))
	expectStatus(t, r, http.StatusOK)
	if got := decodeReply[v1.Resolved](t, r); got.Indicator != id || got.ResolvedBy != "user:carol" {
		t.Errorf("resolved: %s", r)
	}
	expectStatus(t, s.call(t, "POST", "/v1/indicators/"+id+"/resolve", []byte(`{"reason":"again"}`)), http.StatusConflict)
}
