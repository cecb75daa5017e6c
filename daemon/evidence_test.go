package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/agenttest"
	"github.com/warden-ir/warden/agent/host"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/baseline"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/patching"
	"github.com/warden-ir/warden/patching/patchtest"
	"github.com/warden-ir/warden/providers/linux"
	"github.com/warden-ir/warden/store"
)

const (
	sshdBin = "/usr/sbin/sshd"
	sudoBin = "/usr/bin/sudo"
)

func sshdPackage(version string) patchtest.Package {
	return patchtest.Package{Name: "warden-test-sshd", Version: version, Files: map[string]string{sshdBin: "#!/bin/sh\necho sshd " + version + "\n"}}
}

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// nopFirewall is the agent's required firewall seam; the patch never uses it.
type nopFirewall struct{}

func (nopFirewall) Apply(context.Context, wire.QuarantineSpec) (bool, error) { return false, nil }
func (nopFirewall) Remove(context.Context) (bool, error)                     { return false, nil }
func (nopFirewall) Observe(context.Context, wire.QuarantineSpec) (wire.FirewallState, error) {
	return wire.FirewallState{Absent: true}, nil
}

// patchManifestLab is one gateway's root — warden-test-sshd 1.0-1 owning
// /usr/sbin/sshd and warden-test-sudo owning /usr/bin/sudo, installed by
// dpkg, with apt pointed at a local repository offering sshd 1.0-2 — its
// real agent (host.Patch, host.Baseline with an integrity check of both
// files) over mutual TLS, and a controller-side patch action with its
// evidence recorded (actions.RecordEvidence) in a real ledger.
type patchManifestLab struct {
	root       string
	gw         inventory.Gateway
	client     *linux.AgentClient
	act        actions.Action
	ledger     *evidence.Ledger
	servicesOK atomic.Bool
	manifest   string
}

func newPatchManifestLab(t *testing.T) *patchManifestLab {
	t.Helper()
	patchtest.Require(t)
	base := t.TempDir()
	repo := patchtest.NewRepo(t, filepath.Join(base, "repo"), nil, sshdPackage("1.0-1"), sshdPackage("1.0-2"),
		patchtest.Package{Name: "warden-test-sudo", Version: "1.0-1", Files: map[string]string{sudoBin: "#!/bin/sh\necho sudo\n"}})
	l := &patchManifestLab{root: patchtest.NewRoot(t, filepath.Join(base, "gw"))}
	l.servicesOK.Store(true)
	patchtest.InstallDeb(t, l.root, repo.Deb(t, "warden-test-sshd", "1.0-1"))
	patchtest.InstallDeb(t, l.root, repo.Deb(t, "warden-test-sudo", "1.0-1"))
	if err := os.WriteFile(filepath.Join(l.root, "etc/apt/sources.list"), []byte(repo.Source()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	blFile := filepath.Join(base, "baseline.yaml")
	if err := os.WriteFile(blFile, []byte(`name: patch-manifest
checks:
  - id: integrity-binaries
    title: Critical binaries are unchanged since recorded
    rationale: a trojaned sshd harvests credentials
    severity: critical
    type: integrity
    files: [`+sshdBin+`, `+sudoBin+`]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	l.manifest = filepath.Join(state, "baseline-manifest.json")
	bl, err := host.Baseline(host.BaselineOptions{Root: l.root, File: blFile, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	services := func(context.Context) error {
		if !l.servicesOK.Load() {
			return errors.New("sshd does not answer")
		}
		return nil
	}
	pki, url := agenttest.Serve(t, agent.Deps{
		Firewall: nopFirewall{},
		Baseline: bl,
		Patch:    host.Patch(l.root, slog.New(slog.DiscardHandler), patching.VerifyHooks{Services: services}),
	}, nil)
	pool := linux.NewAgentPool(linux.AgentTLS{CertFile: filepath.Join(pki, agent.ControllerCertFile),
		KeyFile: filepath.Join(pki, agent.ControllerKeyFile), CAFile: filepath.Join(pki, agent.CAFile)}, nil)
	t.Cleanup(pool.Close)
	l.gw = inventory.Gateway{ID: "gw-osaka", Agent: url, ManagementNetworks: []string{agenttest.Management}}
	if l.client, err = pool.For(l.gw); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), filepath.Join(base, "warden.db"), "normal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if l.ledger, err = evidence.Open(t.Context(), st.DB(), filepath.Join(base, "evidence"), evidence.WithIncidents(storeIncidents{st})); err != nil {
		t.Fatal(err)
	}
	l.act = actions.RecordEvidence(ledgerEvidence{l.ledger})(actions.Entry{Action: actions.NewPatch(pool)})
	return l
}

// baseline evaluates the gateway's baseline through its agent.
func (l *patchManifestLab) baseline(t *testing.T, p wire.BaselineParams) baseline.Report {
	t.Helper()
	res, err := l.client.Baseline(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	var rep baseline.Report
	if err := json.Unmarshal(res.Report, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// violations are the integrity_violation drifts of now against before,
// each with the files it names.
func violations(before, now baseline.Report) map[string]string {
	out := map[string]string{}
	for _, ch := range now.Diff(before) {
		if ch.Kind == "integrity_violation" {
			out[ch.ID] = ch.Message
		}
	}
	return out
}

func (l *patchManifestLab) write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(l.root, p), []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

// manifestEvidence reads the one manifest artefact filed under filed.
func (l *patchManifestLab) manifestEvidence(t *testing.T, filed string) (evidence.Record, wire.ManifestSanction) {
	t.Helper()
	recs, err := l.ledger.List(t.Context(), filed)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Name != actions.ManifestEvidenceName || recs[0].Kind != evidence.KindConfig {
		t.Fatalf("evidence under %s: %+v, want one %s", filed, recs, actions.ManifestEvidenceName)
	}
	rc, err := l.ledger.Open(t.Context(), recs[0].ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	var s wire.ManifestSanction
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return recs[0], s
}

// TestVerifiedPatchRerecordsOnlyItsFiles patches warden-test-sshd, which
// owns a manifest file, while /usr/bin/sudo (owned by a package the patch
// does not touch) is changed behind its back: afterwards sshd is no
// integrity violation, sudo still is, and the evidence holds sshd's old
// and new hash. Then the step is verified again as a resumed step would
// be, and sshd is changed after the patch: neither re-records anything
// more.
func TestVerifiedPatchRerecordsOnlyItsFiles(t *testing.T) {
	l := newPatchManifestLab(t)
	ctx := t.Context()
	oldSSHD, newSSHD := sshdPackage("1.0-1").Files[sshdBin], sshdPackage("1.0-2").Files[sshdBin]
	known := l.baseline(t, wire.BaselineParams{RecordManifest: true})
	if !known.Passed {
		t.Fatalf("baseline before the patch: %+v", known.Results)
	}
	req := actions.Request{IdempotencyKey: "run-patch1/0/patch", Gateway: l.gw, Params: map[string]string{"packages": "warden-test-sshd=1.0-2"}}

	patchPhase(t, "1 a patch, verified, with sudo changed at the same time", func(t *testing.T) {
		l.write(t, sudoBin, "#!/bin/sh\necho trojan\n")
		if res, err := l.act.Apply(ctx, req); err != nil || !res.Changed {
			t.Fatalf("Apply = %+v, %v", res, err)
		}
		res, err := l.act.Verify(ctx, req)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		s, _ := res.Details["manifest"].(*wire.ManifestSanction)
		if s == nil || len(s.Rerecorded) != 1 || len(s.Refused) != 1 {
			t.Fatalf("step result manifest %+v", s)
		}
		ch := s.Rerecorded[0]
		if ch.Path != sshdBin || ch.Package != "warden-test-sshd:all" || ch.Version != "1.0-2" ||
			ch.OldSHA256 != sha256hex(oldSSHD) || ch.NewSHA256 != sha256hex(newSSHD) {
			t.Errorf("re-recorded %+v, want sshd %s → %s", ch, sha256hex(oldSSHD), sha256hex(newSSHD))
		}
		if r := s.Refused[0]; r.Path != sudoBin || !strings.Contains(r.Reason, "no package this patch upgraded owns it") {
			t.Errorf("refused %+v", r)
		}
		rec, ev := l.manifestEvidence(t, "run-patch1")
		if len(ev.Rerecorded) != 1 || ev.Rerecorded[0].OldSHA256 != ch.OldSHA256 || ev.Rerecorded[0].NewSHA256 != ch.NewSHA256 {
			t.Errorf("evidence holds %+v, want the step's %+v", ev.Rerecorded, ch)
		}
		_, custody, err := l.ledger.Show(ctx, rec.ID, "test")
		if err != nil {
			t.Fatal(err)
		}
		var acts []string
		for _, c := range custody {
			acts = append(acts, c.Action)
		}
		if !slices.Contains(acts, evidence.CustodyCollected) || !slices.Contains(acts, evidence.CustodyStored) || rec.CollectedBy != "agent:gw-osaka" {
			t.Errorf("custody %v, collected by %s", acts, rec.CollectedBy)
		}
		got := violations(known, l.baseline(t, wire.BaselineParams{}))
		msg, ok := got["integrity-binaries"]
		if !ok || !strings.Contains(msg, sudoBin) || strings.Contains(msg, sshdBin) {
			t.Errorf("integrity violations %v: want sudo only", got)
		}
	})

	patchPhase(t, "2 the step verified again (resumed) records nothing new", func(t *testing.T) {
		before, err := os.ReadFile(l.manifest)
		if err != nil {
			t.Fatal(err)
		}
		res, err := l.act.Verify(ctx, req)
		if err != nil {
			t.Fatalf("Verify again: %v", err)
		}
		s, _ := res.Details["manifest"].(*wire.ManifestSanction)
		if s == nil || len(s.Rerecorded) != 1 || s.Rerecorded[0].NewSHA256 != sha256hex(newSSHD) {
			t.Errorf("second Verify reports %+v, want the same re-record", s)
		}
		after, _ := os.ReadFile(l.manifest)
		if string(after) != string(before) {
			t.Error("the manifest file changed on the second Verify")
		}
		l.manifestEvidence(t, "run-patch1") // still exactly one artefact
	})

	patchPhase(t, "3 sshd changed after the patch is never sanctioned", func(t *testing.T) {
		l.write(t, sshdBin, "#!/bin/sh\necho trojan sshd\n")
		res, err := l.act.Verify(ctx, req)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		s, _ := res.Details["manifest"].(*wire.ManifestSanction)
		var refused []string
		for _, r := range s.Refused {
			refused = append(refused, r.Path+": "+r.Reason)
		}
		if len(s.Rerecorded) != 0 || len(refused) != 2 || !strings.Contains(strings.Join(refused, "\n"), sshdBin+": content is not what warden-test-sshd:all 1.0-2 installed") {
			t.Errorf("re-recorded %+v, refused %v", s.Rerecorded, refused)
		}
		msg := violations(known, l.baseline(t, wire.BaselineParams{}))["integrity-binaries"]
		if !strings.Contains(msg, sshdBin) || !strings.Contains(msg, sudoBin) {
			t.Errorf("integrity violation %q, want sshd and sudo", msg)
		}
	})
}

// TestUnverifiedPatchRerecordsNothing patches while the service check
// fails: the step fails verification and the manifest and the evidence
// are untouched, so the changed sshd still reads as a violation.
func TestUnverifiedPatchRerecordsNothing(t *testing.T) {
	l := newPatchManifestLab(t)
	known := l.baseline(t, wire.BaselineParams{RecordManifest: true})
	recorded, err := os.ReadFile(l.manifest)
	if err != nil {
		t.Fatal(err)
	}
	l.servicesOK.Store(false)
	req := actions.Request{IdempotencyKey: "run-patch2/0/patch", Incident: "", Gateway: l.gw, Params: map[string]string{"packages": "warden-test-sshd=1.0-2"}}
	if _, err := l.act.Apply(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if _, err := l.act.Verify(t.Context(), req); !errors.Is(err, actions.ErrNotVerified) {
		t.Fatalf("Verify with sshd not answering: %v, want ErrNotVerified", err)
	}
	if now, _ := os.ReadFile(l.manifest); string(now) != string(recorded) {
		t.Error("the manifest changed although the patch was not verified")
	}
	if _, err := l.ledger.List(t.Context(), "run-patch2"); !errors.Is(err, evidence.ErrUnknownIncident) {
		t.Errorf("evidence under run-patch2: %v, want none (ErrUnknownIncident)", err)
	}
	if msg := violations(known, l.baseline(t, wire.BaselineParams{}))["integrity-binaries"]; !strings.Contains(msg, sshdBin) {
		t.Errorf("integrity violation %q, want sshd", msg)
	}
}

func patchPhase(t *testing.T, name string, fn func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, fn) {
		t.FailNow()
	}
}
