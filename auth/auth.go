// Package auth is who a caller of Warden's API is and what they may do:
// people and machine identities (detectors), their roles, API tokens
// (issued once, kept only as a hash), bearer authentication with a limit
// on failures per source address, and optional single sign-on with ID
// tokens from an OIDC issuer.
//
// A person is an authenticated identity: the actor of every audit entry,
// custody event, run and approval written for a request is the Principal
// this package found, never a name the request body carries. It must not
// decide anything about runs (four eyes is the controller's rule, over the
// names recorded on the run) and must never log or return a token.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Role is what a user may do. Roles are fixed; a user has exactly one.
type Role string

// The roles, from least to most.
const (
	// Viewer reads everything.
	Viewer Role = "viewer"
	// Intake is a detector: it posts alerts and nothing else.
	Intake Role = "intake"
	// Responder submits indicators, starts runbooks (dry runs too),
	// requests a release and collects and exports evidence.
	Responder Role = "responder"
	// Approver is a responder who also approves and cancels runs and
	// resolves indicators.
	Approver Role = "approver"
	// Admin is an approver who also manages users, resets the circuit
	// breaker and changes configuration through the API.
	Admin Role = "admin"
)

// Roles lists every role, least first.
var Roles = []Role{Viewer, Intake, Responder, Approver, Admin}

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(Roles, r) {
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (one of: viewer, intake, responder, approver, admin)", s)
}

// Permission is one kind of route.
type Permission int

// The permissions a route may ask for.
const (
	// Read is every GET of state, reports and the audit.
	Read Permission = iota + 1
	// Submit is posting indicators and alerts.
	Submit
	// Respond is starting runbooks (and dry runs), requesting a release,
	// drift checks, patch waves, and collecting and exporting evidence.
	Respond
	// Approve is approving and cancelling runs and resolving indicators.
	Approve
	// Administer is managing users and resetting the circuit breaker.
	Administer
)

func (p Permission) String() string {
	switch p {
	case Read:
		return "read"
	case Submit:
		return "submit indicators"
	case Respond:
		return "respond"
	case Approve:
		return "approve"
	case Administer:
		return "administer"
	}
	return fmt.Sprintf("permission(%d)", int(p))
}

// Can reports whether the role grants p.
func (r Role) Can(p Permission) bool {
	switch r {
	case Viewer:
		return p == Read
	case Intake:
		return p == Submit
	case Responder:
		return p == Read || p == Submit || p == Respond
	case Approver:
		return p == Read || p == Submit || p == Respond || p == Approve
	case Admin:
		return p >= Read && p <= Administer
	}
	return false
}

// Least is the least role that grants p: what a 403 names.
func Least(p Permission) Role {
	for _, r := range Roles {
		if r.Can(p) {
			return r
		}
	}
	return Admin
}

// Principal is an authenticated caller.
type Principal struct {
	// Name is the user's name (for single sign-on, the mapped claim).
	Name string
	Role Role
	// TokenID identifies the credential: a token's public id ("tk_…"),
	// "oidc" for an ID token, or "legacy" for server.api_token.
	TokenID string
	// Expires is when the credential stops working, for one that says so
	// (an ID token's exp); zero for API tokens, which work until revoked.
	// What is opened with the credential (a console session) ends then too.
	Expires time.Time
}

// Token ids of credentials that are not tokens in the store.
const (
	// OIDCTokenID is the TokenID of a principal signed in with an ID
	// token (single sign-on).
	OIDCTokenID = "oidc"
	// LegacyTokenID is the TokenID of the deprecated shared token.
	LegacyTokenID = "legacy"
)

// ActorPrefix starts every actor that is a person or a machine identity.
const ActorPrefix = "user:"

// Actor is how the audit, custody, runs and reports name the principal.
func (p Principal) Actor() string { return ActorPrefix + p.Name }

// UserOf is the user name in an actor written by Actor ("" for other
// actors: "controller", "agent:gw-1").
func UserOf(actor string) string {
	name, ok := strings.CutPrefix(actor, ActorPrefix)
	if !ok {
		return ""
	}
	return name
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext is the principal WithPrincipal stored.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,62}$`)

// reserved are names the controller writes as actors of its own.
var reserved = []string{"controller", "system", "warden", "agent", "plan", "drift", "cli", "api", "legacy", "unknown"}

// ValidName checks a user name: lower case letters, digits, '.', '_' and
// '-', starting with a letter, at most 63 characters, not a name Warden
// uses for itself.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%q is not a user name: use lower-case letters, digits, '.', '_' or '-', starting with a letter, at most 63 characters", name)
	}
	if slices.Contains(reserved, name) {
		return fmt.Errorf("%q is reserved for Warden's own actors", name)
	}
	return nil
}

// TokenPrefix starts every token Warden issues, so that a leaked one is
// recognisable (secret scanners, log filters).
const TokenPrefix = "wdn_"

// MinTokenLength is the shortest bearer token taken from a file (the
// bootstrap admin, server.api_token): shorter ones are guessable.
const MinTokenLength = 32

// NewToken returns a new API token (256 random bits) and its public id.
// The token is shown once and stored only as HashToken's result.
func NewToken() (token, id string, err error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", "", fmt.Errorf("generating a token: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(secret), NewTokenID(), nil
}

// NewTokenID returns a public token id.
func NewTokenID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "tk_" + hex.EncodeToString(b)
}

// HashToken is what the store keeps of a token: its SHA-256. A token has
// 256 random bits, so no salt or slow hash is needed for it to resist
// guessing; the hash also lets a token be found without comparing it with
// every stored one.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Errors of authentication and authorisation. Their messages never hold
// the token.
var (
	// ErrNoCredentials: no bearer token.
	ErrNoCredentials = errors.New("missing bearer token in the Authorization header")
	// ErrBadCredentials: a token that is unknown, revoked or malformed,
	// or an ID token that does not verify.
	ErrBadCredentials = errors.New("the bearer token is not valid")
	// ErrDisabled: the token's user is disabled.
	ErrDisabled = errors.New("the user of this token is disabled")
	// ErrNoRole: a single sign-on user none of whose groups maps to a role.
	ErrNoRole = errors.New("no role: none of the user's groups is mapped to a Warden role")
)
