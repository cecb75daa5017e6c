package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/cacao"
	"github.com/warden-ir/warden/policies"
)

// runbookShell runs a command line as shell does (run: output, "warden:
// error" on stderr, exit status). Until newRunbookCmd registers
// `runbook export` and `runbook import`, it runs them under a root with the
// same global flags instead, so that the same tests exercise the real
// command tree once they are registered.
func runbookShell(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	if cmd, _, err := newRoot(io.Discard, io.Discard).Find([]string{"runbook", "export"}); err == nil && cmd.Name() == "export" {
		return shell(t, args...)
	}
	var out, errw bytes.Buffer
	g := &globals{out: &out, errw: &errw}
	root := &cobra.Command{Use: "warden", SilenceUsage: true, SilenceErrors: true}
	root.SetOut(&out)
	root.SetErr(&errw)
	root.PersistentFlags().StringVarP(&g.configPath, "config", "c", os.Getenv("WARDEN_CONFIG"), "")
	root.PersistentFlags().StringVar(&g.server, "server", os.Getenv("WARDEN_SERVER"), "")
	runbook := &cobra.Command{Use: "runbook"}
	runbook.AddCommand(newRunbookExportCmd(g), newRunbookImportCmd(g))
	root.AddCommand(runbook)
	root.SetArgs(args)
	if err := root.ExecuteContext(t.Context()); err != nil {
		fmt.Fprintln(&errw, "warden:", err)
		code = 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
	}
	return out.String(), errw.String(), code
}

// policyDirWithExtra copies the default policies into a directory and
// adds a runbook of its own.
func policyDirWithExtra(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, policies.DefaultFS()); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "extra.yaml", "runbooks:\n  - name: power-down\n    description: Cut the gateway off entirely.\n"+
		"    steps:\n      - action: snapshot\n        params: {memory: \"true\"}\n      - action: power_off\n")
	return dir
}

func TestRunbookExportCLI(t *testing.T) {
	hermetic(t)
	cfgDir := t.TempDir()
	cfg := writeFile(t, cfgDir, "warden.yaml", "server:\n  listen: 127.0.0.1:9443\npolicies:\n  dir: "+policyDirWithExtra(t)+"\n")
	cases := map[string]struct {
		args       []string
		wantCode   int
		wantName   string
		wantAgent  string // host the actuator agent names
		wantStderr string
	}{
		"default runbook":         {args: []string{"runbook", "export", "contain-compromised-gateway", "--format", "cacao"}, wantName: "contain-compromised-gateway", wantAgent: "127.0.0.1"},
		"format is the default":   {args: []string{"runbook", "export", "notify-only"}, wantName: "notify-only", wantAgent: "127.0.0.1"},
		"runbook from the config": {args: []string{"runbook", "export", "power-down", "-c", cfg}, wantName: "power-down", wantAgent: "127.0.0.1"},
		"actuator from --server":  {args: []string{"runbook", "export", "investigate", "--server", "https://warden.example.org"}, wantName: "investigate", wantAgent: "warden.example.org"},
		"unknown runbook":         {args: []string{"runbook", "export", "teleport"}, wantCode: 1, wantStderr: "no such runbook (have: contain-compromised-gateway"},
		"not in the defaults":     {args: []string{"runbook", "export", "power-down"}, wantCode: 1, wantStderr: "no such runbook"},
		"other format":            {args: []string{"runbook", "export", "investigate", "--format", "yaml"}, wantCode: 1, wantStderr: `--format "yaml": the only format is cacao`},
		"no name":                 {args: []string{"runbook", "export"}, wantCode: 1, wantStderr: "accepts 1 arg"},
		"bad config":              {args: []string{"runbook", "export", "investigate", "-c", filepath.Join(cfgDir, "missing.yaml")}, wantCode: 1, wantStderr: "reading config"},
		"bad server URL":          {args: []string{"runbook", "export", "investigate", "--server", "warden:8780"}, wantCode: 1, wantStderr: "actuator URL"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			out, errOut, code := runbookShell(t, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.wantCode, errOut)
			}
			if tc.wantCode != 0 {
				if !strings.Contains(errOut, tc.wantStderr) || out != "" {
					t.Errorf("stderr %q, stdout %q; want %q on stderr only", errOut, out, tc.wantStderr)
				}
				return
			}
			var pb cacao.Playbook
			if err := json.Unmarshal([]byte(out), &pb); err != nil {
				t.Fatalf("stdout is not a playbook: %v\n%.300s", err, out)
			}
			if pb.SpecVersion != "cacao-2.0" || pb.Name != tc.wantName || pb.ID != cacao.PlaybookID(tc.wantName) {
				t.Errorf("playbook %s %q %s, want cacao-2.0 %q %s", pb.SpecVersion, pb.Name, pb.ID, tc.wantName, cacao.PlaybookID(tc.wantName))
			}
			var hosts []string
			for _, a := range pb.AgentDefinitions {
				if a.Type == "http-api" {
					hosts = append(append(hosts, a.Address["ipv4"]...), a.Address["dname"]...)
				}
			}
			if !slices.Equal(hosts, []string{tc.wantAgent}) {
				t.Errorf("actuator agent hosts %v, want %s", hosts, tc.wantAgent)
			}
		})
	}
}

// TestRunbookImportCLI: an export imports back as the same runbook, a
// playbook with steps Warden cannot run exits 3 naming each on stderr and
// printing nothing, and what is not a playbook exits 1.
func TestRunbookImportCLI(t *testing.T) {
	hermetic(t)
	dir := t.TempDir()
	exported, errOut, code := runbookShell(t, "runbook", "export", "respond-confirmed-compromise")
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	exportFile := writeFile(t, dir, "rcc.json", exported)
	soarca, err := filepath.Abs("../../cacao/testdata/soarca_example_playbook.json")
	if err != nil {
		t.Fatal(err)
	}
	notPlaybook := writeFile(t, dir, "bundle.json", `{"type": "bundle", "id": "bundle--1", "objects": []}`)

	t.Run("round trip", func(t *testing.T) {
		out, errOut, code := runbookShell(t, "runbook", "import", exportFile)
		if code != 0 || errOut != "" {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		set, err := policies.LoadFS(fstest.MapFS{"r.yaml": {Data: []byte(out)}}, ".")
		if err != nil {
			t.Fatalf("the printed runbook does not load: %v\n%s", err, out)
		}
		defaults, err := policies.Default()
		if err != nil {
			t.Fatal(err)
		}
		got, want := set.Runbooks["respond-confirmed-compromise"], defaults.Runbooks["respond-confirmed-compromise"]
		if got == nil || !slices.EqualFunc(got.Steps, want.Steps, sameStep) || got.Description != want.Description {
			t.Errorf("imported %+v, want %+v", got, want)
		}
		if !strings.Contains(out, "approval: required") {
			t.Errorf("the output does not tell to require approval:\n%s", out)
		}
	})
	t.Run("unsupported steps", func(t *testing.T) {
		out, errOut, code := runbookShell(t, "runbook", "import", soarca)
		if code != exitUnsupported || out != "" {
			t.Fatalf("exit %d, stdout %q; want %d and nothing printed", code, out, exitUnsupported)
		}
		for _, want := range []string{
			`unsupported step action--4b08af84-3741-48ca-8c92-df1557a87379 ("Get current time current system"): ssh command`,
			`unsupported step if-condition--4b95eaa4-944a-4a9d-88d4-1374a70dbacd ("If it is not new years"): if-condition step`,
			`unsupported step while-condition--d865da4e-4f53-4b29-aaba-b8f5711d50ff ("While the counter is not 5")`,
			`unsupported step action--7fe08053-3685-4d8c-bc0a-40efce75113e ("Perform an HTTP request"): http-api command`,
			`unsupported step action--a32cdbb6-403a-47c7-a35b-07430a8de3fd ("Increment the counter")`,
			`unsupported step action--76fe4c02-6a5d-43ae-8736-433c07ab80b8 ("Send OpenC2 command"): OpenC2 deny file`,
			"warden: " + soarca + ": 6 step(s) cannot be mapped",
		} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr does not say %q:\n%s", want, errOut)
			}
		}
	})
	t.Run("names from the file are escaped", func(t *testing.T) {
		hostile := writeFile(t, dir, "hostile.json", `{"type": "playbook", "spec_version": "cacao-2.0", "name": "x",
			"workflow_start": "start--1b6f2e07-5a1c-4d4a-8d31-6e7a3c9f0b21",
			"workflow": {"start--1b6f2e07-5a1c-4d4a-8d31-6e7a3c9f0b21": {"type": "start", "on_completion": "action--4e9c5b3a-8d4f-4a7d-9a64-9bad6f2c3e54"},
			"action--4e9c5b3a-8d4f-4a7d-9a64-9bad6f2c3e54": {"type": "action", "name": "ok\u001b[2J", "on_completion": "end--2c7a3f18-6b2d-4e5b-9e42-7f8b4d0a1c32",
				"commands": [{"type": "bash\u001b]0;pwned\u0007", "command": "true"}]},
			"end--2c7a3f18-6b2d-4e5b-9e42-7f8b4d0a1c32": {"type": "end"}}}`)
		_, errOut, code := runbookShell(t, "runbook", "import", hostile)
		if code != exitUnsupported || strings.ContainsAny(errOut, "\x1b\x07") || !strings.Contains(errOut, `bash\x1b]0;pwned\x07 command`) {
			t.Errorf("exit %d, stderr %q; want exit 3 with the escape characters shown escaped", code, errOut)
		}
	})
	for name, tc := range map[string]struct{ file, want string }{
		"not a playbook": {file: notPlaybook, want: `type is "bundle"`},
		"missing file":   {file: filepath.Join(dir, "missing.json"), want: "reading " + filepath.Join(dir, "missing.json")},
	} {
		t.Run(name, func(t *testing.T) {
			out, errOut, code := runbookShell(t, "runbook", "import", tc.file)
			if code != 1 || out != "" || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %q on stderr", code, out, errOut, tc.want)
			}
		})
	}
}

func sameStep(a, b policies.Step) bool {
	return a.Name == b.Name && a.Action == b.Action && a.Optional == b.Optional && fmt.Sprint(a.Params) == fmt.Sprint(b.Params)
}
