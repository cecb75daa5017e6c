package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/demo"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/store"
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
	if _, _, err := runCLI(t, "evidence", "export", res.IncidentID, "--db", db, "-o", archive); err != nil {
		t.Fatal(err)
	}
	x := unpackChecked(t, archive)
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

// evidenceStore makes a store with two incidents — inc-with-evidence
// holding one artefact, inc-without-evidence holding none — and returns
// the store's path and the artefact's id.
func evidenceStore(t *testing.T) (db, artefact string) {
	t.Helper()
	dir := t.TempDir()
	db = filepath.Join(dir, "warden.db")
	st, err := store.Open(t.Context(), db, "full")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC()
	if err := st.Tx(t.Context(), func(tx store.Tx) error {
		for _, id := range []string{"inc-with-evidence", "inc-without-evidence"} {
			if err := tx.UpsertIncident(t.Context(), store.Incident{ID: id, Gateway: "gw-osaka", OpenedAt: now, UpdatedAt: now, Status: "open"}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	l, err := evidence.Open(t.Context(), st.DB(), filepath.Join(dir, "evidence"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := l.Add(t.Context(), evidence.Item{Incident: "inc-with-evidence", Gateway: "gw-osaka", Name: "ps.txt", Kind: evidence.KindVolatile,
		CollectedBy: "agent:gw-osaka", Content: []byte("1 init\n")})
	if err != nil {
		t.Fatal(err)
	}
	return db, rec.ID
}

// TestEvidenceCommandsRefuseUnknownIDs runs every evidence subcommand with
// ids that exist and ids that do not: an unknown id fails (non-zero exit,
// the error naming the id) and leaves no archive behind; a known incident
// without evidence is not an error.
func TestEvidenceCommandsRefuseUnknownIDs(t *testing.T) {
	hermetic(t)
	db, artefact := evidenceStore(t)
	tests := map[string]struct {
		args    []string
		archive bool   // the command is an export to -o
		wantErr string // "" = succeeds
		wantOut string
	}{
		"list known":                    {args: []string{"list", "inc-with-evidence"}, wantOut: "ps.txt"},
		"list known without evidence":   {args: []string{"list", "inc-without-evidence"}, wantOut: "SHA256"},
		"list unknown":                  {args: []string{"list", "inc-nobody-knows"}, wantErr: `"inc-nobody-knows": unknown incident`},
		"list blank":                    {args: []string{"list", " "}, wantErr: "incident id is empty"},
		"show known":                    {args: []string{"show", artefact}, wantOut: `"custody"`},
		"show unknown":                  {args: []string{"show", "evd-nobody-knows"}, wantErr: `"evd-nobody-knows": evidence not found`},
		"cat known":                     {args: []string{"cat", artefact}, wantOut: "1 init"},
		"cat unknown":                   {args: []string{"cat", "evd-nobody-knows"}, wantErr: `"evd-nobody-knows": evidence not found`},
		"export known":                  {args: []string{"export", "inc-with-evidence"}, archive: true, wantOut: "1 artefacts"},
		"export known without evidence": {args: []string{"export", "inc-without-evidence"}, archive: true, wantOut: "0 artefacts"},
		"export unknown":                {args: []string{"export", "inc-nobody-knows"}, archive: true, wantErr: `"inc-nobody-knows": unknown incident`},
		"export blank":                  {args: []string{"export", ""}, archive: true, wantErr: "incident id is empty"},
		"verify":                        {args: []string{"verify"}, wantOut: "matches"},
		"verify takes no incident":      {args: []string{"verify", "inc-nobody-knows"}, wantErr: "inc-nobody-knows"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"evidence"}, tc.args...)
			args = append(args, "--db", db)
			archive := filepath.Join(t.TempDir(), "out.tar.gz")
			if tc.archive {
				args = append(args, "-o", archive)
			}
			out, _, err := runCLI(t, args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q (stdout %q)", err, tc.wantErr, out)
				}
				if tc.archive {
					left, _ := filepath.Glob(filepath.Join(filepath.Dir(archive), "*"))
					if len(left) > 0 {
						t.Errorf("a failed export left %v behind", left)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("stdout %q does not contain %q", out, tc.wantOut)
			}
			if tc.archive {
				if st, err := os.Stat(archive); err != nil || st.Size() == 0 {
					t.Errorf("archive: %v", err)
				}
			}
		})
	}
}

// unpackChecked unpacks an evidence archive with tar and checks it with
// sha256sum -c, as a person receiving it would; it returns the directory.
func unpackChecked(t *testing.T, archive string) string {
	t.Helper()
	x := t.TempDir()
	if out, err := exec.CommandContext(t.Context(), "tar", "-xzf", archive, "-C", x).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	check := exec.CommandContext(t.Context(), "sha256sum", "-c", "SHA256SUMS")
	check.Dir = x
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c on %s: %v\n%s", archive, err, out)
	}
	return x
}
