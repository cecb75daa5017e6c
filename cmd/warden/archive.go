package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/warden-ir/warden/evidence"
)

// maxArchiveMeta bounds manifest.json and SHA256SUMS as read into memory;
// the artefacts themselves are hashed as they stream.
const maxArchiveMeta = 16 << 20

// checkArchive checks an evidence archive as `sha256sum -c SHA256SUMS`
// would after unpacking it, and that the archive is whole: the gzip
// stream ends with its checksum, every regular file is listed in
// SHA256SUMS with the hash of its bytes, and every listed file is there.
// It returns the archive's manifest.
func checkArchive(archive io.Reader) (evidence.Manifest, error) {
	zr, err := gzip.NewReader(archive)
	if err != nil {
		return evidence.Manifest{}, fmt.Errorf("reading the archive: %w", err)
	}
	tr := tar.NewReader(zr)
	got := map[string]string{} // path → SHA-256 of its bytes
	var sums, manifest []byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return evidence.Manifest{}, fmt.Errorf("the archive is incomplete or damaged: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		hash := sha256.New()
		var keep bytes.Buffer
		w := io.Writer(hash)
		if h.Name == "SHA256SUMS" || h.Name == "manifest.json" {
			w = io.MultiWriter(hash, &keep)
			if h.Size > maxArchiveMeta {
				return evidence.Manifest{}, fmt.Errorf("%s in the archive is %d bytes, more than %d", h.Name, h.Size, maxArchiveMeta)
			}
		}
		if _, err := io.Copy(w, tr); err != nil {
			return evidence.Manifest{}, fmt.Errorf("the archive is incomplete or damaged at %s: %w", h.Name, err)
		}
		if _, dup := got[h.Name]; dup {
			return evidence.Manifest{}, fmt.Errorf("the archive holds %s twice", h.Name)
		}
		got[h.Name] = hex.EncodeToString(hash.Sum(nil))
		switch h.Name {
		case "SHA256SUMS":
			sums = keep.Bytes()
		case "manifest.json":
			manifest = keep.Bytes()
		}
	}
	// The tar ends before the gzip stream does: read on to its checksum.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return evidence.Manifest{}, fmt.Errorf("the archive is incomplete or damaged: %w", err)
	}
	if sums == nil || manifest == nil {
		return evidence.Manifest{}, errors.New("the archive lacks SHA256SUMS or manifest.json")
	}
	listed := map[string]bool{"SHA256SUMS": true}
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		sum, path, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			return evidence.Manifest{}, fmt.Errorf("SHA256SUMS has a line that is not \"HASH  PATH\": %q", sc.Text())
		}
		switch have, found := got[path]; {
		case !found:
			return evidence.Manifest{}, fmt.Errorf("%s is listed in SHA256SUMS but missing from the archive", path)
		case have != sum:
			return evidence.Manifest{}, fmt.Errorf("%s does not match its SHA-256 in SHA256SUMS", path)
		}
		listed[path] = true
	}
	for path := range got {
		if !listed[path] {
			return evidence.Manifest{}, fmt.Errorf("%s in the archive is not listed in SHA256SUMS", path)
		}
	}
	var m evidence.Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return evidence.Manifest{}, fmt.Errorf("reading manifest.json: %w", err)
	}
	return m, nil
}
