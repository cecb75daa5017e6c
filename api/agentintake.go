package api

// The agents' intake: POST /v1/agent/findings, served by its own handler
// on the controller's agent listener (mutual TLS, server.agent_listen),
// never on the public API. The gateway a finding is about is the one
// whose agent's certificate delivered it; the body cannot name one.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/intake"
	"github.com/warden-ir/warden/internal/clock"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/store"
)

// AgentFindingsPath is the route agents post their sensors' findings to.
const AgentFindingsPath = wire.FindingsPath

// SourceAgent is the Source of every indicator made from an agent's
// finding.
const SourceAgent = "warden-agent"

// agentActorPrefix starts the actor of what an agent delivers
// ("agent:gw-hq"), as the audit names it.
const agentActorPrefix = "agent:"

// maxAgentClockLead is how far ahead of the controller an agent's
// ObservedAt may be before the controller's time replaces it: a gateway's
// clock running ahead must not place a sign outside business hours.
const maxAgentClockLead = 5 * time.Minute

// AgentIntakeOptions configure the agents' intake.
type AgentIntakeOptions struct {
	// Controller takes the indicators; its inventory names the gateways.
	Controller *controller.Controller
	// MaxBodyBytes bounds a request (default 1 MiB, as the API).
	MaxBodyBytes int64
	// Metrics counts refused requests in warden_indicators_rejected_total
	// (default: counters of its own, registered nowhere).
	Metrics *controller.Metrics
	// StoreHealth, when set, learns of every commit the intake makes.
	StoreHealth StoreHealth
	// StoreRetryAfter is the Retry-After of a 503 (default 5s).
	StoreRetryAfter time.Duration
	Log             *slog.Logger
	// Clock dates findings without a time (default clock.Real).
	Clock clock.Clock
	// Ledger, when set, keeps each finding that lands in an incident (its
	// log lines, counters or conntrack entries) as evidence, with SHA-256
	// and custody from the agent.
	Ledger *evidence.Ledger
}

// NewAgentIntake builds the handler of the agents' listener: only
// AgentFindingsPath, for clients whose certificate the listener verified
// (it must require one: mtls.Material.Server). Every other path is a JSON
// 404, as on the API.
func NewAgentIntake(opt AgentIntakeOptions) (*Server, error) {
	if opt.Controller == nil {
		return nil, errors.New("creating the agents' intake: a controller is required")
	}
	o := Options{Controller: opt.Controller, MaxBodyBytes: opt.MaxBodyBytes, Metrics: opt.Metrics, StoreHealth: opt.StoreHealth,
		StoreRetryAfter: opt.StoreRetryAfter, Log: opt.Log, Clock: opt.Clock, Ledger: opt.Ledger}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.Real
	}
	if o.Metrics == nil {
		o.Metrics = controller.NewMetrics(nil)
	}
	if o.StoreRetryAfter <= 0 {
		o.StoreRetryAfter = 5 * time.Second
	}
	s := &Server{opt: o, mux: http.NewServeMux()}
	// Authenticated by the listener's mutual TLS, not by a token: the
	// route has no permission of a role.
	s.routes = append(s.routes, Route{Method: http.MethodPost, Path: AgentFindingsPath, Permission: public})
	s.mux.HandleFunc(http.MethodPost+" "+AgentFindingsPath, s.postAgentFindings)
	return s, nil
}

// postAgentFindings takes {"findings": [...]} from a gateway's agent: each
// finding becomes an indicator about the gateway its certificate names,
// stored before the 202 (actor "agent:GATEWAY"). A finding that cannot be
// used is kept unmatched, with the reason, and listed in skipped, so that
// one bad finding neither blocks the agent's queue nor vanishes.
func (s *Server) postAgentFindings(w http.ResponseWriter, r *http.Request) {
	gw, cert, err := agentGateway(s.opt.Controller.Inventory(), r.TLS)
	if err != nil {
		s.fail(w, http.StatusForbidden, "forbidden", err)
		return
	}
	body, ok := s.readBody(w, r, false)
	if !ok {
		return
	}
	raws, err := decodeFindingBatch(body)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "invalid", err)
		return
	}
	now := s.opt.Clock.Now()
	items := make([]controller.Item, len(raws))
	var skipped []v1.SkippedAlert
	for i, raw := range raws {
		it, reason := findingItem(i, gw, raw, now)
		items[i] = it
		if reason != "" {
			skipped = append(skipped, v1.SkippedAlert{Index: i, Reason: reason})
		}
	}
	if len(skipped) > 0 {
		s.opt.Log.Warn("an agent delivered findings that cannot be used; kept unmatched", "gateway", gw,
			"skipped", len(skipped), "findings", len(raws), "first_reason", skipped[0].Reason)
	}
	actor := agentActorPrefix + gw
	ctx := audit.WithCredential(r.Context(), actor, "cert:"+cert.SerialNumber.Text(16))
	res, err := s.opt.Controller.Accept(ctx, actor, items)
	if s.opt.StoreHealth != nil {
		s.opt.StoreHealth.ObserveCommit(err)
	}
	if reason, ok := store.UnwritableReason(err); ok {
		s.opt.Metrics.IndicatorsRejected.WithLabelValues("store_unwritable").Inc()
		s.opt.Log.Error("refusing an agent's findings: the store cannot commit", "gateway", gw, "reason", reason, "err", err)
		s.setRetryAfter(w)
		writeJSON(w, http.StatusServiceUnavailable, v1.Error{Error: "the store cannot commit (" + reason + "); nothing was stored: send again after Retry-After"})
		return
	}
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "store", err)
		return
	}
	s.fileEvidence(ctx, gw, raws, res, now)
	writeJSON(w, http.StatusAccepted, v1.IntakeResponse{Accepted: len(res), Results: convertAll(res, acceptedV1), Skipped: skipped})
}

// fileEvidence keeps, in the evidence ledger, every finding that landed in
// an incident (not duplicates): what the agent saw is evidence of the
// incident from its first sign. A ledger that fails is logged: the
// indicators are stored already, and the agent must not send them again.
func (s *Server) fileEvidence(ctx context.Context, gw string, raws []json.RawMessage, res []controller.Accepted, now time.Time) {
	if s.opt.Ledger == nil {
		return
	}
	for _, a := range res {
		if a.IncidentID == "" || a.Duplicate || a.Index < 0 || a.Index >= len(raws) {
			continue
		}
		var f struct {
			Sensor string `json:"sensor"`
			Kind   string `json:"kind"`
		}
		_ = json.Unmarshal(raws[a.Index], &f)
		_, err := s.opt.Ledger.Add(ctx, evidence.Item{Incident: a.IncidentID, Gateway: gw,
			Name: fmt.Sprintf("sensor-%s-%s-%s.json", f.Sensor, f.Kind, a.IndicatorID), MediaType: "application/json", Kind: "log",
			Source: "sensor:" + f.Sensor, CollectedAt: now, CollectedBy: agentActorPrefix + gw, CollectedFrom: gw,
			Note: "the finding the gateway's sensor delivered, with what triggered it", Content: raws[a.Index]})
		if err != nil {
			s.opt.Log.Error("keeping a finding as evidence", "gateway", gw, "incident", a.IncidentID, "err", err)
		}
	}
}

// agentGateway names the gateway whose agent holds the connection's
// client certificate: the inventory gateway whose id is its CommonName
// (`warden agent init --gateway ID`), else the one gateway owning an IP
// address among its SANs. None, or several, is an error naming why; so is
// a connection without a verified certificate (a listener that does not
// require one).
func agentGateway(inv *inventory.Inventory, cs *tls.ConnectionState) (string, *x509.Certificate, error) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return "", nil, errors.New("no verified client certificate: agents deliver findings only over the agents' mutual-TLS listener (server.agent_listen)")
	}
	cert := cs.PeerCertificates[0]
	cn := cert.Subject.CommonName
	if gw, ok := inv.Gateway(cn); ok && cn != "" {
		return gw.ID, cert, nil
	}
	sans := make(map[netip.Addr]bool, len(cert.IPAddresses))
	for _, ip := range cert.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			sans[a.Unmap()] = true
		}
	}
	var owners []string
	for _, g := range inv.Gateways {
		for _, s := range g.Addresses {
			if a, err := netip.ParseAddr(s); err == nil && sans[a.Unmap()] {
				owners = append(owners, g.ID)
				break
			}
		}
	}
	switch len(owners) {
	case 1:
		return owners[0], cert, nil
	case 0:
		return "", nil, fmt.Errorf("the client certificate (CN %q, IP addresses %s) names no gateway: its CommonName is no inventory gateway id and none of its IP addresses is a gateway's address; issue it with `warden agent init --gateway ID`", clip(cn, 64), ipList(cert))
	default:
		return "", nil, fmt.Errorf("the client certificate (CN %q) is ambiguous: its IP addresses belong to gateways %s; issue it with `warden agent init --gateway ID`", clip(cn, 64), strings.Join(owners, ", "))
	}
}

func ipList(c *x509.Certificate) string {
	if len(c.IPAddresses) == 0 {
		return "none"
	}
	s := make([]string, len(c.IPAddresses))
	for i, ip := range c.IPAddresses {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}

// gatewayFromBody is why a body that names a gateway is refused.
const gatewayFromBody = "the gateway is the one the agent's certificate names, never a field of the body; leave it out"

// decodeFindingBatch splits {"findings": [...]} into the findings' raw
// objects. Anything else at the top level, a "gateway" anywhere in a
// finding, and an empty or oversized batch are errors naming the field;
// each finding is decoded later, on its own.
func decodeFindingBatch(body []byte) ([]json.RawMessage, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, &indicator.FieldError{Field: "body", Reason: "is not a JSON object: " + err.Error()}
	}
	for _, k := range slices.Sorted(maps.Keys(top)) {
		switch {
		case k == "findings":
		case strings.EqualFold(k, "gateway"):
			return nil, &indicator.FieldError{Field: k, Reason: gatewayFromBody}
		default:
			return nil, &indicator.FieldError{Field: k, Reason: `unknown field (the body has only "findings")`}
		}
	}
	raw, ok := top["findings"]
	if !ok {
		return nil, &indicator.FieldError{Field: "findings", Reason: "is required"}
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, &indicator.FieldError{Field: "findings", Reason: "must be an array of findings"}
	}
	switch {
	case len(list) == 0:
		return nil, &indicator.FieldError{Field: "findings", Reason: "is empty"}
	case len(list) > intake.MaxIndicatorsPerRequest:
		return nil, &indicator.FieldError{Field: "findings", Reason: fmt.Sprintf("more than %d findings in one request", intake.MaxIndicatorsPerRequest)}
	}
	for i, f := range list {
		var members map[string]json.RawMessage
		if json.Unmarshal(f, &members) != nil {
			continue // reported with the finding
		}
		for k := range members {
			if strings.EqualFold(k, "gateway") {
				return nil, &indicator.FieldError{Field: fmt.Sprintf("findings[%d].%s", i, k), Reason: gatewayFromBody}
			}
		}
	}
	return list, nil
}

// findingItem makes the indicator of the i-th finding about gateway gw.
// It returns the reason when the finding cannot be used: the item is then
// unmatched, and still recorded with the finding as its raw.
func findingItem(i int, gw string, raw json.RawMessage, now time.Time) (controller.Item, string) {
	in := indicator.Indicator{Gateway: gw, Source: SourceAgent, Status: indicator.StatusFiring, ObservedAt: now}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err == nil {
		in.Raw = compact.Bytes()
	} else {
		in.Raw, _ = json.Marshal(string(raw))
	}
	unusable := func(reason string) (controller.Item, string) {
		in.Normalize(now)
		return controller.Item{Indicator: in, Reason: reason}, reason
	}
	var f wire.Finding
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return unusable(fmt.Sprintf("findings[%d]: %v", i, err))
	}
	in.Kind = indicator.Kind(f.Kind)
	in.Severity = indicator.Severity(f.Severity)
	in.Confidence = f.Confidence
	in.Summary = f.Summary
	in.Observables = indicator.Observables{IPs: f.IPs, Domains: f.Domains}
	if !f.ObservedAt.IsZero() && !f.ObservedAt.After(now.Add(maxAgentClockLead)) {
		in.ObservedAt = f.ObservedAt
	}
	in.Labels = maps.Clone(f.Labels)
	if f.Sensor != "" {
		if in.Labels == nil {
			in.Labels = map[string]string{}
		}
		in.Labels["sensor"] = f.Sensor
	}
	in.Fingerprint = FindingFingerprint(gw, findingKey(f))
	in.Normalize(now)
	if err := in.Validate(); err != nil {
		var fe *indicator.FieldError
		if errors.As(err, &fe) {
			return unusable(fmt.Sprintf("findings[%d].%s: %s", i, fe.Field, fe.Reason))
		}
		return unusable(fmt.Sprintf("findings[%d]: %v", i, err))
	}
	return controller.Item{Indicator: in, Matched: true}, ""
}

// findingKey is the finding's Key, or for one without, what identifies it
// anyway: kind, sensor and the sorted addresses.
func findingKey(f wire.Finding) string {
	if f.Key != "" {
		return f.Key
	}
	return f.Kind + "/" + f.Sensor + "/" + strings.Join(slices.Sorted(slices.Values(f.IPs)), ",")
}

// FindingFingerprint is the fingerprint of a finding about gateway gw
// with key: the hex SHA-256 of "gw|key", so that the same sign delivered
// again (the agent delivers at least once) is a duplicate of the first.
func FindingFingerprint(gw, key string) string {
	sum := sha256.Sum256([]byte(gw + "|" + key))
	return hex.EncodeToString(sum[:])
}
