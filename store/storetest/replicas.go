package storetest

import (
	"testing"
	"time"

	"github.com/warden-ir/warden/store"
)

var replicaCases = []testCase{
	{"a fresh backend has no replicas", replicasNone},
	{"heartbeats record replicas, forget the silent and the stopped", replicasHeartbeat},
}

func replicasNone(t *testing.T, h Harness) {
	b := h.Open(t)
	if rs, err := b.Replicas(t.Context()); err != nil || len(rs) != 0 {
		t.Errorf("Replicas on a fresh backend = %+v, %v; want none", rs, err)
	}
}

func replicasHeartbeat(t *testing.T, h Harness) {
	b, ctx := h.Open(t), t.Context()
	a := store.Replica{Owner: "aaa", Host: "host-a", PID: 11, API: "10.0.0.1:8780", Version: "v1", StartedAt: t0, SeenAt: t0}
	c := store.Replica{Owner: "ccc", Host: "host-c", PID: 33, API: "10.0.0.3:8780", StartedAt: t0.Add(time.Second), SeenAt: t0.Add(time.Second)}
	for _, r := range []store.Replica{a, c} {
		if err := b.Heartbeat(ctx, r, t0.Add(-time.Hour)); err != nil {
			t.Fatalf("heartbeat of %s: %v", r.Owner, err)
		}
	}
	// a beats again later; c falls silent and is forgotten.
	a.SeenAt = t0.Add(time.Minute)
	if err := b.Heartbeat(ctx, a, t0.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	rs, err := b.Replicas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Owner != "aaa" || rs[0].Host != "host-a" || rs[0].PID != 11 || rs[0].API != a.API ||
		!rs[0].StartedAt.Equal(t0) || !rs[0].SeenAt.Equal(a.SeenAt) {
		t.Errorf("Replicas = %+v, want only aaa, started %v, seen %v", rs, t0, a.SeenAt)
	}
	if err := b.ForgetReplica(ctx, "aaa"); err != nil {
		t.Fatal(err)
	}
	if rs, err := b.Replicas(ctx); err != nil || len(rs) != 0 {
		t.Errorf("Replicas after the last stopped = %+v, %v; want none", rs, err)
	}
}
