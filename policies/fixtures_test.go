package policies

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultFixturesPass(t *testing.T) {
	s, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	results, err := RunDefaultFixtures(s)
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, r := range results {
		if !r.Passed {
			t.Errorf("%s:%d: %s: %s", r.File, r.Line, r.Name, r.Message)
		}
		covered[r.Got.Policy] = true
	}
	for _, p := range s.Policies {
		if !covered[p.Name] {
			t.Errorf("no default fixture ends in policy %q", p.Name)
		}
	}
	// The same fixtures through RunFixturesFS on the embedded FS.
	again, err := RunFixturesFS(s, DefaultFS(), ".")
	if err != nil || len(again) != len(results) {
		t.Fatalf("RunFixturesFS = %d results, %v; want %d", len(again), err, len(results))
	}
}

// copyDefaults writes the embedded defaults into a directory, the way
// `warden policy lint` or the demo would.
func copyDefaults(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(DefaultFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		data, err := fs.ReadFile(DefaultFS(), p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRunFixturesFromDirectory(t *testing.T) {
	dir := copyDefaults(t)
	wrong := `
tests:
  - name: low confidence c2 does not isolate
    gateway: {id: gw-1, site: osaka}
    site: {name: osaka, time_zone: Asia/Tokyo}
    indicator: {kind: c2_beacon, severity: high, confidence: 0.2, source: test}
    context: {now: "2025-01-07T03:00:00+09:00"}
    expect: {policy: c2-or-exfil-isolate, approval: auto}
  - name: resolved alert is expected to isolate
    indicator: {kind: exfiltration, severity: critical, confidence: 0.9, gateway: gw-1, status: resolved}
    context: {now: "2025-01-07T03:00:00+09:00"}
    expect: {runbook: contain-compromised-gateway}
  - name: isolation expected to need no approval where it does
    indicator: {kind: config_tamper, severity: high, confidence: 0.9, gateway: gw-1, observed_at: "2025-01-07T03:00:00+09:00"}
    expect: {approval: auto}
  - name: a right one among the wrong
    indicator: {kind: baseline_drift, severity: low, gateway: gw-1}
    context: {now: "2025-01-07T03:00:00+09:00"}
    expect: {policy: baseline-drift-remediate}
`
	if err := os.WriteFile(filepath.Join(dir, "tests", "wrong.yaml"), []byte(wrong), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	results, err := RunFixtures(s, dir)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]FixtureResult{}
	for _, r := range results {
		if strings.HasSuffix(r.File, "wrong.yaml") {
			byName[r.Name] = r
		} else if !r.Passed {
			t.Errorf("default fixture %q failed from a copied directory: %s", r.Name, r.Message)
		}
	}
	wantFail := map[string][]string{
		"low confidence c2 does not isolate": {
			`policy: want "c2-or-exfil-isolate", got "catch-all-notify"`,
			"[c2-or-exfil-isolate: confidence 0.2 below min_confidence 0.5]",
		},
		"resolved alert is expected to isolate":                {`want runbook "contain-compromised-gateway", nothing matched`, ReasonResolved},
		"isolation expected to need no approval where it does": {`approval: want "auto", got "required"`},
	}
	for name, wants := range wantFail {
		r, ok := byName[name]
		if !ok {
			t.Errorf("fixture %q did not run", name)
			continue
		}
		if r.Passed {
			t.Errorf("fixture %q passed, want a failure", name)
		}
		for _, w := range wants {
			if !strings.Contains(r.Message, w) {
				t.Errorf("fixture %q message %q does not contain %q", name, r.Message, w)
			}
		}
		if r.File != filepath.Join(dir, "tests", "wrong.yaml") || r.Line == 0 {
			t.Errorf("fixture %q located at %s:%d", name, r.File, r.Line)
		}
	}
	if r := byName["a right one among the wrong"]; !r.Passed {
		t.Errorf("correct fixture failed: %s", r.Message)
	}
}

func TestRunFixturesMalformed(t *testing.T) {
	s := mustLoad(t, map[string]string{"p.yaml": orderedSet})
	const ok = "    indicator: {kind: c2_beacon, severity: high, gateway: g}\n    context: {now: \"2025-01-07T03:00:00+09:00\"}\n"
	tests := map[string]struct {
		file string
		want []string
	}{
		"unknown key": {
			file: "tests:\n  - name: t\n" + ok + "    expect: {policy: first}\n    expected: {policy: first}\n",
			want: []string{"tests/t.yaml:6:", `unknown key "expected"`},
		},
		"unknown indicator key": {
			file: "tests:\n  - name: t\n    indicator: {kind: c2_beacon, severity: high, gateway: g, sevrity: high}\n",
			want: []string{"tests/t.yaml:3:", `unknown key "sevrity"`},
		},
		"no time": {
			file: "tests:\n  - name: t\n    indicator: {kind: c2_beacon, severity: high, gateway: g}\n    expect: {policy: first}\n",
			want: []string{`tests/t.yaml:2: test "t"`, "must not depend on the clock"},
		},
		"bad time": {
			file: "tests:\n  - name: t\n    indicator: {kind: c2_beacon, severity: high, gateway: g}\n    context: {now: yesterday}\n    expect: {policy: first}\n",
			want: []string{`context.now: "yesterday" is not an RFC 3339 time`},
		},
		"invalid indicator": {
			file: "tests:\n  - name: t\n    indicator: {kind: c2_beacn, severity: high, gateway: g}\n    context: {now: \"2025-01-07T03:00:00+09:00\"}\n    expect: {policy: first}\n",
			want: []string{`indicator.kind: unknown kind "c2_beacn"`},
		},
		"bad time zone": {
			file: "tests:\n  - name: t\n    site: {name: x, time_zone: Mars/Olympus}\n" + ok + "    expect: {policy: first}\n",
			want: []string{"site:", `unknown time zone "Mars/Olympus"`},
		},
		"no expectation": {
			file: "tests:\n  - name: t\n" + ok,
			want: []string{"expect: set policy, runbook or approval, or no_match: true"},
		},
		"contradictory expectation": {
			file: "tests:\n  - name: t\n" + ok + "    expect: {no_match: true, policy: first}\n",
			want: []string{"no_match cannot be combined"},
		},
		"duplicate names": {
			file: "tests:\n  - name: t\n" + ok + "    expect: {policy: first}\n  - name: t\n" + ok + "    expect: {policy: first}\n",
			want: []string{`tests/t.yaml:6: test "t": duplicate name, first used at line 2`},
		},
		"no fixtures": {
			file: "tests: []\n",
			want: []string{"no fixtures found"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := RunFixturesFS(s, mapFS(map[string]string{"tests/t.yaml": tc.file}), ".")
			wantErrorContaining(t, err, "RunFixturesFS succeeded, want an error", tc.want...)
		})
	}
	if _, err := RunFixtures(s, t.TempDir()); err == nil {
		t.Error("RunFixtures without a tests directory succeeded")
	}
}
