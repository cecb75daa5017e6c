package evidence

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/store"
)

type archiveMember struct {
	name string
	mode int64
	data []byte
	dir  bool
}

func readArchive(t *testing.T, b []byte) []archiveMember {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out []archiveMember
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, archiveMember{name: h.Name, mode: h.Mode, data: data, dir: h.Typeflag == tar.TypeDir})
	}
}

// extract writes the archive under dir, refusing any member that would land
// outside it.
func extract(t *testing.T, b []byte, dir string) {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, m := range readArchive(t, b) {
		if m.dir {
			if err := root.MkdirAll(strings.TrimSuffix(m.name, "/"), 0o755); err != nil {
				t.Fatalf("member %q: %v", m.name, err)
			}
			continue
		}
		if err := root.WriteFile(m.name, m.data, 0o644); err != nil {
			t.Fatalf("member %q: %v", m.name, err)
		}
	}
}

func sha256sumCheck(t *testing.T, dir string) (int, string) {
	t.Helper()
	bin, err := exec.LookPath("sha256sum")
	if err != nil {
		t.Skip("sha256sum (coreutils) is not installed")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-c", "SHA256SUMS")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("running sha256sum: %v", err)
	return -1, ""
}

func TestExportRoundTripWithSha256sum(t *testing.T) {
	l, _ := newLedger(t)
	ctx := t.Context()
	adds := []Item{
		item("connections.txt", "tcp 10.20.0.1:40112 203.0.113.66:443 ESTABLISHED\n"),
		item("揮発性情報 プロセス.txt", "1 init\n812 /tmp/.x/beacon\n"),
		{Incident: "inc-1", Gateway: "gw-osaka", Name: "snapshot warden-inc-1.json", Kind: KindSnapshot, Source: "vsphere",
			CollectedBy: "controller", CollectedFrom: "vcenter:/DC0/vm/gw-osaka",
			Reference: map[string]any{"vm": "gw-osaka", "snapshot": "warden-inc-1", "memory": true}},
		{Incident: "inc-1", Gateway: "gw-osaka", Name: "alert.json", Kind: KindLog, MediaType: "application/json", Source: "alertmanager",
			CollectedBy: "api:alertmanager", Content: []byte(`{"alertname":"C2Beacon"}`)},
		item("other-incident.txt", "not exported"),
	}
	adds[4].Incident = "inc-2"
	for _, it := range adds {
		if _, err := l.Add(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	man, err := l.Export(ctx, "inc-1", &buf, "cli:alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(man.Records) != 4 || man.ExportedBy != "cli:alice" || man.Audit.Entries == 0 {
		t.Fatalf("manifest %+v", man)
	}

	members := readArchive(t, buf.Bytes())
	names := map[string]archiveMember{}
	for _, m := range members {
		names[m.name] = m
	}
	for _, want := range []string{"evidence/", "evidence/connections.txt", "evidence/揮発性情報_プロセス.txt", "evidence/snapshot_warden-inc-1.json",
		"evidence/alert.json", "SHA256SUMS", "manifest.json", "audit.jsonl"} {
		if _, ok := names[want]; !ok {
			t.Errorf("archive lacks %s (has %v)", want, keys(names))
		}
	}
	if _, ok := names["evidence/other-incident.txt"]; ok {
		t.Error("archive holds another incident's evidence")
	}
	for _, line := range strings.Split(strings.TrimSpace(string(names["SHA256SUMS"].data)), "\n") {
		hexSum, path, ok := strings.Cut(line, "  ")
		if !ok || !validHex(hexSum) || path == "" {
			t.Errorf("SHA256SUMS line %q is not in sha256sum format", line)
		}
	}

	// The audit chain inside the archive verifies offline and records the export.
	rep, err := audit.VerifyJSONLines(bytes.NewReader(names["audit.jsonl"].data))
	if err != nil || rep.Head != man.Audit.Head {
		t.Fatalf("exported audit chain: %+v %v (manifest head %s)", rep, err, man.Audit.Head)
	}
	if !strings.Contains(string(names["audit.jsonl"].data), `"action":"evidence.exported"`) {
		t.Error("exported audit chain lacks the export itself")
	}
	var got Manifest
	if err := json.Unmarshal(names["manifest.json"].data, &got); err != nil {
		t.Fatal(err)
	}
	exported := 0
	for _, c := range got.Custody {
		if c.Action == CustodyExported && c.Actor == "cli:alice" {
			exported++
		}
	}
	if exported != 4 || len(got.Records) != 4 {
		t.Errorf("manifest: %d records, %d export custody events", len(got.Records), exported)
	}

	dir := t.TempDir()
	extract(t, buf.Bytes(), dir)
	if code, out := sha256sumCheck(t, dir); code != 0 {
		t.Fatalf("sha256sum -c exited %d:\n%s", code, out)
	}
	flipByte(t, filepath.Join(dir, "evidence", "connections.txt"), 5)
	code, out := sha256sumCheck(t, dir)
	if code == 0 {
		t.Fatalf("sha256sum -c accepted a changed file:\n%s", out)
	}
	if !strings.Contains(out, "evidence/connections.txt: FAILED") {
		t.Errorf("sha256sum did not name the changed file:\n%s", out)
	}
}

func TestExportNeedsIncidentAndActor(t *testing.T) {
	l, _ := newLedger(t)
	if _, err := l.Export(t.Context(), "", io.Discard, "cli:alice"); !errors.Is(err, ErrInvalid) {
		t.Errorf("no incident: %v", err)
	}
	if _, err := l.Export(t.Context(), "inc-1", io.Discard, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("no actor: %v", err)
	}
}

func keys(m map[string]archiveMember) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// incidentSet is the Incidents the store would answer with.
type incidentSet map[string]bool

func (s incidentSet) IncidentExists(_ context.Context, id string) (bool, error) { return s[id], nil }

// TestUnknownIncidentIsAnError asks for evidence of incidents with and
// without evidence, known to the store and not: an id nobody knows is an
// error (and Export writes nothing), a known incident without evidence is
// an empty list and an archive of the audit chain. A ledger not told about
// incidents cannot tell unknown from empty in List, and lists nothing.
func TestUnknownIncidentIsAnError(t *testing.T) {
	tests := map[string]struct {
		incidents  Incidents // nil: the ledger is not told about incidents
		incident   string
		wantList   int
		wantListEr error
		wantExport error
	}{
		"with evidence":                   {incidents: incidentSet{}, incident: "inc-1", wantList: 1},
		"with evidence, not told":         {incident: "inc-1", wantList: 1},
		"known without evidence":          {incidents: incidentSet{"inc-2": true}, incident: "inc-2"},
		"unknown":                         {incidents: incidentSet{"inc-2": true}, incident: "inc-typo", wantListEr: ErrUnknownIncident, wantExport: ErrUnknownIncident},
		"unknown, not told":               {incident: "inc-typo", wantExport: ErrUnknownIncident},
		"blank":                           {incidents: incidentSet{}, incident: " ", wantExport: ErrInvalid},
		"evidence filed under a run's id": {incidents: incidentSet{}, incident: "run-7", wantList: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "w.db"), "normal")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			var opts []Option
			if tc.incidents != nil {
				opts = append(opts, WithIncidents(tc.incidents))
			}
			l, err := Open(t.Context(), st.DB(), filepath.Join(t.TempDir(), "evidence"), opts...)
			if err != nil {
				t.Fatal(err)
			}
			for _, inc := range []string{"inc-1", "run-7"} {
				it := item("a.txt", "a")
				it.Incident = inc
				if _, err := l.Add(t.Context(), it); err != nil {
					t.Fatal(err)
				}
			}
			if strings.TrimSpace(tc.incident) != "" {
				recs, err := l.List(t.Context(), tc.incident)
				if !errors.Is(err, tc.wantListEr) || len(recs) != tc.wantList {
					t.Errorf("List = %d records, %v; want %d, %v", len(recs), err, tc.wantList, tc.wantListEr)
				}
				if err != nil && !strings.Contains(err.Error(), tc.incident) {
					t.Errorf("List error %q does not name %q", err, tc.incident)
				}
			}
			var buf bytes.Buffer
			_, err = l.Export(t.Context(), tc.incident, &buf, "cli:alice")
			if !errors.Is(err, tc.wantExport) {
				t.Fatalf("Export error %v, want %v", err, tc.wantExport)
			}
			if tc.wantExport != nil && buf.Len() > 0 {
				t.Errorf("Export wrote %d bytes for %q", buf.Len(), tc.incident)
			}
			if tc.wantExport == nil && buf.Len() == 0 {
				t.Error("Export wrote nothing")
			}
		})
	}
}
