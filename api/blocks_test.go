package api_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	v1 "github.com/warden-ir/warden/api/v1"
)

// stixBundle is a bundle of one indicator per pattern, the n-th with id
// indicator--00000000-0000-4000-8000-00000000000n; revoked marks them so.
func stixBundle(revoked bool, patterns ...string) []byte {
	var objs []string
	for i, p := range patterns {
		objs = append(objs, fmt.Sprintf(`{"type": "indicator", "spec_version": "2.1", "id": "indicator--00000000-0000-4000-8000-%012d",
			"created": "2026-11-01T00:00:00Z", "modified": "2026-11-02T00:00:00Z", "name": "C2 %d", "indicator_types": ["malicious-activity"],
			"pattern_type": "stix", "pattern": %q, "valid_from": "2026-11-01T00:00:00Z", "revoked": %v,
			"object_marking_refs": ["marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"]}`, i+1, i+1, p, revoked))
	}
	return []byte(`{"type": "bundle", "id": "bundle--11111111-2222-4333-8444-555555555555", "objects": [` + strings.Join(objs, ",") + `]}`)
}

func TestSTIXIntakeBecomesBlocks(t *testing.T) {
	s := newStack(t, nil, nil)
	feed := s.user(t, "feed", "intake")
	bob := s.user(t, "bob", "approver")
	body := stixBundle(false,
		"[ipv4-addr:value = '203.0.113.66']",
		"[ipv4-addr:value = '10.20.30.40']",
		"[ipv4-addr:value = '203.0.113.0/24' ] FOLLOWEDBY [ipv4-addr:value = '203.0.113.9']",
		"[ipv4-addr:value = '203.0.113.77' AND",
	)
	got := feed.call(t, http.MethodPost, "/v1/intake/stix", body, func(r *http.Request) { r.Header.Set("Content-Type", "application/stix+json;version=2.1") })
	expectStatus(t, got, http.StatusAccepted)
	res := decodeReply[v1.ThreatIntakeResponse](t, got)
	if len(res.Blocks) != 2 || res.Blocks[0].State != "active" || res.Blocks[1].State != "pending_approval" || !res.Blocks[0].Created {
		t.Fatalf("blocks %+v, want the public C2 address active and the private one waiting", res.Blocks)
	}
	if u := strings.Join(res.Blocks[1].Unsafe, ";"); !strings.Contains(u, "private") {
		t.Errorf("unsafe %q does not say the address is private", u)
	}
	if len(res.Skipped) != 2 || !strings.Contains(res.Skipped[0].Reason, "unsupported") || !strings.Contains(res.Skipped[1].Reason, "malformed pattern") {
		t.Errorf("skipped %+v, want the FOLLOWEDBY pattern unsupported and the cut one malformed", res.Skipped)
	}
	active := decodeReply[v1.Block](t, s.call(t, http.MethodGet, fmt.Sprintf("/v1/blocks/%d", res.Blocks[0].Number), nil))
	if !slices.Equal(active.Prefixes, []string{"203.0.113.66/32"}) || active.TLP != "TLP:AMBER" || active.RequestedBy != "user:feed" || active.Source != "stix" {
		t.Errorf("block %+v", active)
	}
	// The feed itself cannot approve; an approver can.
	pending := res.Blocks[1].Number
	expectError(t, feed.call(t, http.MethodPost, fmt.Sprintf("/v1/blocks/%d/approve", pending), []byte(`{}`)), http.StatusForbidden)
	ok := bob.call(t, http.MethodPost, fmt.Sprintf("/v1/blocks/%d/approve", pending), []byte(`{"reason": "partner confirmed"}`))
	expectStatus(t, ok, http.StatusOK)
	if b := decodeReply[v1.Block](t, ok); b.State != "active" || b.DecidedBy != "user:bob" {
		t.Errorf("after approval %+v", b)
	}
	expectError(t, bob.call(t, http.MethodPost, fmt.Sprintf("/v1/blocks/%d/approve", pending), []byte(`{}`)), http.StatusConflict)
	// The same bundle again is the same blocks; a revoked version withdraws them.
	again := decodeReply[v1.ThreatIntakeResponse](t, feed.call(t, http.MethodPost, "/v1/intake/stix", body))
	if len(again.Blocks) != 2 || again.Blocks[0].Created || again.Blocks[0].Number != res.Blocks[0].Number {
		t.Errorf("the same bundle again: %+v", again.Blocks)
	}
	rev := feed.call(t, http.MethodPost, "/v1/intake/stix", stixBundle(true, "[ipv4-addr:value = '203.0.113.66']"))
	expectStatus(t, rev, http.StatusAccepted)
	if b := decodeReply[v1.Block](t, s.call(t, http.MethodGet, fmt.Sprintf("/v1/blocks/%d", res.Blocks[0].Number), nil)); b.State != "withdrawn" {
		t.Errorf("after the revoked version the block is %s, want withdrawn", b.State)
	}
	list := decodeReply[v1.BlockList](t, s.call(t, http.MethodGet, "/v1/blocks?state=active", nil))
	if len(list.Blocks) != 1 || list.Blocks[0].Number != pending {
		t.Errorf("active blocks %+v, want only the approved one", list.Blocks)
	}
}

func TestThreatIntakeGarbage(t *testing.T) {
	s := newStack(t, nil, nil)
	for _, tc := range []struct{ path, body, field string }{
		{"/v1/intake/stix", `not json`, "body"},
		{"/v1/intake/stix", `{"type": "indicator"}`, "type"},
		{"/v1/intake/misp", `[1, 2]`, ""},
		{"/v1/intake/misp", `{"Event": "x"}`, "Event"},
	} {
		e := expectError(t, s.call(t, http.MethodPost, tc.path, []byte(tc.body)), http.StatusBadRequest)
		if tc.field != "" && !strings.HasPrefix(e.Field, tc.field) {
			t.Errorf("%s %s: field %q, want %q (%s)", tc.path, tc.body, e.Field, tc.field, e.Error)
		}
	}
}

func TestBlockRoutes(t *testing.T) {
	s := newStack(t, nil, nil)
	alice := s.user(t, "alice", "responder")
	got := alice.call(t, http.MethodPost, "/v1/blocks", []byte(`{"prefixes": ["203.0.113.5", "2001:db8:66::/48"], "name": "scanner", "ref": "ticket-7"}`))
	expectStatus(t, got, http.StatusCreated)
	b := decodeReply[v1.Block](t, got)
	if b.State != "active" || b.RequestedBy != "user:alice" || b.Kind != "c2_beacon" {
		t.Errorf("%+v", b)
	}
	expectStatus(t, alice.call(t, http.MethodPost, "/v1/blocks", []byte(`{"prefixes": ["203.0.113.6"], "ref": "ticket-7"}`)), http.StatusOK)
	// The dry run says why a block would wait and records nothing.
	dry := alice.call(t, http.MethodPost, "/v1/blocks?dry_run=true", []byte(`{"prefixes": ["10.9.8.7", "203.0.113.0/8"]}`))
	expectStatus(t, dry, http.StatusOK)
	if p := decodeReply[v1.Block](t, dry); p.Number != 0 || p.State != "pending_approval" ||
		!strings.Contains(strings.Join(p.Unsafe, ";"), "10.9.8.7/32 overlaps 10.0.0.0/8: private") || !strings.Contains(strings.Join(p.Unsafe, ";"), "wider than /16") {
		t.Errorf("dry run %+v", p)
	}
	if l := decodeReply[v1.BlockList](t, s.call(t, http.MethodGet, "/v1/blocks", nil)); len(l.Blocks) != 1 {
		t.Errorf("after a dry run %d blocks are recorded, want 1", len(l.Blocks))
	}
	for body, field := range map[string]string{
		`{"prefixes": []}`:                       "prefixes",
		`{"prefixes": ["203.0.113.999"]}`:        "prefixes[0]",
		`{"prefixes": ["8.8.8.8"], "by": "eve"}`: "",
	} {
		e := expectError(t, alice.call(t, http.MethodPost, "/v1/blocks", []byte(body)), http.StatusBadRequest)
		if field != "" && e.Field != field {
			t.Errorf("%s: field %q, want %q (%s)", body, e.Field, field, e.Error)
		}
	}
	expectError(t, alice.call(t, http.MethodGet, "/v1/blocks/abc", nil), http.StatusBadRequest)
	expectError(t, alice.call(t, http.MethodGet, "/v1/blocks/999", nil), http.StatusNotFound)
	expectError(t, alice.call(t, http.MethodGet, "/v1/blocks?state=nope", nil), http.StatusBadRequest)
	// A responder cannot approve; withdrawing is theirs.
	expectError(t, alice.call(t, http.MethodPost, fmt.Sprintf("/v1/blocks/%d/approve", b.Number), []byte(`{}`)), http.StatusForbidden)
	w := alice.call(t, http.MethodPost, fmt.Sprintf("/v1/blocks/%d/withdraw", b.Number), []byte(`{"reason": "done"}`))
	expectStatus(t, w, http.StatusOK)
	if wb := decodeReply[v1.Block](t, w); wb.State != "withdrawn" || wb.DecidedBy != "user:alice" {
		t.Errorf("%+v", wb)
	}
}

// GET /v1/gateways/{id}/sensors: an unknown gateway is 404; a controller
// that reaches no agents says so (503). The answer through a real agent is
// proven in e2e (TestSensors...).
func TestSensorsRouteWithoutAgents(t *testing.T) {
	s := newStack(t, nil, nil)
	expectError(t, s.call(t, http.MethodGet, "/v1/gateways/gw-nowhere/sensors", nil), http.StatusNotFound)
	e := expectError(t, s.call(t, http.MethodGet, "/v1/gateways/gw-hq/sensors", nil), http.StatusServiceUnavailable)
	if !strings.Contains(e.Error, "agents.cert_file") {
		t.Errorf("503 %q does not say what is missing", e.Error)
	}
}
