package policies

import (
	"fmt"
	"strconv"
	"time"

	"cel.dev/cel-go/common/types"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
)

// Context is what the controller knows about the moment of the decision.
type Context struct {
	// Now is the decision time; it stands in for the indicator's
	// ObservedAt when that is zero. The package never reads the clock.
	Now time.Time
	// Posture is the gateway's desired state: normal (default),
	// quarantined or released.
	Posture string
	// OpenIncidents about the gateway, and RecentIndicators about the same
	// gateway within the deduplication window.
	OpenIncidents, RecentIndicators int
}

// Input is everything a decision reads. Site should come from a validated
// inventory: an unvalidated Site loads its time zone on every decision.
type Input struct {
	Indicator indicator.Indicator
	Gateway   inventory.Gateway
	Site      inventory.Site
	Context   Context
}

// Explanation says what one policy made of the input.
type Explanation struct {
	Policy  string
	Matched bool
	// Reason is "matched", "match expression false", "confidence 0.3 below
	// min_confidence 0.5", "evaluation error: …", or "not evaluated: …".
	Reason string
}

// Decision is the outcome for one indicator.
type Decision struct {
	Matched             bool
	Policy              string
	Runbook             string
	Approval            Approval
	CountsAgainstBudget bool
	// RepeatAfter is the winning policy's guards.repeat_after: how long
	// after a run it started for the incident it starts no other. Not in
	// the JSON: /v1/plan's decision keeps its shape.
	RepeatAfter time.Duration `json:"-"`
	// BusinessHours: whether the indicator was observed within the site's
	// business hours, in the site's time zone.
	BusinessHours bool
	// Explanations, one per policy, in evaluation order.
	Explanations []Explanation
}

// Explanation reasons.
const (
	ReasonMatched  = "matched"
	ReasonFalse    = "match expression false"
	ReasonResolved = "not evaluated: resolved alerts never start a runbook"
)

// Decide evaluates the policies in order and returns the first that
// matches and passes its guards. Every policy gets an explanation: those
// evaluated say why they did or did not match, those after the winner say
// which earlier policy matched. A resolved indicator matches nothing: the
// end of an alert is never a reason to act.
//
// Decide is safe for concurrent use.
func (s *Set) Decide(in Input) Decision {
	rt := s.rt
	if rt == nil {
		// A Set built by hand rather than loaded: its policies are not
		// compiled and evaluate to errors, but Decide still explains.
		rt = newRuntime(types.DefaultTypeAdapter)
	}
	st := rt.acquire(&in)
	defer rt.release(st)
	d := Decision{BusinessHours: st.businessHours, Explanations: make([]Explanation, len(s.Policies))}

	if in.Indicator.Status == indicator.StatusResolved {
		for i, p := range s.Policies {
			d.Explanations[i] = Explanation{Policy: p.Name, Reason: ReasonResolved}
		}
		return d
	}

	var winner *Policy
	var skipped string
	for i, p := range s.Policies {
		if winner != nil {
			if skipped == "" {
				skipped = "not evaluated: earlier policy " + winner.Name + " matched"
			}
			d.Explanations[i] = Explanation{Policy: p.Name, Reason: skipped}
			continue
		}
		matched, reason := p.evaluate(st)
		d.Explanations[i] = Explanation{Policy: p.Name, Matched: matched, Reason: reason}
		if matched {
			winner = p
		}
	}
	if winner != nil {
		d.Matched = true
		d.Policy = winner.Name
		d.Runbook = winner.Runbook
		d.Approval = winner.Approval
		d.CountsAgainstBudget = winner.Guards.CountsAgainstBudget()
		d.RepeatAfter = time.Duration(winner.Guards.RepeatAfter)
	}
	return d
}

// evaluate runs the match expression, then the guards.
func (p *Policy) evaluate(st *evalState) (bool, string) {
	if p.prog == nil {
		return false, "evaluation error: policy was not compiled (load it with LoadDir, LoadFS or Default)"
	}
	out, _, err := p.prog.Eval(st)
	if err != nil {
		return false, "evaluation error: " + err.Error()
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Sprintf("evaluation error: match returned %s, not bool", out.Type().TypeName())
	}
	if !b {
		return false, ReasonFalse
	}
	if c := st.in.Indicator.Confidence; c < p.Guards.MinConfidence {
		return false, "confidence " + strconv.FormatFloat(c, 'g', -1, 64) +
			" below min_confidence " + strconv.FormatFloat(p.Guards.MinConfidence, 'g', -1, 64)
	}
	return true, ReasonMatched
}
