package v1

// DriftCheckRequest is the body of POST /v1/drift/check.
type DriftCheckRequest struct {
	// Gateway is a gateway id, or "all" (a check changes nothing).
	Gateway string `json:"gateway"`
	By      string `json:"by,omitempty"`
}

// DriftCheckResponse is the answer of POST /v1/drift/check.
type DriftCheckResponse struct {
	Results []DriftResult `json:"results"`
}

// DriftResult is one gateway's baseline check.
type DriftResult struct {
	Gateway string         `json:"gateway"`
	Passed  bool           `json:"passed"`
	Counts  BaselineCounts `json:"counts"`
	Failing []string       `json:"failing,omitempty"`
	// Changes are the checks that went from pass to fail.
	Changes []BaselineChange `json:"changes,omitempty"`
	// Indicators are what the changes became.
	Indicators []Accepted `json:"indicators,omitempty"`
	Skipped    string     `json:"skipped,omitempty"`
	Error      string     `json:"error,omitempty"`
}

// BaselineCounts counts a baseline's checks by verdict.
type BaselineCounts struct {
	Pass  int `json:"pass"`
	Fail  int `json:"fail"`
	Error int `json:"error"`
	Skip  int `json:"skip"`
}

// BaselineChange is one check that went from pass to fail.
type BaselineChange struct {
	ID       string             `json:"id"`
	Title    string             `json:"title"`
	Type     string             `json:"type"`
	Severity string             `json:"severity"`
	Kind     string             `json:"kind"`
	From     string             `json:"from"`
	To       string             `json:"to"`
	Evidence []BaselineEvidence `json:"evidence,omitempty"`
	Message  string             `json:"message,omitempty"`
}

// BaselineEvidence is where a check read a value, and what it found.
type BaselineEvidence struct {
	Source   string `json:"source"`
	Value    string `json:"value"`
	Expected string `json:"expected,omitempty"`
}
