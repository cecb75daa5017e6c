package api_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/store/pgtest"
)

// The intake benchmarks post native indicators over loopback HTTP to the
// real stack (API, controller, SQLite store) with parallel clients. Every
// indicator is distinct (its observable address comes from a counter), so
// each is stored, grouped into its gateway's incident and decided; none is
// deduplicated. They are brute_force indicators from outside addresses,
// which the default policies answer with notify-only: the first one per
// gateway creates a run and the rest join it ("a run of this runbook is
// already active"), so runs do not pile up. No executor is started.
//
// Reported: indicators/s (all clients together), and the p50 and p99
// latency of the 202 as one client sees it.

var benchGateways = []string{"gw-hq", "gw-osaka-a", "gw-factory"}

// benchIndicator renders the n-th distinct indicator.
func benchIndicator(n uint64) string {
	return fmt.Sprintf(`{"kind":"brute_force","gateway":%q,"severity":"medium","confidence":0.7,"source":"bench","observables":{"ips":["2001:db8:%x:%x::1"]}}`,
		benchGateways[n%uint64(len(benchGateways))], (n>>16)&0xffff, n&0xffff)
}

// BenchmarkIntakeHTTP posts one indicator per request, authenticated by
// the deprecated shared token (compared in memory) and by a detector's own
// token (looked up by its hash in the store, as in production).
func BenchmarkIntakeHTTP(b *testing.B) {
	for _, mode := range []string{"normal", "full"} {
		b.Run("sync="+mode, func(b *testing.B) { benchIntakeSQLite(b, mode, 1, false) })
		b.Run("sync="+mode+",token=detector", func(b *testing.B) { benchIntakeSQLite(b, mode, 1, true) })
	}
}

// BenchmarkIntakeBatch posts {"indicators":[...100...]} per request.
func BenchmarkIntakeBatch(b *testing.B) {
	for _, mode := range []string{"normal", "full"} {
		b.Run("sync="+mode, func(b *testing.B) { benchIntakeSQLite(b, mode, 100, false) })
	}
}

// BenchmarkIntakePostgresReplicas is BenchmarkIntakeHTTP's detector case
// on PostgreSQL: three replicas (each its own controller, API and pool of
// connections, in this process) on one database of a private cluster
// with fsync and synchronous commit on, the clients spread over them
// round robin. Set beside BenchmarkIntakeHTTP/sync=full,token=detector.
func BenchmarkIntakePostgresReplicas(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("replicas=3,batch=%d", batch), func(b *testing.B) {
			pg := pgtest.Start(b, pgtest.Options{Durable: true})
			dsn, evidence := pg.DSN(pg.CreateDB(b, "")), b.TempDir()
			var stacks []*stack
			for range 3 {
				stacks = append(stacks, newStack(b, func(c *config.Config) {
					c.Store.Driver, c.Store.DSN, c.Evidence.Dir = config.DriverPostgres, dsn, evidence
				}, nil))
			}
			token := stacks[0].addUser(b, "bench-detector", "intake").Token
			benchIntake(b, stacks, batch, token)
		})
	}
}

func benchIntakeSQLite(b *testing.B, syncMode string, batch int, detector bool) {
	s := newStack(b, func(c *config.Config) { c.Store.Sync = syncMode }, nil)
	token := s.token
	if detector {
		token = s.addUser(b, "bench-detector", "intake").Token
	}
	benchIntake(b, []*stack{s}, batch, token)
}

// benchIntake posts indicators to the stacks' APIs, round robin, with
// parallel clients, and reports the rate and the 202's latency; then
// checks that the store holds exactly what was accepted.
func benchIntake(b *testing.B, stacks []*stack, batch int, token string) {
	accepted := benchIntakeRate(b, stacks, batch, token)
	if accepted == 0 {
		return
	}
	// Every 202 means stored: the store holds exactly what was accepted.
	n, err := stacks[0].d.Store.CountIndicators(b.Context())
	if err != nil || n != accepted {
		b.Errorf("store holds %d indicators (err %v); %d were accepted", n, err, accepted)
	}
}

// benchIntakeRate is benchIntake without the store's check; it returns
// the indicators accepted.
func benchIntakeRate(b *testing.B, stacks []*stack, batch int, token string) int {
	var next atomic.Uint64
	var seq atomic.Uint64
	body := func() []byte {
		if batch == 1 {
			return []byte(benchIndicator(seq.Add(1)))
		}
		parts := make([]string, batch)
		for i := range parts {
			parts[i] = benchIndicator(seq.Add(1))
		}
		return []byte(`{"indicators":[` + strings.Join(parts, ",") + `]}`)
	}
	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
		failed    atomic.Int64
	)
	b.SetParallelism(8) // 8 clients per core
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			data := body()
			to := stacks[next.Add(1)%uint64(len(stacks))]
			req, err := http.NewRequestWithContext(b.Context(), "POST", to.url+"/v1/indicators", bytes.NewReader(data))
			if err != nil {
				b.Error(err)
				return
			}
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			start := time.Now()
			resp, err := to.client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			if resp.StatusCode != http.StatusAccepted {
				if failed.Add(1) == 1 {
					b.Errorf("status %d", resp.StatusCode)
				}
				continue
			}
			local = append(local, took)
		}
		mu.Lock()
		latencies = append(latencies, local...)
		mu.Unlock()
	})
	b.StopTimer()
	if len(latencies) == 0 {
		return 0
	}
	slices.Sort(latencies)
	pct := func(p int) float64 {
		return float64(latencies[(len(latencies)-1)*p/100].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(latencies)*batch)/b.Elapsed().Seconds(), "indicators/s")
	b.ReportMetric(pct(50), "p50-ms")
	b.ReportMetric(pct(99), "p99-ms")
	return len(latencies) * batch
}
