// Package plan holds the plan of a run as a plain value: the steps a
// runbook will take against one gateway, the changes each is expected to
// make, and the gates that decide whether it may run unattended. A plan can
// be printed, stored, diffed and approved; a dry run is "build the plan, do
// not apply it".
//
// It must not execute anything.
package plan

import (
	"fmt"
	"sort"
	"strings"

	"github.com/warden-ir/warden/actions"
)

// Plan is what a run will do.
type Plan struct {
	Incident string `json:"incident,omitempty"`
	Gateway  string `json:"gateway"`
	Site     string `json:"site"`
	VM       string `json:"vm,omitempty"`
	Runbook  string `json:"runbook"`
	Policy   string `json:"policy,omitempty"`
	Steps    []Step `json:"steps"`
	Gates    []Gate `json:"gates"`
	// ApprovalRequired is true when any gate asks for a person.
	ApprovalRequired bool `json:"approval_required"`
}

// Step is one planned step.
type Step struct {
	Index       int               `json:"index"`
	Name        string            `json:"name"`
	Action      string            `json:"action"`
	Target      string            `json:"target"`
	Params      map[string]string `json:"params,omitempty"`
	Optional    bool              `json:"optional,omitempty"`
	Evidence    bool              `json:"evidence,omitempty"`
	Destructive bool              `json:"destructive,omitempty"`
	// Expected is filled when the plan was built against real state.
	Expected *actions.Change `json:"expected,omitempty"`
	// PlanError says why the expected change could not be read.
	PlanError string `json:"plan_error,omitempty"`
}

// Gate is one check between decision and execution.
type Gate struct {
	Name string `json:"name"`
	// Passed false with Blocking true stops the run until a person
	// approves.
	Passed   bool   `json:"passed"`
	Blocking bool   `json:"blocking"`
	Detail   string `json:"detail"`
}

// HasAction reports whether the plan includes an action.
func (p Plan) HasAction(name string) bool {
	for _, s := range p.Steps {
		if s.Action == name {
			return true
		}
	}
	return false
}

// BlockingReasons lists the details of failed blocking gates.
func (p Plan) BlockingReasons() []string {
	var out []string
	for _, g := range p.Gates {
		if !g.Passed && g.Blocking {
			out = append(out, g.Name+": "+g.Detail)
		}
	}
	return out
}

// Text renders the plan for people.
func (p Plan) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Runbook %s for gateway %s (site %s", p.Runbook, p.Gateway, p.Site)
	if p.VM != "" {
		fmt.Fprintf(&b, ", VM %s", p.VM)
	}
	b.WriteString(")\n")
	if p.Policy != "" {
		fmt.Fprintf(&b, "Chosen by policy %s\n", p.Policy)
	}
	b.WriteString("Steps:\n")
	for _, s := range p.Steps {
		flags := []string{}
		if s.Evidence {
			flags = append(flags, "evidence")
		}
		if s.Destructive {
			flags = append(flags, "destructive")
		}
		if s.Optional {
			flags = append(flags, "optional")
		}
		fl := ""
		if len(flags) > 0 {
			fl = " [" + strings.Join(flags, ", ") + "]"
		}
		fmt.Fprintf(&b, "  %d. %s on %s%s%s\n", s.Index+1, s.Action, s.Target, paramText(s.Params), fl)
		switch {
		case s.PlanError != "":
			fmt.Fprintf(&b, "     cannot read current state: %s\n", s.PlanError)
		case s.Expected != nil && len(s.Expected.Changes) == 0:
			fmt.Fprintf(&b, "     no change expected: %s\n", s.Expected.Summary)
		case s.Expected != nil:
			fmt.Fprintf(&b, "     %s\n", s.Expected.Summary)
			for _, ch := range s.Expected.Changes {
				fmt.Fprintf(&b, "       - %s\n", ch)
			}
		}
	}
	if len(p.Gates) > 0 {
		b.WriteString("Gates:\n")
		for _, g := range p.Gates {
			mark := "ok  "
			if !g.Passed {
				mark = "HOLD"
				if !g.Blocking {
					mark = "note"
				}
			}
			fmt.Fprintf(&b, "  [%s] %s: %s\n", mark, g.Name, g.Detail)
		}
	}
	if p.ApprovalRequired {
		b.WriteString("A person must approve before this runs.\n")
	} else {
		b.WriteString("Runs automatically.\n")
	}
	return b.String()
}

func paramText(p map[string]string) string {
	if len(p) == 0 {
		return ""
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + p[k]
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
