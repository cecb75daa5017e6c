package store

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestQueriesOnTheIntakePathUseTheirIndex: the queries every decided
// indicator makes read through an index made for them, not every row of
// an incident (issue #19: ActiveRunFor read all of an incident's runs and
// intake slowed as the store grew; CountAutoIsolations read every run
// ever recorded for each run a decision started; OpenIncidentFor read every
// incident the gateway ever had, closed ones included; the circuit breaker
// read every indicator of its hour-long window).
func TestQueriesOnTheIntakePathUseTheirIndex(t *testing.T) {
	st, err := Open(t.Context(), filepath.Join(t.TempDir(), "w.db"), "normal")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for name, tc := range map[string]struct {
		query, index string
		args         []any
	}{
		"ActiveRunFor":                {activeRunQuery, "runs_active", []any{"inc-1", "contain"}},
		"RecentRunFor":                {recentRunQuery, "runs_recent", []any{"inc-1", "crash-investigate", "2026-12-07T00:00:00.000000000Z"}},
		"CountAutoIsolations":         {autoIsolationsQuery, "runs_auto_isolation", []any{"osaka", "2026-12-07T00:00:00.000000000Z"}},
		"OpenIncidentFor":             {openIncidentQuery, "incidents_open", []any{"gw-osaka", "2026-12-07T00:00:00.000000000Z"}},
		"CountOpenIncidents":          {openIncidentsCountQuery, "incidents_open", []any{"gw-osaka"}},
		"CountGatewaysWithIndicators": {gatewaysFiringQuery, "gateway_firing_last", []any{"gw-osaka", "gw-osaka", "2026-12-07T00:00:00.000000000Z", "2026-12-07T00:00:00.000000000Z"}},
	} {
		rows, err := st.DB().QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+tc.query, tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if got := strings.Join(plan, "; "); !strings.Contains(got, "USING INDEX "+tc.index) && !strings.Contains(got, "USING COVERING INDEX "+tc.index) {
			t.Errorf("%s: plan %q, want it to use %s", name, got, tc.index)
		}
	}
}
