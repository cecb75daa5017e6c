package main

import (
	"net/http/httptest"
	"testing"

	"github.com/warden-ir/warden/daemon"
)

// TestStatusNamesTheLeader: `warden status` names the store, the lease's
// holder and epoch.
func TestStatusNamesTheLeader(t *testing.T) {
	hermetic(t)
	cfg, d := buildDaemon(t, t.TempDir(), "", daemon.Options{})
	if err := d.AcquireWriter(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.API)
	t.Cleanup(srv.Close)
	out, _, err := runCLI(t, "status", "--server", srv.URL, "--token", cfg.Server.APIToken)
	wantRun(t, out, err, nil, []string{"store:    sqlite", "leader:", "epoch:    1, held since", "renewed", "REPLICA"})
}
