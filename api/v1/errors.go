package v1

// Error is the body of every non-2xx JSON answer.
type Error struct {
	// Error is the message; a 4xx names the problem.
	Error string `json:"error"`
	// Field names the offending request field, when there is one.
	Field string `json:"field,omitempty"`
}

// Health is the answer of /healthz and /readyz.
type Health struct {
	// Reason says why the store cannot commit (503 from /readyz only).
	Reason string `json:"reason,omitempty"`
	Status string `json:"status"`
}
