package baseline

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/warden-ir/warden/indicator"
)

// evaluateGood evaluates the shipped baseline on a good gateway, after
// recording its integrity manifest.
func evaluateGood(t *testing.T) (*Baseline, *gatewayFixture, Report) {
	t.Helper()
	f := newGatewayFixture(t)
	b, _, rep := evaluateRecorded(t, f)
	return b, f, rep
}

// evaluateRecorded loads the shipped baseline, records f's integrity
// manifest against it and evaluates it on f, returning the environment it
// evaluated.
func evaluateRecorded(tb testing.TB, f *gatewayFixture) (*Baseline, Env, Report) {
	tb.Helper()
	b, err := Default()
	if err != nil {
		tb.Fatal(err)
	}
	f.record(b)
	env := f.env()
	rep, err := b.Evaluate(tb.Context(), env)
	if err != nil {
		tb.Fatal(err)
	}
	return b, env, rep
}

func TestReportDiff(t *testing.T) {
	res := func(id string, typ CheckType, st Status) Result {
		return Result{ID: id, Title: id, Type: typ, Severity: indicator.High, Status: st,
			Evidence: []Evidence{{Source: "/usr/sbin/sshd", Value: "sha256:" + strings.Repeat("b", 64), Expected: "sha256:" + strings.Repeat("a", 64)}}}
	}
	var prev, cur Report
	for _, c := range []struct {
		id       string
		typ      CheckType
		from, to Status // from "": the check is new
	}{
		{"ssh-root", TypeSSHD, StatusPass, StatusFail},
		{"bins", TypeIntegrity, StatusPass, StatusFail},
		{"still-failing", TypeSysctl, StatusFail, StatusFail},
		{"fixed", TypeSysctl, StatusFail, StatusPass},
		{"unreadable", TypeFirewall, StatusPass, StatusError},
		{"was-skipped", TypeTunnels, StatusSkip, StatusFail},
		{"new-check", TypePackages, "", StatusFail},
	} {
		if c.from != "" {
			prev.Results = append(prev.Results, res(c.id, c.typ, c.from))
		}
		cur.Results = append(cur.Results, res(c.id, c.typ, c.to))
	}
	changes := cur.Diff(prev)
	var got []string
	for _, c := range changes {
		got = append(got, c.ID+" "+string(c.Kind)+" "+string(c.From)+"→"+string(c.To))
	}
	want := []string{"ssh-root baseline_drift pass→fail", "bins integrity_violation pass→fail"}
	if !slices.Equal(got, want) {
		t.Errorf("Diff = %q, want %q", got, want)
	}
	if len(cur.Diff(cur)) != 0 {
		t.Error("a report drifts from itself")
	}
	if len(cur.Diff(Report{})) != 0 {
		t.Error("a first report has drift")
	}

	// The changes become valid, distinct indicators.
	at := fixtureNow
	a, b := changes[0].Indicator("gw-hq", at), changes[1].Indicator("gw-hq", at)
	for _, in := range []indicator.Indicator{a, b} {
		if err := in.Validate(); err != nil {
			t.Errorf("indicator %+v: %v", in, err)
		}
	}
	if a.Fingerprint == b.Fingerprint || a.Fingerprint == "" {
		t.Errorf("two checks drifting share a fingerprint %q", a.Fingerprint)
	}
	if !slices.Equal(b.Observables.Hashes, []string{strings.Repeat("b", 64)}) || len(a.Observables.Hashes) != 0 {
		t.Errorf("hashes: %v / %v", a.Observables.Hashes, b.Observables.Hashes)
	}
	if a.Labels["check"] != "ssh-root" || a.Confidence != 1 || !a.ObservedAt.Equal(at) {
		t.Errorf("indicator %+v", a)
	}
}

// TestDriftBetweenEvaluations is the drift scheduler's view: evaluate, let
// an intruder change the gateway, evaluate again, diff.
func TestDriftBetweenEvaluations(t *testing.T) {
	b, f, before := evaluateGood(t)
	if !before.Passed {
		t.Fatalf("baseline does not pass: %+v", before.Counts)
	}
	f.appendTo("/root/.ssh/authorized_keys", "ssh-ed25519 AAAAC3attacker\n")
	f.appendTo("/etc/ssh/sshd_config.d/10-hardening.conf", "Match all\n  PasswordAuthentication yes\n")
	f.setRuntime("net.ipv4.conf.all.send_redirects", "1")
	after, err := b.Evaluate(t.Context(), f.env())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range after.Diff(before) {
		got = append(got, c.ID+"/"+string(c.Kind))
	}
	want := []string{
		"ssh-password-authentication/baseline_drift",
		"sysctl-send-redirects/baseline_drift",
		"integrity-authorized-keys/integrity_violation",
		"integrity-configs/integrity_violation",
	}
	if !slices.Equal(got, want) {
		t.Errorf("drift %q, want %q", got, want)
	}
	if after.Passed || after.Counts.Fail != 4 {
		t.Errorf("Passed=%v counts=%+v", after.Passed, after.Counts)
	}
}

func TestEvaluateCancelled(t *testing.T) {
	b, _ := Default()
	f := newGatewayFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	rep, err := b.Evaluate(ctx, f.env())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts.Error != len(b.Checks) || rep.Passed {
		t.Errorf("cancelled evaluation: %+v", rep.Counts)
	}
}

func TestEvaluateInvalidEnv(t *testing.T) {
	b, _ := Default()
	if _, err := b.Evaluate(t.Context(), Env{Root: "relative/root"}); !errors.Is(err, ErrInvalidEnv) {
		t.Errorf("error = %v, want ErrInvalidEnv", err)
	}
}

func TestReportJSON(t *testing.T) {
	_, _, rep := evaluateGood(t)
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Diff(rep)) != 0 || !back.Passed || len(back.Results) != len(rep.Results) {
		t.Error("report does not survive JSON")
	}
	r, _ := back.Result("sysctl-ip-forward")
	if !strings.Contains(r.ProfileOverride, "CIS") {
		t.Errorf("profile override lost: %+v", r)
	}
	if r, _ := back.Result("sysctl-rp-filter"); !r.Remediable {
		t.Error("rp_filter should be marked remediable")
	}
	// Secrets from swanctl.conf and wg0.conf never reach a report.
	for _, secret := range []string{"0sdGhpcyBpcyBub3QgYSByZWFsIHNlY3JldA", "yAnz5TF+lXXJte14tji3zlMNq", "/UwcSPg38hW/D9Y3tcS1FOV0K1wuURMbS0sesJEP5ak="} {
		if strings.Contains(string(data), secret) {
			t.Errorf("the report contains a secret %q", secret)
		}
	}
}
