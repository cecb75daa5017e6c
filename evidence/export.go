package evidence

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/warden-ir/warden/audit"
)

// Mismatch is one artefact whose blob does not hash to what was recorded.
type Mismatch struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Incident string `json:"incident"`
	Expected string `json:"expected"`
	// Actual is empty when the blob is missing.
	Actual  string `json:"actual,omitempty"`
	Missing bool   `json:"missing,omitempty"`
}

func (m Mismatch) String() string {
	if m.Missing {
		return fmt.Sprintf("evidence %s (%s, incident %s): blob sha256 %s is missing", m.ID, m.Name, m.Incident, m.Expected)
	}
	return fmt.Sprintf("evidence %s (%s, incident %s): expected sha256 %s, blob now hashes to %s", m.ID, m.Name, m.Incident, m.Expected, m.Actual)
}

// MismatchError is returned by Export when artefacts fail their hash check.
type MismatchError struct{ Mismatches []Mismatch }

func (e *MismatchError) Error() string {
	parts := make([]string, len(e.Mismatches))
	for i, m := range e.Mismatches {
		parts[i] = m.String()
	}
	return "evidence tampered or missing: " + strings.Join(parts, "; ")
}

func (e *MismatchError) Unwrap() error { return ErrTampered }

// check re-hashes one record's blob.
func (l *Ledger) check(ctx context.Context, rec Record) (Mismatch, bool, error) {
	got, err := l.blobs.Hash(ctx, rec.SHA256)
	m := Mismatch{ID: rec.ID, Name: rec.Name, Incident: rec.Incident, Expected: rec.SHA256}
	switch {
	case errors.Is(err, os.ErrNotExist):
		m.Missing = true
		return m, false, nil
	case err != nil && !validHex(rec.SHA256):
		m.Actual = "(recorded hash is not a SHA-256 digest)"
		return m, false, nil
	case err != nil:
		return m, false, fmt.Errorf("hashing evidence %s (%s): %w", rec.ID, rec.Name, err)
	case got != rec.SHA256:
		m.Actual = got
		return m, false, nil
	}
	return m, true, nil
}

// Verify re-hashes the blob of every artefact of every incident, records a
// "verified" custody event (and audit entry) for each with its outcome, and
// returns the artefacts whose blob is missing or changed. The actor is
// "controller"; use VerifyAs to name a person.
func (l *Ledger) Verify(ctx context.Context) ([]Mismatch, error) {
	return l.VerifyAs(ctx, "controller")
}

// VerifyAs is Verify on behalf of actor.
func (l *Ledger) VerifyAs(ctx context.Context, actor string) ([]Mismatch, error) {
	recs, err := l.list(ctx, "")
	if err != nil {
		return nil, err
	}
	type outcome struct {
		rec Record
		m   Mismatch
		ok  bool
	}
	outcomes := make([]outcome, 0, len(recs))
	var bad []Mismatch
	for _, rec := range recs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m, ok, err := l.check(ctx, rec)
		if err != nil {
			return nil, err
		}
		outcomes = append(outcomes, outcome{rec, m, ok})
		if !ok {
			bad = append(bad, m)
		}
	}
	err = l.tx(ctx, func(tx *sql.Tx) error {
		now := l.clock()
		for _, o := range outcomes {
			detail, extra := "sha256 matches the stored blob", map[string]any{"ok": true}
			if !o.ok {
				detail, extra = "MISMATCH: "+o.m.String(), map[string]any{"ok": false, "missing": o.m.Missing, "actual_sha256": o.m.Actual}
			}
			if err := l.custody(ctx, tx, o.rec, Custody{At: now, Actor: actor, Action: CustodyVerified, Detail: detail}, extra); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return bad, nil
}

// Manifest describes an export.
type Manifest struct {
	Incident   string      `json:"incident"`
	ExportedAt time.Time   `json:"exported_at"`
	ExportedBy string      `json:"exported_by"`
	Records    []Record    `json:"records"`
	Custody    []Custody   `json:"custody"`
	Audit      AuditStatus `json:"audit"`
	// Files lists the archive's evidence files and audit.jsonl with their
	// hashes. SHA256SUMS covers these and manifest.json itself.
	Files []FileSum `json:"files"`
}

// AuditStatus is the state of the audit chain exported with the evidence.
type AuditStatus struct {
	Entries int64  `json:"entries"`
	Head    string `json:"head"`
	// File is the archive member holding the chain; `warden audit verify
	// --file` checks it offline.
	File string `json:"file"`
}

// FileSum is one line of SHA256SUMS.
type FileSum struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Export writes an incident's evidence as a tar.gz to w:
//
//	evidence/<name>   each artefact (a snapshot's canonical JSON reference)
//	audit.jsonl       the whole audit chain (audit.Export), verifiable offline
//	manifest.json     records and their chain of custody, audit head
//	SHA256SUMS        "<hex>  <path>" lines for all of the above, for sha256sum -c
//
// Every blob is re-hashed first; if any fails, nothing is written and the
// error (a *MismatchError wrapping ErrTampered) names the artefacts. An
// "exported" custody event is recorded for every artefact before the
// archive is assembled, so the audit chain inside the archive includes its
// own export. The archive is byte-for-byte reproducible for the same
// records, chain and clock. An incident without evidence is exported (its
// archive holds the audit chain) only when it is known (KnownIncident);
// otherwise the error wraps ErrUnknownIncident and nothing is written.
func (l *Ledger) Export(ctx context.Context, incident string, w io.Writer, actor string) (Manifest, error) {
	if strings.TrimSpace(incident) == "" {
		return Manifest{}, fmt.Errorf("%w: exporting needs an incident", ErrInvalid)
	}
	if strings.TrimSpace(actor) == "" {
		return Manifest{}, fmt.Errorf("%w: exporting evidence needs an actor for the chain of custody", ErrInvalid)
	}
	recs, err := l.list(ctx, incident)
	if err != nil {
		return Manifest{}, err
	}
	if len(recs) == 0 {
		// Nothing is written for an id nobody knows: an archive of no
		// artefacts and the whole audit chain would pass for an export.
		if err := l.KnownIncident(ctx, incident); err != nil {
			return Manifest{}, fmt.Errorf("exporting evidence: %w", err)
		}
	}
	var bad []Mismatch
	for _, rec := range recs {
		m, ok, err := l.check(ctx, rec)
		if err != nil {
			return Manifest{}, err
		}
		if !ok {
			bad = append(bad, m)
		}
	}
	if len(bad) > 0 {
		return Manifest{}, fmt.Errorf("exporting evidence of %s: %w", incident, &MismatchError{Mismatches: bad})
	}

	now := l.clock()
	if err := l.tx(ctx, func(tx *sql.Tx) error {
		for _, rec := range recs {
			if err := l.custody(ctx, tx, rec, Custody{At: now, Actor: actor, Action: CustodyExported,
				Detail: "exported as evidence/" + rec.Name + " in a tar.gz archive with SHA256SUMS"}, nil); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return Manifest{}, err
	}

	man := Manifest{Incident: incident, ExportedAt: now, ExportedBy: actor, Records: recs}
	if man.Records == nil {
		man.Records = []Record{}
	}
	man.Custody, err = custodyOf(ctx, l.db, `JOIN evidence ON evidence.id = custody.evidence_id WHERE evidence.incident = ?`, incident)
	if err != nil {
		return Manifest{}, err
	}
	if man.Custody == nil {
		man.Custody = []Custody{}
	}
	var auditBuf bytes.Buffer
	if err := audit.Export(ctx, l.db, &auditBuf); err != nil {
		return Manifest{}, fmt.Errorf("exporting audit chain: %w", err)
	}
	rep, err := audit.VerifyJSONLines(bytes.NewReader(auditBuf.Bytes()))
	if err != nil {
		return Manifest{}, fmt.Errorf("checking the audit chain before export: %w", err)
	}
	man.Audit = AuditStatus{Entries: rep.Entries, Head: rep.Head, File: "audit.jsonl"}

	type member struct {
		path string
		data []byte
		mod  time.Time
		mode int64
	}
	var members []member
	seen := map[string]bool{}
	for _, rec := range recs {
		f, err := l.blobs.Open(ctx, rec.SHA256)
		if err != nil {
			return Manifest{}, fmt.Errorf("opening evidence %s (%s): %w", rec.ID, rec.Name, err)
		}
		data, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return Manifest{}, fmt.Errorf("reading evidence %s (%s): %w", rec.ID, rec.Name, err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != rec.SHA256 {
			return Manifest{}, fmt.Errorf("exporting evidence of %s: %w", incident, &MismatchError{Mismatches: []Mismatch{{
				ID: rec.ID, Name: rec.Name, Incident: rec.Incident, Expected: rec.SHA256, Actual: hex.EncodeToString(sum[:])}}})
		}
		name := SanitizeName(rec.Name) // names are stored sanitised; an edited row must not escape either
		if seen[name] {
			name = SanitizeName(rec.ID + "-" + name)
		}
		seen[name] = true
		members = append(members, member{path: "evidence/" + name, data: data, mod: rec.CollectedAt, mode: 0o444})
	}
	members = append(members, member{path: "audit.jsonl", data: auditBuf.Bytes(), mod: now, mode: 0o444})
	for _, m := range members {
		sum := sha256.Sum256(m.data)
		man.Files = append(man.Files, FileSum{Path: m.path, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(m.data))})
	}
	manJSON, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return Manifest{}, fmt.Errorf("encoding manifest: %w", err)
	}
	manJSON = append(manJSON, '\n')
	members = append(members, member{path: "manifest.json", data: manJSON, mod: now, mode: 0o444})
	manSum := sha256.Sum256(manJSON)
	sums := append([]FileSum(nil), man.Files...)
	sums = append(sums, FileSum{Path: "manifest.json", SHA256: hex.EncodeToString(manSum[:]), Size: int64(len(manJSON))})
	sort.SliceStable(sums, func(i, j int) bool { return sums[i].Path < sums[j].Path })
	var sumsFile bytes.Buffer
	for _, s := range sums {
		fmt.Fprintf(&sumsFile, "%s  %s\n", s.SHA256, s.Path)
	}
	members = append(members, member{path: "SHA256SUMS", data: sumsFile.Bytes(), mod: now, mode: 0o444})

	gz := gzip.NewWriter(w) // zero ModTime and no name: reproducible
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "evidence/", Mode: 0o755, ModTime: now.Truncate(time.Second)}); err != nil {
		return Manifest{}, fmt.Errorf("writing archive: %w", err)
	}
	for _, m := range members {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: m.path, Mode: m.mode, Size: int64(len(m.data)), ModTime: m.mod.Truncate(time.Second)}); err != nil {
			return Manifest{}, fmt.Errorf("writing archive header for %s: %w", m.path, err)
		}
		if _, err := tw.Write(m.data); err != nil {
			return Manifest{}, fmt.Errorf("writing %s to the archive: %w", m.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("finishing archive: %w", err)
	}
	if err := gz.Close(); err != nil {
		return Manifest{}, fmt.Errorf("finishing archive compression: %w", err)
	}
	return man, nil
}
