package console_test

import (
	"net/http"
	"testing"
	"time"
)

// BenchmarkConsolePages measures what a person waits for each page of the
// console, served over loopback as a browser asks for it, on a store with
// one contained incident and a release waiting for approval (ms/page).
func BenchmarkConsolePages(b *testing.B) {
	s := newStack(b, false, nil)
	incident, release, resp := s.waitingRelease(b)
	br := s.browser(b)
	br.login(b, resp)
	for _, pg := range []struct{ name, path string }{
		{"inbox", "/ui/inbox"}, {"run", "/ui/runs/" + release}, {"incidents", "/ui/incidents"},
		{"incident", "/ui/incidents/" + incident}, {"map", "/ui/map"}, {"release", "/ui/release?gateway=gw-osaka"},
	} {
		path := pg.path
		b.Run(pg.name, func(b *testing.B) {
			var total time.Duration
			for b.Loop() {
				start := time.Now()
				if p := br.get(b, path); p.status != http.StatusOK {
					b.Fatalf("GET %s: %d", path, p.status)
				}
				total += time.Since(start)
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/page")
		})
	}
}
