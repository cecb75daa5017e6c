package e2e

import (
	"fmt"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/store"
)

// BenchmarkAlertToContainmentVSphere measures, through the real HTTP API
// and the vCenter simulator, the time from an alert being accepted to the
// isolate step being verified (snapshot with memory first, as the default
// runbook does). Each iteration releases the gateway again. It reports the
// median and p99 time to contain and how much of it the vCenter calls took.
func BenchmarkAlertToContainmentVSphere(b *testing.B) {
	s := startStack(b, func(c *config.Config) {
		c.Guards.MaxAutoIsolationsPerSite, c.Guards.MaxAutoIsolationsFleet = 1<<30, 1<<30
		c.Guards.BreakerMinGateways = 1 << 30
		c.Intake.DedupWindow = time.Nanosecond
	})
	var ttc, vcenter []time.Duration
	b.ResetTimer()
	for i := range b.N {
		body := fmt.Sprintf(`{"kind":"c2_beacon","gateway":"gw-osaka","severity":"critical","confidence":0.9,"source":"bench","observables":{"ips":["203.0.113.%d"]}}`, i%250+1)
		out := s.post(b, s.intake, "/v1/indicators", []byte(body), http.StatusAccepted)
		res := out["results"].([]any)[0].(map[string]any)
		run := s.wait(b, res["run_id"].(string))
		if run.State != store.RunSucceeded {
			b.Fatalf("run %s: %s", run.State, run.Error)
		}
		inds, _ := s.d.Store.IndicatorsOfIncident(b.Context(), run.Incident)
		var vc time.Duration
		for _, st := range run.Steps {
			if st.Action == actions.NameSnapshot || st.Action == actions.NameIsolate {
				vc += st.FinishedAt.Sub(st.StartedAt)
			}
			if st.Action == actions.NameIsolate {
				ttc = append(ttc, st.FinishedAt.Sub(inds[0].ReceivedAt))
			}
		}
		vcenter = append(vcenter, vc)
		b.StopTimer()
		// One person asks for the release, another approves it.
		rel, err := s.responder.Release(b.Context(), v1.StartRunbookRequest{Gateway: "gw-osaka", Incident: run.Incident,
			OverrideReason: "benchmark: release between iterations"})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.approver.Approve(b.Context(), rel.ID, v1.ApproveRequest{}); err != nil {
			b.Fatal(err)
		}
		if r := s.wait(b, rel.ID); r.State != store.RunSucceeded {
			b.Fatalf("release %s: %s", r.State, r.Error)
		}
		// Close the incident so the next alert opens a fresh one.
		_ = s.d.Store.Tx(b.Context(), func(tx store.Tx) error {
			return tx.SetIncidentStatus(b.Context(), run.Incident, store.IncidentClosed, time.Now())
		})
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(ms(pct(ttc, 50)), "ttc-p50-ms")
	b.ReportMetric(ms(pct(ttc, 99)), "ttc-p99-ms")
	b.ReportMetric(ms(pct(vcenter, 50)), "vcenter-p50-ms")
	overhead := make([]time.Duration, len(ttc))
	for i := range ttc {
		overhead[i] = ttc[i] - vcenter[i]
	}
	b.ReportMetric(ms(pct(overhead, 50)), "overhead-p50-ms")
	b.ReportMetric(ms(pct(overhead, 99)), "overhead-p99-ms")
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	c := append([]time.Duration(nil), d...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	i := (len(c)*p + 99) / 100
	if i > 0 {
		i--
	}
	return c[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
