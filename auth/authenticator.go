package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Credential is what the store knows of a token: whose it is and whether
// it still works.
type Credential struct {
	User     string
	Role     Role
	TokenID  string
	Disabled bool // the user is disabled
	Revoked  bool // the token was replaced or revoked
}

// ErrUnknownToken is what a CredentialStore returns for a hash it does not
// hold.
var ErrUnknownToken = errors.New("unknown token")

// CredentialStore finds a token by its hash (HashToken).
type CredentialStore interface {
	CredentialByHash(ctx context.Context, hash string) (Credential, error)
}

// UserStatus says whether a named user exists and is disabled; single
// sign-on users need not exist in the store, but a disabled one is
// refused.
type UserStatus interface {
	UserDisabled(ctx context.Context, name string) (exists, disabled bool, err error)
}

// Options configure an Authenticator.
type Options struct {
	// Store holds users and token hashes. Required.
	Store CredentialStore
	// LegacyToken is the deprecated shared server.api_token: it
	// authenticates as LegacyName with the admin role.
	LegacyToken string
	// OIDC, when set, accepts ID tokens from its issuer.
	OIDC *OIDC
	// Limiter bounds failed attempts per source address; nil uses
	// DefaultLimiter.
	Limiter *Limiter
	// Registerer takes the metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// LegacyName is the principal of the deprecated shared token.
const LegacyName = "shared-api-token"

// Authenticator finds the principal of a request.
type Authenticator struct {
	opt       Options
	legacy    []byte
	failures  *prometheus.CounterVec
	throttled prometheus.Counter

	// cache holds credentials that worked, by hash, for CacheTTL: a
	// detector posting hundreds of alerts a second costs one lookup a
	// second, not one each. Forget empties it; the API calls it on every
	// change of users or tokens, so a disabled user's token stops at once.
	cacheMu sync.Mutex
	cache   map[string]cachedCredential
	now     func() time.Time
}

type cachedCredential struct {
	c  Credential
	at time.Time
}

// CacheTTL bounds how long a working credential is remembered without
// asking the store again (a change made through this process is seen at
// once; one made behind its back, within CacheTTL).
const CacheTTL = time.Second

// maxCached bounds the cache; when full it starts again empty.
const maxCached = 4096

// NewAuthenticator builds an Authenticator.
func NewAuthenticator(opt Options) (*Authenticator, error) {
	if opt.Store == nil {
		return nil, errors.New("auth: a credential store is required")
	}
	if opt.Limiter == nil {
		opt.Limiter = DefaultLimiter()
	}
	a := &Authenticator{opt: opt, cache: map[string]cachedCredential{}, now: time.Now,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_auth_failures_total",
			Help: "Failed API authentications, by reason."}, []string{"reason"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{Name: "warden_auth_throttled_total",
			Help: "API requests refused with 429 because their source address failed to authenticate too often."}),
	}
	if opt.LegacyToken != "" {
		a.legacy = []byte(opt.LegacyToken)
	}
	for _, r := range []string{"missing", "invalid", "disabled", "no_role", "error"} {
		a.failures.WithLabelValues(r)
	}
	if opt.Registerer != nil {
		if err := opt.Registerer.Register(a.failures); err != nil {
			return nil, err
		}
		if err := opt.Registerer.Register(a.throttled); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// HasLegacyToken reports whether the deprecated shared token is accepted.
func (a *Authenticator) HasLegacyToken() bool { return a.legacy != nil }

// ThrottledError is a source address that failed too often.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed authentications from this address; try again in %s", e.RetryAfter.Round(time.Second))
}

// Authenticate returns the principal of r. Errors are ErrNoCredentials,
// ErrBadCredentials, ErrDisabled, ErrNoRole, a *ThrottledError, or a
// store failure (which is not the caller's fault and not counted against
// its address).
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	return a.check(r, func() (Principal, error) { return a.authenticate(r.Context(), r.Header.Get("Authorization")) })
}

// AuthenticateToken is Authenticate for a token a person typed into a
// form (the console's login) rather than sent as a bearer header: the same
// tokens and ID tokens are accepted, and a failure counts against r's
// source address in the same limiter, so that guessing through the login
// form is no cheaper than guessing at the API.
func (a *Authenticator) AuthenticateToken(r *http.Request, token string) (Principal, error) {
	return a.check(r, func() (Principal, error) {
		token = strings.TrimSpace(token)
		if token == "" {
			return Principal{}, ErrNoCredentials
		}
		return a.authenticate(r.Context(), "Bearer "+token)
	})
}

// check refuses a throttled source before find looks at its credentials,
// and counts find's refusal against the source.
func (a *Authenticator) check(r *http.Request, find func() (Principal, error)) (Principal, error) {
	src := sourceOf(r)
	if wait, ok := a.opt.Limiter.Blocked(src); ok {
		a.throttled.Inc()
		return Principal{}, &ThrottledError{RetryAfter: wait}
	}
	p, err := find()
	if err != nil {
		reason := refusal(err)
		if reason == "" {
			a.failures.WithLabelValues("error").Inc()
			return Principal{}, err
		}
		a.failures.WithLabelValues(reason).Inc()
		a.opt.Limiter.Fail(src)
		return Principal{}, err
	}
	return p, nil
}

// Refused reports whether err says the caller's credentials were refused
// (401), rather than that they could not be checked (the store or the
// issuer did not answer) or that the address is throttled.
func Refused(err error) bool { return refusal(err) != "" }

// refusal is the metrics reason of a refused credential, "" for any other
// error.
func refusal(err error) string {
	switch {
	case errors.Is(err, ErrNoCredentials):
		return "missing"
	case errors.Is(err, ErrBadCredentials):
		return "invalid"
	case errors.Is(err, ErrDisabled):
		return "disabled"
	case errors.Is(err, ErrNoRole):
		return "no_role"
	}
	return ""
}

func (a *Authenticator) authenticate(ctx context.Context, header string) (Principal, error) {
	scheme, token, ok := strings.Cut(header, " ")
	if header == "" {
		return Principal{}, ErrNoCredentials
	}
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Principal{}, fmt.Errorf("%w: the Authorization header must be \"Bearer <token>\"", ErrBadCredentials)
	}
	if a.legacy != nil && subtle.ConstantTimeCompare([]byte(token), a.legacy) == 1 {
		return Principal{Name: LegacyName, Role: Admin, TokenID: LegacyTokenID}, nil
	}
	hash := HashToken(token)
	c, err := a.lookup(ctx, hash)
	switch {
	case err == nil:
		if c.Revoked {
			return Principal{}, ErrBadCredentials
		}
		if c.Disabled {
			return Principal{}, ErrDisabled
		}
		return Principal{Name: c.User, Role: c.Role, TokenID: c.TokenID}, nil
	case !errors.Is(err, ErrUnknownToken):
		return Principal{}, fmt.Errorf("looking up the token: %w", err)
	}
	if a.opt.OIDC != nil && strings.Count(token, ".") == 2 {
		return a.opt.OIDC.Verify(ctx, token)
	}
	return Principal{}, ErrBadCredentials
}

// sourceOf is the address a request came from (the peer, not a header a
// client can write).
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// FailuresCounter is warden_auth_failures_total (tests read it).
func (a *Authenticator) FailuresCounter() *prometheus.CounterVec { return a.failures }

// lookup finds a credential, from the cache when it worked less than
// CacheTTL ago.
func (a *Authenticator) lookup(ctx context.Context, hash string) (Credential, error) {
	now := a.now()
	a.cacheMu.Lock()
	e, ok := a.cache[hash]
	a.cacheMu.Unlock()
	if ok && now.Sub(e.at) < CacheTTL {
		return e.c, nil
	}
	c, err := a.opt.Store.CredentialByHash(ctx, hash)
	if err != nil || c.Revoked || c.Disabled {
		return c, err
	}
	a.cacheMu.Lock()
	if len(a.cache) >= maxCached {
		clear(a.cache)
	}
	a.cache[hash] = cachedCredential{c: c, at: now}
	a.cacheMu.Unlock()
	return c, nil
}

// Forget drops every remembered credential: call it when users or tokens
// change.
func (a *Authenticator) Forget() {
	a.cacheMu.Lock()
	clear(a.cache)
	a.cacheMu.Unlock()
}

// SetClock replaces the clock of the credential cache (tests).
func (a *Authenticator) SetClock(now func() time.Time) { a.now = now }
