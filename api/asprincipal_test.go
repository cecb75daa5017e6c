package api_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/auth"
)

// asPrincipal sends one request to the API in-process as p, with token in
// the Authorization header (which AsPrincipal must ignore).
func asPrincipal(t *testing.T, s *stack, p auth.Principal, method, path, body, token string) reply {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	s.d.API.AsPrincipal(p).ServeHTTP(rec, req)
	return reply{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// TestAsPrincipalIsTheAPIsOwnAuthorisation: a request the console makes
// for a signed-in person meets exactly what that person's bearer token
// meets: the role's 403 (with four eyes named and the refusal audited),
// the same approval under their name and token id; a bearer token sent
// along changes nothing, and a principal without a name is refused.
func TestAsPrincipalIsTheAPIsOwnAuthorisation(t *testing.T) {
	s := newFakeProviderStack(t, nil)
	const gw = "gw-osaka-a"
	incident := quarantine(t, s, gw).Results[0].IncidentID
	resp := s.addUser(t, "resp1", "responder")
	view := s.addUser(t, "view1", "viewer")
	appr := s.addUser(t, "appr1", "approver")
	respP := auth.Principal{Name: "resp1", Role: auth.Responder, TokenID: resp.TokenID}

	r := asPrincipal(t, s, respP, "POST", "/v1/runbooks/"+v1.ReleaseRunbook+"/runs",
		fmt.Sprintf(`{"gateway":%q,"incident":%q,"override_reason":"rebuilt from a clean image"}`, gw, incident), appr.Token)
	expectStatus(t, r, http.StatusAccepted)
	release := decodeReply[v1.Run](t, r)
	if release.RequestedBy != "user:resp1" || release.State != v1.RunAwaitingApproval {
		t.Fatalf("release asked as resp1 (with appr1's token in the header): requested by %q, %s", release.RequestedBy, release.State)
	}
	approve := "/v1/runs/" + release.ID + "/approve"

	// The viewer's forged approval: 403 naming the role, as over HTTP.
	e := expectError(t, asPrincipal(t, s, auth.Principal{Name: "view1", Role: auth.Viewer, TokenID: view.TokenID}, "POST", approve, `{}`, ""), http.StatusForbidden)
	if !strings.Contains(e.Error, "view1") || !strings.Contains(e.Error, "approver role") {
		t.Errorf("the viewer's refusal %q", e.Error)
	}
	// The requester: the role's refusal and four eyes, audited with the
	// token they signed in with.
	es := written(t, s, func() {
		e = expectError(t, asPrincipal(t, s, respP, "POST", approve, `{}`, ""), http.StatusForbidden)
	})
	if !strings.Contains(e.Error, "four eyes") || !strings.Contains(e.Error, "approver role") {
		t.Errorf("the requester's refusal %q, want the role and four eyes", e.Error)
	}
	if len(es) != 1 || es[0].Action != "run.approval_refused" || es[0].Actor != "user:resp1" || es[0].Token != resp.TokenID {
		t.Errorf("the refusal wrote %+v, want one run.approval_refused by user:resp1 with token %s", es, resp.TokenID)
	}
	// Nobody may be nobody.
	expectError(t, asPrincipal(t, s, auth.Principal{Role: auth.Admin}, "POST", approve, `{}`, ""), http.StatusUnauthorized)

	es = written(t, s, func() {
		expectStatus(t, asPrincipal(t, s, auth.Principal{Name: "appr1", Role: auth.Approver, TokenID: appr.TokenID}, "POST", approve, `{"comment":"checked"}`, ""), http.StatusOK)
	})
	if len(es) != 1 || es[0].Action != "run.approved" || es[0].Actor != "user:appr1" || es[0].Token != appr.TokenID {
		t.Errorf("the approval wrote %+v", es)
	}
	// Over the network, the same request without a token is still 401.
	if r := s.call(t, "GET", "/v1/runs", nil, withoutAuth()); r.status != http.StatusUnauthorized || !bytes.Contains(r.body, []byte("bearer")) {
		t.Errorf("GET /v1/runs without a token over HTTP: %s", r)
	}
}
