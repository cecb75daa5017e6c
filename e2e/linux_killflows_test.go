package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/store"
)

// TestLinuxIsolateProvesThenKillsFlows: an isolate that kills flows (the
// step's default, flows: kill) with a real agent and nftables proves the
// quarantine first (verified_at, from the agent's confirmed read-back) and
// kills the gateway's established C2 sessions after, in the same step: its
// result counts them, the quarantine is recorded as not keeping them, and
// the sessions are dead.
func TestLinuxIsolateProvesThenKillsFlows(t *testing.T) {
	l := newLinuxLab(t, linuxLabOptions{Prefix: "e2k", Steps: []string{actions.NameIsolate}})
	c2 := l.lab.C2()
	l.waitAgent()

	sessions := l.openC2Sessions(t)
	for _, s := range sessions {
		if err := s.Alive(okWait); err != nil {
			t.Fatalf("C2 session dead before the alert: %v", err)
		}
	}
	_, runID := l.api.submitC2(t, l.gwID, c2, 1)
	r := l.api.waitRun(t, runID, 10*time.Millisecond)
	if r.State != store.RunSucceeded {
		t.Fatalf("run %s: %s", r.State, r.Error)
	}
	iso := stepOf(t, r, actions.NameIsolate)
	var res struct {
		Details struct {
			OS struct {
				KilledFlows int  `json:"killed_flows"`
				FlowsKept   bool `json:"flows_kept"`
			} `json:"os"`
			Verify map[string]any `json:"verify"`
		} `json:"details"`
	}
	if err := json.Unmarshal(iso.Result, &res); err != nil || iso.State != store.StepSucceeded {
		t.Fatalf("isolate step %s (%v): %s", iso.State, err, iso.Result)
	}
	if res.Details.OS.FlowsKept || res.Details.OS.KilledFlows < len(sessions) {
		t.Errorf("isolate result %s: want at least the %d C2 sessions killed and none kept", iso.Result, len(sessions))
	}
	at, _ := res.Details.Verify[actions.VerifiedAtKey].(string)
	verified, err := time.Parse(time.RFC3339Nano, at)
	if err != nil || verified.Before(iso.StartedAt) || !verified.Before(iso.FinishedAt) {
		t.Errorf("verified_at %q (%v): want it within the step (%s to %s), before the kill that finished it", at, err, iso.StartedAt, iso.FinishedAt)
	}
	st := l.agent.observe(t)
	if !st.Quarantined || !st.Confirmed || st.FlowsKept {
		t.Errorf("agent state: quarantined %t, confirmed %t, flows kept %t; want a confirmed quarantine keeping no flows", st.Quarantined, st.Confirmed, st.FlowsKept)
	}
	// The agent's own log: the quarantine was confirmed (kept flows), and
	// the flows it kept were killed after.
	l.agentMu.Lock()
	log := l.agentProc.log.String()
	l.agentMu.Unlock()
	confirmed, killed := strings.Index(log, `msg="quarantine confirmed"`), strings.Index(log, `msg="quarantine flows killed"`)
	if confirmed < 0 || killed < confirmed || !strings.Contains(log[max(killed, 0):], "were_kept=true") {
		t.Errorf("agent log: confirmed at %d, flows killed at %d: want the kept flows killed after the confirm", confirmed, killed)
	}
	for _, s := range sessions {
		if err := s.Alive(cutWait); err == nil {
			t.Errorf("C2 session %s -> %s still alive under the quarantine", s.LocalAddr(), s.RemoteAddr())
		}
	}
}
