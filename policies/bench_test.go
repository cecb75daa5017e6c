package policies

import (
	"testing"
	"time"

	"github.com/warden-ir/warden/indicator"
)

// benchInputs spans the default set: an early match, a guard fall-through,
// the network expression, and the catch-all that evaluates every policy.
func benchInputs(t testing.TB) []Input {
	at := time.Date(2025, 1, 7, 3, 0, 0, 0, time.FixedZone("JST", 9*3600))
	mk := func(ind indicator.Indicator) Input {
		ind.Gateway, ind.Source, ind.ObservedAt = "gw-tokyo", "bench", at
		ind.Normalize(at)
		return Input{Indicator: ind, Gateway: tokyoGateway(), Site: tokyo(t), Context: Context{Now: at}}
	}
	return []Input{
		mk(indicator.Indicator{Kind: indicator.C2Beacon, Severity: indicator.High, Confidence: 0.9, Observables: indicator.Observables{IPs: []string{"198.51.100.7"}}}),
		mk(indicator.Indicator{Kind: indicator.C2Beacon, Severity: indicator.High, Confidence: 0.3}),
		mk(indicator.Indicator{Kind: indicator.BruteForce, Severity: indicator.Medium, Confidence: 0.9, Observables: indicator.Observables{IPs: []string{"198.51.100.23"}}}),
		mk(indicator.Indicator{Kind: indicator.OffHoursAdminLogin, Severity: indicator.Medium, Confidence: 0.8}),
		mk(indicator.Indicator{Kind: indicator.TrafficSpike, Severity: indicator.Low, Confidence: 0.6}),
	}
}

// BenchmarkDecide measures one decision with the default set. Target:
// ≤ 10 µs per decision.
func BenchmarkDecide(b *testing.B) {
	s, err := Default()
	if err != nil {
		b.Fatal(err)
	}
	inputs := benchInputs(b)
	names := []string{"c2-isolate", "c2-low-confidence", "brute-force-outside", "off-hours-login", "catch-all"}
	for i, in := range inputs {
		b.Run(names[i], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := s.Decide(in); !d.Matched {
					b.Fatal("no match")
				}
			}
		})
	}
	b.Run("mixed", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			s.Decide(inputs[i%len(inputs)])
			i++
		}
	})
}
