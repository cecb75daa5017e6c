package cacao

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/warden-ir/warden/policies"
)

// TestCacaoRoundTrip: every default runbook, exported and imported, gives
// back the same name, description and steps (action, name, params,
// optional), and the approval the policies ask for; the YAML printed for
// it loads as the same runbook and passes the linter.
func TestCacaoRoundTrip(t *testing.T) {
	set := defaultSet(t)
	for name, rb := range set.Runbooks {
		t.Run(name, func(t *testing.T) {
			im, err := Import(exportDefault(t, set, name), ImportOptions{})
			if err != nil {
				t.Fatalf("import: %v", err)
			}
			sameRunbook(t, "imported", &im.Runbook, rb)
			if want := ApprovalFor(set, name); im.ApprovalRequired != want.Required || !slices.Equal(im.ApprovalPolicies, want.Policies) {
				t.Errorf("approval %v %v, want %v %v", im.ApprovalRequired, im.ApprovalPolicies, want.Required, want.Policies)
			}
			if im.Renamed || im.PlaybookID != PlaybookID(name) {
				t.Errorf("renamed %v, playbook id %s; want the runbook's own name and id", im.Renamed, im.PlaybookID)
			}
			loaded, out := loadPrinted(t, im)
			sameRunbook(t, "printed", loaded.Runbooks[name], rb)
			if problems := loaded.Lint(nil); len(problems) > 0 {
				t.Errorf("the printed runbook does not lint: %v", problems)
			}
			if im.ApprovalRequired && !strings.Contains(string(out), "approval: required") {
				t.Errorf("the printed runbook does not say the policies need approval: required:\n%s", out)
			}
		})
	}
}

// loadPrinted prints im with RunbookYAML and loads what it printed as a
// policy set, failing the test unless both work; it returns the set and
// the YAML.
func loadPrinted(t *testing.T, im Imported) (*policies.Set, []byte) {
	t.Helper()
	out, err := RunbookYAML(im)
	if err != nil {
		t.Fatalf("printing the imported runbook: %v", err)
	}
	set, err := policies.LoadFS(fstest.MapFS{"runbooks.yaml": {Data: out}}, ".")
	if err != nil {
		t.Fatalf("the printed runbook does not load: %v\n%s", err, out)
	}
	return set, out
}

func sameRunbook(t *testing.T, what string, got, want *policies.Runbook) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: no runbook", what)
	}
	if got.Name != want.Name || got.Description != want.Description {
		t.Errorf("%s: name %q description %q, want %q %q", what, got.Name, got.Description, want.Name, want.Description)
	}
	if !reflect.DeepEqual(got.Steps, want.Steps) {
		t.Errorf("%s steps:\n got %+v\nwant %+v", what, got.Steps, want.Steps)
	}
}

// wantUnsupported checks that err lists exactly the steps want names, each
// with its name and a reason containing the given text.
func wantUnsupported(t *testing.T, err error, want map[string][2]string) {
	t.Helper()
	var ue *UnsupportedError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v, want an *UnsupportedError", err)
	}
	got := map[string]Unsupported{}
	for _, s := range ue.Steps {
		got[s.ID] = s
	}
	for id, w := range want {
		s, ok := got[id]
		switch {
		case !ok:
			t.Errorf("step %s (%s) is not named; named: %v", id, w[0], ue.Steps)
		case s.Name != w[0] || !strings.Contains(s.Reason, w[1]):
			t.Errorf("step %s: name %q reason %q, want %q and a reason containing %q", id, s.Name, s.Reason, w[0], w[1])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d steps named, want %d: %v", len(got), len(want), ue.Steps)
	}
	if len(ue.Steps) > 0 && !strings.Contains(ue.Error(), ue.Steps[0].ID) {
		t.Errorf("the error text %q does not name the steps", ue.Error())
	}
}

// TestCacaoImportSOARCAExample: SOARCA's example playbook (ssh and
// http-api commands, if and while conditions, an OpenC2 deny of a file)
// has no step Warden can run, and each is named with why.
func TestCacaoImportSOARCAExample(t *testing.T) {
	data, err := os.ReadFile("testdata/soarca_example_playbook.json")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Import(data, ImportOptions{})
	wantUnsupported(t, err, map[string][2]string{
		"action--4b08af84-3741-48ca-8c92-df1557a87379":          {"Get current time current system", "ssh command"},
		"if-condition--4b95eaa4-944a-4a9d-88d4-1374a70dbacd":    {"If it is not new years", "without conditions or loops"},
		"action--7fe08053-3685-4d8c-bc0a-40efce75113e":          {"Perform an HTTP request", "http-api command"},
		"while-condition--d865da4e-4f53-4b29-aaba-b8f5711d50ff": {"While the counter is not 5", "without conditions or loops"},
		"action--a32cdbb6-403a-47c7-a35b-07430a8de3fd":          {"Increment the counter", "only a branch of another step reaches it"},
		"action--76fe4c02-6a5d-43ae-8736-433c07ab80b8":          {"Send OpenC2 command", "OpenC2 deny file: no catalogue action"},
	})
}

// playbookDoc is a playbook as a generic document, for edits.
type playbookDoc map[string]any

func exportDoc(t *testing.T, set *policies.Set, name string) playbookDoc {
	t.Helper()
	var doc playbookDoc
	if err := json.Unmarshal(exportDefault(t, set, name), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func (d playbookDoc) workflow() map[string]any { return d["workflow"].(map[string]any) }

// stepAt is the id of the i-th step of the main sequence.
func (d playbookDoc) stepAt(t *testing.T, i int) string {
	t.Helper()
	wf := d.workflow()
	cur := wf[d["workflow_start"].(string)].(map[string]any)["on_completion"].(string)
	for range i {
		st := wf[cur].(map[string]any)
		cur = firstOf(str(st["on_success"]), str(st["on_completion"]))
	}
	return cur
}

func (d playbookDoc) step(t *testing.T, i int) map[string]any {
	return d.workflow()[d.stepAt(t, i)].(map[string]any)
}

func str(v any) string { s, _ := v.(string); return s }

func (d playbookDoc) bytes(t *testing.T) []byte {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openc2Base64(action, target string) string {
	msg := `{"headers":{"request_id":"d1ac0489-ed51-4345-9175-f3078f30afe5"},"body":{"openc2":{"request":{"action":"` + action +
		`","target":{"` + target + `":{"device_id":"gw-hq"}}}}}}`
	return base64.StdEncoding.EncodeToString([]byte(msg))
}

// TestCacaoImportNamesEveryUnsupportedStep edits an export of
// contain-compromised-gateway (isolate, capture_volatile, snapshot,
// kill_flows, investigate, notify) so that steps no longer map, and checks
// that each is named with its reason and the others are not.
func TestCacaoImportNamesEveryUnsupportedStep(t *testing.T) {
	set := defaultSet(t)
	ext := WardenExtensionID
	cases := map[string]struct {
		edit func(t *testing.T, d playbookDoc) map[string][2]string
	}{
		"ssh command instead of OpenC2": {func(t *testing.T, d playbookDoc) map[string][2]string {
			st := d.step(t, 0)
			st["commands"] = []any{map[string]any{"type": "ssh", "command": "ip link set eth0 down"}}
			delete(st, "step_extensions")
			return map[string][2]string{d.stepAt(t, 0): {"isolate", "ssh command"}}
		}},
		"OpenC2 command changed under the extension": {func(t *testing.T, d playbookDoc) map[string][2]string {
			st := d.step(t, 0)
			st["commands"].([]any)[0].(map[string]any)["content_b64"] = openc2Base64("stop", "device")
			return map[string][2]string{d.stepAt(t, 0): {"isolate", "names isolate (OpenC2 contain device) but the command is OpenC2 stop device"}}
		}},
		"two commands": {func(t *testing.T, d playbookDoc) map[string][2]string {
			st := d.step(t, 1)
			cmds := st["commands"].([]any)
			st["commands"] = append(cmds, cmds[0])
			return map[string][2]string{d.stepAt(t, 1): {"capture_volatile", "2 commands"}}
		}},
		"action the catalogue lacks": {func(t *testing.T, d playbookDoc) map[string][2]string {
			st := d.step(t, 5)
			st["step_extensions"].(map[string]any)[ext] = map[string]any{"action": "teleport"}
			return map[string][2]string{d.stepAt(t, 5): {"notify", `names action "teleport", which the catalogue lacks`}}
		}},
		"extension with a property it does not define": {func(t *testing.T, d playbookDoc) map[string][2]string {
			st := d.step(t, 5)
			st["step_extensions"].(map[string]any)[ext] = map[string]any{"action": "notify", "retries": 3}
			return map[string][2]string{d.stepAt(t, 5): {"notify", "Warden's step extension"}}
		}},
		"manual command without the extension": {func(t *testing.T, d playbookDoc) map[string][2]string {
			delete(d.step(t, 5), "step_extensions")
			return map[string][2]string{d.stepAt(t, 5): {"notify", "manual command: a task for a person"}}
		}},
		"failure branches elsewhere": {func(t *testing.T, d playbookDoc) map[string][2]string {
			isolate, snapshot := d.stepAt(t, 0), d.stepAt(t, 2)
			d.workflow()[isolate].(map[string]any)["on_failure"] = snapshot
			return map[string][2]string{isolate: {"isolate", "on_failure goes on to step " + snapshot}}
		}},
		"parallel step and its branches": {func(t *testing.T, d playbookDoc) map[string][2]string {
			par := "parallel--0b5ef7b2-3d0e-4f4a-9d55-1a9a2e7c1a11"
			branch := "action--6d3e3c52-42f1-4c6a-8a55-0e0f5b8e2a01"
			end := "end--7e9f8a1b-2c3d-4e5f-8a6b-7c8d9e0f1a2b"
			last := d.step(t, 4)
			next := firstOf(str(last["on_success"]), str(last["on_completion"]))
			last["on_success"] = par
			d.workflow()[par] = map[string]any{"type": "parallel", "name": "Both teams", "next_steps": []any{branch, branch}, "on_completion": next}
			d.workflow()[branch] = map[string]any{"type": "action", "name": "Call the ISP", "on_completion": end,
				"commands": []any{map[string]any{"type": "manual", "command": "phone the ISP"}}}
			d.workflow()[end] = map[string]any{"type": "end"}
			return map[string][2]string{
				par:    {"Both teams", "runs its steps one after another"},
				branch: {"Call the ISP", "manual command: a task for a person"},
			}
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := exportDoc(t, set, "contain-compromised-gateway")
			want := tc.edit(t, d)
			_, err := Import(d.bytes(t), ImportOptions{})
			wantUnsupported(t, err, want)
		})
	}
}

// TestCacaoImportForeignOpenC2: a playbook another tool wrote, without
// Warden's extension, maps when its OpenC2 actions on a device are the
// table's; a packet-filter block says where it belongs instead.
func TestCacaoImportForeignOpenC2(t *testing.T) {
	step := func(id, name, action, target, next string) (string, map[string]any) {
		return id, map[string]any{"type": "action", "name": name, "agent": "http-api--5a274b6d-dc65-41f7-987e-9717a7941876",
			"on_completion": next,
			"commands": []any{map[string]any{"type": "openc2-http", "command": "POST /openc2 HTTP/1.1",
				"content_b64": openc2Base64(action, target)}}}
	}
	doc := func(steps ...any) []byte {
		wf := map[string]any{"start--1b6f2e07-5a1c-4d4a-8d31-6e7a3c9f0b21": map[string]any{"type": "start", "on_completion": steps[0]},
			"end--2c7a3f18-6b2d-4e5b-9e42-7f8b4d0a1c32": map[string]any{"type": "end"}}
		for i := 1; i < len(steps); i += 2 {
			wf[steps[i].(string)] = steps[i+1]
		}
		b, _ := json.Marshal(map[string]any{"type": "playbook", "spec_version": "cacao-2.0", "id": "playbook--3d8b4a29-7c3e-4f6c-8f53-8a9c5e1b2d43",
			"name": "Contain host (vendor)", "workflow_start": "start--1b6f2e07-5a1c-4d4a-8d31-6e7a3c9f0b21", "workflow": wf})
		return b
	}
	end := "end--2c7a3f18-6b2d-4e5b-9e42-7f8b4d0a1c32"
	a, b := "action--4e9c5b3a-8d4f-4a7d-9a64-9bad6f2c3e54", "action--5fad6c4b-9e5a-4b8e-8b75-acbe7a3d4f65"
	t.Run("mapped", func(t *testing.T) {
		ida, sa := step(a, "Copy the host", "copy", "device", b)
		idb, sb := step(b, "Isolate", "contain", "device", end)
		im, err := Import(doc(a, ida, sa, idb, sb), ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := []policies.Step{{Name: "Copy the host", Action: "snapshot", Optional: true}, {Name: "Isolate", Action: "isolate", Optional: true}}
		if !reflect.DeepEqual(im.Runbook.Steps, want) || im.Runbook.Name != "Contain-host-vendor" || !im.Renamed {
			t.Errorf("runbook %q (renamed %v) steps %+v, want Contain-host-vendor with %+v", im.Runbook.Name, im.Renamed, im.Runbook.Steps, want)
		}
	})
	t.Run("block", func(t *testing.T) {
		ida, sa := step(a, "Block C2", "deny", "ipv4_net", end)
		_, err := Import(doc(a, ida, sa), ImportOptions{})
		wantUnsupported(t, err, map[string][2]string{a: {"Block C2", "packet-filter block"}})
	})
	t.Run("not on the device", func(t *testing.T) {
		ida, sa := step(a, "Contain file", "contain", "file", end)
		_, err := Import(doc(a, ida, sa), ImportOptions{})
		wantUnsupported(t, err, map[string][2]string{a: {"Contain file", "OpenC2 contain file: no catalogue action"}})
	})
}

// TestCacaoImportRefusesWhatIsNotAPlaybook: a document Import cannot
// read is an error naming the field, never a runbook.
func TestCacaoImportRefusesWhatIsNotAPlaybook(t *testing.T) {
	set := defaultSet(t)
	edit := func(f func(d playbookDoc)) []byte {
		d := exportDoc(t, set, "notify-only")
		f(d)
		return d.bytes(t)
	}
	cases := map[string]struct {
		data    []byte
		wantErr string
	}{
		"not JSON":          {data: []byte("runbooks:\n  - name: x\n"), wantErr: "not JSON"},
		"a JSON array":      {data: []byte(`[1, 2]`), wantErr: "reading playbook"},
		"wrong field type":  {data: []byte(`{"type": "playbook", "workflow": []}`), wantErr: "workflow"},
		"not a playbook":    {data: []byte(`{"type": "bundle", "objects": []}`), wantErr: `type is "bundle"`},
		"CACAO 1.0":         {data: edit(func(d playbookDoc) { d["spec_version"] = "cacao-1.0" }), wantErr: `spec_version is "cacao-1.0"`},
		"no workflow":       {data: edit(func(d playbookDoc) { delete(d, "workflow") }), wantErr: "workflow is empty"},
		"revoked":           {data: edit(func(d playbookDoc) { d["revoked"] = true }), wantErr: "revoked is true"},
		"no workflow_start": {data: edit(func(d playbookDoc) { delete(d, "workflow_start") }), wantErr: "workflow_start is required"},
		"dangling start": {data: edit(func(d playbookDoc) {
			d["workflow_start"] = "start--00000000-0000-4000-8000-000000000000"
		}), wantErr: "which the workflow lacks"},
		"start is not a start step": {data: edit(func(d playbookDoc) {
			d["workflow_start"] = d.stepAt(t, 0)
		}), wantErr: `names a "action" step`},
		"step goes nowhere": {data: edit(func(d playbookDoc) {
			d.step(t, 0)["on_success"] = "action--00000000-0000-4000-8000-000000000000"
		}), wantErr: "which the workflow lacks"},
		"loop": {data: edit(func(d playbookDoc) {
			d.step(t, 0)["on_success"] = d.stepAt(t, 0)
		}), wantErr: "the workflow loops"},
		"step of the wrong shape": {data: edit(func(d playbookDoc) {
			d.step(t, 0)["commands"] = "notify"
		}), wantErr: "commands"},
		"only the approval step": {data: func() []byte {
			d := exportDoc(t, set, "release-gateway")
			gate, release, notify := d.step(t, 0), d.stepAt(t, 1), d.stepAt(t, 2)
			delete(d.workflow(), release)
			delete(d.workflow(), notify)
			gate["on_success"] = d["workflow_exception"]
			return d.bytes(t)
		}(), wantErr: "no action step Warden can run"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Import(tc.data, ImportOptions{})
			var ue *UnsupportedError
			if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want a plain error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestCacaoImportKnownActions: the importing catalogue decides which
// actions exist.
func TestCacaoImportKnownActions(t *testing.T) {
	data := exportDefault(t, defaultSet(t), "patch-gateway")
	if _, err := Import(data, ImportOptions{Actions: []string{"patch", "verify_baseline"}}); err != nil {
		t.Errorf("with patch and verify_baseline known: %v", err)
	}
	_, err := Import(data, ImportOptions{Actions: []string{"verify_baseline"}})
	var ue *UnsupportedError
	if !errors.As(err, &ue) || len(ue.Steps) != 1 || !strings.Contains(ue.Steps[0].Reason, `"patch"`) {
		t.Errorf("without patch: %v, want patch named unsupported", err)
	}
}

func TestCacaoRunbookName(t *testing.T) {
	cases := map[string]struct {
		in, want string
		renamed  bool
	}{
		"valid":           {in: "contain-compromised-gateway", want: "contain-compromised-gateway"},
		"valid, cased":    {in: "Contain_Host.v2-", want: "Contain_Host.v2-"},
		"spaces":          {in: "Example Playbook", want: "Example-Playbook", renamed: true},
		"punctuation":     {in: "--Isolate: host (v2)!", want: "Isolate-host-v2", renamed: true},
		"only symbols":    {in: "!!!", want: "imported-playbook", renamed: true},
		"empty":           {in: "", want: "imported-playbook", renamed: true},
		"non-ASCII":       {in: "隔離 gateway", want: "gateway", renamed: true},
		"newline":         {in: "a\nb", want: "a-b", renamed: true},
		"dots kept":       {in: "v1.2 Runbook", want: "v1.2-Runbook", renamed: true},
		"leading digit":   {in: "2fa-reset", want: "2fa-reset"},
		"leading dot":     {in: ".hidden", want: "hidden", renamed: true},
		"punctuation run": {in: "a - b", want: "a-b", renamed: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, renamed := runbookName(tc.in)
			if got != tc.want || renamed != tc.renamed {
				t.Errorf("runbookName(%q) = %q, %v; want %q, %v", tc.in, got, renamed, tc.want, tc.renamed)
			}
		})
	}
}

// TestCacaoRunbookYAMLComment: names from the playbook cannot break out of
// the comment that says where the runbook came from.
func TestCacaoRunbookYAMLComment(t *testing.T) {
	im := Imported{
		Runbook:      policies.Runbook{Name: "x", Steps: []policies.Step{{Name: "notify", Action: "notify"}}},
		PlaybookName: "evil\nrunbooks: []", PlaybookID: "playbook--1\n- name: y", Modified: "now",
		ApprovalRequired: true, ApprovalPolicies: []string{"p\nq"},
	}
	set, out := loadPrinted(t, im)
	if len(set.Runbooks) != 1 || set.Runbooks["x"] == nil {
		t.Errorf("runbooks %v, want only x:\n%s", set.Runbooks, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "runbooks: []") || strings.HasPrefix(line, "- name: y") {
			t.Errorf("a playbook field escaped the comment: %q", line)
		}
	}
}
