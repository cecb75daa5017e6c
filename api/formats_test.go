package api_test

import (
	"net/http"
	"strings"
	"testing"

	v1 "github.com/warden-ir/warden/api/v1"
)

// TestDetectorFormatRoutes posts each detector's real records through the
// API as a detector: alerts are stored and mapped to the gateway they are
// about, records that are not alerts are counted, broken ones listed, and a
// body that is not the format is a 400 naming the field.
func TestDetectorFormatRoutes(t *testing.T) {
	s := newStack(t, nil, nil)
	ids := s.user(t, "ids1", "intake")
	for _, tc := range []struct {
		route, fixture, contentType string
		wantGateway, wantPolicy     string
		wantIgnored                 map[string]int
		wantSkipped                 bool
	}{
		{"suricata", "suricata_ike_weak_crypto.json", "application/x-ndjson", "gw-osaka-a", "baseline-drift", map[string]int{"ike": 1, "stats": 1}, false},
		{"suricata", "suricata_partly_bad.json", "", "", "", nil, true},
		{"zeek", "zeek_notice_bruteforce.log", "text/plain", "", "", nil, false},
		{"wazuh", "wazuh_integrator_5720.json", "application/json", "", "", nil, false},
		{"falco", "falco_outbound.json", "", "", "", nil, false},
	} {
		t.Run(tc.route+"/"+tc.fixture, func(t *testing.T) {
			var opts []option
			if tc.contentType != "" {
				opts = append(opts, withHeader("Content-Type", tc.contentType))
			}
			r := ids.call(t, "POST", "/v1/intake/"+tc.route, readFixture(t, tc.fixture), opts...)
			expectStatus(t, r, http.StatusAccepted)
			got := decodeReply[v1.IntakeResponse](t, r)
			if got.Accepted == 0 || len(got.Results) != got.Accepted {
				t.Fatalf("accepted %d with %d results", got.Accepted, len(got.Results))
			}
			if tc.wantGateway != "" && (got.Results[0].Gateway != tc.wantGateway || !got.Results[0].Matched) {
				t.Errorf("first result %+v, want matched to %s", got.Results[0], tc.wantGateway)
			}
			if tc.wantPolicy != "" && (!strings.Contains(got.Results[0].Policy, tc.wantPolicy) || got.Results[0].RunID == "") {
				t.Errorf("first result %+v, want policy %s to start a run", got.Results[0], tc.wantPolicy)
			}
			for typ, n := range tc.wantIgnored {
				if got.Ignored[typ] != n {
					t.Errorf("ignored %v, want %s: %d", got.Ignored, typ, n)
				}
			}
			if tc.wantSkipped && len(got.Skipped) == 0 {
				t.Error("a broken record was not listed as skipped")
			}
			for _, sk := range got.Skipped {
				if sk.Reason == "" {
					t.Errorf("skipped record %d has no reason", sk.Index)
				}
			}
		})
	}
	for _, route := range []string{"suricata", "zeek", "wazuh", "falco"} {
		t.Run(route+"/garbage", func(t *testing.T) {
			e := expectError(t, ids.call(t, "POST", "/v1/intake/"+route, []byte("this is not "+route)), http.StatusBadRequest)
			if e.Field == "" {
				t.Errorf("the 400 names no field: %q", e.Error)
			}
		})
		t.Run(route+"/media type", func(t *testing.T) {
			expectError(t, ids.call(t, "POST", "/v1/intake/"+route, []byte("{}"), withHeader("Content-Type", "application/xml")), http.StatusUnsupportedMediaType)
		})
	}
}
