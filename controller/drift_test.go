package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/baseline"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
)

// scriptedBaseline returns the next report of a script per gateway.
type scriptedBaseline struct {
	mu      sync.Mutex
	reports map[string][]baseline.Report
}

func (s *scriptedBaseline) CheckBaseline(_ context.Context, gw inventory.Gateway) (baseline.Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.reports[gw.ID]
	if len(list) == 0 {
		return baseline.Report{}, fmt.Errorf("no agent on %s: %w", gw.ID, actions.ErrUnsupported)
	}
	r := list[0]
	s.reports[gw.ID] = list[1:]
	return r, nil
}

func report(statuses map[string]baseline.Status) baseline.Report {
	r := baseline.Report{Passed: true}
	for _, id := range []string{"sysctl-rp-filter", "ipsec-proposals", "integrity-binaries"} {
		st, ok := statuses[id]
		if !ok {
			st = baseline.StatusPass
		}
		typ := baseline.TypeSysctl
		if id == "integrity-binaries" {
			typ = baseline.TypeIntegrity
		}
		r.Results = append(r.Results, baseline.Result{ID: id, Title: id, Type: typ, Severity: indicator.High, Status: st})
		if st == baseline.StatusFail {
			r.Passed = false
			r.Counts.Fail++
		} else {
			r.Counts.Pass++
		}
	}
	return r
}

func TestDriftCheckTurnsPassToFailIntoIndicators(t *testing.T) {
	checker := &scriptedBaseline{reports: map[string][]baseline.Report{
		"gw-hq": {
			report(nil),
			report(map[string]baseline.Status{"ipsec-proposals": baseline.StatusFail, "integrity-binaries": baseline.StatusFail}),
			report(map[string]baseline.Status{"ipsec-proposals": baseline.StatusFail, "integrity-binaries": baseline.StatusFail}),
		},
	}}
	h := newHarness(t, func(o *Options) { o.Baseline = checker })

	first, err := h.c.DriftCheck(t.Context(), "gw-hq", "test")
	if err != nil || len(first) != 1 || !first[0].Passed || len(first[0].Indicators) != 0 {
		t.Fatalf("first check: %+v %v", first, err)
	}
	second, err := h.c.DriftCheck(t.Context(), "gw-hq", "test")
	if err != nil {
		t.Fatal(err)
	}
	r := second[0]
	if r.Passed || len(r.Changes) != 2 || len(r.Indicators) != 2 {
		t.Fatalf("second check: %+v", r)
	}
	kinds := map[indicator.Kind]bool{}
	for _, ch := range r.Changes {
		kinds[ch.Kind] = true
	}
	if !kinds[indicator.BaselineDrift] || !kinds[indicator.IntegrityViolation] {
		t.Fatalf("kinds %v", kinds)
	}
	for _, a := range r.Indicators {
		if !a.Matched || a.IncidentID == "" {
			t.Fatalf("indicator not accepted into an incident: %+v", a)
		}
	}
	// A failure that persists is not new drift.
	third, _ := h.c.DriftCheck(t.Context(), "gw-hq", "test")
	if len(third[0].Changes) != 0 || len(third[0].Indicators) != 0 {
		t.Fatalf("persisting failure re-raised: %+v", third[0])
	}
	latest, ok, _ := h.st.LatestBaseline(t.Context(), "gw-hq")
	if !ok || latest.Passed || latest.Failed != 2 {
		t.Fatalf("latest stored result %+v", latest)
	}
	n := 0
	es, _ := audit.List(t.Context(), h.st.DB(), "")
	for _, e := range es {
		if e.Action == "baseline.checked" {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d baseline.checked audit entries, want 3", n)
	}
}

func TestDriftCheckTargets(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Baseline = &scriptedBaseline{reports: map[string][]baseline.Report{}} })
	for _, gw := range []string{"", "*", "gw-*", "nope"} {
		if _, err := h.c.DriftCheck(t.Context(), gw, "test"); !errors.Is(err, ErrInvalid) {
			t.Errorf("gateway %q: %v", gw, err)
		}
	}
	// "all" is allowed here (a check changes nothing); gateways without an
	// agent are reported as skipped, not failed.
	res, err := h.c.DriftCheck(t.Context(), "all", "test")
	if err != nil || len(res) != len(testInventory().Gateways) {
		t.Fatalf("%d results, %v", len(res), err)
	}
	for _, r := range res {
		if r.Skipped == "" {
			t.Fatalf("not skipped: %+v", r)
		}
	}
	if _, ok, _ := h.st.LatestBaseline(t.Context(), "gw-hq"); ok {
		t.Fatal("a skipped check stored a result")
	}
}
