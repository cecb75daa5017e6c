package e2e

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/store"
)

// BenchmarkLinuxTimeToContain measures the Linux path's time to contain in
// the namespace lab: a real `warden serve` in the management namespace, a
// real `warden agent --backend nftables` in the gateway's namespace, each
// iteration an indicator over the HTTP API. Time to contain (ttc) runs
// from the controller accepting the indicator (its received_at) to the
// quarantine enforced and verified: the isolate step's verified_at, after
// the agent's commit-confirmed round (isolate; a new connection through
// the quarantine; confirm with the rules read back). ttc-finished runs to
// the step's finish, which also files the change as evidence;
// isolate-step from its first attempt (recorded with the decision that
// starts the run, core.startsAtOnce) to its finish. Both ends are the
// controller's own clock, so the test's polling for the run does not
// count.
//
// Two runbooks: isolate-only (the isolate step alone), and default-order,
// the order of the shipped containment runbooks: isolate keeping the
// tracked flows, capture_volatile under the quarantine, kill_flows,
// notify. Its time to contain is the same isolate step's, now first; the
// capture and the kill are measured apart (capture-step, kill-step).
// Outside the timer, each iteration checks the gateway cannot reach the C2
// server, then releases it through the controller.
//
// Run it with, for example:
//
//	go test -run '^$' -bench BenchmarkLinuxTimeToContain -benchtime 200x ./e2e/
func BenchmarkLinuxTimeToContain(b *testing.B) {
	for _, v := range []struct {
		name, prefix string
		steps        []string
	}{
		{"isolate-only", "e2lb", []string{actions.NameIsolate}},
		{"default-order", "e2ld", []string{actions.NameIsolate + " flows=keep", actions.NameCaptureVolatile, actions.NameKillFlows, actions.NameNotify}},
	} {
		b.Run(v.name, func(b *testing.B) { benchmarkLinuxTimeToContain(b, v.prefix, v.steps) })
	}
}

func benchmarkLinuxTimeToContain(b *testing.B, prefix string, steps []string) {
	l := newLinuxLab(b, linuxLabOptions{Prefix: prefix, Steps: steps, Bench: true})
	l.waitAgent()
	gw, c2 := l.target.Gateway, l.lab.C2()

	var ttc, finished, apply, captureStep, killStep []time.Duration
	n := 0
	for b.Loop() {
		n++
		_, runID := l.api.submitC2(b, l.gwID, c2, n)
		r := l.api.waitRun(b, runID, 2*time.Millisecond)
		b.StopTimer()
		if r.State != store.RunSucceeded {
			b.Fatalf("run %s: %s", r.State, r.Error)
		}
		iso := stepOf(b, r, actions.NameIsolate)
		if len(steps) > 1 {
			c, k := stepOf(b, r, actions.NameCaptureVolatile), stepOf(b, r, actions.NameKillFlows)
			captureStep = append(captureStep, c.FinishedAt.Sub(c.StartedAt))
			killStep = append(killStep, k.FinishedAt.Sub(k.StartedAt))
		}
		var inc struct {
			Indicators []store.IndicatorRecord `json:"indicators"`
		}
		l.api.call(b, http.MethodGet, "/v1/incidents/"+r.Incident, nil, http.StatusOK, &inc)
		if len(inc.Indicators) == 0 {
			b.Fatalf("incident %s has no indicator", r.Incident)
		}
		received := inc.Indicators[0].ReceivedAt
		var res struct {
			Details struct {
				Verify map[string]any `json:"verify"`
			} `json:"details"`
		}
		if err := json.Unmarshal(iso.Result, &res); err != nil {
			b.Fatalf("isolate step result: %v", err)
		}
		at, _ := res.Details.Verify[actions.VerifiedAtKey].(string)
		verified, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			b.Fatalf("isolate step result %s: no %s: %v", iso.Result, actions.VerifiedAtKey, err)
		}
		ttc = append(ttc, verified.Sub(received))
		finished = append(finished, iso.FinishedAt.Sub(received))
		apply = append(apply, iso.FinishedAt.Sub(iso.StartedAt))

		for _, a := range c2.Addrs() {
			if err := l.lab.UDPEcho(b.Context(), gw.NS, netip.AddrPortFrom(a, echoPort), cutWait); err == nil {
				b.Fatalf("iteration %d: the gateway still reaches the C2 server at %s", n, a)
			}
		}
		l.api.release(b, l.gwID, r.Incident)
		b.StartTimer()
	}
	b.StopTimer()

	// Evidence capture, measured apart: the agent collecting volatile state
	// and sending it over mutual TLS.
	var capture []time.Duration
	for range 5 {
		start := time.Now()
		var res wire.CaptureResult
		if code, err := l.agent.send(b.Context(), wire.KindCapture, wire.CaptureParams{}, &res); err != nil || code != http.StatusOK {
			b.Fatalf("capture: %d %v", code, err)
		}
		capture = append(capture, time.Since(start))
	}

	b.ReportMetric(float64(len(ttc)), "runs")
	b.ReportMetric(ms(pct(ttc, 50)), "ttc-p50-ms")
	b.ReportMetric(ms(pct(ttc, 95)), "ttc-p95-ms")
	b.ReportMetric(ms(pct(ttc, 99)), "ttc-p99-ms")
	b.ReportMetric(ms(pct(finished, 50)), "ttc-finished-p50-ms")
	b.ReportMetric(ms(pct(finished, 99)), "ttc-finished-p99-ms")
	b.ReportMetric(ms(pct(apply, 50)), "isolate-step-p50-ms")
	b.ReportMetric(ms(pct(apply, 99)), "isolate-step-p99-ms")
	b.ReportMetric(ms(pct(capture, 50)), "capture-p50-ms")
	if len(captureStep) > 0 {
		b.ReportMetric(ms(pct(captureStep, 50)), "capture-step-p50-ms")
		b.ReportMetric(ms(pct(killStep, 50)), "kill-step-p50-ms")
	}
}
