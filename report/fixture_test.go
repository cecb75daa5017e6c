package report

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/demo/demovpn"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/internal/clock"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/plan"
	"github.com/warden-ir/warden/store"
)

// The fixture is the demo's incident with fixed ids and times: a C2 beacon
// from the Osaka gateway at 03:12 local time (the UTC date is the day
// before), contained by the default policy in about 90 ms.
const (
	fxIncident  = "inc-01a2f0c0ffee00000001"
	fxIndicator = "ind-01a2f0c0ffee00000001"
	fxRun       = "run-01a2f0c0ffee00000001"
	fxSnapshot  = "warden-" + fxIncident
	// Secrets that exist in the store (raw alert, step details) and must
	// never reach a report.
	fxSecretRaw  = "Bearer sekrit-alertmanager-token"
	fxSecretStep = "hunter2-step-password"

	// The detector that posts alerts: a user with the intake role, and
	// the id of its token.
	fxDetector      = "user:alertmanager"
	fxDetectorToken = "tk_a1e27a9e0001"
)

var fxT0 = time.Date(2026, 11, 24, 18, 12, 7, 0, time.UTC) // 2026-11-25 03:12:07 JST

func ms(f float64) time.Time { return fxT0.Add(time.Duration(f * float64(time.Millisecond))) }

// demoInventory is the demo's three-site VPN (HQ Tokyo, Osaka branch,
// Singapore data centre), fully meshed.
func demoInventory(t *testing.T) *inventory.Inventory {
	t.Helper()
	inv := demovpn.Inventory()
	if err := inv.Validate(); err != nil {
		t.Fatal(err)
	}
	return &inv
}

func js(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixture seeds a store exactly as the controller and the evidence ledger
// would have written the demo incident, and loads its report.
func fixture(t *testing.T) (Model, *store.Store, *evidence.Ledger) {
	t.Helper()
	st, ledger := seedDemo(t)
	return loadFixture(t, st, ledger), st, ledger
}

// loadFixture loads the fixture incident's report as of five minutes
// after the alert.
func loadFixture(t *testing.T, st *store.Store, ledger *evidence.Ledger, opts ...Option) Model {
	t.Helper()
	m, err := Load(t.Context(), st, demoInventory(t), ledger, fxIncident, opts...)
	if err != nil {
		t.Fatal(err)
	}
	m.GeneratedAt = fxT0.Add(5 * time.Minute)
	return m
}

// seedDemo writes the demo incident as the controller, the API and the
// evidence ledger would have: the detector's alert, the policy's
// decision, and the automatic containment run.
func seedDemo(t *testing.T) (*store.Store, *evidence.Ledger) {
	t.Helper()
	ctx := t.Context()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "w.db"), "normal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	var ledgerNow time.Time
	ids := []string{"evd-01a2f0c0ffee00000001", "evd-01a2f0c0ffee00000002"}
	ledger, err := evidence.Open(ctx, st.DB(), filepath.Join(t.TempDir(), "evidence"),
		evidence.WithClock(readClock{&ledgerNow}),
		evidence.WithIDs(func() string { id := ids[0]; ids = ids[1:]; return id }))
	if err != nil {
		t.Fatal(err)
	}

	tx := func(fn func(tx store.Tx) error) {
		t.Helper()
		if err := st.Tx(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	aud := func(tx store.Tx, at time.Time, actor, action, run string, data any) error {
		e := audit.Entry{At: at, Actor: actor, Action: action, Incident: fxIncident, Run: run, Subject: "gw-osaka"}
		if actor == fxDetector {
			e.Token = fxDetectorToken
		}
		if data != nil {
			e.Data = js(t, data)
		}
		return tx.Audit(ctx, e)
	}
	tx(func(tx store.Tx) error {
		return tx.InsertUser(ctx, store.User{Name: "alertmanager", Role: "intake", DisplayName: "Alertmanager (Prometheus)",
			CreatedAt: fxT0.Add(-24 * time.Hour), CreatedBy: "user:admin", UpdatedAt: fxT0.Add(-24 * time.Hour)})
	})

	rawAlert := map[string]any{"labels": map[string]string{"alertname": "C2Beacon", "instance": "gw-osaka.example.net:9100"},
		"annotations": map[string]string{"summary": "Periodic beacon from gw-osaka to 203.0.113.66:443 every 60s"},
		"headers":     map[string]string{"authorization": fxSecretRaw}}
	in := indicator.Indicator{ID: fxIndicator, Kind: indicator.C2Beacon, Gateway: "gw-osaka", Severity: indicator.Critical, Confidence: 0.9,
		Observables: indicator.Observables{IPs: []string{"203.0.113.66"}}, ObservedAt: fxT0.Add(-2 * time.Minute), Source: "alertmanager",
		Summary: "Periodic beacon from gw-osaka to 203.0.113.66:443 every 60s", Status: indicator.StatusFiring,
		Labels: map[string]string{"alertname": "C2Beacon", "site": "osaka", "token": fxSecretRaw}, Raw: js(t, rawAlert)}
	in.Fingerprint = in.ComputeFingerprint()

	p := plan.Plan{Incident: fxIncident, Gateway: "gw-osaka", Site: "osaka", VM: "gw-osaka", Runbook: "contain-compromised-gateway", Policy: "c2-or-exfil-isolate",
		Gates: []plan.Gate{
			{Name: "approval", Passed: true, Blocking: true, Detail: "automatic by policy c2-or-exfil-isolate"},
			{Name: "blast-radius", Passed: true, Blocking: true, Detail: "site osaka 0/1, fleet 0/3 automatic isolations within 1h0m0s"},
		}}
	stepDefs := []struct{ name, action string }{
		{"capture_volatile", actions.NameCaptureVolatile}, {"snapshot", actions.NameSnapshot}, {"isolate", actions.NameIsolate}, {"notify", actions.NameNotify},
	}
	run := store.Run{ID: fxRun, Incident: fxIncident, Gateway: "gw-osaka", Site: "osaka", Runbook: "contain-compromised-gateway", Policy: "c2-or-exfil-isolate",
		Trigger: "policy", State: store.RunPending, AutoIsolation: true, Plan: js(t, p), CreatedAt: fxT0, UpdatedAt: fxT0, RequestedBy: fxDetector}
	for i, s := range stepDefs {
		run.Steps = append(run.Steps, store.Step{Index: i, Name: s.name, Action: s.action, State: store.StepPending,
			Optional: s.action == actions.NameCaptureVolatile, IdemKey: fxRun + "/" + s.action})
	}
	if s := run.Steps[1]; s.Action == actions.NameSnapshot {
		run.Steps[1].Params = map[string]string{"memory": "true"}
	}

	// Accept: incident, indicator, decision, run — one transaction at t0.
	tx(func(tx store.Tx) error {
		if err := tx.UpsertIncident(ctx, store.Incident{ID: fxIncident, Gateway: "gw-osaka", Site: "osaka", OpenedAt: fxT0, UpdatedAt: fxT0,
			Status: store.IncidentOpen, Severity: "critical", Title: "c2_beacon on gw-osaka (osaka): Periodic beacon from gw-osaka to 203.0.113.66:443 every 60s",
			LastStatus: "firing"}); err != nil {
			return err
		}
		if err := aud(tx, fxT0, "controller", "incident.opened", "", map[string]any{"site": "osaka", "title": "c2_beacon on gw-osaka (osaka)"}); err != nil {
			return err
		}
		if err := tx.InsertIndicator(ctx, store.IndicatorRecord{ID: fxIndicator, ReceivedAt: fxT0, Incident: fxIncident, Matched: true, Indicator: in}); err != nil {
			return err
		}
		if err := aud(tx, fxT0, fxDetector, "indicator.accepted", "", map[string]any{"indicator": fxIndicator, "kind": "c2_beacon",
			"severity": "critical", "confidence": 0.9, "source": "alertmanager", "status": "firing"}); err != nil {
			return err
		}
		if err := aud(tx, fxT0, "controller", "policy.decided", "", map[string]any{"indicator": fxIndicator, "matched": true,
			"policy": "c2-or-exfil-isolate", "runbook": "contain-compromised-gateway", "approval": "auto", "business_hours": false,
			"explanations": []map[string]any{
				{"Policy": "quarantined-gateway-notify", "Matched": false, "Reason": "match expression false"},
				{"Policy": "c2-or-exfil-isolate", "Matched": true, "Reason": "matched"},
				{"Policy": "tamper-contain-with-approval", "Matched": false, "Reason": "not evaluated: c2-or-exfil-isolate matched first"},
			}}); err != nil {
			return err
		}
		if err := tx.InsertRun(ctx, run); err != nil {
			return err
		}
		if err := aud(tx, fxT0, "controller", "run.created", fxRun, map[string]any{"runbook": run.Runbook, "state": "pending", "gates": p.Gates}); err != nil {
			return err
		}
		// An alert about a host that is not a gateway, in the same batch.
		return tx.Audit(ctx, audit.Entry{At: fxT0, Actor: fxDetector, Token: fxDetectorToken, Action: "indicator.unmatched", Data: js(t, map[string]any{"reason": "no gateway"})})
	})

	ledgerNow = ms(1.2)
	if _, err := ledger.Add(ctx, evidence.Item{Incident: fxIncident, Gateway: "gw-osaka", Name: "alertmanager-alert.json", MediaType: "application/json",
		Kind: evidence.KindLog, Source: "alertmanager", CollectedAt: fxT0, CollectedBy: fxDetector, CollectedFrom: "POST /v1/intake/alertmanager",
		Content: []byte(`{"alertname":"C2Beacon","instance":"gw-osaka.example.net:9100","dst_ip":"203.0.113.66"}`)}); err != nil {
		t.Fatal(err)
	}

	run.State, run.StartedAt, run.UpdatedAt = store.RunRunning, ms(7.017), ms(7.017)
	tx(func(tx store.Tx) error {
		if err := tx.UpdateRun(ctx, run); err != nil {
			return err
		}
		return aud(tx, ms(7.017), "controller", "run.started", fxRun, map[string]any{"runbook": run.Runbook})
	})

	type outcome struct {
		apply, done float64
		state       string
		result      actions.Result
		errText     string
	}
	outcomes := []outcome{
		{9.769, 12.539, store.StepSkipped, actions.Result{Summary: "skipped: capture_volatile on gateway gw-osaka: no warden agent configured (agents.cert_file): unsupported"}, ""},
		{15.111, 38.005, store.StepSucceeded, actions.Result{Changed: true, Summary: `took snapshot "` + fxSnapshot + `" of gw-osaka`,
			Details: map[string]any{"vm": "gw-osaka", "snapshot": fxSnapshot, "memory_requested": true, "verified": `snapshot "` + fxSnapshot + `" of gw-osaka exists (memory: true)`,
				"verify": map[string]any{"vm": "gw-osaka", "snapshot": fxSnapshot, "memory": true}}}, ""},
		{39.55, 89.976, store.StepSucceeded, actions.Result{Changed: true, Summary: "isolated gw-osaka",
			Details: map[string]any{"vm": "gw-osaka", "quarantined": true, "verified": "gw-osaka is quarantined", "password": fxSecretStep,
				"nics_after": map[string]string{"Network adapter 1": "warden-quarantine"}}}, ""},
		{97.15, 99.362, store.StepSucceeded, actions.Result{Changed: true, Summary: "notified channel default (HTTP 204 after 1 attempt(s))",
			Details: map[string]any{"verified": "channel default accepted the notification (HTTP 204)"}}, ""},
	}
	for i, o := range outcomes {
		step := run.Steps[i]
		step.Run, step.State, step.Attempts, step.StartedAt = fxRun, store.StepRunning, 1, ms(o.apply)
		tx(func(tx store.Tx) error {
			if err := tx.UpdateStep(ctx, step); err != nil {
				return err
			}
			return aud(tx, ms(o.apply), "controller", "step.apply", fxRun, map[string]any{"step": i, "name": step.Name, "action": step.Action, "attempt": 1})
		})
		if o.state == store.StepSkipped {
			tx(func(tx store.Tx) error {
				return aud(tx, ms(11.375), "controller", "step.error", fxRun, map[string]any{"step": i, "error": "capture_volatile on gateway gw-osaka: no warden agent configured (agents.cert_file): unsupported", "terminal": true})
			})
		}
		step.State, step.FinishedAt, step.Result, step.Error = o.state, ms(o.done), js(t, o.result), o.errText
		tx(func(tx store.Tx) error {
			if err := tx.UpdateStep(ctx, step); err != nil {
				return err
			}
			return aud(tx, ms(o.done), "controller", "step."+o.state, fxRun, map[string]any{"step": i, "name": step.Name, "summary": o.result.Summary,
				"duration_ms": ms(o.done).Sub(ms(o.apply)).Milliseconds()})
		})
		switch step.Action {
		case actions.NameSnapshot:
			ledgerNow = ms(38.6)
			if _, err := ledger.Add(ctx, evidence.Item{Incident: fxIncident, Gateway: "gw-osaka", Name: "vm-snapshot-" + fxSnapshot + ".json",
				Kind: evidence.KindSnapshot, Source: "snapshot", CollectedAt: ms(38.005), CollectedBy: "controller", CollectedFrom: "vcenter:gw-osaka",
				Reference: map[string]any{"vm": "gw-osaka", "snapshot": fxSnapshot, "memory": true}}); err != nil {
				t.Fatal(err)
			}
		case actions.NameIsolate:
			tx(func(tx store.Tx) error {
				if err := tx.SetDesiredPosture(ctx, "gw-osaka", store.PostureQuarantined, fxIncident, ms(91.749)); err != nil {
					return err
				}
				if err := tx.SetIncidentStatus(ctx, fxIncident, store.IncidentContained, ms(91.749)); err != nil {
					return err
				}
				return aud(tx, ms(91.749), "controller", "posture.desired", fxRun, map[string]any{"desired": "quarantined"})
			})
			if err := st.SetObservedPosture(ctx, "gw-osaka", store.PostureQuarantined, js(t, map[string]any{"quarantined": true}), ms(91.749)); err != nil {
				t.Fatal(err)
			}
		}
	}
	run.State, run.FinishedAt, run.UpdatedAt = store.RunSucceeded, ms(100.378), ms(100.378)
	tx(func(tx store.Tx) error {
		if err := tx.UpdateRun(ctx, run); err != nil {
			return err
		}
		return aud(tx, ms(100.378), "controller", "run.succeeded", fxRun, map[string]any{"duration_ms": 93})
	})

	return st, ledger
}

// readClock reads the time the fixture sets before each ledger call.
type readClock struct{ t *time.Time }

func (c readClock) Now() time.Time                              { return *c.t }
func (c readClock) After(time.Duration) <-chan time.Time        { return nil }
func (c readClock) AfterFunc(time.Duration, func()) clock.Timer { return nil }
