package e2e

import (
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/demo"
	"github.com/warden-ir/warden/store"
)

// TestSecondServeOnOneStoreRefused: two `warden serve` on one store would
// both resume and execute the same runs. The second must refuse to start,
// naming the holder; once the holder is killed with SIGKILL, it starts.
func TestSecondServeOnOneStoreRefused(t *testing.T) {
	bin := buildWarden(t)
	ctx := t.Context()
	cfg := config.Defaults()
	cfg.Server.Listen = freeAddr(t)
	dir := t.TempDir()
	people := bootstrapAdmin(t, &cfg, dir)
	cfg.Store.Path = filepath.Join(dir, "warden.db")
	cfg.Inventory = demo.Inventory()
	cfg.Reconcile.Interval = time.Hour
	cfgPath := writeConfig(t, dir, cfg)
	var env []string
	first := startServe(t, bin, cfgPath, env)
	a := apiCall{base: "http://" + cfg.Server.Listen, people: people, role: v1.RoleAdmin}
	waitFor(t, "first controller ready", 30*time.Second, func() (bool, error) {
		code, _, err := a.do(ctx, "GET", "/readyz", nil)
		return code == 200, err
	})

	secondAddr := freeAddr(t)
	second := startServe(t, bin, cfgPath, append(env, "WARDEN_SERVER_LISTEN="+secondAddr))
	done := make(chan error, 1)
	go func() { done <- second.cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("second serve on the same store exited 0:\n%s", second.log)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("second serve on the same store is still running:\n%s", second.log)
	}
	out := second.log.String()
	for _, want := range []string{"in use by warden controller", "pid " + strconv.Itoa(first.cmd.Process.Pid), "since"} {
		if !strings.Contains(out, want) {
			t.Errorf("refusal does not say %q:\n%s", want, out)
		}
	}

	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()
	third := startServe(t, bin, cfgPath, append(env, "WARDEN_SERVER_LISTEN="+secondAddr))
	b := apiCall{base: "http://" + secondAddr, people: people, role: v1.RoleAdmin}
	waitFor(t, "successor ready after kill -9 of the holder", 30*time.Second, func() (bool, error) {
		code, _, err := b.do(ctx, "GET", "/readyz", nil)
		return code == 200, err
	})
	st, err := store.Open(ctx, cfg.Store.Path, "full")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, ok, err := st.CurrentLease(ctx)
	if err != nil || !ok {
		t.Fatalf("reading the lease: %v %v", ok, err)
	}
	if l.PID != third.cmd.Process.Pid || l.Epoch != 2 {
		t.Fatalf("lease %+v, want pid %d epoch 2", l, third.cmd.Process.Pid)
	}
}
