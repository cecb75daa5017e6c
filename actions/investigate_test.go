package actions

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/investigation"
)

// fakeAgents answers investigate for the gateways it holds; the others
// are down.
type fakeAgents struct {
	mu      sync.Mutex
	answers map[string]wire.InvestigateResult
	asked   map[string]int
}

func (f *fakeAgents) CheckAgent(gw inventory.Gateway) error {
	if gw.Agent == "" {
		return fmt.Errorf("%s has no agent: %w", gw.ID, ErrUnsupported)
	}
	return nil
}

func (f *fakeAgents) Investigate(_ context.Context, gw inventory.Gateway, p wire.InvestigateParams) (wire.InvestigateResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked[gw.ID]++
	res, ok := f.answers[gw.ID]
	if !ok {
		return wire.InvestigateResult{}, errors.New("connection refused")
	}
	res.Since, res.Until = p.Since, p.Until
	return res, nil
}

// memorySink keeps what is filed by key.
type memorySink struct {
	mu    sync.Mutex
	files map[string]map[string][]byte // key → name → content
	done  map[string]bool
}

func (m *memorySink) Captured(_ context.Context, _, key string) ([]StoredArtefact, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return nil, m.done[key], nil
}

func (m *memorySink) StoreCapture(ctx context.Context, incident string, gw inventory.Gateway, key string, res wire.CaptureResult) ([]StoredArtefact, error) {
	return m.StoreCollected(ctx, incident, gw, key, NameCaptureVolatile, "volatile", res)
}

func (m *memorySink) StoreCollected(_ context.Context, _ string, _ inventory.Gateway, key, _, _ string, res wire.CaptureResult) ([]StoredArtefact, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.files[key] == nil {
		m.files[key] = map[string][]byte{}
	}
	var out []StoredArtefact
	for _, a := range res.Artefacts {
		m.files[key][a.Name] = a.Content
		out = append(out, StoredArtefact{Name: a.Name, SHA256: a.SHA256, Evidence: "ev-" + a.Name})
	}
	if len(res.Manifest) > 0 {
		m.done[key] = true
	}
	return out, nil
}

func (m *memorySink) LoadCollected(_ context.Context, _, key, name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[key][name]
	if !ok {
		return nil, errors.New("not filed")
	}
	return b, nil
}

func (m *memorySink) VerifyStored(_ context.Context, _, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.done[key] {
		return errors.New(key + " incomplete")
	}
	return nil
}

type fixedSigns struct{ first time.Time }

func (f fixedSigns) FirstSign(context.Context, string) (time.Time, []netip.Addr, error) {
	return f.first, []netip.Addr{netip.MustParseAddr("198.51.100.66")}, nil
}

func investigationInventory() *inventory.Inventory {
	return &inventory.Inventory{
		Sites: []inventory.Site{{Name: "hq", Networks: []string{"10.1.0.0/24"}}, {Name: "osaka", Networks: []string{"10.2.0.0/24"}}, {Name: "dc", Networks: []string{"10.3.0.0/24"}}},
		Gateways: []inventory.Gateway{
			{ID: "gw-hq", Site: "hq", Agent: "https://192.0.2.1:8443", Addresses: []string{"192.0.2.1"}, ManagementNetworks: []string{"192.0.2.96/28"}},
			{ID: "gw-osaka", Site: "osaka", Agent: "https://192.0.2.2:8443", Addresses: []string{"192.0.2.2"}},
			{ID: "gw-dc", Site: "dc", Agent: "https://192.0.2.3:8443", Addresses: []string{"192.0.2.3"}},
		},
		Tunnels: []inventory.Tunnel{{A: "gw-hq", B: "gw-osaka", Kind: "wireguard"}, {A: "gw-dc", B: "gw-hq", Kind: "wireguard"}},
	}
}

func TestInvestigateCollectsFilesAndNamesTheGap(t *testing.T) {
	now := time.Date(2026, 6, 23, 9, 0, 0, 0, time.UTC)
	first := now.Add(-10 * time.Minute)
	login := wire.TimelineEvent{Time: first.Add(-5 * time.Minute), Source: wire.SourceLogFile, Action: wire.ActionLoginAccepted, Actor: "root",
		Object: "sshd", Address: "203.0.113.9", Message: "Accepted password for root from 203.0.113.9", Artefact: "log_var_log_auth.log", Line: 3}
	agents := &fakeAgents{asked: map[string]int{}, answers: map[string]wire.InvestigateResult{
		"gw-hq": {Started: now, AgentTime: now, Events: []wire.TimelineEvent{login},
			Artefacts: []wire.Artefact{{Name: "log_var_log_auth.log", Content: []byte("a\nb\nAccepted password for root from 203.0.113.9\n"), SHA256: "x"}}},
		"gw-osaka": {Started: now, AgentTime: now},
		// gw-dc's agent is down.
	}}
	sink := &memorySink{files: map[string]map[string][]byte{}, done: map[string]bool{}}
	a := NewInvestigate(investigationInventory(), agents, fixedSigns{first}, sink, InvestigateSettings{LookBack: time.Hour}, func() time.Time { return now })
	inv := investigationInventory()
	gw, _ := inv.Gateway("gw-hq")
	req := Request{IdempotencyKey: "run-1/3/investigate", Incident: "inc-1", Gateway: gw}

	plan, err := a.Plan(t.Context(), req)
	if err != nil || !strings.Contains(plan.Summary, first.Add(-time.Hour).Format(time.RFC3339)) || len(plan.Changes) != 4 {
		t.Fatalf("plan %+v %v, want the three gateways from an hour before the first sign", plan, err)
	}
	res, err := a.Apply(t.Context(), req)
	if err != nil || !res.Changed {
		t.Fatalf("apply: %+v %v", res, err)
	}
	if !strings.Contains(res.Summary, "not reachable: gw-dc") {
		t.Errorf("summary %q does not name the unreachable peer", res.Summary)
	}
	v, err := a.Verify(t.Context(), req)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	sum, ok := v.Details["investigation"].(investigation.Summary)
	if !ok {
		t.Fatalf("verify details %+v", v.Details)
	}
	if len(sum.EntryPoint) != 1 || sum.EntryPoint[0].Event.Address != "203.0.113.9" || sum.EntryPoint[0].Event.Artefact != "investigation-gw-hq-log_var_log_auth.log" ||
		sum.EntryPoint[0].Event.Evidence != "ev-investigation-gw-hq-log_var_log_auth.log" {
		t.Errorf("entry point %+v, want the login pointing at its filed artefact", sum.EntryPoint)
	}
	if len(sum.Collected) != 2 || sum.Timeline == "" || sum.Export == "" {
		t.Errorf("summary %+v, want hq and osaka collected and the timeline filed", sum)
	}
	if !strings.Contains(fmt.Sprint(sum.Gaps), "gw-dc") {
		t.Errorf("gaps %+v do not name dc", sum.Gaps)
	}
	if _, ok := sink.files["run-1/3/investigate/timeline-data"][investigation.TimesketchName]; !ok {
		t.Error("no Timesketch export filed")
	}

	// Applied again: nothing is collected or filed anew.
	again, err := a.Apply(t.Context(), req)
	if err != nil || again.Changed || agents.asked["gw-hq"] != 1 {
		t.Errorf("second apply %+v %v (hq asked %d times), want unchanged", again, err, agents.asked["gw-hq"])
	}
}

func TestInvestigateFailsWhenTheGatewayItselfCannotBeAsked(t *testing.T) {
	agents := &fakeAgents{asked: map[string]int{}, answers: map[string]wire.InvestigateResult{}}
	sink := &memorySink{files: map[string]map[string][]byte{}, done: map[string]bool{}}
	a := NewInvestigate(investigationInventory(), agents, fixedSigns{time.Now()}, sink, InvestigateSettings{}, nil)
	gw, _ := investigationInventory().Gateway("gw-hq")
	if _, err := a.Apply(t.Context(), Request{IdempotencyKey: "k", Incident: "inc-1", Gateway: gw}); err == nil || IsTerminal(err) {
		t.Errorf("apply with hq's agent down: %v, want a transient error (retried)", err)
	}
	if _, err := a.Apply(t.Context(), Request{IdempotencyKey: "k", Incident: "inc-1", Gateway: gw, Params: map[string]string{"since": "soon"}}); !IsTerminal(err) {
		t.Errorf("a bad since: %v, want terminal", err)
	}
}
