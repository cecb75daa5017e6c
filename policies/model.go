package policies

import (
	"fmt"

	"cel.dev/cel-go/cel"
)

// Approval says whether a decision may run on its own or waits for a person.
type Approval string

// Approval values.
const (
	ApprovalAuto     Approval = "auto"
	ApprovalRequired Approval = "required"
)

// Valid reports whether a is a known approval mode.
func (a Approval) Valid() bool { return a == ApprovalAuto || a == ApprovalRequired }

// Guards are conditions checked after a policy's match expression holds.
type Guards struct {
	// MinConfidence: an indicator whose confidence is below it falls through
	// to the next policy, and the explanation says so.
	MinConfidence float64 `yaml:"min_confidence"`
	// Budget: whether a run started by this policy counts against the
	// automatic-isolation blast-radius budget. Nil means true.
	Budget *bool `yaml:"budget"`
}

// CountsAgainstBudget reports whether runs started by the policy consume the
// blast-radius budget. Unset means yes: forgetting the field must not let a
// policy isolate without limit.
func (g Guards) CountsAgainstBudget() bool { return g.Budget == nil || *g.Budget }

// Policy matches indicators and names the response.
type Policy struct {
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	Match       string   `yaml:"match"`
	Runbook     string   `yaml:"runbook"`
	Approval    Approval `yaml:"approval"`
	// Priority: higher is evaluated first; ties keep file order, then the
	// order inside the file.
	Priority int    `yaml:"priority"`
	Guards   Guards `yaml:"guards"`
	// File and Line locate the policy's YAML mapping for messages.
	File string `yaml:"-"`
	Line int    `yaml:"-"`

	prog cel.Program
	// canonical is the match expression as CEL prints it back, so that two
	// spellings of the same expression compare equal in Lint.
	canonical string
	// alwaysTrue marks a match expression that is the constant true.
	alwaysTrue bool
}

func (p *Policy) where() string {
	if p.File == "" {
		return fmt.Sprintf("policy %q", p.Name)
	}
	return fmt.Sprintf("%s:%d: policy %q", p.File, p.Line, p.Name)
}

// Step is one action of a runbook.
type Step struct {
	// Name identifies the step inside its runbook; it defaults to Action.
	Name   string            `yaml:"name"`
	Action string            `yaml:"action"`
	Params map[string]string `yaml:"params"`
	// Optional: a failure (for example no agent on the gateway) is recorded
	// but does not fail the run.
	Optional bool `yaml:"optional"`
}

// Runbook is an ordered list of steps.
type Runbook struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	Steps       []Step `yaml:"steps"`
	File        string `yaml:"-"`
	Line        int    `yaml:"-"`
}

func (r *Runbook) where() string {
	if r.File == "" {
		return fmt.Sprintf("runbook %q", r.Name)
	}
	return fmt.Sprintf("%s:%d: runbook %q", r.File, r.Line, r.Name)
}

// Set is a loaded, compiled collection of policies and runbooks.
type Set struct {
	// Policies in evaluation order.
	Policies []*Policy
	// Runbooks by name.
	Runbooks map[string]*Runbook

	rt *runtime
}

// fileDoc is one YAML document of a policy directory.
type fileDoc struct {
	Policies []*Policy  `yaml:"policies"`
	Runbooks []*Runbook `yaml:"runbooks"`
}
