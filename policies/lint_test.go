package policies

import (
	"errors"
	"strings"
	"testing"
)

func TestLint(t *testing.T) {
	type problem struct {
		kind LintKind
		text string // substring of the message
	}
	tests := map[string]struct {
		files map[string]string
		known []string
		set   *Set // hand-built instead of loaded
		want  []problem
	}{
		"clean set": {
			files: map[string]string{"p.yaml": orderedSet},
		},
		"unknown runbook": {
			files: map[string]string{"p.yaml": notifyRunbook + `
policies:
  - {name: p, match: 'true', runbook: contain-everything, approval: auto}
`},
			want: []problem{{LintUnknownRunbook, `p.yaml:8: policy "p": runbook "contain-everything" is not defined`}},
		},
		"unknown action": {
			files: map[string]string{"r.yaml": `
runbooks:
  - name: r
    steps: [{action: notify}, {action: nuke_from_orbit}]
`},
			want: []problem{{LintUnknownAction, `runbook "r": steps[1]: unknown action "nuke_from_orbit"`}},
		},
		"unknown action against a given catalogue": {
			files: map[string]string{"r.yaml": notifyRunbook},
			known: []string{"snapshot"},
			want:  []problem{{LintUnknownAction, `unknown action "notify" (known: snapshot)`}},
		},
		"unreachable: same match spelt differently": {
			files: map[string]string{"p.yaml": notifyRunbook + `
policies:
  - {name: a, priority: 2, match: 'indicator.kind == "c2_beacon"', runbook: notify-only, approval: auto}
  - {name: b, priority: 1, match: "indicator.kind  ==  'c2_beacon'", runbook: notify-only, approval: required}
`},
			want: []problem{{LintUnreachable, `policy "b": unreachable: earlier p.yaml:8: policy "a"`}},
		},
		"unreachable: after a catch-all": {
			files: map[string]string{"p.yaml": notifyRunbook + `
policies:
  - {name: everything, priority: 2, match: 'true', runbook: notify-only, approval: auto}
  - {name: never, priority: 1, match: 'indicator.severity_rank > 3', runbook: notify-only, approval: auto}
`},
			want: []problem{{LintUnreachable, `policy "never": unreachable`}},
		},
		"reachable: same match behind a stricter confidence guard": {
			files: map[string]string{"p.yaml": notifyRunbook + `
policies:
  - {name: sure, priority: 2, match: 'indicator.kind == "c2_beacon"', runbook: notify-only, approval: auto, guards: {min_confidence: 0.8}}
  - {name: unsure, priority: 1, match: 'indicator.kind == "c2_beacon"', runbook: notify-only, approval: auto}
`},
		},
		"auto policy with destructive step before evidence": {
			files: map[string]string{"p.yaml": `
runbooks:
  - name: scorched-earth
    steps:
      - action: capture_volatile
        optional: true
      - action: rotate_credentials
      - action: snapshot
policies:
  - {name: p, match: 'true', runbook: scorched-earth, approval: auto}
`},
			want: []problem{{LintNoEvidenceFirst, `policy "p": approval is auto but runbook "scorched-earth" runs destructive step "rotate_credentials" before any required evidence step`}},
		},
		"each destructive action is caught": {
			files: map[string]string{"p.yaml": `
runbooks:
  - {name: off, steps: [{action: power_off}]}
  - {name: patch, steps: [{action: notify}, {action: patch}]}
  - {name: rebuild, steps: [{action: rotate_credentials}]}
policies:
  - {name: p1, priority: 3, match: 'indicator.kind == "crash"', runbook: "off", approval: auto}
  - {name: p2, priority: 2, match: 'indicator.kind == "c2_beacon"', runbook: patch, approval: auto}
  - {name: p3, priority: 1, match: 'indicator.kind == "exfiltration"', runbook: rebuild, approval: auto}
`},
			known: []string{"power_off", "notify", "patch", "rotate_credentials"},
			want: []problem{
				{LintNoEvidenceFirst, `"power_off"`},
				{LintNoEvidenceFirst, `"patch"`},
				{LintNoEvidenceFirst, `"rebuild"`},
			},
		},
		"destructive step is fine after evidence or with approval": {
			files: map[string]string{"p.yaml": `
runbooks:
  - {name: careful, steps: [{action: snapshot}, {action: power_off}]}
  - {name: reckless, steps: [{action: power_off}]}
policies:
  - {name: auto, priority: 2, match: 'indicator.kind == "crash"', runbook: careful, approval: auto}
  - {name: human, priority: 1, match: 'indicator.kind == "c2_beacon"', runbook: reckless, approval: required}
`},
		},
		"automatic isolation outside the budget": {
			files: map[string]string{"p.yaml": `
runbooks:
  - {name: contain, steps: [{action: snapshot}, {action: isolate}]}
policies:
  - {name: p, match: 'true', runbook: contain, approval: auto, guards: {budget: false}}
`},
			want: []problem{{LintBudgetBypass, `guards.budget is false`}},
		},
		"repeat_after on a policy that isolates": {
			files: map[string]string{"p.yaml": `
runbooks:
  - {name: contain, steps: [{action: snapshot}, {action: isolate}]}
  - {name: look, steps: [{action: investigate}, {action: notify}]}
policies:
  - {name: p, match: 'indicator.kind == "c2_beacon"', runbook: contain, approval: required, guards: {repeat_after: 10m}}
  - {name: q, match: 'true', runbook: look, approval: auto, guards: {budget: false, repeat_after: 10m}}
`},
			want: []problem{{LintRepeatedContainment, `runbook "contain" isolates, but guards.repeat_after is 10m0s`}},
		},
		"automatic release": {
			files: map[string]string{"p.yaml": `
runbooks:
  - {name: release-gateway, steps: [{action: release}, {action: notify}]}
policies:
  - {name: p, match: 'indicator.status == "resolved"', runbook: release-gateway, approval: auto}
`},
			want: []problem{{LintAutoRelease, `runbook "release-gateway" releases the gateway`}},
		},
		"empty runbook": {
			files: map[string]string{"r.yaml": "runbooks:\n  - name: hollow\n    steps: []\n"},
			want:  []problem{{LintEmptyRunbook, `r.yaml:2: runbook "hollow": has no steps`}},
		},
		"duplicate step names": {
			files: map[string]string{"r.yaml": "runbooks:\n  - name: twice\n    steps: [{action: notify}, {action: notify}]\n"},
			want:  []problem{{LintDuplicate, `steps[0] and steps[1] are both named "notify"`}},
		},
		"duplicate policy and runbook names in a hand-built set": {
			set: &Set{
				Policies: []*Policy{
					{Name: "x", Match: "indicator.severity_rank > 2", Runbook: "r", Approval: ApprovalRequired},
					{Name: "x", Match: "indicator.severity_rank > 3", Runbook: "r", Approval: ApprovalRequired},
				},
				Runbooks: map[string]*Runbook{"r": {Name: "other", Steps: []Step{{Action: "notify"}}}},
			},
			want: []problem{
				{LintDuplicate, `policy "x": policy name already used by policy "x"`},
				{LintDuplicate, `runbook "other": registered under the name "r"`},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := tc.set
			if s == nil {
				s = mustLoad(t, tc.files)
			}
			errs := s.Lint(tc.known)
			if len(errs) != len(tc.want) {
				t.Fatalf("Lint = %d problems %v, want %d", len(errs), errs, len(tc.want))
			}
			for i, w := range tc.want {
				var le *LintError
				if !errors.As(errs[i], &le) {
					t.Fatalf("problem %d is %T, want *LintError", i, errs[i])
				}
				if le.Kind != w.kind || !strings.Contains(le.Error(), w.text) {
					t.Errorf("problem %d = %q (%s), want kind %s containing %q", i, le.Error(), le.Kind, w.kind, w.text)
				}
			}
		})
	}
}
