package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// The fleet routes refuse vague or incomplete requests with a 4xx naming
// the problem; none of them starts anything.
func TestFleetRoutesRefuseBadInput(t *testing.T) {
	s := newStack(t, nil, nil)
	tests := map[string]struct {
		path, body string
		status     int
		contains   string
	}{
		"drift without gateway":        {"/v1/drift/check", `{"by":"alice"}`, 400, "gateway"},
		"drift with a wildcard":        {"/v1/drift/check", `{"gateway":"gw-*","by":"alice"}`, 400, "wildcard"},
		"drift without agents":         {"/v1/drift/check", `{"gateway":"all","by":"alice"}`, 400, "baseline checker"},
		"drift unknown field":          {"/v1/drift/check", `{"gateway":"all","colour":"red"}`, 400, "colour"},
		"patch without gateways":       {"/v1/patch/waves", `{"packages":"openssh-server","by":"alice"}`, 400, "gateways"},
		"patch without packages":       {"/v1/patch/waves", `{"gateways":["gw-hq"],"by":"alice"}`, 400, "packages"},
		"patch without who":            {"/v1/patch/waves", `{"gateways":["gw-hq"],"packages":"x"}`, 400, "by"},
		"patch unknown gateway":        {"/v1/patch/waves", `{"gateways":["gw-mars"],"packages":"x","by":"alice"}`, 400, "gw-mars"},
		"patch wildcard gateway":       {"/v1/patch/waves", `{"gateways":["*"],"packages":"x","by":"alice"}`, 400, "wildcard"},
		"patch gateways of wrong type": {"/v1/patch/waves", `{"gateways":"gw-hq","packages":"x","by":"alice"}`, 400, "gateways"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := s.call(t, "POST", tc.path, []byte(tc.body))
			if r.status != tc.status || !strings.Contains(string(r.body), tc.contains) {
				t.Fatalf("%s, want %d mentioning %q", r, tc.status, tc.contains)
			}
		})
	}
	expectStatus(t, s.call(t, "POST", "/v1/patch/waves", []byte(`{}`), withoutAuth()), http.StatusUnauthorized)
	runs := s.call(t, "GET", "/v1/runs", nil)
	if strings.Contains(string(runs.body), `"id"`) {
		t.Fatalf("a refused request started a run: %s", runs)
	}
}
