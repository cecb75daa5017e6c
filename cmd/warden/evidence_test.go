package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-ir/warden/demo"
)

// TestEvidenceAndReportFromDemo runs the demo into a directory, then uses
// the offline commands on what it left: list, export (checked with the
// real sha256sum -c), report, and verify before and after a blob is
// changed.
func TestEvidenceAndReportFromDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the vcsim demo")
	}
	dir := t.TempDir()
	res, err := demo.Run(t.Context(), demo.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ja.md", "en.md", "ja.html", "en.html"} {
		if st, err := os.Stat(res.Reports[k]); err != nil || st.Size() == 0 {
			t.Fatalf("report %s: %v", k, err)
		}
	}
	db := res.StorePath
	out, _, err := runCLI(t, "evidence", "list", res.IncidentID, "--db", db)
	if err != nil || !strings.Contains(out, "alertmanager-webhook.json") || !strings.Contains(out, "vm-snapshot.json") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	archive := filepath.Join(t.TempDir(), "evidence.tar.gz")
	if _, _, err := runCLI(t, "evidence", "export", res.IncidentID, "--db", db, "-o", archive, "--by", "alice"); err != nil {
		t.Fatal(err)
	}
	x := t.TempDir()
	if out, err := exec.CommandContext(t.Context(), "tar", "-xzf", archive, "-C", x).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	check := exec.CommandContext(t.Context(), "sha256sum", "-c", "SHA256SUMS")
	check.Dir = x
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, "audit", "verify", "--file", filepath.Join(x, "audit.jsonl")); err != nil {
		t.Fatalf("exported audit chain: %v", err)
	}
	out, _, err = runCLI(t, "report", res.IncidentID, "--db", db, "--lang", "en", "--format", "md")
	if err != nil || !strings.Contains(out, "gw-osaka") {
		t.Fatalf("report: %v\n%.300s", err, out)
	}
	if _, _, err := runCLI(t, "report", res.IncidentID, "--db", db, "--lang", "fr"); err == nil || !strings.Contains(err.Error(), "fr") {
		t.Fatalf("unknown language: %v", err)
	}
	if out, _, err := runCLI(t, "evidence", "verify", "--db", db); err != nil {
		t.Fatalf("verify intact: %v %s", err, out)
	}
	// Change one byte of one blob behind the ledger's back.
	var blob string
	_ = filepath.WalkDir(filepath.Join(dir, "evidence", "sha256"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && blob == "" {
			blob = p
		}
		return nil
	})
	if blob == "" {
		t.Fatal("no blob found")
	}
	_ = os.Chmod(blob, 0o600)
	b, _ := os.ReadFile(blob)
	b[0] ^= 0xff
	if err := os.WriteFile(blob, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := runCLI(t, "evidence", "verify", "--db", db)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(errOut, "mismatch") {
		t.Fatalf("tamper not reported: %v\n%s", err, errOut)
	}
}

func TestFleetCommandsRefuseVagueTargets(t *testing.T) {
	t.Setenv("WARDEN_SERVER", "http://127.0.0.1:1")
	t.Setenv("WARDEN_API_TOKEN", "t")
	tests := map[string]struct {
		args []string
		want string
	}{
		"patch without gateways":    {[]string{"patch", "--packages", "openssh-server"}, "--gateways is required"},
		"release without a gateway": {[]string{"release"}, "accepts 1 arg"},
		"runbook without gateway":   {[]string{"runbook", "run", "patch-gateway"}, "--gateway is required"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, _, err := runCLI(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}
