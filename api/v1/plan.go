package v1

// Plan is what a run will do against one gateway: its steps with their
// expected changes, and the gates that decide whether it runs unattended.
type Plan struct {
	Incident string     `json:"incident,omitempty"`
	Gateway  string     `json:"gateway"`
	Site     string     `json:"site"`
	VM       string     `json:"vm,omitempty"`
	Runbook  string     `json:"runbook"`
	Policy   string     `json:"policy,omitempty"`
	Steps    []PlanStep `json:"steps"`
	Gates    []Gate     `json:"gates"`
	// ApprovalRequired is true when any gate asks for a person.
	ApprovalRequired bool `json:"approval_required"`
}

// PlanStep is one planned step.
type PlanStep struct {
	Index       int               `json:"index"`
	Name        string            `json:"name"`
	Action      string            `json:"action"`
	Target      string            `json:"target"`
	Params      map[string]string `json:"params,omitempty"`
	Optional    bool              `json:"optional,omitempty"`
	Evidence    bool              `json:"evidence,omitempty"`
	Destructive bool              `json:"destructive,omitempty"`
	// Expected is the change read from current state, when it could be.
	Expected *Change `json:"expected,omitempty"`
	// PlanError says why the expected change could not be read.
	PlanError string `json:"plan_error,omitempty"`
}

// Change is the change a step is expected to make.
type Change struct {
	Summary     string   `json:"summary"`
	Changes     []string `json:"changes,omitempty"`
	Destructive bool     `json:"destructive,omitempty"`
	Warnings    []string `json:"warnings,omitempty"`
	CutsAgent   bool     `json:"cuts_agent,omitempty"`
}

// Gate is one check between decision and execution. Passed false with
// Blocking true holds the run for a person.
type Gate struct {
	Name     string `json:"name"`
	Passed   bool   `json:"passed"`
	Blocking bool   `json:"blocking"`
	Detail   string `json:"detail"`
}

// PlanResponse is the answer of POST /v1/plan.
type PlanResponse struct {
	Decision Decision `json:"decision"`
	// Plan is absent when no policy matched.
	Plan *Plan  `json:"plan,omitempty"`
	Text string `json:"text"`
}

// Decision is the policies' outcome for one indicator. Its names are
// capitalised: v1 has always sent them so.
type Decision struct {
	Matched             bool   `json:"Matched"`
	Policy              string `json:"Policy"`
	Runbook             string `json:"Runbook"`
	Approval            string `json:"Approval"` // auto or required
	CountsAgainstBudget bool   `json:"CountsAgainstBudget"`
	// BusinessHours: whether the indicator was observed within the
	// site's business hours, in the site's time zone.
	BusinessHours bool `json:"BusinessHours"`
	// Explanations, one per policy, in evaluation order.
	Explanations []Explanation `json:"Explanations"`
}

// Explanation says why one policy matched or did not.
type Explanation struct {
	Policy  string `json:"Policy"`
	Matched bool   `json:"Matched"`
	Reason  string `json:"Reason"`
}
