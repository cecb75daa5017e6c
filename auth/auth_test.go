package auth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/auth/authtest"
)

func TestRolesGrantWhatTheIssueLists(t *testing.T) {
	want := map[auth.Role][]auth.Permission{
		auth.Viewer:    {auth.Read},
		auth.Intake:    {auth.Submit},
		auth.Responder: {auth.Read, auth.Submit, auth.Respond},
		auth.Approver:  {auth.Read, auth.Submit, auth.Respond, auth.Approve},
		auth.Admin:     {auth.Read, auth.Submit, auth.Respond, auth.Approve, auth.Administer},
	}
	all := []auth.Permission{auth.Read, auth.Submit, auth.Respond, auth.Approve, auth.Administer}
	for role, grants := range want {
		for _, p := range all {
			got := role.Can(p)
			exp := false
			for _, g := range grants {
				exp = exp || g == p
			}
			if got != exp {
				t.Errorf("%s.Can(%s) = %t, want %t", role, p, got, exp)
			}
		}
	}
	if auth.Role("root").Can(auth.Read) {
		t.Error("an unknown role grants read")
	}
	if got := auth.Least(auth.Approve); got != auth.Approver {
		t.Errorf("Least(approve) = %s", got)
	}
	if _, err := auth.ParseRole("superuser"); err == nil || !strings.Contains(err.Error(), "viewer") {
		t.Errorf("ParseRole(superuser) = %v, want an error listing the roles", err)
	}
	if r, err := auth.ParseRole(" Approver "); err != nil || r != auth.Approver {
		t.Errorf("ParseRole(Approver) = %q, %v", r, err)
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"resp1", "a", "ops.tanaka", "soc_bot-2"} {
		if err := auth.ValidName(ok); err != nil {
			t.Errorf("ValidName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Resp1", "1ops", "ops 1", "ops:1", "controller", "agent", strings.Repeat("a", 64)} {
		if err := auth.ValidName(bad); err == nil {
			t.Errorf("ValidName(%q) accepted", bad)
		}
	}
}

func TestNewTokenIsRandomAndOnlyItsHashIsKept(t *testing.T) {
	a, ida, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, idb, _ := auth.NewToken()
	if a == b || ida == idb {
		t.Fatal("two tokens are the same")
	}
	if !strings.HasPrefix(a, auth.TokenPrefix) || len(a) < 4+43 {
		t.Errorf("token %q is not wdn_ + 256 bits", a)
	}
	h := auth.HashToken(a)
	if len(h) != 64 || strings.Contains(h, a[4:]) || h == auth.HashToken(b) {
		t.Errorf("hash %q", h)
	}
}

type memStore map[string]auth.Credential

func (m memStore) CredentialByHash(_ context.Context, hash string) (auth.Credential, error) {
	c, ok := m[hash]
	if !ok {
		return auth.Credential{}, auth.ErrUnknownToken
	}
	return c, nil
}

func request(token, remote string) *http.Request {
	r := httptest.NewRequest("GET", "/v1/runs", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	r.RemoteAddr = remote
	return r
}

func TestAuthenticate(t *testing.T) {
	const good, revoked, disabled = "wdn_good-token-0123456789abcdefghijklmnopq", "wdn_revoked-0123456789abcdefghijklmnopqrstu", "wdn_disabled-0123456789abcdefghijklmnopqrst"
	st := memStore{
		auth.HashToken(good):     {User: "resp1", Role: auth.Responder, TokenID: "tk_1"},
		auth.HashToken(revoked):  {User: "resp1", Role: auth.Responder, TokenID: "tk_0", Revoked: true},
		auth.HashToken(disabled): {User: "gone", Role: auth.Approver, TokenID: "tk_2", Disabled: true},
	}
	reg := prometheus.NewRegistry()
	legacy := "legacy-shared-token-0123456789abcdef"
	a, err := auth.NewAuthenticator(auth.Options{Store: st, LegacyToken: legacy, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Authenticate(request(good, "192.0.2.1:5000"))
	if err != nil || p.Name != "resp1" || p.Role != auth.Responder || p.TokenID != "tk_1" || p.Actor() != "user:resp1" {
		t.Fatalf("good token: %+v, %v", p, err)
	}
	p, err = a.Authenticate(request(legacy, "192.0.2.1:5000"))
	if err != nil || p.Name != auth.LegacyName || p.Role != auth.Admin || p.TokenID != "legacy" {
		t.Fatalf("legacy token: %+v, %v", p, err)
	}
	for name, tc := range map[string]struct {
		header string
		want   error
	}{
		"missing":               {"", auth.ErrNoCredentials},
		"basic":                 {"Basic dXNlcjpwYXNz", auth.ErrBadCredentials},
		"unknown":               {"Bearer wdn_unknown", auth.ErrBadCredentials},
		"revoked":               {"Bearer " + revoked, auth.ErrBadCredentials},
		"disabled":              {"Bearer " + disabled, auth.ErrDisabled},
		"jwt-like without oidc": {"Bearer a.b.c", auth.ErrBadCredentials},
	} {
		r := request("", "192.0.2.7:1")
		r.Header.Set("Authorization", tc.header)
		_, err := a.Authenticate(r)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
		if tc.header != "" && strings.Contains(err.Error(), strings.TrimPrefix(tc.header, "Bearer ")) {
			t.Errorf("%s: the error %q holds the token", name, err)
		}
	}
	if got := testutil.ToFloat64(a.FailuresCounter().WithLabelValues("invalid")); got != 4 {
		t.Errorf("invalid failures counted %v, want 4", got)
	}
}

func TestFailuresFromOneAddressAreThrottled(t *testing.T) {
	lim := auth.NewLimiter(3, time.Minute, 100)
	now := time.Unix(1000, 0)
	lim.SetClock(func() time.Time { return now })
	good := "wdn_good-token-0123456789abcdefghijklmnopq"
	a, err := auth.NewAuthenticator(auth.Options{Store: memStore{auth.HashToken(good): {User: "u1", Role: auth.Viewer, TokenID: "tk"}}, Limiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := a.Authenticate(request("wdn_guess", "198.51.100.9:1")); !errors.Is(err, auth.ErrBadCredentials) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	// The fourth attempt is refused before the token is looked at, even
	// a good one: the address is blocked, not the token.
	_, err = a.Authenticate(request(good, "198.51.100.9:2"))
	var th *auth.ThrottledError
	if !errors.As(err, &th) || th.RetryAfter < time.Second {
		t.Fatalf("after 3 failures: %v, want throttled", err)
	}
	// Another address is not affected.
	if _, err := a.Authenticate(request(good, "198.51.100.10:1")); err != nil {
		t.Fatalf("another address: %v", err)
	}
	now = now.Add(time.Minute)
	if _, err := a.Authenticate(request(good, "198.51.100.9:3")); err != nil {
		t.Fatalf("after the refill: %v", err)
	}
}

// TestFormTokensShareTheAPILimit: a token typed into the console's login
// form is checked as a bearer token is, and failures through either count
// against the same address, so the form is no way around the limit.
func TestFormTokensShareTheAPILimit(t *testing.T) {
	lim := auth.NewLimiter(3, time.Minute, 100)
	now := time.Unix(1000, 0)
	lim.SetClock(func() time.Time { return now })
	good := "wdn_good-token-0123456789abcdefghijklmnopq"
	a, err := auth.NewAuthenticator(auth.Options{Store: memStore{auth.HashToken(good): {User: "u1", Role: auth.Responder, TokenID: "tk_9"}}, Limiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	form := httptest.NewRequest("POST", "/ui/login", nil)
	form.RemoteAddr = "198.51.100.9:4"
	if p, err := a.AuthenticateToken(form, "  "+good+"\n"); err != nil || p.Name != "u1" || p.Role != auth.Responder || p.TokenID != "tk_9" {
		t.Fatalf("a good token typed with blanks around it: %+v, %v", p, err)
	}
	if _, err := a.AuthenticateToken(form, ""); !errors.Is(err, auth.ErrNoCredentials) {
		t.Errorf("an empty form token: %v, want ErrNoCredentials", err)
	}
	if _, err := a.Authenticate(request("wdn_guess", "198.51.100.9:1")); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("a bearer guess: %v", err)
	}
	if _, err := a.AuthenticateToken(form, "wdn_guess-2"); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("a form guess: %v", err)
	}
	// Three failures (empty, bearer, form) exhaust the address: even the
	// good token is refused through the form.
	_, err = a.AuthenticateToken(form, good)
	var th *auth.ThrottledError
	if !errors.As(err, &th) {
		t.Fatalf("after three failures by both ways: %v, want throttled", err)
	}
	if _, err := a.Authenticate(request(good, "198.51.100.9:5")); !errors.As(err, &th) {
		t.Fatalf("the API after form failures: %v, want throttled", err)
	}
}

func TestLimiterForgetsAddressesBeyondItsBound(t *testing.T) {
	lim := auth.NewLimiter(1, time.Hour, 2)
	for _, src := range []string{"a", "b", "c", "d"} {
		lim.Fail(src)
	}
	if n := lim.Tracked(); n > 2 {
		t.Fatalf("tracks %d addresses, bound 2", n)
	}
}

type users map[string]bool

func (u users) UserDisabled(_ context.Context, name string) (bool, bool, error) {
	d, ok := u[name]
	return ok, d, nil
}

func TestOIDCIDTokens(t *testing.T) {
	iss := authtest.NewIssuer(t)
	o, err := auth.NewOIDC(auth.OIDCConfig{Issuer: iss.URL, Audience: "warden", Roles: map[string]string{"soc": "responder", "soc-leads": "approver"}},
		users{"mallory": true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.NewAuthenticator(auth.Options{Store: memStore{}, OIDC: o})
	if err != nil {
		t.Fatal(err)
	}
	tok := iss.Token(t, "warden", map[string]any{"preferred_username": "Tanaka", "groups": []string{"staff", "soc", "soc-leads"}})
	p, err := a.Authenticate(request(tok, "127.0.0.1:1"))
	if err != nil || p.Name != "tanaka" || p.Role != auth.Approver || p.TokenID != "oidc" || p.Expires.Before(time.Now().Add(50*time.Minute)) || p.Expires.After(time.Now().Add(time.Hour)) {
		t.Fatalf("ID token: %+v, %v", p, err)
	}
	for name, tc := range map[string]struct {
		tok  string
		want error
	}{
		"wrong audience":  {iss.Token(t, "grafana", map[string]any{"preferred_username": "tanaka", "groups": []string{"soc"}}), auth.ErrBadCredentials},
		"expired":         {iss.Token(t, "warden", map[string]any{"preferred_username": "tanaka", "groups": []string{"soc"}, "exp": time.Now().Add(-time.Hour).Unix()}), auth.ErrBadCredentials},
		"foreign key":     {iss.ForeignToken(t, "warden", map[string]any{"preferred_username": "tanaka", "groups": []string{"soc"}}), auth.ErrBadCredentials},
		"no mapped group": {iss.Token(t, "warden", map[string]any{"preferred_username": "tanaka", "groups": []string{"staff"}}), auth.ErrNoRole},
		"disabled user":   {iss.Token(t, "warden", map[string]any{"preferred_username": "mallory", "groups": []string{"soc"}}), auth.ErrDisabled},
		"reserved name":   {iss.Token(t, "warden", map[string]any{"preferred_username": "controller", "groups": []string{"soc"}}), auth.ErrBadCredentials},
	} {
		if _, err := a.Authenticate(request(tc.tok, "127.0.0.1:1")); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if _, err := auth.NewOIDC(auth.OIDCConfig{Issuer: iss.URL, Audience: "warden", Roles: map[string]string{"soc": "root"}}, nil, nil); err == nil {
		t.Error("an unknown role in the mapping was accepted")
	}
}

// TestLimiterForgetsTheFullestFirst: when the limiter must forget an
// address to track a new one, it forgets one that failed least, never a
// blocked one: a guesser cannot unblock itself by failing from many other
// addresses.
func TestLimiterForgetsTheFullestFirst(t *testing.T) {
	for i := range 50 { // the map's order varies from run to run
		lim := auth.NewLimiter(3, time.Hour, 3)
		now := time.Unix(1000, 0)
		lim.SetClock(func() time.Time { return now })
		for range 3 {
			lim.Fail("guesser")
		}
		lim.Fail("typo-1")
		lim.Fail("typo-2")
		lim.Fail("typo-2")
		lim.Fail("new") // the limiter is full: one of the others goes
		if _, blocked := lim.Blocked("guesser"); !blocked {
			t.Fatalf("round %d: the blocked address was forgotten to make room", i)
		}
		if n := lim.Tracked(); n > 3 {
			t.Fatalf("round %d: tracks %d addresses, bound 3", i, n)
		}
		lim.Fail("typo-2") // typo-2 stayed: typo-1, which failed least, went
		if _, blocked := lim.Blocked("typo-2"); !blocked {
			t.Fatalf("round %d: typo-2 was forgotten before typo-1, which failed less", i)
		}
	}
}

type countingStore struct {
	memStore
	calls int
}

func (c *countingStore) CredentialByHash(ctx context.Context, hash string) (auth.Credential, error) {
	c.calls++
	return c.memStore.CredentialByHash(ctx, hash)
}

// TestWorkingCredentialsAreRememberedBriefly: a detector's token is looked
// up once per CacheTTL, not per request; Forget (a user changed) and the
// TTL make the store be asked again, so a disabled user is refused then.
func TestWorkingCredentialsAreRememberedBriefly(t *testing.T) {
	const tok = "wdn_detector-token-0123456789abcdefghijklmn"
	st := &countingStore{memStore: memStore{auth.HashToken(tok): {User: "ids", Role: auth.Intake, TokenID: "tk_1"}}}
	a, err := auth.NewAuthenticator(auth.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	a.SetClock(func() time.Time { return now })
	for range 5 {
		if _, err := a.Authenticate(request(tok, "127.0.0.1:1")); err != nil {
			t.Fatal(err)
		}
	}
	if st.calls != 1 {
		t.Fatalf("5 requests within the TTL asked the store %d times, want 1", st.calls)
	}
	// The user is disabled in the store; Forget makes it count at once.
	st.memStore[auth.HashToken(tok)] = auth.Credential{User: "ids", Role: auth.Intake, TokenID: "tk_1", Disabled: true}
	a.Forget()
	if _, err := a.Authenticate(request(tok, "127.0.0.1:1")); !errors.Is(err, auth.ErrDisabled) {
		t.Fatalf("after Forget: %v, want ErrDisabled", err)
	}
	// Refusals are not remembered; a change behind the API's back is seen
	// after the TTL.
	st.memStore[auth.HashToken(tok)] = auth.Credential{User: "ids", Role: auth.Intake, TokenID: "tk_1"}
	if _, err := a.Authenticate(request(tok, "127.0.0.1:1")); err != nil {
		t.Fatalf("enabled again: %v", err)
	}
	st.memStore[auth.HashToken(tok)] = auth.Credential{User: "ids", Role: auth.Intake, TokenID: "tk_1", Revoked: true}
	if _, err := a.Authenticate(request(tok, "127.0.0.1:1")); err != nil {
		t.Fatalf("within the TTL the remembered credential still works: %v", err)
	}
	now = now.Add(auth.CacheTTL)
	if _, err := a.Authenticate(request(tok, "127.0.0.1:1")); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("after the TTL a revoked token: %v, want ErrBadCredentials", err)
	}
}
