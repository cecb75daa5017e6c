package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/console"
	"github.com/warden-ir/warden/store"
)

// pagesOf are the console's pages (GET), with ids of things that exist.
func pagesOf(incident, run string) []string {
	return []string{"/ui/", "/ui/inbox", "/ui/incidents", "/ui/incidents/" + incident, "/ui/incidents/" + incident + "/report?lang=ja&format=html",
		"/ui/runs/" + run, "/ui/map", "/ui/release", "/ui/release?gateway=gw-osaka"}
}

// TestEveryPageNeedsASession: without a session every page redirects to
// the sign-in page, which comes back to it after sign-in; a form posted
// without a session changes nothing and goes to sign-in too; a live
// stream ends at once (204: the browser does not reconnect).
func TestEveryPageNeedsASession(t *testing.T) {
	s := newStack(t, false, nil)
	incident, release, resp := s.waitingRelease(t)
	b := s.browser(t)
	for _, path := range pagesOf(incident, release) {
		p := b.get(t, path)
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location(), "/ui/") {
			t.Errorf("GET %s without a session: %d %q, want a redirect", path, p.status, p.location())
			continue
		}
		if path == "/ui/" {
			continue // to the inbox, which redirects in turn
		}
		want := "/ui/login?next=" + url.QueryEscape(path)
		if p.location() != want {
			t.Errorf("GET %s without a session goes to %q, want %q", path, p.location(), want)
		}
	}
	for _, path := range []string{"/ui/runs/" + release + "/approve", "/ui/runs/" + release + "/cancel", "/ui/breaker/reset", "/ui/release", "/ui/logout"} {
		p := b.post(t, path, url.Values{"reason": {"forged"}, "gateway": {"gw-osaka"}})
		if p.status != http.StatusSeeOther || p.location() != "/ui/login" {
			t.Errorf("POST %s without a session: %d %q, want a redirect to /ui/login", path, p.status, p.location())
		}
	}
	if r := s.run(t, release); r.State != store.RunAwaitingApproval {
		t.Errorf("after forms without a session the release is %s", r.State)
	}
	for _, path := range []string{"/ui/incidents/live", "/ui/incidents/" + incident + "/live", "/ui/map/live"} {
		if p := b.get(t, path); p.status != http.StatusNoContent {
			t.Errorf("GET %s without a session: %d, want 204", path, p.status)
		}
	}
	// Signing in from a followed link comes back to it.
	next := "/ui/runs/" + release
	lp := b.get(t, "/ui/login?next="+url.QueryEscape(next))
	res := b.post(t, "/ui/login", url.Values{"csrf": {csrf(t, lp)}, "token": {resp}, "next": {next}})
	if res.status != http.StatusSeeOther || res.location() != next {
		t.Fatalf("signing in with next=%s: %d %q", next, res.status, res.location())
	}
	// Never to another site.
	lp = b.get(t, "/ui/login?next="+url.QueryEscape("//evil.example/ui/"))
	if strings.Contains(lp.body, "evil.example") {
		t.Errorf("the sign-in page keeps a next that leaves the console")
	}
}

// TestSecurityHeadersOnEveryAnswer: the strict policy on every page, the
// sign-in page, a 404 and a 405 included; the report keeps its own policy,
// which allows no script at all.
func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	s := newStack(t, false, nil)
	incident, release, _ := s.waitingRelease(t)
	appr := s.person(t, "appr1", "approver")
	anon := s.browser(t)
	b := s.browser(t)
	b.login(t, appr)
	check := func(who, path string, p page) {
		t.Helper()
		csp := p.header.Get("Content-Security-Policy")
		if strings.Contains(path, "/report") && p.status == http.StatusOK {
			if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
				t.Errorf("%s GET %s: report policy %q", who, path, csp)
			}
			return
		}
		if csp != console.CSP {
			t.Errorf("%s GET %s (%d): Content-Security-Policy %q, want %q", who, path, p.status, csp, console.CSP)
		}
		if p.header.Get("X-Content-Type-Options") != "nosniff" || p.header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s GET %s: missing nosniff or frame denial: %v", who, path, p.header)
		}
	}
	for _, path := range append(pagesOf(incident, release), "/ui/login", "/ui/nope", "/ui/static/console.js", "/ui/static/console.css") {
		check("signed in", path, b.get(t, path))
		check("anonymous", path, anon.get(t, path))
	}
	// A GET never stands in for a form.
	p := b.get(t, "/ui/runs/"+release+"/approve")
	if p.status != http.StatusMethodNotAllowed || !strings.Contains(p.header.Get("Allow"), "POST") {
		t.Errorf("GET of the approve form: %d (Allow %q), want 405", p.status, p.header.Get("Allow"))
	}
	check("signed in", "/ui/runs/x/approve", p)
	if r := s.run(t, release); r.State != store.RunAwaitingApproval {
		t.Errorf("after GETs the release is %s", r.State)
	}
	for _, inline := range []string{"<script>", "style=", " onclick=", "javascript:"} {
		for _, path := range pagesOf(incident, release) {
			if path == "/ui/" || strings.Contains(path, "/report") {
				continue
			}
			if body := b.get(t, path).body; strings.Contains(body, inline) {
				t.Errorf("GET %s holds %q: the policy forbids inline code", path, inline)
			}
		}
	}
}

// TestFormsNeedTheSessionsCSRFToken: a form without the token, with
// another session's token, or sent from another site changes nothing
// (403); with it, the approval goes through.
func TestFormsNeedTheSessionsCSRFToken(t *testing.T) {
	s := newStack(t, false, nil)
	_, release, _ := s.waitingRelease(t)
	appr := s.person(t, "appr1", "approver")
	b := s.browser(t)
	b.login(t, appr)
	runPage := b.get(t, "/ui/runs/"+release)
	token := csrf(t, runPage)
	other := s.browser(t)
	otherToken := csrf(t, other.login(t, s.person(t, "appr2", "approver")))
	if otherToken == token {
		t.Fatal("two sessions share a CSRF token")
	}
	approve := "/ui/runs/" + release + "/approve"
	for name, form := range map[string]url.Values{
		"no token":              {"comment": {"ok"}},
		"empty token":           {"csrf": {""}},
		"another session's one": {"csrf": {otherToken}},
	} {
		if p := b.post(t, approve, form); p.status != http.StatusForbidden || !strings.Contains(p.body, "CSRF") {
			t.Errorf("approve with %s: %d, want 403 naming CSRF", name, p.status)
		}
	}
	// The right token from another site.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.srv.URL+approve, strings.NewReader(url.Values{"csrf": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if p := b.do(t, req); p.status != http.StatusForbidden {
		t.Errorf("approve from another origin: %d, want 403", p.status)
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, s.srv.URL+approve, strings.NewReader(url.Values{"csrf": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if p := b.do(t, req); p.status != http.StatusForbidden {
		t.Errorf("approve marked cross-site: %d, want 403", p.status)
	}
	if r := s.run(t, release); r.State != store.RunAwaitingApproval || r.ApprovedBy != "" {
		t.Fatalf("after refused forms the release is %s, approved by %q", r.State, r.ApprovedBy)
	}
	p := b.post(t, approve, url.Values{"csrf": {token}, "comment": {"image hash checked"}})
	if p.status != http.StatusSeeOther || p.location() != "/ui/runs/"+release+"?done=approved" {
		t.Fatalf("approve with the token: %d %q\n%s", p.status, p.location(), p.body)
	}
	if r := s.run(t, release); r.State != store.RunPending || r.ApprovedBy != "user:appr1" {
		t.Fatalf("after the approval the release is %s, approved by %q", r.State, r.ApprovedBy)
	}
	if done := b.get(t, p.location()); !strings.Contains(done.body, "Approved. The run goes on.") {
		t.Errorf("the run's page after approving does not say so")
	}
}

// TestViewerSeesNoActionsAndAForgedApprovalIs403: a viewer's pages offer
// no approve or cancel; a forged approval (with the viewer's own valid
// CSRF token) reaches the API and is refused as over HTTP, audited.
func TestViewerSeesNoActionsAndAForgedApprovalIs403(t *testing.T) {
	s := newStack(t, false, nil)
	incident, release, _ := s.waitingRelease(t)
	b := s.browser(t)
	inbox := b.login(t, s.person(t, "view1", "viewer"))
	for _, p := range []page{inbox, b.get(t, "/ui/runs/"+release), b.get(t, "/ui/incidents/"+incident)} {
		if strings.Contains(p.body, "/approve") || strings.Contains(p.body, "/cancel") || strings.Contains(p.body, `data-action="approve"`) {
			t.Errorf("a viewer's page offers an action:\n%s", p.body)
		}
	}
	if !strings.Contains(inbox.body, release) {
		t.Errorf("the viewer's inbox does not show the waiting release %s", release)
	}
	if p := b.get(t, "/ui/release?gateway=gw-osaka"); strings.Contains(p.body, `action="/ui/release"`) && strings.Contains(p.body, "method=\"post\" action=\"/ui/release\"") {
		t.Errorf("a viewer's release page offers the request form")
	}
	before := auditCount(t, s)
	p := b.post(t, "/ui/runs/"+release+"/approve", url.Values{"csrf": {csrf(t, inbox)}})
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "view1") || !strings.Contains(p.body, "approver role") {
		t.Fatalf("the viewer's forged approval: %d\n%s", p.status, p.body)
	}
	if r := s.run(t, release); r.State != store.RunAwaitingApproval || r.ApprovedBy != "" {
		t.Fatalf("after the viewer's forged approval the release is %s, approved by %q", r.State, r.ApprovedBy)
	}
	es := newAudit(t, s, before)
	if len(es) != 1 || es[0].Action != "run.approval_refused" || es[0].Actor != "user:view1" || !strings.HasPrefix(es[0].Token, "tk_") {
		t.Errorf("the forged approval wrote %+v, want one refusal by user:view1 with their token", es)
	}
}

// TestTheRequesterIsRefusedWithTheReasonShown: the responder who asked for
// the release sees the approve button; the controller refuses them, and
// the page says why (their role, and four eyes).
func TestTheRequesterIsRefusedWithTheReasonShown(t *testing.T) {
	s := newStack(t, false, nil)
	_, release, resp := s.waitingRelease(t)
	b := s.browser(t)
	b.login(t, resp)
	runPage := b.get(t, "/ui/runs/"+release)
	if !strings.Contains(runPage.body, `data-action="approve"`) {
		t.Fatalf("the responder's run page has no approve button:\n%s", runPage.body)
	}
	p := b.post(t, "/ui/runs/"+release+"/approve", url.Values{"csrf": {csrf(t, runPage)}})
	if p.status != http.StatusForbidden {
		t.Fatalf("the requester's approval: %d, want 403", p.status)
	}
	for _, want := range []string{`id="refusal"`, "four eyes", "resp1", "approver role"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the refusal page does not say %q:\n%s", want, p.body)
		}
	}
	if r := s.run(t, release); r.State != store.RunAwaitingApproval {
		t.Errorf("after the refusal the release is %s", r.State)
	}
}

func auditCount(t *testing.T, s *stack) int {
	t.Helper()
	es, err := audit.List(t.Context(), s.d.Store.DB(), "")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func newAudit(t *testing.T, s *stack, from int) []audit.Entry {
	t.Helper()
	es, err := audit.List(t.Context(), s.d.Store.DB(), "")
	if err != nil {
		t.Fatal(err)
	}
	return es[from:]
}
