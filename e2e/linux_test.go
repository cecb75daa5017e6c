package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/store"
)

// phase runs one phase of a scenario as a subtest; a failed phase ends the
// scenario, since the next builds on its state.
func phase(t *testing.T, name string, fn func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, fn) {
		t.FailNow()
	}
}

// TestLinuxGatewayContainment proves the Linux path end to end with real
// packets: a real `warden serve` in the management namespace, a real
// `warden agent` in the compromised gateway's namespace, three sites and a
// C2 server. See each phase for what it proves.
func TestLinuxGatewayContainment(t *testing.T) {
	l := newLinuxLab(t, linuxLabOptions{
		Prefix: "e2l",
		// The order of the default runbooks: the attacker is dropped first,
		// the capture records what they had open, then their flows die.
		Steps:     []string{actions.NameIsolate + " flows=keep", actions.NameCaptureVolatile, actions.NameKillFlows, "notify"},
		Reconcile: time.Second,
	})
	ctx := t.Context()
	gw := l.target.Gateway
	c2 := l.lab.C2()
	l.waitAgent()

	var sessions []*netlab.Session
	phase(t, "1 before: the C2 session works, peers and management reach the gateway", func(t *testing.T) {
		sessions = l.openC2Sessions(t)
		l.expectReachable(t, append(l.cutPaths(), l.keptPaths()...)...)
		if l.rulesInKernel() {
			t.Fatal("quarantine rules present before any alert")
		}
	})

	var incident string
	phase(t, "2 alert: isolation applied and verified, evidence captured under it, then the flows killed", func(t *testing.T) {
		for _, s := range sessions {
			if err := s.Alive(okWait); err != nil {
				t.Fatalf("C2 session dead before the alert: %v", err)
			}
		}
		var runID string
		incident, runID = l.api.submitC2(t, l.gwID, c2, 1)
		r := l.api.waitRun(t, runID, 10*time.Millisecond)
		if r.State != store.RunSucceeded {
			t.Fatalf("run %s: %s", r.State, r.Error)
		}
		capture := stepOf(t, r, actions.NameCaptureVolatile)
		var capRes struct {
			Details struct {
				Artefacts []struct {
					Name     string `json:"name"`
					SHA256   string `json:"sha256"`
					Evidence string `json:"evidence_id"`
				} `json:"artefacts"`
			} `json:"details"`
		}
		if err := json.Unmarshal(capture.Result, &capRes); err != nil || capture.State != store.StepSucceeded || len(capRes.Details.Artefacts) == 0 {
			t.Fatalf("capture step %s (%v): %s", capture.State, err, capture.Result)
		}
		for _, a := range capRes.Details.Artefacts {
			if a.Evidence == "" || len(a.SHA256) != 64 {
				t.Errorf("artefact %s stored without evidence id or hash: %+v", a.Name, a)
			}
		}
		iso := stepOf(t, r, actions.NameIsolate)
		var isoRes struct {
			Details struct {
				OS struct {
					Generation  int64 `json:"generation"`
					KilledFlows int   `json:"killed_flows"`
				} `json:"os"`
				Verified string `json:"verified"`
			} `json:"details"`
		}
		if err := json.Unmarshal(iso.Result, &isoRes); err != nil || iso.State != store.StepSucceeded {
			t.Fatalf("isolate step %s (%v): %s", iso.State, err, iso.Result)
		}
		if !strings.Contains(isoRes.Details.Verified, "agent reachable over management") {
			t.Errorf("isolate verified as %q", isoRes.Details.Verified)
		}
		// The isolation kept the flows; the capture, under the quarantine,
		// recorded both C2 sessions (IPv4 and IPv6) in the connection
		// tracking table; kill_flows deleted them afterwards.
		if isoRes.Details.OS.KilledFlows != 0 {
			t.Errorf("isolate with flows=keep killed %d flows", isoRes.Details.OS.KilledFlows)
		}
		if capture.StartedAt.Before(iso.FinishedAt) {
			t.Errorf("the capture started before the quarantine was in force")
		}
		var flows struct {
			Flows []capturedFlow `json:"flows"`
		}
		if err := json.Unmarshal(exportedArtefact(t, l.api, incident, "conntrack.json"), &flows); err != nil {
			t.Fatalf("conntrack.json: %v", err)
		}
		for _, s := range sessions {
			local, remote := s.LocalAddr().String(), s.RemoteAddr().String()
			if !slices.ContainsFunc(flows.Flows, func(f capturedFlow) bool {
				return f.Protocol == "tcp" && f.Original.Src == local && f.Original.Dst == remote
			}) {
				t.Errorf("the capture under quarantine lacks the C2 flow %s -> %s: %+v", local, remote, flows.Flows)
			}
		}
		kill := stepOf(t, r, actions.NameKillFlows)
		var killRes struct {
			Details struct {
				KilledFlows int  `json:"killed_flows"`
				WereKept    bool `json:"were_kept"`
			} `json:"details"`
		}
		if err := json.Unmarshal(kill.Result, &killRes); err != nil || kill.State != store.StepSucceeded || !killRes.Details.WereKept ||
			killRes.Details.KilledFlows < len(sessions) || kill.StartedAt.Before(capture.FinishedAt) {
			t.Errorf("kill_flows step %s (%v), started %s after the capture finished %s: %s, want at least the %d C2 sessions killed",
				kill.State, err, kill.StartedAt, capture.FinishedAt, kill.Result, len(sessions))
		}
		var inc struct {
			Status string      `json:"status"`
			Runs   []store.Run `json:"runs"`
		}
		l.api.call(t, http.MethodGet, "/v1/incidents/"+incident, nil, http.StatusOK, &inc)
		if inc.Status != store.IncidentContained || len(inc.Runs) != 1 || inc.Runs[0].ID != runID {
			t.Errorf("incident %s: status %s, runs %d", incident, inc.Status, len(inc.Runs))
		}
	})

	phase(t, "3 after: the C2 session is dead, every path is cut, management still works", func(t *testing.T) {
		for _, s := range sessions {
			if err := s.Alive(time.Second); err == nil {
				t.Error("the C2 session established before isolation still works")
			}
		}
		if !l.rulesInKernel() {
			t.Fatal("no quarantine table in the gateway's kernel")
		}
		l.expectCut(t, l.cutPaths()...)
		// In the same phase as the cut: management reaches the gateway and
		// its agent port over IPv4 and IPv6 ...
		l.expectReachable(t, l.keptPaths()...)
		for _, a := range gw.Addrs() {
			if err := l.lab.TCPConnect(ctx, l.lab.Mgmt().NS, netip.AddrPortFrom(a, agentPort), okWait); err != nil {
				t.Errorf("agent port from management: %v", err)
			}
		}
		// ... and the controller's agent path works: it reads the quarantine
		// back through it.
		st := l.agent.observe(t)
		if !st.Quarantined || !st.Confirmed || st.Firewall == nil || !st.Firewall.Quarantined || len(st.Firewall.Drift) != 0 {
			t.Errorf("agent state after isolate: %+v firewall %+v", st, st.Firewall)
		}
		p := l.api.posture(t, l.gwID)
		if p.Desired != store.PostureQuarantined || p.Observed != store.PostureQuarantined {
			t.Errorf("gateway posture desired %q observed %q", p.Desired, p.Observed)
		}
		// A C2 session cannot be opened again.
		octx, cancel := context.WithTimeout(ctx, cutWait)
		defer cancel()
		if s, err := netlab.OpenSession(octx, gw.NS, netip.AddrPortFrom(c2.V6, echoPort)); err == nil {
			_ = s.Close()
			t.Error("a new C2 session opened through the quarantine")
		}
	})

	phase(t, "4 the controller's reconcile re-applies a quarantine flushed by hand", func(t *testing.T) {
		before := l.agent.observe(t)
		l.flushRulesByHand()
		// The flush is real: traffic to the C2 server flows, unless the
		// controller's loop has already repaired it.
		if err := l.lab.TCPConnect(ctx, gw.NS, netip.AddrPortFrom(c2.V4, echoPort), okWait); err != nil && !l.rulesInKernel() {
			t.Errorf("C2 unreachable after the flush with no rules in the kernel: %v", err)
		}
		l.waitFor("the controller to re-apply the quarantine", 30*time.Second, func() (bool, error) {
			return l.rulesInKernel(), nil
		})
		l.expectCut(t, l.cutPaths()...)
		l.expectReachable(t, l.keptPaths()[:2]...)
		after := l.agent.observe(t)
		// The agent's self-heal was held off: the repair is the
		// controller's, and it kept the same confirmed generation.
		if after.Heals != before.Heals || after.Generation != before.Generation || !after.Confirmed {
			t.Errorf("agent heals %d -> %d, generation %d -> %d, confirmed %t", before.Heals, after.Heals, before.Generation, after.Generation, after.Confirmed)
		}
		_, metrics, err := l.api.do(ctx, http.MethodGet, "/metrics", nil)
		if err != nil || !strings.Contains(string(metrics), `warden_reconcile_repairs_total{gateway="`+l.gwID+`"} 1`) {
			t.Errorf("controller metrics show no reconcile repair of %s (err %v)", l.gwID, err)
		}
	})

	phase(t, "5 fail closed: kill -9 of the agent leaves the quarantine in force, and a restart keeps it", func(t *testing.T) {
		before := l.agent.observe(t)
		killedAt := time.Now()
		l.agentProc.kill()
		if !l.rulesInKernel() {
			t.Fatal("the quarantine vanished with the agent process")
		}
		l.expectCut(t, l.cutPaths()[:2]...)

		// The controller is away (its path cut) while the agent starts
		// again and for longer than the confirm window.
		l.cutManagement()
		l.startAgent()
		time.Sleep(2*l.opt.ConfirmWindow + time.Second)
		if l.agentProc.exited() {
			t.Fatalf("restarted agent exited: %v", l.agentProc.err)
		}
		if !l.rulesInKernel() {
			t.Fatal("the restarted agent removed the quarantine while the controller was away")
		}
		l.expectCut(t, l.cutPaths()...)
		l.restoreManagement()

		st := l.waitAgent()
		if !st.Quarantined || !st.Confirmed || st.Generation != before.Generation || !st.LastReverted.IsZero() {
			t.Errorf("restarted agent state: %+v", st)
		}
		if st.Firewall == nil || !st.Firewall.Quarantined || len(st.Firewall.Drift) != 0 {
			t.Errorf("restarted agent firewall: %+v", st.Firewall)
		}
		if !st.AgentStarted.After(killedAt) {
			t.Errorf("agent started at %s, before the kill at %s", st.AgentStarted, killedAt)
		}
		l.expectReachable(t, l.keptPaths()[:2]...)
	})

	phase(t, "6 release through the controller: traffic flows again over IPv4 and IPv6", func(t *testing.T) {
		l.api.release(t, l.gwID, incident)
		if l.rulesInKernel() {
			t.Fatal("quarantine table left in the kernel after release")
		}
		l.expectReachable(t, append(l.cutPaths(), l.keptPaths()...)...)
		s, err := l.lab.OpenSession(ctx, gw.NS, netip.AddrPortFrom(c2.V6, echoPort))
		if err != nil {
			t.Fatalf("no new session after release: %v", err)
		}
		_ = s.Close()
		if p := l.api.posture(t, l.gwID); p.Desired != store.PostureReleased {
			t.Errorf("posture after release: %q", p.Desired)
		}
	})

	phase(t, "7 commit-confirmed: an isolate whose confirm cannot arrive reverts by itself", func(t *testing.T) {
		var mgmt []string
		for _, p := range l.lab.ManagementPrefixes() {
			mgmt = append(mgmt, p.String())
		}
		var iso wire.IsolateResult
		if code, err := l.agent.send(ctx, wire.KindIsolate, wire.IsolateParams{Management: mgmt}, &iso); err != nil {
			t.Fatalf("isolate by hand: %d %v", code, err)
		}
		if iso.Confirmed || iso.ConfirmBy.IsZero() {
			t.Fatalf("hand isolate: %+v", iso)
		}
		l.cutManagement() // before any confirm can travel
		if !l.rulesInKernel() {
			t.Fatal("the unconfirmed quarantine is not in force")
		}
		l.expectCut(t, l.cutPaths()[:1]...)
		l.waitFor("the agent to revert the unconfirmed quarantine", 10*l.opt.ConfirmWindow, func() (bool, error) {
			return !l.rulesInKernel(), nil
		})
		l.expectReachable(t, l.cutPaths()...)
		l.restoreManagement()

		st := l.waitAgent()
		if st.Quarantined || st.LastReverted.IsZero() || !strings.Contains(st.LastRevertReason, "not confirmed") {
			t.Errorf("agent state after the revert: %+v", st)
		}
		if st.Firewall == nil || !st.Firewall.Absent {
			t.Errorf("agent firewall after the revert: %+v", st.Firewall)
		}
		// The confirm that finally arrives is refused: the generation is gone.
		code, err := l.agent.send(ctx, wire.KindConfirm, wire.ConfirmParams{Generation: iso.Generation}, nil)
		if code != http.StatusConflict {
			t.Errorf("late confirm: %d %v, want 409", code, err)
		}
		if l.rulesInKernel() {
			t.Error("the late confirm brought the quarantine back")
		}
	})

	phase(t, "8 the audit chain and the captured evidence are intact", func(t *testing.T) {
		st, entries := l.stopAndVerifyAudit(ctx, t)
		repaired := false
		for _, e := range entries {
			repaired = repaired || (e.Action == "reconcile.repair" && e.Subject == l.gwID)
		}
		if !repaired {
			t.Error("no reconcile.repair audit entry")
		}
		ledger, err := evidence.Open(ctx, st.DB(), filepath.Join(filepath.Dir(l.storeDB), "evidence"))
		if err != nil {
			t.Fatal(err)
		}
		recs, err := ledger.List(ctx, incident)
		if err != nil || len(recs) == 0 {
			t.Fatalf("evidence of incident %s: %d records, %v", incident, len(recs), err)
		}
		if bad, err := ledger.Verify(ctx); err != nil || len(bad) != 0 {
			t.Errorf("evidence verification: %v %v", bad, err)
		}
	})
}

// capturedFlow is a flow of the capture's conntrack.json.
type capturedFlow struct {
	Protocol string `json:"protocol"`
	Original struct {
		Src string `json:"src"`
		Dst string `json:"dst"`
	} `json:"original"`
}

// exportedArtefact exports the incident's evidence archive through the API
// (as a responder) and returns the content of the one artefact whose name
// ends with name.
func exportedArtefact(t *testing.T, api *apiNS, incident, name string) []byte {
	t.Helper()
	code, body, err := api.as(v1.RoleResponder).do(t.Context(), http.MethodPost, "/v1/incidents/"+incident+"/evidence/export", []byte(`{}`))
	if err != nil || code != http.StatusOK {
		t.Fatalf("exporting the evidence of %s: %d %v %.300s", incident, code, err, body)
	}
	var found []byte
	for path, data := range untar(t, body) {
		if strings.HasSuffix(path, name) {
			if found != nil {
				t.Fatalf("the archive of %s holds %s twice", incident, name)
			}
			found = data
		}
	}
	if found == nil {
		t.Fatalf("the evidence archive of %s has no %s", incident, name)
	}
	return found
}
