package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/demo"
	"github.com/warden-ir/warden/internal/loadgen"
	"github.com/warden-ir/warden/store"
)

// BenchmarkIntakeServe measures intake against a real `warden serve` (the
// built binary, its executor and decider running, store.sync full): 16
// keep-alive clients of internal/loadgen, one low-severity indicator per
// POST /v1/indicators, for WARDEN_BENCH_INTAKE_DURATION (10s). It reports
// accepted/s, the 202's p50, p99, p99.9 and longest, non-2xx answers, and
// serve's peak RSS (VmHWM).
//
// WARDEN_BENCH_INTAKE_PRELOAD=N first stores N indicators through the
// API and waits until they are decided (so incidents hold their runs),
// for the figure with a full store. WARDEN_BENCH_INTAKE_DRAIN=1 waits
// after the load until every answered indicator is decided and reports
// how long that took and the database's bytes per stored indicator.
func BenchmarkIntakeServe(b *testing.B) {
	bin := buildWarden(b)
	dir := b.TempDir()
	cfg := config.Defaults()
	people := bootstrapAdmin(b, &cfg, dir)
	cfg.Server.Listen = freeAddr(b)
	cfg.Store.Path = filepath.Join(dir, "warden.db")
	cfg.Inventory = demo.Inventory()
	cfg.Reconcile.Interval = time.Hour
	cfg.Drift.Interval = 0
	// WARDEN_BENCH_INTAKE_CPUPROFILE=FILE has serve write a CPU profile
	// of the whole run there (written when serve stops, at the end).
	var env []string
	profile := os.Getenv("WARDEN_BENCH_INTAKE_CPUPROFILE")
	if profile != "" {
		env = append(env, "WARDEN_CPUPROFILE="+profile)
	}
	p := startServe(b, bin, writeConfig(b, dir, cfg), env)
	base := "http://" + cfg.Server.Listen
	api := apiCall{base: base, people: people}
	c, err := api.as(v1.RoleAdmin).client()
	if err != nil {
		b.Fatal(err)
	}
	waitFor(b, "controller ready", 30*time.Second, func() (bool, error) {
		err := c.Ready(b.Context())
		return err == nil, err
	})
	people.add(b, base)

	gateways := []string{"gw-hq", "gw-osaka", "gw-dc"}
	round := 0
	load := func(d time.Duration) loadgen.Result {
		b.Helper()
		round++
		res, err := loadgen.Run(b.Context(), loadgen.Config{
			URL:      base + "/v1/indicators",
			Header:   http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + people.token(v1.RoleIntake)}},
			Clients:  16,
			Duration: d,
			Body: func(client, n int) []byte {
				return fmt.Appendf(nil, `{"kind":"brute_force","gateway":%q,"severity":"low","confidence":0.5,"source":"bench","summary":"bench %d/%d","fingerprint":"b%d-%d-%d"}`,
					gateways[(client+n)%len(gateways)], client, n, round, client, n)
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		if res.Failed > 0 {
			b.Fatalf("load: %d requests without an answer, first: %v", res.Failed, res.FirstError)
		}
		return res
	}
	backlog := func() (float64, error) {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, err
		}
		l := backlogLine(string(body))
		if l == "" {
			return 0, fmt.Errorf("no warden_intake_backlog in /metrics")
		}
		return strconv.ParseFloat(strings.TrimPrefix(l, "warden_intake_backlog "), 64)
	}
	drain := func() time.Duration {
		b.Helper()
		start := time.Now()
		waitFor(b, "every answered indicator decided", 2*time.Hour, func() (bool, error) {
			n, err := backlog()
			return err == nil && n == 0, err
		})
		return time.Since(start)
	}
	if n := envInt(b, "WARDEN_BENCH_INTAKE_PRELOAD", 0); n > 0 {
		for stored := 0; stored < n; {
			stored += load(10 * time.Second).Accepted
			drain()
		}
		b.Logf("preloaded: %d indicators stored and decided", countIndicators(b, base))
	}
	dur := time.Duration(envInt(b, "WARDEN_BENCH_INTAKE_DURATION", 10)) * time.Second

	var res loadgen.Result
	for b.Loop() {
		res = load(dur)
	}
	b.ReportMetric(res.PerSecond(), "accepted/s")
	b.ReportMetric(ms(res.Percentile(50)), "p50-ms")
	b.ReportMetric(ms(res.Percentile(99)), "p99-ms")
	b.ReportMetric(ms(res.Percentile(99.9)), "p99.9-ms")
	b.ReportMetric(ms(res.Percentile(100)), "max-ms")
	b.ReportMetric(float64(res.Rejected), "non2xx")
	b.ReportMetric(float64(vmHWM(b, p.cmd.Process.Pid))/1024, "serve-VmHWM-MB")
	b.Logf("load: %s", res)
	if profile != "" {
		defer func() {
			if p.cmd.ProcessState == nil {
				p.stop(b)
			}
		}()
	}
	if os.Getenv("WARDEN_BENCH_INTAKE_DRAIN") == "1" {
		took := drain()
		b.ReportMetric(took.Seconds(), "drain-s")
		stored := countIndicators(b, base)
		// Stopped, serve checkpoints and removes the WAL: the file is
		// what the store keeps.
		p.stop(b)
		b.ReportMetric(float64(dbBytes(b, cfg.Store.Path))/float64(max(stored, 1)), "db-bytes/indicator")
		b.ReportMetric(auditShare(b, cfg.Store.Path), "audit-share-%")
	}
}

func envInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return n
}

// vmHWM is a process's peak resident set, in KiB.
func vmHWM(tb testing.TB, pid int) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for l := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	tb.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// dbBytes is the size of the SQLite store with its WAL.
func dbBytes(tb testing.TB, path string) int64 {
	var n int64
	for _, p := range []string{path, path + "-wal"} {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// auditShare is the percentage of the store's pages that hold the
// audit table and its index (SQLite's dbstat).
func auditShare(tb testing.TB, path string) float64 {
	st, err := store.Open(tb.Context(), path, "full")
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close()
	var audit, all float64
	err = st.DB().QueryRowContext(tb.Context(), `SELECT coalesce(sum(CASE WHEN name IN ('audit', 'audit_incident') THEN pgsize END), 0), sum(pgsize) FROM dbstat`).Scan(&audit, &all)
	if err != nil {
		tb.Logf("dbstat: %v", err)
		return 0
	}
	return 100 * audit / max(all, 1)
}

// countIndicators reads warden_indicators_accepted_total's sum from
// /metrics: the indicators this process decided and stored.
func countIndicators(tb testing.TB, base string) int {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	total := 0.0
	for l := range strings.Lines(string(body)) {
		if strings.HasPrefix(l, "warden_indicators_accepted_total{") {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += v
		}
	}
	return int(total)
}
