package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/store"
)

// exportedArchive is an export of evidenceStore's incident with evidence.
func exportedArchive(t *testing.T) []byte {
	t.Helper()
	db, _ := evidenceStore(t)
	st, err := store.Open(t.Context(), db, "full")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, err := evidence.Open(t.Context(), st.DB(), filepath.Join(filepath.Dir(db), "evidence"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := l.Export(t.Context(), "inc-with-evidence", &b, "user:test"); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rewrite unpacks an archive, passes every regular file through edit
// (which drops it by returning false), appends extra, and packs it again:
// a well-formed archive whose content someone changed.
func rewrite(t *testing.T, archive []byte, edit func(name string, data []byte) ([]byte, bool), extra map[string]string) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	put := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o444, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if data, keep := edit(h.Name, data); keep {
			put(h.Name, data)
		}
	}
	for name, data := range extra {
		put(name, []byte(data))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// checkArchive accepts an export as the ledger wrote it and refuses one
// that lost its end or whose content no longer matches SHA256SUMS.
func TestCheckArchive(t *testing.T) {
	hermetic(t)
	good := exportedArchive(t)
	same := func(_ string, data []byte) ([]byte, bool) { return data, true }
	tests := map[string]struct {
		archive []byte
		wantErr string // "" = accepted
	}{
		"as exported":     {archive: good},
		"repacked intact": {archive: rewrite(t, good, same, nil)},
		"cut in the gzip trailer": {archive: good[:len(good)-4],
			wantErr: "incomplete or damaged"},
		"cut in half":    {archive: good[:len(good)/2], wantErr: "incomplete or damaged"},
		"only a header":  {archive: good[:10], wantErr: "archive"},
		"not an archive": {archive: []byte("<html>proxy error</html>"), wantErr: "reading the archive"},
		"artefact changed": {archive: rewrite(t, good, func(name string, data []byte) ([]byte, bool) {
			if strings.HasPrefix(name, "evidence/") {
				return []byte("2 init\n"), true
			}
			return data, true
		}, nil), wantErr: "evidence/ps.txt does not match"},
		"artefact removed": {archive: rewrite(t, good, func(name string, data []byte) ([]byte, bool) {
			return data, !strings.HasPrefix(name, "evidence/")
		}, nil), wantErr: "evidence/ps.txt is listed in SHA256SUMS but missing"},
		"file added": {archive: rewrite(t, good, same, map[string]string{"evidence/extra.txt": "x"}),
			wantErr: "evidence/extra.txt in the archive is not listed"},
		"no SHA256SUMS": {archive: rewrite(t, good, func(name string, data []byte) ([]byte, bool) {
			return data, name != "SHA256SUMS"
		}, nil), wantErr: "lacks SHA256SUMS"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m, err := checkArchive(bytes.NewReader(tc.archive))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(m.Records) != 1 || m.ExportedBy != "user:test" {
					t.Errorf("manifest: %d records, exported by %q", len(m.Records), m.ExportedBy)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
