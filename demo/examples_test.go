package demo

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/store"
)

// TestExamplesContainGateway submits each example body of examples/ to a
// fresh demo controller, with the client call `warden indicator submit
// --format ...` makes for it, and checks that the demo acts on it: gw-osaka
// contained through the C2 policy, the VM read back on the quarantine
// portgroup. The Alertmanager example carries no warden_kind label, so it
// also proves the demo's alertname mapping (WireGuardBeacon: c2_beacon).
func TestExamplesContainGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the vcsim demo controller")
	}
	tests := map[string]struct {
		file   string
		submit func(*client.Client, context.Context, []byte) (v1.IntakeResponse, error)
	}{
		"alertmanager webhook": {"alertmanager-c2.json", (*client.Client).SubmitAlertmanager},
		"warden indicator":     {"indicator-c2.json", (*client.Client).SubmitIndicatorsJSON},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("..", "examples", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			v, err := startVSphere(t.Context(), Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatalf("starting the demo controller: %v", err)
			}
			t.Cleanup(func() {
				if err := v.Close(); err != nil {
					t.Errorf("closing the demo controller: %v", err)
				}
			})

			api, err := client.New(v.base, v.token)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tc.submit(api, t.Context(), body)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Results) != 1 {
				t.Fatalf("intake answered %d results, want 1: %+v", len(got.Results), got.Results)
			}
			r := got.Results[0]
			if !r.Matched || r.Policy != "c2-or-exfil-isolate" || r.RunID == "" {
				t.Fatalf("intake result %+v: want matched by c2-or-exfil-isolate, starting a run", r)
			}
			inds, err := v.d.Store.IndicatorsOfIncident(t.Context(), r.IncidentID)
			if err != nil || len(inds) != 1 || inds[0].Indicator.Gateway != targetGateway || inds[0].Indicator.Kind != indicator.C2Beacon {
				t.Fatalf("incident %s indicators %+v (%v): want one c2_beacon about %s", r.IncidentID, inds, err, targetGateway)
			}
			run, err := v.waitRun(t.Context(), r.RunID)
			if err != nil {
				t.Fatal(err)
			}
			if run.State != store.RunSucceeded {
				t.Fatalf("run %s: %s, steps %+v", run.ID, run.State, demoSteps(run))
			}
			me, err := api.WhoAmI(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if me.User != "admin" || run.RequestedBy != me.Actor {
				t.Errorf("run requested by %q, want %q: the admin whose token submitted it", run.RequestedBy, me.Actor)
			}
			vm, err := v.d.VSphere.ObserveVM(t.Context(), targetVM)
			if err != nil {
				t.Fatal(err)
			}
			if !vm.Quarantined {
				t.Errorf("VM %s after the run: not quarantined, NICs %+v", targetVM, nics(vm))
			}
		})
	}
}
