package api_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestIncidentReportRoute(t *testing.T) {
	s := newStack(t, nil, nil)
	r := s.call(t, "POST", "/v1/indicators", []byte(indicatorJSON("c2_beacon", "gw-hq", "critical", "203.0.113.66")))
	expectStatus(t, r, http.StatusAccepted)
	res := decodeReply[struct {
		Results []struct {
			IncidentID string `json:"incident_id"`
		} `json:"results"`
	}](t, r)
	id := res.Results[0].IncidentID
	tests := map[string]struct {
		query       string
		status      int
		contentType string
		contains    string
	}{
		"default is Japanese HTML": {"", 200, "text/html", "経営層"},
		"English Markdown":         {"?lang=en&format=md", 200, "text/markdown", "gw-hq"},
		"unknown language":         {"?lang=fr", 400, "application/json", "lang"},
		"unknown format":           {"?format=pdf", 400, "application/json", "format"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := s.call(t, "GET", "/v1/incidents/"+id+"/report"+tc.query, nil)
			if r.status != tc.status || !strings.HasPrefix(r.header.Get("Content-Type"), tc.contentType) || !strings.Contains(string(r.body), tc.contains) {
				t.Fatalf("%s: %s %q", r, r.header.Get("Content-Type"), tc.contains)
			}
		})
	}
	// The server has the inventory: the report names the site's time zone,
	// the VM and the peers, and never says the inventory is unknown.
	r = s.call(t, "GET", "/v1/incidents/"+id+"/report?lang=en&format=md", nil)
	expectStatus(t, r, http.StatusOK)
	for _, want := range []string{"local time of site hq (Asia/Tokyo, JST)", "gateway gw-hq (VM gw-hq)", "gw-osaka-a", "gw-factory"} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(string(r.body), "inventory unknown") {
		t.Error("the served report says the inventory is unknown")
	}
	expectStatus(t, s.call(t, "GET", "/v1/incidents/inc-nope/report", nil), http.StatusNotFound)
	expectStatus(t, s.call(t, "GET", "/v1/incidents/"+id+"/report", nil, withoutAuth()), http.StatusUnauthorized)
}
