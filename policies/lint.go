package policies

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/warden-ir/warden/actions"
)

// LintKind names a class of lint problem, so callers and tests can tell
// them apart without matching message text.
type LintKind string

// Lint problem kinds.
const (
	// LintUnknownRunbook: a policy names a runbook that does not exist.
	LintUnknownRunbook LintKind = "unknown-runbook"
	// LintUnknownAction: a step names an action not in the catalogue.
	LintUnknownAction LintKind = "unknown-action"
	// LintUnreachable: an earlier policy matches everything this one does.
	LintUnreachable LintKind = "unreachable-policy"
	// LintNoEvidenceFirst: an automatic policy runs a destructive step
	// before any required evidence step (safety invariant 4).
	LintNoEvidenceFirst LintKind = "destructive-before-evidence"
	// LintBudgetBypass: an automatic policy isolates without counting
	// against the blast-radius budget (safety invariant 2).
	LintBudgetBypass LintKind = "isolation-outside-budget"
	// LintAutoRelease: an automatic policy releases a gateway; release must
	// be approved by a person (safety invariant 7).
	LintAutoRelease LintKind = "automatic-release"
	// LintRepeatedContainment: a policy whose runbook isolates sets
	// guards.repeat_after, so an alert after a release could start no
	// isolation (safety invariant 2 keeps automatic isolation bounded by
	// the budget, not by silence).
	LintRepeatedContainment LintKind = "containment-repeat-after"
	// LintEmptyRunbook: a runbook has no steps.
	LintEmptyRunbook LintKind = "empty-runbook"
	// LintDuplicate: two policies, two runbooks or two steps of one runbook
	// share a name.
	LintDuplicate LintKind = "duplicate-name"
)

// LintError is one problem Lint found.
type LintError struct {
	Kind LintKind
	// Where locates the problem: "file:line: policy "x"" or "runbook "y"".
	Where   string
	Message string
}

func (e *LintError) Error() string { return fmt.Sprintf("%s: %s [%s]", e.Where, e.Message, e.Kind) }

// StandardActions lists the action names of Warden's catalogue. Lint uses
// it when given no list.
func StandardActions() []string {
	return []string{
		actions.NameCaptureVolatile, actions.NameSnapshot, actions.NameIsolate, actions.NameKillFlows, actions.NameRelease,
		actions.NamePowerOff, actions.NameNotify, "revoke_peer", "rotate_credentials", "patch", "verify_baseline",
		actions.NameBlockIOC, actions.NameInvestigate, actions.NameCapture,
	}
}

// Lint checks that the set is coherent and safe: every policy's runbook
// exists, every step's action is known (knownActions, or StandardActions
// when nil), no policy is shadowed by an earlier one with the same match,
// no automatic policy runs a destructive step before evidence has been
// preserved, isolates outside the blast-radius budget or releases a
// gateway, no isolating policy sets repeat_after, no runbook is empty,
// and no name is used twice. Problems are
// *LintError values in a stable order; none means the set is fit to use.
func (s *Set) Lint(knownActions []string) []error {
	if knownActions == nil {
		knownActions = StandardActions()
	}
	known := make(map[string]bool, len(knownActions))
	for _, a := range knownActions {
		known[a] = true
	}
	var errs []error
	add := func(kind LintKind, where, format string, a ...any) {
		errs = append(errs, &LintError{Kind: kind, Where: where, Message: fmt.Sprintf(format, a...)})
	}

	seen := map[string]*Policy{}
	for i, p := range s.Policies {
		if prev, dup := seen[p.Name]; dup {
			add(LintDuplicate, p.where(), "policy name already used by %s", prev.where())
		} else {
			seen[p.Name] = p
		}
		rb, ok := s.Runbooks[p.Runbook]
		if !ok {
			add(LintUnknownRunbook, p.where(), "runbook %q is not defined", p.Runbook)
		}
		if shadow := s.shadowing(i); shadow != nil {
			add(LintUnreachable, p.where(), "unreachable: earlier %s matches every indicator this one does", shadow.where())
		}
		if ok && p.Guards.RepeatAfter > 0 && hasAction(rb, actions.NameIsolate) {
			add(LintRepeatedContainment, p.where(),
				"runbook %q isolates, but guards.repeat_after is %s: an alert within it, after a release, would start no isolation; drop repeat_after from containment policies",
				rb.Name, time.Duration(p.Guards.RepeatAfter))
		}
		if !ok || p.Approval != ApprovalAuto {
			continue
		}
		if step, evidence := firstUnprotectedDestructive(rb); step != "" {
			add(LintNoEvidenceFirst, p.where(),
				"approval is auto but runbook %q runs destructive step %q before any required evidence step (%s); put a non-optional capture_volatile or snapshot first, or require approval",
				rb.Name, step, evidence)
		}
		if hasAction(rb, actions.NameRelease) {
			add(LintAutoRelease, p.where(),
				"approval is auto but runbook %q releases the gateway: a release must be approved by a person", rb.Name)
		}
		if hasAction(rb, actions.NameIsolate) && !p.Guards.CountsAgainstBudget() {
			add(LintBudgetBypass, p.where(),
				"approval is auto and runbook %q isolates, but guards.budget is false: automatic isolation must count against the blast-radius budget", rb.Name)
		}
	}

	for _, name := range slices.Sorted(maps.Keys(s.Runbooks)) {
		rb := s.Runbooks[name]
		if rb.Name != name {
			add(LintDuplicate, rb.where(), "registered under the name %q", name)
		}
		if len(rb.Steps) == 0 {
			add(LintEmptyRunbook, rb.where(), "has no steps")
		}
		stepNames := map[string]int{}
		for i, st := range rb.Steps {
			sn := st.Name
			if sn == "" {
				sn = st.Action
			}
			if j, dup := stepNames[sn]; dup {
				add(LintDuplicate, rb.where(), "steps[%d] and steps[%d] are both named %q; give one a name", j, i, sn)
			} else {
				stepNames[sn] = i
			}
			if !known[st.Action] {
				add(LintUnknownAction, rb.where(), "steps[%d]: unknown action %q (known: %s)", i, st.Action, strings.Join(knownActions, ", "))
			}
		}
	}
	return errs
}

// shadowing returns an earlier policy that wins whenever policy i would:
// its match expression is the constant true or the same as policy i's,
// and its confidence guard is no stricter.
func (s *Set) shadowing(i int) *Policy {
	p := s.Policies[i]
	for _, q := range s.Policies[:i] {
		if q.Guards.MinConfidence > p.Guards.MinConfidence {
			continue
		}
		if q.alwaysTrue || sameMatch(q, p) {
			return q
		}
	}
	return nil
}

func sameMatch(a, b *Policy) bool {
	if a.canonical != "" && b.canonical != "" {
		return a.canonical == b.canonical
	}
	return strings.Join(strings.Fields(a.Match), " ") == strings.Join(strings.Fields(b.Match), " ")
}

// firstUnprotectedDestructive returns the first destructive step that no
// required evidence step precedes, and the evidence actions for the message.
func firstUnprotectedDestructive(rb *Runbook) (step, evidence string) {
	var ev []string
	for _, a := range actions.StandardNames() {
		if actions.Standard(a).Evidence {
			ev = append(ev, a)
		}
	}
	sort.Strings(ev)
	for _, st := range rb.Steps {
		m := actions.Standard(st.Action)
		if m.Evidence && !st.Optional {
			return "", ""
		}
		if m.Destructive {
			name := st.Name
			if name == "" {
				name = st.Action
			}
			return name, strings.Join(ev, " or ")
		}
	}
	return "", ""
}

func hasAction(rb *Runbook, action string) bool {
	for _, st := range rb.Steps {
		if st.Action == action {
			return true
		}
	}
	return false
}
