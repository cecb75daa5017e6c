// Package cacao turns Warden runbooks into CACAO v2.0 security playbooks
// and back: Export writes a runbook as a playbook another orchestrator can
// read (each catalogue step an action step with an OpenC2 command for
// Warden's actuator, the approval gate a manual step for a person), and
// Import maps a playbook's steps onto catalogue actions, naming every step
// it cannot map.
//
// It works over the policies' runbook model and the catalogue's action
// names and metadata only: it must not import the controller, the store,
// the API or any provider, and it runs nothing.
package cacao

import (
	"crypto/sha256"
	"encoding/json"

	"github.com/google/uuid"

	"github.com/warden-ir/warden/actions"
)

// SpecVersion is the only CACAO version Warden writes and reads.
const SpecVersion = "cacao-2.0"

// The OpenC2 side of a step: Warden's actuator takes commands at this path
// of its API (the HTTPS transfer specification's well-known path) in this
// content type.
const (
	OpenC2Path        = "/.well-known/openc2"
	OpenC2ContentType = "application/openc2+json;version=1.0"
)

// Playbook is the part of a CACAO v2.0 playbook Warden writes and reads.
// Properties it does not know are ignored on reading.
type Playbook struct {
	Type                 string                         `json:"type"`
	SpecVersion          string                         `json:"spec_version"`
	ID                   string                         `json:"id"`
	Name                 string                         `json:"name"`
	Description          string                         `json:"description,omitempty"`
	PlaybookTypes        []string                       `json:"playbook_types,omitempty"`
	PlaybookActivities   []string                       `json:"playbook_activities,omitempty"`
	CreatedBy            string                         `json:"created_by"`
	Created              string                         `json:"created"`
	Modified             string                         `json:"modified"`
	Labels               []string                       `json:"labels,omitempty"`
	PlaybookVariables    map[string]Variable            `json:"playbook_variables,omitempty"`
	WorkflowStart        string                         `json:"workflow_start"`
	WorkflowException    string                         `json:"workflow_exception,omitempty"`
	Workflow             map[string]Step                `json:"workflow"`
	AgentDefinitions     map[string]AgentTarget         `json:"agent_definitions,omitempty"`
	TargetDefinitions    map[string]AgentTarget         `json:"target_definitions,omitempty"`
	ExtensionDefinitions map[string]ExtensionDefinition `json:"extension_definitions,omitempty"`
}

// Step is a workflow step: start, end, action, or one of the control steps
// (if-condition, while-condition, switch-condition, parallel,
// playbook-action) Warden does not run.
type Step struct {
	Type           string                     `json:"type"`
	Name           string                     `json:"name,omitempty"`
	Description    string                     `json:"description,omitempty"`
	OnCompletion   string                     `json:"on_completion,omitempty"`
	OnSuccess      string                     `json:"on_success,omitempty"`
	OnFailure      string                     `json:"on_failure,omitempty"`
	Commands       []Command                  `json:"commands,omitempty"`
	Agent          string                     `json:"agent,omitempty"`
	Targets        []string                   `json:"targets,omitempty"`
	StepExtensions map[string]json.RawMessage `json:"step_extensions,omitempty"`
}

// Command is a step's command. Warden writes openc2-http (Command is the
// HTTP start line, ContentB64 the OpenC2 message) and manual (Command is
// the task in words).
type Command struct {
	Type             string              `json:"type"`
	Description      string              `json:"description,omitempty"`
	PlaybookActivity string              `json:"playbook_activity,omitempty"`
	Command          string              `json:"command,omitempty"`
	ContentB64       string              `json:"content_b64,omitempty"`
	Headers          map[string][]string `json:"headers,omitempty"`
}

// AgentTarget is an agent (who executes a step's commands) or a target
// (what they act on).
type AgentTarget struct {
	Type        string              `json:"type"`
	Name        string              `json:"name"`
	Description string              `json:"description,omitempty"`
	Address     map[string][]string `json:"address,omitempty"`
	Port        string              `json:"port,omitempty"`
	Category    []string            `json:"category,omitempty"`
}

// Variable is a playbook variable, referenced as __name__:value.
type Variable struct {
	Type        string `json:"type"`
	Description string `json:"description,omitempty"`
	External    bool   `json:"external,omitempty"`
}

// ExtensionDefinition declares an extension that steps use.
type ExtensionDefinition struct {
	Type        string `json:"type"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	CreatedBy   string `json:"created_by"`
	Schema      string `json:"schema"`
	Version     string `json:"version"`
}

// stepExtension is Warden's record on a step (the extension
// WardenExtensionID): the catalogue action and its parameters, or, on the
// approval step, the gate. It is what makes an export import back exactly;
// the OpenC2 command says the same to everyone else.
type stepExtension struct {
	Action   string            `json:"action,omitempty"`
	Params   map[string]string `json:"params,omitempty"`
	Gate     string            `json:"gate,omitempty"`
	Policies []string          `json:"policies,omitempty"`
}

// gateApproval is stepExtension.Gate on the approval step.
const gateApproval = "approval"

// namespace is Warden's UUIDv5 namespace for playbook and identity ids.
// It is not CACAO's own namespace (aa7caf3a-…): that one is reserved for
// ids made from the JCS of name and playbook_types, and Warden's id comes
// from the runbook name alone, so that it stays the same when a step is
// added (the new version then differs only in modified).
var namespace = uuid.MustParse("a6488e8b-3190-406d-b413-d3b197b90c8e")

// WardenExtensionID names Warden's step extension in every playbook it
// writes; Import recognises Warden's steps by it.
const WardenExtensionID = "extension-definition--cf6e97be-3d00-4311-82e4-6cc3dbfce231"

// wardenIdentity is the STIX identity that created_by names.
var wardenIdentity = "identity--" + uuid.NewSHA1(namespace, []byte("warden")).String()

// PlaybookID is the stable id of the playbook exported from runbook name:
// a UUIDv5 of the name in Warden's namespace.
func PlaybookID(runbook string) string {
	return "playbook--" + uuid.NewSHA1(namespace, []byte("runbook/"+runbook)).String()
}

// objectID makes the id of an object inside playbook pb: CACAO requires
// version 4 UUIDs for steps, so the bytes come from a hash of the
// playbook id and the object's role, with the version and variant bits of
// a v4. The same runbook therefore exports to the same document.
func objectID(kind, pb, role string) string {
	sum := sha256.Sum256([]byte(pb + "\x00" + kind + "\x00" + role))
	var u uuid.UUID
	copy(u[:], sum[:16])
	u[6] = (u[6] & 0x0f) | 0x40
	u[8] = (u[8] & 0x3f) | 0x80
	return kind + "--" + u.String()
}

// mapping is how one catalogue action appears in a playbook. The table is
// data: export and import read the same rows, so the two directions
// cannot drift apart.
type mapping struct {
	// Action is the catalogue name.
	Action string
	// OpenC2 is the OpenC2 action on a device target; "" means no OpenC2
	// action fits and the step carries a manual command.
	OpenC2 string
	// Activity is the CACAO playbook-activity-type-ov value.
	Activity string
	// PlaybookType is the playbook-type-ov value the step contributes.
	PlaybookType string
	// Does is one line of what the step does, for the step's description.
	Does string
}

// catalogue maps Warden's actions onto OpenC2 (Language Specification 1.0
// actions on a "device" target, the gateway): each OpenC2 action is used
// by one catalogue action only, so a command maps back unambiguously.
var catalogue = []mapping{
	{actions.NameCaptureVolatile, "investigate", "scan-system", "investigation",
		"record the gateway's volatile state (processes, connections, tunnels) through its agent as evidence"},
	{actions.NameSnapshot, "copy", "scan-system", "investigation",
		"snapshot the gateway's VM (with memory when params.memory is true) as evidence"},
	{actions.NameIsolate, "contain", "disconnect-system", "mitigation",
		"move the gateway's network interfaces to the quarantine network; management stays reachable"},
	{actions.NameKillFlows, "delete", "disconnect-system", "mitigation",
		"delete the attacker's tracked flows that an isolation with params.flows keep left for the capture"},
	{actions.NameRelease, "allow", "restore-capabilities", "remediation",
		"undo the isolation: the gateway's interfaces go back to their networks"},
	{actions.NamePowerOff, "stop", "disconnect-system", "mitigation",
		"power the gateway's VM off"},
	{actions.NameNotify, "", "deliver-content", "notification",
		"tell people on the notification channel (params.channel): Warden sends the channel's webhooks"},
	{actions.NameVerifyBaseline, "scan", "scan-vulnerabilities", "remediation",
		"check the gateway's hardened baseline through its agent (params.remediate: safe fixes what is safe to fix)"},
	{actions.NamePatch, "update", "eliminate-risk", "remediation",
		"install the named package updates through the agent and read the versions back"},
	{actions.NameRevokePeer, "deny", "restrict-access", "mitigation",
		"remove the gateway at every peer site (tunnel peer entries, IKE SAs) and block its addresses there"},
	{actions.NameRotateCredentials, "set", "configure-systems", "remediation",
		"replace the tunnel credentials of every other tunnel, canary first, in waves, make before break"},
}

// byAction finds the row of a catalogue action.
func byAction(name string) (mapping, bool) {
	for _, m := range catalogue {
		if m.Action == name {
			return m, true
		}
	}
	return mapping{}, false
}

// byOpenC2 finds the catalogue action of an OpenC2 action on a device.
func byOpenC2(action string) (mapping, bool) {
	for _, m := range catalogue {
		if m.OpenC2 != "" && m.OpenC2 == action {
			return m, true
		}
	}
	return mapping{}, false
}
