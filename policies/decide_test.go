package policies

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
)

const orderedSet = `
policies:
  - name: first
    priority: 30
    match: 'indicator.kind == "c2_beacon"'
    runbook: contain
    approval: auto
    guards: {min_confidence: 0.5}
  - name: runtime-error
    priority: 20
    match: 'indicator.labels["team"] == "red"'
    runbook: notify-only
    approval: required
  - name: second
    priority: 10
    match: 'indicator.severity_rank >= 3'
    runbook: notify-only
    approval: required
    guards: {budget: false, repeat_after: 15m}
  - name: last
    match: 'true'
    runbook: notify-only
    approval: auto
runbooks:
  - name: contain
    steps: [{action: snapshot}, {action: isolate}]
  - name: notify-only
    steps: [{action: notify}]
`

// validatedSite returns a site as a validated inventory holds it.
func validatedSite(t testing.TB, s inventory.Site) inventory.Site {
	t.Helper()
	inv := inventory.Inventory{Sites: []inventory.Site{s}}
	if err := inv.Validate(); err != nil {
		t.Fatalf("validating site: %v", err)
	}
	return inv.Sites[0]
}

func tokyo(t testing.TB) inventory.Site {
	return validatedSite(t, inventory.Site{Name: "tokyo", TimeZone: "Asia/Tokyo", Networks: []string{"10.10.0.0/16"}})
}

func tokyoGateway() inventory.Gateway {
	return inventory.Gateway{
		ID: "gw-tokyo", Site: "tokyo", VM: "/DC0/vm/gw-tokyo", Hostname: "gw-tokyo.example.net",
		Addresses: []string{"203.0.113.10", "10.10.0.1"}, ManagementNetworks: []string{"192.0.2.0/24"},
	}
}

// monday17UTC is Tuesday 02:00 in Tokyo.
var monday17UTC = time.Date(2025, 1, 6, 17, 0, 0, 0, time.UTC)

func input(t testing.TB, ind indicator.Indicator) Input {
	if ind.Gateway == "" {
		ind.Gateway = "gw-tokyo"
	}
	if ind.Source == "" {
		ind.Source = "test"
	}
	return Input{Indicator: ind, Gateway: tokyoGateway(), Site: tokyo(t), Context: Context{Now: monday17UTC}}
}

func TestDecideOrderAndExplanations(t *testing.T) {
	s := mustLoad(t, map[string]string{"p.yaml": orderedSet})
	skippedAfter := func(p string) string { return "not evaluated: earlier policy " + p + " matched" }
	tests := map[string]struct {
		ind  indicator.Indicator
		want Decision
	}{
		"first policy wins, later ones not evaluated": {
			ind: indicator.Indicator{Kind: indicator.C2Beacon, Severity: indicator.High, Confidence: 0.9},
			want: Decision{Matched: true, Policy: "first", Runbook: "contain", Approval: ApprovalAuto, CountsAgainstBudget: true, Explanations: []Explanation{
				{"first", true, ReasonMatched},
				{"runtime-error", false, skippedAfter("first")},
				{"second", false, skippedAfter("first")},
				{"last", false, skippedAfter("first")},
			}},
		},
		"low confidence falls through, evaluation error falls through": {
			ind: indicator.Indicator{Kind: indicator.C2Beacon, Severity: indicator.High, Confidence: 0.3},
			want: Decision{Matched: true, Policy: "second", Runbook: "notify-only", Approval: ApprovalRequired, CountsAgainstBudget: false, RepeatAfter: 15 * time.Minute, Explanations: []Explanation{
				{"first", false, "confidence 0.3 below min_confidence 0.5"},
				{"runtime-error", false, "evaluation error: no such key: team"},
				{"second", true, ReasonMatched},
				{"last", false, skippedAfter("second")},
			}},
		},
		"label present": {
			ind: indicator.Indicator{Kind: indicator.TrafficSpike, Severity: indicator.Low, Labels: map[string]string{"team": "red"}},
			want: Decision{Matched: true, Policy: "runtime-error", Runbook: "notify-only", Approval: ApprovalRequired, CountsAgainstBudget: true, Explanations: []Explanation{
				{"first", false, ReasonFalse},
				{"runtime-error", true, ReasonMatched},
				{"second", false, skippedAfter("runtime-error")},
				{"last", false, skippedAfter("runtime-error")},
			}},
		},
		"catch-all last": {
			ind: indicator.Indicator{Kind: indicator.TrafficSpike, Severity: indicator.Low, Labels: map[string]string{"team": "blue"}},
			want: Decision{Matched: true, Policy: "last", Runbook: "notify-only", Approval: ApprovalAuto, CountsAgainstBudget: true, Explanations: []Explanation{
				{"first", false, ReasonFalse},
				{"runtime-error", false, ReasonFalse},
				{"second", false, ReasonFalse},
				{"last", true, ReasonMatched},
			}},
		},
		"resolved matches nothing": {
			ind: indicator.Indicator{Kind: indicator.C2Beacon, Severity: indicator.Critical, Confidence: 1, Status: indicator.StatusResolved},
			want: Decision{Explanations: []Explanation{
				{"first", false, ReasonResolved},
				{"runtime-error", false, ReasonResolved},
				{"second", false, ReasonResolved},
				{"last", false, ReasonResolved},
			}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := s.Decide(input(t, tc.ind))
			// 02:00 Tuesday in Tokyo: off-hours for every case.
			tc.want.BusinessHours = false
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("Decide =\n  %+v\nwant\n  %+v", got, tc.want)
			}
		})
	}
}

func TestDecideEmptySet(t *testing.T) {
	s := mustLoad(t, map[string]string{"r.yaml": notifyRunbook})
	d := s.Decide(input(t, indicator.Indicator{Kind: indicator.C2Beacon, Severity: indicator.High}))
	if d.Matched || len(d.Explanations) != 0 {
		t.Errorf("Decide on an empty set = %+v, want no match and no explanations", d)
	}
}

func TestDecideBusinessHoursAcrossZones(t *testing.T) {
	s := mustLoad(t, map[string]string{"p.yaml": notifyRunbook + `
policies:
  - name: off-hours
    match: '!context.business_hours'
    runbook: notify-only
    approval: auto
`})
	tests := map[string]struct {
		site       inventory.Site
		observedAt time.Time
		now        time.Time
		want       bool // business hours
	}{
		"02:00 JST is off-hours though it is 17:00 UTC": {
			site: inventory.Site{Name: "tokyo", TimeZone: "Asia/Tokyo"}, observedAt: monday17UTC, want: false,
		},
		"the same instant is business hours in UTC": {
			site: inventory.Site{Name: "london", TimeZone: "UTC"}, observedAt: monday17UTC, want: true,
		},
		"10:00 JST is business hours though it is 01:00 UTC": {
			site: inventory.Site{Name: "tokyo", TimeZone: "Asia/Tokyo"}, observedAt: time.Date(2025, 1, 7, 1, 0, 0, 0, time.UTC), want: true,
		},
		"Saturday 11:00 JST is off-hours": {
			site: inventory.Site{Name: "tokyo", TimeZone: "Asia/Tokyo"}, observedAt: time.Date(2025, 1, 11, 11, 0, 0, 0, time.FixedZone("JST", 9*3600)), want: false,
		},
		"the observation time counts, not the decision time": {
			site:       inventory.Site{Name: "tokyo", TimeZone: "Asia/Tokyo"},
			observedAt: time.Date(2025, 1, 7, 2, 0, 0, 0, time.FixedZone("JST", 9*3600)),
			now:        time.Date(2025, 1, 7, 10, 0, 0, 0, time.FixedZone("JST", 9*3600)), want: false,
		},
		"zero observation time falls back to now": {
			site: inventory.Site{Name: "tokyo", TimeZone: "Asia/Tokyo"},
			now:  time.Date(2025, 1, 7, 10, 0, 0, 0, time.FixedZone("JST", 9*3600)), want: true,
		},
		"night shift across midnight": {
			site:       inventory.Site{Name: "factory", TimeZone: "Asia/Tokyo", BusinessHours: inventory.BusinessHours{Start: "22:00", End: "06:00"}},
			observedAt: monday17UTC, want: true,
		},
		"an unvalidated site still uses its zone": {
			site: inventory.Site{Name: "tokyo", TimeZone: "Asia/Tokyo"}, observedAt: monday17UTC, want: false,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			site := tc.site
			if name != "an unvalidated site still uses its zone" {
				site = validatedSite(t, site)
			}
			now := tc.now
			if now.IsZero() {
				now = tc.observedAt.Add(time.Minute)
			}
			in := Input{
				Indicator: indicator.Indicator{Kind: indicator.OffHoursAdminLogin, Gateway: "gw", Severity: indicator.Medium, ObservedAt: tc.observedAt},
				Site:      site,
				Context:   Context{Now: now},
			}
			d := s.Decide(in)
			if d.BusinessHours != tc.want {
				t.Errorf("BusinessHours = %v, want %v", d.BusinessHours, tc.want)
			}
			if d.Matched == tc.want {
				t.Errorf("policy on !context.business_hours matched = %v, want %v", d.Matched, !tc.want)
			}
		})
	}
}

// TestVariables proves every documented CEL variable carries the input's
// value.
func TestVariables(t *testing.T) {
	jst := time.FixedZone("JST", 9*3600)
	observed := time.Date(2025, 1, 7, 2, 30, 0, 0, jst)
	in := Input{
		Indicator: indicator.Indicator{
			Kind: indicator.C2Beacon, Gateway: "gw-tokyo", Severity: indicator.High, Confidence: 0.75,
			Observables: indicator.Observables{IPs: []string{"198.51.100.7", "10.10.3.3"}, Domains: []string{"evil.example"}, Hashes: []string{"abc"}},
			ObservedAt:  observed, Source: "suricata", Summary: "beacon", Fingerprint: "fp1",
			Labels: map[string]string{"team": "red"},
		},
		Gateway: tokyoGateway(),
		Site:    tokyo(t),
		Context: Context{Now: observed.Add(time.Minute), OpenIncidents: 2, RecentIndicators: 5},
	}
	quarantined := in
	quarantined.Context.Posture = "quarantined"
	quarantined.Indicator.Status = indicator.StatusFiring
	quarantined.Indicator.Summary = ""

	tests := map[string]struct {
		match string
		in    Input
	}{
		"indicator scalars":             {match: `indicator.kind == "c2_beacon" && indicator.gateway == "gw-tokyo" && indicator.severity == "high" && indicator.severity_rank == 3 && indicator.confidence == 0.75 && indicator.source == "suricata" && indicator.summary == "beacon" && indicator.fingerprint == "fp1"`, in: in},
		"status defaults to firing":     {match: `indicator.status == "firing"`, in: in},
		"labels":                        {match: `indicator.labels.team == "red" && "team" in indicator.labels && !("x" in indicator.labels) && indicator.labels.?x.orValue("none") == "none"`, in: in},
		"observables":                   {match: `indicator.observables.ips == ["198.51.100.7", "10.10.3.3"] && "evil.example" in indicator.observables.domains && size(indicator.observables.hashes) == 1`, in: in},
		"observed_at":                   {match: `indicator.observed_at == timestamp("2025-01-06T17:30:00Z")`, in: in},
		"gateway":                       {match: `gateway.id == "gw-tokyo" && gateway.site == "tokyo" && gateway.vm == "/DC0/vm/gw-tokyo" && gateway.hostname == "gw-tokyo.example.net" && "10.10.0.1" in gateway.addresses && gateway.management_networks == ["192.0.2.0/24"]`, in: in},
		"site":                          {match: `site.name == "tokyo" && site.time_zone == "Asia/Tokyo" && site.networks == ["10.10.0.0/16"]`, in: in},
		"context at the site's time":    {match: `!context.business_hours && context.local_hour == 2 && context.weekday == "tue"`, in: in},
		"context counters and now":      {match: `context.open_incidents == 2 && context.recent_indicators == 5 && context.now == timestamp("2025-01-06T17:31:00Z")`, in: in},
		"posture defaults to normal":    {match: `context.posture == "normal"`, in: in},
		"posture":                       {match: `context.posture == "quarantined"`, in: quarantined},
		"has() is presence":             {match: `has(indicator.summary) && has(indicator.labels)`, in: in},
		"has() on an empty field":       {match: `!has(indicator.summary)`, in: quarantined},
		"network functions":             {match: `indicator.observables.ips.exists(a, site.networks.exists(n, cidr(n).containsIP(a)))`, in: in},
		"string functions":              {match: `indicator.summary.upperAscii() == "BEACON"`, in: in},
		"same variable read many times": {match: `indicator.kind == "c2_beacon" && indicator.kind != "" && indicator.kind.startsWith("c2")`, in: in},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := mustLoad(t, map[string]string{"p.yaml": policyFile(tc.match)})
			d := s.Decide(tc.in)
			if !d.Matched {
				t.Errorf("%s did not match: %+v", tc.match, d.Explanations)
			}
		})
	}
}

func policyFile(match string) string {
	return notifyRunbook + "policies:\n  - name: p\n    match: " + yamlQuote(match) + "\n    runbook: notify-only\n    approval: auto\n"
}

func TestDecideConcurrent(t *testing.T) {
	s, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	inputs := benchInputs(t)
	want := make([]Decision, len(inputs))
	for i, in := range inputs {
		want[i] = s.Decide(in)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8*len(inputs))
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < 20; r++ {
				for i, in := range inputs {
					if got := s.Decide(in); fmt.Sprint(got) != fmt.Sprint(want[i]) {
						errs <- fmt.Sprintf("input %d: got %+v, want %+v", i, got, want[i])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestDecideUncompiledPolicy(t *testing.T) {
	s := &Set{Policies: []*Policy{{Name: "hand-made", Match: "true", Runbook: "r", Approval: ApprovalAuto}}}
	d := s.Decide(input(t, indicator.Indicator{Kind: indicator.C2Beacon, Severity: indicator.High}))
	if d.Matched || len(d.Explanations) != 1 || d.Explanations[0].Reason[:len("evaluation error")] != "evaluation error" {
		t.Errorf("Decide with an uncompiled policy = %+v, want an evaluation error and no match", d)
	}
}
