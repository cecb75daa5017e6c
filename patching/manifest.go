package patching

import (
	"bufio"
	"crypto/md5" // dpkg records MD5 in .md5sums and Conffiles
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/baseline"
)

// ManifestUpdate is what a verified patch may change in an integrity
// manifest. It is a plain value: PlanManifestUpdate decides it from the
// root, Apply writes it into a manifest.
type ManifestUpdate struct {
	// Packages are the upgraded package instances considered, "name:arch"
	// to the version installed.
	Packages map[string]string `json:"packages"`
	// Rerecord are the entries to replace, sorted by path. Their At is
	// zero: the agent sets it when it re-records them.
	Rerecord []wire.ManifestChange `json:"rerecord,omitempty"`
	// Refused are the other differences, sorted by path.
	Refused []wire.ManifestRefusal `json:"refused,omitempty"`
}

// PlanManifestUpdate decides which entries of the recorded manifest m a
// patch that upgraded the named packages accounts for. It reads the dpkg
// database and the files under root and changes nothing.
//
// A file is re-recorded when, and only when, all of these hold:
//   - one of the upgraded packages owns it: its path (or, on a merged-/usr
//     system, the same file under its /bin ↔ /usr/bin alias) is in the
//     package's file list, info/<pkg>.list;
//   - it is recorded in m, or it appeared under one of m's patterns;
//   - its content now hashes to the MD5 dpkg recorded when it unpacked the
//     installed version (info/<pkg>.md5sums, or the status database's
//     Conffiles for a configuration file), i.e. it is what the package
//     shipped and not something written after;
//   - its mode is the one recorded (dpkg records no modes, so a patch
//     cannot vouch for a new setuid bit).
//
// Every other recorded file that differs from m is listed as refused with
// the reason, and stays an integrity violation: files no upgraded package
// owns, owned files whose content is not what the package shipped, owned
// files that are missing.
//
// Why ownership plus dpkg's checksums rather than a before/after
// comparison: a comparison says what changed during the patch, not who
// changed it — a file tampered with while apt ran would pass. dpkg's
// record says which content the upgrade installed. The plan depends only
// on the state of the root, so it is idempotent: once applied, planning
// again re-records nothing.
func PlanManifestUpdate(root string, m baseline.Manifest, upgraded []string) (ManifestUpdate, error) {
	root, db, err := readDpkgUnder(root)
	if err != nil {
		return ManifestUpdate{}, err
	}
	upd := ManifestUpdate{Packages: map[string]string{}}
	var insts []pkgInstance
	for _, name := range upgraded {
		// Names become file names under info/: only Debian package names.
		if !packageName.MatchString(name) {
			return ManifestUpdate{}, invalid("package name %q is not a Debian package name", name)
		}
		for _, p := range db.instances(name) {
			if _, seen := upd.Packages[p.id()]; !seen {
				upd.Packages[p.id()] = p.Version
				insts = append(insts, p)
			}
		}
	}
	owners := map[string][]ownedFile{}
	for _, p := range insts {
		owned, err := readOwnedFiles(root, p)
		if err != nil {
			return ManifestUpdate{}, err
		}
		for _, f := range owned {
			if target, ok := manifestPathOf(root, m, f.path); ok {
				owners[target] = append(owners[target], f)
			}
		}
	}
	candidates := make([]string, 0, len(m.Files)+len(owners))
	for p := range m.Files {
		candidates = append(candidates, p)
	}
	for p := range owners {
		if _, recorded := m.Files[p]; !recorded {
			candidates = append(candidates, p)
		}
	}
	sort.Strings(candidates)
	for _, p := range candidates {
		ch, ref, err := decideFile(root, p, m, owners[p])
		switch {
		case err != nil:
			return ManifestUpdate{}, err
		case ch != nil:
			upd.Rerecord = append(upd.Rerecord, *ch)
		case ref != nil:
			upd.Refused = append(upd.Refused, *ref)
		}
	}
	return upd, nil
}

// decideFile re-records p, refuses it, or (both nil) leaves it: it is as
// recorded.
func decideFile(root, p string, m baseline.Manifest, owners []ownedFile) (*wire.ManifestChange, *wire.ManifestRefusal, error) {
	old, recorded := m.Files[p]
	now, present, readErr := currentFile(root, p)
	switch {
	case recorded && present && old.SHA256 == now.sha256 && old.Mode == now.mode:
		return nil, nil, nil // as recorded (even if the MD5 read failed: it is not needed)
	case readErr == nil && !recorded && !present:
		return nil, nil, nil
	}
	ref := &wire.ManifestRefusal{Path: p, OldSHA256: old.SHA256, NewSHA256: now.sha256}
	if len(owners) > 0 {
		ref.Package = owners[0].pkg.id()
	}
	switch {
	case readErr != nil:
		ref.NewSHA256 = ""
		ref.Reason = "unreadable: " + readErr.Error()
		return nil, ref, nil
	case len(owners) == 0:
		ref.Reason = "no package this patch upgraded owns it"
		if !present {
			ref.Reason = "missing, and no package this patch upgraded owns it"
		}
		return nil, ref, nil
	case !present:
		ref.Reason = "missing although " + ref.Package + " lists it"
		return nil, ref, nil
	}
	var match *ownedFile
	for i, o := range owners {
		if o.md5 != "" && o.md5 == now.md5 {
			match = &owners[i]
			break
		}
	}
	switch {
	case match == nil && owners[0].md5 == "":
		ref.Reason = "dpkg keeps no checksum for it, so the patch cannot vouch for its content"
		return nil, ref, nil
	case match == nil:
		ref.Reason = fmt.Sprintf("content is not what %s %s installed (dpkg recorded MD5 %s, the file has %s)",
			owners[0].pkg.id(), owners[0].pkg.Version, owners[0].md5, now.md5)
		return nil, ref, nil
	case recorded && old.Mode != now.mode:
		ref.Package = match.pkg.id()
		ref.Reason = fmt.Sprintf("mode changed %s → %s; dpkg records no modes, so the patch cannot vouch for it", old.Mode, now.mode)
		return nil, ref, nil
	}
	return &wire.ManifestChange{Path: p, Package: match.pkg.id(), Version: match.pkg.Version,
		OldSHA256: old.SHA256, NewSHA256: now.sha256, Mode: now.mode}, nil, nil
}

// Apply returns a copy of m with the re-recorded entries replaced. The
// patterns and the time m was recorded are kept.
func (u ManifestUpdate) Apply(m baseline.Manifest) baseline.Manifest {
	out := m
	out.Files = make(map[string]baseline.FileRecord, len(m.Files)+len(u.Rerecord))
	for p, r := range m.Files {
		out.Files[p] = r
	}
	for _, c := range u.Rerecord {
		out.Files[c.Path] = baseline.FileRecord{SHA256: c.NewSHA256, Mode: c.Mode}
	}
	return out
}

// ownedFile is one path a package instance installed, with the MD5 dpkg
// recorded for it ("" for directories, symlinks and anything else dpkg
// keeps no checksum of).
type ownedFile struct {
	pkg  pkgInstance
	path string
	md5  string
}

// readOwnedFiles reads a package's file list and checksums from dpkg's
// info directory: <name>:<arch>.* for Multi-Arch: same packages, <name>.*
// for the others. A package without a list owns nothing.
func readOwnedFiles(root string, p pkgInstance) ([]ownedFile, error) {
	info := filepath.Join(root, dpkgAdminDir, "info")
	var list []byte
	var base string
	for _, b := range []string{p.id(), p.Name} {
		data, err := os.ReadFile(filepath.Join(info, b+".list"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading the file list of %s: %w", p.id(), err)
		}
		list, base = data, b
		break
	}
	if base == "" {
		return nil, nil
	}
	sums := map[string]string{}
	f, err := os.Open(filepath.Join(info, base+".md5sums"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading the checksums of %s: %w", p.id(), err)
	default:
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			// "<md5>  <path without the leading slash>"
			sum, rel, ok := strings.Cut(sc.Text(), "  ")
			if ok && len(sum) == 32 {
				sums[path.Clean("/"+rel)] = sum
			}
		}
		err := sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading the checksums of %s: %w", p.id(), err)
		}
	}
	var out []ownedFile
	for line := range strings.Lines(string(list)) {
		fp := strings.TrimRight(line, "\r\n")
		if fp == "" || fp == "/." {
			continue
		}
		sum := sums[fp]
		if c, ok := p.Conffiles[fp]; ok {
			sum = c
		}
		out = append(out, ownedFile{pkg: p, path: fp, md5: sum})
	}
	return out, nil
}

// mergedDirs are the directories a merged-/usr system links into /usr:
// a package may list /bin/su while the manifest records /usr/bin/su.
var mergedDirs = []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// manifestPathOf returns the path under which m records (or would record,
// under one of its patterns) the file a package lists as owned. An alias
// across the merged /usr counts only when both names are the same file
// under root.
func manifestPathOf(root string, m baseline.Manifest, owned string) (string, bool) {
	if m.Covers(owned) {
		return owned, true
	}
	for _, d := range mergedDirs {
		var alias string
		if rest, ok := strings.CutPrefix(owned, d+"/"); ok {
			alias = "/usr" + d + "/" + rest
		} else if rest, ok := strings.CutPrefix(owned, "/usr"+d+"/"); ok {
			alias = d + "/" + rest
		} else {
			continue
		}
		if m.Covers(alias) && sameFile(root, owned, alias) {
			return alias, true
		}
	}
	return "", false
}

func sameFile(root, a, b string) bool {
	sa, err := os.Stat(filepath.Join(root, a))
	if err != nil {
		return false
	}
	sb, err := os.Stat(filepath.Join(root, b))
	return err == nil && os.SameFile(sa, sb)
}

// fileNow is a file's content digests and mode as the integrity check
// sees it.
type fileNow struct {
	sha256, md5, mode string
}

// currentFile hashes the gateway path p under root. The digest and mode
// come from baseline.Record, exactly as the integrity check will compute
// them; the MD5 comes from a second read confined to root, and is only
// returned when that read saw the same bytes (same SHA-256).
func currentFile(root, p string) (fileNow, bool, error) {
	rec, err := baseline.Record(root, []string{p})
	if err != nil {
		return fileNow{}, false, err
	}
	r, ok := rec.Files[p]
	if !ok {
		return fileNow{}, false, nil
	}
	now := fileNow{sha256: r.SHA256, mode: r.Mode}
	rt, err := os.OpenRoot(root)
	if err != nil {
		return now, true, fmt.Errorf("opening root %s: %w", root, err)
	}
	defer rt.Close()
	f, err := rt.Open(strings.TrimPrefix(p, "/"))
	if err != nil {
		return now, true, fmt.Errorf("reading %s: %w", p, err)
	}
	defer f.Close()
	h5, h256 := md5.New(), sha256.New()
	if _, err := io.Copy(io.MultiWriter(h5, h256), f); err != nil {
		return now, true, fmt.Errorf("reading %s: %w", p, err)
	}
	if got := hex.EncodeToString(h256.Sum(nil)); got != now.sha256 {
		return now, true, fmt.Errorf("reading %s: it changed while being read (SHA-256 %s, then %s)", p, now.sha256, got)
	}
	now.md5 = hex.EncodeToString(h5.Sum(nil))
	return now, true, nil
}
