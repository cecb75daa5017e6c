package policies

import (
	"fmt"
	"regexp"
	"slices"
	"time"

	"cel.dev/cel-go/cel"
	"gopkg.in/yaml.v3"
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
	// RepeatAfter: once the policy started a run for an incident, an
	// indicator it decides for the same incident starts no other run
	// until this long after that one was created (whatever became of it;
	// a person can still start one). It is recorded against the incident,
	// and its decision names the run that covers it. Zero: a new run once
	// no run of the runbook is active. For runbooks that tell or look
	// (notify, investigate), so that a storm of distinct alerts is not a
	// storm of runs and messages; never for one that isolates (Lint).
	RepeatAfter RepeatAfter `yaml:"repeat_after"`
}

// RepeatAfter is guards.repeat_after: a Go duration ("5m", "1h30m").
type RepeatAfter time.Duration

// UnmarshalYAML reads a duration, naming the field when it is not one.
func (r *RepeatAfter) UnmarshalYAML(n *yaml.Node) error {
	d, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: guards.repeat_after: %q is not a duration (like 5m or 1h30m)", n.Line, n.Value)}}
	}
	*r = RepeatAfter(d)
	return nil
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
	// reads says which context counters some policy mentions (MayRead).
	reads map[string]bool
}

// The context counters a caller may skip reading when no policy does
// (MayRead).
const (
	ContextOpenIncidents    = "open_incidents"
	ContextRecentIndicators = "recent_indicators"
)

// MayRead reports whether some policy's match expression may read the
// context field named (ContextOpenIncidents, ContextRecentIndicators),
// so that the caller need not count what no policy looks at. A field of
// the typed context object is reached only by its name, so a match that
// never mentions the name cannot read it; a mention anywhere else (in a
// string, say) only costs the count. A Set built by hand rather than
// loaded, or another field, says yes.
func (s *Set) MayRead(field string) bool {
	read, known := s.reads[field]
	return read || !known
}

// noteReads records, once the set is loaded, which context counters its
// policies mention (MayRead).
func (s *Set) noteReads() {
	s.reads = map[string]bool{}
	for _, field := range []string{ContextOpenIncidents, ContextRecentIndicators} {
		word := regexp.MustCompile(`\b` + regexp.QuoteMeta(field) + `\b`)
		s.reads[field] = slices.ContainsFunc(s.Policies, func(p *Policy) bool { return word.MatchString(p.Match) })
	}
}

// fileDoc is one YAML document of a policy directory.
type fileDoc struct {
	Policies []*Policy  `yaml:"policies"`
	Runbooks []*Runbook `yaml:"runbooks"`
}
