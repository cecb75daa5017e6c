package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/store"
)

// TestCrashDuringIntakeLoad kills a real `warden serve` (SIGKILL) while 16
// detectors post indicators to it, one per request, then starts it again
// on the same store: every indicator it answered 202 for is in the store,
// in the incident the answer named; none was decided twice; and the audit
// chain verifies. A small-scale run of issue #19's durability check.
//
// With the intake journal (the default), bulk indicators are answered
// once journaled; those the killed process had not decided are decided
// from the journal after the restart, once each.
func TestCrashDuringIntakeLoad(t *testing.T) {
	e := newCrashEnv(t, buildWarden(t))
	first := e.serve()
	c, err := e.api.as(v1.RoleIntake).client()
	if err != nil {
		t.Fatal(err)
	}

	type ack struct{ indicator, incident string }
	var (
		mu    sync.Mutex
		acked []ack
		wg    sync.WaitGroup
	)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	gateways := []string{"gw-hq", "gw-osaka", "gw-dc"}
	for w := range 16 {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				out, err := c.SubmitIndicators(ctx, v1.Indicator{Kind: "brute_force", Gateway: gateways[(w+n)%len(gateways)], Severity: "low",
					Confidence: 0.5, Source: "e2e-load", Summary: fmt.Sprintf("load %d/%d", w, n), Fingerprint: fmt.Sprintf("load-%d-%d", w, n)})
				if err != nil {
					continue // the controller is down: not acknowledged
				}
				mu.Lock()
				for _, r := range out.Results {
					acked = append(acked, ack{r.IndicatorID, r.IncidentID})
				}
				mu.Unlock()
			}
		})
	}
	// Let the load run, then kill the controller under it.
	waitFor(t, "a few hundred acknowledged indicators", 60*time.Second, func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 300, nil
	})
	first.kill(t)
	time.Sleep(200 * time.Millisecond) // requests in flight fail; nothing asserts on time
	stop()
	wg.Wait()
	t.Logf("%d indicators acknowledged before the kill", len(acked))

	second := e.serve()
	// Acknowledged bulk indicators were journaled (queued); the ones the
	// killed process had not decided are decided by this one from the
	// journal: wait until its backlog is empty.
	metrics := func() (string, error) {
		resp, err := http.Get(e.api.base + "/metrics")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	first0, _ := metrics()
	t.Logf("after the restart: %s", backlogLine(first0))
	waitFor(t, "the journaled indicators decided", 120*time.Second, func() (bool, error) {
		m, err := metrics()
		return err == nil && backlogLine(m) == "warden_intake_backlog 0", err
	})
	second.stop(t)

	st, err := store.Open(t.Context(), e.dbPath, "full")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	queued := 0
	for _, a := range acked {
		if a.incident == "" {
			queued++
		}
		var rec store.IndicatorRecord
		err := st.Tx(t.Context(), func(tx store.Tx) error {
			var err error
			rec, err = tx.IndicatorByID(t.Context(), a.indicator)
			return err
		})
		switch {
		case err != nil:
			t.Errorf("indicator %s was acknowledged but is not in the store after the crash: %v", a.indicator, err)
		case rec.Incident == "":
			t.Errorf("indicator %s joined no incident", a.indicator)
		case a.incident != "" && rec.Incident != a.incident:
			t.Errorf("indicator %s is in incident %s, the answer named %s", a.indicator, rec.Incident, a.incident)
		}
	}
	t.Logf("%d of them answered queued (journaled)", queued)

	entries, err := audit.List(t.Context(), st.DB(), "")
	if err != nil {
		t.Fatal(err)
	}
	// A decision is a policy.decided entry, or, for an indicator of bulk
	// intake that started no run, the decision on its row; and a bulk
	// indicator is in one intake batch entry.
	decided, batched := map[string]int{}, map[string]int{}
	for _, en := range entries {
		var d struct {
			Indicator  string   `json:"indicator"`
			Indicators []string `json:"indicators"`
		}
		switch en.Action {
		case "policy.decided", "intake.batch":
			if err := json.Unmarshal(en.Data, &d); err != nil {
				t.Fatal(err)
			}
		}
		switch en.Action {
		case "policy.decided":
			decided[d.Indicator]++
		case "intake.batch":
			for _, id := range d.Indicators {
				batched[id]++
			}
		}
	}
	for id, n := range batched {
		if n > 1 {
			t.Errorf("indicator %s is in %d intake batch entries, want one", id, n)
		}
	}
	rows, err := st.DB().QueryContext(t.Context(), `SELECT id, decision FROM indicators WHERE decision != ''`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, raw string
		var d store.IndicatorDecision
		if err := rows.Scan(&id, &raw); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(raw), &d); err != nil {
			t.Fatal(err)
		}
		if d.Triage == "accepted" {
			decided[id]++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	for _, a := range acked {
		if decided[a.indicator] != 1 {
			t.Errorf("indicator %s decided %d times, want once", a.indicator, decided[a.indicator])
		}
	}
	for id, n := range decided {
		if n > 1 {
			t.Errorf("indicator %s decided %d times", id, n)
		}
	}
	out, err := exec.CommandContext(t.Context(), e.bin, "audit", "verify", "--db", e.dbPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "audit chain intact") || !strings.Contains(string(out), "journaled indicators intact") {
		t.Fatalf("warden audit verify after the crash: %v\n%s", err, out)
	}

	// Each journaled indicator proves its membership in its batch's
	// audit entry; editing one stored indicator breaks verification.
	var some string
	for _, a := range acked {
		if a.incident == "" {
			some = a.indicator
			break
		}
	}
	if some == "" {
		t.Fatal("no acknowledged indicator was journaled")
	}
	out, err = exec.CommandContext(t.Context(), e.bin, "audit", "prove", "--db", e.dbPath, some).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"valid": true`) {
		t.Fatalf("warden audit prove %s: %v\n%s", some, err, out)
	}
	if _, err := st.DB().ExecContext(t.Context(), `UPDATE indicators SET severity = 'info' WHERE id = ?`, some); err != nil {
		t.Fatal(err)
	}
	out, err = exec.CommandContext(t.Context(), e.bin, "audit", "verify", "--db", e.dbPath).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "changed") {
		t.Fatalf("warden audit verify after editing indicator %s: %v, want exit 2 naming the change\n%s", some, err, out)
	}
	out, err = exec.CommandContext(t.Context(), e.bin, "audit", "prove", "--db", e.dbPath, some).CombinedOutput()
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), `"valid": false`) {
		t.Fatalf("warden audit prove %s after editing it: %v, want exit 2 and an invalid proof\n%s", some, err, out)
	}
}

// backlogLine is the warden_intake_backlog sample of a /metrics page.
func backlogLine(metrics string) string {
	for l := range strings.Lines(metrics) {
		if strings.HasPrefix(l, "warden_intake_backlog ") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
