package policies

import (
	"fmt"
	"testing"
	"time"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
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

// BenchmarkDecideFleet is a decision as the controller takes it with an
// inventory of 10,000 gateways at 100 sites: the indicator's gateway and
// its site looked up in the validated inventory, then Decide with the
// default set, the indicators spread over the whole fleet. Target: ≤ 10 µs
// per decision.
func BenchmarkDecideFleet(b *testing.B) {
	const fleet, sites = 10000, 100
	s, err := Default()
	if err != nil {
		b.Fatal(err)
	}
	inv := &inventory.Inventory{}
	for i := range sites {
		inv.Sites = append(inv.Sites, inventory.Site{Name: fmt.Sprintf("site-%03d", i), TimeZone: "Asia/Tokyo",
			Networks: []string{fmt.Sprintf("10.%d.0.0/16", i)}})
	}
	for i := range fleet {
		inv.Gateways = append(inv.Gateways, inventory.Gateway{ID: fmt.Sprintf("gw-%05d", i), Site: fmt.Sprintf("site-%03d", i%sites),
			Addresses: []string{fmt.Sprintf("10.%d.%d.%d", i%sites, i/250%250, i%250+1)}, ManagementNetworks: []string{"192.0.2.0/24"}})
	}
	if err := inv.Validate(); err != nil {
		b.Fatal(err)
	}
	inputs := benchInputs(b)
	ids := make([]string, 0, 1024)
	for i := range cap(ids) {
		ids = append(ids, inv.Gateways[(i*7919)%fleet].ID) // spread over the list, the last ones too
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		in := inputs[i%len(inputs)]
		gw, ok := inv.Gateway(ids[i%len(ids)])
		if !ok {
			b.Fatal("gateway not in the inventory")
		}
		site, ok := inv.Site(gw.Site)
		if !ok {
			b.Fatal("site not in the inventory")
		}
		in.Gateway, in.Site = gw, site
		in.Indicator.Gateway = gw.ID
		s.Decide(in)
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "µs/decision")
}
