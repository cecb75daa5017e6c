package policies

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// mapFS builds an in-memory policy directory from file name → content.
func mapFS(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, data := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(data)}
	}
	return fsys
}

// notifyRunbook is a minimal runbook file most test sets need.
const notifyRunbook = `
runbooks:
  - name: notify-only
    steps:
      - action: notify
`

// wantErrorContaining fails t with ifNil when err is nil, and names each
// of want that err's message does not contain.
func wantErrorContaining(t *testing.T, err error, ifNil string, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal(ifNil)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func mustLoad(t *testing.T, files map[string]string) *Set {
	t.Helper()
	s, err := LoadFS(mapFS(files), ".")
	if err != nil {
		t.Fatalf("LoadFS: %v", err)
	}
	return s
}

func TestLoadStrictYAML(t *testing.T) {
	tests := map[string]struct {
		file string
		want []string // substrings of the error
	}{
		"unknown top-level key": {
			file: "policy:\n  - name: x\n",
			want: []string{"p.yaml:1:", `unknown key "policy"`, "top level"},
		},
		"unknown policy key": {
			file: "policies:\n  - name: x\n    match: 'true'\n    runbook: r\n    approval: auto\n    colour: red\n",
			want: []string{"p.yaml:6:", `unknown key "colour"`, "a policy"},
		},
		"unknown guard key": {
			file: "policies:\n  - name: x\n    match: 'true'\n    runbook: r\n    approval: auto\n    guards:\n      min_confidance: 0.5\n",
			want: []string{"p.yaml:7:", `unknown key "min_confidance"`, "guards"},
		},
		"unknown runbook key": {
			file: "runbooks:\n  - name: r\n    stepz: []\n",
			want: []string{"p.yaml:3:", `unknown key "stepz"`, "a runbook"},
		},
		"unknown step key": {
			file: "runbooks:\n  - name: r\n    steps:\n      - action: notify\n        optionl: true\n",
			want: []string{"p.yaml:5:", `unknown key "optionl"`, "a runbook step"},
		},
		"wrong value type": {
			file: "policies:\n  - name: x\n    priority: high\n",
			want: []string{"p.yaml:3:", "cannot unmarshal"},
		},
		"syntax error": {
			file: "policies:\n  - name: x\n    match: [unclosed\n",
			want: []string{"p.yaml:"},
		},
		"unknown key in a second document": {
			file: notifyRunbook + "---\npolicies:\n  - name: x\n    runbok: r\n",
			want: []string{"p.yaml:9:", `unknown key "runbok"`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := LoadFS(mapFS(map[string]string{"p.yaml": tc.file}), ".")
			wantErrorContaining(t, err, "LoadFS succeeded, want an error", tc.want...)
		})
	}
}

func TestLoadCompileErrors(t *testing.T) {
	tests := map[string]struct {
		match string
		want  []string
	}{
		"syntax error": {
			match: `indicator.kind ==`,
			want:  []string{"match 1:18:", "Syntax error"},
		},
		"non-bool result": {
			match: `indicator.severity_rank + 1`,
			want:  []string{"match 1:1:", "has type int", "must be bool"},
		},
		"dyn result is not bool": {
			match: `dyn(indicator.kind)`,
			want:  []string{"has type dyn", "must be bool"},
		},
		"unknown variable": {
			match: `indicator.kind == "c2_beacon" && alert.severity == "high"`,
			want:  []string{"match 1:34:", "undeclared reference to 'alert'"},
		},
		"unknown field": {
			match: `indicator.knd == "c2_beacon"`,
			want:  []string{"match 1:10:", "undefined field 'knd'"},
		},
		"type mismatch": {
			match: `indicator.severity_rank == "high"`,
			want:  []string{"no matching overload", "(int, string)"},
		},
		"undefined field inside has()": {
			match: `has(indicator.owner)`,
			want:  []string{"undefined field 'owner'"},
		},
		"position on a later line": {
			match: "indicator.kind == 'c2_beacon' &&\n  indicator.bogus",
			want:  []string{"match 2:12:", "undefined field 'bogus'"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			file := "# comment\npolicies:\n  - name: broken\n    match: " + yamlQuote(tc.match) + "\n    runbook: notify-only\n    approval: auto\n"
			_, err := LoadFS(mapFS(map[string]string{"rules.yaml": file}), ".")
			// File, YAML line of the policy, policy name, then the position.
			want := append([]string{`rules.yaml:3: policy "broken": match`}, tc.want...)
			wantErrorContaining(t, err, "LoadFS succeeded, want a compile error", want...)
		})
	}
}

// yamlQuote writes s as a double-quoted YAML scalar.
func yamlQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

func TestLoadValidation(t *testing.T) {
	tests := map[string]struct {
		files map[string]string
		want  []string
	}{
		"missing fields": {
			files: map[string]string{"p.yaml": "policies:\n  - description: nothing else\n"},
			want:  []string{"name: is required", "match: is required", "runbook: is required", "approval: is required"},
		},
		"bad approval and confidence": {
			files: map[string]string{"p.yaml": "policies:\n  - name: x\n    match: 'true'\n    runbook: r\n    approval: sometimes\n    guards: {min_confidence: 1.5}\n"},
			want:  []string{`p.yaml:2: policy "x"`, `approval: unknown value "sometimes"`, "min_confidence: 1.5 is outside 0..1"},
		},
		"negative repeat_after": {
			files: map[string]string{"p.yaml": "policies:\n  - name: x\n    match: 'true'\n    runbook: r\n    approval: auto\n    guards: {repeat_after: -5m}\n"},
			want:  []string{`p.yaml:2: policy "x"`, "guards.repeat_after: -5m0s is negative"},
		},
		"repeat_after that is not a duration": {
			files: map[string]string{"p.yaml": "policies:\n  - name: x\n    match: 'true'\n    runbook: r\n    approval: auto\n    guards: {repeat_after: soon}\n"},
			want:  []string{`p.yaml:6: guards.repeat_after: "soon" is not a duration (like 5m or 1h30m)`},
		},
		"bad name": {
			files: map[string]string{"p.yaml": "policies:\n  - name: 'two words'\n    match: 'true'\n    runbook: r\n    approval: auto\n"},
			want:  []string{"name: use letters"},
		},
		"duplicate policy across files": {
			files: map[string]string{
				"a.yaml": "policies:\n  - name: x\n    match: 'true'\n    runbook: r\n    approval: auto\n",
				"b.yaml": "\npolicies:\n  - name: x\n    match: 'false'\n    runbook: r\n    approval: auto\n",
			},
			want: []string{`b.yaml:3: policy "x": duplicate policy name, first defined at a.yaml:2`},
		},
		"duplicate runbook": {
			files: map[string]string{"r.yaml": notifyRunbook + notifyRunbook[len("\nrunbooks:\n"):]},
			want:  []string{`duplicate runbook name, first defined at r.yaml:3`},
		},
		"step without action": {
			files: map[string]string{"r.yaml": "runbooks:\n  - name: r\n    steps:\n      - params: {a: b}\n"},
			want:  []string{`r.yaml:2: runbook "r"`, "steps[0].action: is required"},
		},
		"no yaml files": {
			files: map[string]string{"README.md": "# policies\n"},
			want:  []string{"no *.yaml or *.yml files"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := LoadFS(mapFS(tc.files), ".")
			wantErrorContaining(t, err, "LoadFS succeeded, want an error", tc.want...)
		})
	}
}

func TestLoadOrderAndDefaults(t *testing.T) {
	s := mustLoad(t, map[string]string{
		"b.yaml": `
policies:
  - {name: b-low, match: 'true', runbook: notify-only, approval: auto, priority: 1}
  - {name: b-high, match: 'false', runbook: notify-only, approval: auto, priority: 50}
  - {name: b-tie, match: 'false', runbook: notify-only, approval: auto, priority: 10}
`,
		"a.yaml": `
policies:
  - {name: a-tie-1, match: 'false', runbook: notify-only, approval: auto, priority: 10}
  - {name: a-tie-2, match: 'false', runbook: notify-only, approval: required, priority: 10, guards: {budget: false}}
runbooks:
  - name: contain
    steps:
      - action: snapshot
        params: {memory: true, retries: 3}
      - {action: notify, name: tell-people}
`,
		"r.yml":      notifyRunbook,
		"ignored.md": "policies: [not yaml]",
		// Fixtures live under tests/ and must not be read as policies.
		"tests/t.yaml": "tests: []\n",
	})
	var got []string
	for _, p := range s.Policies {
		got = append(got, p.Name)
	}
	want := []string{"b-high", "a-tie-1", "a-tie-2", "b-tie", "b-low"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("order = %v, want %v", got, want)
	}
	for _, p := range s.Policies {
		if p.Name == "a-tie-2" {
			if p.File != "a.yaml" || p.Line != 4 {
				t.Errorf("a-tie-2 at %s:%d, want a.yaml:4", p.File, p.Line)
			}
			if p.Guards.CountsAgainstBudget() {
				t.Error("budget: false still counts against the budget")
			}
		}
		if p.Name == "b-low" && !p.Guards.CountsAgainstBudget() {
			t.Error("unset budget must count against the budget")
		}
	}
	rb := s.Runbooks["contain"]
	if rb == nil || len(rb.Steps) != 2 {
		t.Fatalf("runbook contain = %+v", rb)
	}
	if rb.Steps[0].Name != "snapshot" || rb.Steps[1].Name != "tell-people" {
		t.Errorf("step names = %q, %q; want snapshot (defaulted), tell-people", rb.Steps[0].Name, rb.Steps[1].Name)
	}
	if rb.Steps[0].Params["memory"] != "true" || rb.Steps[0].Params["retries"] != "3" {
		t.Errorf("params = %v, want scalars as strings", rb.Steps[0].Params)
	}
	if rb.File != "a.yaml" || rb.Line != 6 {
		t.Errorf("runbook at %s:%d, want a.yaml:6", rb.File, rb.Line)
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("policies:\n  - name: x\n    match: 'nope'\n    runbook: r\n    approval: auto\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "tests"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := LoadDir(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "p.yaml")+":2:") {
		t.Fatalf("LoadDir error = %v, want one naming %s:2", err, filepath.Join(dir, "p.yaml"))
	}
	if _, err := LoadDir(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("LoadDir on a missing directory succeeded")
	}
}

func TestDefaultLoadsAndLints(t *testing.T) {
	s, err := Default()
	if err != nil {
		t.Fatalf("Default: %v", err)
	}
	if errs := s.Lint(nil); len(errs) != 0 {
		t.Errorf("default set has lint problems: %v", errs)
	}
	for _, name := range []string{"contain-compromised-gateway", "investigate", "notify-only", "release-gateway"} {
		if s.Runbooks[name] == nil {
			t.Errorf("default runbook %q missing", name)
		}
	}
	for _, p := range s.Policies {
		if !strings.HasPrefix(p.File, "default/") || p.Line == 0 {
			t.Errorf("policy %q located at %s:%d", p.Name, p.File, p.Line)
		}
	}
}

// TestMayRead: a loaded set says which context counters its match
// expressions mention, so that the controller counts only those; a
// mention anywhere in an expression counts, and a set built by hand, or
// a field MayRead does not track, says yes.
func TestMayRead(t *testing.T) {
	set := func(matches ...string) *Set {
		var b strings.Builder
		b.WriteString("policies:\n")
		for i, m := range matches {
			fmt.Fprintf(&b, "  - {name: p%d, match: %s, runbook: notify-only, approval: auto}\n", i, yamlQuote(m))
		}
		return mustLoad(t, map[string]string{"p.yaml": b.String(), "r.yaml": notifyRunbook})
	}
	def, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		s          *Set
		open, recs bool
	}{
		"the defaults":            {def, false, false},
		"neither":                 {set(`indicator.kind == "crash"`, `context.posture == "quarantined"`), false, false},
		"recent indicators":       {set(`true`, `context.recent_indicators >= 3`), false, true},
		"open incidents":          {set(`context.open_incidents > 1 && indicator.kind == "crash"`), true, false},
		"both, in a has()":        {set(`has(context.open_incidents) || has(context.recent_indicators)`), true, true},
		"a mention in a string":   {set(`indicator.summary == "open_incidents"`), true, false},
		"a longer name is not it": {set(`indicator.labels.?recent_indicators_total.orValue("") == "1"`), false, false},
		"a set built by hand":     {&Set{}, true, true},
	}
	for name, tc := range tests {
		if got := tc.s.MayRead(ContextOpenIncidents); got != tc.open {
			t.Errorf("%s: MayRead(open_incidents) = %t, want %t", name, got, tc.open)
		}
		if got := tc.s.MayRead(ContextRecentIndicators); got != tc.recs {
			t.Errorf("%s: MayRead(recent_indicators) = %t, want %t", name, got, tc.recs)
		}
	}
	if !set(`true`).MayRead("posture") {
		t.Error("MayRead of a field it does not track: false, want true")
	}
}
