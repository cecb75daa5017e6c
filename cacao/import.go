package cacao

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/policies"
)

// Imported is a runbook read back from a playbook.
type Imported struct {
	Runbook policies.Runbook
	// PlaybookID, PlaybookName and Modified say which playbook version it
	// came from.
	PlaybookID, PlaybookName, Modified string
	// Renamed: the playbook's name is not a valid runbook name, so the
	// runbook's is derived from it.
	Renamed bool
	// ApprovalRequired: the playbook holds its steps for a person's
	// approval (Warden's approval step). A runbook cannot say so; the
	// policies that run it must (approval: required).
	ApprovalRequired bool
	// ApprovalPolicies are the policies the approval step names.
	ApprovalPolicies []string
}

// Unsupported is a step Import cannot map onto the catalogue.
type Unsupported struct {
	ID, Name, Reason string
}

func (u Unsupported) String() string {
	name := ""
	if u.Name != "" {
		name = " (" + strconv.Quote(u.Name) + ")"
	}
	return u.ID + name + ": " + u.Reason
}

// UnsupportedError lists every step of a playbook that Import could not
// map, in workflow order, then the steps off the main sequence by id.
type UnsupportedError struct {
	Steps []Unsupported
}

func (e *UnsupportedError) Error() string {
	lines := make([]string, len(e.Steps))
	for i, s := range e.Steps {
		lines[i] = s.String()
	}
	return fmt.Sprintf("%d unsupported step(s): %s", len(e.Steps), strings.Join(lines, "; "))
}

// ImportOptions say what the importing Warden can run.
type ImportOptions struct {
	// Actions are the catalogue's action names; nil means
	// actions.StandardNames().
	Actions []string
}

// Import reads a CACAO v2.0 playbook and maps it onto a runbook: the
// workflow from workflow_start must be one sequence of action steps, each
// with one command that is OpenC2 over openc2-http (an OpenC2 action on a
// device that the catalogue table maps back, see catalogue) or that
// carries Warden's step extension. Warden's approval step becomes
// ApprovalRequired. An error that is a *UnsupportedError names every step
// that does not map (its id, name and why); any other error says why the
// document is not a playbook Import can read.
func Import(data []byte, opt ImportOptions) (Imported, error) {
	doc, err := decodePlaybook(data)
	if err != nil {
		return Imported{}, err
	}
	known := opt.Actions
	if known == nil {
		known = actions.StandardNames()
	}
	im := importer{doc: doc, known: known, onChain: map[string]bool{}}
	if err := im.walk(); err != nil {
		return Imported{}, err
	}
	im.offChain()
	out := im.result()
	if len(im.unsupported) > 0 {
		return out, &UnsupportedError{Steps: im.unsupported}
	}
	if len(out.Runbook.Steps) == 0 {
		return out, errors.New("importing playbook: it has no action step Warden can run")
	}
	return out, nil
}

// rawPlaybook is a playbook whose steps are decoded one at a time, so
// that an error names the step.
type rawPlaybook struct {
	Type          string                     `json:"type"`
	SpecVersion   string                     `json:"spec_version"`
	ID            string                     `json:"id"`
	Name          string                     `json:"name"`
	Description   string                     `json:"description"`
	Modified      string                     `json:"modified"`
	Revoked       bool                       `json:"revoked"`
	WorkflowStart string                     `json:"workflow_start"`
	Workflow      map[string]json.RawMessage `json:"workflow"`

	steps map[string]Step
}

func decodePlaybook(data []byte) (rawPlaybook, error) {
	var doc rawPlaybook
	if err := json.Unmarshal(data, &doc); err != nil {
		return doc, fmt.Errorf("reading playbook: %w", describeJSONError(err))
	}
	switch {
	case doc.Type != "playbook":
		return doc, fmt.Errorf("reading playbook: type is %q, want \"playbook\"", doc.Type)
	case doc.SpecVersion != SpecVersion:
		return doc, fmt.Errorf("reading playbook: spec_version is %q, want %q", doc.SpecVersion, SpecVersion)
	case doc.Revoked:
		return doc, errors.New("reading playbook: revoked is true: its author withdrew it")
	case len(doc.Workflow) == 0:
		return doc, errors.New("reading playbook: workflow is empty")
	}
	doc.steps = make(map[string]Step, len(doc.Workflow))
	for id, raw := range doc.Workflow {
		if id == "" {
			return doc, errors.New("reading playbook: workflow has a step with an empty id")
		}
		var st Step
		if err := json.Unmarshal(raw, &st); err != nil {
			return doc, fmt.Errorf("reading playbook: workflow[%q]: %w", id, describeJSONError(err))
		}
		doc.steps[id] = st
	}
	start, ok := doc.steps[doc.WorkflowStart]
	switch {
	case doc.WorkflowStart == "":
		return doc, errors.New("reading playbook: workflow_start is required")
	case !ok:
		return doc, fmt.Errorf("reading playbook: workflow_start names %s, which the workflow lacks", doc.WorkflowStart)
	case start.Type != "start":
		return doc, fmt.Errorf("reading playbook: workflow_start names a %q step, want a start step", start.Type)
	}
	return doc, nil
}

// describeJSONError names the field a type error is about.
func describeJSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Errorf("%s: %s where %s is wanted", te.Field, te.Value, te.Type)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("not JSON at offset %d: %w", se.Offset, err)
	}
	return err
}

// importer walks one playbook.
type importer struct {
	doc         rawPlaybook
	known       []string
	onChain     map[string]bool
	steps       []policies.Step
	unsupported []Unsupported
	approval    bool
	policies    []string
}

// walk follows the main sequence from the start step to an end step,
// mapping each action step and naming each step it cannot map.
func (im *importer) walk() error {
	start := im.doc.steps[im.doc.WorkflowStart]
	im.onChain[im.doc.WorkflowStart] = true
	cur := firstOf(start.OnCompletion, start.OnSuccess)
	from := im.doc.WorkflowStart
	for cur != "" {
		st, ok := im.doc.steps[cur]
		switch {
		case !ok:
			return fmt.Errorf("reading playbook: step %s goes on to %s, which the workflow lacks", from, cur)
		case im.onChain[cur]:
			return fmt.Errorf("reading playbook: step %s goes back to %s: the workflow loops", from, cur)
		}
		im.onChain[cur] = true
		if st.Type == "end" {
			return nil
		}
		im.visit(cur, st)
		next := firstOf(st.OnSuccess, st.OnCompletion)
		if next == "" {
			im.refuse(cur, st, "no next step (on_success or on_completion), and it is not an end step")
			return nil
		}
		from, cur = cur, next
	}
	return fmt.Errorf("reading playbook: the start step %s names no next step", from)
}

// visit maps one step of the main sequence.
func (im *importer) visit(id string, st Step) {
	if st.Type != "action" {
		im.refuse(id, st, controlReason(st.Type))
		return
	}
	step, gate, reason := im.mapAction(st)
	if reason == "" {
		step.Optional, reason = im.optional(st)
	}
	switch {
	case reason != "":
		im.refuse(id, st, reason)
	case gate != nil:
		im.approval = true
		im.policies = append(im.policies, gate.Policies...)
	default:
		im.steps = append(im.steps, step)
	}
}

// offChain names every step the main sequence does not reach: Warden
// runbooks have no branches, so a step only a branch reaches cannot be
// kept.
func (im *importer) offChain() {
	ids := make([]string, 0, len(im.doc.steps))
	for id := range im.doc.steps {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		st := im.doc.steps[id]
		if im.onChain[id] || st.Type == "end" || st.Type == "start" {
			continue
		}
		reason := "only a branch of another step reaches it, and a Warden runbook has no branches"
		if st.Type != "action" {
			reason = controlReason(st.Type)
		} else if _, _, r := im.mapAction(st); r != "" {
			reason = r + "; and only a branch of another step reaches it"
		}
		im.refuse(id, st, reason)
	}
}

func (im *importer) refuse(id string, st Step, reason string) {
	im.unsupported = append(im.unsupported, Unsupported{ID: id, Name: st.Name, Reason: reason})
}

func controlReason(kind string) string {
	switch kind {
	case "if-condition", "while-condition", "switch-condition":
		return kind + " step: a Warden runbook is one sequence of steps, without conditions or loops"
	case "parallel":
		return "parallel step: a Warden runbook runs its steps one after another"
	case "playbook-action":
		return "playbook-action step: a Warden runbook cannot call another playbook"
	case "start":
		return "a second start step"
	}
	return fmt.Sprintf("step type %q: Warden maps action steps only", kind)
}

// optional reads the step's chaining: on_completion goes on after a
// failure (optional); on_success with on_failure to an end step, or
// without on_failure (the playbook's exception handler), stops the run.
func (im *importer) optional(st Step) (bool, string) {
	switch {
	case st.OnCompletion != "":
		return true, ""
	case st.OnFailure == "":
		return false, ""
	case st.OnFailure == st.OnSuccess:
		return true, ""
	}
	if next, ok := im.doc.steps[st.OnFailure]; ok && next.Type == "end" {
		return false, ""
	}
	return false, "on_failure goes on to step " + st.OnFailure + "; a Warden runbook either stops on a failed step or goes on past an optional one"
}

// mapAction maps an action step: the step, or the approval gate, or why
// not. Warden's extension names the action exactly; without it the
// OpenC2 command's action must map back through the catalogue table.
func (im *importer) mapAction(st Step) (policies.Step, *stepExtension, string) {
	ext, hasExt, err := decodeStepExtension(st)
	if err != nil {
		return policies.Step{}, nil, "Warden's step extension: " + err.Error()
	}
	if hasExt && ext.Gate != "" {
		if ext.Gate != gateApproval {
			return policies.Step{}, nil, fmt.Sprintf("Warden's step extension names gate %q, want %q", ext.Gate, gateApproval)
		}
		return policies.Step{}, &ext, ""
	}
	if len(st.Commands) != 1 {
		return policies.Step{}, nil, fmt.Sprintf("%d commands: a Warden step runs exactly one catalogue action", len(st.Commands))
	}
	action, reason := im.commandAction(st.Commands[0], ext, hasExt)
	if reason != "" {
		return policies.Step{}, nil, reason
	}
	if !slices.Contains(im.known, action) {
		return policies.Step{}, nil, fmt.Sprintf("names action %q, which the catalogue lacks", action)
	}
	step := policies.Step{Name: st.Name, Action: action, Params: ext.Params}
	if step.Name == "" {
		step.Name = action
	}
	return step, nil, ""
}

// commandAction is the catalogue action a command stands for.
func (im *importer) commandAction(c Command, ext stepExtension, hasExt bool) (string, string) {
	switch c.Type {
	case "openc2-http":
		return openc2Action(c, ext, hasExt)
	case "manual":
		if !hasExt {
			return "", "manual command: a task for a person, and a Warden runbook holds catalogue actions only " +
				"(for a person's approval, give the policies that run the runbook approval: required)"
		}
		if row, ok := byAction(ext.Action); ok && row.OpenC2 != "" {
			return "", fmt.Sprintf("Warden's step extension names %s, whose command is OpenC2 %s, but the command is manual", ext.Action, row.OpenC2)
		}
		return ext.Action, ""
	case "":
		return "", "a command without a type"
	}
	if hasExt {
		return "", fmt.Sprintf("%s command with Warden's step extension: Warden writes openc2-http or manual commands only", c.Type)
	}
	return "", c.Type + " command: Warden runs only its catalogue actions, as OpenC2 over openc2-http or with Warden's step extension"
}

// openc2Action maps an openc2-http command; with Warden's extension the
// command must say the same as the extension.
func openc2Action(c Command, ext stepExtension, hasExt bool) (string, string) {
	action, target, err := decodeOpenC2(c)
	if err != nil {
		return "", "openc2-http command: " + err.Error()
	}
	pair := "OpenC2 " + action + " " + target
	row, mapped := byOpenC2(action)
	mapped = mapped && target == "device"
	switch {
	case hasExt:
		want, ok := byAction(ext.Action)
		if !ok || want.OpenC2 == "" {
			return "", fmt.Sprintf("Warden's step extension names %s, which has no OpenC2 command, but the command is %s", ext.Action, pair)
		}
		if !mapped || row.Action != ext.Action {
			return "", fmt.Sprintf("Warden's step extension names %s (OpenC2 %s device) but the command is %s", ext.Action, want.OpenC2, pair)
		}
		return ext.Action, ""
	case mapped:
		return row.Action, ""
	case (action == "deny" || action == "allow") && isSLPFTarget(target):
		return "", pair + " is a packet-filter block, not a step on the gateway: send it to Warden's OpenC2 actuator (POST " + OpenC2Path + ") or /v1/blocks"
	}
	return "", pair + ": no catalogue action does this"
}

func isSLPFTarget(t string) bool {
	switch t {
	case "ipv4_net", "ipv6_net", "ipv4_connection", "ipv6_connection":
		return true
	}
	return false
}

// decodeOpenC2 reads the OpenC2 action and target type of a command.
func decodeOpenC2(c Command) (action, target string, err error) {
	if method, _, _ := strings.Cut(c.Command, " "); method != "POST" {
		return "", "", fmt.Errorf("command %q: the HTTP method must be POST", c.Command)
	}
	raw, err := base64.StdEncoding.DecodeString(c.ContentB64)
	if err != nil {
		return "", "", fmt.Errorf("content_b64 is not base64: %w", err)
	}
	var msg openc2Message
	if err := json.Unmarshal(raw, &msg); err != nil {
		return "", "", fmt.Errorf("content_b64 is not an OpenC2 message: %w", describeJSONError(err))
	}
	action, targets := msg.Action, msg.Target
	if msg.Body != nil && msg.Body.OpenC2.Request != nil {
		action, targets = msg.Body.OpenC2.Request.Action, msg.Body.OpenC2.Request.Target
	}
	if action == "" {
		return "", "", errors.New("content_b64 holds no OpenC2 request (body.openc2.request.action)")
	}
	if len(targets) != 1 {
		return "", "", fmt.Errorf("OpenC2 %s has %d targets, want one", action, len(targets))
	}
	for t := range targets {
		target = t
	}
	return action, target, nil
}

// decodeStepExtension decodes Warden's extension on a step, if it has one.
func decodeStepExtension(st Step) (stepExtension, bool, error) {
	raw, ok := st.StepExtensions[WardenExtensionID]
	if !ok {
		return stepExtension{}, false, nil
	}
	var ext stepExtension
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ext); err != nil {
		return stepExtension{}, true, describeJSONError(err)
	}
	if ext.Action == "" && ext.Gate == "" {
		return stepExtension{}, true, errors.New("names neither an action nor a gate")
	}
	return ext, true, nil
}

func (im *importer) result() Imported {
	name, renamed := runbookName(im.doc.Name)
	return Imported{
		Runbook:    policies.Runbook{Name: name, Description: im.doc.Description, Steps: im.steps},
		PlaybookID: im.doc.ID, PlaybookName: im.doc.Name, Modified: im.doc.Modified, Renamed: renamed,
		ApprovalRequired: im.approval, ApprovalPolicies: im.policies,
	}
}

// runbookName is the playbook's name made a valid runbook name (letters,
// digits, '.', '_' and '-', not starting with punctuation, as the policy
// loader wants): a valid name stays as it is; otherwise leading
// punctuation goes and every run of other characters becomes one '-'.
func runbookName(name string) (string, bool) {
	var b strings.Builder
	dash := false // the last byte written is a '-' put in for other characters
	for _, c := range name {
		letter := c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9')
		switch {
		case dash && c == '-':
			// already separated
		case letter || (b.Len() > 0 && (c == '.' || c == '_' || c == '-')):
			b.WriteRune(c)
			dash = false
		case b.Len() > 0 && !dash && c != '.' && c != '_' && c != '-':
			b.WriteByte('-')
			dash = true
		}
	}
	out := b.String()
	if dash {
		out = out[:len(out)-1]
	}
	if out == "" {
		out = "imported-playbook"
	}
	return out, out != name
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// RunbookYAML writes im as a runbook file in the shape of
// policies/default/runbooks.yaml, with a comment saying where it came
// from and, when the playbook held its steps for approval, what to set on
// the policies.
func RunbookYAML(im Imported) ([]byte, error) {
	doc := &yaml.Node{Kind: yaml.DocumentNode, HeadComment: importComment(im)}
	root := mapNode()
	doc.Content = []*yaml.Node{root}
	rb := mapNode()
	addPair(rb, "name", strNode(im.Runbook.Name))
	if d := im.Runbook.Description; d != "" {
		n := strNode(d)
		if !strings.ContainsAny(d, "\n\r\t") && strings.TrimSpace(d) == d {
			n.Style = yaml.FoldedStyle
		}
		addPair(rb, "description", n)
	}
	steps := &yaml.Node{Kind: yaml.SequenceNode}
	for _, st := range im.Runbook.Steps {
		steps.Content = append(steps.Content, stepNode(st))
	}
	addPair(rb, "steps", steps)
	addPair(root, "runbooks", &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{rb}})
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("writing runbook %s: %w", im.Runbook.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("writing runbook %s: %w", im.Runbook.Name, err)
	}
	return buf.Bytes(), nil
}

func stepNode(st policies.Step) *yaml.Node {
	n := mapNode()
	if st.Name != "" && st.Name != st.Action {
		addPair(n, "name", strNode(st.Name))
	}
	addPair(n, "action", strNode(st.Action))
	if len(st.Params) > 0 {
		params := mapNode()
		params.Style = yaml.FlowStyle
		keys := make([]string, 0, len(st.Params))
		for k := range st.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			addPair(params, k, strNode(st.Params[k]))
		}
		addPair(n, "params", params)
	}
	if st.Optional {
		addPair(n, "optional", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
	}
	return n
}

// importComment says where the runbook came from. Names from the
// playbook are quoted so that none can end the comment line.
func importComment(im Imported) string {
	lines := []string{fmt.Sprintf("Imported by warden runbook import from CACAO playbook %s (%s, modified %s).",
		strconv.Quote(im.PlaybookName), strconv.Quote(im.PlaybookID), strconv.Quote(im.Modified))}
	if im.Renamed {
		lines = append(lines, fmt.Sprintf("The playbook's name is not a runbook name; the runbook is called %s.", im.Runbook.Name))
	}
	if im.ApprovalRequired {
		lines = append(lines, "The playbook holds its steps for a person's approval: give the policies that run")
		lines = append(lines, "this runbook approval: required (a runbook cannot say so itself).")
		if len(im.ApprovalPolicies) > 0 {
			quoted := make([]string, len(im.ApprovalPolicies))
			for i, p := range im.ApprovalPolicies {
				quoted[i] = strconv.Quote(p)
			}
			lines = append(lines, "Policies that required it where it was exported: "+strings.Join(quoted, ", ")+".")
		}
	}
	return strings.Join(lines, "\n")
}

func mapNode() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }

func strNode(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func addPair(m *yaml.Node, key string, value *yaml.Node) {
	m.Content = append(m.Content, strNode(key), value)
}
