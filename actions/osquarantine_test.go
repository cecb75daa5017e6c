package actions

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
)

// fakeOSQuarantine is an agent whose isolate confirms with the state given.
type fakeOSQuarantine struct {
	calls   *[]string
	checked wire.State
}

func (f fakeOSQuarantine) ObserveOS(context.Context, inventory.Gateway) (wire.State, error) {
	*f.calls = append(*f.calls, "observe os")
	return f.checked, nil
}

func (f fakeOSQuarantine) IsolateOS(context.Context, inventory.Gateway, bool) (wire.IsolateResult, error) {
	*f.calls = append(*f.calls, "isolate os")
	return wire.IsolateResult{Changed: true, Generation: f.checked.Generation, Confirmed: true}, nil
}

func (f fakeOSQuarantine) ReleaseOS(context.Context, inventory.Gateway) (bool, error) {
	return false, nil
}

// checkedFake also answers with the state read back when it confirmed.
type checkedFake struct{ fakeOSQuarantine }

func (f checkedFake) IsolateOSChecked(ctx context.Context, gw inventory.Gateway, keep bool) (wire.IsolateResult, wire.State, error) {
	*f.calls = append(*f.calls, "isolate os checked")
	return wire.IsolateResult{Changed: true, Generation: f.checked.Generation, Confirmed: true}, f.checked, nil
}

// Executing isolate with an agent that answers its confirm with the rules
// read back takes that read-back as the OS layer's verification (no second
// round trip), judged as Verify judges one; the other layers still apply
// first and verify after, in order. An agent that does not answer so is
// read back as before.
func TestExecuteIsolateTakesTheConfirmedReadBack(t *testing.T) {
	enforced := wire.State{Quarantined: true, Confirmed: true, Generation: 7,
		Firewall: &wire.FirewallState{Quarantined: true, Backend: "nftables"}}
	drifted := enforced
	drifted.Firewall = &wire.FirewallState{Quarantined: true, Backend: "nftables", Drift: []string{"chain input missing"}}
	req := Request{Gateway: inventory.Gateway{ID: "gw"}, Incident: "inc-1", IdempotencyKey: "run-1/2/isolate"}
	for name, tc := range map[string]struct {
		checked   bool
		state     wire.State
		wantCalls []string
		wantErr   error
	}{
		"checked, enforced": {true, enforced, []string{"isolate os checked", "apply vm", "verify vm"}, nil},
		"checked, drifted":  {true, drifted, []string{"isolate os checked"}, ErrNotVerified},
		"not checked":       {false, enforced, []string{"isolate os", "apply vm", "observe os", "verify vm"}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			var calls []string
			var q OSQuarantine = fakeOSQuarantine{calls: &calls, checked: tc.state}
			if tc.checked {
				q = checkedFake{fakeOSQuarantine{calls: &calls, checked: tc.state}}
			}
			// Composed as the daemon composes the catalogue: the evidence
			// decorator, then the retry layer outermost.
			cat, err := NewCatalogue(Combine(NameIsolate, Layer("os", NewOSIsolate(q)), Layer("vm", stubLayer{"vm", nil, true, &calls})))
			if err != nil {
				t.Fatal(err)
			}
			rec := &memoryRecorder{}
			cat = cat.Decorate(RecordEvidence(rec)).Decorate(WithRetry(RetryPolicy{MaxAttempts: 1}))
			res, err := Execute(t.Context(), cat[NameIsolate], req)
			if tc.wantErr == nil && (len(rec.recs) != 1 || rec.recs[0].Name != "isolate-configuration-change.json") {
				t.Errorf("evidence filed: %+v, want the configuration change", rec.recs)
			}
			if !slices.Equal(calls, tc.wantCalls) {
				t.Errorf("calls %v, want %v", calls, tc.wantCalls)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || IsTerminal(err) {
					t.Fatalf("err = %v, want a retryable %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			verify, _ := res.Details["verify"].(map[string]any)
			os, _ := verify["os"].(map[string]any)
			if res.Details["verified"] == "" || os["generation"] != int64(7) {
				t.Fatalf("result %+v does not carry the OS layer's verification", res.Details)
			}
		})
	}
}

// timedRecorder notes when it was asked to file evidence.
type timedRecorder struct {
	memoryRecorder
	at time.Time
}

func (r *timedRecorder) Record(ctx context.Context, e Evidence) (EvidenceRecord, error) {
	time.Sleep(5 * time.Millisecond) // filing takes a while (a blob and its fsync)
	r.at = time.Now()
	return r.memoryRecorder.Record(ctx, e)
}

// TestVerifiedAtIsWhenTheReadBackProvedIt: an executed isolate's verified
// result says when the read-back proved the quarantine (verified_at),
// which is before the change is filed as evidence: the time to contain
// does not include the filing.
func TestVerifiedAtIsWhenTheReadBackProvedIt(t *testing.T) {
	var calls []string
	state := wire.State{Quarantined: true, Confirmed: true, Generation: 7, Firewall: &wire.FirewallState{Quarantined: true, Backend: "nftables"}}
	cat, err := NewCatalogue(Combine(NameIsolate, Layer("os", NewOSIsolate(checkedFake{fakeOSQuarantine{calls: &calls, checked: state}}))))
	if err != nil {
		t.Fatal(err)
	}
	rec := &timedRecorder{}
	cat = cat.Decorate(RecordEvidence(rec)).Decorate(WithRetry(RetryPolicy{MaxAttempts: 1}))
	res, err := Execute(t.Context(), cat[NameIsolate], Request{Gateway: inventory.Gateway{ID: "gw"}, Incident: "inc-1", IdempotencyKey: "run-1/1/isolate"})
	if err != nil {
		t.Fatal(err)
	}
	verify, _ := res.Details["verify"].(map[string]any)
	raw, _ := verify[VerifiedAtKey].(string)
	at, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		t.Fatalf("verify details %v: no %s: %v", verify, VerifiedAtKey, err)
	}
	if rec.at.IsZero() || !at.Before(rec.at) {
		t.Errorf("verified at %v, evidence filed at %v: want verified before the filing", at, rec.at)
	}
}

// killingFake is a checked agent that also kills flows, noting when.
type killingFake struct {
	checkedFake
	keep     *[]bool
	killedAt *time.Time
	killErr  error
}

func (f killingFake) IsolateOSChecked(ctx context.Context, gw inventory.Gateway, keep bool) (wire.IsolateResult, wire.State, error) {
	*f.keep = append(*f.keep, keep)
	return f.checkedFake.IsolateOSChecked(ctx, gw, keep)
}

func (f killingFake) KillFlowsOS(context.Context, inventory.Gateway) (wire.KillFlowsResult, error) {
	*f.calls = append(*f.calls, "kill flows")
	time.Sleep(2 * time.Millisecond) // a walk of the connection table
	*f.killedAt = time.Now()
	if f.killErr != nil {
		return wire.KillFlowsResult{}, f.killErr
	}
	return wire.KillFlowsResult{Changed: true, Killed: 3, WereKept: true}, nil
}

// TestIsolateKillsFlowsOnceProved: an isolate that kills flows (the
// default) puts the quarantine in keeping them, has it confirmed and read
// back, and only then kills them: verified_at is before the kill, and the
// result still counts the flows killed. A failed kill fails the attempt
// (retried: the isolate again changes nothing, the kill runs again).
// flows: keep kills nothing.
func TestIsolateKillsFlowsOnceProved(t *testing.T) {
	state := wire.State{Quarantined: true, Confirmed: true, Generation: 7, Firewall: &wire.FirewallState{Quarantined: true, Backend: "nftables"}}
	for name, tc := range map[string]struct {
		flows     string
		killErr   error
		wantCalls []string
		wantKill  bool
	}{
		"kill (default)": {"", nil, []string{"isolate os checked", "kill flows"}, true},
		"keep":           {"keep", nil, []string{"isolate os checked"}, false},
		"kill fails":     {"kill", errors.New("netlink: no buffer space"), []string{"isolate os checked", "kill flows"}, true},
	} {
		t.Run(name, func(t *testing.T) {
			var calls []string
			var keeps []bool
			var killedAt time.Time
			q := killingFake{checkedFake{fakeOSQuarantine{calls: &calls, checked: state}}, &keeps, &killedAt, tc.killErr}
			cat, err := NewCatalogue(Combine(NameIsolate, Layer("os", NewOSIsolate(q))))
			if err != nil {
				t.Fatal(err)
			}
			cat = cat.Decorate(RecordEvidence(&memoryRecorder{})).Decorate(WithRetry(RetryPolicy{MaxAttempts: 1}))
			req := Request{Gateway: inventory.Gateway{ID: "gw"}, Incident: "inc-1", IdempotencyKey: "run-1/1/isolate", Params: map[string]string{}}
			if tc.flows != "" {
				req.Params["flows"] = tc.flows
			}
			res, err := Execute(t.Context(), cat[NameIsolate], req)
			if !slices.Equal(calls, tc.wantCalls) || !slices.Equal(keeps, []bool{true}) {
				t.Fatalf("calls %v, isolate keeping flows %v; want %v and [true]", calls, keeps, tc.wantCalls)
			}
			if tc.killErr != nil {
				if !errors.Is(err, tc.killErr) || IsTerminal(err) {
					t.Fatalf("err = %v, want a retryable %v", err, tc.killErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			verify, _ := res.Details["verify"].(map[string]any)
			at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(verify[VerifiedAtKey]))
			if err != nil {
				t.Fatalf("verify details %v: no %s: %v", verify, VerifiedAtKey, err)
			}
			os, _ := res.Details["os"].(map[string]any)
			if !tc.wantKill {
				if os["killed_flows"] != 0 || os["flows_kept"] != true {
					t.Fatalf("os details %v, want the flows kept", os)
				}
				return
			}
			if !at.Before(killedAt) {
				t.Errorf("verified at %v, flows killed at %v: want the proof first", at, killedAt)
			}
			if os["killed_flows"] != 3 || os["flows_kept"] != false {
				t.Fatalf("os details %v, want 3 flows killed and none kept", os)
			}
		})
	}
}
