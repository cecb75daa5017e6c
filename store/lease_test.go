package store

import (
	"context"
	"errors"
	"fmt"
	"github.com/warden-ir/warden/internal/clock/clocktest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path, "normal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func leaseOpts(owner string) LeaseOptions {
	return LeaseOptions{Owner: owner, Host: "host-a", PID: 4242, TTL: 15 * time.Second}
}

// acquireAt acquires the writer lease of s (at path), given up when the
// test ends, and fails the test unless the holding has epoch want; what
// names the attempt.
func acquireAt(t *testing.T, s *Store, path string, opt LeaseOptions, what string, want int64) *Writer {
	t.Helper()
	w, err := s.AcquireWriter(t.Context(), path, opt)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	if w.Epoch() != want {
		t.Fatalf("%s: epoch = %d, want %d", what, w.Epoch(), want)
	}
	return w
}

func TestWriterLeaseOneHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.db")
	a, b := openAt(t, path), openAt(t, path)

	wa := acquireAt(t, a, path, leaseOpts("first"), "first acquire", 1)
	_, err := b.AcquireWriter(t.Context(), path, leaseOpts("second"))
	var held *LeaseHeldError
	if !errors.As(err, &held) {
		t.Fatalf("second acquire: %v, want *LeaseHeldError", err)
	}
	if !held.Known || held.Holder.Owner != "first" || held.Holder.PID != 4242 {
		t.Fatalf("refusal names %+v, want the first holder", held.Holder)
	}
	for _, want := range []string{"pid 4242", "host-a", "since", "first"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not name %q", err, want)
		}
	}
	if err := wa.Renew(t.Context()); err != nil {
		t.Fatalf("holder renewing: %v", err)
	}
	if err := wa.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	acquireAt(t, b, path, leaseOpts("second"), "acquiring after the holder closed", 2)
	// The old holding is fenced: its renewal fails, whatever it thinks.
	if err := wa.Renew(t.Context()); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renewing a taken-over lease: %v, want ErrLeaseLost", err)
	}
}

func TestWriterLeaseOtherHostNotExpired(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.db")
	s := openAt(t, path)
	now := time.Now().UTC()
	// A holder on another host, where flock may not reach (shared storage).
	if _, err := s.db.ExecContext(t.Context(), `INSERT INTO leases(name, owner, host, pid, epoch, acquired_at, renewed_at, expires_at) VALUES (?,?,?,?,?,?,?,?)`,
		writerLease, "remote", "host-b", 7, 5, ts(now), ts(now), ts(now.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	_, err := s.AcquireWriter(t.Context(), path, leaseOpts("local"))
	var held *LeaseHeldError
	if !errors.As(err, &held) || held.Holder.Host != "host-b" {
		t.Fatalf("acquire while another host holds an unexpired lease: %v", err)
	}
	// Once it has expired, the store is ours, with the next epoch.
	opt := leaseOpts("local")
	opt.Clock = clocktest.NewFake(now.Add(2 * time.Minute))
	acquireAt(t, s, path, opt, "acquire after expiry", 6)
}

// TestWriterLeaseHolderKilled: a holder killed with SIGKILL leaves an
// unexpired row behind, but its lock dies with it, so a successor on the
// same host starts at once, with the next epoch.
func TestWriterLeaseHolderKilled(t *testing.T) {
	if os.Getenv("WARDEN_LEASE_HELPER") != "" {
		return
	}
	path := filepath.Join(t.TempDir(), "w.db")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestWriterLeaseHelperProcess$")
	cmd.Env = append(os.Environ(), "WARDEN_LEASE_HELPER="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "held") {
		t.Fatalf("helper did not take the lease: %q", buf[:n])
	}
	s := openAt(t, path)
	var held *LeaseHeldError
	if _, err := s.AcquireWriter(t.Context(), path, leaseOpts("successor")); !errors.As(err, &held) || held.Holder.PID != cmd.Process.Pid {
		t.Fatalf("acquire while the helper lives: %v, want it named (pid %d)", err, cmd.Process.Pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	acquireAt(t, s, path, leaseOpts("successor"), "acquire after kill -9 of the holder", 2)
}

func TestWriterLeaseHelperProcess(t *testing.T) {
	path := os.Getenv("WARDEN_LEASE_HELPER")
	if path == "" {
		t.Skip("helper process for TestWriterLeaseHolderKilled")
	}
	ctx := context.Background()
	s, err := Open(ctx, path, "normal")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcquireWriter(ctx, path, LeaseOptions{Owner: "helper", Host: "host-a", PID: os.Getpid(), TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	fmt.Println("held")
	select {} // until killed
}

func TestStepEpochRecorded(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "w.db"))
	ctx := t.Context()
	now := time.Now()
	run := Run{ID: "run-1", Gateway: "gw", Runbook: "rb", Trigger: "manual", State: RunRunning, CreatedAt: now, UpdatedAt: now,
		Steps: []Step{{Run: "run-1", Index: 0, Name: "isolate", Action: "isolate", State: StepPending, IdemKey: "k"}}}
	if err := s.Tx(ctx, func(tx Tx) error { return tx.InsertRun(ctx, run) }); err != nil {
		t.Fatal(err)
	}
	st := run.Steps[0]
	st.State, st.Epoch = StepRunning, 3
	if err := s.Tx(ctx, func(tx Tx) error { return tx.UpdateStep(ctx, st) }); err != nil {
		t.Fatal(err)
	}
	got, err := s.Run(ctx, "run-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Steps[0].Epoch != 3 {
		t.Fatalf("step epoch = %d, want 3", got.Steps[0].Epoch)
	}
}

// TestMigrateAddsStepEpoch: a store written before steps had an epoch
// (and before migrations were versioned) opens, keeps its rows, and gains
// the column.
func TestMigrateAddsStepEpoch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.db")
	s, err := Open(t.Context(), path, "normal")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(t.Context(), `ALTER TABLE steps DROP COLUMN epoch; DROP TABLE schema_migrations`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openAt(t, path)
	if found, now, err := s.SchemaVersions(t.Context()); err != nil || found != 0 || now != SchemaVersion {
		t.Errorf("schema versions of an old store: found %d, now %d (%v); want 0 and %d", found, now, err, SchemaVersion)
	}
	has, err := hasColumn(t.Context(), s.db, "steps", "epoch")
	if err != nil || !has {
		t.Fatalf("steps.epoch after reopening an old store: %v %v", has, err)
	}
}
