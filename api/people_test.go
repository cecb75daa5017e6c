package api_test

// People, roles and four eyes (issue 13) through real HTTP against the
// daemon stack: every caller has a token of their own, made with POST
// /v1/users by the shared admin token or by an admin user.

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/actions/actionstest"
	"github.com/warden-ir/warden/api"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/auth/authtest"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/internal/testsupport"
	"github.com/warden-ir/warden/store"
)

// routePermissions is what issue 13 says each route needs. The server's
// Route.Permission must agree, route by route, so that a route moved to
// another permission is a decision made here too.
var routePermissions = map[string]auth.Permission{
	"GET /v1/gateways/{id}/sensors":     auth.Read,
	"POST /v1/intake/stix":              auth.Submit,
	"POST /v1/intake/misp":              auth.Submit,
	"POST /.well-known/openc2":          auth.Respond,
	"GET /v1/blocks":                    auth.Read,
	"POST /v1/blocks":                   auth.Respond,
	"GET /v1/blocks/{number}":           auth.Read,
	"POST /v1/blocks/{number}/approve":  auth.Approve,
	"POST /v1/blocks/{number}/refuse":   auth.Approve,
	"POST /v1/blocks/{number}/withdraw": auth.Respond,
	// Public: the probes, the metrics and this document.
	"GET /healthz": 0, "GET /readyz": 0, "GET /metrics": 0, "GET /v1/openapi.yaml": 0,

	"POST /v1/indicators":          auth.Submit,
	"POST /v1/intake/alertmanager": auth.Submit,
	"POST /v1/intake/suricata":     auth.Submit,
	"POST /v1/intake/zeek":         auth.Submit,
	"POST /v1/intake/wazuh":        auth.Submit,
	"POST /v1/intake/falco":        auth.Submit,

	"GET /v1/whoami":                  auth.Read,
	"GET /v1/status":                  auth.Read,
	"GET /v1/incidents":               auth.Read,
	"GET /v1/incidents/{id}":          auth.Read,
	"GET /v1/incidents/{id}/report":   auth.Read,
	"GET /v1/incidents/{id}/evidence": auth.Read,
	"GET /v1/runs":                    auth.Read,
	"GET /v1/runs/{id}":               auth.Read,
	"GET /v1/gateways":                auth.Read,
	"GET /v1/gateways/{id}":           auth.Read,
	"GET /v1/audit/verify":            auth.Read,
	"GET /v1/patch/waves/{id}":        auth.Read,

	"POST /v1/plan":                           auth.Respond,
	"POST /v1/runbooks/{name}/runs":           auth.Respond,
	"POST /v1/drift/check":                    auth.Respond,
	"POST /v1/patch/waves":                    auth.Respond,
	"GET /v1/evidence/{id}":                   auth.Respond,
	"POST /v1/incidents/{id}/evidence/export": auth.Respond,
	"POST /v1/incidents/{id}/investigations":  auth.Respond,
	"POST /v1/gateways/{id}/captures":         auth.Respond,

	"POST /v1/runs/{id}/approve":       auth.Approve,
	"POST /v1/runs/{id}/cancel":        auth.Approve,
	"POST /v1/indicators/{id}/resolve": auth.Approve,

	"POST /v1/breaker/reset":        auth.Administer,
	"GET /v1/users":                 auth.Administer,
	"POST /v1/users":                auth.Administer,
	"POST /v1/users/{name}/disable": auth.Administer,
	"POST /v1/users/{name}/token":   auth.Administer,
}

func TestRoutePermissions(t *testing.T) {
	s := newStack(t, nil, nil)
	seen := map[string]bool{}
	for _, r := range s.d.API.Routes() {
		key := routeKey(r.Method, r.Path)
		seen[key] = true
		want, ok := routePermissions[key]
		if !ok {
			t.Errorf("%s is served but this test does not say what it needs", key)
			continue
		}
		if r.Permission != want {
			t.Errorf("%s needs %q, want %q", key, r.Permission, want)
		}
	}
	for key := range routePermissions {
		if !seen[key] {
			t.Errorf("%s is not served", key)
		}
	}
}

// routeRequest is a request to r with its path parameters filled with
// "x"; a POST carries a body the route could take.
func routeRequest(t *testing.T, r api.Route) (string, []byte) {
	t.Helper()
	path := pathParam.ReplaceAllString(r.Path, "x")
	if r.Method != http.MethodPost {
		return path, nil
	}
	switch r.Path {
	case "/v1/intake/alertmanager":
		return path, readFixture(t, "am_doc_v4.json")
	case "/v1/intake/suricata":
		return path, readFixture(t, "suricata_eve_ndjson.json")
	case "/v1/intake/zeek":
		return path, readFixture(t, "zeek_notice_bruteforce.log")
	case "/v1/intake/wazuh":
		return path, readFixture(t, "wazuh_integrator_5720.json")
	case "/v1/intake/falco":
		return path, readFixture(t, "falco_outbound.json")
	case "/v1/intake/stix":
		return path, readFixture(t, "stix_c2_ip.json")
	case "/v1/intake/misp":
		return path, readFixture(t, "misp_network_event.json")
	case "/v1/indicators", "/v1/plan":
		return path, []byte(indicatorJSON("c2_beacon", "gw-hq", "high"))
	}
	return path, []byte(`{}`)
}

// TestRolesOverEveryRoute: for each role, every authenticated route
// answers 403, naming the role needed, exactly when the role does not
// grant what the route needs; otherwise it is not refused for the caller
// (it may still be a 4xx about the request).
func TestRolesOverEveryRoute(t *testing.T) {
	s := newStack(t, nil, nil)
	for _, role := range auth.Roles {
		caller := s.user(t, "caller-"+string(role), string(role))
		for _, r := range s.d.API.Routes() {
			if r.Permission == 0 {
				continue
			}
			path, body := routeRequest(t, r)
			t.Run(string(role)+" "+routeKey(r.Method, r.Path), func(t *testing.T) {
				got := caller.call(t, r.Method, path, body)
				if role.Can(r.Permission) {
					if got.status == http.StatusForbidden || got.status == http.StatusUnauthorized || got.status >= 500 {
						t.Fatalf("a %s, who may %s: %s", role, r.Permission, got)
					}
					return
				}
				e := expectError(t, got, http.StatusForbidden)
				least := string(auth.Least(r.Permission))
				for _, want := range []string{"caller-" + string(role), "role " + string(role), least + " role"} {
					if !strings.Contains(e.Error, want) {
						t.Errorf("the 403 %q does not name %q", e.Error, want)
					}
				}
			})
		}
	}
}

// TestIntakeRoleOnlySubmits: a detector's token posts indicators and
// Alertmanager messages, and every other authenticated route refuses it.
func TestIntakeRoleOnlySubmits(t *testing.T) {
	s := newStack(t, nil, nil)
	ids := s.user(t, "ids1", "intake")
	submitted := 0
	for _, r := range s.d.API.Routes() {
		if r.Permission == 0 {
			continue
		}
		path, body := routeRequest(t, r)
		got := ids.call(t, r.Method, path, body)
		switch routeKey(r.Method, r.Path) {
		case "POST /v1/indicators", "POST /v1/intake/alertmanager", "POST /v1/intake/suricata", "POST /v1/intake/zeek",
			"POST /v1/intake/wazuh", "POST /v1/intake/falco", "POST /v1/intake/stix", "POST /v1/intake/misp":
			expectStatus(t, got, http.StatusAccepted)
			submitted++
		default:
			if e := expectError(t, got, http.StatusForbidden); !strings.Contains(e.Error, "role intake") {
				t.Errorf("%s %s: %q does not name the caller's role", r.Method, r.Path, e.Error)
			}
		}
	}
	if submitted != 8 {
		t.Fatalf("the detector submitted through %d routes, want 8", submitted)
	}
	// What it sent was taken as its own: the runs it started name it as
	// their requester.
	runs, err := s.d.Store.Runs(t.Context(), store.RunFilter{})
	if err != nil || len(runs) == 0 {
		t.Fatalf("the detector's alerts started %d runs (%v)", len(runs), err)
	}
	for _, run := range runs {
		if full, err := s.d.Store.Run(t.Context(), run.ID); err != nil || full.RequestedBy != "user:ids1" {
			t.Errorf("run %s requested by %q (%v), want user:ids1", run.ID, full.RequestedBy, err)
		}
	}
}

// TestByMustNameTheCaller: "by" is deprecated; absent, or naming the
// caller ("resp1" or "user:resp1"), it is accepted; naming anyone else it
// is a 400 on field by, and nothing is written.
func TestByMustNameTheCaller(t *testing.T) {
	s := newStack(t, nil, nil)
	resp := s.user(t, "resp1", "responder")
	admin := s.user(t, "adm1", "admin")
	const dry = `"gateway":"gw-hq","dry_run":true`
	for name, tc := range map[string]struct {
		as   *stack
		path string
		body string
		want int
	}{
		"runbook, no by":          {resp, "/v1/runbooks/notify-only/runs", `{` + dry + `}`, http.StatusOK},
		"runbook, own name":       {resp, "/v1/runbooks/notify-only/runs", `{` + dry + `,"by":"resp1"}`, http.StatusOK},
		"runbook, own actor":      {resp, "/v1/runbooks/notify-only/runs", `{` + dry + `,"by":"user:resp1"}`, http.StatusOK},
		"runbook, own padded":     {resp, "/v1/runbooks/notify-only/runs", `{` + dry + `,"by":" resp1 "}`, http.StatusOK},
		"runbook, someone else":   {resp, "/v1/runbooks/notify-only/runs", `{` + dry + `,"by":"appr1"}`, http.StatusBadRequest},
		"runbook, another actor":  {resp, "/v1/runbooks/notify-only/runs", `{` + dry + `,"by":"user:appr1"}`, http.StatusBadRequest},
		"runbook, the old prefix": {resp, "/v1/runbooks/notify-only/runs", `{` + dry + `,"by":"api:resp1"}`, http.StatusBadRequest},
		"runbook, a prefix":       {resp, "/v1/runbooks/notify-only/runs", `{` + dry + `,"by":"resp"}`, http.StatusBadRequest},
		"drift":                   {resp, "/v1/drift/check", `{"gateway":"all","by":"appr1"}`, http.StatusBadRequest},
		"patch":                   {resp, "/v1/patch/waves", `{"gateways":["gw-hq"],"packages":"x","by":"appr1"}`, http.StatusBadRequest},
		"approve":                 {admin, "/v1/runs/run-x/approve", `{"by":"appr1"}`, http.StatusBadRequest},
		"cancel":                  {admin, "/v1/runs/run-x/cancel", `{"by":"appr1"}`, http.StatusBadRequest},
		"resolve":                 {admin, "/v1/indicators/ind-x/resolve", `{"by":"appr1","reason":"x"}`, http.StatusBadRequest},
		"breaker":                 {admin, "/v1/breaker/reset", `{"by":"appr1","reason":"x"}`, http.StatusBadRequest},
	} {
		t.Run(name, func(t *testing.T) {
			before := auditLen(t, s)
			r := tc.as.call(t, "POST", tc.path, []byte(tc.body))
			if tc.want == http.StatusBadRequest {
				if e := expectError(t, r, tc.want); e.Field != "by" || !strings.Contains(e.Error, "appr") && !strings.Contains(e.Error, "resp") {
					t.Errorf("got %+v, want field by naming what was sent", e)
				}
				if n := auditLen(t, s); n != before {
					t.Errorf("a refused by wrote %d audit entries", n-before)
				}
				return
			}
			expectStatus(t, r, tc.want)
		})
	}
	if runs, _ := s.d.Store.Runs(t.Context(), store.RunFilter{}); len(runs) != 0 {
		t.Errorf("dry runs and refused requests created %d runs", len(runs))
	}
}

func auditEntries(t *testing.T, s *stack) []audit.Entry {
	t.Helper()
	es, err := audit.List(t.Context(), s.d.Store.DB(), "")
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func auditLen(t *testing.T, s *stack) int { t.Helper(); return len(auditEntries(t, s)) }

// written runs fn and returns the audit entries it wrote.
func written(t *testing.T, s *stack, fn func()) []audit.Entry {
	t.Helper()
	n := auditLen(t, s)
	fn()
	return auditEntries(t, s)[n:]
}

// wantActedAs fails the test unless entries are at least one, every one
// naming a person names actor, and every one of actor carries tokenID;
// none may name impostor anywhere.
func wantActedAs(t *testing.T, what string, entries []audit.Entry, actor, tokenID, impostor string) {
	t.Helper()
	mine := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Actor, auth.ActorPrefix) && e.Actor != actor {
			t.Errorf("%s: entry %d (%s) names %s, want %s", what, e.Seq, e.Action, e.Actor, actor)
		}
		if e.Actor == actor {
			mine++
			if e.Token != tokenID {
				t.Errorf("%s: entry %d (%s) of %s carries token %q, want %q", what, e.Seq, e.Action, actor, e.Token, tokenID)
			}
		}
		if strings.Contains(string(e.Data), impostor) || strings.Contains(e.Actor, impostor) {
			t.Errorf("%s: entry %d (%s) names %s: %s", what, e.Seq, e.Action, impostor, e.Data)
		}
	}
	if mine == 0 {
		t.Errorf("%s wrote no audit entry of %s: %+v", what, actor, entries)
	}
}

// TestBodyCannotChangeTheActor: what a request writes (the run and its
// audit entries, an approval, a custody event) names the caller and the
// token they used, whatever the body says.
func TestBodyCannotChangeTheActor(t *testing.T) {
	s := newStack(t, nil, nil)
	resp := s.addUser(t, "resp1", "responder")
	appr := s.addUser(t, "appr1", "approver")
	asResp, asAppr := s.as(resp.Token), s.as(appr.Token)

	// A body naming someone else, or trying a field of its own, is
	// refused before anything is written.
	for _, body := range []string{`{"gateway":"gw-hq","by":"appr1"}`, `{"gateway":"gw-hq","actor":"user:appr1"}`, `{"gateway":"gw-hq","requested_by":"user:appr1"}`} {
		if es := written(t, s, func() {
			expectError(t, asResp.call(t, "POST", "/v1/runbooks/notify-only/runs", []byte(body)), http.StatusBadRequest)
		}); len(es) != 0 {
			t.Errorf("%s: refused, yet wrote %+v", body, es)
		}
	}

	// Starting a runbook.
	var run store.Run
	es := written(t, s, func() {
		r := asResp.call(t, "POST", "/v1/runbooks/notify-only/runs", []byte(`{"gateway":"gw-hq","by":"resp1"}`))
		expectStatus(t, r, http.StatusAccepted)
		run = decodeReply[store.Run](t, r)
	})
	wantActedAs(t, "starting a runbook", es, "user:resp1", resp.TokenID, "appr1")
	if run.RequestedBy != "user:resp1" {
		t.Errorf("the run was requested by %q", run.RequestedBy)
	}

	// Approving: resp1 sends the indicator (and so asks for its run),
	// appr1 approves it.
	var res intakeReply
	es = written(t, s, func() {
		r := asResp.call(t, "POST", "/v1/indicators", []byte(indicatorJSON("config_tamper", "gw-factory", "high")))
		expectStatus(t, r, http.StatusAccepted)
		res = decodeReply[intakeReply](t, r)
	})
	wantActedAs(t, "sending an indicator", es, "user:resp1", resp.TokenID, "appr1")
	waiting := res.Results[0]
	if waiting.RunState != store.RunAwaitingApproval {
		t.Fatalf("config_tamper: %+v, want a run awaiting approval", waiting)
	}
	es = written(t, s, func() {
		r := asAppr.call(t, "POST", "/v1/runs/"+waiting.RunID+"/approve", []byte(`{"by":"user:appr1","comment":"seen"}`))
		expectStatus(t, r, http.StatusOK)
		if got := decodeReply[v1.Run](t, r); got.ApprovedBy != "user:appr1" || got.RequestedBy != "user:resp1" {
			t.Errorf("approved run: approved by %q, requested by %q", got.ApprovedBy, got.RequestedBy)
		}
	})
	wantActedAs(t, "approving", es, "user:appr1", appr.TokenID, "resp1")

	// Reading evidence is a custody event of the reader.
	rec, err := s.d.Ledger.Add(t.Context(), evidence.Item{Incident: waiting.IncidentID, Gateway: "gw-factory", Name: "running-config.txt",
		Kind: evidence.KindConfig, CollectedBy: "agent:gw-factory", Content: []byte("interface wg0\n")})
	if err != nil {
		t.Fatal(err)
	}
	var shown v1.EvidenceDetail
	es = written(t, s, func() {
		r := asResp.call(t, "GET", "/v1/evidence/"+rec.ID, nil)
		expectStatus(t, r, http.StatusOK)
		shown = decodeReply[v1.EvidenceDetail](t, r)
	})
	wantActedAs(t, "reading evidence", es, "user:resp1", resp.TokenID, "appr1")
	if n := len(shown.Custody); n == 0 || shown.Custody[n-1].Actor != "user:resp1" || shown.Custody[n-1].Action != evidence.CustodyAccessed {
		t.Errorf("the chain of custody ends with %+v, want resp1's access", shown.Custody)
	}
	_, chain, err := s.d.Ledger.Show(t.Context(), rec.ID, "controller")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(chain, func(c evidence.Custody) bool { return c.Actor == "user:resp1" && c.Action == evidence.CustodyAccessed }) {
		t.Errorf("the ledger's chain of custody does not hold resp1's access: %+v", chain)
	}
	es = written(t, s, func() {
		r := asResp.call(t, "POST", "/v1/incidents/"+waiting.IncidentID+"/evidence/export", nil)
		expectStatus(t, r, http.StatusOK)
		if ct := r.header.Get("Content-Type"); ct != "application/gzip" {
			t.Errorf("export Content-Type %q", ct)
		}
	})
	wantActedAs(t, "exporting evidence", es, "user:resp1", resp.TokenID, "appr1")

	// Listing an incident's evidence; an incident without any lists none
	// (an empty list, not null), and an unknown one is a 404.
	r := asResp.call(t, "GET", "/v1/incidents/"+waiting.IncidentID+"/evidence", nil)
	expectStatus(t, r, http.StatusOK)
	if got := decodeReply[v1.EvidenceList](t, r); len(got.Evidence) != 1 || got.Evidence[0].ID != rec.ID {
		t.Errorf("evidence of the incident: %s", r)
	}
	if err := s.d.Store.Tx(t.Context(), func(tx store.Tx) error {
		return tx.UpsertIncident(t.Context(), store.Incident{ID: "inc-empty", Gateway: "gw-hq", Site: "hq", OpenedAt: time.Now(), UpdatedAt: time.Now(),
			Status: store.IncidentOpen, Severity: "low", Title: "nothing filed"})
	}); err != nil {
		t.Fatal(err)
	}
	r = asResp.call(t, "GET", "/v1/incidents/inc-empty/evidence", nil)
	expectStatus(t, r, http.StatusOK)
	if !bytes.Contains(r.body, []byte(`"evidence": []`)) {
		t.Errorf("evidence of an incident without any: %s", r)
	}
	expectError(t, asResp.call(t, "GET", "/v1/incidents/inc-nope/evidence", nil), http.StatusNotFound)

	if v, err := audit.Verify(t.Context(), s.d.Store.DB()); err != nil || v.Entries == 0 {
		t.Errorf("the audit chain with tokens does not verify: %+v %v", v, err)
	}
}

// newFakeProviderStack is newStack whose catalogue acts on nothing but
// succeeds, holding the writer lease so that runs can be executed.
func newFakeProviderStack(t *testing.T, mutate func(*config.Config)) *stack {
	t.Helper()
	fakes := actionstest.All(actions.NameCaptureVolatile, actions.NameSnapshot, actions.NameIsolate, actions.NameRelease,
		actions.NameRevokePeer, actions.NameRotateCredentials, actions.NameNotify)
	s := newStackWith(t, mutate, daemon.Options{ExtraActions: fakes})
	if err := s.d.AcquireWriter(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

// quarantine has a detector report a C2 beacon about gw and runs the
// containment to the end.
func quarantine(t *testing.T, s *stack, gw string) intakeReply {
	t.Helper()
	r := s.user(t, "ids-"+gw, "intake").call(t, "POST", "/v1/indicators", []byte(indicatorJSON("c2_beacon", gw, "critical", "198.51.100.66")))
	expectStatus(t, r, http.StatusAccepted)
	res := decodeReply[intakeReply](t, r)
	if len(res.Results) != 1 || res.Results[0].RunID == "" || res.Results[0].RunState != store.RunRunning {
		t.Fatalf("the beacon: %s, want a containment started", r)
	}
	if err := s.d.Controller.ExecuteRun(t.Context(), res.Results[0].RunID); err != nil {
		t.Fatal(err)
	}
	gwr := decodeReply[v1.Gateway](t, s.call(t, "GET", "/v1/gateways/"+gw, nil))
	if gwr.Posture.Desired != v1.PostureQuarantined {
		t.Fatalf("%s after containment: %+v", gw, gwr.Posture)
	}
	return res
}

// TestFourEyesOverHTTP is issue 13's acceptance at the API: resp1
// requests a release with a break-glass override; resp1 approving it is
// refused naming four eyes, so is a viewer, and an approver's approval
// goes through; the run names all three.
func TestFourEyesOverHTTP(t *testing.T) {
	s := newFakeProviderStack(t, nil)
	const gw = "gw-osaka-a"
	incident := quarantine(t, s, gw).Results[0].IncidentID
	resp, view, appr := s.user(t, "resp1", "responder"), s.user(t, "view1", "viewer"), s.user(t, "appr1", "approver")

	r := resp.call(t, "POST", "/v1/runbooks/"+v1.ReleaseRunbook+"/runs", []byte(fmt.Sprintf(`{"gateway":%q,"incident":%q,"override_reason":"rebuilt from a clean image"}`, gw, incident)))
	expectStatus(t, r, http.StatusAccepted)
	release := decodeReply[v1.Run](t, r)
	if release.State != v1.RunAwaitingApproval || release.RequestedBy != "user:resp1" || release.OverriddenBy != "user:resp1" {
		t.Fatalf("release: %s requested by %q overridden by %q", release.State, release.RequestedBy, release.OverriddenBy)
	}
	p, err := release.DecodePlan()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(p.Gates, func(g v1.Gate) bool {
		return g.Name == "four-eyes" && !g.Passed && strings.Contains(g.Detail, "user:resp1")
	}) {
		t.Errorf("the release's gates do not ask for a second person: %+v", p.Gates)
	}
	approve := "/v1/runs/" + release.ID + "/approve"

	e := expectError(t, resp.call(t, "POST", approve, []byte(`{"comment":"I checked it myself"}`)), http.StatusForbidden)
	for _, want := range []string{"four eyes", "user:resp1", "requested it and overrode a gate on it", "approver"} {
		if !strings.Contains(e.Error, want) {
			t.Errorf("resp1's refusal %q does not say %q", e.Error, want)
		}
	}
	e = expectError(t, view.call(t, "POST", approve, []byte(`{}`)), http.StatusForbidden)
	if !strings.Contains(e.Error, "view1") || !strings.Contains(e.Error, "approver role") || strings.Contains(e.Error, "four eyes") {
		t.Errorf("view1's refusal %q: want the role named, and no four eyes (view1 asked for nothing)", e.Error)
	}
	if got := decodeReply[v1.Run](t, s.call(t, "GET", "/v1/runs/"+release.ID, nil)); got.State != v1.RunAwaitingApproval || got.ApprovedBy != "" {
		t.Fatalf("after two refusals the release is %s, approved by %q", got.State, got.ApprovedBy)
	}

	r = appr.call(t, "POST", approve, []byte(`{"comment":"image hash checked"}`))
	expectStatus(t, r, http.StatusOK)
	got := decodeReply[v1.Run](t, s.call(t, "GET", "/v1/runs/"+release.ID, nil))
	if got.RequestedBy != "user:resp1" || got.OverriddenBy != "user:resp1" || got.ApprovedBy != "user:appr1" || got.State != v1.RunPending {
		t.Errorf("the release names requester %q, overrider %q, approver %q (%s)", got.RequestedBy, got.OverriddenBy, got.ApprovedBy, got.State)
	}
	if err := s.d.Controller.ExecuteRun(t.Context(), release.ID); err != nil {
		t.Fatal(err)
	}
	if got := decodeReply[v1.Run](t, s.call(t, "GET", "/v1/runs/"+release.ID, nil)); got.State != v1.RunSucceeded {
		t.Errorf("the approved release: %s %s", got.State, got.Error)
	}
}

// TestFourEyesForApprovers: an approver who asked for a run is refused by
// the controller, which audits the refusal; a second approver may approve.
func TestFourEyesForApprovers(t *testing.T) {
	s := newFakeProviderStack(t, nil)
	incident := quarantine(t, s, "gw-factory").Results[0].IncidentID
	a1, a2 := s.addUser(t, "appr1", "approver"), s.addUser(t, "appr2", "approver")
	r := s.as(a1.Token).call(t, "POST", "/v1/runbooks/"+v1.ReleaseRunbook+"/runs", []byte(`{"gateway":"gw-factory","incident":"`+incident+`","override_reason":"rebuilt"}`))
	expectStatus(t, r, http.StatusAccepted)
	run := decodeReply[v1.Run](t, r)
	es := written(t, s, func() {
		e := expectError(t, s.as(a1.Token).call(t, "POST", "/v1/runs/"+run.ID+"/approve", nil), http.StatusForbidden)
		if !strings.Contains(e.Error, "four eyes") {
			t.Errorf("appr1's own approval: %q", e.Error)
		}
	})
	if len(es) != 1 || es[0].Action != "run.approval_refused" || es[0].Actor != "user:appr1" || es[0].Token != a1.TokenID || es[0].Run != run.ID {
		t.Errorf("the refusal wrote %+v, want one run.approval_refused of appr1 with their token", es)
	}
	expectStatus(t, s.as(a2.Token).call(t, "POST", "/v1/runs/"+run.ID+"/approve", nil), http.StatusOK)
}

// TestTwoPersonOff: with guards.two_person false one person may request
// and approve, and whoami says so.
func TestTwoPersonOff(t *testing.T) {
	off := false
	s := newFakeProviderStack(t, func(c *config.Config) { c.Guards.TwoPerson = &off })
	incident := quarantine(t, s, "gw-hq").Results[0].IncidentID
	a := s.user(t, "appr1", "approver")
	if me := decodeReply[v1.WhoAmI](t, a.call(t, "GET", "/v1/whoami", nil)); me.TwoPerson {
		t.Errorf("whoami: %+v, want two_person false", me)
	}
	r := a.call(t, "POST", "/v1/runbooks/"+v1.ReleaseRunbook+"/runs", []byte(`{"gateway":"gw-hq","incident":"`+incident+`","override_reason":"rebuilt"}`))
	expectStatus(t, r, http.StatusAccepted)
	run := decodeReply[v1.Run](t, r)
	if run.State != v1.RunAwaitingApproval {
		t.Fatalf("release: %s, want it awaiting approval (release always does)", run.State)
	}
	expectStatus(t, a.call(t, "POST", "/v1/runs/"+run.ID+"/approve", nil), http.StatusOK)
}

// TestUsersRoutes: an admin adds, lists, disables and rotates; each change
// is audited with the admin as actor, a token is shown once and never
// listed, and what a change does to a token is true at once.
func TestUsersRoutes(t *testing.T) {
	s := newStack(t, nil, nil)
	adm := s.addUser(t, "adm1", "admin")
	admin := s.as(adm.Token)
	var issued []string // every token issued, which no listing may hold
	issued = append(issued, adm.Token)

	before := auditLen(t, s)
	r := admin.call(t, "POST", "/v1/users", []byte(`{"name":"resp1","role":"responder","display_name":"Responder One"}`))
	expectStatus(t, r, http.StatusCreated)
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	resp := decodeReply[v1.IssuedToken](t, r)
	issued = append(issued, resp.Token)
	if !strings.HasPrefix(resp.Token, auth.TokenPrefix) || len(resp.Token) < 40 || !strings.HasPrefix(resp.TokenID, "tk_") ||
		resp.User.Name != "resp1" || resp.User.Role != "responder" || resp.User.DisplayName != "Responder One" || resp.User.CreatedBy != "user:adm1" ||
		!slices.Equal(resp.User.Tokens, []string{resp.TokenID}) {
		t.Fatalf("added: %s", r)
	}
	me := decodeReply[v1.WhoAmI](t, s.as(resp.Token).call(t, "GET", "/v1/whoami", nil))
	if me.User != "resp1" || me.Role != "responder" || me.TokenID != resp.TokenID || me.Actor != "user:resp1" || !me.TwoPerson {
		t.Errorf("whoami with the new token: %+v", me)
	}

	for name, tc := range map[string]struct {
		body, field string
		want        int
	}{
		"no name":         {`{"role":"viewer"}`, "name", http.StatusBadRequest},
		"blank name":      {`{"name":"  ","role":"viewer"}`, "name", http.StatusBadRequest},
		"upper case":      {`{"name":"Resp2","role":"viewer"}`, "name", http.StatusBadRequest},
		"a space":         {`{"name":"resp 2","role":"viewer"}`, "name", http.StatusBadRequest},
		"a digit first":   {`{"name":"1resp","role":"viewer"}`, "name", http.StatusBadRequest},
		"too long":        {`{"name":"` + strings.Repeat("a", 64) + `","role":"viewer"}`, "name", http.StatusBadRequest},
		"reserved":        {`{"name":"controller","role":"viewer"}`, "name", http.StatusBadRequest},
		"no role":         {`{"name":"resp2"}`, "role", http.StatusBadRequest},
		"unknown role":    {`{"name":"resp2","role":"root"}`, "role", http.StatusBadRequest},
		"unknown field":   {`{"name":"resp2","role":"viewer","token":"wdn_mine"}`, "", http.StatusBadRequest},
		"duplicate":       {`{"name":"resp1","role":"viewer"}`, "", http.StatusConflict},
		"duplicate admin": {`{"name":"adm1","role":"admin"}`, "", http.StatusConflict},
	} {
		t.Run(name, func(t *testing.T) {
			e := expectError(t, admin.call(t, "POST", "/v1/users", []byte(tc.body)), tc.want)
			if e.Field != tc.field {
				t.Errorf("field %q, want %q (%s)", e.Field, tc.field, e.Error)
			}
		})
	}
	wantNewAudit(t, s, before, "user.added", "user:adm1", adm.TokenID, "resp1")

	// Listing shows token ids, never a token or its hash.
	r = admin.call(t, "GET", "/v1/users", nil)
	expectStatus(t, r, http.StatusOK)
	list := decodeReply[v1.UserList](t, r)
	var names []string
	for _, u := range list.Users {
		names = append(names, u.Name)
	}
	if !slices.Equal(names, []string{"adm1", "resp1"}) {
		t.Errorf("users %v", names)
	}

	// Rotating: the old token stops at once, the new one works.
	before = auditLen(t, s)
	r = admin.call(t, "POST", "/v1/users/resp1/token", nil)
	expectStatus(t, r, http.StatusOK)
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	rotated := decodeReply[v1.IssuedToken](t, r)
	issued = append(issued, rotated.Token)
	if rotated.Token == resp.Token || rotated.TokenID == resp.TokenID || !slices.Equal(rotated.User.Tokens, []string{rotated.TokenID}) {
		t.Errorf("rotated: %s", r)
	}
	expectError(t, s.as(resp.Token).call(t, "GET", "/v1/whoami", nil), http.StatusUnauthorized)
	expectStatus(t, s.as(rotated.Token).call(t, "GET", "/v1/whoami", nil), http.StatusOK)
	wantNewAudit(t, s, before, "user.token_rotated", "user:adm1", adm.TokenID, "resp1")
	expectError(t, admin.call(t, "POST", "/v1/users/nobody/token", nil), http.StatusNotFound)

	// Disabling: every token of the user stops at once.
	before = auditLen(t, s)
	r = admin.call(t, "POST", "/v1/users/resp1/disable", []byte(`{}`))
	expectStatus(t, r, http.StatusOK)
	if u := decodeReply[v1.User](t, r); !u.Disabled || u.Name != "resp1" {
		t.Errorf("disabled: %s", r)
	}
	e := expectError(t, s.as(rotated.Token).call(t, "GET", "/v1/whoami", nil), http.StatusUnauthorized)
	if !strings.Contains(e.Error, "disabled") {
		t.Errorf("a disabled user's 401: %q", e.Error)
	}
	wantNewAudit(t, s, before, "user.disabled", "user:adm1", adm.TokenID, "resp1")
	expectError(t, admin.call(t, "POST", "/v1/users/resp1/token", nil), http.StatusConflict)
	expectError(t, admin.call(t, "POST", "/v1/users/nobody/disable", nil), http.StatusNotFound)
	expectError(t, admin.call(t, "POST", "/v1/users/resp1/disable", []byte(`{"name":"adm1"}`)), http.StatusBadRequest)

	// The last enabled admin stays: nobody could manage users after.
	e = expectError(t, admin.call(t, "POST", "/v1/users/adm1/disable", nil), http.StatusForbidden)
	if !strings.Contains(e.Error, "last enabled admin") {
		t.Errorf("disabling the last admin: %q", e.Error)
	}
	adm2 := admin.addUser(t, "adm2", "admin")
	issued = append(issued, adm2.Token)
	expectStatus(t, s.as(adm2.Token).call(t, "POST", "/v1/users/adm1/disable", nil), http.StatusOK)
	expectError(t, admin.call(t, "GET", "/v1/users", nil), http.StatusUnauthorized)

	// No answer that lists users, and no audit entry, holds a token or
	// its hash.
	listing := s.as(adm2.Token).call(t, "GET", "/v1/users", nil)
	expectStatus(t, listing, http.StatusOK)
	var audited bytes.Buffer
	for _, en := range auditEntries(t, s) {
		fmt.Fprintf(&audited, "%s %s %s %s\n", en.Actor, en.Token, en.Subject, en.Data)
	}
	for _, tok := range issued {
		for _, secret := range []string{tok, auth.HashToken(tok)} {
			if bytes.Contains(listing.body, []byte(secret)) {
				t.Errorf("GET /v1/users holds a token or its hash")
			}
			if bytes.Contains(audited.Bytes(), []byte(secret)) {
				t.Errorf("the audit holds a token or its hash")
			}
		}
	}
}

// wantNewAudit fails the test unless an entry after the first n is action
// by actor with token, about subject.
func wantNewAudit(t *testing.T, s *stack, n int, action, actor, token, subject string) {
	t.Helper()
	es := auditEntries(t, s)[n:]
	if !slices.ContainsFunc(es, func(e audit.Entry) bool {
		return e.Action == action && e.Actor == actor && e.Token == token && e.Subject == subject
	}) {
		t.Errorf("no %s of %s by %s (token %s) in %+v", action, subject, actor, token, es)
	}
}

// TestThrottledAfterFailures: an address that failed to authenticate too
// often is refused with 429 and Retry-After, even with a good token, and
// /metrics counts the failures and the refusals.
func TestThrottledAfterFailures(t *testing.T) {
	const burst = 3
	s := newStackWith(t, nil, daemon.Options{AuthLimiter: auth.NewLimiter(burst, time.Hour, 16)})
	expectError(t, s.call(t, "GET", "/v1/runs", nil, withHeader("Authorization", "Bearer wdn_guessed")), http.StatusUnauthorized)
	expectError(t, s.call(t, "GET", "/v1/runs", nil, withoutAuth()), http.StatusUnauthorized)
	expectStatus(t, s.call(t, "GET", "/v1/runs", nil), http.StatusOK) // a success costs nothing
	expectError(t, s.call(t, "POST", "/v1/indicators", []byte(`{}`), withHeader("Authorization", "Bearer "+testToken+"x")), http.StatusUnauthorized)
	for _, opt := range []option{withHeader("Authorization", "Bearer wdn_guessed-again"), withHeader("Authorization", "Bearer "+testToken)} {
		r := s.call(t, "GET", "/v1/runs", nil, opt)
		expectError(t, r, http.StatusTooManyRequests)
		if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs < 1 {
			t.Errorf("Retry-After %q, want whole seconds", r.header.Get("Retry-After"))
		}
	}
	r := s.call(t, "GET", "/metrics", nil, withoutAuth())
	expectStatus(t, r, http.StatusOK)
	for _, want := range []string{
		`warden_auth_failures_total{reason="invalid"} 2`,
		`warden_auth_failures_total{reason="missing"} 1`,
		`warden_auth_throttled_total 2`,
		`warden_indicators_rejected_total{reason="unauthorized"} 1`,
	} {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestTokensNeverLogged: adding users, using their tokens, a wrong token,
// a disabled user's token, rotating, and a store that stops answering
// leave no token, nor a token's hash, in the log.
func TestTokensNeverLogged(t *testing.T) {
	logs := &testsupport.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := newStackWith(t, func(c *config.Config) { c.Server.APIToken = "" }, daemon.Options{Log: log})
	// The bootstrap admin's token is made and written to its file.
	if err := s.d.AcquireWriter(t.Context()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(s.d.Config.Store.Path), "bootstrap-admin.token"))
	if err != nil {
		t.Fatalf("reading the bootstrap token file: %v", err)
	}
	boot := strings.TrimSpace(string(b))
	admin := s.as(boot)
	tokens := []string{boot, "wdn_" + strings.Repeat("A", 43)}

	resp := admin.addUser(t, "resp1", "responder")
	tokens = append(tokens, resp.Token)
	expectStatus(t, s.as(resp.Token).call(t, "GET", "/v1/whoami", nil), http.StatusOK)
	expectError(t, s.as(tokens[1]).call(t, "GET", "/v1/whoami", nil), http.StatusUnauthorized)
	expectStatus(t, admin.call(t, "POST", "/v1/users/resp1/disable", nil), http.StatusOK)
	expectError(t, s.as(resp.Token).call(t, "GET", "/v1/whoami", nil), http.StatusUnauthorized)
	appr := admin.addUser(t, "appr1", "approver")
	tokens = append(tokens, appr.Token)
	r := admin.call(t, "POST", "/v1/users/appr1/token", nil)
	expectStatus(t, r, http.StatusOK)
	rotated := decodeReply[v1.IssuedToken](t, r)
	tokens = append(tokens, rotated.Token)
	expectError(t, s.as(appr.Token).call(t, "GET", "/v1/whoami", nil), http.StatusUnauthorized)
	expectStatus(t, s.as(rotated.Token).call(t, "GET", "/v1/whoami", nil), http.StatusOK)
	// The user store stops answering: the 503 is logged, the token is not
	// (a token not used yet, so that the store must be asked).
	fresh := admin.addUser(t, "view1", "viewer")
	tokens = append(tokens, fresh.Token)
	if err := s.d.Store.Close(); err != nil {
		t.Fatal(err)
	}
	expectError(t, s.as(fresh.Token).call(t, "GET", "/v1/whoami", nil), http.StatusServiceUnavailable)

	out := logs.String()
	for _, want := range []string{"no users yet", "cannot authenticate"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q; the test no longer covers what it should:\n%s", want, out)
		}
	}
	for i, tok := range tokens {
		if strings.Contains(out, tok) {
			t.Errorf("token %d appears in the log", i)
		}
		if strings.Contains(out, auth.HashToken(tok)) {
			t.Errorf("the hash of token %d appears in the log", i)
		}
	}
}

// TestOIDC: with server.oidc, ID tokens of the issuer authenticate; the
// user is the claim (lower-cased), the role the highest of their groups;
// a wrong audience, a foreign key, an expired token or no mapped group is
// a 401, and a disabled Warden user of the same name is refused too.
func TestOIDC(t *testing.T) {
	iss := authtest.NewIssuer(t)
	const audience = "warden-test"
	s := newStack(t, func(c *config.Config) {
		c.Server.OIDC = config.OIDC{Issuer: iss.URL, Audience: audience,
			Roles: map[string]string{"ir-viewers": "viewer", "ir-approvers": "approver", "soc": "responder"}}
	}, nil)
	alice := iss.Token(t, audience, map[string]any{"preferred_username": "Alice.Ops", "groups": []string{"ir-viewers", "ir-approvers", "unrelated"}})
	me := decodeReply[v1.WhoAmI](t, s.as(alice).call(t, "GET", "/v1/whoami", nil))
	if me.User != "alice.ops" || me.Role != "approver" || me.TokenID != "oidc" || me.Actor != "user:alice.ops" {
		t.Errorf("whoami with an ID token: %+v", me)
	}
	for name, tok := range map[string]string{
		"wrong audience": iss.Token(t, "another-app", map[string]any{"preferred_username": "alice.ops", "groups": []string{"ir-approvers"}}),
		"foreign key":    iss.ForeignToken(t, audience, map[string]any{"preferred_username": "alice.ops", "groups": []string{"ir-approvers"}}),
		"expired": iss.Token(t, audience, map[string]any{"preferred_username": "alice.ops", "groups": []string{"ir-approvers"},
			"iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix()}),
		"no mapped group": iss.Token(t, audience, map[string]any{"preferred_username": "bob", "groups": []string{"unrelated"}}),
		"reserved name":   iss.Token(t, audience, map[string]any{"preferred_username": "controller", "groups": []string{"ir-approvers"}}),
		"no user claim":   iss.Token(t, audience, map[string]any{"groups": []string{"ir-approvers"}}),
	} {
		t.Run(name, func(t *testing.T) {
			r := s.as(tok).call(t, "GET", "/v1/whoami", nil)
			expectError(t, r, http.StatusUnauthorized)
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
			if bytes.Contains(r.body, []byte(tok)) {
				t.Error("the 401 echoes the ID token")
			}
		})
	}

	// The actor is the claim's user, with "oidc" as the token.
	res := decodeReply[intakeReply](t, s.call(t, "POST", "/v1/indicators", []byte(indicatorJSON("config_tamper", "gw-hq", "high")))).Results[0]
	es := written(t, s, func() {
		r := s.as(alice).call(t, "POST", "/v1/runs/"+res.RunID+"/approve", []byte(`{"by":"alice.ops"}`))
		expectStatus(t, r, http.StatusOK)
		if run := decodeReply[v1.Run](t, r); run.ApprovedBy != "user:alice.ops" {
			t.Errorf("approved by %q", run.ApprovedBy)
		}
	})
	wantActedAs(t, "approving with an ID token", es, "user:alice.ops", "oidc", auth.LegacyName)

	// A viewer by group may read, not approve.
	viewer := iss.Token(t, audience, map[string]any{"preferred_username": "carol", "groups": "ir-viewers"})
	expectStatus(t, s.as(viewer).call(t, "GET", "/v1/runs", nil), http.StatusOK)
	expectError(t, s.as(viewer).call(t, "POST", "/v1/runs/"+res.RunID+"/cancel", nil), http.StatusForbidden)

	// A Warden user of the same name, disabled, is refused with an ID
	// token too.
	s.addUser(t, "carol", "viewer")
	expectStatus(t, s.call(t, "POST", "/v1/users/carol/disable", nil), http.StatusOK)
	e := expectError(t, s.as(viewer).call(t, "GET", "/v1/runs", nil), http.StatusUnauthorized)
	if !strings.Contains(e.Error, "disabled") {
		t.Errorf("a disabled user's ID token: %q", e.Error)
	}
}
