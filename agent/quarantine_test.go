package agent

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
)

func TestIsolateAppliesAndIsIdempotent(t *testing.T) {
	h := newHarness(t)
	h.start()
	// The record must be on disk before the kernel is touched.
	h.fw.onApply = func(wire.QuarantineSpec) {
		r, err := loadRecord(h.cfg.StateDir)
		if err != nil || !r.Quarantined {
			t.Errorf("Apply ran before the quarantine was recorded: %+v, %v", r, err)
		}
	}
	first := h.isolate(labIsolate)
	if !first.Changed || first.Generation != 1 || first.Confirmed || first.ConfirmBy.IsZero() {
		t.Fatalf("first isolate: %+v", first)
	}
	if got := h.fw.applies(); len(got) != 1 || !specEqual(got[0], labSpec()) {
		t.Fatalf("applied %v, want [%v]", got, labSpec())
	}
	if first.KilledFlows != 3 || len(h.flows.calls) != 1 || !slices.Equal(h.flows.calls[0], labSpec().Keep()) {
		t.Fatalf("flows: killed %d, calls %v", first.KilledFlows, h.flows.calls)
	}
	if want := []string{"wg0", "wg-site-b"}; !slices.Equal(first.LinksDown, want) {
		t.Fatalf("links down %v, want %v", first.LinksDown, want)
	}
	if up := h.links.up(); up["wg0"] || up["wg-site-b"] || !up["eth0"] {
		t.Fatalf("links after isolate: %v", up)
	}
	if first.SAsTerminated != 1 || !slices.Equal(h.sas.terminated, []string{"site-b"}) {
		t.Fatalf("SAs: %d terminated, %v", first.SAsTerminated, h.sas.terminated)
	}

	second := h.isolate(labIsolate)
	if second.Changed || second.Generation != first.Generation || !second.ConfirmBy.Equal(first.ConfirmBy) {
		t.Fatalf("second isolate: %+v, want unchanged generation %d", second, first.Generation)
	}
	if len(h.fw.applies()) != 2 || len(h.sas.terminated) != 1 {
		t.Fatalf("second isolate should re-check the rules and find nothing else to do")
	}
}

func TestCommitConfirmed(t *testing.T) {
	tests := map[string]struct {
		confirm         bool
		wantQuarantined bool
	}{
		"unconfirmed isolate reverts by itself": {confirm: false, wantQuarantined: false},
		"confirmed isolate stays":               {confirm: true, wantQuarantined: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h, res := newIsolatedHarness(t, tc.confirm)
			h.clock.Advance(DefaultConfirmWindow - time.Second)
			if !h.srv.State().Quarantined || h.fw.removeCount() != 0 {
				t.Fatalf("reverted before the window closed")
			}
			h.clock.Advance(2 * time.Second)
			st := h.observe()
			if st.Quarantined != tc.wantQuarantined {
				t.Fatalf("quarantined = %v after the window, want %v (state %+v)", st.Quarantined, tc.wantQuarantined, st)
			}
			up := h.links.up()
			if tc.wantQuarantined {
				if h.fw.removeCount() != 0 || up["wg0"] || !st.Confirmed || !st.Firewall.Quarantined {
					t.Fatalf("confirmed quarantine touched: removes %d, links %v, state %+v", h.fw.removeCount(), up, st)
				}
				return
			}
			if h.fw.removeCount() != 1 {
				t.Fatalf("Remove called %d times, want 1", h.fw.removeCount())
			}
			if !up["wg0"] || !up["wg-site-b"] {
				t.Fatalf("links not back up: %v", up)
			}
			if !slices.Equal(h.sas.initiated, []string{"site-b"}) {
				t.Fatalf("SAs re-initiated: %v", h.sas.initiated)
			}
			if st.LastReverted.IsZero() || !strings.Contains(st.LastRevertReason, "not confirmed") || len(st.LinksDown) != 0 {
				t.Fatalf("state after revert: %+v", st)
			}
			// A late confirm is refused and says why.
			status, body := h.send(h.command(wire.KindConfirm, wire.ConfirmParams{Generation: res.Generation}))
			if status != http.StatusConflict || !strings.Contains(string(body), "not confirmed") {
				t.Fatalf("late confirm: %d %s", status, body)
			}
		})
	}
}

// The same revert on the system clock, with the shortest window allowed.
func TestCommitConfirmedOnSystemClock(t *testing.T) {
	h := newHarness(t)
	h.realTime = true
	h.cfg.ConfirmWindow = MinConfirmWindow
	h.start()
	h.isolate(labIsolate)
	deadline := time.Now().Add(10 * time.Second)
	for h.srv.State().Quarantined {
		if time.Now().After(deadline) {
			t.Fatal("unconfirmed quarantine not reverted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if h.fw.removeCount() != 1 || !h.links.up()["wg0"] {
		t.Fatalf("revert: removes %d, links %v", h.fw.removeCount(), h.links.up())
	}
}

func TestConfirmConflicts(t *testing.T) {
	h, res := newIsolatedHarness(t, false)
	status, body := h.send(h.command(wire.KindConfirm, wire.ConfirmParams{Generation: res.Generation + 1}))
	if status != http.StatusConflict || !strings.Contains(string(body), "is in force") {
		t.Fatalf("wrong generation: %d %s", status, body)
	}
	h.confirm(res.Generation)
	var again wire.ConfirmResult
	h.do(wire.KindConfirm, wire.ConfirmParams{Generation: res.Generation}, &again)
	if again.Changed {
		t.Fatalf("confirming twice changed something")
	}
	// The same isolate again needs no new confirm.
	if r := h.isolate(labIsolate); r.Changed || !r.Confirmed || r.Generation != res.Generation {
		t.Fatalf("repeat of a confirmed isolate: %+v", r)
	}
}

// An unconfirmed change of a confirmed quarantine reverts to the confirmed
// one, never to no quarantine.
func TestUnconfirmedChangeRevertsToConfirmedQuarantine(t *testing.T) {
	h, first := newIsolatedHarness(t, true)
	changed := labIsolate
	changed.Forensics = []string{"203.0.113.99/32"}
	second := h.isolate(changed)
	if !second.Changed || second.Generation != first.Generation+1 || second.Confirmed {
		t.Fatalf("changed isolate: %+v", second)
	}
	h.clock.Advance(time.Hour)
	st := h.srv.State()
	if !st.Quarantined || !st.Confirmed || !slices.Equal(st.Forensics, []string{"203.0.113.7/32"}) || h.fw.removeCount() != 0 {
		t.Fatalf("after the unconfirmed change: %+v, removes %d", st, h.fw.removeCount())
	}
	applies := h.fw.applies()
	if last := applies[len(applies)-1]; !specEqual(last, labSpec()) {
		t.Fatalf("last Apply %v, want the confirmed spec %v", last, labSpec())
	}
	status, _ := h.send(h.command(wire.KindConfirm, wire.ConfirmParams{Generation: second.Generation}))
	if status != http.StatusConflict {
		t.Fatalf("confirming the reverted generation: status %d, want 409", status)
	}
}

func TestFailClosedAcrossRestart(t *testing.T) {
	h, res := newIsolatedHarness(t, true)
	h.stop()

	// A new process (fresh fakes: after a reboot the kernel has no rules
	// and the links are up again) on the same state directory.
	h.fw = &fakeFirewall{}
	h.links.set("wg0", true)
	h.start()
	if got := h.fw.applies(); len(got) != 1 || !specEqual(got[0], labSpec()) {
		t.Fatalf("at start applied %v, want the recorded spec", got)
	}
	if h.links.up()["wg0"] {
		t.Fatalf("tunnel link not brought down again at start")
	}
	// No controller talks to it for a day: it never lets go.
	for range 24 * 60 {
		h.clock.Advance(time.Minute)
	}
	st := h.srv.State()
	if h.fw.removeCount() != 0 || !st.Quarantined || !st.Confirmed || st.Generation != res.Generation {
		t.Fatalf("after a silent day: removes %d, state %+v", h.fw.removeCount(), st)
	}
}

func TestPendingQuarantineAtStartGetsFreshWindow(t *testing.T) {
	h, res := newIsolatedHarness(t, false)
	h.stop()
	h.clock.Advance(time.Hour) // long past the original window
	h.fw = &fakeFirewall{}
	h.start()
	st := h.srv.State()
	if len(h.fw.applies()) != 1 || !st.Quarantined || st.Confirmed {
		t.Fatalf("at start: applies %d, state %+v", len(h.fw.applies()), st)
	}
	if want := h.clock.Now().Add(DefaultConfirmWindow); !st.ConfirmBy.Equal(want) {
		t.Fatalf("confirm by %s, want a fresh window ending %s", st.ConfirmBy, want)
	}
	h.clock.Advance(DefaultConfirmWindow / 2)
	h.confirm(res.Generation)
	h.clock.Advance(time.Hour)
	if !h.srv.State().Quarantined || h.fw.removeCount() != 0 {
		t.Fatalf("confirmed quarantine reverted")
	}
}

func TestSelfHeal(t *testing.T) {
	h, _ := newIsolatedHarness(t, true)
	before := len(h.fw.applies())

	h.clock.Advance(DefaultHealInterval) // no drift: nothing to do
	if n := len(h.fw.applies()); n != before {
		t.Fatalf("healed without drift")
	}
	h.fw.setDrift()
	h.links.set("wg0", true)
	h.clock.Advance(DefaultHealInterval)
	got := h.fw.applies()
	if len(got) != before+1 || !specEqual(got[len(got)-1], labSpec()) {
		t.Fatalf("after drift: applies %v", got)
	}
	if h.links.up()["wg0"] {
		t.Fatalf("tunnel link brought up by hand stayed up")
	}
	if st := h.srv.State(); st.Heals != 1 || st.LastHealed.IsZero() {
		t.Fatalf("heal not recorded: %+v", st)
	}
}

func TestRelease(t *testing.T) {
	h, _ := newIsolatedHarness(t, true)

	var rel wire.ReleaseResult
	h.do(wire.KindRelease, nil, &rel)
	if !rel.Changed || h.fw.removeCount() != 1 || rel.SAsRestarted != 1 {
		t.Fatalf("release: %+v, removes %d", rel, h.fw.removeCount())
	}
	if want := []string{"wg0", "wg-site-b"}; !slices.Equal(rel.LinksUp, want) {
		t.Fatalf("links up %v, want %v", rel.LinksUp, want)
	}
	if up := h.links.up(); !up["wg0"] || !up["wg-site-b"] || !up["eth0"] {
		t.Fatalf("links after release: %v", up)
	}
	st := h.observe()
	if st.Quarantined || len(st.LinksDown) != 0 || len(st.Management) != 0 || !st.Firewall.Absent {
		t.Fatalf("state after release: %+v", st)
	}
	disk, err := loadRecord(h.cfg.StateDir)
	if err != nil || disk.Quarantined {
		t.Fatalf("record on disk after release: %+v, %v", disk, err)
	}

	var again wire.ReleaseResult
	h.do(wire.KindRelease, nil, &again)
	if again.Changed || len(again.LinksUp) != 0 {
		t.Fatalf("second release: %+v, want unchanged", again)
	}
	// Nothing left for the clock to do.
	h.clock.Advance(time.Hour)
	if len(h.sas.initiated) != 1 {
		t.Fatalf("SAs initiated %v", h.sas.initiated)
	}
}

func TestConfiguredTunnelLinks(t *testing.T) {
	h := newHarness(t)
	h.cfg.WireGuardLinks = []string{"eth0"}
	h.start()
	res := h.isolate(labIsolate)
	if !slices.Equal(res.LinksDown, []string{"eth0"}) {
		t.Fatalf("links down %v, want only the configured one", res.LinksDown)
	}
	if up := h.links.up(); !up["wg0"] || up["eth0"] {
		t.Fatalf("links: %v", up)
	}
}

func TestIsolateKeepsCallerAndConfiguredManagement(t *testing.T) {
	h := newHarness(t)
	h.start()
	// Even an isolate naming no management network keeps the agent's own
	// and the path the command came on.
	res := h.isolate(wire.IsolateParams{})
	want := []string{"127.0.0.1/32", "192.0.2.0/24"}
	if !slices.Equal(res.Management, want) {
		t.Fatalf("management %v, want %v", res.Management, want)
	}
	got := h.fw.applies()[0]
	if !slices.Contains(got.Keep(), netip.MustParsePrefix("127.0.0.1/32")) {
		t.Fatalf("caller not kept: %v", got)
	}
}

func TestCorruptStateRefusesToStart(t *testing.T) {
	h := newHarness(t)
	if err := os.MkdirAll(h.cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.cfg.StateDir, stateFile), []byte(`{"version":1,"quarantined":tr`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(h.cfg, Deps{Firewall: h.fw, KillFlows: h.flows.kill, Clock: h.clock}, nil)
	if err == nil || !strings.Contains(err.Error(), "will not guess") {
		t.Fatalf("New with a corrupt record: %v", err)
	}
}

func TestStateFileIsPrivateAndDurable(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.isolate(labIsolate)
	for _, p := range []string{h.cfg.StateDir, filepath.Join(h.cfg.StateDir, slotNames[0]), filepath.Join(h.cfg.StateDir, nonceFile)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s has mode %v", p, fi.Mode().Perm())
		}
	}
	// A second store reads the record from disk alone.
	payload, found, err := loadSlots(h.cfg.StateDir)
	if err != nil || !found {
		t.Fatalf("no record on disk: %v", err)
	}
	var r record
	if err := json.Unmarshal(payload, &r); err != nil || !r.Quarantined || r.Generation != 1 {
		t.Fatalf("record on disk: %s (%v)", payload, err)
	}
}

// TestKeepFlowsUntilKilled: isolate with KeepFlows puts the rules in force
// and leaves the tracked flows for the capture, through a heal and a
// restart, until kill_flows; that it no longer keeps them is recorded
// before they die; killed flows are never kept again.
func TestKeepFlowsUntilKilled(t *testing.T) {
	h := newHarness(t)
	h.start()
	keep := labIsolate
	keep.KeepFlows = true
	res := h.isolate(keep)
	if !res.Changed || res.KilledFlows != 0 || len(h.flows.calls) != 0 || len(h.fw.applies()) != 1 {
		t.Fatalf("isolate keeping flows: %+v, kill calls %v, applies %d", res, h.flows.calls, len(h.fw.applies()))
	}
	h.confirm(res.Generation)
	if st := h.observe(); !st.FlowsKept || !st.Quarantined {
		t.Fatalf("state after isolate keeping flows: %+v", st)
	}
	// Repeating it, a heal and a restart keep them too.
	if again := h.isolate(keep); again.Changed || again.KilledFlows != 0 {
		t.Fatalf("repeated isolate: %+v", again)
	}
	h.fw.setDrift()
	h.clock.Advance(DefaultHealInterval)
	h.stop()
	h.fw = &fakeFirewall{}
	h.start()
	if len(h.flows.calls) != 0 || !h.srv.State().FlowsKept {
		t.Fatalf("heal or restart killed kept flows: calls %v, state %+v", h.flows.calls, h.srv.State())
	}

	h.flows.onKill = func() {
		if r, err := loadRecord(h.cfg.StateDir); err != nil || r.FlowsKept {
			t.Errorf("flows killed while the record still keeps them: %+v, %v", r, err)
		}
	}
	var killed wire.KillFlowsResult
	h.do(wire.KindKillFlows, nil, &killed)
	if !killed.Changed || !killed.WereKept || killed.Killed != 3 || len(h.flows.calls) != 1 || !slices.Equal(h.flows.calls[0], labSpec().Keep()) {
		t.Fatalf("kill_flows: %+v, calls %v", killed, h.flows.calls)
	}
	if st := h.observe(); st.FlowsKept || !st.Quarantined {
		t.Fatalf("state after kill_flows: %+v", st)
	}
	// Again: nothing kept, nothing left.
	h.do(wire.KindKillFlows, nil, &killed)
	if killed.Changed || killed.WereKept {
		t.Fatalf("second kill_flows: %+v", killed)
	}
	// Killed flows are not kept again by an isolate asking to keep them.
	if again := h.isolate(keep); again.Changed || h.srv.State().FlowsKept {
		t.Fatalf("isolate keeping flows after they were killed: %+v, state %+v", again, h.srv.State())
	}
}

// TestIsolateWithoutKeepFlowsKillsKeptFlows: a second isolate that does
// not keep flows ends the keeping and kills them.
func TestIsolateWithoutKeepFlowsKillsKeptFlows(t *testing.T) {
	h := newHarness(t)
	h.start()
	keep := labIsolate
	keep.KeepFlows = true
	first := h.isolate(keep)
	second := h.isolate(labIsolate)
	if !second.Changed || second.KilledFlows != 3 || second.Generation != first.Generation+1 || h.srv.State().FlowsKept {
		t.Fatalf("isolate after keeping: %+v, state %+v", second, h.srv.State())
	}
}

// TestKillFlowsNeedsAQuarantine: without one, kill_flows is a conflict and
// touches nothing.
func TestKillFlowsNeedsAQuarantine(t *testing.T) {
	h := newHarness(t)
	h.start()
	status, body := h.send(h.command(wire.KindKillFlows, nil))
	if status != http.StatusConflict || !strings.Contains(string(body), "no quarantine") || len(h.flows.calls) != 0 {
		t.Fatalf("kill_flows without a quarantine: %d %s, calls %v", status, body, h.flows.calls)
	}
}

// TestConfirmWithCheck: a confirm with Check reads the rules back first; it
// refuses (409, wire.ConfirmNotEnforced) while they are not enforced, so
// the quarantine stays unconfirmed and reverts by itself, and once they are
// it confirms and answers with the read-back.
func TestConfirmWithCheck(t *testing.T) {
	h := newHarness(t)
	h.start()
	res := h.isolate(labIsolate)
	h.fw.setDrift()
	status, body := h.send(h.command(wire.KindConfirm, wire.ConfirmParams{Generation: res.Generation, Check: true}))
	if status != http.StatusConflict || !strings.Contains(string(body), wire.ConfirmNotEnforced) {
		t.Fatalf("confirm with check of drifted rules: %d %s", status, body)
	}
	if st := h.srv.State(); st.Confirmed {
		t.Fatalf("confirmed although the check failed: %+v", st)
	}
	h.isolate(labIsolate) // re-enforces
	var conf wire.ConfirmResult
	h.do(wire.KindConfirm, wire.ConfirmParams{Generation: res.Generation, Check: true}, &conf)
	if !conf.Changed || conf.State == nil || !conf.State.Confirmed || conf.State.Firewall == nil || !conf.State.Firewall.Quarantined || conf.State.Generation != res.Generation {
		t.Fatalf("confirm with check: %+v (state %+v)", conf, conf.State)
	}
	h.do(wire.KindConfirm, wire.ConfirmParams{Generation: res.Generation, Check: true}, &conf)
	if conf.Changed || conf.State == nil || !conf.State.Firewall.Quarantined {
		t.Fatalf("second confirm with check: %+v", conf)
	}
}
