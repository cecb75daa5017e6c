package report

import (
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/plan"
	"github.com/warden-ir/warden/store"
)

// The break-glass fixture is the demo incident, then the next morning's
// release by exception, as issue #13 tells it: resp1 (a responder)
// resolves the beacon, asks for the release with an override of the
// baseline and credential gates, and is refused when approving it
// themself; appr1 (an approver) approves it, and the gateway is released.
const (
	fxRelease       = "run-01a2f0c0ffee00000002"
	fxResp          = "user:resp1"
	fxRespToken     = "tk_7e5a0c1d0001"
	fxAppr          = "user:appr1"
	fxApprToken     = "tk_a99e0b1d0002"
	fxOverride      = "gateway rebuilt from its golden image; baseline check and rotation booked for this afternoon"
	fxResolveReason = "beacon traced to the vendor's licence check, confirmed by the vendor"
	fxApproval      = "agreed with the Osaka site manager"
)

// breakGlassFixture seeds the demo incident and its release by exception,
// and loads the report with opts.
func breakGlassFixture(t *testing.T, opts ...Option) Model {
	t.Helper()
	st, ledger := seedDemo(t)
	seedBreakGlass(t, st, ledger)
	return loadFixture(t, st, ledger, opts...)
}

func seedBreakGlass(t *testing.T, st *store.Store, _ *evidence.Ledger) {
	t.Helper()
	ctx := t.Context()
	tx := func(fn func(tx store.Tx) error) {
		t.Helper()
		if err := st.Tx(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	tokens := map[string]string{fxResp: fxRespToken, fxAppr: fxApprToken}
	aud := func(tx store.Tx, at time.Time, actor, action, run string, data any) error {
		e := audit.Entry{At: at, Actor: actor, Token: tokens[actor], Action: action, Incident: fxIncident, Run: run, Subject: "gw-osaka"}
		if data != nil {
			e.Data = js(t, data)
		}
		return tx.Audit(ctx, e)
	}
	day := fxT0.Add(-24 * time.Hour)
	tx(func(tx store.Tx) error {
		for _, u := range []store.User{
			{Name: "resp1", Role: "responder", DisplayName: "Ken Sato"},
			{Name: "appr1", Role: "approver", DisplayName: "Yui Tanaka"},
		} {
			u.CreatedAt, u.CreatedBy, u.UpdatedAt = day, "user:admin", day
			if err := tx.InsertUser(ctx, u); err != nil {
				return err
			}
		}
		return nil
	})

	at := func(d time.Duration) time.Time { return fxT0.Add(6*time.Hour + d) }
	tx(func(tx store.Tx) error {
		if err := tx.ResolveIndicator(ctx, fxIndicator, fxResp, fxResolveReason, at(0)); err != nil {
			return err
		}
		return aud(tx, at(0), fxResp, "indicator.resolved_by_person", "", map[string]any{"indicator": fxIndicator, "reason": fxResolveReason})
	})

	overridden := " — overridden by " + fxResp + ": " + fxOverride
	p := plan.Plan{Incident: fxIncident, Gateway: "gw-osaka", Site: "osaka", VM: "gw-osaka", Runbook: "release-gateway", ApprovalRequired: true,
		Gates: []plan.Gate{
			{Name: "approval", Passed: true, Blocking: true, Detail: "started by " + fxResp},
			{Name: "evidence-first", Passed: true, Blocking: false, Detail: "overridden by " + fxResp + ": " + fxOverride},
			{Name: "baseline", Passed: true, Blocking: true, Detail: "no baseline check on record (run warden drift check --gateway gw-osaka)" + overridden},
			{Name: "credentials-rotated", Passed: true, Blocking: true, Detail: "credentials of its 2 tunnel(s) not rotated since the quarantine (runbook respond-confirmed-compromise or rotate-fleet-credentials)" + overridden},
			{Name: "no-live-threat", Passed: true, Blocking: true, Detail: "no high-or-worse indicator about the gateway since the quarantine is still firing"},
			{Name: "release-approval", Passed: false, Blocking: true, Detail: "release always needs a person's approval"},
			{Name: "four-eyes", Passed: false, Blocking: true, Detail: "break-glass override by " + fxResp + ": a second person (an approver) must approve the run"},
		}}
	run := store.Run{ID: fxRelease, Incident: fxIncident, Gateway: "gw-osaka", Site: "osaka", Runbook: "release-gateway", Trigger: "manual",
		State: store.RunAwaitingApproval, ApprovalRequired: true, ApprovalReason: strings.Join(p.BlockingReasons(), "; "),
		OverrideReason: fxOverride, RequestedBy: fxResp, OverriddenBy: fxResp, Plan: js(t, p), CreatedAt: at(10 * time.Minute), UpdatedAt: at(10 * time.Minute)}
	for i, a := range []string{actions.NameRelease, actions.NameNotify} {
		run.Steps = append(run.Steps, store.Step{Index: i, Name: a, Action: a, State: store.StepPending, IdemKey: fxRelease + "/" + a})
	}
	tx(func(tx store.Tx) error {
		if err := tx.InsertRun(ctx, run); err != nil {
			return err
		}
		return aud(tx, run.CreatedAt, fxResp, "run.created", fxRelease, map[string]any{"runbook": run.Runbook, "trigger": "manual",
			"state": run.State, "approval_reason": run.ApprovalReason, "gates": p.Gates, "override_reason": fxOverride})
	})
	tx(func(tx store.Tx) error {
		return aud(tx, at(12*time.Minute), fxResp, "run.approval_refused", fxRelease, map[string]any{"rule": "four-eyes",
			"reason": "four eyes (guards.two_person): " + fxResp + " requested it and overrode a gate on it, so another approver must approve run " + fxRelease})
	})
	run.State, run.ApprovedBy, run.ApprovedAt, run.UpdatedAt = store.RunPending, fxAppr, at(20*time.Minute), at(20*time.Minute)
	tx(func(tx store.Tx) error {
		if err := tx.UpdateRun(ctx, run); err != nil {
			return err
		}
		return aud(tx, run.ApprovedAt, fxAppr, "run.approved", fxRelease, map[string]any{"comment": fxApproval})
	})

	t0 := at(20*time.Minute + 40*time.Millisecond)
	run.State, run.StartedAt, run.UpdatedAt = store.RunRunning, t0, t0
	tx(func(tx store.Tx) error {
		if err := tx.UpdateRun(ctx, run); err != nil {
			return err
		}
		return aud(tx, t0, "controller", "run.started", fxRelease, map[string]any{"runbook": run.Runbook})
	})
	results := []actions.Result{
		{Changed: true, Summary: "released gw-osaka", Details: map[string]any{"vm": "gw-osaka", "verified": "gw-osaka is released", "password": fxSecretStep}},
		{Changed: true, Summary: "notified channel default (HTTP 204 after 1 attempt(s))", Details: map[string]any{"verified": "channel default accepted the notification (HTTP 204)"}},
	}
	end := t0
	for i, res := range results {
		step := run.Steps[i]
		start := end.Add(2 * time.Millisecond)
		end = start.Add(time.Duration(30-20*i) * time.Millisecond)
		step.Run, step.State, step.Attempts, step.StartedAt = fxRelease, store.StepRunning, 1, start
		tx(func(tx store.Tx) error {
			if err := tx.UpdateStep(ctx, step); err != nil {
				return err
			}
			return aud(tx, start, "controller", "step.apply", fxRelease, map[string]any{"step": i, "name": step.Name, "action": step.Action, "attempt": 1})
		})
		step.State, step.FinishedAt, step.Result = store.StepSucceeded, end, js(t, res)
		tx(func(tx store.Tx) error {
			if err := tx.UpdateStep(ctx, step); err != nil {
				return err
			}
			if step.Action == actions.NameRelease {
				if err := tx.SetDesiredPosture(ctx, "gw-osaka", store.PostureReleased, fxIncident, end); err != nil {
					return err
				}
				if err := aud(tx, end, "controller", "posture.desired", fxRelease, map[string]any{"desired": "released"}); err != nil {
					return err
				}
			}
			return aud(tx, end, "controller", "step.succeeded", fxRelease, map[string]any{"step": i, "name": step.Name, "summary": res.Summary,
				"duration_ms": end.Sub(start).Milliseconds()})
		})
		if step.Action == actions.NameRelease {
			if err := st.SetObservedPosture(ctx, "gw-osaka", store.PostureReleased, js(t, map[string]any{"quarantined": false}), end); err != nil {
				t.Fatal(err)
			}
		}
	}
	run.State, run.FinishedAt, run.UpdatedAt = store.RunSucceeded, end.Add(time.Millisecond), end.Add(time.Millisecond)
	tx(func(tx store.Tx) error {
		if err := tx.UpdateRun(ctx, run); err != nil {
			return err
		}
		return aud(tx, run.FinishedAt, "controller", "run.succeeded", fxRelease, map[string]any{"duration_ms": run.FinishedAt.Sub(t0).Milliseconds()})
	})
}

// The model names who asked for the release, who overrode its gates, who
// approved it and who resolved the indicator, with what the user store
// says of each; the people are those, in the order they first acted.
func TestBreakGlassModel(t *testing.T) {
	m := breakGlassFixture(t)
	rel, ok := runByID(m, fxRelease)
	if !ok || rel.RequestedBy != fxResp || rel.OverriddenBy != fxResp || rel.ApprovedBy != fxAppr || rel.fourEyes() != fourEyesSecondPerson ||
		strings.Join(rel.RefusedApprovers, ",") != fxResp {
		t.Fatalf("release run %+v", rel)
	}
	if contain, _ := runByID(m, fxRun); contain.RequestedBy != fxDetector || contain.fourEyes() != fourEyesNotApplicable {
		t.Errorf("containment run requested by %q, four eyes %v", contain.RequestedBy, contain.fourEyes())
	}
	if in := m.Indicators[0]; in.ResolvedBy != fxResp || in.ResolveReason != fxResolveReason || in.ResolvedAt.IsZero() {
		t.Errorf("indicator %+v", in)
	}
	if a := m.Actors[fxAppr]; a.Kind != ActorPerson || a.Name != "appr1" || a.Role != "approver" || a.DisplayName != "Yui Tanaka" {
		t.Errorf("appr1 %+v", a)
	}
	if a := m.Actors[fxDetector]; a.Kind != ActorDetector {
		t.Errorf("the detector is %+v", a)
	}
	var got []string
	for _, p := range m.People {
		got = append(got, p.Actor+" requested "+strings.Join(p.Requested, ",")+" overrode "+strings.Join(p.Overrode, ",")+
			" approved "+strings.Join(p.Approved, ",")+" resolved "+strings.Join(p.Resolved, ","))
	}
	want := []string{
		fxResp + " requested " + fxRelease + " overrode " + fxRelease + " approved  resolved " + fxIndicator,
		fxAppr + " requested  overrode  approved " + fxRelease + " resolved ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("people:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if m.FourEyesOff {
		t.Error("four eyes is off without the option")
	}
}

// Every output names resp1 as requester and overrider and appr1 as the
// second person who approved, in the summary and in the technical part,
// and says that resp1's own approval was refused.
func TestBreakGlassNamesBothPeople(t *testing.T) {
	out := render(t, breakGlassFixture(t))
	tests := map[string]struct{ summary, tech []string }{
		"en.md": {
			summary: []string{
				"People who acted:",
				"- **resp1 (Ken Sato)**: requested release-gateway, overrode gates on release-gateway, resolved 1 indicator",
				"- **appr1 (Yui Tanaka)**: approved release-gateway",
				"- **Break-glass override on " + fxRelease + " (release-gateway)**: resp1 overrode gates; a second person, appr1, approved the run. Four eyes refused the approval of resp1.",
				"(overridden by resp1)",
				"A second person, appr1, approved the release.",
			},
			tech: []string{
				"| " + fxRelease + " | release-gateway | resp1 | resp1 | required, approved by a second person | appr1 |",
				"| " + fxRun + " | contain-compromised-gateway | alertmanager (detector) | — | not required (automatic) | — |",
				"| resp1 | user:resp1 | person (token or single sign-on) | Ken Sato | responder | requested " + fxRelease + ", overrode gates on " + fxRelease + ", resolved " + fxIndicator + " |",
				"| appr1 | user:appr1 | person (token or single sign-on) | Yui Tanaka | approver | approved " + fxRelease + " |",
				"trigger manual, requested by resp1; succeeded",
				"Approved by appr1 at",
				"Override recorded by resp1 (reason: “" + fxOverride + "”).",
				"| approval | passed | started by resp1 |",
				"| four-eyes | not passed (waits for a person) | break-glass override by resp1: a second person (an approver) must approve the run |",
				"release-approval: release always needs a person's approval; four-eyes: break-glass override by resp1: a second person (an approver) must approve the run",
				"c2_beacon (resolved by resp1: “" + fxResolveReason + "”)",
				"| resp1, token " + fxRespToken + " | run.approval_refused |",
				"| appr1, token " + fxApprToken + " | run.approved |",
				"| alertmanager (detector), token " + fxDetectorToken + " | indicator.accepted |",
				"| Warden (controller) | run.started |",
			},
		},
		"ja.md": {
			summary: []string{
				"対応した担当者：",
				"- **resp1（Ken Sato）**: release-gateway の実行を依頼、release-gateway で例外を適用、兆候 1 件を解消と判断",
				"- **appr1（Yui Tanaka）**: release-gateway を承認",
				"- **緊急時の例外適用（処理 " + fxRelease + "、release-gateway）**: resp1 が例外を適用し、別の担当者である appr1 が承認しました（二人承認）。二人承認の規則により、resp1 による承認は拒否されました。",
				"（例外の適用者：resp1）",
				"解除は、別の担当者である appr1 が承認しました（二人承認）。",
			},
			tech: []string{
				"| " + fxRelease + " | release-gateway | resp1 | resp1 | 必要・別の担当者が承認（二人承認） | appr1 |",
				"| " + fxRun + " | contain-compromised-gateway | alertmanager（検知システム） | — | 不要（自動実行） | — |",
				"| resp1 | user:resp1 | 担当者（トークンまたはシングルサインオンで認証） | Ken Sato | responder | " + fxRelease + " の実行を依頼、" + fxRelease + " で例外を適用、兆候 " + fxIndicator + " を解消と判断 |",
				"起動 手動、依頼者 resp1。",
				"承認者：appr1（",
				"resp1 が例外を記録しました（理由：「" + fxOverride + "」）。",
				"| 承認 | 通過 | resp1 が手動で開始 |",
				"| 二人承認 | 不通過（承認待ち） | resp1 による緊急時の例外適用のため、別の担当者（承認者）による承認が必要です |",
				"c2_beacon（resp1 が解消と判断：「" + fxResolveReason + "」）",
				"| resp1、トークン " + fxRespToken + " | run.approval_refused |",
				"| Warden（コントローラー） | run.started |",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			summary, tech, ok := strings.Cut(out[name], "\n---\n")
			if !ok {
				t.Fatal("no separator between summary and technical part")
			}
			checkSays(t, "summary", summary, tc.summary, []string{"user:resp1", "user:appr1", "alone"})
			checkSays(t, "technical part", tech, tc.tech, nil)
			if n := strings.Count(summary, "\n"); n > 60 {
				t.Errorf("summary is %d lines; it must fit one screen", n)
			}
		})
	}
	// All four outputs name both people, as what they were.
	for name, text := range out {
		for _, want := range []string{"resp1", "appr1", "Ken Sato", "Yui Tanaka"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks %q", name, want)
			}
		}
	}
	for _, name := range []string{"en.html", "ja.html"} {
		for _, want := range []string{"<td>resp1</td>", "<td>appr1</td>", "<td class=\"mono\">user:resp1</td>"} {
			if !strings.Contains(out[name], want) {
				t.Errorf("%s lacks %q", name, want)
			}
		}
	}
}

// guards.two_person off is said plainly in the summary, in both
// languages, only when Load is told so.
func TestFourEyesOffIsSaid(t *testing.T) {
	const (
		en = "OFF. guards.two_person is off in the configuration, so one person could request a run and approve it alone"
		ja = "設定で guards.two_person が無効になっているため、一人の担当者が処理の依頼から承認までを単独で行えます"
	)
	for name, tc := range map[string]struct {
		opts []Option
		off  bool
	}{
		"default":        {nil, false},
		"four eyes on":   {[]Option{FourEyes(true)}, false},
		"four eyes off":  {[]Option{FourEyes(false)}, true},
		"last one holds": {[]Option{FourEyes(false), FourEyes(true)}, false},
	} {
		t.Run(name, func(t *testing.T) {
			m := breakGlassFixture(t, tc.opts...)
			if m.FourEyesOff != tc.off {
				t.Fatalf("FourEyesOff %t, want %t", m.FourEyesOff, tc.off)
			}
			out := render(t, m)
			for key, want := range map[string]string{"en.md": en, "ja.md": ja, "en.html": en, "ja.html": ja} {
				summary, _, _ := strings.Cut(out[key], "\n---\n")
				if key == "en.html" || key == "ja.html" {
					summary, _, _ = strings.Cut(out[key], `class="tech"`)
				}
				if got := strings.Contains(summary, want); got != tc.off {
					t.Errorf("%s summary says four eyes is off: %t, want %t", key, got, tc.off)
				}
				if got := strings.Contains(out[key], "guards.two_person is off: the controller does not require") ||
					strings.Contains(out[key], "guards.two_person が無効のため、コントローラーは"); got != tc.off {
					t.Errorf("%s technical part says four eyes is off: %t, want %t", key, got, tc.off)
				}
			}
		})
	}
}

// With four eyes off one person may ask for a run and approve it, or
// override a gate and approve it; the report calls each out as one
// person acting alone, in the summary and the technical part.
func TestOnePersonAloneIsCalledOut(t *testing.T) {
	f := newFlowGuards(t, false)
	// resp1 submitted the alert; its policy wants an approval, and resp1
	// gave it.
	a := f.acceptAs(t, "user:resp1", indicator.ConfigTamper)
	if _, err := f.c.Approve(t.Context(), a.RunID, "user:resp1", "looked at it myself"); err != nil {
		t.Fatal(err)
	}
	if err := f.c.ExecuteRun(t.Context(), a.RunID); err != nil {
		t.Fatal(err)
	}
	// Then resp1 released the gateway by exception, and approved that too.
	rel := f.releaseByOverride(t, a.IncidentID, "user:resp1", "nobody else awake", "user:resp1", "approving my own release")
	m := f.loadWith(t, a.IncidentID, FourEyes(false))
	for _, r := range m.Runs {
		if r.fourEyes() != fourEyesAlone {
			t.Errorf("run %s (%s): four eyes %v, want alone", r.ID, r.Runbook, r.fourEyes())
		}
	}
	out := render(t, m)
	for key, want := range map[string][]string{
		"en.md": {
			"- **One person alone on " + a.RunID + " (respond-confirmed-compromise)**: resp1 requested the run and approved it alone: no second person checked it.",
			"- **Break-glass override on " + rel.ID + " (release-gateway)**: resp1 overrode gates and approved the run alone: no second person checked it.",
			"resp1 also approved the release alone: no second person checked it.",
			"| approved by one person alone (no second person) | resp1 |",
			"OFF. guards.two_person is off",
		},
		"ja.md": {
			"- **単独での承認（処理 " + a.RunID + "、respond-confirmed-compromise）**: resp1 が処理を依頼し、承認も単独で行いました。二人目による確認はありません。",
			"- **緊急時の例外適用（処理 " + rel.ID + "、release-gateway）**: resp1 が例外を適用し、承認も単独で行いました。二人目による確認はありません。",
			"解除の承認も resp1 が単独で行っており、二人目による確認はありません。",
			"| 同一人物が単独で承認（二人目の確認なし） | resp1 |",
		},
	} {
		checkSays(t, key, out[key], want, []string{"a second person, resp1", "別の担当者である resp1"})
	}
	for key, text := range out {
		if !strings.Contains(text, "resp1") || strings.Contains(text, "by user:resp1") {
			t.Errorf("%s does not name resp1 as the report names people", key)
		}
	}
}

// A person who approves a run someone else asked for is not called out;
// a run nobody approved yet after a break-glass override waits for a
// second person, and says who may not be it.
func TestFourEyesCases(t *testing.T) {
	for name, tc := range map[string]struct {
		run  Run
		want fourEyesCase
		en   string
	}{
		"automatic":       {Run{State: store.RunSucceeded}, fourEyesNotApplicable, ""},
		"manual, no gate": {Run{State: store.RunSucceeded, Trigger: "manual", RequestedBy: "user:a", ApprovedBy: "user:a"}, fourEyesNotApplicable, ""},
		"second person":   {Run{State: store.RunSucceeded, ApprovalRequired: true, RequestedBy: "user:a", ApprovedBy: "user:b"}, fourEyesSecondPerson, ""},
		"requester alone": {Run{State: store.RunSucceeded, ApprovalRequired: true, RequestedBy: "user:a", ApprovedBy: "user:a"}, fourEyesAlone,
			"a requested the run and approved it alone: no second person checked it."},
		"break-glass waiting": {Run{State: store.RunAwaitingApproval, ApprovalRequired: true, RequestedBy: "user:a", OverriddenBy: "user:a", OverrideReason: "x"},
			fourEyesWaiting, "a overrode gates; the run waits for a second person, an approver other than a."},
		"break-glass cancelled": {Run{State: store.RunCancelled, ApprovalRequired: true, RequestedBy: "user:a", OverriddenBy: "user:a", OverrideReason: "x"},
			fourEyesUnapproved, "a overrode gates; no second person approved the run (cancelled)."},
		"break-glass, no approval needed": {Run{State: store.RunSucceeded, Trigger: "manual", RequestedBy: "user:a", OverriddenBy: "user:a", ApprovedBy: "user:a", OverrideReason: "x"},
			fourEyesAlone, "a overrode gates and approved the run alone: no second person checked it."},
		"break-glass, second person": {Run{State: store.RunSucceeded, ApprovalRequired: true, RequestedBy: "user:a", OverriddenBy: "user:a", ApprovedBy: "local:b", OverrideReason: "x"},
			fourEyesSecondPerson, "a overrode gates; a second person, b (on the controller host), approved the run."},
	} {
		t.Run(name, func(t *testing.T) {
			if got := tc.run.fourEyes(); got != tc.want {
				t.Errorf("four eyes %v, want %v", got, tc.want)
			}
			l, err := newLoc(LangEnglish, "UTC")
			if err != nil {
				t.Fatal(err)
			}
			if got := fourEyesText(tc.run, l); got != tc.en {
				t.Errorf("says %q, want %q", got, tc.en)
			}
		})
	}
}

// Every kind of actor is named the same way wherever the report names it.
func TestActorsAreNamedForPeople(t *testing.T) {
	en, _ := newLoc(LangEnglish, "UTC")
	ja, _ := newLoc(LangJapanese, "UTC")
	m := Model{}
	describeActors(&m, map[string]store.User{"resp1": {Name: "resp1", Role: "responder"}, "alertmanager": {Name: "alertmanager", Role: "intake"}})
	for id, want := range map[string][2]string{
		"user:resp1":            {"resp1", "resp1"},
		"user:oidc.user@x.test": {"oidc.user@x.test", "oidc.user@x.test"},
		"user:alertmanager":     {"alertmanager (detector)", "alertmanager（検知システム）"},
		"user:shared-api-token": {"shared-api-token (shared API token: not a named person)", "shared-api-token（共有 API トークン：個人を特定できません）"},
		"local:root":            {"root (on the controller host)", "root（コントローラーのホスト上）"},
		"controller":            {"Warden (controller)", "Warden（コントローラー）"},
		"agent:gw-osaka":        {"agent on gw-osaka", "gw-osaka のエージェント"},
		"api:ops1":              {"ops1 (API client, name not verified)", "ops1（API クライアント。名前は未検証）"},
		"alice":                 {"alice", "alice"},
		"":                      {"—", "—"},
	} {
		a := describeActor(id, map[string]store.User{"resp1": {Name: "resp1", Role: "responder"}, "alertmanager": {Name: "alertmanager", Role: "intake"}})
		en.actors, ja.actors = map[string]Actor{id: a}, map[string]Actor{id: a}
		if got := en.who(id); got != want[0] {
			t.Errorf("en who(%q) = %q, want %q", id, got, want[0])
		}
		if got := ja.who(id); got != want[1] {
			t.Errorf("ja who(%q) = %q, want %q", id, got, want[1])
		}
	}
	if got := describeActor("user:alertmanager", nil).Kind; got != ActorPerson {
		t.Errorf("a user the store does not know is %q, want a person", got)
	}
}

// A hostile display name or resolution reason is shown inert, like any
// text from outside.
func TestPeopleTextIsSanitised(t *testing.T) {
	m := breakGlassFixture(t)
	a := m.Actors[fxResp]
	a.DisplayName = "Ken\u202eevil</td><script>x</script>"
	m.Actors[fxResp] = a
	m.Indicators[0].ResolveReason = "ok\x1b[31m <img src=x>"
	for _, lang := range []string{LangJapanese, LangEnglish} {
		html := string(mustRender(t, m, lang, FormatHTML))
		md := string(mustRender(t, m, lang, FormatMarkdown))
		for _, bad := range []string{"\u202e", "\x1b", "<script", "<img"} {
			if strings.Contains(html, bad) {
				t.Errorf("%s HTML contains %q", lang, bad)
			}
		}
		for _, bad := range []string{"\u202e", "\x1b"} {
			if strings.Contains(md, bad) {
				t.Errorf("%s Markdown contains %q", lang, bad)
			}
		}
		if !strings.Contains(html, `Ken\u202eevil&lt;/td&gt;&lt;script&gt;`) {
			t.Errorf("%s HTML does not show the display name escaped", lang)
		}
	}
}

// newFlowGuards is newFlow with guards.two_person set.
func newFlowGuards(t *testing.T, twoPerson bool) *flow {
	t.Helper()
	g := config.Defaults().Guards
	g.TwoPerson = &twoPerson
	return newFlowWith(t, g)
}

// TestCancelledBeforeApprovalIsNotApproved: a run that waited for a person
// and was cancelled is not shown as approved.
func TestCancelledBeforeApprovalIsNotApproved(t *testing.T) {
	f := newFlow(t)
	a := f.accept(t, indicator.C2Beacon)
	if err := f.c.ExecuteRun(t.Context(), a.RunID); err != nil {
		t.Fatal(err)
	}
	rel, err := f.c.StartRunbook(t.Context(), controller.StartRequest{Runbook: "release-gateway", Gateway: "gw-osaka", Incident: a.IncidentID,
		Actor: "user:resp1", OverrideReason: "rebuilt"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.Cancel(t.Context(), rel.ID, "user:appr1", "not yet"); err != nil {
		t.Fatal(err)
	}
	out := render(t, f.load(t, a.IncidentID))
	for key, want := range map[string]string{"en.md": "required, never given", "ja.md": "必要・未承認"} {
		if !strings.Contains(out[key], want) {
			t.Errorf("%s does not say the cancelled release was never approved (%q)", key, want)
		}
	}
	for _, key := range []string{"en.md", "ja.md"} {
		for _, line := range strings.Split(out[key], "\n") {
			if strings.Contains(line, rel.ID) && (strings.Contains(line, "required, approved") || strings.Contains(line, "必要・承認済み")) {
				t.Errorf("%s shows the cancelled release as approved: %s", key, line)
			}
		}
	}
}
