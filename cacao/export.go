package cacao

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/policies"
)

// Approval says whether runs of a runbook wait for a person before any of
// their steps, and why.
type Approval struct {
	Required bool
	// Policies that run the runbook with approval: required, by name.
	Policies []string
	// Reasons, one line each, for the approval step's description.
	Reasons []string
}

// ApprovalFor is the approval a runbook's runs wait for: the policies of
// set that run it with approval: required, and a release step (a release
// always needs a person's approval). It reads the set; it decides nothing
// about a particular run.
func ApprovalFor(set *policies.Set, runbook string) Approval {
	var a Approval
	for _, p := range set.Policies {
		if p.Runbook == runbook && p.Approval == policies.ApprovalRequired {
			a.Policies = append(a.Policies, p.Name)
		}
	}
	sort.Strings(a.Policies)
	for _, p := range a.Policies {
		a.Reasons = append(a.Reasons, "Policy "+p+" starts this runbook with approval: required")
	}
	if rb := set.Runbooks[runbook]; rb != nil {
		for _, st := range rb.Steps {
			if actions.Standard(st.Action).Posture == actions.EffectRelease {
				a.Reasons = append(a.Reasons, "Step "+stepName(st)+" releases the gateway, and a release always needs a person's approval")
			}
		}
	}
	a.Required = len(a.Reasons) > 0
	return a
}

// ExportOptions are the facts a runbook does not hold.
type ExportOptions struct {
	// Actuator is the base URL of Warden's API (scheme://host[:port]),
	// whose /.well-known/openc2 takes the steps' OpenC2 commands.
	Actuator string
	// Created and Modified are the playbook's version times (a runbook
	// carries none); Modified must not be before Created.
	Created, Modified time.Time
	// Approval puts a manual approval step before the runbook's steps.
	Approval Approval
}

// timestampLayout is CACAO's timestamp to the millisecond, in UTC.
const timestampLayout = "2006-01-02T15:04:05.000Z"

// Export writes rb as a CACAO v2.0 playbook: start, the approval step when
// opt.Approval requires one, one action step per runbook step (an OpenC2
// command for Warden's actuator, or a manual command where no OpenC2
// action fits, each with Warden's step extension naming the catalogue
// action and its parameters), and two ends (completed; failed or not
// approved). A required step goes on on_success and stops on on_failure;
// an optional one goes on on_completion, as the run does.
//
// The approval step comes first, before every step and not only before
// the destructive ones, because that is what Warden does: a run that needs
// approval waits whole, evidence steps included.
func Export(rb *policies.Runbook, opt ExportOptions) (Playbook, error) {
	if err := checkExport(rb, opt); err != nil {
		return Playbook{}, err
	}
	agent, err := actuatorAgent(opt.Actuator)
	if err != nil {
		return Playbook{}, err
	}
	ids := newExportIDs(PlaybookID(rb.Name))
	pb := skeleton(rb, opt, ids, agent)
	first := ids.step(0)
	if opt.Approval.Required {
		pb.AgentDefinitions[ids.approvers] = approversAgent()
		pb.Workflow[ids.gate] = approvalStep(opt.Approval, ids, first)
		first = ids.gate
	}
	pb.Workflow[ids.start] = Step{Type: "start", Name: "Start", OnCompletion: first}
	for i, st := range rb.Steps {
		next := ids.completed
		if i+1 < len(rb.Steps) {
			next = ids.step(i + 1)
		}
		step, err := actionStep(st, ids, i, next)
		if err != nil {
			return Playbook{}, fmt.Errorf("exporting runbook %s: steps[%d]: %w", rb.Name, i, err)
		}
		pb.Workflow[ids.step(i)] = step
		pb.PlaybookTypes = appendNew(pb.PlaybookTypes, rowOf(st.Action).PlaybookType)
		pb.PlaybookActivities = appendNew(pb.PlaybookActivities, rowOf(st.Action).Activity)
	}
	pb.Workflow[ids.completed] = Step{Type: "end", Name: "Run completed"}
	pb.Workflow[ids.failed] = Step{Type: "end", Name: "Run failed or not approved",
		Description: "Warden records on the run which step failed and why, or who cancelled it."}
	return pb, nil
}

// skeleton is the playbook without its workflow steps: metadata, the
// gateway variable, Warden as the agent, the gateway as the target and
// Warden's extension.
func skeleton(rb *policies.Runbook, opt ExportOptions, ids exportIDs, agent AgentTarget) Playbook {
	return Playbook{
		Type: "playbook", SpecVersion: SpecVersion, ID: ids.pb, Name: rb.Name, Description: rb.Description,
		CreatedBy: wardenIdentity,
		Created:   opt.Created.UTC().Format(timestampLayout), Modified: opt.Modified.UTC().Format(timestampLayout),
		Labels: []string{"warden-runbook"},
		PlaybookVariables: map[string]Variable{gatewayVariable: {Type: "string", External: true,
			Description: "The Warden inventory id of the gateway the run acts on, given when the runbook is started (warden runbook run NAME --gateway G)."}},
		WorkflowStart: ids.start, WorkflowException: ids.failed,
		Workflow:             map[string]Step{},
		AgentDefinitions:     map[string]AgentTarget{ids.warden: agent},
		TargetDefinitions:    map[string]AgentTarget{ids.gateway: gatewayTarget()},
		ExtensionDefinitions: map[string]ExtensionDefinition{WardenExtensionID: wardenExtensionDefinition()},
	}
}

// Marshal is pb as indented JSON ending in a newline.
func Marshal(pb Playbook) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(pb); err != nil {
		return nil, fmt.Errorf("encoding playbook: %w", err)
	}
	return buf.Bytes(), nil
}

func checkExport(rb *policies.Runbook, opt ExportOptions) error {
	switch {
	case rb == nil:
		return errors.New("exporting runbook: no runbook")
	case rb.Name == "":
		return errors.New("exporting runbook: name is empty")
	case len(rb.Steps) == 0:
		return fmt.Errorf("exporting runbook %s: it has no steps", rb.Name)
	case opt.Created.IsZero() || opt.Modified.IsZero():
		return fmt.Errorf("exporting runbook %s: created and modified times are required", rb.Name)
	case opt.Modified.Before(opt.Created):
		return fmt.Errorf("exporting runbook %s: modified %s is before created %s", rb.Name,
			opt.Modified.UTC().Format(timestampLayout), opt.Created.UTC().Format(timestampLayout))
	}
	for i, st := range rb.Steps {
		if st.Action == "" {
			return fmt.Errorf("exporting runbook %s: steps[%d].action is empty", rb.Name, i)
		}
	}
	return nil
}

// gatewayVariable is the playbook variable holding the gateway's id.
const gatewayVariable = "__gateway__"

// exportIDs are the ids of one export's objects, all derived from the
// playbook id.
type exportIDs struct {
	pb                             string
	start, completed, failed, gate string
	warden, approvers, gateway     string
}

func newExportIDs(pb string) exportIDs {
	return exportIDs{
		pb:    pb,
		start: objectID("start", pb, "start"), completed: objectID("end", pb, "completed"),
		failed: objectID("end", pb, "failed"), gate: objectID("action", pb, "approval"),
		warden: objectID("http-api", pb, "warden"), approvers: objectID("group", pb, "approvers"),
		gateway: objectID("security-category", pb, "gateway"),
	}
}

func (ids exportIDs) step(i int) string { return objectID("action", ids.pb, fmt.Sprintf("step/%d", i)) }

// actuatorAgent is Warden's OpenC2 actuator as an http-api agent. The
// address is the host (dname, ipv4 or ipv6) and the port, not a url: the
// schema's url pattern refuses plain addresses such as
// http://127.0.0.1:8780, and an executor joins the command's path to the
// host and port anyway.
func actuatorAgent(base string) (AgentTarget, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return AgentTarget{}, fmt.Errorf("actuator URL %q: want http(s)://host[:port]", base)
	}
	if u.Path != "" && u.Path != "/" {
		return AgentTarget{}, fmt.Errorf("actuator URL %q: want the API's base URL, without a path", base)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	kind := "dname"
	if ip := net.ParseIP(host); ip != nil {
		kind = "ipv6"
		if ip.To4() != nil {
			kind = "ipv4"
		}
	}
	return AgentTarget{
		Type: "http-api", Name: "Warden",
		Description: "Warden's OpenC2 actuator at " + u.Scheme + "://" + u.Host + OpenC2Path +
			". It runs each step's catalogue action against the gateway, records evidence first and keeps an audit trail.",
		Address: map[string][]string{kind: {host}}, Port: port, Category: []string{"orchestrator"},
	}, nil
}

// gatewayTarget is the gateway a run acts on, named by the variable.
func gatewayTarget() AgentTarget {
	return AgentTarget{
		Type: "security-category", Name: "VPN gateway " + gatewayVariable + ":value",
		Description: "The VPN gateway (a Linux VM) the run acts on, by its Warden inventory id.",
		Category:    []string{"router", "os-linux"},
	}
}

func approversAgent() AgentTarget {
	return AgentTarget{
		Type: "group", Name: "Warden approvers",
		Description: "People with the approver or admin role. Four eyes: neither the person who requested the run nor one who overrode a gate on it may approve it.",
	}
}

func wardenExtensionDefinition() ExtensionDefinition {
	return ExtensionDefinition{
		Type: "extension-definition", Name: "warden-runbook-step", CreatedBy: wardenIdentity, Version: "1.0.0",
		Description: "Warden's record of a runbook step, so that warden runbook import gives the runbook back exactly.",
		Schema: `On an action step: {"action": the catalogue action's name, "params": {name: string value}}. ` +
			`On the approval step: {"gate": "approval", "policies": [names of the policies that require approval]}.`,
	}
}

// approvalStep is the manual step a person completes by approving the run.
func approvalStep(a Approval, ids exportIDs, next string) Step {
	desc := strings.Join(a.Reasons, "; ") + ". Warden holds the whole run, every step, until an approver approves it " +
		"(warden runs approve RUN); a cancelled run does not start. A person who starts the runbook by hand " +
		"(warden runbook run) approves it by starting it, unless they override a gate, when another approver must approve it."
	return Step{
		Type: "action", Name: "Approval (four eyes)", Description: desc,
		OnSuccess: next, OnFailure: ids.failed,
		Commands: []Command{{Type: "manual", Description: "A person decides whether the run may go on.",
			Command: "Review the run's plan, then approve it (warden runs approve RUN) or cancel it (warden runs cancel RUN)."}},
		Agent: ids.approvers, Targets: []string{ids.gateway},
		StepExtensions: map[string]json.RawMessage{WardenExtensionID: mustJSON(stepExtension{Gate: gateApproval, Policies: a.Policies})},
	}
}

// actionStep is runbook step st as an action step going to next.
func actionStep(st policies.Step, ids exportIDs, i int, next string) (Step, error) {
	row := rowOf(st.Action)
	cmd, err := stepCommand(st, row, ids.step(i))
	if err != nil {
		return Step{}, err
	}
	s := Step{
		Type: "action", Name: stepName(st), Description: stepDescription(st, row),
		Commands: []Command{cmd}, Agent: ids.warden, Targets: []string{ids.gateway},
		StepExtensions: map[string]json.RawMessage{WardenExtensionID: mustJSON(stepExtension{Action: st.Action, Params: st.Params})},
	}
	if st.Optional {
		s.OnCompletion = next
	} else {
		s.OnSuccess, s.OnFailure = next, ids.failed
	}
	return s, nil
}

// rowOf is the table row of a catalogue action; an action the table does
// not know (one added to the catalogue since) gets a manual command that
// names it.
func rowOf(action string) mapping {
	if m, ok := byAction(action); ok {
		return m
	}
	return mapping{Action: action, Does: "carry out Warden's catalogue action " + action}
}

func stepName(st policies.Step) string {
	if st.Name != "" {
		return st.Name
	}
	return st.Action
}

func stepDescription(st policies.Step, row mapping) string {
	var b strings.Builder
	b.WriteString(strings.ToUpper(row.Does[:1]) + row.Does[1:])
	if len(st.Params) > 0 {
		b.WriteString(" (params: " + paramList(st.Params) + ")")
	}
	if st.Optional {
		b.WriteString(". Optional: a failure is recorded and the run goes on.")
	} else {
		b.WriteString(". A failure stops the run.")
	}
	return b.String()
}

func paramList(p map[string]string) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + p[k]
	}
	return strings.Join(keys, ", ")
}

// stepCommand is the command of one step: OpenC2 over HTTP to Warden's
// actuator where an OpenC2 action fits, otherwise a manual command that
// says what Warden does.
func stepCommand(st policies.Step, row mapping, stepID string) (Command, error) {
	if row.OpenC2 == "" {
		return Command{Type: "manual", PlaybookActivity: row.Activity,
			Description: "Warden's catalogue action " + st.Action + "; no OpenC2 action fits it, and Warden carries it out itself.",
			Command:     "Warden's " + st.Action + " action: " + row.Does + "."}, nil
	}
	body, err := json.Marshal(openc2Message{
		Headers: &openc2Headers{RequestID: strings.TrimPrefix(stepID, "action--")},
		Body: &openc2Body{OpenC2: openc2Content{Request: &openc2Command{
			Action: row.OpenC2,
			Target: map[string]json.RawMessage{"device": mustJSON(map[string]string{"device_id": gatewayVariable + ":value"})},
			Args:   map[string]json.RawMessage{"response_requested": mustJSON("complete")},
		}}},
	})
	if err != nil {
		return Command{}, fmt.Errorf("encoding the OpenC2 command of %s: %w", st.Action, err)
	}
	return Command{
		Type: "openc2-http", PlaybookActivity: row.Activity,
		Description: "OpenC2 " + row.OpenC2 + " device: Warden's catalogue action " + st.Action + ".",
		Command:     "POST " + OpenC2Path + " HTTP/1.1",
		ContentB64:  base64.StdEncoding.EncodeToString(body),
		Headers:     map[string][]string{"Content-Type": {OpenC2ContentType}},
	}, nil
}

// openc2Message is an OpenC2 message as the HTTPS transfer specification
// (v1.1) carries it: headers and a body holding the request. A bare
// command (Action, Target at the top, as v1.0 sent it) is read too.
type openc2Message struct {
	Headers *openc2Headers `json:"headers,omitempty"`
	Body    *openc2Body    `json:"body,omitempty"`
	// Action and Target: a bare command.
	Action string                     `json:"action,omitempty"`
	Target map[string]json.RawMessage `json:"target,omitempty"`
}

type openc2Headers struct {
	RequestID string `json:"request_id,omitempty"`
}

type openc2Body struct {
	OpenC2 openc2Content `json:"openc2"`
}

type openc2Content struct {
	Request *openc2Command `json:"request,omitempty"`
}

type openc2Command struct {
	Action string                     `json:"action"`
	Target map[string]json.RawMessage `json:"target"`
	Args   map[string]json.RawMessage `json:"args,omitempty"`
}

func appendNew(list []string, v string) []string {
	if v == "" {
		return list
	}
	for _, have := range list {
		if have == v {
			return list
		}
	}
	return append(list, v)
}

// mustJSON encodes values that always encode (strings, maps of strings,
// the extension record).
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encoding %T: %v", v, err))
	}
	return b
}
