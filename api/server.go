// Package api serves Warden's HTTP API under /v1 (JSON, described in
// openapi.yaml beside this file), plus /healthz, /readyz and /metrics.
// What it sends and takes are the types of api/v1, converted from the
// controller's and the store's values in convert.go: a row of the store is
// never the wire format.
//
// It owns authentication and authorisation (a bearer token or ID token
// per person or detector, found by package auth; each route asks for one
// permission, which the caller's role must grant; an optional HMAC webhook
// signature), body limits and the mapping of errors to status codes: a bad
// request gets a 4xx whose message names the field, never a 5xx. Who acts
// is the authenticated principal, never a name in the body. It must not
// decide or act: it hands decoded input to the controller.
package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/warden-ir/warden/agent/wire"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/intake"
	"github.com/warden-ir/warden/internal/clock"
	"github.com/warden-ir/warden/policies"
	"github.com/warden-ir/warden/report"
	"github.com/warden-ir/warden/store"
)

// OpenAPI is the API description served at /v1/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

// Options configure the server.
type Options struct {
	Controller *controller.Controller
	Policies   *policies.Set
	Ledger     *evidence.Ledger
	// Auth authenticates callers. nil builds one over the controller's
	// store, with Token as the deprecated shared admin token.
	Auth *auth.Authenticator
	// Token is the deprecated shared token (server.api_token), used only
	// when Auth is nil.
	Token        string
	MaxBodyBytes int64
	// MaxIntelBytes bounds a STIX bundle or a MISP event (default
	// DefaultMaxIntelBytes).
	MaxIntelBytes int64
	Alertmanager  intake.AlertmanagerMapping
	// Formats maps the detector formats' events (Suricata, Zeek, Wazuh,
	// Falco) to gateways and kinds.
	Formats Formats
	// Signature, when set, is required on intake routes.
	Signature *intake.SignatureVerifier
	// ReplayLedger is where Signature remembers accepted signatures. nil
	// means the controller's store, so that a signed body replayed after a
	// restart is still refused (a memory starts empty).
	ReplayLedger intake.ReplayLedger
	Gatherer     prometheus.Gatherer
	Metrics      *controller.Metrics
	// StoreHealth, when set, says whether the store can commit: /readyz
	// answers 503 while it cannot, and intake reports its commits to it.
	StoreHealth StoreHealth
	// StoreRetryAfter is the Retry-After of a 503 for a store that cannot
	// commit (default 5s): about when the next probe may show it can.
	StoreRetryAfter time.Duration
	Log             *slog.Logger
	// Sensors, when set, asks a gateway's agent what its sensors have
	// learned (GET /v1/gateways/{id}/sensors; 503 without).
	Sensors SensorsReader
	// Blocks, when set, serves OpenC2 commands at /.well-known/openc2 over
	// the block unit (openc2.go).
	Blocks BlockService
	// Clock dates decoded indicators (default clock.Real).
	Clock clock.Clock
	// StoreDriver ("sqlite", "postgres") and ReplicaID (this process's
	// lease owner id) are what GET /v1/status says about this replica;
	// LeaseTTL, after how long without a heartbeat it calls one silent.
	StoreDriver string
	ReplicaID   string
	LeaseTTL    time.Duration
}

// StoreHealth is whether the store's commits go through.
type StoreHealth interface {
	// Writable returns nil when the store's last commit went through, and
	// the error that made it fail otherwise.
	Writable() error
	// ObserveCommit records the outcome of a commit the API made (nil: it
	// went through), so that a failure shows before the next probe.
	ObserveCommit(err error)
}

// Server is the HTTP handler.
type Server struct {
	opt    Options
	mux    *http.ServeMux
	routes []Route
}

// Route is one registered method and path (for the OpenAPI contract test),
// and the permission it asks for (0: none, the route is public).
type Route struct {
	Method, Path string
	Permission   auth.Permission
}

// New builds the handler. Every route but health, readiness, metrics and
// the API description authenticates its caller (safety invariant 8).
func New(opt Options) (*Server, error) {
	if opt.Auth == nil {
		if opt.Controller == nil {
			return nil, errors.New("creating API server: an authenticator or a controller (whose store holds the users) is required")
		}
		a, err := auth.NewAuthenticator(auth.Options{Store: Credentials(opt.Controller.Store()), LegacyToken: opt.Token})
		if err != nil {
			return nil, fmt.Errorf("creating API server: %w", err)
		}
		opt.Auth = a
	}
	if opt.MaxBodyBytes <= 0 {
		opt.MaxBodyBytes = 1 << 20
	}
	if opt.MaxIntelBytes <= 0 {
		opt.MaxIntelBytes = max(DefaultMaxIntelBytes, opt.MaxBodyBytes)
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real
	}
	if opt.Metrics == nil {
		opt.Metrics = controller.NewMetrics(nil)
	}
	if opt.StoreRetryAfter <= 0 {
		opt.StoreRetryAfter = 5 * time.Second
	}
	if opt.Signature != nil {
		if opt.ReplayLedger == nil && opt.Controller != nil {
			opt.ReplayLedger = opt.Controller.Store()
		}
		if opt.ReplayLedger != nil {
			opt.Signature = opt.Signature.WithLedger(opt.ReplayLedger)
		}
	}
	s := &Server{opt: opt, mux: http.NewServeMux()}
	s.handle("GET", "/healthz", public, s.healthz)
	s.handle("GET", "/readyz", public, s.readyz)
	if opt.Gatherer != nil {
		h := promhttp.HandlerFor(opt.Gatherer, promhttp.HandlerOpts{})
		s.handle("GET", "/metrics", public, h.ServeHTTP)
	}
	s.handle("GET", "/v1/openapi.yaml", public, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(OpenAPI)
	})
	s.handle("POST", "/v1/indicators", auth.Submit, s.postIndicators)
	s.handle("POST", "/v1/intake/alertmanager", auth.Submit, s.postAlertmanager)
	for _, f := range opt.Formats.routes() {
		s.handle("POST", "/v1/intake/"+f.name, auth.Submit, s.postFormat(f))
	}
	if opt.Blocks != nil {
		s.handle("POST", OpenC2Path, auth.Respond, newOpenC2Handler(opt.Blocks, actor, opt.Clock, DefaultOpenC2RateLimit, opt.MaxBodyBytes, opt.Log).ServeHTTP)
	}
	for _, f := range threatFormats() {
		s.handle("POST", "/v1/intake/"+f.name, auth.Submit, s.postThreat(f))
	}
	s.handle("GET", "/v1/blocks", auth.Read, s.listBlocks)
	s.handle("POST", "/v1/blocks", auth.Respond, s.postBlock)
	s.handle("GET", "/v1/blocks/{number}", auth.Read, s.getBlock)
	s.handle("POST", "/v1/blocks/{number}/approve", auth.Approve, s.decideBlock(func(c *controller.Controller) blockDecider { return c.ApproveBlock }))
	s.handle("POST", "/v1/blocks/{number}/refuse", auth.Approve, s.decideBlock(func(c *controller.Controller) blockDecider { return c.RefuseBlock }))
	s.handle("POST", "/v1/blocks/{number}/withdraw", auth.Respond, s.decideBlock(func(c *controller.Controller) blockDecider { return c.WithdrawBlock }))
	s.handle("POST", "/v1/plan", auth.Respond, s.postPlan)
	s.handle("GET", "/v1/whoami", auth.Read, s.whoami)
	s.handle("GET", "/v1/status", auth.Read, s.status)
	s.handle("GET", "/v1/incidents", auth.Read, s.listIncidents)
	s.handle("GET", "/v1/incidents/{id}", auth.Read, s.getIncident)
	s.handle("GET", "/v1/incidents/{id}/report", auth.Read, s.getReport)
	s.handle("GET", "/v1/incidents/{id}/evidence", auth.Read, s.listEvidence)
	s.handle("POST", "/v1/incidents/{id}/evidence/export", auth.Respond, s.exportEvidence)
	s.handle("GET", "/v1/evidence/{id}", auth.Respond, s.showEvidence)
	s.handle("POST", "/v1/incidents/{id}/investigations", auth.Respond, s.startInvestigation)
	s.handle("GET", "/v1/runs", auth.Read, s.listRuns)
	s.handle("GET", "/v1/runs/{id}", auth.Read, s.getRun)
	s.handleExplained("POST", "/v1/runs/{id}/approve", auth.Approve, s.fourEyesRefusal, s.approveRun)
	s.handle("POST", "/v1/indicators/{id}/resolve", auth.Approve, s.resolveIndicator)
	s.handle("POST", "/v1/runs/{id}/cancel", auth.Approve, s.cancelRun)
	s.handle("POST", "/v1/runbooks/{name}/runs", auth.Respond, s.startRunbook)
	s.handle("GET", "/v1/gateways", auth.Read, s.listGateways)
	s.handle("GET", "/v1/gateways/{id}", auth.Read, s.getGateway)
	s.handle("GET", "/v1/gateways/{id}/sensors", auth.Read, s.getSensors)
	s.handle("POST", "/v1/gateways/{id}/captures", auth.Respond, s.startCapture)
	s.handle("GET", "/v1/audit/verify", auth.Read, s.verifyAudit)
	s.handle("POST", "/v1/breaker/reset", auth.Administer, s.resetBreaker)
	s.handle("POST", "/v1/drift/check", auth.Respond, s.driftCheck)
	s.handle("POST", "/v1/patch/waves", auth.Respond, s.patchWave)
	s.handle("GET", "/v1/patch/waves/{id}", auth.Read, s.getPatchWave)
	s.handle("GET", "/v1/users", auth.Administer, s.listUsers)
	s.handle("POST", "/v1/users", auth.Administer, s.addUser)
	s.handle("POST", "/v1/users/{name}/disable", auth.Administer, s.disableUser)
	s.handle("POST", "/v1/users/{name}/token", auth.Administer, s.rotateToken)
	return s, nil
}

// public marks a route that needs no authentication.
const public auth.Permission = 0

// Routes lists every registered route.
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	// No route: ask the mux what it would answer (404, 405 with Allow, a
	// redirect to the clean path) and give errors the API's JSON shape.
	probe := &statusProbe{header: http.Header{}}
	h.ServeHTTP(probe, r)
	switch {
	case probe.status == http.StatusMethodNotAllowed:
		allow := probe.header.Get("Allow")
		w.Header().Set("Allow", allow)
		writeJSON(w, http.StatusMethodNotAllowed, v1.Error{Error: fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)})
	case probe.status >= 300 && probe.status < 400:
		s.mux.ServeHTTP(w, r)
	default:
		writeJSON(w, http.StatusNotFound, v1.Error{Error: fmt.Sprintf("no such route: %s %s (see /v1/openapi.yaml)", r.Method, r.URL.Path)})
	}
}

// statusProbe records what a handler would answer, and nothing else.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(status int) {
	if p.status == 0 {
		p.status = status
	}
}

func (s *Server) handle(method, path string, perm auth.Permission, h http.HandlerFunc) {
	s.handleExplained(method, path, perm, nil, h)
}

// refusalExplainer adds to a 403 for the caller's role what else would
// refuse them ("" when nothing would).
type refusalExplainer func(r *http.Request, p auth.Principal) string

// handleExplained is handle with explain adding to the role's 403.
func (s *Server) handleExplained(method, path string, perm auth.Permission, explain refusalExplainer, h http.HandlerFunc) {
	s.routes = append(s.routes, Route{method, path, perm})
	var handler http.Handler = h
	if perm != public {
		handler = s.authenticate(h, perm, isIntake(path), explain)
	}
	s.mux.Handle(method+" "+path, handler)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) fail(w http.ResponseWriter, status int, reason string, err error) {
	e := v1.Error{Error: err.Error()}
	var fe *indicator.FieldError
	if errors.As(err, &fe) {
		e.Field = fe.Field
	}
	if reason != "" {
		s.opt.Metrics.IndicatorsRejected.WithLabelValues(reason).Inc()
	}
	if status >= 500 {
		s.opt.Log.Error("internal error serving request", "err", err)
		e.Error = "internal error; see the controller log"
	}
	writeJSON(w, status, e)
}

// isIntake reports whether path takes indicators: only those routes count
// in warden_indicators_rejected_total.
func isIntake(path string) bool {
	return path == "/v1/indicators" || strings.HasPrefix(path, "/v1/intake/")
}

// intakeReason is reason on intake routes (signed ones) and "" (not
// counted as a rejected indicator) elsewhere.
func intakeReason(intake bool, reason string) string {
	if intake {
		return reason
	}
	return ""
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// authenticate finds the caller (401 when it cannot, 429 for an address
// that failed too often), checks that their role grants perm (403 naming
// the role needed otherwise), and hands the request on with the principal
// in its context: every audit entry written for it names the caller and
// the token they used.
func (s *Server) authenticate(next http.Handler, perm auth.Permission, intake bool, explain refusalExplainer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.caller(r)
		var th *auth.ThrottledError
		switch {
		case errors.As(err, &th):
			w.Header().Set("Retry-After", strconv.Itoa(int(th.RetryAfter.Round(time.Second)/time.Second)))
			s.fail(w, http.StatusTooManyRequests, intakeReason(intake, "throttled"), err)
			return
		case auth.Refused(err):
			w.Header().Set("WWW-Authenticate", `Bearer realm="warden"`)
			s.fail(w, http.StatusUnauthorized, intakeReason(intake, "unauthorized"), err)
			return
		case err != nil:
			s.setRetryAfter(w)
			s.opt.Log.Error("cannot authenticate: the user store or the OIDC issuer did not answer", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, v1.Error{Error: "cannot check credentials now; try again after Retry-After"})
			return
		}
		ctx := auth.WithPrincipal(r.Context(), p)
		ctx = audit.WithCredential(ctx, p.Actor(), p.TokenID)
		r = r.WithContext(ctx)
		if !p.Role.Can(perm) {
			msg := fmt.Sprintf("%s (role %s) may not %s: %s needs the %s role or higher", p.Name, p.Role, perm, r.Method+" "+r.URL.Path, auth.Least(perm))
			if explain != nil {
				if more := explain(r, p); more != "" {
					msg += "; and " + more
				}
			}
			s.fail(w, http.StatusForbidden, intakeReason(intake, "forbidden"), errors.New(msg))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// delegatedKey is the context key of a request this process makes for a
// principal it authenticated itself (AsPrincipal).
type delegatedKey struct{}

// AsPrincipal serves the API as p, whom the caller has already
// authenticated: the web console calls the API this way for the person a
// session belongs to, so that every permission, four-eyes rule, validation
// and audit entry (with p's token id) is exactly what the same request
// with p's bearer token would meet. Only code in this process reaches it:
// nothing a network request carries makes it one of these, and an
// Authorization header on it is ignored.
func (s *Server) AsPrincipal(p auth.Principal) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.Clone(context.WithValue(r.Context(), delegatedKey{}, p))
		r.Header.Del("Authorization")
		s.ServeHTTP(w, r)
	})
}

// caller is who makes r: the principal AsPrincipal serves, or whoever
// r's bearer token names.
func (s *Server) caller(r *http.Request) (auth.Principal, error) {
	if p, ok := r.Context().Value(delegatedKey{}).(auth.Principal); ok {
		if p.Name == "" || p.Role == "" {
			return auth.Principal{}, auth.ErrNoCredentials
		}
		return p, nil
	}
	return s.opt.Auth.Authenticate(r)
}

// principal is the authenticated caller of r (set by authenticate).
func principal(r *http.Request) auth.Principal {
	p, _ := auth.FromContext(r.Context())
	return p
}

// actor is how the audit names the caller of r.
func actor(r *http.Request) string { return principal(r).Actor() }

// checkBy refuses a body's "by" that names anyone but the caller: who acts
// comes from authentication. An absent "by" is the caller.
func (s *Server) checkBy(w http.ResponseWriter, r *http.Request, by string) bool {
	by = strings.TrimSpace(by)
	p := principal(r)
	if by == "" || by == p.Name || by == p.Actor() {
		return true
	}
	s.fail(w, http.StatusBadRequest, "", &indicator.FieldError{Field: "by",
		Reason: fmt.Sprintf("names %q but the caller is %s: who acts comes from the token; leave by out", clip(by, 64), p.Name)})
	return false
}

// readBody reads a size-limited body. It writes the error response itself
// and returns ok=false on failure.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, signed bool) ([]byte, bool) {
	return s.readBodyUpTo(w, r, signed, s.opt.MaxBodyBytes)
}

// readBodyUpTo is readBody with a limit of its own (threat-intelligence
// feeds are larger than alerts).
func (s *Server) readBodyUpTo(w http.ResponseWriter, r *http.Request, signed bool, limit int64) ([]byte, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.fail(w, http.StatusRequestEntityTooLarge, intakeReason(signed, "too_large"), fmt.Errorf("body is larger than %d bytes", limit))
			return nil, false
		}
		s.fail(w, http.StatusBadRequest, intakeReason(signed, "unreadable"), fmt.Errorf("reading body: %w", err))
		return nil, false
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		// Parsed, not prefix-matched: "application/jsonx" is not JSON, and
		// media types are case-insensitive.
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			s.fail(w, http.StatusUnsupportedMediaType, intakeReason(signed, "content_type"), fmt.Errorf("Content-Type must be application/json, got %q", clip(ct, 100)))
			return nil, false
		}
	}
	if signed && s.opt.Signature != nil {
		if err := s.opt.Signature.VerifyContext(r.Context(), r.Header.Get(intake.SignatureHeader), body); err != nil {
			status := http.StatusUnauthorized
			switch {
			case errors.Is(err, intake.ErrSignatureReplayed):
				// The signature was good and this very delivery was taken
				// before: a conflict, not an authentication failure.
				status = http.StatusConflict
			case errors.Is(err, intake.ErrReplayCacheFull), errors.Is(err, intake.ErrReplayCheckUnavailable):
				// Refusing is safer than accepting what may be a replay;
				// the sender retries.
				status = http.StatusServiceUnavailable
			}
			s.fail(w, status, "signature", fmt.Errorf("%s: %w", intake.SignatureHeader, err))
			return nil, false
		}
	}
	return body, true
}

func (s *Server) postIndicators(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r, true)
	if !ok {
		return
	}
	inds, err := intake.DecodeNative(body, s.opt.Controller.Inventory(), s.opt.Clock.Now())
	if err != nil {
		s.fail(w, http.StatusBadRequest, "invalid", err)
		return
	}
	items := make([]controller.Item, len(inds))
	for i, in := range inds {
		items[i] = controller.Item{Indicator: in, Matched: true}
	}
	// With the intake journal, bulk indicators are answered once
	// journaled (queued) and decided right after; a high or critical one,
	// or a request with ?wait=decided, is decided before the answer.
	switch wait := r.URL.Query().Get("wait"); wait {
	case "":
		s.respondAccepted(w, r, items, nil, nil, s.opt.Controller.Enqueue)
	case "decided":
		s.accept(w, r, items, nil)
	default:
		s.fail(w, http.StatusBadRequest, "invalid", &indicator.FieldError{Field: "wait", Reason: fmt.Sprintf("%q is not a wait; the one is \"decided\"", wait)})
	}
}

func (s *Server) postAlertmanager(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r, true)
	if !ok {
		return
	}
	decoded, err := intake.DecodeAlertmanager(body, s.opt.Controller.Inventory(), s.opt.Alertmanager, s.opt.Clock.Now())
	if err != nil {
		s.fail(w, http.StatusBadRequest, "invalid", err)
		return
	}
	// The same bound as a native batch: every alert is stored in one
	// transaction, and a body of 1 MiB of "{}" alerts would otherwise hold
	// the store for minutes.
	if len(decoded) > intake.MaxIndicatorsPerRequest {
		s.fail(w, http.StatusBadRequest, "invalid", &indicator.FieldError{Field: "alerts",
			Reason: fmt.Sprintf("more than %d alerts in one message; set max_alerts in Alertmanager's webhook_config", intake.MaxIndicatorsPerRequest)})
		return
	}
	items := make([]controller.Item, len(decoded))
	var skipped []v1.SkippedAlert
	for i, d := range decoded {
		items[i] = controller.Item{Indicator: d.Indicator, Matched: d.Matched, Reason: d.Reason}
		if d.Skipped {
			skipped = append(skipped, v1.SkippedAlert{Index: d.Index, Reason: d.Reason})
		}
	}
	if len(skipped) > 0 {
		s.opt.Log.Warn("alertmanager message has alerts that cannot be understood; the others are taken",
			"skipped", len(skipped), "alerts", len(decoded), "first_index", skipped[0].Index, "first_reason", skipped[0].Reason)
	}
	s.accept(w, r, items, skipped)
}

// accept hands the items to the controller. skipped lists the alerts that
// could not be understood: they are in the results too, recorded as
// unmatched with the same reason, and start nothing.
func (s *Server) accept(w http.ResponseWriter, r *http.Request, items []controller.Item, skipped []v1.SkippedAlert) {
	s.acceptIgnoring(w, r, items, skipped, nil)
}

// acceptIgnoring is accept for a detector's format, which also says how
// many records of which type were not alerts and were dropped.
func (s *Server) acceptIgnoring(w http.ResponseWriter, r *http.Request, items []controller.Item, skipped []v1.SkippedAlert, ignored map[string]int) {
	s.respondAccepted(w, r, items, skipped, ignored, s.opt.Controller.Accept)
}

// respondAccepted hands the items to take (the controller's Accept, or
// Enqueue for journaled intake) and answers with what became of them.
func (s *Server) respondAccepted(w http.ResponseWriter, r *http.Request, items []controller.Item, skipped []v1.SkippedAlert, ignored map[string]int,
	take func(context.Context, string, []controller.Item) ([]controller.Accepted, error)) {
	res, err := take(r.Context(), actor(r), items)
	if s.opt.StoreHealth != nil {
		s.opt.StoreHealth.ObserveCommit(err)
	}
	if reason, ok := store.UnwritableReason(err); ok {
		// Nothing was stored, and the sender can send the same alerts
		// again once the store commits: a 503 with Retry-After says so,
		// a 500 would not.
		s.opt.Metrics.IndicatorsRejected.WithLabelValues("store_unwritable").Inc()
		s.opt.Log.Error("refusing intake: the store cannot commit", "reason", reason, "err", err)
		s.setRetryAfter(w)
		writeJSON(w, http.StatusServiceUnavailable, v1.Error{Error: "the store cannot commit (" + reason + "); nothing was stored: send again after Retry-After"})
		return
	}
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "store", err)
		return
	}
	writeJSON(w, http.StatusAccepted, v1.IntakeResponse{Accepted: len(res), Results: convertAll(res, acceptedV1), Skipped: skipped, Ignored: ignored})
}

func (s *Server) postPlan(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r, false)
	if !ok {
		return
	}
	inds, err := intake.DecodeNative(body, s.opt.Controller.Inventory(), s.opt.Clock.Now())
	if err != nil {
		s.fail(w, http.StatusBadRequest, "", err)
		return
	}
	if len(inds) != 1 {
		s.fail(w, http.StatusBadRequest, "", &indicator.FieldError{Field: "indicators", Reason: "plan takes exactly one indicator"})
		return
	}
	resp, err := Explain(r.Context(), s.opt.Controller, s.opt.Policies, inds[0])
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// Explain decides for one indicator and plans the chosen runbook against
// current state, without applying anything: the answer of /v1/plan, and
// what `warden plan` prints when it reads the store itself.
func Explain(ctx context.Context, c *controller.Controller, pol *policies.Set, in indicator.Indicator) (v1.PlanResponse, error) {
	gw, ok := c.Inventory().Gateway(in.Gateway)
	if !ok {
		return v1.PlanResponse{}, &indicator.FieldError{Field: "gateway", Reason: fmt.Sprintf("unknown gateway %q", in.Gateway)}
	}
	site, _ := c.Inventory().Site(gw.Site)
	posture, err := c.Store().Posture(ctx, gw.ID)
	if err != nil {
		return v1.PlanResponse{}, err
	}
	dec := pol.Decide(policies.Input{Indicator: in, Gateway: gw, Site: site, Context: policies.Context{Now: in.ObservedAt, Posture: posture.Desired}})
	var b strings.Builder
	fmt.Fprintf(&b, "Indicator %s (%s, confidence %.2f) about %s at site %s; business hours there: %t\n", in.Kind, in.Severity, in.Confidence, gw.ID, gw.Site, dec.BusinessHours)
	b.WriteString("Policies:\n")
	for _, e := range dec.Explanations {
		mark := "  -"
		if e.Matched {
			mark = "  *"
		}
		fmt.Fprintf(&b, "%s %s: %s\n", mark, e.Policy, e.Reason)
	}
	resp := v1.PlanResponse{Decision: decisionV1(dec)}
	if !dec.Matched || dec.Runbook == "" {
		b.WriteString("No policy matched: nothing would happen.\n")
		resp.Text = b.String()
		return resp, nil
	}
	p, err := c.PlanDecision(ctx, gw.ID, dec.Runbook, dec.Policy, dec.Approval == policies.ApprovalRequired, dec.CountsAgainstBudget)
	if err != nil {
		return v1.PlanResponse{}, err
	}
	b.WriteString(p.Text())
	pv := planV1(p)
	resp.Plan, resp.Text = &pv, b.String()
	return resp, nil
}

func statusFor(err error) int {
	var fe *indicator.FieldError
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, evidence.ErrNotFound), errors.Is(err, evidence.ErrUnknownIncident):
		return http.StatusNotFound
	case errors.Is(err, evidence.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, evidence.ErrTampered):
		return http.StatusConflict
	case errors.Is(err, controller.ErrInvalid), errors.As(err, &fe):
		return http.StatusBadRequest
	case errors.Is(err, controller.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, controller.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, controller.ErrNotRunning), errors.Is(err, controller.ErrNotLeader):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// status lists the replicas on the store and the lease: who leads, at
// which epoch, how fresh.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := s.opt.Controller.Store()
	l, held, err := st.CurrentLease(r.Context())
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "", err)
		return
	}
	reps, err := st.Replicas(r.Context())
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "", err)
		return
	}
	now := time.Now()
	if s.opt.Clock != nil {
		now = s.opt.Clock.Now()
	}
	out := v1.Status{Store: s.opt.StoreDriver, AnsweredBy: s.opt.ReplicaID, Now: now, Replicas: []v1.Replica{}}
	leading := ""
	if held {
		out.Lease = &v1.Lease{Owner: l.Owner, Host: l.Host, PID: l.PID, Epoch: l.Epoch, AcquiredAt: l.AcquiredAt, RenewedAt: l.RenewedAt,
			ExpiresAt: l.ExpiresAt, AgeSeconds: now.Sub(l.RenewedAt).Seconds(), Expired: !now.Before(l.ExpiresAt)}
		if !out.Lease.Expired {
			leading = l.Owner
		}
	}
	for _, rp := range reps {
		out.Replicas = append(out.Replicas, v1.Replica{ID: rp.Owner, Host: rp.Host, PID: rp.PID, API: rp.API, Version: rp.Version,
			StartedAt: rp.StartedAt, SeenAt: rp.SeenAt, Leader: rp.Owner == leading,
			Silent: s.opt.LeaseTTL > 0 && now.Sub(rp.SeenAt) > s.opt.LeaseTTL})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, v1.Health{Status: "ok"})
}

// readyTimeout bounds /readyz's ping of the store.
const readyTimeout = 2 * time.Second

// readyz is ready when the store answers and its last commit went
// through: a controller that cannot commit cannot take an indicator.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	// Bounded: a database that does not answer (a replica cut off from
	// it) makes this replica unready, not a hung probe.
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := s.opt.Controller.Store().DB().PingContext(ctx); err != nil {
		s.setRetryAfter(w)
		writeJSON(w, http.StatusServiceUnavailable, v1.Health{Status: "store unavailable"})
		return
	}
	if s.opt.StoreHealth != nil {
		if err := s.opt.StoreHealth.Writable(); err != nil {
			// The reason, not the error: this route is unauthenticated and
			// the error names paths.
			reason, ok := store.UnwritableReason(err)
			if !ok {
				reason = "commit_failed"
			}
			s.setRetryAfter(w)
			writeJSON(w, http.StatusServiceUnavailable, v1.Health{Status: "store cannot commit", Reason: reason})
			return
		}
	}
	writeJSON(w, http.StatusOK, v1.Health{Status: "ready"})
}

// setRetryAfter tells a client refused for the store's sake when to try
// again, in whole seconds.
func (s *Server) setRetryAfter(w http.ResponseWriter) {
	secs := int((s.opt.StoreRetryAfter + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
}

func (s *Server) listIncidents(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	list, err := s.opt.Controller.Store().Incidents(r.Context(), limit)
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "", err)
		return
	}
	if list == nil {
		list = []store.Incident{}
	}
	writeJSON(w, http.StatusOK, v1.IncidentList{Incidents: convertAll(list, incidentV1)})
}

// IncidentDetail is an incident with its indicators and runs, as the store
// holds them (the API sends it as a v1.IncidentDetail).
type IncidentDetail struct {
	store.Incident
	Indicators []store.IndicatorRecord `json:"indicators"`
	Runs       []store.Run             `json:"runs"`
}

// LoadIncident gathers an incident's detail.
func LoadIncident(ctx context.Context, st store.Backend, id string) (IncidentDetail, error) {
	inc, err := st.Incident(ctx, id)
	if err != nil {
		return IncidentDetail{}, err
	}
	inds, err := st.IndicatorsOfIncident(ctx, id)
	if err != nil {
		return IncidentDetail{}, err
	}
	runs, err := st.Runs(ctx, store.RunFilter{Incident: id})
	if err != nil {
		return IncidentDetail{}, err
	}
	for i := range runs {
		full, err := st.Run(ctx, runs[i].ID)
		if err != nil {
			return IncidentDetail{}, err
		}
		runs[i] = full
	}
	return IncidentDetail{Incident: inc, Indicators: inds, Runs: runs}, nil
}

func (s *Server) getIncident(w http.ResponseWriter, r *http.Request) {
	d, err := LoadIncident(r.Context(), s.opt.Controller.Store(), r.PathValue("id"))
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	writeJSON(w, http.StatusOK, incidentDetailV1(d))
}

func (s *Server) getReport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	lang, format := q.Get("lang"), q.Get("format")
	if lang == "" {
		lang = report.LangJapanese
	}
	if format == "" {
		format = report.FormatHTML
	}
	c := s.opt.Controller
	m, err := report.Load(r.Context(), c.Store(), c.Inventory(), s.opt.Ledger, r.PathValue("id"), report.FourEyes(c.FourEyes()))
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	b, err := report.Render(m, lang, format)
	var ue *report.UnsupportedError
	if errors.As(err, &ue) {
		field := "lang"
		if ue.What == "format" {
			field = "format"
		}
		s.fail(w, http.StatusBadRequest, "", &indicator.FieldError{Field: field, Reason: err.Error()})
		return
	}
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "", err)
		return
	}
	w.Header().Set("Content-Type", report.ContentType(format))
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	_, _ = w.Write(b)
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.RunFilter{Incident: q.Get("incident"), Gateway: q.Get("gateway")}
	if st := q.Get("state"); st != "" {
		f.States = strings.Split(st, ",")
	}
	list, err := s.opt.Controller.Store().Runs(r.Context(), f)
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "", err)
		return
	}
	if list == nil {
		list = []store.Run{}
	}
	writeJSON(w, http.StatusOK, v1.RunList{Runs: convertAll(list, runV1)})
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	run, err := s.opt.Controller.Store().Run(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	writeJSON(w, http.StatusOK, runV1(run))
}

// personRequest is the body of the routes where a named person acts on
// one thing: approve, cancel, resolve and breaker reset. Each of them has
// always taken all three fields (v1.ApproveRequest and the others name
// what each uses), so one type decodes them all.
type personRequest struct {
	By      string `json:"by"`
	Comment string `json:"comment"`
	Reason  string `json:"reason"`
}

func (s *Server) decodeSmall(w http.ResponseWriter, r *http.Request, v any) bool {
	body, ok := s.readBody(w, r, false)
	if !ok {
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return true
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		s.fail(w, http.StatusBadRequest, "", fmt.Errorf("decoding body: %w", err))
		return false
	}
	// Exactly one JSON document: `{"by":"a"} {"by":"b"}` is not a request.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		s.fail(w, http.StatusBadRequest, "", errors.New("decoding body: unexpected data after the JSON object"))
		return false
	}
	return true
}

// runDecision is approve and cancel: a person, named, acts on one run.
func (s *Server) runDecision(w http.ResponseWriter, r *http.Request, verb string, act func(id, actor string, req personRequest) (store.Run, error)) {
	var req personRequest
	if !s.decodeSmall(w, r, &req) || !s.checkBy(w, r, req.By) {
		return
	}
	run, err := act(r.PathValue("id"), actor(r), req)
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	writeJSON(w, http.StatusOK, runV1(run))
}

// fourEyesRefusal runs when the caller's role refuses an approval: the
// controller records the refused attempt in the audit, and says whether
// four eyes would refuse them too (they asked for the run or overrode a
// gate on it), which the 403 then says as well, to a caller who may read
// runs: a responder who requested a release learns that another person
// must approve it, not only that they lack a role.
func (s *Server) fourEyesRefusal(r *http.Request, p auth.Principal) string {
	why := fmt.Sprintf("role %s may not approve", p.Role)
	fe, err := s.opt.Controller.RefuseApproval(r.Context(), r.PathValue("id"), p.Actor(), why)
	if err != nil {
		s.opt.Log.Error("recording a refused approval", "run", r.PathValue("id"), "err", err)
	}
	if !p.Role.Can(auth.Read) {
		return ""
	}
	return fe
}

func (s *Server) approveRun(w http.ResponseWriter, r *http.Request) {
	s.runDecision(w, r, "approves", func(id, actor string, req personRequest) (store.Run, error) {
		return s.opt.Controller.Approve(r.Context(), id, actor, req.Comment)
	})
}

// resolveIndicator records that a person judged an indicator no longer a
// threat: the only way past a release's no-live-threat gate.
func (s *Server) resolveIndicator(w http.ResponseWriter, r *http.Request) {
	var req personRequest
	if !s.decodeSmall(w, r, &req) || !s.checkBy(w, r, req.By) {
		return
	}
	if strings.TrimSpace(req.Reason) == "" {
		s.fail(w, http.StatusBadRequest, "", &indicator.FieldError{Field: "reason", Reason: "is required: why the indicator is no longer a threat"})
		return
	}
	id := r.PathValue("id")
	if err := s.opt.Controller.ResolveIndicator(r.Context(), id, actor(r), req.Reason); err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	writeJSON(w, http.StatusOK, v1.Resolved{Indicator: id, ResolvedBy: actor(r)})
}

func (s *Server) cancelRun(w http.ResponseWriter, r *http.Request) {
	s.runDecision(w, r, "cancels", func(id, actor string, req personRequest) (store.Run, error) {
		return s.opt.Controller.Cancel(r.Context(), id, actor, req.Reason)
	})
}

func (s *Server) startRunbook(w http.ResponseWriter, r *http.Request) {
	var req v1.StartRunbookRequest
	if !s.decodeSmall(w, r, &req) || !s.checkBy(w, r, req.By) {
		return
	}
	name := r.PathValue("name")
	if req.DryRun {
		p, err := s.opt.Controller.PlanManual(r.Context(), controller.StartRequest{Runbook: name, Gateway: req.Gateway, Incident: req.Incident,
			Actor: actor(r), OverrideReason: req.OverrideReason})
		if err != nil {
			s.fail(w, statusFor(err), "", err)
			return
		}
		writeJSON(w, http.StatusOK, v1.RunbookDryRun{DryRun: true, Plan: planV1(p), Text: p.Text()})
		return
	}
	run, err := s.opt.Controller.StartRunbook(r.Context(), controller.StartRequest{Runbook: name, Gateway: req.Gateway, Incident: req.Incident,
		Actor: actor(r), OverrideReason: req.OverrideReason})
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	writeJSON(w, http.StatusAccepted, runV1(run))
}

// startInvestigation starts the investigation runbook for an incident's
// gateway, within the incident, as the caller.
func (s *Server) startInvestigation(w http.ResponseWriter, r *http.Request) {
	var req v1.StartInvestigationRequest
	if !s.decodeSmall(w, r, &req) {
		return
	}
	params := map[string]string{}
	if req.Since != "" {
		if d, err := time.ParseDuration(req.Since); err != nil || d <= 0 {
			s.fail(w, http.StatusBadRequest, "", fmt.Errorf("since: %q is not a positive duration (24h, 90m)", req.Since))
			return
		}
		params["since"] = req.Since
	}
	inc, err := s.opt.Controller.Store().Incident(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, statusFor(err), "", fmt.Errorf("incident %q: %w", r.PathValue("id"), err))
		return
	}
	run, err := s.opt.Controller.StartRunbook(r.Context(), controller.StartRequest{Runbook: v1.InvestigationRunbook, Gateway: inc.Gateway,
		Incident: inc.ID, Actor: actor(r), Params: params})
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	writeJSON(w, http.StatusAccepted, runV1(run))
}

// startCapture starts the packet-capture runbook on a gateway (within its
// open incident, if any) as the caller: op start with the capture's
// shape, or op stop, which files what was captured.
func (s *Server) startCapture(w http.ResponseWriter, r *http.Request) {
	var req v1.CaptureRequest
	if !s.decodeSmall(w, r, &req) {
		return
	}
	params := map[string]string{"op": req.Op}
	switch req.Op {
	case wire.CaptureOpStop:
		if req.Duration != "" || req.MaxBytes != 0 || req.Filter != "" {
			s.fail(w, http.StatusBadRequest, "", errors.New("duration, max_bytes, filter: a stop takes none of them"))
			return
		}
	case wire.CaptureOpStart:
		if req.Duration != "" {
			d, err := time.ParseDuration(req.Duration)
			if err != nil || d < time.Second || d > wire.MaxCaptureDuration {
				s.fail(w, http.StatusBadRequest, "", fmt.Errorf("duration: %q is not a duration between 1s and %s", req.Duration, wire.MaxCaptureDuration))
				return
			}
			params["duration"] = req.Duration
		}
		if req.MaxBytes != 0 {
			if req.MaxBytes < wire.MinCaptureBytes || req.MaxBytes > wire.MaxCaptureBytes {
				s.fail(w, http.StatusBadRequest, "", fmt.Errorf("max_bytes: %d is not between %d and %d", req.MaxBytes, wire.MinCaptureBytes, wire.MaxCaptureBytes))
				return
			}
			params["max_bytes"] = strconv.FormatInt(req.MaxBytes, 10)
		}
		if req.Filter != "" {
			if _, err := wire.ParseCaptureFilter(req.Filter); err != nil {
				s.fail(w, http.StatusBadRequest, "", fmt.Errorf("filter: %w", err))
				return
			}
			params["filter"] = req.Filter
		}
	default:
		s.fail(w, http.StatusBadRequest, "", fmt.Errorf("op: %q is neither start nor stop", req.Op))
		return
	}
	run, err := s.opt.Controller.StartRunbook(r.Context(), controller.StartRequest{Runbook: v1.CaptureRunbook, Gateway: r.PathValue("id"),
		Actor: actor(r), Params: params})
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	writeJSON(w, http.StatusAccepted, runV1(run))
}

func (s *Server) listGateways(w http.ResponseWriter, r *http.Request) {
	gws, err := s.opt.Controller.Gateways(r.Context())
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "", err)
		return
	}
	writeJSON(w, http.StatusOK, v1.GatewayList{Gateways: convertAll(gws, gatewayV1)})
}

func (s *Server) getGateway(w http.ResponseWriter, r *http.Request) {
	gws, err := s.opt.Controller.Gateways(r.Context())
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "", err)
		return
	}
	for _, g := range gws {
		if g.ID == r.PathValue("id") {
			writeJSON(w, http.StatusOK, gatewayV1(g))
			return
		}
	}
	s.fail(w, http.StatusNotFound, "", fmt.Errorf("gateway %q: %w", r.PathValue("id"), store.ErrNotFound))
}

func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request) {
	rep, err := audit.Verify(r.Context(), s.opt.Controller.Store().DB())
	if err == nil {
		// Journaled indicators are kept by their batch's Merkle root.
		_, err = controller.VerifyIntakeBatches(r.Context(), s.opt.Controller.Store())
	}
	var be *audit.BrokenError
	if errors.As(err, &be) {
		writeJSON(w, http.StatusOK, v1.AuditVerification{OK: false, FirstBadEntry: be.Seq, Reason: be.Reason})
		return
	}
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "", err)
		return
	}
	writeJSON(w, http.StatusOK, v1.AuditVerification{OK: true, Entries: rep.Entries, Head: rep.Head})
}

func (s *Server) driftCheck(w http.ResponseWriter, r *http.Request) {
	var req v1.DriftCheckRequest
	if !s.decodeSmall(w, r, &req) || !s.checkBy(w, r, req.By) {
		return
	}
	if strings.TrimSpace(req.Gateway) == "" {
		s.fail(w, http.StatusBadRequest, "", &indicator.FieldError{Field: "gateway", Reason: `is required: a gateway id, or "all" for the whole fleet`})
		return
	}
	res, err := s.opt.Controller.DriftCheck(r.Context(), req.Gateway, actor(r))
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	writeJSON(w, http.StatusOK, v1.DriftCheckResponse{Results: convertAll(res, driftResultV1)})
}

// patchWave accepts a wave and answers 202 at once: the wave is durable
// and runs in the controller (minutes for a large fleet, longer than any
// HTTP timeout); GET /v1/patch/waves/{id} shows its state and, once it
// ended, its report.
func (s *Server) patchWave(w http.ResponseWriter, r *http.Request) {
	var body v1.PatchWaveRequest
	if !s.decodeSmall(w, r, &body) || !s.checkBy(w, r, body.By) {
		return
	}
	req := patchWaveRequest(body)
	req.Actor = actor(r)
	wave, err := s.opt.Controller.StartPatchWave(r.Context(), req)
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	w.Header().Set("Location", "/v1/patch/waves/"+wave.ID)
	writeJSON(w, http.StatusAccepted, patchWaveV1(wave))
}

func (s *Server) getPatchWave(w http.ResponseWriter, r *http.Request) {
	wave, err := s.opt.Controller.PatchWaveOf(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	writeJSON(w, http.StatusOK, patchWaveV1(wave))
}

func (s *Server) resetBreaker(w http.ResponseWriter, r *http.Request) {
	var req personRequest
	if !s.decodeSmall(w, r, &req) || !s.checkBy(w, r, req.By) {
		return
	}
	if strings.TrimSpace(req.Reason) == "" {
		s.fail(w, http.StatusBadRequest, "", &indicator.FieldError{Field: "reason", Reason: "is required to reset the circuit breaker"})
		return
	}
	was, err := s.opt.Controller.ResetBreaker(r.Context(), actor(r), req.Reason)
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "", err)
		return
	}
	writeJSON(w, http.StatusOK, v1.BreakerReset{WasTripped: was})
}
