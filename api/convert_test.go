package api

// These tests pin v1's JSON: every answer the server builds from a v1 type
// must be, byte for byte, what the server sent before api/v1 existed, when
// it marshalled the store's rows and the controller's values directly
// (and small maps for the rest). The "old" side of each case below is that
// code's value, rebuilt from the same sample.
//
// Samples are filled by reflection, every field set, so a field added to a
// store row and not to its v1 type (or the reverse) fails here; the zero
// samples pin omitempty.

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/intake"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/plan"
	"github.com/warden-ir/warden/policies"
	"github.com/warden-ir/warden/store"
)

// full returns a T with every exported field set to a distinct non-zero
// value, recursively (one element per slice and map).
func full[T any]() T {
	var v T
	n := 0
	fill(reflect.ValueOf(&v).Elem(), &n)
	return v
}

var rawType = reflect.TypeFor[json.RawMessage]()

func fill(v reflect.Value, n *int) {
	*n++
	switch {
	case v.Type() == reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(time.Date(2025, 3, 14, 9, 26, 53, 589793000+*n, time.UTC)))
		return
	case v.Type() == rawType:
		v.SetBytes([]byte(`{"n":` + strings.Repeat("1", *n%5+1) + `}`))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("s" + strings.Repeat("x", *n%7) + string(rune('a'+*n%26)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(*n) + 0.25)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0), n)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, n)
		fill(e, n)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	}
}

// The types the server sent before api/v1, as they were.
type (
	oldIntakeResponse struct {
		Accepted int                   `json:"accepted"`
		Results  []controller.Accepted `json:"results"`
		Skipped  []oldSkippedAlert     `json:"skipped,omitempty"`
	}
	oldSkippedAlert struct {
		Index  int    `json:"index"`
		Reason string `json:"reason"`
	}
	oldPlanResponse struct {
		Decision policies.Decision `json:"decision"`
		Plan     any               `json:"plan,omitempty"`
		Text     string            `json:"text"`
	}
	oldAPIError struct {
		Error string `json:"error"`
		Field string `json:"field,omitempty"`
	}
)

func TestV1JSONUnchanged(t *testing.T) {
	run, wave, inc := full[store.Run](), full[store.PatchWave](), full[IncidentDetail]()
	gw, drift, pl, dec := full[controller.GatewayView](), full[controller.DriftResult](), full[plan.Plan](), full[policies.Decision]()
	accepted, skipped := full[controller.Accepted](), full[oldSkippedAlert]()
	bare := IncidentDetail{Indicators: []store.IndicatorRecord{{}}, Runs: []store.Run{{Steps: []store.Step{{}}}}}
	tests := map[string]struct{ old, new any }{
		"run":             {run, runV1(run)},
		"run, zero":       {store.Run{Steps: []store.Step{{}}}, runV1(store.Run{Steps: []store.Step{{}}})},
		"runs":            {map[string]any{"runs": []store.Run{run}}, v1.RunList{Runs: convertAll([]store.Run{run}, runV1)}},
		"runs, none":      {map[string]any{"runs": []store.Run{}}, v1.RunList{Runs: convertAll([]store.Run{}, runV1)}},
		"incidents":       {map[string]any{"incidents": []store.Incident{inc.Incident}}, v1.IncidentList{Incidents: []v1.Incident{incidentV1(inc.Incident)}}},
		"incidents, none": {map[string]any{"incidents": []store.Incident{}}, v1.IncidentList{Incidents: convertAll([]store.Incident{}, incidentV1)}},
		"incident":        {inc, incidentDetailV1(inc)},
		"incident, zero":  {bare, incidentDetailV1(bare)},
		"incident, nils":  {IncidentDetail{}, incidentDetailV1(IncidentDetail{})},
		"gateway":         {gw, gatewayV1(gw)},
		"gateway, zero":   {controller.GatewayView{}, gatewayV1(controller.GatewayView{})},
		"gateways":        {map[string]any{"gateways": []controller.GatewayView{gw}}, v1.GatewayList{Gateways: convertAll([]controller.GatewayView{gw}, gatewayV1)}},
		"intake": {oldIntakeResponse{Accepted: 1, Results: []controller.Accepted{accepted}, Skipped: []oldSkippedAlert{skipped}},
			v1.IntakeResponse{Accepted: 1, Results: []v1.Accepted{acceptedV1(accepted)}, Skipped: []v1.SkippedAlert{{Index: skipped.Index, Reason: skipped.Reason}}}},
		"intake, zero": {oldIntakeResponse{Results: []controller.Accepted{{}}}, v1.IntakeResponse{Results: []v1.Accepted{acceptedV1(controller.Accepted{})}}},
		"intake, nil":  {oldIntakeResponse{}, v1.IntakeResponse{Results: convertAll([]controller.Accepted(nil), acceptedV1)}},
		"plan": {oldPlanResponse{Decision: dec, Plan: pl, Text: "t"},
			v1.PlanResponse{Decision: decisionV1(dec), Plan: ptr(planV1(pl)), Text: "t"}},
		"plan, no match": {oldPlanResponse{Text: "t"}, v1.PlanResponse{Decision: decisionV1(policies.Decision{}), Text: "t"}},
		"plan, zero steps": {oldPlanResponse{Plan: plan.Plan{Steps: []plan.Step{{}}, Gates: []plan.Gate{{}}}},
			v1.PlanResponse{Plan: ptr(planV1(plan.Plan{Steps: []plan.Step{{}}, Gates: []plan.Gate{{}}}))}},
		"dry run":          {map[string]any{"dry_run": true, "plan": pl, "text": "t"}, v1.RunbookDryRun{DryRun: true, Plan: planV1(pl), Text: "t"}},
		"wave":             {wave, patchWaveV1(wave)},
		"wave, zero":       {store.PatchWave{}, patchWaveV1(store.PatchWave{})},
		"drift":            {map[string]any{"results": []controller.DriftResult{drift}}, v1.DriftCheckResponse{Results: []v1.DriftResult{driftResultV1(drift)}}},
		"drift, zero":      {map[string]any{"results": []controller.DriftResult{{}}}, v1.DriftCheckResponse{Results: []v1.DriftResult{driftResultV1(controller.DriftResult{})}}},
		"resolved":         {map[string]string{"indicator": "ind-1", "resolved_by": "api:a"}, v1.Resolved{Indicator: "ind-1", ResolvedBy: "api:a"}},
		"breaker":          {map[string]any{"was_tripped": true}, v1.BreakerReset{WasTripped: true}},
		"audit intact":     {map[string]any{"ok": true, "entries": int64(7), "head": "h"}, v1.AuditVerification{OK: true, Entries: 7, Head: "h"}},
		"audit empty":      {map[string]any{"ok": true, "entries": int64(0), "head": ""}, v1.AuditVerification{OK: true}},
		"audit broken":     {map[string]any{"ok": false, "first_bad_entry": int64(3), "reason": "r"}, v1.AuditVerification{FirstBadEntry: 3, Reason: "r"}},
		"healthz":          {map[string]string{"status": "ok"}, v1.Health{Status: "ok"}},
		"readyz unwritten": {map[string]string{"status": "store cannot commit", "reason": "disk_full"}, v1.Health{Status: "store cannot commit", Reason: "disk_full"}},
		"error":            {oldAPIError{Error: "e", Field: "f"}, v1.Error{Error: "e", Field: "f"}},
		"error, no field":  {oldAPIError{Error: "e"}, v1.Error{Error: "e"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			old, err := json.Marshal(tc.old)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(tc.new)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(old, got) {
				t.Errorf("v1 changed the JSON\n old: %s\n new: %s", old, got)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestV1RequestsUnchanged: the server decodes each request into a v1 type
// (strictly: unknown fields are refused) and takes exactly the fields it
// took before, with the same meaning.
func TestV1RequestsUnchanged(t *testing.T) {
	type oldStart struct {
		Gateway        string `json:"gateway"`
		Incident       string `json:"incident"`
		By             string `json:"by"`
		DryRun         bool   `json:"dry_run"`
		OverrideReason string `json:"override_reason"`
	}
	type oldDrift struct {
		Gateway string `json:"gateway"`
		By      string `json:"by"`
	}
	tests := map[string]struct{ old, new any }{
		"start runbook": {&oldStart{}, &v1.StartRunbookRequest{}},
		"drift check":   {&oldDrift{}, &v1.DriftCheckRequest{}},
		"patch wave":    {&controller.PatchWaveRequest{}, &v1.PatchWaveRequest{}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if a, b := jsonFields(t, tc.old), jsonFields(t, tc.new); a != b {
				t.Errorf("fields %s, were %s", b, a)
			}
		})
	}
	// The client's requests for the routes a person acts on are each a
	// part of what the server decodes them all into.
	for _, req := range []any{full[v1.ApproveRequest](), full[v1.CancelRequest](), full[v1.ResolveRequest](), full[v1.BreakerResetRequest]()} {
		b, _ := json.Marshal(req)
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&personRequest{}); err != nil {
			t.Errorf("%T: the server refuses it: %v", req, err)
		}
	}
	want := full[controller.PatchWaveRequest]()
	b, _ := json.Marshal(want)
	var got v1.PatchWaveRequest
	if err := json.Unmarshal(b, &got); err != nil || !reflect.DeepEqual(patchWaveRequest(got), want) {
		t.Errorf("patch wave request: %+v, want %+v (%v)", patchWaveRequest(got), want, err)
	}
}

// jsonFields is the sorted JSON names of v's fields, filled.
func jsonFields(tb testing.TB, v any) string {
	tb.Helper()
	fill(reflect.ValueOf(v).Elem(), new(int))
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

// TestV1IndicatorDecodes: every field of a v1.Indicator reaches the
// controller's indicator through the server's decoder, as it was set.
func TestV1IndicatorDecodes(t *testing.T) {
	at := time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)
	in := v1.Indicator{Kind: "c2_beacon", Gateway: "gw-hq", Severity: "critical", Confidence: 0.75,
		Observables: &v1.Observables{IPs: []string{"198.51.100.7"}, Domains: []string{"c2.example"}, Hashes: []string{"abc"}},
		ObservedAt:  at, Source: "ids", Summary: "beacon", Status: "firing", Fingerprint: "fp-1",
		Labels: map[string]string{"rule": "42"}, Raw: json.RawMessage(`{"alert":1}`)}
	inv := &inventory.Inventory{Gateways: []inventory.Gateway{{ID: "gw-hq"}}}
	for name, body := range map[string]any{"one": in, "batch": v1.IndicatorBatch{Indicators: []v1.Indicator{in}}} {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(body)
			if err != nil {
				t.Fatal(err)
			}
			got, err := intake.DecodeNative(b, inv, at.Add(time.Hour))
			if err != nil || len(got) != 1 {
				t.Fatalf("decoding %s: %v", b, err)
			}
			want := indicator.Indicator{Kind: indicator.C2Beacon, Gateway: "gw-hq", Severity: indicator.Critical, Confidence: 0.75,
				Observables: indicator.Observables{IPs: in.Observables.IPs, Domains: in.Observables.Domains, Hashes: in.Observables.Hashes},
				ObservedAt:  at, Source: "ids", Summary: "beacon", Status: "firing", Fingerprint: "fp-1", Labels: in.Labels, Raw: in.Raw}
			if !reflect.DeepEqual(got[0], want) {
				t.Errorf("decoded\n %+v\nwant\n %+v", got[0], want)
			}
		})
	}
	// Unset fields are not sent: the server defaults them, and keeps the
	// body it got as the raw form.
	b, _ := json.Marshal(v1.Indicator{Kind: "c2_beacon", Gateway: "gw-hq", Severity: "high"})
	if string(b) != `{"kind":"c2_beacon","gateway":"gw-hq","severity":"high"}` {
		t.Errorf("a minimal indicator encodes as %s", b)
	}
}
