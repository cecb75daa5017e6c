package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/intake"
	"github.com/warden-ir/warden/inventory"
)

const testToken = "client-test-token-4f1a9c"

// controller serves a real Warden (daemon.Build: store, default policies,
// controller, API) on loopback. There is no vCenter and no executor: runs
// stay where intake left them, which is what the client's calls read.
// Its callers authenticate with the deprecated shared token (testToken),
// an admin.
func controller(tb testing.TB, mutate func(*config.Config)) string {
	tb.Helper()
	_, url := served(tb, mutate)
	return url
}

// served is controller with the daemon behind it.
func served(tb testing.TB, mutate func(*config.Config)) (*daemon.Daemon, string) {
	tb.Helper()
	cfg := config.Defaults()
	cfg.Store.Path = filepath.Join(tb.TempDir(), "warden.db")
	cfg.Server.APIToken = testToken
	cfg.Inventory = inventory.Inventory{
		Sites: []inventory.Site{{Name: "hq", TimeZone: "Asia/Tokyo", Networks: []string{"10.10.0.0/16"}},
			{Name: "osaka", TimeZone: "Asia/Tokyo", Networks: []string{"10.20.0.0/16"}}},
		Gateways: []inventory.Gateway{
			{ID: "gw-hq", Site: "hq", VM: "gw-hq", Addresses: []string{"203.0.113.10"}, ManagementNetworks: []string{"192.168.100.0/24"}},
			{ID: "gw-osaka", Site: "osaka", VM: "gw-osaka", Addresses: []string{"203.0.113.20"}, ManagementNetworks: []string{"192.168.100.0/24"}},
		},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	d, err := daemon.Build(tb.Context(), cfg, daemon.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close(context.WithoutCancel(tb.Context())) })
	srv := httptest.NewServer(d.API)
	tb.Cleanup(srv.Close)
	return d, srv.URL
}

func newClient(tb testing.TB, base string, opts ...client.Option) *client.Client {
	tb.Helper()
	c, err := client.New(base, testToken, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

var beacon = v1.Indicator{Kind: "c2_beacon", Gateway: "gw-hq", Severity: "critical", Confidence: 0.9, Source: "client-test",
	Observables: &v1.Observables{IPs: []string{"198.51.100.7"}}}

// TestClientCalls walks the typed methods through one incident on a real
// controller: each decodes what the server sends into the v1 types.
func TestClientCalls(t *testing.T) {
	ctx := t.Context()
	d, base := served(t, nil)
	c := newClient(t, base)
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	in, err := c.SubmitIndicators(ctx, beacon)
	if err != nil {
		t.Fatalf("SubmitIndicators: %v", err)
	}
	if in.Accepted != 1 || len(in.Results) != 1 || !in.Results[0].Matched || in.Results[0].RunID == "" {
		t.Fatalf("SubmitIndicators: %+v, want one matched indicator that started a run", in)
	}
	acc := in.Results[0]
	run, err := c.Run(ctx, acc.RunID)
	if err != nil || run.ID != acc.RunID || run.Gateway != "gw-hq" || len(run.Steps) == 0 {
		t.Fatalf("Run: %+v %v", run, err)
	}
	if p, err := run.DecodePlan(); err != nil || p.Runbook != run.Runbook || len(p.Steps) != len(run.Steps) {
		t.Errorf("Run.DecodePlan: %+v %v", p, err)
	}
	runs, err := c.Runs(ctx, client.RunFilter{Incident: acc.IncidentID, States: []string{run.State}})
	if err != nil || len(runs) != 1 || runs[0].ID != run.ID {
		t.Errorf("Runs: %+v %v", runs, err)
	}
	incs, err := c.Incidents(ctx, 10)
	if err != nil || len(incs) != 1 || incs[0].ID != acc.IncidentID {
		t.Errorf("Incidents: %+v %v", incs, err)
	}
	inc, err := c.Incident(ctx, acc.IncidentID)
	if err != nil || len(inc.Indicators) != 1 || inc.Indicators[0].Indicator.Source != "client-test" || len(inc.Runs) != 1 || len(inc.Runs[0].Steps) == 0 {
		t.Errorf("Incident: %+v %v", inc, err)
	}
	gws, err := c.Gateways(ctx)
	if err != nil || len(gws) != 2 || gws[0].ID != "gw-hq" || gws[0].Posture.Desired == "" {
		t.Errorf("Gateways: %+v %v", gws, err)
	}
	if gw, err := c.Gateway(ctx, "gw-osaka"); err != nil || gw.Site != "osaka" || gw.Posture.Desired != v1.PostureNormal {
		t.Errorf("Gateway: %+v %v", gw, err)
	}
	osaka := beacon
	osaka.Gateway = "gw-osaka"
	plan, err := c.Plan(ctx, osaka)
	if err != nil || !plan.Decision.Matched || plan.Plan == nil || plan.Plan.Gateway != "gw-osaka" || plan.Text == "" {
		t.Errorf("Plan: %+v %v", plan, err)
	}
	dry, err := c.PlanRunbook(ctx, v1.ReleaseRunbook, v1.StartRunbookRequest{Gateway: "gw-hq"})
	if err != nil || !dry.DryRun || dry.Plan.Runbook != v1.ReleaseRunbook || dry.Text == "" {
		t.Errorf("PlanRunbook: %+v %v", dry, err)
	}
	if run.State == v1.RunAwaitingApproval {
		run, err = c.Approve(ctx, run.ID, v1.ApproveRequest{Comment: "looked"})
		if err != nil || run.ApprovedBy == "" {
			t.Errorf("Approve: %+v %v", run, err)
		}
	}
	if run, err = c.Cancel(ctx, run.ID, v1.CancelRequest{Reason: "test"}); err != nil || run.State != v1.RunCancelled {
		t.Errorf("Cancel: %+v %v", run, err)
	}
	if res, err := c.ResolveIndicator(ctx, inc.Indicators[0].ID, v1.ResolveRequest{Reason: "a test"}); err != nil || res.ResolvedBy != "user:shared-api-token" {
		t.Errorf("ResolveIndicator: %+v %v", res, err)
	}
	if rep, err := c.Report(ctx, acc.IncidentID, "en", "md"); err != nil || !bytes.Contains(rep, []byte(acc.IncidentID)) {
		t.Errorf("Report: %v (%d bytes)", err, len(rep))
	}
	if av, err := c.AuditVerify(ctx); err != nil || !av.OK || av.Entries == 0 || av.Head == "" {
		t.Errorf("AuditVerify: %+v %v", av, err)
	}
	if br, err := c.ResetBreaker(ctx, v1.BreakerResetRequest{Reason: "a test"}); err != nil || br.WasTripped {
		t.Errorf("ResetBreaker: %+v %v", br, err)
	}
	am := []byte(`{"status":"firing","alerts":[{"labels":{"alertname":"Unrelated","instance":"db1:9100"}}]}`)
	if res, err := c.SubmitAlertmanager(ctx, am); err != nil || res.Accepted != 1 || res.Results[0].Matched {
		t.Errorf("SubmitAlertmanager: %+v %v", res, err)
	}
	if m, err := c.Metrics(ctx); err != nil || !bytes.Contains(m, []byte("warden_")) {
		t.Errorf("Metrics: %v", err)
	}

	// People.
	if me, err := c.WhoAmI(ctx); err != nil || me.User != "shared-api-token" || me.Role != v1.RoleAdmin || me.TokenID != "legacy" ||
		me.Actor != "user:shared-api-token" || !me.TwoPerson {
		t.Errorf("WhoAmI: %+v %v", me, err)
	}
	is, err := c.AddUser(ctx, v1.AddUserRequest{Name: "resp1", Role: v1.RoleResponder, DisplayName: "Responder One"})
	if err != nil || is.Token == "" || is.TokenID == "" || is.User.Name != "resp1" || is.User.Role != v1.RoleResponder ||
		is.User.DisplayName != "Responder One" || !slices.Equal(is.User.Tokens, []string{is.TokenID}) {
		t.Fatalf("AddUser: %+v %v", is, err)
	}
	resp1 := newClientWithToken(t, base, is.Token)
	if me, err := resp1.WhoAmI(ctx); err != nil || me.User != "resp1" || me.Role != v1.RoleResponder || me.TokenID != is.TokenID || me.Actor != "user:resp1" {
		t.Errorf("WhoAmI as resp1: %+v %v", me, err)
	}
	if users, err := c.Users(ctx); err != nil || len(users) != 1 || users[0].Name != "resp1" || users[0].CreatedBy != "user:shared-api-token" {
		t.Errorf("Users: %+v %v", users, err)
	}
	rotated, err := c.RotateToken(ctx, "resp1")
	if err != nil || rotated.Token == "" || rotated.Token == is.Token || rotated.TokenID == is.TokenID || !slices.Equal(rotated.User.Tokens, []string{rotated.TokenID}) {
		t.Errorf("RotateToken: %+v %v", rotated, err)
	}
	if _, err := resp1.WhoAmI(ctx); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("the rotated-out token: %v, want 401", err)
	}
	if u, err := c.DisableUser(ctx, "resp1"); err != nil || !u.Disabled || len(u.Tokens) != 1 {
		t.Errorf("DisableUser: %+v %v", u, err)
	}
	if _, err := newClientWithToken(t, base, rotated.Token).WhoAmI(ctx); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("a disabled user's token: %v, want 401", err)
	}

	// Evidence, filed by the controller as the catalogue would.
	rec, err := d.Ledger.Add(ctx, evidence.Item{Incident: acc.IncidentID, Gateway: "gw-hq", Name: "conntrack.txt", Kind: evidence.KindVolatile,
		CollectedBy: "agent:gw-hq", Content: []byte("tcp 198.51.100.7:443 ESTABLISHED\n")})
	if err != nil {
		t.Fatal(err)
	}
	if list, err := c.Evidence(ctx, acc.IncidentID); err != nil || len(list) != 1 || list[0].ID != rec.ID || list[0].SHA256 != rec.SHA256 {
		t.Errorf("Evidence: %+v %v", list, err)
	}
	shown, err := c.ShowEvidence(ctx, rec.ID)
	if err != nil || shown.Evidence.ID != rec.ID || len(shown.Custody) == 0 {
		t.Fatalf("ShowEvidence: %+v %v", shown, err)
	}
	if last := shown.Custody[len(shown.Custody)-1]; last.Action != evidence.CustodyAccessed || last.Actor != "user:shared-api-token" {
		t.Errorf("ShowEvidence: the access is recorded as %+v", last)
	}
	var buf bytes.Buffer
	if err := c.ExportEvidence(ctx, acc.IncidentID, &buf); err != nil || buf.Len() < 2 || buf.Bytes()[0] != 0x1f || buf.Bytes()[1] != 0x8b {
		t.Errorf("ExportEvidence: %d bytes, %v; want a gzip archive", buf.Len(), err)
	}
	if err := c.ExportEvidence(ctx, "inc-nope", &buf); err == nil {
		t.Error("ExportEvidence of an unknown incident succeeded")
	}
}

func newClientWithToken(tb testing.TB, base, token string) *client.Client {
	tb.Helper()
	c, err := client.New(base, token)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func isStatus(err error, status int) bool {
	code, ok := client.StatusCode(err)
	return ok && code == status
}

// TestClientErrors: a refusal is an *Error with the status, the API's
// message and the field it names.
func TestClientErrors(t *testing.T) {
	base := controller(t, nil)
	c := newClient(t, base)
	wildcard := beacon
	wildcard.Gateway = "*"
	tests := map[string]struct {
		call      func(context.Context) error
		status    int
		field     string
		inMessage string
	}{
		"wildcard gateway": {call: func(ctx context.Context) error { _, err := c.SubmitIndicators(ctx, wildcard); return err },
			status: http.StatusBadRequest, field: "indicators[0].gateway", inMessage: "wildcard"},
		"unknown field": {call: func(ctx context.Context) error {
			_, err := c.SubmitIndicatorsJSON(ctx, []byte(`{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","colour":"red"}`))
			return err
		}, status: http.StatusBadRequest, field: "colour"},
		"no such run": {call: func(ctx context.Context) error { _, err := c.Run(ctx, "run-nope"); return err }, status: http.StatusNotFound},
		"approve as someone else": {call: func(ctx context.Context) error {
			_, err := c.Approve(ctx, "run-nope", v1.ApproveRequest{By: "alice"})
			return err
		}, status: http.StatusBadRequest, field: "by", inMessage: "alice"},
		"add a user twice": {call: func(ctx context.Context) error {
			if _, err := c.AddUser(ctx, v1.AddUserRequest{Name: "twice", Role: v1.RoleViewer}); err != nil {
				return err
			}
			_, err := c.AddUser(ctx, v1.AddUserRequest{Name: "twice", Role: v1.RoleViewer})
			return err
		}, status: http.StatusConflict, inMessage: "twice"},
		"add a user without a role": {call: func(ctx context.Context) error {
			_, err := c.AddUser(ctx, v1.AddUserRequest{Name: "norole"})
			return err
		}, status: http.StatusBadRequest, field: "role"},
		"disable nobody":  {call: func(ctx context.Context) error { _, err := c.DisableUser(ctx, "nobody"); return err }, status: http.StatusNotFound},
		"no such gateway": {call: func(ctx context.Context) error { _, err := c.Gateway(ctx, "gw-nope"); return err }, status: http.StatusNotFound},
		"no such wave":    {call: func(ctx context.Context) error { _, err := c.PatchWave(ctx, "wave-nope"); return err }, status: http.StatusNotFound},
		"release no target": {call: func(ctx context.Context) error {
			_, err := c.Release(ctx, v1.StartRunbookRequest{})
			return err
		}, status: http.StatusBadRequest},
		"wrong token": {call: func(ctx context.Context) error {
			other, err := client.New(base, "not-the-token")
			if err != nil {
				return err
			}
			_, err = other.Runs(ctx, client.RunFilter{})
			return err
		}, status: http.StatusUnauthorized, inMessage: "bearer token"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.call(t.Context())
			var ce *client.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want a *client.Error", err, err)
			}
			if ce.StatusCode != tc.status || ce.Field != tc.field || ce.Message == "" || !strings.Contains(ce.Message, tc.inMessage) {
				t.Errorf("got %d %q field %q; want %d containing %q, field %q", ce.StatusCode, ce.Message, ce.Field, tc.status, tc.inMessage, tc.field)
			}
			if code, ok := client.StatusCode(err); !ok || code != tc.status {
				t.Errorf("StatusCode: %d %t", code, ok)
			}
			if !strings.HasPrefix(err.Error(), "controller answered ") {
				t.Errorf("message %q", err)
			}
		})
	}
}

// flaky answers 503 to the first n requests, then 200 with {}; it records
// every request.
type flaky struct {
	n    atomic.Int32
	mu   sync.Mutex
	seen []*http.Request
	body string
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.seen = append(f.seen, r.Clone(context.Background()))
	f.mu.Unlock()
	if f.n.Add(-1) >= 0 {
		http.Error(w, f.body, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"runs":[]}`)
}

// TestRetries: without WithRetries a call is sent once; with it, a 503 is
// retried. A body that is not the API's JSON becomes the message.
func TestRetries(t *testing.T) {
	fast := client.Retries{Max: 2, WaitMin: time.Millisecond, WaitMax: 5 * time.Millisecond}
	tests := map[string]struct {
		opts     []client.Option
		failures int32
		wantErr  bool
		attempts int
	}{
		"once by default":         {failures: 1, wantErr: true, attempts: 1},
		"retried when asked":      {opts: []client.Option{client.WithRetries(fast)}, failures: 1, attempts: 2},
		"retries are bounded":     {opts: []client.Option{client.WithRetries(fast)}, failures: 5, wantErr: true, attempts: 3},
		"no failure, one request": {opts: []client.Option{client.WithRetries(fast)}, attempts: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := &flaky{body: "upstream restarting"}
			f.n.Store(tc.failures)
			srv := httptest.NewServer(f)
			t.Cleanup(srv.Close)
			_, err := newClient(t, srv.URL, tc.opts...).Runs(t.Context(), client.RunFilter{})
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %t", err, tc.wantErr)
			}
			if len(f.seen) != tc.attempts {
				t.Errorf("%d requests, want %d", len(f.seen), tc.attempts)
			}
			var ce *client.Error
			if err != nil && tc.attempts == 1 && (!errors.As(err, &ce) || ce.StatusCode != 503 || ce.Message != "upstream restarting") {
				t.Errorf("error %#v", err)
			}
			for _, r := range f.seen {
				if r.Header.Get("Authorization") != "Bearer "+testToken {
					t.Errorf("Authorization %q", r.Header.Get("Authorization"))
				}
			}
		})
	}
}

// TestSigning: WithSigningSecret signs every attempt anew, with
// signatures the controller's verifier accepts once each, on the body as
// sent; it leaves the caller's http.Client alone and keeps the secret and
// the token out of %v.
func TestSigning(t *testing.T) {
	secret := []byte("transport-secret-77")
	verifier := intake.NewSignatureVerifier(secret, 0, nil)
	f := &flaky{body: `{"error":"restarting"}`}
	f.n.Store(2)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	hc := &http.Client{}
	c := newClient(t, srv.URL, client.WithHTTPClient(hc), client.WithSigningSecret(secret),
		client.WithRetries(client.Retries{Max: 3, WaitMin: time.Millisecond, WaitMax: time.Millisecond}))
	body := []byte(`{"kind":"c2_beacon","gateway":"gw-hq","severity":"high"}`)
	var out json.RawMessage
	if _, err := c.Call(t.Context(), http.MethodPost, "/v1/indicators", body, &out); err != nil {
		t.Fatal(err)
	}
	if len(f.seen) != 3 {
		t.Fatalf("%d requests, want 3", len(f.seen))
	}
	var sigs []string
	for i, r := range f.seen {
		sig := r.Header.Get(v1.SignatureHeader)
		if slices.Contains(sigs, sig) {
			t.Errorf("attempt %d repeats a signature: a retry would be refused as a replay", i)
		}
		sigs = append(sigs, sig)
		// The clone's body is gone; verify against what was sent.
		if err := verifier.Verify(sig, body); err != nil {
			t.Errorf("attempt %d: %v", i, err)
		}
	}
	if hc.Transport != nil {
		t.Error("the caller's http.Client was changed")
	}
	if s := fmt.Sprintf("%v %+v %s", c, c, c); strings.Contains(s, string(secret)) || strings.Contains(s, testToken) {
		t.Errorf("formatting the client shows a secret: %q", s)
	}
}

// TestNew refuses what cannot be a controller's address, and no token.
func TestNew(t *testing.T) {
	for name, tc := range map[string]struct{ base, token string }{
		"no scheme":   {"127.0.0.1:8780", testToken},
		"other":       {"ftp://127.0.0.1", testToken},
		"no host":     {"http://", testToken},
		"empty token": {"http://127.0.0.1:8780", ""},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := client.New(tc.base, tc.token); err == nil {
				t.Error("accepted")
			}
		})
	}
	if _, err := client.New("https://warden.example:8780/", testToken); err != nil {
		t.Errorf("a plain URL: %v", err)
	}
}
