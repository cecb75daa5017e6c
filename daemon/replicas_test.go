package daemon_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/store/pgtest"
)

// replicaConfig is a controller on the PostgreSQL database dsn, sharing
// the evidence folder and bootstrap token file in shared.
func replicaConfig(t *testing.T, pg *pgtest.Cluster, dsn, shared string) config.Config {
	t.Helper()
	cfg := peopleConfig(t, t.TempDir())
	cfg.Store.Driver, cfg.Store.DSN, cfg.Store.PasswordFile = config.DriverPostgres, dsn, pg.PasswordFile
	cfg.Store.LeaseTTL = 3 * time.Second
	cfg.Evidence.Dir = filepath.Join(shared, "evidence")
	cfg.Server.BootstrapTokenFile = filepath.Join(shared, "bootstrap-admin.token")
	cfg.Server.Listen = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// gauge reads a gauge of d's registry.
func gauge(t *testing.T, d *daemon.Daemon, name string) float64 {
	t.Helper()
	mfs, err := d.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return metricValue(mf.GetMetric()[0])
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func metricValue(m *dto.Metric) float64 { return m.GetGauge().GetValue() }

// TestReplicasElectOneLeader: three controllers on one PostgreSQL
// database: one leads (warden_leader 1, the lease's epoch), every one is
// on record and answers /v1/status naming the same leader; when the
// leader stops, another takes over with the next epoch.
func TestReplicasElectOneLeader(t *testing.T) {
	pg := pgtest.Start(t, pgtest.Options{})
	dsn := pg.DSNWithoutPassword(pg.CreateDB(t, ""))
	shared := t.TempDir()
	type replica struct {
		d    *daemon.Daemon
		addr string
		stop func()
	}
	var rs []replica
	for range 3 {
		d, addr, stop := serve(t, replicaConfig(t, pg, dsn, shared))
		rs = append(rs, replica{d, addr, stop})
	}
	token := ""
	leaders := func(among []replica) []int {
		var out []int
		for i, r := range among {
			if r.d != nil && gauge(t, r.d, "warden_leader") == 1 {
				out = append(out, i)
			}
		}
		return out
	}
	waitUntil(t, "one leader among three", 30*time.Second, func() bool { return len(leaders(rs)) == 1 })
	first := leaders(rs)[0]
	if e := gauge(t, rs[first].d, "warden_lease_epoch"); e != 1 {
		t.Errorf("the first leader's epoch = %v, want 1", e)
	}
	b, err := os.ReadFile(filepath.Join(shared, "bootstrap-admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	token = strings.TrimSpace(string(b))
	var st v1.Status
	waitUntil(t, "every replica on record", 30*time.Second, func() bool {
		return get(t, "http://"+rs[(first+1)%3].addr, "/v1/status", token, &st) == 200 && len(st.Replicas) == 3
	})
	for i, r := range rs {
		var s v1.Status
		if code := get(t, "http://"+r.addr, "/v1/status", token, &s); code != 200 || s.Store != "postgres" || s.Lease == nil || s.Lease.Epoch != 1 || s.Lease.Expired {
			t.Fatalf("replica %d's status: %d %+v", i, code, s)
		}
		nLeaders := 0
		for _, rp := range s.Replicas {
			if rp.Leader {
				nLeaders++
				if rp.PID != os.Getpid() || rp.ID != s.Lease.Owner {
					t.Errorf("leader %+v is not the lease's holder %+v", rp, s.Lease)
				}
			}
		}
		if nLeaders != 1 {
			t.Errorf("replica %d's status names %d leaders: %+v", i, nLeaders, s.Replicas)
		}
	}

	// The leader stops (gives the lease up): another leads at epoch 2.
	rs[first].stop()
	rs[first].d = nil
	waitUntil(t, "a new leader after the first stopped", 30*time.Second, func() bool { return len(leaders(rs)) == 1 })
	next := leaders(rs)[0]
	if e := gauge(t, rs[next].d, "warden_lease_epoch"); e != 2 {
		t.Errorf("the next leader's epoch = %v, want 2", e)
	}
	for i, r := range rs {
		if r.d != nil {
			r.stop()
			rs[i].d = nil
		}
	}
}

func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
