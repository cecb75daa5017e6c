package cacao

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/policies"
)

func exportOpts() ExportOptions {
	return ExportOptions{Actuator: "http://127.0.0.1:8780", Created: exportTime, Modified: exportTime}
}

// TestCacaoExportIsStable: the playbook id comes from the runbook name
// alone and every other id from the playbook id, so the same runbook
// exports to the same document, and another name to another id.
func TestCacaoExportIsStable(t *testing.T) {
	set := defaultSet(t)
	a := exportDefault(t, set, "investigate")
	b := exportDefault(t, set, "investigate")
	if !bytes.Equal(a, b) {
		t.Error("two exports of the same runbook differ")
	}
	if PlaybookID("investigate") == PlaybookID("notify-only") {
		t.Error("two runbooks share a playbook id")
	}
	uuid5 := regexp.MustCompile(`^playbook--[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if id := PlaybookID("investigate"); !uuid5.MatchString(id) {
		t.Errorf("playbook id %s is not a UUIDv5 identifier", id)
	}
	var pb Playbook
	if err := json.Unmarshal(a, &pb); err != nil {
		t.Fatal(err)
	}
	uuid4 := regexp.MustCompile(`^[a-z-]+--[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for id := range pb.Workflow {
		if !uuid4.MatchString(id) {
			t.Errorf("step id %s is not a UUIDv4 identifier (CACAO requires v4 for steps)", id)
		}
	}
	if pb.Created != "2025-03-01T09:30:00.123Z" || pb.Modified != "2025-03-01T10:30:00.123Z" {
		t.Errorf("created %s, modified %s: want UTC to the millisecond", pb.Created, pb.Modified)
	}
}

// sequence follows a playbook from its start, on_success or on_completion,
// and returns the steps up to the end step.
func sequence(t *testing.T, pb Playbook) []Step {
	t.Helper()
	var out []Step
	cur := pb.Workflow[pb.WorkflowStart].OnCompletion
	for range len(pb.Workflow) {
		st, ok := pb.Workflow[cur]
		if !ok {
			t.Fatalf("step %s is missing", cur)
		}
		if st.Type == "end" {
			return out
		}
		out = append(out, st)
		cur = firstOf(st.OnSuccess, st.OnCompletion)
	}
	t.Fatal("the workflow does not reach an end step")
	return nil
}

// TestCacaoExportWorkflow: the approval step first when the policies ask
// for one, then one action step per runbook step in order, chained as the
// run goes on: optional steps on completion, others on success, with a
// failure to the failed end.
func TestCacaoExportWorkflow(t *testing.T) {
	set := defaultSet(t)
	cases := map[string]struct {
		gate     bool
		policies []string
	}{
		"contain-compromised-gateway":  {},
		"investigate":                  {},
		"respond-confirmed-compromise": {gate: true, policies: []string{"new-admin-source", "off-hours-admin-login", "tamper-contain-with-approval"}},
		"release-gateway":              {gate: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			rb := set.Runbooks[name]
			var pb Playbook
			if err := json.Unmarshal(exportDefault(t, set, name), &pb); err != nil {
				t.Fatal(err)
			}
			seq := sequence(t, pb)
			if tc.gate {
				gate := seq[0]
				ext, _, err := decodeStepExtension(gate)
				if err != nil || ext.Gate != gateApproval || !slices.Equal(ext.Policies, tc.policies) {
					t.Errorf("first step %q has extension %+v (%v), want the approval gate naming %v", gate.Name, ext, err, tc.policies)
				}
				if gate.Commands[0].Type != "manual" || pb.AgentDefinitions[gate.Agent].Type != "group" {
					t.Errorf("the approval step is a %s command by a %s, want manual by the approvers' group", gate.Commands[0].Type, pb.AgentDefinitions[gate.Agent].Type)
				}
				seq = seq[1:]
			}
			if len(seq) != len(rb.Steps) {
				t.Fatalf("%d action steps, runbook has %d", len(seq), len(rb.Steps))
			}
			failed := pb.WorkflowException
			if pb.Workflow[failed].Type != "end" {
				t.Fatalf("workflow_exception %s is not an end step", failed)
			}
			for i, st := range seq {
				ext, _, err := decodeStepExtension(st)
				if err != nil || ext.Action != rb.Steps[i].Action {
					t.Errorf("step %d names %q (%v), want %s", i, ext.Action, err, rb.Steps[i].Action)
				}
				optional := rb.Steps[i].Optional
				switch {
				case optional && (st.OnCompletion == "" || st.OnFailure != ""):
					t.Errorf("optional step %s: on_completion %q, on_failure %q; want on_completion only", st.Name, st.OnCompletion, st.OnFailure)
				case !optional && (st.OnSuccess == "" || st.OnFailure != failed):
					t.Errorf("step %s: on_success %q, on_failure %q; want on_success and on_failure to %s", st.Name, st.OnSuccess, st.OnFailure, failed)
				}
				if pb.AgentDefinitions[st.Agent].Type != "http-api" || pb.TargetDefinitions[st.Targets[0]].Type == "" {
					t.Errorf("step %s: agent %s, targets %v; want Warden's http-api agent and the gateway", st.Name, st.Agent, st.Targets)
				}
			}
		})
	}
}

// TestCacaoExportCommands: each catalogue action's step carries the
// OpenC2 action of the table on the gateway as a device, posted to the
// actuator's well-known path, and notify a manual command.
func TestCacaoExportCommands(t *testing.T) {
	want := map[string]string{
		"capture_volatile": "investigate", "snapshot": "copy", "isolate": "contain", "release": "allow",
		"power_off": "stop", "verify_baseline": "scan", "patch": "update", "revoke_peer": "deny",
		"rotate_credentials": "set", "kill_flows": "delete", "notify": "",
	}
	for action, openc2 := range want {
		t.Run(action, func(t *testing.T) {
			rb := &policies.Runbook{Name: "one", Steps: []policies.Step{{Name: action, Action: action}}}
			pb, err := Export(rb, exportOpts())
			if err != nil {
				t.Fatal(err)
			}
			cmd := sequence(t, pb)[0].Commands[0]
			if openc2 == "" {
				if cmd.Type != "manual" || !strings.Contains(cmd.Command, action) {
					t.Errorf("command %+v, want a manual command naming %s", cmd, action)
				}
				return
			}
			if cmd.Type != "openc2-http" || cmd.Command != "POST /.well-known/openc2 HTTP/1.1" ||
				!slices.Equal(cmd.Headers["Content-Type"], []string{OpenC2ContentType}) {
				t.Errorf("command %s %q headers %v, want openc2-http POST to the well-known path", cmd.Type, cmd.Command, cmd.Headers)
			}
			raw, err := base64.StdEncoding.DecodeString(cmd.ContentB64)
			if err != nil {
				t.Fatal(err)
			}
			var msg struct {
				Headers struct {
					RequestID string `json:"request_id"`
				} `json:"headers"`
				Body struct {
					OpenC2 struct {
						Request struct {
							Action string                       `json:"action"`
							Target map[string]map[string]string `json:"target"`
						} `json:"request"`
					} `json:"openc2"`
				} `json:"body"`
			}
			if err := json.Unmarshal(raw, &msg); err != nil {
				t.Fatalf("content is not an OpenC2 message: %v\n%s", err, raw)
			}
			req := msg.Body.OpenC2.Request
			if req.Action != openc2 || req.Target["device"]["device_id"] != "__gateway__:value" || msg.Headers.RequestID == "" {
				t.Errorf("OpenC2 %s %v (request id %q), want %s device __gateway__:value with a request id", req.Action, req.Target, msg.Headers.RequestID, openc2)
			}
		})
	}
}

// TestCacaoExportActuatorAddress: the agent's address is the host and
// port of the actuator URL.
func TestCacaoExportActuatorAddress(t *testing.T) {
	cases := map[string]struct {
		url, kind, host, port string
		wantErr               string
	}{
		"ipv4 with port":  {url: "http://127.0.0.1:8780", kind: "ipv4", host: "127.0.0.1", port: "8780"},
		"name, https":     {url: "https://warden.example.org", kind: "dname", host: "warden.example.org", port: "443"},
		"ipv6":            {url: "http://[::1]:8780", kind: "ipv6", host: "::1", port: "8780"},
		"no scheme":       {url: "127.0.0.1:8780", wantErr: "want http(s)://host[:port]"},
		"other scheme":    {url: "ftp://warden.example.org", wantErr: "want http(s)://host[:port]"},
		"with a path":     {url: "https://warden.example.org/api", wantErr: "without a path"},
		"empty":           {url: "", wantErr: "want http(s)://host[:port]"},
		"trailing slash":  {url: "https://warden.example.org/", kind: "dname", host: "warden.example.org", port: "443"},
		"plain http name": {url: "http://localhost", kind: "dname", host: "localhost", port: "80"},
	}
	rb := &policies.Runbook{Name: "one", Steps: []policies.Step{{Action: "isolate"}}}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			opt := exportOpts()
			opt.Actuator = tc.url
			pb, err := Export(rb, opt)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			agent := pb.AgentDefinitions[sequence(t, pb)[0].Agent]
			if !slices.Equal(agent.Address[tc.kind], []string{tc.host}) || agent.Port != tc.port {
				t.Errorf("address %v port %q, want %s %s port %s", agent.Address, agent.Port, tc.kind, tc.host, tc.port)
			}
		})
	}
}

// TestCacaoExportRefuses: what cannot be a playbook is an error naming
// why, not a half-made document.
func TestCacaoExportRefuses(t *testing.T) {
	cases := map[string]struct {
		rb      *policies.Runbook
		edit    func(*ExportOptions)
		wantErr string
	}{
		"no runbook":    {wantErr: "no runbook"},
		"no steps":      {rb: &policies.Runbook{Name: "empty"}, wantErr: "no steps"},
		"empty action":  {rb: &policies.Runbook{Name: "x", Steps: []policies.Step{{Name: "a"}}}, wantErr: "steps[0].action is empty"},
		"no times":      {rb: &policies.Runbook{Name: "x", Steps: []policies.Step{{Action: "notify"}}}, edit: func(o *ExportOptions) { o.Created = time.Time{} }, wantErr: "created and modified"},
		"time reversed": {rb: &policies.Runbook{Name: "x", Steps: []policies.Step{{Action: "notify"}}}, edit: func(o *ExportOptions) { o.Modified = o.Created.Add(-time.Second) }, wantErr: "is before created"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			opt := exportOpts()
			if tc.edit != nil {
				tc.edit(&opt)
			}
			if _, err := Export(tc.rb, opt); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestCacaoApprovalFor reads the approval from the policies that run a
// runbook and from a release step.
func TestCacaoApprovalFor(t *testing.T) {
	set := defaultSet(t)
	cases := map[string]struct {
		required bool
		policies []string
		reason   string
	}{
		"contain-compromised-gateway":  {},
		"notify-only":                  {},
		"respond-confirmed-compromise": {required: true, policies: []string{"new-admin-source", "off-hours-admin-login", "tamper-contain-with-approval"}, reason: "Policy off-hours-admin-login"},
		"release-gateway":              {required: true, reason: "releases the gateway"},
		"no-such-runbook":              {},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			a := ApprovalFor(set, name)
			if a.Required != tc.required || !slices.Equal(a.Policies, tc.policies) {
				t.Errorf("required %v policies %v, want %v %v", a.Required, a.Policies, tc.required, tc.policies)
			}
			if tc.reason != "" && !strings.Contains(strings.Join(a.Reasons, "\n"), tc.reason) {
				t.Errorf("reasons %q do not say %q", a.Reasons, tc.reason)
			}
		})
	}
}

// TestCacaoExportActionOutsideTheTable: an action the table does not know
// (one added to the catalogue since) exports as a manual command naming
// it and imports back where the catalogue has it.
func TestCacaoExportActionOutsideTheTable(t *testing.T) {
	rb := &policies.Runbook{Name: "dns", Steps: []policies.Step{{Name: "flush_dns", Action: "flush_dns", Params: map[string]string{"scope": "all"}}}}
	pb, err := Export(rb, exportOpts())
	if err != nil {
		t.Fatal(err)
	}
	cmd := sequence(t, pb)[0].Commands[0]
	if cmd.Type != "manual" || !strings.Contains(cmd.Command, "flush_dns") {
		t.Errorf("command %+v, want a manual command naming flush_dns", cmd)
	}
	data, err := Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	im, err := Import(data, ImportOptions{Actions: []string{"flush_dns"}})
	if err != nil {
		t.Fatal(err)
	}
	sameRunbook(t, "imported", &im.Runbook, rb)
	if _, err := Import(data, ImportOptions{}); err == nil || !strings.Contains(err.Error(), `"flush_dns", which the catalogue lacks`) {
		t.Errorf("import by the standard catalogue: %v, want flush_dns named unknown", err)
	}
}
