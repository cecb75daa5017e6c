package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
)

func TestReplayGuard(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		run func(t *testing.T, dir string)
	}{
		"a nonce is admitted once": {func(t *testing.T, dir string) {
			g := mustGuard(t, dir, now, 10)
			if err := g.admit("a", now.Add(time.Minute), now); err != nil {
				t.Fatal(err)
			}
			if err := g.admit("a", now.Add(time.Minute), now); !errors.Is(err, errReplay) {
				t.Fatalf("second admit: %v, want errReplay", err)
			}
		}},
		"a reopened journal still refuses a live nonce": {func(t *testing.T, dir string) {
			g := mustGuard(t, dir, now, 10)
			if err := g.admit("a", now.Add(time.Minute), now); err != nil {
				t.Fatal(err)
			}
			if err := g.admit("b", now.Add(time.Second), now); err != nil {
				t.Fatal(err)
			}
			g.close()
			later := now.Add(30 * time.Second)
			g = mustGuard(t, dir, later, 10)
			if err := g.admit("a", now.Add(time.Minute), later); !errors.Is(err, errReplay) {
				t.Fatalf("after reopen: %v, want errReplay", err)
			}
			if _, ok := g.seen["b"]; ok {
				t.Fatalf("expired nonce kept after reopen")
			}
		}},
		"a read-only command's nonce is refused again but not journalled": {func(t *testing.T, dir string) {
			g := mustGuard(t, dir, now, 10)
			if err := g.admitReadOnly("r", now.Add(time.Minute), now); err != nil {
				t.Fatal(err)
			}
			if err := g.admitReadOnly("r", now.Add(time.Minute), now); !errors.Is(err, errReplay) {
				t.Fatalf("second read-only admit: %v, want errReplay", err)
			}
			if err := g.admit("r", now.Add(time.Minute), now); !errors.Is(err, errReplay) {
				t.Fatalf("the same nonce for a change: %v, want errReplay", err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, nonceFile)); err != nil || strings.Contains(string(b), `"r"`) {
				t.Fatalf("journal %q (%v): the read-only nonce was written", b, err)
			}
		}},
		"a torn last line is ignored": {func(t *testing.T, dir string) {
			g := mustGuard(t, dir, now, 10)
			if err := g.admit("a", now.Add(time.Minute), now); err != nil {
				t.Fatal(err)
			}
			g.close()
			f, err := os.OpenFile(filepath.Join(dir, nonceFile), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(`{"id":"b","unt`)
			f.Close()
			g = mustGuard(t, dir, now, 10)
			if len(g.seen) != 1 {
				t.Fatalf("seen %v", g.seen)
			}
		}},
		"a full memory refuses until nonces expire": {func(t *testing.T, dir string) {
			g := mustGuard(t, dir, now, 2)
			for _, id := range []string{"a", "b"} {
				if err := g.admit(id, now.Add(time.Minute), now); err != nil {
					t.Fatal(err)
				}
			}
			if err := g.admit("c", now.Add(time.Minute), now); !errors.Is(err, errTooManyNonces) {
				t.Fatalf("third admit: %v, want errTooManyNonces", err)
			}
			later := now.Add(2 * time.Minute)
			if err := g.admit("c", later.Add(time.Minute), later); err != nil {
				t.Fatalf("after expiry: %v", err)
			}
		}},
		"the journal is compacted": {func(t *testing.T, dir string) {
			g := mustGuard(t, dir, now, 100000)
			for i := range 3000 {
				at := now.Add(time.Duration(i) * time.Second)
				if err := g.admit(fmt.Sprint(i), at.Add(time.Second), at); err != nil {
					t.Fatal(err)
				}
			}
			if g.lines > 1100 {
				t.Fatalf("journal holds %d lines for %d live nonces", g.lines, len(g.seen))
			}
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) { tc.run(t, t.TempDir()) })
	}
}

func mustGuard(t *testing.T, dir string, now time.Time, max int) *replayGuard {
	t.Helper()
	g, err := openReplayGuard(dir, now, max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.close() })
	return g
}

// countNonceSyncs counts the nonce journal's fsyncs from now on, and what
// the firewall had applied at each.
func countNonceSyncs(t *testing.T, h *harness) *[]int {
	t.Helper()
	var mu sync.Mutex
	applied := []int{}
	beforeNonceSync = func() error {
		mu.Lock()
		defer mu.Unlock()
		applied = append(applied, len(h.fw.applies()))
		return nil
	}
	t.Cleanup(func() { beforeNonceSync = nil })
	return &applied
}

// TestIsolateAndConfirmCarryTheirNonce: the quarantine record isolate and
// confirm commit carries their nonce, so neither flushes the nonce
// journal of its own, and a replay is refused after a restart even when
// the journal lost their lines (a power cut before its next flush).
func TestIsolateAndConfirmCarryTheirNonce(t *testing.T) {
	h := newHarness(t)
	h.start()
	syncs := countNonceSyncs(t, h)

	iso := h.command(wire.KindIsolate, labIsolate)
	status, body := h.send(iso)
	if status != http.StatusOK {
		t.Fatalf("isolate: %d %s", status, body)
	}
	var res wire.IsolateResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	conf := h.command(wire.KindConfirm, wire.ConfirmParams{Generation: res.Generation, Check: true})
	if status, body := h.send(conf); status != http.StatusOK {
		t.Fatalf("confirm: %d %s", status, body)
	}
	if len(*syncs) != 0 {
		t.Fatalf("the nonce journal was flushed %d times for isolate and confirm, want none", len(*syncs))
	}
	rec, err := loadRecord(h.cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []wire.Command{iso, conf} {
		if _, ok := rec.Nonces[c.ID]; !ok {
			t.Fatalf("the record on disk lacks the %s command's nonce: %v", c.Kind, rec.Nonces)
		}
	}

	// A power cut loses the journal's unflushed lines; the record kept them.
	h.stop()
	if err := os.WriteFile(filepath.Join(h.cfg.StateDir, nonceFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.fw = &fakeFirewall{}
	h.start()
	applied := len(h.fw.applies()) // the restart re-applies the quarantine
	for _, c := range []wire.Command{iso, conf} {
		if status, body := h.send(c); status != http.StatusConflict {
			t.Fatalf("%s replayed after a restart: %d %s, want 409", c.Kind, status, body)
		}
	}
	if n := len(h.fw.applies()); n != applied {
		t.Fatal("a replay after the restart reached the firewall")
	}
}

// TestNonceOnDiskBeforeTheGatewayChanges: an isolate that commits no new
// record (the same quarantine again) flushes its nonce before it touches
// the firewall, and a command of any other kind has its nonce on disk
// before it runs.
func TestNonceOnDiskBeforeTheGatewayChanges(t *testing.T) {
	h := newHarness(t)
	h.start()
	res := h.isolate(labIsolate)
	h.confirm(res.Generation)
	before := len(h.fw.applies())
	syncs := countNonceSyncs(t, h)
	h.confirm(res.Generation) // confirmed already: no new record
	if got := *syncs; len(got) != 1 {
		t.Fatalf("a confirm that commits nothing flushed its nonce %d times, want once before its answer", len(got))
	}
	*syncs = (*syncs)[:0]
	h.isolate(labIsolate) // in force already: re-enforced, no new record
	if got := *syncs; len(got) != 1 || got[0] != before {
		t.Fatalf("nonce flushes with the firewall's applies at each: %v, want one before the re-apply (%d)", got, before)
	}
	if n := len(h.fw.applies()); n != before+1 {
		t.Fatalf("firewall applied %d times, want %d", n, before+1)
	}
	removes := h.fw.removeCount()
	*syncs = (*syncs)[:0]
	h.do(wire.KindRelease, nil, nil)
	if got := *syncs; len(got) != 1 || h.fw.removeCount() != removes+1 {
		t.Fatalf("release: %d nonce flushes, %d removes; want one flush and one remove", len(got), h.fw.removeCount()-removes)
	}

	// A failed flush fails the command before it changes anything.
	beforeNonceSync = func() error { return errors.New("injected fsync failure") }
	applies := len(h.fw.applies())
	st := h.observe()
	if st.Quarantined {
		t.Fatal("released, yet quarantined")
	}
	c := h.command(wire.KindIsolate, labIsolate)
	status, body := h.send(c)
	// The isolate commits a new record carrying its nonce: no flush needed.
	if status != http.StatusOK || len(h.fw.applies()) != applies+1 {
		t.Fatalf("isolate with its nonce in the record: %d %s", status, body)
	}
	status, body = h.send(h.command(wire.KindIsolate, labIsolate))
	if status != http.StatusInternalServerError || len(h.fw.applies()) != applies+1 {
		t.Fatalf("repeat isolate whose nonce cannot be flushed: %d %s, firewall applies %d; want 500 and no apply", status, body, len(h.fw.applies())-applies)
	}
}
