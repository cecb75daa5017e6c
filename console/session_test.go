package console_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/api"
	"github.com/warden-ir/warden/api/client"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/auth/authtest"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/console"
	"github.com/warden-ir/warden/internal/clock/clocktest"
	"github.com/warden-ir/warden/store"
)

// signIn posts the sign-in form and returns the answer with its cookies.
func signIn(t *testing.T, b *browser, token string) (page, []*http.Cookie) {
	t.Helper()
	lp := b.get(t, "/ui/login")
	form := url.Values{"csrf": {csrf(t, lp)}, "token": {token}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, b.s.srv.URL+"/ui/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.s.srv.URL)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return page{status: resp.StatusCode, header: resp.Header}, resp.Cookies()
}

func findCookie(cs []*http.Cookie, name string) *http.Cookie {
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// TestSessionCookieAttributes: the session cookie is HttpOnly,
// SameSite=Strict, limited to /ui/, lasts console.session_ttl, and is
// Secure under TLS; the store keeps only the id's SHA-256, and the sign-in
// is audited with the token the person used.
func TestSessionCookieAttributes(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[tlsOn], func(t *testing.T) {
			s := newStack(t, tlsOn, func(c *config.Config) { c.Console.SessionTTL = 8 * time.Hour })
			resp := s.person(t, "resp1", "responder")
			b := s.browser(t)
			p, cookies := signIn(t, b, resp)
			if p.status != http.StatusSeeOther {
				t.Fatalf("signing in: %d", p.status)
			}
			c := findCookie(cookies, console.SessionCookie)
			if c == nil {
				t.Fatalf("no session cookie among %v", cookies)
			}
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui/" || c.Secure != tlsOn || c.MaxAge != int((8*time.Hour).Seconds()) {
				t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/ui/, Secure=%t, Max-Age 8h", c, tlsOn)
			}
			if raw := strings.Join(p.header.Values("Set-Cookie"), "\n"); !strings.Contains(raw, "SameSite=Strict") || !strings.Contains(raw, "HttpOnly") {
				t.Errorf("Set-Cookie headers: %s", raw)
			}
			sum := sha256.Sum256([]byte(c.Value))
			got, err := s.d.Store.Session(t.Context(), hex.EncodeToString(sum[:]))
			if err != nil || got.User != "resp1" || got.Role != "responder" || !strings.HasPrefix(got.TokenID, "tk_") {
				t.Fatalf("the stored session: %+v %v", got, err)
			}
			db, err := os.ReadFile(s.d.Config.Store.Path + "-wal")
			if err == nil && strings.Contains(string(db), c.Value) {
				t.Error("the store's WAL holds the session id itself")
			}
			es := newAudit(t, s, auditCount(t, s)-1)
			if len(es) != 1 || es[0].Action != "console.signed_in" || es[0].Actor != "user:resp1" || es[0].Token != got.TokenID {
				t.Errorf("the sign-in's audit entry: %+v", es)
			}
		})
	}
}

// TestSessionsEnd: logging out deletes the session (its cookie no longer
// signs anyone in); disabling a person or rotating their token ends their
// sessions at once.
func TestSessionsEnd(t *testing.T) {
	s := newStack(t, false, nil)
	resp := s.person(t, "resp1", "responder")
	b := s.browser(t)
	inbox := b.login(t, resp)
	old := b.cookie(t, console.SessionCookie)
	p := b.post(t, "/ui/logout", url.Values{"csrf": {csrf(t, inbox)}})
	if p.status != http.StatusSeeOther || p.location() != "/ui/login?done=signed_out" {
		t.Fatalf("logout: %d %q", p.status, p.location())
	}
	if c := b.cookie(t, console.SessionCookie); c != nil {
		t.Errorf("the session cookie survived the logout: %+v", c)
	}
	sum := sha256.Sum256([]byte(old.Value))
	if _, err := s.d.Store.Session(t.Context(), hex.EncodeToString(sum[:])); err == nil {
		t.Error("the session is still in the store after logout")
	}
	replay := s.browser(t)
	u, _ := url.Parse(s.srv.URL + "/ui/")
	replay.c.Jar.SetCookies(u, []*http.Cookie{{Name: console.SessionCookie, Value: old.Value, Path: "/ui/"}})
	if p := replay.get(t, "/ui/inbox"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location(), "/ui/login") {
		t.Errorf("the logged-out cookie replayed: %d %q", p.status, p.location())
	}
	if es := newAudit(t, s, auditCount(t, s)-1); es[0].Action != "console.signed_out" || es[0].Actor != "user:resp1" {
		t.Errorf("the logout's audit entry: %+v", es[0])
	}

	for name, end := range map[string]func(){
		"disabled": func() {
			if _, err := s.admin.DisableUser(t.Context(), "resp2"); err != nil {
				t.Fatal(err)
			}
		},
		"token rotated": func() {
			if _, err := s.admin.RotateToken(t.Context(), "resp3"); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			user := map[string]string{"disabled": "resp2", "token rotated": "resp3"}[name]
			b := s.browser(t)
			b.login(t, s.person(t, user, "responder"))
			if p := b.get(t, "/ui/inbox"); p.status != http.StatusOK {
				t.Fatalf("before: %d", p.status)
			}
			end()
			if p := b.get(t, "/ui/inbox"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location(), "/ui/login") {
				t.Errorf("after the user was %s: %d %q, want the sign-in page", name, p.status, p.location())
			}
		})
	}
}

// TestSessionExpires: a session ends console.session_ttl after sign-in,
// and the expired row is removed.
func TestSessionExpires(t *testing.T) {
	s := newStack(t, false, nil)
	clk := clocktest.NewFake(time.Now())
	authn, err := auth.NewAuthenticator(auth.Options{Store: api.Credentials(s.d.Store)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := console.New(console.Options{API: s.d.API, Auth: authn, Controller: s.d.Controller, Ledger: s.d.Ledger, SessionTTL: time.Hour, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	b := s.browser(t)
	b.s = &stack{d: s.d, srv: srv, admin: s.admin}
	b.login(t, s.person(t, "resp1", "responder"))
	sum := sha256.Sum256([]byte(b.cookie(t, console.SessionCookie).Value))
	hash := hex.EncodeToString(sum[:])
	clk.Advance(59 * time.Minute)
	if p := b.get(t, "/ui/inbox"); p.status != http.StatusOK {
		t.Fatalf("59 minutes into an hour's session: %d", p.status)
	}
	clk.Advance(time.Minute)
	if p := b.get(t, "/ui/inbox"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location(), "/ui/login") {
		t.Fatalf("an hour into an hour's session: %d %q, want the sign-in page", p.status, p.location())
	}
	if _, err := s.d.Store.Session(t.Context(), hash); err == nil {
		t.Error("the expired session is still stored")
	}
}

// TestSignInRefusals: a wrong token (never shown back), a detector's
// identity and the shared token are refused; failures count against the
// address in the API's own limiter.
func TestSignInRefusals(t *testing.T) {
	const shared = "shared-token-0123456789abcdefghijklmnop"
	s := newStackWith(t, false, func(c *config.Config) { c.Server.APIToken = shared }, auth.NewLimiter(4, time.Hour, 100))
	resp := s.person(t, "resp1", "responder")
	ids := s.person(t, "ids1", "intake")
	b := s.browser(t)
	for name, tc := range map[string]struct {
		token  string
		status int
		says   string
	}{
		"wrong":  {"wdn_not-a-token-of-anyone-at-all-0123456789", http.StatusUnauthorized, "The token was not accepted"},
		"intake": {ids, http.StatusForbidden, "role intake"},
		"shared": {shared, http.StatusForbidden, "server.api_token"},
	} {
		lp := b.get(t, "/ui/login")
		p := b.post(t, "/ui/login", url.Values{"csrf": {csrf(t, lp)}, "token": {tc.token}})
		if p.status != tc.status || !strings.Contains(p.body, tc.says) || strings.Contains(p.body, tc.token) {
			t.Errorf("%s: %d, want %d saying %q without the token:\n%s", name, p.status, tc.status, tc.says, p.body)
		}
		if b.cookie(t, console.SessionCookie) != nil {
			t.Errorf("%s: a session cookie was set", name)
		}
	}
	// A sign-in form without its own CSRF token is refused before the
	// token is looked at.
	if p := b.post(t, "/ui/login", url.Values{"token": {resp}}); p.status != http.StatusForbidden {
		t.Errorf("sign-in without the form's token: %d", p.status)
	}
	// Four failures from this address: the form and the API both refuse
	// it now, a good token too.
	lp := b.get(t, "/ui/login")
	for range 3 {
		b.post(t, "/ui/login", url.Values{"csrf": {csrf(t, lp)}, "token": {"wdn_guess"}})
	}
	p := b.post(t, "/ui/login", url.Values{"csrf": {csrf(t, lp)}, "token": {resp}})
	if p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") == "" {
		t.Errorf("a good token after four failures: %d, want 429 with Retry-After", p.status)
	}
	c, err := client.New(s.srv.URL, resp, client.WithHTTPClient(s.srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WhoAmI(t.Context()); !isStatus(err, http.StatusTooManyRequests) {
		t.Errorf("the API after failed sign-ins from the same address: %v, want 429", err)
	}
}

func isStatus(err error, status int) bool {
	code, ok := client.StatusCode(err)
	return ok && code == status
}

// TestLanguage: the browser's language chooses, the switch (a form, which
// only sets a cookie) overrides it.
func TestLanguage(t *testing.T) {
	s := newStack(t, false, nil)
	resp := s.person(t, "resp1", "responder")
	b := s.browser(t)
	b.login(t, resp)
	for lang, want := range map[string]string{"en-US,en;q=0.9": "Waiting for a person", "ja-JP,ja;q=0.9,en;q=0.5": "対応をお待ちの実行", "fr-FR": "Waiting for a person", "": "対応をお待ちの実行"} {
		b.lang = lang
		if p := b.get(t, "/ui/inbox"); !strings.Contains(p.body, want) {
			t.Errorf("Accept-Language %q: the inbox does not say %q", lang, want)
		}
	}
	b.lang = "en-US"
	inbox := b.get(t, "/ui/inbox")
	p := b.post(t, "/ui/lang", url.Values{"csrf": {csrf(t, inbox)}, "lang": {"ja"}, "next": {"/ui/map"}})
	if p.status != http.StatusSeeOther || p.location() != "/ui/map" {
		t.Fatalf("switching: %d %q", p.status, p.location())
	}
	if c := b.cookie(t, console.LangCookie); c == nil || c.Value != "ja" {
		t.Fatalf("language cookie %+v", c)
	}
	if p := b.get(t, "/ui/map"); !strings.Contains(p.body, `<html lang="ja">`) || !strings.Contains(p.body, "VPN マップ") {
		t.Errorf("after switching to Japanese, with an English browser, the map is not in Japanese")
	}
	// The switch is a form like any other.
	if p := b.post(t, "/ui/lang", url.Values{"lang": {"en"}}); p.status != http.StatusForbidden {
		t.Errorf("switching without the CSRF token: %d", p.status)
	}
}

// TestConsoleCanBeTurnedOff: with console.enabled off, /ui/ is the API's
// 404 like any unknown path.
func TestConsoleCanBeTurnedOff(t *testing.T) {
	s := newStack(t, false, func(c *config.Config) { c.Console.Enabled = false })
	b := s.browser(t)
	if p := b.get(t, "/ui/login"); p.status != http.StatusNotFound || !strings.Contains(p.body, "no such route") {
		t.Errorf("GET /ui/login with the console off: %d %s", p.status, p.body)
	}
}

// TestLiveIncidentPage: the incident page's stream sends the page's new
// state when the incident changes (a release approved and executed), and
// nothing before.
func TestLiveIncidentPage(t *testing.T) {
	s := newStack(t, false, nil)
	incident, release, _ := s.waitingRelease(t)
	b := s.browser(t)
	b.login(t, s.person(t, "view1", "viewer"))
	p := b.get(t, "/ui/incidents/"+incident)
	m := seqRE.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("the incident page has no live region:\n%s", p.body)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.srv.URL+m[1]+"?since="+m[2], nil)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("the live stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// The page is current: the first event comes only after the change.
	approver, err := client.New(s.srv.URL, s.person(t, "appr1", "approver"), client.WithHTTPClient(s.srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := approver.Approve(t.Context(), release, v1ApproveRequest()); err != nil {
		t.Fatal(err)
	}
	if err := s.d.Controller.ExecuteRun(t.Context(), release); err != nil {
		t.Fatal(err)
	}
	if r := s.run(t, release); r.State != store.RunSucceeded {
		t.Fatalf("release %s", r.State)
	}
	// Updates come while the release runs too (the posture is released
	// before the run has finished): read them until one shows the end,
	// or the stream ends with the last one shown.
	wants := []string{`data-posture="released"`, `data-run="` + release + `" data-state="succeeded"`, `data-kind="release"`}
	holdsAll := func(got string) bool {
		for _, want := range wants {
			if !strings.Contains(got, want) {
				return false
			}
		}
		return true
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<22)
	var data strings.Builder
	last := ""
	for sc.Scan() {
		line := sc.Text()
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			data.WriteString(d + "\n")
			continue
		}
		if line == "" && data.Len() > 0 {
			last = data.String()
			if holdsAll(last) {
				break
			}
			data.Reset()
		}
	}
	for _, want := range wants {
		if !strings.Contains(last, want) {
			t.Errorf("no update holds %s; the last one:\n%s", want, last)
		}
	}
}

// TestSignInWithSingleSignOn: an ID token from the configured issuer signs
// its person in with the role their groups map to; they act as
// themselves, and a store user of that name disabled ends their session.
func TestSignInWithSingleSignOn(t *testing.T) {
	iss := authtest.NewIssuer(t)
	const audience = "warden-console"
	s := newStack(t, false, func(c *config.Config) {
		c.Server.OIDC = config.OIDC{Issuer: iss.URL, Audience: audience, Roles: map[string]string{"ir-approvers": "approver"}}
	})
	_, release, _ := s.waitingRelease(t)
	b := s.browser(t)
	b.login(t, iss.Token(t, audience, map[string]any{"preferred_username": "Tanaka", "groups": []string{"ir-approvers"}}))
	// The session ends with the ID token (an hour), not after
	// console.session_ttl (12 hours).
	sum := sha256.Sum256([]byte(b.cookie(t, console.SessionCookie).Value))
	if se, err := s.d.Store.Session(t.Context(), hex.EncodeToString(sum[:])); err != nil || se.TokenID != auth.OIDCTokenID ||
		se.ExpiresAt.After(time.Now().Add(time.Hour+time.Minute)) {
		t.Errorf("the single sign-on session %+v (%v) outlives its ID token", se, err)
	}
	runPage := b.get(t, "/ui/runs/"+release)
	if !strings.Contains(runPage.body, `data-user="tanaka"`) || !strings.Contains(runPage.body, "(approver)") {
		t.Fatalf("signed in with an ID token, the page does not name tanaka, approver:\n%s", runPage.body)
	}
	p := b.post(t, "/ui/runs/"+release+"/approve", url.Values{"csrf": {csrf(t, runPage)}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("tanaka's approval: %d\n%s", p.status, p.body)
	}
	if r := s.run(t, release); r.ApprovedBy != "user:tanaka" {
		t.Errorf("approved by %q, want user:tanaka", r.ApprovedBy)
	}
	es := newAudit(t, s, auditCount(t, s)-1)
	if es[0].Action != "run.approved" || es[0].Token != auth.OIDCTokenID {
		t.Errorf("the approval's audit entry %+v, want the oidc credential", es[0])
	}
	s.person(t, "tanaka", "viewer")
	if _, err := s.admin.DisableUser(t.Context(), "tanaka"); err != nil {
		t.Fatal(err)
	}
	if p := b.get(t, "/ui/inbox"); p.status != http.StatusSeeOther {
		t.Errorf("after tanaka was disabled in the store: %d, want the sign-in page", p.status)
	}
}

// TestAStoreThatCannotSaySignsNobodyOut: when the store cannot be read,
// a page answers 503 and the session stays: a passing fault must not sign
// people out (nor let anyone in).
func TestAStoreThatCannotSaySignsNobodyOut(t *testing.T) {
	s := newStack(t, false, nil)
	b := s.browser(t)
	b.login(t, s.person(t, "resp1", "responder"))
	sum := sha256.Sum256([]byte(b.cookie(t, console.SessionCookie).Value))
	if err := s.d.Store.Close(); err != nil {
		t.Fatal(err)
	}
	p := b.get(t, "/ui/inbox")
	if p.status != http.StatusServiceUnavailable || p.header.Get("Retry-After") == "" {
		t.Errorf("a page while the store cannot be read: %d %q, want 503 with Retry-After", p.status, p.location())
	}
	if b.cookie(t, console.SessionCookie) == nil {
		t.Error("the session cookie was cleared")
	}
	st, err := store.Open(t.Context(), s.d.Config.Store.Path, "normal")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Session(t.Context(), hex.EncodeToString(sum[:])); err != nil {
		t.Errorf("the session after the fault: %v, want it kept", err)
	}
}
