package v1

import "time"

// Roles a user may have.
const (
	RoleViewer    = "viewer"
	RoleIntake    = "intake"
	RoleResponder = "responder"
	RoleApprover  = "approver"
	RoleAdmin     = "admin"
)

// User is a person or a machine identity (a detector) that holds API
// tokens. Tokens themselves are never sent back, only their ids.
type User struct {
	Name        string    `json:"name"`
	Role        string    `json:"role"`
	DisplayName string    `json:"display_name,omitempty"`
	Disabled    bool      `json:"disabled"`
	CreatedAt   time.Time `json:"created_at"`
	CreatedBy   string    `json:"created_by"`
	UpdatedAt   time.Time `json:"updated_at"`
	// Tokens are the ids of the user's tokens that still work.
	Tokens []string `json:"tokens"`
}

// UserList is the answer of GET /v1/users.
type UserList struct {
	Users []User `json:"users"`
}

// AddUserRequest is the body of POST /v1/users.
type AddUserRequest struct {
	Name        string `json:"name"`
	Role        string `json:"role"`
	DisplayName string `json:"display_name,omitempty"`
}

// IssuedToken is the answer of POST /v1/users and POST
// /v1/users/{name}/token: the token is in this answer and nowhere else;
// the controller keeps only its hash.
type IssuedToken struct {
	User    User   `json:"user"`
	TokenID string `json:"token_id"`
	Token   string `json:"token"`
}

// WhoAmI is the answer of GET /v1/whoami: the caller as the controller
// authenticated it.
type WhoAmI struct {
	User    string `json:"user"`
	Role    string `json:"role"`
	TokenID string `json:"token_id"`
	// Actor is how the audit and the reports name the caller.
	Actor string `json:"actor"`
	// TwoPerson is guards.two_person: whether an approval must come from
	// another person than the requester.
	TwoPerson bool `json:"two_person"`
}
