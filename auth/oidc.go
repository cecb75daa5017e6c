package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// OIDCConfig is server.oidc: bearer ID tokens from Issuer whose audience
// holds Audience are accepted. The user is the UserClaim (default
// "preferred_username"); the role is the highest that any group in
// GroupsClaim (default "groups") maps to in Roles.
type OIDCConfig struct {
	Issuer      string
	Audience    string
	UserClaim   string
	GroupsClaim string
	// Roles maps a group to a role.
	Roles map[string]string
}

// OIDC verifies ID tokens (github.com/coreos/go-oidc/v3: discovery, the
// issuer's key set with rotation, signature, issuer, audience, expiry).
type OIDC struct {
	cfg    OIDCConfig
	roles  map[string]Role
	client *http.Client
	users  UserStatus

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	lastTry  time.Time
	lastErr  error
}

// NewOIDC checks cfg. The issuer is asked for its configuration at the
// first ID token, not here: a controller starts while its issuer is down,
// and its own tokens keep working. users, when set, refuses a disabled
// Warden user of the same name; hc (nil: http.DefaultClient) reaches the
// issuer.
func NewOIDC(cfg OIDCConfig, users UserStatus, hc *http.Client) (*OIDC, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("server.oidc: issuer and audience are both required")
	}
	if cfg.UserClaim == "" {
		cfg.UserClaim = "preferred_username"
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	roles := map[string]Role{}
	for g, r := range cfg.Roles {
		role, err := ParseRole(r)
		if err != nil {
			return nil, fmt.Errorf("server.oidc.roles[%s]: %w", g, err)
		}
		roles[g] = role
	}
	if len(roles) == 0 {
		return nil, errors.New("server.oidc.roles: map at least one group to a role")
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &OIDC{cfg: cfg, roles: roles, client: hc, users: users}, nil
}

func (o *OIDC) verifierFor(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.verifier != nil {
		return o.verifier, nil
	}
	// One discovery attempt per 10 s at most: a down issuer is not asked
	// again by every request.
	if time.Since(o.lastTry) < 10*time.Second && o.lastErr != nil {
		return nil, o.lastErr
	}
	o.lastTry = time.Now()
	dctx, cancel := context.WithTimeout(oidc.ClientContext(context.WithoutCancel(ctx), o.client), 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, o.cfg.Issuer)
	if err != nil {
		o.lastErr = fmt.Errorf("reaching the OIDC issuer %s: %w", o.cfg.Issuer, err)
		return nil, o.lastErr
	}
	// The key set is fetched later with this client too.
	o.verifier = p.VerifierContext(oidc.ClientContext(context.Background(), o.client), &oidc.Config{ClientID: o.cfg.Audience})
	return o.verifier, nil
}

// Verify returns the principal of a raw ID token.
func (o *OIDC) Verify(ctx context.Context, raw string) (Principal, error) {
	v, err := o.verifierFor(ctx)
	if err != nil {
		return Principal{}, err
	}
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		// The reason (expired, wrong audience, bad signature) helps the
		// person; it holds no part of the token.
		return Principal{}, fmt.Errorf("%w: ID token: %s", ErrBadCredentials, oidcReason(err))
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return Principal{}, fmt.Errorf("%w: ID token claims: %v", ErrBadCredentials, err)
	}
	name, _ := claims[o.cfg.UserClaim].(string)
	name = strings.ToLower(strings.TrimSpace(name))
	if err := ValidName(name); err != nil {
		return Principal{}, fmt.Errorf("%w: claim %s: %v", ErrBadCredentials, o.cfg.UserClaim, err)
	}
	role, ok := o.roleOf(claims[o.cfg.GroupsClaim])
	if !ok {
		return Principal{}, ErrNoRole
	}
	if o.users != nil {
		_, disabled, err := o.users.UserDisabled(ctx, name)
		if err != nil {
			return Principal{}, err
		}
		if disabled {
			return Principal{}, ErrDisabled
		}
	}
	return Principal{Name: name, Role: role, TokenID: OIDCTokenID, Expires: tok.Expiry}, nil
}

// roleOf is the highest role any of the groups maps to.
func (o *OIDC) roleOf(v any) (Role, bool) {
	var groups []string
	switch g := v.(type) {
	case string:
		groups = []string{g}
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok {
				groups = append(groups, s)
			}
		}
	}
	sort.Strings(groups)
	best := -1
	for _, g := range groups {
		r, ok := o.roles[g]
		if !ok {
			continue
		}
		for i, known := range Roles {
			if known == r && i > best {
				best = i
			}
		}
	}
	if best < 0 {
		return "", false
	}
	return Roles[best], true
}

func oidcReason(err error) string {
	var exp *oidc.TokenExpiredError
	if errors.As(err, &exp) {
		return "expired at " + exp.Expiry.UTC().Format(time.RFC3339)
	}
	msg := err.Error()
	// go-oidc's messages name claims and the issuer, never the token.
	return strings.TrimPrefix(msg, "oidc: ")
}
