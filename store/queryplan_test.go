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
		"LiveThreats":                 {liveThreatsQuery(2), "indicators_gw", []any{"gw-osaka", "firing", "2026-12-07T00:00:00.000000000Z", "high", "critical"}},
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

// TestUpgradeDropsTheFiringIndex: a store of schema version 8 still has
// indicators_firing, which nothing reads since the circuit breaker reads
// gateway_firing; opening it drops the index, and a new store never has it.
func TestUpgradeDropsTheFiringIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.db")
	s, err := Open(t.Context(), path, "normal")
	if err != nil {
		t.Fatal(err)
	}
	indexed := func(s *Store) bool {
		t.Helper()
		var n int
		if err := s.db.QueryRowContext(t.Context(), `SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'indicators_firing'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	if indexed(s) {
		t.Fatal("a new store has indicators_firing")
	}
	// As a store of schema version 8 was.
	for _, q := range []string{`CREATE INDEX indicators_firing ON indicators(matched, status, received_at, gateway)`, `DELETE FROM schema_migrations WHERE version >= 9`} {
		if _, err := s.db.ExecContext(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = openAt(t, path)
	if indexed(s) {
		t.Fatal("indicators_firing is still there after the upgrade")
	}
}
