package peerbench

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func failed(s string) bool { return strings.Contains(s, "Failed password") }

func TestCrossingIsTheNthMatchingLine(t *testing.T) {
	lines := []LogLine{
		{at(0), "sshd[1]: Connection from 198.18.0.100 port 1"},
		{at(10), "sshd[1]: Failed password for root from 198.18.0.100 port 1 ssh2"},
		{at(20), "sshd[1]: Connection closed by authenticating user root"},
		{at(30), "sshd[2]: Failed password for root from 198.18.0.100 port 2 ssh2"},
		{at(45), "sshd[3]: Failed password for root from 198.18.0.100 port 3 ssh2"},
	}
	for n, want := range map[int]time.Time{1: at(10), 2: at(30), 3: at(45)} {
		got, ok := Crossing(lines, failed, n)
		if !ok || !got.Equal(want) {
			t.Errorf("threshold %d: %v %v, want %v", n, got, ok, want)
		}
	}
	if _, ok := Crossing(lines, failed, 4); ok {
		t.Error("threshold 4 crossed with three failures")
	}
	if _, ok := Crossing(lines, failed, 0); ok {
		t.Error("threshold 0 crossed")
	}
}

func probes(sent []int, connected []bool) []ProbeResult {
	var ps []ProbeResult
	for i := range sent {
		ps = append(ps, ProbeResult{Sent: at(sent[i]), Connected: connected[i]})
	}
	return ps
}

func TestFirstDropIsTheFirstHeldRefusalAfterTheCrossing(t *testing.T) {
	// A lone lost probe at 3 ms, then connected until 7, dropped from 7 on.
	ps := probes([]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, []bool{true, true, false, true, true, true, false, false, false, false})
	got, ok, err := FirstDrop(ps, at(2), 2)
	if err != nil || !ok || !got.Equal(at(7)) {
		t.Fatalf("FirstDrop = %v %v %v, want the probe sent at 7 ms", got, ok, err)
	}
	// Not held long enough to confirm: no drop.
	if _, ok, err := FirstDrop(ps, at(2), 4); ok || err != nil {
		t.Errorf("confirm 4 of 3 refusals: ok=%v err=%v, want no drop", ok, err)
	}
	// Every probe connected: no drop.
	all := probes([]int{1, 2, 3}, []bool{true, true, true})
	if _, ok, err := FirstDrop(all, at(0), 0); ok || err != nil {
		t.Errorf("all connected: ok=%v err=%v", ok, err)
	}
}

func TestFirstDropBeforeTheCrossingIsAnError(t *testing.T) {
	ps := probes([]int{1, 2, 3, 4}, []bool{true, false, false, false})
	if _, _, err := FirstDrop(ps, at(3), 1); !errors.Is(err, ErrDroppedBeforeCrossing) {
		t.Fatalf("dropped at 2 ms, crossing at 3 ms: err %v", err)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if got := Percentile(ds, 50); got != 50*time.Millisecond {
		t.Errorf("p50 = %v", got)
	}
	if got := Percentile(ds, 99); got != 99*time.Millisecond {
		t.Errorf("p99 = %v", got)
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("Percentile sorted its argument in place")
	}
	// Twelve trials: p99 is the largest.
	if got := Percentile(ds[:12], 99); got != 100*time.Millisecond {
		t.Errorf("p99 of 12 = %v", got)
	}
	if Percentile(nil, 50) != 0 {
		t.Error("p50 of nothing is not 0")
	}
}

func sampleRows() []Row {
	w := Row{Name: "Warden", IntakePerS: Num(3000), IntakeP99MS: Num(9.5)}
	w.SetDrops([]time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond})
	f := Row{Name: "fail2ban", Note: "no HTTP intake"}
	f.SetDrops([]time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second})
	a := Row{Name: "Alertmanager", IntakePerS: Num(12000), IntakeP99MS: Num(4)}
	return []Row{w, f, a}
}

func TestJSONHasEveryFieldWithNullWhereAFigureDoesNotApply(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, sampleRows()); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if len(got) != 3 {
		t.Fatalf("%d objects, want 3", len(got))
	}
	for _, o := range got {
		for _, k := range []string{"name", "drop_median_ms", "drop_p99_ms", "intake_per_s", "intake_p99_ms"} {
			if _, ok := o[k]; !ok {
				t.Errorf("%v: no %s", o["name"], k)
			}
		}
	}
	if got[0]["drop_median_ms"] != 20.0 || got[0]["drop_p99_ms"] != 30.0 || got[0]["intake_per_s"] != 3000.0 {
		t.Errorf("Warden: %v", got[0])
	}
	if got[1]["intake_per_s"] != nil || got[1]["intake_p99_ms"] != nil || got[1]["drop_median_ms"] != 1000.0 {
		t.Errorf("fail2ban: %v", got[1])
	}
	if got[2]["drop_median_ms"] != nil || got[2]["drop_p99_ms"] != nil {
		t.Errorf("Alertmanager: %v", got[2])
	}
}

func TestTableHasTheRatiosAgainstTheReference(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteTable(&buf, sampleRows(), "Warden"); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 { // header, three rows, one note
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	// fail2ban's median 1000 ms over Warden's 20 ms; Warden's intake 3000/s
	// over Alertmanager's 12000/s.
	if f := strings.Fields(lines[2]); f[0] != "fail2ban" || f[1] != "1000.0" || f[3] != "-" || f[5] != "50.00×" || f[6] != "-" {
		t.Errorf("fail2ban's row: %q", lines[2])
	}
	if f := strings.Fields(lines[3]); f[0] != "Alertmanager" || f[1] != "-" || f[5] != "-" || f[6] != "0.25×" {
		t.Errorf("Alertmanager's row: %q", lines[3])
	}
	if f := strings.Fields(lines[1]); f[0] != "Warden" || f[5] != "-" {
		t.Errorf("Warden's row: %q", lines[1])
	}
	if !strings.Contains(lines[4], "fail2ban: no HTTP intake") {
		t.Errorf("note: %q", lines[4])
	}
}
