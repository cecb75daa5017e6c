package api_test

// These tests drive the real stack (daemon.Build: store, policies,
// controller, API) over loopback HTTP. There is no vCenter, so the VM
// actions are stand-ins that refuse; no executor is started, so runs stay
// where the intake left them and every assertion is about the HTTP contract
// and what the store holds when the response arrives.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/intake"
	"github.com/warden-ir/warden/internal/testsupport"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/store"
)

const testToken = "test-token-5e0c1d7a9b"

// testInventory is three sites with one gateway each. The hostnames and
// addresses are those the Alertmanager fixtures in intake/testdata use.
func testInventory() inventory.Inventory {
	return inventory.Inventory{
		Sites: []inventory.Site{
			{Name: "hq", TimeZone: "Asia/Tokyo", Networks: []string{"10.10.0.0/16"}},
			{Name: "osaka", TimeZone: "Asia/Tokyo", Networks: []string{"10.20.0.0/16"}},
			{Name: "factory", TimeZone: "Asia/Tokyo", Networks: []string{"10.30.0.0/16"}},
		},
		Gateways: []inventory.Gateway{
			{ID: "gw-hq", Site: "hq", VM: "gw-hq", Hostname: "gw-hq.corp.example",
				Addresses: []string{"203.0.113.10", "10.10.0.1", "2001:db8:10::1"}, ManagementNetworks: []string{"192.168.100.0/24"}},
			{ID: "gw-osaka-a", Site: "osaka", VM: "gw-osaka-a", Hostname: "gw-osaka-a.corp.example",
				Addresses: []string{"203.0.113.20", "10.20.0.1"}, ManagementNetworks: []string{"192.168.100.0/24"}},
			{ID: "gw-factory", Site: "factory", VM: "gw-factory",
				Addresses: []string{"203.0.113.30", "10.30.0.1", "2001:db8:30::1"}, ManagementNetworks: []string{"192.168.100.0/24"}},
		},
		Tunnels: []inventory.Tunnel{
			{A: "gw-hq", B: "gw-osaka-a", Kind: inventory.KindWireGuard},
			{A: "gw-hq", B: "gw-factory", Kind: inventory.KindStrongSwan},
		},
	}
}

// stack is an assembled Warden served on loopback.
type stack struct {
	d      *daemon.Daemon
	url    string
	token  string
	client *http.Client
}

// newStack builds the daemon with the default configuration, the test
// inventory and a store in a temporary directory. mutate (may be nil)
// changes the configuration first; log (may be nil) receives every log
// line. Its caller is the deprecated shared token (testToken), an admin
// named shared-api-token; per-person callers come from s.user.
func newStack(tb testing.TB, mutate func(*config.Config), log *slog.Logger) *stack {
	tb.Helper()
	return newStackWith(tb, mutate, daemon.Options{Log: log})
}

// newStackWith is newStack with the daemon's options (fake actions, a
// failure limiter of the test's own).
func newStackWith(tb testing.TB, mutate func(*config.Config), opt daemon.Options) *stack {
	tb.Helper()
	cfg := config.Defaults()
	cfg.Store.Path = filepath.Join(tb.TempDir(), "warden.db")
	cfg.Server.APIToken = testToken
	cfg.Inventory = testInventory()
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("test configuration: %v", err)
	}
	if opt.AuthLimiter == nil {
		// The tests fail authentication on purpose, many times, from
		// loopback: the default limiter would answer them 429.
		opt.AuthLimiter = auth.NewLimiter(1<<20, time.Millisecond, 1<<16)
	}
	d, err := daemon.Build(tb.Context(), cfg, opt)
	if err != nil {
		tb.Fatalf("building daemon: %v", err)
	}
	tb.Cleanup(func() { d.Close(tb.Context()) })
	srv := httptest.NewServer(d.API)
	tb.Cleanup(srv.Close)
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	tb.Cleanup(tr.CloseIdleConnections)
	return &stack{d: d, url: srv.URL, token: cfg.Server.APIToken, client: client}
}

// as is s calling with token.
func (s *stack) as(token string) *stack {
	c := *s
	c.token = token
	return &c
}

// addUser adds a user through POST /v1/users, as s's caller (an admin),
// and returns what the controller issued.
func (s *stack) addUser(tb testing.TB, name, role string) v1.IssuedToken {
	tb.Helper()
	r := s.call(tb, "POST", "/v1/users", []byte(fmt.Sprintf(`{"name":%q,"role":%q}`, name, role)))
	expectStatus(tb, r, http.StatusCreated)
	is := decodeReply[v1.IssuedToken](tb, r)
	if is.Token == "" || is.TokenID == "" || is.User.Name != name || is.User.Role != role {
		tb.Fatalf("adding %s (%s): %s", name, role, r)
	}
	return is
}

// user adds a user (as addUser) and returns s calling as them.
func (s *stack) user(tb testing.TB, name, role string) *stack {
	tb.Helper()
	return s.as(s.addUser(tb, name, role).Token)
}

// reply is a buffered HTTP answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// option changes a request before it is sent.
type option func(*http.Request)

func withoutAuth() option { return func(r *http.Request) { r.Header.Del("Authorization") } }

func withHeader(k, v string) option {
	return func(r *http.Request) {
		if v == "" {
			r.Header.Del(k)
			return
		}
		r.Header.Set(k, v)
	}
}

// call sends a request with the bearer token and, when there is a body,
// Content-Type application/json; opts change that. It fails the test when
// no answer arrives, so use it only from the test's goroutine.
func (s *stack) call(tb testing.TB, method, path string, body []byte, opts ...option) reply {
	tb.Helper()
	r, err := s.try(tb.Context(), method, path, body, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// try is call for any goroutine: it returns the error instead.
func (s *stack) try(ctx context.Context, method, path string, body []byte, opts ...option) (reply, error) {
	var rdr io.Reader
	if body != nil {
		rdr = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.url+path, rdr)
	if err != nil {
		return reply{}, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("sending %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("reading the answer to %s %s: %w", method, path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func (r reply) String() string {
	return fmt.Sprintf("%d %s", r.status, clipped(bytes.TrimSpace(r.body), 2000))
}

func clipped(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return append(b[:n:n], "…"...)
}

func decodeReply[T any](tb testing.TB, r reply) T {
	tb.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		tb.Fatalf("decoding answer %s: %v", r, err)
	}
	return v
}

type errorReply struct {
	Error string `json:"error"`
	Field string `json:"field"`
}

type intakeReply struct {
	Accepted int                   `json:"accepted"`
	Results  []controller.Accepted `json:"results"`
	Skipped  []struct {
		Index  int    `json:"index"`
		Reason string `json:"reason"`
	} `json:"skipped"`
}

// expectError checks status and that the body is a JSON error with a
// message; it returns the error.
func expectError(tb testing.TB, r reply, status int) errorReply {
	tb.Helper()
	if r.status != status {
		tb.Fatalf("status: got %s, want %d", r, status)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		tb.Errorf("Content-Type of the error: got %q, want application/json", ct)
	}
	e := decodeReply[errorReply](tb, r)
	if e.Error == "" {
		tb.Errorf("error message is empty: %s", r)
	}
	return e
}

func expectStatus(tb testing.TB, r reply, status int) {
	tb.Helper()
	if r.status != status {
		tb.Fatalf("status: got %s, want %d", r, status)
	}
}

// postAlertmanagerFixture posts the Alertmanager fixture name to a new
// stack's intake and checks that all n of its alerts were accepted.
func postAlertmanagerFixture(t *testing.T, name string, n int) (*stack, reply, intakeReply) {
	t.Helper()
	s := newStack(t, nil, nil)
	r := s.call(t, "POST", "/v1/intake/alertmanager", readFixture(t, name))
	expectStatus(t, r, http.StatusAccepted)
	got := decodeReply[intakeReply](t, r)
	if got.Accepted != n || len(got.Results) != n {
		t.Fatalf("got %d results, want %d: %s", len(got.Results), n, r)
	}
	return s, r, got
}

func readFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "intake", "testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// indicatorJSON renders one native indicator.
func indicatorJSON(kind, gateway, severity string, ips ...string) string {
	obs := ""
	if len(ips) > 0 {
		q := make([]string, len(ips))
		for i, ip := range ips {
			q[i] = `"` + ip + `"`
		}
		obs = `,"observables":{"ips":[` + strings.Join(q, ",") + `]}`
	}
	return fmt.Sprintf(`{"kind":%q,"gateway":%q,"severity":%q,"confidence":0.9,"source":"test"%s}`, kind, gateway, severity, obs)
}

// storedIndicatorIDs lists the ids of the indicators stored under each of
// the incidents (use "" for those without an incident).
func storedIndicatorIDs(tb testing.TB, st *store.Store, incidents ...string) []string {
	tb.Helper()
	var ids []string
	for _, inc := range incidents {
		recs, err := st.IndicatorsOfIncident(tb.Context(), inc)
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

func TestPostIndicatorsAccepted(t *testing.T) {
	tests := map[string]struct {
		body        string
		contentType string
		want        int // results
		wantRun     bool
	}{
		"single from the fixture": {body: string(readFixture(t, "native_single.json")), want: 1, wantRun: true},
		"batch of three": {body: `{"indicators":[` + indicatorJSON("c2_beacon", "gw-hq", "high", "203.0.113.250") + `,` +
			indicatorJSON("brute_force", "gw-osaka-a", "low", "198.51.100.1") + `,` + indicatorJSON("crash", "gw-factory", "medium") + `]}`, want: 3, wantRun: true},
		"no Content-Type":              {body: indicatorJSON("c2_beacon", "gw-hq", "critical"), contentType: "-", want: 1, wantRun: true},
		"json with charset":            {body: indicatorJSON("c2_beacon", "gw-hq", "critical"), contentType: "application/json; charset=utf-8", want: 1, wantRun: true},
		"null optional fields":         {body: `{"kind":"crash","gateway":"gw-hq","severity":"high","confidence":null,"observables":null,"labels":null}`, want: 1, wantRun: true},
		"resolved starts nothing":      {body: `{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","status":"resolved"}`, want: 1},
		"low severity tamper notifies": {body: indicatorJSON("config_tamper", "gw-hq", "low"), want: 1, wantRun: true}, // catch-all
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := newStack(t, nil, nil)
			var opts []option
			switch tc.contentType {
			case "":
			case "-":
				opts = append(opts, withHeader("Content-Type", ""))
			default:
				opts = append(opts, withHeader("Content-Type", tc.contentType))
			}
			r := s.call(t, "POST", "/v1/indicators", []byte(tc.body), opts...)
			expectStatus(t, r, http.StatusAccepted)
			got := decodeReply[intakeReply](t, r)
			if got.Accepted != tc.want || len(got.Results) != tc.want {
				t.Fatalf("accepted %d with %d results, want %d: %s", got.Accepted, len(got.Results), tc.want, r)
			}
			// Safety invariant 3: what the 202 names is already in the store.
			incidents := []string{""}
			for i, res := range got.Results {
				if res.Index != i || res.IndicatorID == "" || !res.Matched {
					t.Errorf("result %d: %+v", i, res)
				}
				if res.Status == "firing" && res.IncidentID == "" {
					t.Errorf("result %d: a firing indicator has no incident: %+v", i, res)
				}
				if res.IncidentID != "" {
					incidents = append(incidents, res.IncidentID)
				}
				if tc.wantRun {
					if res.RunID == "" || res.RunState == "" {
						t.Errorf("result %d: no run: %+v", i, res)
						continue
					}
					run, err := s.d.Store.Run(t.Context(), res.RunID)
					if err != nil {
						t.Fatalf("run %s named in the 202 is not in the store: %v", res.RunID, err)
					}
					if run.State != res.RunState || run.Incident != res.IncidentID {
						t.Errorf("stored run %s/%s, answer said %s/%s", run.State, run.Incident, res.RunState, res.IncidentID)
					}
				} else if res.RunID != "" {
					t.Errorf("result %d: unexpected run %s", i, res.RunID)
				}
			}
			stored := storedIndicatorIDs(t, s.d.Store, slices.Compact(slices.Sorted(slices.Values(incidents)))...)
			for _, res := range got.Results {
				if !slices.Contains(stored, res.IndicatorID) {
					t.Errorf("indicator %s named in the 202 is not in the store (have %v)", res.IndicatorID, stored)
				}
			}
		})
	}
}

func TestPostIndicatorsRejected(t *testing.T) {
	valid := indicatorJSON("c2_beacon", "gw-hq", "high")
	tests := map[string]struct {
		body      string
		wantField string
		wantIn    string // substring of the message
	}{
		"empty body":                 {body: "", wantField: "body", wantIn: "empty"},
		"malformed JSON":             {body: `{"kind":"c2_beacon",`, wantField: "body", wantIn: "invalid JSON"},
		"array body":                 {body: `[]`, wantField: "body"},
		"null body":                  {body: `null`, wantField: "body"},
		"trailing garbage":           {body: valid + `}`, wantField: "body"},
		"confidence is a string":     {body: `{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","confidence":"0.9"}`, wantField: "confidence", wantIn: "expected number"},
		"severity is a number":       {body: `{"kind":"c2_beacon","gateway":"gw-hq","severity":3}`, wantField: "severity", wantIn: "expected string"},
		"observables is an array":    {body: `{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","observables":[]}`, wantField: "observables"},
		"label value is a number":    {body: `{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","labels":{"sid":1}}`, wantField: "labels.sid"},
		"ip list holds a number":     {body: `{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","observables":{"ips":[1]}}`, wantField: "observables.ips[0]"},
		"ip is not an address":       {body: indicatorJSON("c2_beacon", "gw-hq", "high", "not-an-ip"), wantField: "observables.ips[0]"},
		"unknown field":              {body: `{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","colour":"red"}`, wantField: "colour", wantIn: "unknown field"},
		"unknown observable":         {body: `{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","observables":{"urls":[]}}`, wantField: "observables.urls"},
		"duplicate field":            {body: `{"kind":"c2_beacon","gateway":"gw-hq","gateway":"gw-osaka-a","severity":"high"}`, wantField: "gateway", wantIn: "duplicate"},
		"client-chosen id":           {body: `{"id":"ind-1","kind":"c2_beacon","gateway":"gw-hq","severity":"high"}`, wantField: "id"},
		"unknown gateway":            {body: indicatorJSON("c2_beacon", "gw-nowhere", "high"), wantField: "gateway", wantIn: "gw-nowhere"},
		"wildcard gateway":           {body: indicatorJSON("c2_beacon", "*", "high"), wantField: "gateway", wantIn: "wildcard"},
		"glob gateway":               {body: indicatorJSON("c2_beacon", "gw-*", "high"), wantField: "gateway", wantIn: "wildcard"},
		"missing gateway":            {body: `{"kind":"c2_beacon","severity":"high"}`, wantField: "gateway", wantIn: "required"},
		"bad severity":               {body: indicatorJSON("c2_beacon", "gw-hq", "extreme"), wantField: "severity", wantIn: "extreme"},
		"missing severity":           {body: `{"kind":"c2_beacon","gateway":"gw-hq"}`, wantField: "severity"},
		"unknown kind":               {body: indicatorJSON("ufo", "gw-hq", "high"), wantField: "kind"},
		"confidence above one":       {body: `{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","confidence":1.5}`, wantField: "confidence"},
		"confidence out of range":    {body: `{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","confidence":1e999}`, wantField: "confidence", wantIn: "out of range"},
		"bad status":                 {body: `{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","status":"maybe"}`, wantField: "status"},
		"bad time":                   {body: `{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","observed_at":"yesterday"}`, wantField: "observed_at"},
		"empty batch":                {body: `{"indicators":[]}`, wantField: "indicators", wantIn: "empty"},
		"batch is an object":         {body: `{"indicators":{}}`, wantField: "indicators"},
		"batch with a sibling field": {body: `{"indicators":[` + valid + `],"extra":1}`, wantField: "extra"},
		"bad element in batch":       {body: `{"indicators":[` + valid + `,` + indicatorJSON("c2_beacon", "gw-hq", "extreme") + `]}`, wantField: "indicators[1].severity"},
		"wildcard in batch":          {body: `{"indicators":[` + valid + `,` + indicatorJSON("c2_beacon", "*", "high") + `]}`, wantField: "indicators[1].gateway"},
		"batch too large": {body: `{"indicators":[` + strings.Repeat(valid+",", intake.MaxIndicatorsPerRequest) + valid + `]}`,
			wantField: "indicators", wantIn: "more than"},
	}
	s := newStack(t, nil, nil)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := s.call(t, "POST", "/v1/indicators", []byte(tc.body))
			e := expectError(t, r, http.StatusBadRequest)
			if e.Field != tc.wantField {
				t.Errorf("field: got %q, want %q (%s)", e.Field, tc.wantField, r)
			}
			if !strings.Contains(e.Error, tc.wantIn) {
				t.Errorf("message %q does not contain %q", e.Error, tc.wantIn)
			}
		})
	}
	// A rejected request stores nothing, not even the valid part of a batch.
	if n, err := s.d.Store.CountIndicators(t.Context()); err != nil || n != 0 {
		t.Errorf("after only rejected requests the store holds %d indicators (err %v), want 0", n, err)
	}
}

func TestBodyLimit(t *testing.T) {
	const limit = 600
	s := newStack(t, func(c *config.Config) { c.Server.MaxBodyBytes = limit }, nil)
	big := func(prefix string) []byte {
		return []byte(prefix + strings.Repeat(" ", limit) + "}")
	}
	const head = `{"kind":"crash","gateway":"gw-hq","severity":"high"`
	exactly := []byte(head + strings.Repeat(" ", limit-len(head)-1) + "}")
	tests := map[string]struct {
		path string
		body []byte
		want int
	}{
		"indicator under the limit": {path: "/v1/indicators", body: []byte(indicatorJSON("crash", "gw-hq", "high")), want: http.StatusAccepted},
		"indicator over the limit":  {path: "/v1/indicators", body: big(`{"kind":"crash","gateway":"gw-hq","severity":"high"`), want: http.StatusRequestEntityTooLarge},
		"alertmanager over":         {path: "/v1/intake/alertmanager", body: readFixture(t, "am_firing_multi.json"), want: http.StatusRequestEntityTooLarge},
		"plan over":                 {path: "/v1/plan", body: big(`{"kind":"crash","gateway":"gw-hq","severity":"high"`), want: http.StatusRequestEntityTooLarge},
		"approve over":              {path: "/v1/runs/run-x/approve", body: big(`{"by":"alice"`), want: http.StatusRequestEntityTooLarge},
		"runbook over":              {path: "/v1/runbooks/notify-only/runs", body: big(`{"by":"alice","gateway":"gw-hq"`), want: http.StatusRequestEntityTooLarge},
		"exactly the limit":         {path: "/v1/indicators", body: exactly, want: http.StatusAccepted},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := s.call(t, "POST", tc.path, tc.body)
			if tc.want == http.StatusRequestEntityTooLarge {
				e := expectError(t, r, tc.want)
				if !strings.Contains(e.Error, fmt.Sprint(limit)) {
					t.Errorf("413 message %q does not state the limit", e.Error)
				}
				return
			}
			expectStatus(t, r, tc.want)
		})
	}
}

func TestContentType(t *testing.T) {
	s := newStack(t, nil, nil)
	body := []byte(indicatorJSON("crash", "gw-hq", "high"))
	paths := []string{"/v1/indicators", "/v1/intake/alertmanager", "/v1/plan", "/v1/runs/run-x/approve", "/v1/runbooks/notify-only/runs", "/v1/breaker/reset"}
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/yaml",
		"application/jsonx", "application/json-patch+json", "application/json/evil", "json", "application/json; charset"} {
		for _, p := range paths {
			t.Run(ct+" "+p, func(t *testing.T) {
				e := expectError(t, s.call(t, "POST", p, body, withHeader("Content-Type", ct)), http.StatusUnsupportedMediaType)
				if !strings.Contains(e.Error, "Content-Type") {
					t.Errorf("message %q does not name Content-Type", e.Error)
				}
			})
		}
	}
	if n, _ := s.d.Store.CountIndicators(t.Context()); n != 0 {
		t.Errorf("a 415 stored %d indicators", n)
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON", "application/json ; charset=UTF-8"} {
		t.Run("accepts "+ct, func(t *testing.T) {
			expectStatus(t, s.call(t, "POST", "/v1/indicators", body, withHeader("Content-Type", ct)), http.StatusAccepted)
		})
	}
}

func TestAlertmanagerFixtures(t *testing.T) {
	type want struct {
		matched  bool
		gateway  string
		reason   string // substring of unmatched_reason
		resolved bool
		run      string // expected run state; "" for none
		waitsFor string // substring of the run's approval reason
	}
	tests := map[string][]want{
		// Several alerts in one POST, each to a different gateway, mapped by
		// instance hostname, instance address and gateway label.
		"am_firing_multi.json": {
			{matched: true, gateway: "gw-hq", run: store.RunPending},      // brute force from outside: notify-only
			{matched: true, gateway: "gw-osaka-a", run: store.RunPending}, // traffic spike: investigate
			// A c2 beacon would be contained automatically, but it is the third
			// of three gateways with firing indicators: the breaker trips.
			{matched: true, gateway: "gw-factory", run: store.RunAwaitingApproval, waitsFor: "circuit-breaker"},
		},
		"am_ipv6.json": {
			{matched: true, gateway: "gw-hq", run: store.RunPending},      // [v6]:port
			{matched: true, gateway: "gw-factory", run: store.RunPending}, // long-hand v6 without port
		},
		// Missing optional fields: status, annotations, fingerprint,
		// generatorURL; the kind comes from commonLabels.
		"am_minimal.json": {
			{matched: true, gateway: "gw-hq", run: store.RunAwaitingApproval, waitsFor: "tamper-contain-with-approval requires"},
			{matched: false, reason: "instance=203.0.113.21"},
		},
		"am_mixed_status.json": {
			{matched: true, gateway: "gw-factory", resolved: true},        // resolved with nothing open: recorded only
			{matched: true, gateway: "gw-osaka-a", run: store.RunPending}, // unknown host, but its site has one gateway
		},
		// Hosts that are not gateways are recorded as unmatched with a reason.
		"am_non_gateway.json": {
			{matched: false, reason: "instance=db1:9100"},
			{matched: false, reason: "no usable kind"},
			{matched: true, gateway: "gw-osaka-a", run: store.RunPending}, // decommissioned host, site fallback
		},
		"am_resolved.json": {
			{matched: true, gateway: "gw-hq", resolved: true},
		},
	}
	for name, wants := range tests {
		t.Run(name, func(t *testing.T) {
			s, _, got := postAlertmanagerFixture(t, name, len(wants))
			incidents := []string{""}
			for i, w := range wants {
				res := got.Results[i]
				if res.Index != i || res.IndicatorID == "" {
					t.Errorf("alert %d: index %d, indicator %q", i, res.Index, res.IndicatorID)
				}
				if res.Matched != w.matched || res.Gateway != w.gateway {
					t.Errorf("alert %d: matched %t gateway %q, want %t %q (reason %q)", i, res.Matched, res.Gateway, w.matched, w.gateway, res.Reason)
				}
				if w.matched != (res.Reason == "") || !strings.Contains(res.Reason, w.reason) {
					t.Errorf("alert %d: unmatched_reason %q, want one containing %q", i, res.Reason, w.reason)
				}
				if w.resolved && (res.Status != "resolved" || res.IncidentID != "") {
					t.Errorf("alert %d: resolved alert with nothing open got status %q incident %q", i, res.Status, res.IncidentID)
				}
				if w.matched && !w.resolved && res.IncidentID == "" {
					t.Errorf("alert %d: firing alert about a gateway has no incident", i)
				}
				if res.RunState != w.run {
					t.Errorf("alert %d: run state %q, want %q", i, res.RunState, w.run)
				}
				if w.waitsFor != "" && res.RunID != "" {
					run, err := s.d.Store.Run(t.Context(), res.RunID)
					if err != nil || !strings.Contains(run.ApprovalReason, w.waitsFor) {
						t.Errorf("alert %d: run waits for %q (err %v), want %q", i, run.ApprovalReason, err, w.waitsFor)
					}
				}
				if res.IncidentID != "" {
					incidents = append(incidents, res.IncidentID)
				}
			}
			// Every alert, matched or not, is stored before the 202.
			stored := storedIndicatorIDs(t, s.d.Store, slices.Compact(slices.Sorted(slices.Values(incidents)))...)
			for i, res := range got.Results {
				if !slices.Contains(stored, res.IndicatorID) {
					t.Errorf("alert %d: indicator %s is not in the store", i, res.IndicatorID)
				}
			}
			if n, err := s.d.Store.CountIndicators(t.Context()); err != nil || n != len(wants) {
				t.Errorf("store holds %d indicators (err %v), want %d", n, err, len(wants))
			}
		})
	}
}

// garbageBodies are bodies no sender should produce. Both intake routes
// must answer them with a 4xx naming what is wrong, never a 5xx.
func garbageBodies() map[string][]byte {
	deep := func(n int, closed bool) []byte {
		b := []byte(`{"alerts":` + strings.Repeat("[", n))
		if closed {
			b = append(b, strings.Repeat("]", n)...)
			b = append(b, '}')
		}
		return b
	}
	return map[string][]byte{
		"empty":                   {},
		"whitespace":              []byte(" \n\t "),
		"array":                   []byte(`[]`),
		"null":                    []byte(`null`),
		"string":                  []byte(`"alerts"`),
		"number":                  []byte(`42`),
		"empty object":            []byte(`{}`),
		"alerts is a number":      []byte(`{"alerts":5}`),
		"alerts is an object":     []byte(`{"alerts":{}}`),
		"alerts is null":          []byte(`{"alerts":null}`),
		"huge number for alerts":  []byte(`{"alerts":1e999999999}`),
		"truncated":               []byte(`{"alerts":[{"labels":{"gateway":"gw-hq"`),
		"binary":                  {0x00, 0xff, 0xfe, 0x1f, 0x8b, 0x08, 0x00, 0x7b, 0x22},
		"byte order mark":         append([]byte{0xef, 0xbb, 0xbf}, `{"alerts":[]}`...),
		"two documents":           []byte(`{"alerts":[]} {"alerts":[]}`),
		"NaN":                     []byte(`{"alerts":[NaN]}`),
		"single quotes":           []byte(`{'alerts':[]}`),
		"deeply nested, closed":   deep(100_000, true),
		"deeply nested, unclosed": deep(100_000, false),
		"status is a number":      []byte(`{"status":5,"alerts":[]}`),
		"label value is a number": []byte(`{"commonLabels":{"gateway":1},"alerts":[]}`),
	}
}

func TestAlertmanagerAlertLimit(t *testing.T) {
	s := newStack(t, nil, nil)
	alerts := func(n int) []byte {
		return []byte(`{"alerts":[` + strings.TrimSuffix(strings.Repeat(`{},`, n), ",") + `]}`)
	}
	r := s.call(t, "POST", "/v1/intake/alertmanager", alerts(intake.MaxIndicatorsPerRequest))
	expectStatus(t, r, http.StatusAccepted)
	if got := decodeReply[intakeReply](t, r); got.Accepted != intake.MaxIndicatorsPerRequest {
		t.Errorf("accepted %d", got.Accepted)
	}
	e := expectError(t, s.call(t, "POST", "/v1/intake/alertmanager", alerts(intake.MaxIndicatorsPerRequest+1)), http.StatusBadRequest)
	if e.Field != "alerts" || !strings.Contains(e.Error, "max_alerts") {
		t.Errorf("got %+v, want field alerts and a hint at max_alerts", e)
	}
	if n, _ := s.d.Store.CountIndicators(t.Context()); n != intake.MaxIndicatorsPerRequest {
		t.Errorf("store holds %d indicators, want only the first message's %d", n, intake.MaxIndicatorsPerRequest)
	}
}

func TestIntakeGarbage(t *testing.T) {
	s := newStack(t, nil, nil)
	for _, path := range []string{"/v1/intake/alertmanager", "/v1/indicators"} {
		for name, body := range garbageBodies() {
			t.Run(path+" "+name, func(t *testing.T) {
				r := s.call(t, "POST", path, body)
				if r.status < 400 || r.status >= 500 {
					t.Fatalf("got %s, want a 4xx", r)
				}
				e := expectError(t, r, http.StatusBadRequest)
				if e.Field == "" {
					t.Errorf("no field named: %s", r)
				}
			})
		}
	}
	if n, _ := s.d.Store.CountIndicators(t.Context()); n != 0 {
		t.Errorf("garbage stored %d indicators", n)
	}
}

// TestAlertmanagerBadAlerts: a well-formed message whose alerts are
// unusable is accepted; every alert is recorded as unmatched with a reason,
// and none starts anything.
func TestAlertmanagerBadAlerts(t *testing.T) {
	tests := map[string]struct {
		body   string
		reason string
	}{
		"alert is a number":       {body: `{"alerts":[1e999]}`, reason: "expected object"},
		"alert is an array":       {body: `{"alerts":[[[[]]]]}`, reason: "expected object"},
		"labels wrong type":       {body: `{"alerts":[{"labels":[]}]}`, reason: "labels"},
		"no labels at all":        {body: `{"alerts":[{}]}`, reason: "none of them is set"},
		"unknown kind label":      {body: `{"alerts":[{"labels":{"gateway":"gw-hq","warden_kind":"ufo"}}]}`, reason: "not a known kind"},
		"wildcard gateway label":  {body: `{"alerts":[{"labels":{"gateway":"*","alertname":"GatewayC2Beacon"}}]}`, reason: "gateway=*"},
		"bad startsAt":            {body: `{"alerts":[{"labels":{"gateway":"gw-hq","alertname":"GatewayC2Beacon"},"startsAt":"soon"}]}`, reason: "startsAt"},
		"startsAt is a number":    {body: `{"alerts":[{"labels":{"gateway":"gw-hq","alertname":"GatewayC2Beacon"},"startsAt":5}]}`, reason: "startsAt"},
		"huge fingerprint number": {body: `{"alerts":[{"labels":{"gateway":"gw-hq","alertname":"GatewayC2Beacon"},"fingerprint":1e999}]}`, reason: "fingerprint"},
	}
	s := newStack(t, nil, nil)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := s.call(t, "POST", "/v1/intake/alertmanager", []byte(tc.body))
			expectStatus(t, r, http.StatusAccepted)
			got := decodeReply[intakeReply](t, r)
			if len(got.Results) != 1 {
				t.Fatalf("got %d results: %s", len(got.Results), r)
			}
			res := got.Results[0]
			if res.Matched || res.RunID != "" || res.IncidentID != "" || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("got %+v, want unmatched with a reason containing %q", res, tc.reason)
			}
			// What cannot be understood is listed as skipped, naming the
			// field; what is understood but unusable is only unmatched.
			wantSkipped := strings.HasPrefix(res.Reason, "alerts[0]")
			if gotSkipped := len(got.Skipped) == 1 && got.Skipped[0].Index == 0 && got.Skipped[0].Reason == res.Reason; gotSkipped != wantSkipped || len(got.Skipped) > 1 {
				t.Errorf("skipped %+v, want skipped=%t for reason %q", got.Skipped, wantSkipped, res.Reason)
			}
		})
	}
	runs, err := s.d.Store.Runs(t.Context(), store.RunFilter{})
	if err != nil || len(runs) != 0 {
		t.Errorf("unusable alerts started %d runs (err %v)", len(runs), err)
	}
}

// TestAlertmanagerSenderVariants posts real senders' bodies (see
// intake/testdata/README.md): every one is accepted, its alerts are
// matched as far as they can be understood, and the 202 lists the alerts it
// skipped with their index and reason.
func TestAlertmanagerSenderVariants(t *testing.T) {
	type want struct {
		gateway string // "" for unmatched
		skipped string // prefix of the skipped reason; "" when not skipped
	}
	tests := map[string][]want{
		"am_doc_v4.json":              {{gateway: "gw-osaka-a"}},                     // Alertmanager's documented payload
		"am_v3_numeric_groupkey.json": {{gateway: "gw-hq"}},                          // Alertmanager 0.5: version "3", numeric groupKey
		"am_webhook_logger.json":      {{gateway: "gw-factory"}, {gateway: "gw-hq"}}, // template.Data, no version or groupKey
		"am_amtool_v2.json":           {{gateway: "gw-factory"}, {}},                 // API v2 alerts; the second is silenced
		"am_partly_bad.json": {
			{gateway: "gw-hq"},
			{skipped: "alerts[1].startsAt: expected an RFC 3339 time"},
			{skipped: "alerts[2]: expected object, got string"},
			{gateway: "gw-factory"},
		},
	}
	for name, wants := range tests {
		t.Run(name, func(t *testing.T) {
			_, r, got := postAlertmanagerFixture(t, name, len(wants))
			var skipped []int
			for i, w := range wants {
				res := got.Results[i]
				if res.Index != i || res.Matched != (w.gateway != "") || res.Gateway != w.gateway {
					t.Errorf("alert %d: index %d matched %t gateway %q (reason %q), want gateway %q", i, res.Index, res.Matched, res.Gateway, res.Reason, w.gateway)
				}
				if w.skipped != "" {
					skipped = append(skipped, i)
					if !strings.HasPrefix(res.Reason, w.skipped) || res.RunID != "" {
						t.Errorf("alert %d: reason %q run %q, want unmatched %q… starting nothing", i, res.Reason, res.RunID, w.skipped)
					}
				}
			}
			if len(got.Skipped) != len(skipped) {
				t.Fatalf("skipped %+v, want indexes %v", got.Skipped, skipped)
			}
			for j, i := range skipped {
				if got.Skipped[j].Index != i || got.Skipped[j].Reason != got.Results[i].Reason {
					t.Errorf("skipped[%d] = %+v, want index %d with reason %q", j, got.Skipped[j], i, got.Results[i].Reason)
				}
			}
			if len(skipped) == 0 && bytes.Contains(r.body, []byte(`"skipped"`)) {
				t.Errorf("a message with nothing skipped lists skipped: %s", r)
			}
		})
	}
}

func TestDedup(t *testing.T) {
	tests := map[string]struct {
		path string
		body []byte
	}{
		"native":       {path: "/v1/indicators", body: readFixture(t, "native_single.json")},
		"alertmanager": {path: "/v1/intake/alertmanager", body: readFixture(t, "am_firing_multi.json")},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := newStack(t, nil, nil)
			first := decodeReply[intakeReply](t, s.call(t, "POST", tc.path, tc.body))
			r := s.call(t, "POST", tc.path, tc.body)
			expectStatus(t, r, http.StatusAccepted)
			second := decodeReply[intakeReply](t, r)
			if len(first.Results) == 0 || len(first.Results) != len(second.Results) {
				t.Fatalf("results: %d then %d", len(first.Results), len(second.Results))
			}
			for i := range first.Results {
				a, b := first.Results[i], second.Results[i]
				if a.Duplicate || a.RunID == "" {
					t.Errorf("first %d: %+v, want new with a run", i, a)
				}
				if !b.Duplicate || b.IncidentID != a.IncidentID || b.RunID != "" || b.IndicatorID == a.IndicatorID {
					t.Errorf("second %d: %+v, want a duplicate in incident %s without a run", i, b, a.IncidentID)
				}
				runs, err := s.d.Store.Runs(t.Context(), store.RunFilter{Incident: a.IncidentID})
				if err != nil || len(runs) != 1 {
					t.Errorf("incident %s has %d runs (err %v), want 1", a.IncidentID, len(runs), err)
				}
				stored := storedIndicatorIDs(t, s.d.Store, a.IncidentID)
				if !slices.Contains(stored, b.IndicatorID) {
					t.Errorf("the duplicate %s is not recorded against incident %s", b.IndicatorID, a.IncidentID)
				}
			}
		})
	}
}

// TestConcurrentDuplicates: the same alert from many clients at once opens
// one incident and one run; every other copy is a duplicate of it.
func TestConcurrentDuplicates(t *testing.T) {
	s := newStack(t, nil, nil)
	body := readFixture(t, "native_single.json")
	const clients = 16
	results := make([]controller.Accepted, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			r, err := s.try(t.Context(), "POST", "/v1/indicators", body)
			if err != nil || r.status != http.StatusAccepted {
				t.Errorf("client %d: %s (%v)", i, r, err)
				return
			}
			var got intakeReply
			if err := json.Unmarshal(r.body, &got); err != nil || len(got.Results) != 1 {
				t.Errorf("client %d: %s", i, r)
				return
			}
			results[i] = got.Results[0]
		})
	}
	wg.Wait()
	originals, incidents := 0, map[string]bool{}
	for _, res := range results {
		if !res.Duplicate {
			originals++
		}
		incidents[res.IncidentID] = true
	}
	if originals != 1 || len(incidents) != 1 {
		t.Errorf("%d originals across %d incidents, want 1 in 1: %+v", originals, len(incidents), results)
	}
	runs, err := s.d.Store.Runs(t.Context(), store.RunFilter{})
	if err != nil || len(runs) != 1 {
		t.Errorf("%d runs (err %v), want 1", len(runs), err)
	}
	if n, _ := s.d.Store.CountIndicators(t.Context()); n != clients {
		t.Errorf("stored %d indicators, want every copy (%d)", n, clients)
	}
}

// TestConcurrentApprovals: of several approvers approving the same run at
// once, each with their own token, exactly one succeeds and the others get
// 409.
func TestConcurrentApprovals(t *testing.T) {
	s := newStack(t, nil, nil)
	res := decodeReply[intakeReply](t, s.call(t, "POST", "/v1/indicators", []byte(indicatorJSON("integrity_violation", "gw-factory", "critical")))).Results[0]
	if res.RunState != store.RunAwaitingApproval {
		t.Fatalf("integrity violation: %+v, want a run awaiting approval", res)
	}
	const people = 8
	approvers := make([]*stack, people)
	for i := range approvers {
		approvers[i] = s.user(t, fmt.Sprintf("person-%d", i), "approver")
	}
	statuses := make([]int, people)
	var wg sync.WaitGroup
	for i, a := range approvers {
		wg.Go(func() {
			r, err := a.try(t.Context(), "POST", "/v1/runs/"+res.RunID+"/approve", []byte(`{"comment":"seen"}`))
			if err != nil {
				t.Error(err)
				return
			}
			statuses[i] = r.status
		})
	}
	wg.Wait()
	ok, conflict := 0, 0
	for _, st := range statuses {
		switch st {
		case http.StatusOK:
			ok++
		case http.StatusConflict:
			conflict++
		}
	}
	if ok != 1 || conflict != people-1 {
		t.Errorf("statuses %v: want one 200 and %d 409", statuses, people-1)
	}
	run, err := s.d.Store.Run(t.Context(), res.RunID)
	if err != nil || !strings.HasPrefix(run.ApprovedBy, "user:person-") {
		t.Errorf("run approved by %q (%v), want one of the approvers", run.ApprovedBy, err)
	}
}

func TestWebhookSignature(t *testing.T) {
	const secret = "hook-secret-0d9e8f"
	s := newStack(t, func(c *config.Config) { c.Intake.WebhookSecret = secret }, nil)
	body := readFixture(t, "am_firing_multi.json")
	now := time.Now()
	replayed := intake.Sign([]byte(secret), now, body)
	if r := s.call(t, "POST", "/v1/intake/alertmanager", body, withHeader(intake.SignatureHeader, replayed)); r.status != http.StatusAccepted {
		t.Fatalf("first use of a valid signature: %s", r)
	}
	tests := map[string]struct {
		path   string
		body   []byte
		header string
		opts   []option
		want   int
	}{
		"no signature":          {path: "/v1/intake/alertmanager", body: body, want: http.StatusUnauthorized},
		"garbage signature":     {path: "/v1/intake/alertmanager", body: body, header: "t=1,v1=zz", want: http.StatusUnauthorized},
		"wrong secret":          {path: "/v1/intake/alertmanager", body: body, header: intake.Sign([]byte("other"), now, body), want: http.StatusUnauthorized},
		"signed other body":     {path: "/v1/intake/alertmanager", body: body, header: intake.Sign([]byte(secret), now, []byte(`{"alerts":[]}`)), want: http.StatusUnauthorized},
		"expired":               {path: "/v1/intake/alertmanager", body: body, header: intake.Sign([]byte(secret), now.Add(-time.Hour), body), want: http.StatusUnauthorized},
		"replayed":              {path: "/v1/intake/alertmanager", body: body, header: replayed, want: http.StatusConflict},
		"valid but no token":    {path: "/v1/intake/alertmanager", body: body, header: intake.Sign([]byte(secret), now.Add(-time.Second), body), opts: []option{withoutAuth()}, want: http.StatusUnauthorized},
		"signed alertmanager":   {path: "/v1/intake/alertmanager", body: body, header: intake.Sign([]byte(secret), now.Add(time.Second), body), want: http.StatusAccepted},
		"native unsigned":       {path: "/v1/indicators", body: readFixture(t, "native_single.json"), want: http.StatusUnauthorized},
		"native signed":         {path: "/v1/indicators", body: readFixture(t, "native_single.json"), header: intake.Sign([]byte(secret), now, readFixture(t, "native_single.json")), want: http.StatusAccepted},
		"plan needs no webhook": {path: "/v1/plan", body: readFixture(t, "native_single.json"), want: http.StatusOK},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			opts := append([]option{withHeader(intake.SignatureHeader, tc.header)}, tc.opts...)
			r := s.call(t, "POST", tc.path, tc.body, opts...)
			if tc.want == http.StatusUnauthorized || tc.want == http.StatusConflict {
				e := expectError(t, r, tc.want)
				if strings.Contains(e.Error, secret) || (tc.header != "" && strings.Contains(e.Error, tc.header)) {
					t.Errorf("the %d echoes the secret or the signature: %q", tc.want, e.Error)
				}
				if tc.want == http.StatusConflict && !strings.Contains(e.Error, "replay") {
					t.Errorf("the 409 does not say replay: %q", e.Error)
				}
				return
			}
			expectStatus(t, r, tc.want)
		})
	}
}

// TestWebhookReplayAfterRestart: a signed body accepted before a restart
// is refused when replayed, within its window, to a new controller on the
// same store; the replay starts nothing.
func TestWebhookReplayAfterRestart(t *testing.T) {
	const secret = "hook-secret-restart-5a7c"
	path := filepath.Join(t.TempDir(), "warden.db")
	withStore := func(c *config.Config) {
		c.Intake.WebhookSecret = secret
		c.Store.Path = path
	}
	body := readFixture(t, "am_doc_v4.json")
	signed := intake.Sign([]byte(secret), time.Now(), body)

	before := newStack(t, withStore, nil)
	expectStatus(t, before.call(t, "POST", "/v1/intake/alertmanager", body, withHeader(intake.SignatureHeader, signed)), http.StatusAccepted)
	n, err := before.d.Store.CountIndicators(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("store holds %d indicators (err %v), want 1", n, err)
	}
	before.d.Close(t.Context()) // the restart: a new process state on the same store

	logs := &testsupport.SyncBuffer{}
	after := newStack(t, withStore, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	e := expectError(t, after.call(t, "POST", "/v1/intake/alertmanager", body, withHeader(intake.SignatureHeader, signed)), http.StatusConflict)
	if !strings.Contains(e.Error, "replay") || strings.Contains(e.Error, secret) || strings.Contains(e.Error, signed) {
		t.Errorf("replay refused with %q: want a message saying replay, without the secret or the signature", e.Error)
	}
	if n, err := after.d.Store.CountIndicators(t.Context()); err != nil || n != 1 {
		t.Errorf("after the replay the store holds %d indicators (err %v), want still 1", n, err)
	}
	// The same body signed anew is a legitimate resend.
	expectStatus(t, after.call(t, "POST", "/v1/intake/alertmanager", body,
		withHeader(intake.SignatureHeader, intake.Sign([]byte(secret), time.Now().Add(time.Second), body))), http.StatusAccepted)
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the log holds the webhook secret")
	}
}

// TestRunsAPI walks a run through approval: a config_tamper indicator
// under the default policies waits for a person. The indicator is sent
// with the shared token, so its holder asked for the run and may not
// approve it (four eyes); an approver does.
func TestRunsAPI(t *testing.T) {
	s := newStack(t, nil, nil)
	appr := s.user(t, "appr1", "approver")
	r := s.call(t, "POST", "/v1/indicators", []byte(indicatorJSON("config_tamper", "gw-hq", "high")))
	expectStatus(t, r, http.StatusAccepted)
	res := decodeReply[intakeReply](t, r).Results[0]
	if res.Policy != "tamper-contain-with-approval" || res.RunState != store.RunAwaitingApproval || res.RunID == "" {
		t.Fatalf("config_tamper: %+v, want a run of tamper-contain-with-approval awaiting approval", res)
	}
	approve := "/v1/runs/" + res.RunID + "/approve"
	requester := "user:" + auth.LegacyName

	steps := []struct {
		name      string
		as        *stack // the caller; nil: the shared token
		method    string
		path      string
		body      string
		want      int
		wantField string
		wantIn    string
		check     func(t *testing.T, r reply)
	}{
		{name: "get the waiting run", method: "GET", path: "/v1/runs/" + res.RunID, want: http.StatusOK, check: func(t *testing.T, r reply) {
			run := decodeReply[store.Run](t, r)
			if run.State != store.RunAwaitingApproval || !run.ApprovalRequired || run.ApprovalReason == "" || len(run.Steps) == 0 || run.RequestedBy != requester {
				t.Errorf("run: %+v", run)
			}
		}},
		{name: "list waiting runs", method: "GET", path: "/v1/runs?state=awaiting_approval", want: http.StatusOK, check: func(t *testing.T, r reply) {
			list := decodeReply[struct{ Runs []store.Run }](t, r)
			if len(list.Runs) != 1 || list.Runs[0].ID != res.RunID {
				t.Errorf("runs: %+v", list.Runs)
			}
		}},
		{name: "approve naming someone else", as: appr, method: "POST", path: approve, body: `{"by":"alice","comment":"looks bad"}`, want: http.StatusBadRequest, wantField: "by", wantIn: "appr1"},
		{name: "approve naming the requester", as: appr, method: "POST", path: approve, body: `{"by":"` + requester + `"}`, want: http.StatusBadRequest, wantField: "by"},
		{name: "approve with unknown field", as: appr, method: "POST", path: approve, body: `{"by":"appr1","force":true}`, want: http.StatusBadRequest, wantIn: "force"},
		{name: "approve with wrong type", as: appr, method: "POST", path: approve, body: `{"by":5}`, want: http.StatusBadRequest},
		{name: "approve with a second document", as: appr, method: "POST", path: approve, body: `{"by":"appr1"} {"by":"mallory"}`, want: http.StatusBadRequest},
		{name: "approve with trailing garbage", as: appr, method: "POST", path: approve, body: `{"by":"appr1"}]`, want: http.StatusBadRequest},
		{name: "approve unknown run", as: appr, method: "POST", path: "/v1/runs/run-doesnotexist/approve", want: http.StatusNotFound},
		{name: "the requester approves", method: "POST", path: approve, body: `{"comment":"mine"}`, want: http.StatusForbidden, wantIn: "four eyes"},
		{name: "approve", as: appr, method: "POST", path: approve, body: `{"comment":"confirmed with the site"}`, want: http.StatusOK, check: func(t *testing.T, r reply) {
			run := decodeReply[store.Run](t, r)
			if run.State != store.RunPending || run.ApprovedBy != "user:appr1" {
				t.Errorf("approved run: state %q by %q", run.State, run.ApprovedBy)
			}
		}},
		{name: "approve again", as: appr, method: "POST", path: approve, body: `{"by":"appr1"}`, want: http.StatusConflict},
		{name: "stored as approved", method: "GET", path: "/v1/runs/" + res.RunID, want: http.StatusOK, check: func(t *testing.T, r reply) {
			if run := decodeReply[store.Run](t, r); run.ApprovedBy != "user:appr1" || run.RequestedBy != requester {
				t.Errorf("stored approver %q, requester %q", run.ApprovedBy, run.RequestedBy)
			}
		}},
		{name: "cancel naming someone else", method: "POST", path: "/v1/runs/" + res.RunID + "/cancel", body: `{"by":"alice"}`, want: http.StatusBadRequest, wantField: "by"},
		{name: "cancel unknown run", method: "POST", path: "/v1/runs/run-doesnotexist/cancel", body: `{}`, want: http.StatusNotFound},
		{name: "cancel", method: "POST", path: "/v1/runs/" + res.RunID + "/cancel", body: `{"by":"` + auth.LegacyName + `","reason":"false positive"}`, want: http.StatusOK},
		{name: "cancel again", method: "POST", path: "/v1/runs/" + res.RunID + "/cancel", want: http.StatusConflict},
		{name: "get unknown run", method: "GET", path: "/v1/runs/run-doesnotexist", want: http.StatusNotFound},
		{name: "incident lists the run", method: "GET", path: "/v1/incidents/" + res.IncidentID, want: http.StatusOK, check: func(t *testing.T, r reply) {
			d := decodeReply[struct {
				ID         string                  `json:"id"`
				Indicators []store.IndicatorRecord `json:"indicators"`
				Runs       []store.Run             `json:"runs"`
			}](t, r)
			if d.ID != res.IncidentID || len(d.Indicators) != 1 || d.Indicators[0].ID != res.IndicatorID || len(d.Runs) != 1 || d.Runs[0].State != store.RunCancelled {
				t.Errorf("incident detail: %s", r)
			}
		}},
	}
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) {
			var body []byte
			if st.body != "" {
				body = []byte(st.body)
			}
			caller := s
			if st.as != nil {
				caller = st.as
			}
			r := caller.call(t, st.method, st.path, body)
			if st.want >= 400 {
				e := expectError(t, r, st.want)
				if st.wantField != "" && e.Field != st.wantField {
					t.Errorf("field %q, want %q", e.Field, st.wantField)
				}
				if !strings.Contains(e.Error, st.wantIn) {
					t.Errorf("message %q does not contain %q", e.Error, st.wantIn)
				}
				return
			}
			expectStatus(t, r, st.want)
			if st.check != nil {
				st.check(t, r)
			}
		}) {
			t.FailNow() // later steps depend on this one
		}
	}
}

func TestStartRunbook(t *testing.T) {
	s := newStack(t, nil, nil)
	tests := map[string]struct {
		name      string
		body      string
		want      int
		wantField string
		wantIn    string
	}{
		"empty gateway":      {name: "contain-compromised-gateway", body: `{"gateway":""}`, want: http.StatusBadRequest, wantIn: "gateway"},
		"blank gateway":      {name: "contain-compromised-gateway", body: `{"gateway":"  "}`, want: http.StatusBadRequest, wantIn: "gateway"},
		"missing gateway":    {name: "contain-compromised-gateway", body: `{}`, want: http.StatusBadRequest, wantIn: "gateway"},
		"wildcard gateway":   {name: "contain-compromised-gateway", body: `{"gateway":"*"}`, want: http.StatusBadRequest, wantIn: "wildcard"},
		"glob gateway":       {name: "contain-compromised-gateway", body: `{"gateway":"gw-?q"}`, want: http.StatusBadRequest, wantIn: "wildcard"},
		"all gateways":       {name: "contain-compromised-gateway", body: `{"gateway":"all"}`, want: http.StatusBadRequest, wantIn: "wildcard"},
		"wildcard dry run":   {name: "contain-compromised-gateway", body: `{"gateway":"*","dry_run":true}`, want: http.StatusBadRequest, wantIn: "wildcard"},
		"unknown gateway":    {name: "contain-compromised-gateway", body: `{"gateway":"gw-nowhere"}`, want: http.StatusBadRequest, wantIn: "gw-nowhere"},
		"unknown runbook":    {name: "reboot-everything", body: `{"gateway":"gw-hq"}`, want: http.StatusBadRequest, wantIn: "reboot-everything"},
		"unknown dry run":    {name: "reboot-everything", body: `{"gateway":"gw-hq","dry_run":true}`, want: http.StatusBadRequest, wantIn: "reboot-everything"},
		"someone else's by":  {name: "notify-only", body: `{"gateway":"gw-hq","by":"alice"}`, want: http.StatusBadRequest, wantField: "by", wantIn: "alice"},
		"unknown field":      {name: "notify-only", body: `{"gateway":"gw-hq","targets":["*"]}`, want: http.StatusBadRequest, wantIn: "targets"},
		"gateway wrong type": {name: "notify-only", body: `{"gateway":["gw-hq","gw-factory"]}`, want: http.StatusBadRequest, wantIn: "gateway"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := expectError(t, s.call(t, "POST", "/v1/runbooks/"+tc.name+"/runs", []byte(tc.body)), tc.want)
			if tc.wantField != "" && e.Field != tc.wantField {
				t.Errorf("field %q, want %q", e.Field, tc.wantField)
			}
			if !strings.Contains(e.Error, tc.wantIn) {
				t.Errorf("message %q does not contain %q", e.Error, tc.wantIn)
			}
		})
	}
	countRuns := func(t *testing.T) int {
		runs, err := s.d.Store.Runs(t.Context(), store.RunFilter{})
		if err != nil {
			t.Fatal(err)
		}
		return len(runs)
	}
	if n := countRuns(t); n != 0 {
		t.Fatalf("rejected requests created %d runs", n)
	}

	t.Run("dry run plans and creates nothing", func(t *testing.T) {
		r := s.call(t, "POST", "/v1/runbooks/contain-compromised-gateway/runs", []byte(`{"gateway":"gw-hq","dry_run":true}`))
		expectStatus(t, r, http.StatusOK)
		got := decodeReply[struct {
			DryRun bool `json:"dry_run"`
			Plan   struct {
				Gateway string `json:"gateway"`
				Runbook string `json:"runbook"`
				Steps   []struct {
					Action    string `json:"action"`
					PlanError string `json:"plan_error"`
				} `json:"steps"`
			} `json:"plan"`
			Text string `json:"text"`
		}](t, r)
		if !got.DryRun || got.Plan.Gateway != "gw-hq" || got.Plan.Runbook != "contain-compromised-gateway" || got.Text == "" {
			t.Errorf("dry run: %s", r)
		}
		var actions []string
		for _, st := range got.Plan.Steps {
			actions = append(actions, st.Action)
		}
		if want := []string{"isolate", "capture_volatile", "snapshot", "kill_flows", "investigate", "notify"}; !slices.Equal(actions, want) {
			t.Errorf("planned actions %v, want %v", actions, want)
		}
		if n := countRuns(t); n != 0 {
			t.Errorf("a dry run created %d runs", n)
		}
	})
	t.Run("start creates a run", func(t *testing.T) {
		r := s.call(t, "POST", "/v1/runbooks/notify-only/runs", []byte(`{"gateway":"gw-factory"}`))
		expectStatus(t, r, http.StatusAccepted)
		run := decodeReply[store.Run](t, r)
		const caller = "user:" + auth.LegacyName
		if run.ID == "" || run.Gateway != "gw-factory" || run.Trigger != "manual" || run.ApprovedBy != caller || run.RequestedBy != caller || run.OverriddenBy != "" {
			t.Errorf("run: %+v", run)
		}
		if _, err := s.d.Store.Run(t.Context(), run.ID); err != nil {
			t.Errorf("run %s not stored: %v", run.ID, err)
		}
	})
}

func TestReadEndpoints(t *testing.T) {
	s := newStack(t, nil, nil)
	accepted := decodeReply[intakeReply](t, s.call(t, "POST", "/v1/indicators", readFixture(t, "native_single.json"))).Results[0]
	tests := map[string]struct {
		path  string
		want  int
		check func(t *testing.T, r reply)
	}{
		"incidents": {path: "/v1/incidents", want: 200, check: func(t *testing.T, r reply) {
			got := decodeReply[struct{ Incidents []store.Incident }](t, r)
			if len(got.Incidents) != 1 || got.Incidents[0].ID != accepted.IncidentID || got.Incidents[0].Gateway != "gw-hq" {
				t.Errorf("incidents: %s", r)
			}
		}},
		"incidents with a bad limit": {path: "/v1/incidents?limit=abc", want: 200},
		"incident": {path: "/v1/incidents/" + accepted.IncidentID, want: 200, check: func(t *testing.T, r reply) {
			got := decodeReply[struct {
				ID         string
				Indicators []store.IndicatorRecord
				Runs       []store.Run
			}](t, r)
			if got.ID != accepted.IncidentID || len(got.Indicators) != 1 || len(got.Runs) != 1 || got.Runs[0].ID != accepted.RunID {
				t.Errorf("incident: %s", r)
			}
		}},
		"unknown incident": {path: "/v1/incidents/inc-nope", want: 404},
		"run": {path: "/v1/runs/" + accepted.RunID, want: 200, check: func(t *testing.T, r reply) {
			if run := decodeReply[store.Run](t, r); run.ID != accepted.RunID || len(run.Steps) != 6 || run.Plan == nil {
				t.Errorf("run: %s", r)
			}
		}},
		"runs of the incident": {path: "/v1/runs?incident=" + accepted.IncidentID, want: 200, check: func(t *testing.T, r reply) {
			if got := decodeReply[struct{ Runs []store.Run }](t, r); len(got.Runs) != 1 {
				t.Errorf("runs: %s", r)
			}
		}},
		"runs of nothing is an empty list": {path: "/v1/runs?gateway=gw-nowhere", want: 200, check: func(t *testing.T, r reply) {
			if !bytes.Contains(r.body, []byte(`"runs": []`)) {
				t.Errorf("want an empty list, not null: %s", r)
			}
		}},
		"gateways": {path: "/v1/gateways", want: 200, check: func(t *testing.T, r reply) {
			got := decodeReply[struct {
				Gateways []struct {
					ID      string
					Posture store.Posture
				}
			}](t, r)
			var ids []string
			for _, g := range got.Gateways {
				ids = append(ids, g.ID)
			}
			if !slices.Equal(ids, []string{"gw-hq", "gw-osaka-a", "gw-factory"}) {
				t.Errorf("gateways %v", ids)
			}
		}},
		"gateway":         {path: "/v1/gateways/gw-factory", want: 200},
		"unknown gateway": {path: "/v1/gateways/gw-nowhere", want: 404},
		"audit verify": {path: "/v1/audit/verify", want: 200, check: func(t *testing.T, r reply) {
			got := decodeReply[struct {
				OK      bool   `json:"ok"`
				Entries int    `json:"entries"`
				Head    string `json:"head"`
			}](t, r)
			if !got.OK || got.Entries == 0 || got.Head == "" {
				t.Errorf("audit: %s", r)
			}
		}},
		"healthz": {path: "/healthz", want: 200},
		"readyz":  {path: "/readyz", want: 200},
		"metrics": {path: "/metrics", want: 200, check: func(t *testing.T, r reply) {
			if !bytes.Contains(r.body, []byte(`warden_indicators_accepted_total{outcome="matched"} 1`)) {
				t.Errorf("metrics do not count the accepted indicator")
			}
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := s.call(t, "GET", tc.path, nil)
			if tc.want >= 400 {
				expectError(t, r, tc.want)
				return
			}
			expectStatus(t, r, tc.want)
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	s := newStack(t, nil, nil)
	tests := map[string]struct {
		body       string
		want       int
		wantPolicy string
		wantField  string
	}{
		"tamper needs approval": {body: indicatorJSON("config_tamper", "gw-hq", "high"), want: 200, wantPolicy: "tamper-contain-with-approval"},
		"beacon isolates":       {body: string(readFixture(t, "native_single.json")), want: 200, wantPolicy: "c2-or-exfil-isolate"},
		"two indicators":        {body: `{"indicators":[` + indicatorJSON("crash", "gw-hq", "high") + `,` + indicatorJSON("crash", "gw-hq", "high") + `]}`, want: 400, wantField: "indicators"},
		"unknown gateway":       {body: indicatorJSON("crash", "gw-nowhere", "high"), want: 400, wantField: "gateway"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := s.call(t, "POST", "/v1/plan", []byte(tc.body))
			if tc.want >= 400 {
				if e := expectError(t, r, tc.want); e.Field != tc.wantField {
					t.Errorf("field %q, want %q", e.Field, tc.wantField)
				}
				return
			}
			expectStatus(t, r, tc.want)
			got := decodeReply[struct {
				Decision struct{ Policy string }
				Text     string
			}](t, r)
			if got.Decision.Policy != tc.wantPolicy || !strings.Contains(got.Text, tc.wantPolicy) {
				t.Errorf("plan: policy %q, text %q", got.Decision.Policy, got.Text)
			}
		})
	}
	// A plan applies nothing and stores nothing.
	if n, _ := s.d.Store.CountIndicators(t.Context()); n != 0 {
		t.Errorf("plan stored %d indicators", n)
	}
	if runs, _ := s.d.Store.Runs(t.Context(), store.RunFilter{}); len(runs) != 0 {
		t.Errorf("plan created %d runs", len(runs))
	}
}

func TestBreakerReset(t *testing.T) {
	s := newStack(t, nil, nil)
	e := expectError(t, s.call(t, "POST", "/v1/breaker/reset", []byte(`{}`)), http.StatusBadRequest)
	if e.Field != "reason" {
		t.Errorf("field %q does not name reason", e.Field)
	}
	e = expectError(t, s.call(t, "POST", "/v1/breaker/reset", []byte(`{"by":"alice","reason":"checked"}`)), http.StatusBadRequest)
	if e.Field != "by" {
		t.Errorf("field %q: a by naming someone else is refused naming by", e.Field)
	}
	r := s.call(t, "POST", "/v1/breaker/reset", []byte(`{"reason":"checked"}`))
	expectStatus(t, r, http.StatusOK)
	if got := decodeReply[struct {
		WasTripped bool `json:"was_tripped"`
	}](t, r); got.WasTripped {
		t.Errorf("breaker was not tripped: %s", r)
	}
}

func TestMetricsCountRejections(t *testing.T) {
	s := newStack(t, nil, nil)
	expectStatus(t, s.call(t, "POST", "/v1/indicators", []byte(indicatorJSON("c2_beacon", "*", "high"))), http.StatusBadRequest)
	expectStatus(t, s.call(t, "POST", "/v1/indicators", []byte(`{}`), withoutAuth()), http.StatusUnauthorized)
	expectStatus(t, s.call(t, "POST", "/v1/indicators", []byte(indicatorJSON("crash", "gw-hq", "high"))), http.StatusAccepted)
	// Refusals outside intake are not intake rejections.
	expectStatus(t, s.call(t, "GET", "/v1/runs", nil, withoutAuth()), http.StatusUnauthorized)
	expectStatus(t, s.call(t, "POST", "/v1/breaker/reset", []byte(`{}`), withHeader("Content-Type", "text/plain")), http.StatusUnsupportedMediaType)
	expectStatus(t, s.call(t, "POST", "/v1/runs/run-x/approve", []byte(`{"force":true}`)), http.StatusBadRequest)
	expectStatus(t, s.user(t, "view1", "viewer").call(t, "POST", "/v1/runs/run-x/approve", []byte(`{}`)), http.StatusForbidden)
	r := s.call(t, "GET", "/metrics", nil, withoutAuth())
	expectStatus(t, r, http.StatusOK)
	for _, want := range []string{
		`warden_indicators_accepted_total{outcome="matched"} 1`,
		`warden_indicators_rejected_total{reason="invalid"} 1`,
		`warden_indicators_rejected_total{reason="unauthorized"} 1`,
	} {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, reason := range []string{"content_type", "forbidden"} {
		if bytes.Contains(r.body, []byte(`warden_indicators_rejected_total{reason="`+reason+`"}`)) {
			t.Errorf("a refusal outside intake counts as an indicator rejection (%s)", reason)
		}
	}
}

// TestNoSecretsInResponsesOrLogs configures every kind of secret, makes
// requests that succeed and fail (including internal errors after the store
// is closed), and checks that no secret appears in any answer or log line.
func TestNoSecretsInResponsesOrLogs(t *testing.T) {
	secrets := map[string]string{
		"api token":      "api-token-SECRET-4c1f",
		"vsphere":        "vsphere-pw-SECRET-9a7b",
		"webhook":        "webhook-SECRET-77e2",
		"notify channel": "notify-SECRET-1b3d",
	}
	logs := &testsupport.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := newStack(t, func(c *config.Config) {
		c.Server.APIToken = secrets["api token"]
		c.VSphere.Username = "warden@vsphere.local"
		c.VSphere.Password = secrets["vsphere"]
		c.Intake.WebhookSecret = secrets["webhook"]
		c.Notify.Channels = []config.Channel{{Name: "default", URL: "http://127.0.0.1:9/hook", Secret: secrets["notify channel"],
			Headers: map[string]string{"Authorization": "Bearer " + secrets["notify channel"]}}}
	}, log)
	sign := func(body []byte) option {
		return withHeader(intake.SignatureHeader, intake.Sign([]byte(secrets["webhook"]), time.Now(), body))
	}
	tamper := []byte(indicatorJSON("config_tamper", "gw-hq", "high"))
	var answers []reply
	add := func(r reply) { answers = append(answers, r) }

	add(s.call(t, "GET", "/v1/runs", nil, withHeader("Authorization", "Bearer "+secrets["api token"][:8])))
	add(s.call(t, "GET", "/v1/runs", nil, withHeader("Authorization", secrets["api token"])))
	add(s.call(t, "POST", "/v1/indicators", tamper))
	add(s.call(t, "POST", "/v1/indicators", tamper, withHeader(intake.SignatureHeader, "t=1,v1=00")))
	r := s.call(t, "POST", "/v1/indicators", tamper, sign(tamper))
	expectStatus(t, r, http.StatusAccepted)
	add(r)
	run := decodeReply[intakeReply](t, r).Results[0].RunID
	add(s.call(t, "POST", "/v1/indicators", []byte(indicatorJSON("c2_beacon", "*", "high")), sign([]byte(indicatorJSON("c2_beacon", "*", "high")))))
	add(s.call(t, "POST", "/v1/plan", tamper))
	add(s.call(t, "POST", "/v1/runbooks/contain-compromised-gateway/runs", []byte(`{"gateway":"gw-hq","dry_run":true}`)))
	add(s.call(t, "POST", "/v1/runbooks/notify-only/runs", []byte(`{"gateway":"gw-hq"}`)))
	add(s.call(t, "POST", "/v1/runs/"+run+"/approve", []byte(`{}`)))
	add(s.call(t, "GET", "/v1/incidents", nil))
	add(s.call(t, "GET", "/v1/runs/"+run, nil))
	add(s.call(t, "GET", "/v1/gateways", nil))
	add(s.call(t, "GET", "/v1/audit/verify", nil))
	add(s.call(t, "GET", "/metrics", nil))
	add(s.call(t, "GET", "/v1/openapi.yaml", nil))
	// Internal errors: the store goes away under the API.
	if err := s.d.Store.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/v1/incidents", "/v1/runs", "/v1/gateways", "/v1/audit/verify", "/readyz"} {
		r := s.call(t, "GET", p, nil)
		if r.status < 500 {
			t.Errorf("GET %s with the store closed: %s, want 5xx", p, r)
		}
		add(r)
	}
	body := []byte(indicatorJSON("crash", "gw-hq", "high"))
	r = s.call(t, "POST", "/v1/indicators", body, sign(body))
	// The replay check needs the store: without it the signed delivery is
	// refused as transient (the sender retries), not taken unchecked.
	if e := expectError(t, r, http.StatusServiceUnavailable); strings.Contains(e.Error, "sql") {
		t.Errorf("a 503 exposes internals: %q", e.Error)
	}
	add(r)

	if !strings.Contains(logs.String(), "internal error serving request") {
		t.Errorf("the internal errors were not logged; log:\n%s", logs.String())
	}
	for what, secret := range secrets {
		for _, a := range answers {
			if bytes.Contains(a.body, []byte(secret)) {
				t.Errorf("the %s secret appears in an answer: %s", what, a)
			}
			for k, vs := range a.header {
				for _, v := range vs {
					if strings.Contains(v, secret) {
						t.Errorf("the %s secret appears in answer header %s", what, k)
					}
				}
			}
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the %s secret appears in the log", what)
		}
	}
}

// TestNoSecretInConnectError: a vCenter that cannot be reached fails the
// build with an error that names the problem, not the password.
func TestNoSecretInConnectError(t *testing.T) {
	const password = "vsphere-pw-SECRET-31c9"
	logs := &testsupport.SyncBuffer{}
	cfg := config.Defaults()
	cfg.Store.Path = filepath.Join(t.TempDir(), "warden.db")
	cfg.Server.APIToken = testToken
	cfg.Inventory = testInventory()
	closed := httptest.NewServer(http.NotFoundHandler())
	cfg.VSphere.URL = closed.URL + "/sdk" // loopback; closed below
	closed.Close()
	cfg.VSphere.Username = "warden@vsphere.local"
	cfg.VSphere.Password = password
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Build(t.Context(), cfg, daemon.Options{Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err == nil {
		d.Close(t.Context())
		t.Fatal("building against an unreachable vCenter succeeded")
	}
	if !strings.Contains(err.Error(), "vCenter") {
		t.Errorf("error %q does not say what failed", err)
	}
	if strings.Contains(err.Error(), password) || strings.Contains(logs.String(), password) {
		t.Errorf("the vCenter password leaks: error %q, log %q", err, logs.String())
	}
}

func TestUnknownRoutesAndMethodsAnswerJSON(t *testing.T) {
	s := newStack(t, nil, nil)
	for _, tc := range []struct {
		method, path string
		want         int
		allow, text  string
	}{
		{"GET", "/v1/nope", http.StatusNotFound, "", "no such route: GET /v1/nope"},
		{"GET", "/v2/indicators", http.StatusNotFound, "", "no such route"},
		{"DELETE", "/v1/indicators", http.StatusMethodNotAllowed, "POST", "method DELETE is not allowed on /v1/indicators"},
		{"PUT", "/v1/runs/run-1/approve", http.StatusMethodNotAllowed, "POST", "allowed: POST"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := s.call(t, tc.method, tc.path, nil)
			if r.status != tc.want || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s: %s; want %d JSON", r.status, r.header.Get("Content-Type"), r.body, tc.want)
			}
			if tc.allow != "" && !strings.Contains(r.header.Get("Allow"), tc.allow) {
				t.Errorf("Allow = %q, want %s", r.header.Get("Allow"), tc.allow)
			}
			var e struct{ Error string }
			if err := json.Unmarshal(r.body, &e); err != nil || !strings.Contains(e.Error, tc.text) {
				t.Errorf("body %s; want an error saying %q", r.body, tc.text)
			}
		})
	}
	// A path the mux cleans is still redirected, not refused.
	if r := s.call(t, "GET", "/v1//gateways", nil); r.status >= 400 {
		t.Errorf("GET /v1//gateways = %d %s; want a redirect to the clean path", r.status, r.body)
	}
}
