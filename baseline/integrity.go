package baseline

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FileRecord is what the manifest remembers of one file.
type FileRecord struct {
	// SHA256 is the lowercase hex digest of the content.
	SHA256 string `json:"sha256"`
	// Mode is the permission bits in octal, with setuid, setgid and sticky
	// ("0755", "4755").
	Mode string `json:"mode"`
}

// Manifest is the known-good state integrity checks compare against,
// recorded by Record when the gateway is trusted (after provisioning, after
// a rebuild, after an approved change).
type Manifest struct {
	Recorded time.Time `json:"recorded"`
	// Patterns are the paths and globs that were recorded: a path matched
	// by one of them but absent from Files did not exist then.
	Patterns []string `json:"patterns"`
	// Files maps a gateway path to its record.
	Files map[string]FileRecord `json:"files"`
}

// Record hashes every regular file matching paths (absolute gateway paths
// or globs) under root. Paths that match nothing are still listed in
// Patterns, so that a file appearing there later is noticed. It changes
// nothing.
func Record(root string, paths []string) (Manifest, error) {
	if root == "" {
		root = "/"
	}
	m := Manifest{Recorded: time.Now().UTC(), Files: map[string]FileRecord{}}
	buf := make([]byte, hashBufferSize)
	for _, p := range paths {
		if !path.IsAbs(p) {
			return Manifest{}, fmt.Errorf("recording %q: not an absolute path", p)
		}
		if !slices.Contains(m.Patterns, p) {
			m.Patterns = append(m.Patterns, p)
		}
		for _, f := range globUnder(root, p) {
			rec, ok, err := recordFile(root, f, buf)
			if err != nil {
				return Manifest{}, err
			}
			if ok {
				m.Files[f] = rec
			}
		}
	}
	return m, nil
}

const hashBufferSize = 64 << 10

func (ev *evaluation) hashBuffer() []byte {
	if ev.buf == nil {
		ev.buf = make([]byte, hashBufferSize)
	}
	return ev.buf
}

// recordFile hashes a regular file (following symlinks); ok is false for
// anything else.
func recordFile(root, p string, buf []byte) (FileRecord, bool, error) {
	f, err := openIn(root, p)
	if errors.Is(err, fs.ErrNotExist) {
		return FileRecord{}, false, nil
	}
	if err != nil {
		return FileRecord{}, false, fmt.Errorf("hashing %s: %w", p, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return FileRecord{}, false, fmt.Errorf("hashing %s: %w", p, err)
	}
	if !st.Mode().IsRegular() {
		return FileRecord{}, false, nil
	}
	h := sha256.New()
	// Hiding the file's WriterTo makes io.CopyBuffer use buf instead of
	// allocating a buffer per file.
	if _, err := io.CopyBuffer(h, struct{ io.Reader }{f}, buf); err != nil {
		return FileRecord{}, false, fmt.Errorf("hashing %s: %w", p, err)
	}
	return FileRecord{SHA256: hex.EncodeToString(h.Sum(nil)), Mode: octalMode(st.Mode())}, true, nil
}

func octalMode(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return fmt.Sprintf("%04o", v)
}

// IntegrityPaths lists what Record must cover for this baseline's integrity
// checks: the files patterns, and the authorized_keys files of the listed
// users (resolved through /etc/passwd and sshd's AuthorizedKeysFile under
// root).
func (b *Baseline) IntegrityPaths(root string) ([]string, error) {
	if root == "" {
		root = "/"
	}
	var out []string
	ev := &evaluation{env: Env{Root: root}}
	for _, c := range b.Checks {
		if c.Type != TypeIntegrity {
			continue
		}
		out = append(out, c.Files...)
		if len(c.AuthorizedKeys) > 0 {
			paths, _, err := ev.authorizedKeysPaths(c.AuthorizedKeys)
			if err != nil {
				return nil, err
			}
			out = append(out, paths...)
		}
	}
	return out, nil
}

// Record records a manifest of IntegrityPaths under root.
func (b *Baseline) Record(root string) (Manifest, error) {
	paths, err := b.IntegrityPaths(root)
	if err != nil {
		return Manifest{}, fmt.Errorf("listing integrity paths: %w", err)
	}
	return Record(root, paths)
}

type passwdEntry struct {
	Name string
	UID  string
	Home string
	Line int
}

func (ev *evaluation) readPasswd() ([]passwdEntry, error) {
	return ev.passwd.get(func() ([]passwdEntry, error) {
		data, err := readFileIn(ev.env.Root, "/etc/passwd")
		if err != nil {
			return nil, fmt.Errorf("reading accounts: %w", err)
		}
		var out []passwdEntry
		for i, line := range strings.Split(string(data), "\n") {
			if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
				continue
			}
			f := strings.Split(line, ":")
			if len(f) < 7 {
				continue
			}
			// f[1] may hold a password hash on old systems: never kept.
			out = append(out, passwdEntry{Name: f[0], UID: strings.TrimSpace(f[2]), Home: f[5], Line: i + 1})
		}
		return out, nil
	})
}

func (ev *evaluation) checkUID0(c *Check) Result {
	users, err := ev.readPasswd()
	if err != nil {
		return c.result(StatusError, err.Error())
	}
	expected := "UID 0 only for " + strings.Join(c.UID0Allowed, ", ")
	r := c.result(StatusPass, "")
	var extra []string
	for _, u := range users {
		if n, err := strconv.ParseUint(u.UID, 10, 32); err != nil || n != 0 {
			continue
		}
		r.Evidence = append(r.Evidence, Evidence{Source: fmt.Sprintf("/etc/passwd:%d", u.Line), Value: u.Name + " uid=0", Expected: expected})
		if !slices.Contains(c.UID0Allowed, u.Name) {
			extra = append(extra, u.Name)
		}
	}
	return r.verdict(extra, ", ", "unexpected UID 0 accounts: ", "no unexpected UID 0 account")
}

// authorizedKeysPaths resolves the authorized_keys files sshd reads for
// users: AuthorizedKeysFile from the global section of the effective sshd
// configuration (default .ssh/authorized_keys .ssh/authorized_keys2),
// with %h, %u, %U and %% expanded and relative paths taken from the home
// directory. notes lists users that do not exist.
func (ev *evaluation) authorizedKeysPaths(users []string) ([]string, []string, error) {
	accounts, err := ev.readPasswd()
	if err != nil {
		return nil, nil, err
	}
	files := []string{".ssh/authorized_keys", ".ssh/authorized_keys2"}
	if cfg, err := ev.sshd.get(func() (*sshdConfig, error) { return loadSSHD(ev.env.Root) }); err == nil {
		if o := cfg.option("authorizedkeysfile"); len(o.global) > 0 {
			files = o.global[0].Args
		}
	}
	var out, notes []string
	for _, name := range users {
		i := slices.IndexFunc(accounts, func(a passwdEntry) bool { return a.Name == name })
		if i < 0 {
			notes = append(notes, name)
			continue
		}
		u := accounts[i]
		for _, f := range files {
			if strings.EqualFold(f, "none") {
				continue
			}
			p := strings.NewReplacer("%%", "%", "%h", u.Home, "%u", u.Name, "%U", u.UID).Replace(f)
			if !path.IsAbs(p) {
				p = path.Join(u.Home, p)
			}
			p = path.Clean(p)
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out, notes, nil
}

const noManifest = "no recorded manifest to compare against: record one (baseline.Record) while the gateway is known good"

func (ev *evaluation) checkAuthorizedKeys(c *Check) Result {
	if ev.env.Recorded == nil {
		return c.result(StatusSkip, noManifest)
	}
	paths, missingUsers, err := ev.authorizedKeysPaths(c.AuthorizedKeys)
	if err != nil {
		return c.result(StatusError, err.Error())
	}
	r := c.result(StatusPass, "")
	for _, u := range missingUsers {
		r.Evidence = append(r.Evidence, Evidence{Source: "/etc/passwd", Value: "user " + u + " does not exist", Expected: "authorized_keys unchanged"})
	}
	problems := ev.compareManifest(&r, paths, true)
	if r.Status == StatusError {
		return r
	}
	return r.verdict(problems, "; ", "authorized_keys changed since the manifest was recorded: ", "authorized_keys files match the recorded manifest")
}

func (ev *evaluation) checkFiles(c *Check) Result {
	if ev.env.Recorded == nil {
		return c.result(StatusSkip, noManifest)
	}
	r := c.result(StatusPass, "")
	problems := ev.compareManifest(&r, c.Files, false)
	switch {
	case r.Status == StatusError:
	case len(problems) > 0:
		r.Status = StatusFail
		r.Message = "files differ from the recorded manifest: " + strings.Join(problems, "; ")
	case r.Status == StatusSkip:
		r.Message = "none of the paths was recorded in the manifest: record it again"
	default:
		r.Message = "files match the recorded manifest"
	}
	return r
}

// compareManifest compares the files matching patterns with the recorded
// manifest, adding evidence to r and returning one line per difference. A
// pattern the manifest does not cover is skipped, unless appearedFails, in
// which case a file existing there is a difference (a key file where none
// was recorded).
func (ev *evaluation) compareManifest(r *Result, patterns []string, appearedFails bool) []string {
	m := ev.env.Recorded
	var problems []string
	coveredAny := false
	for _, pat := range patterns {
		current := globUnder(ev.env.Root, pat)
		if !slices.Contains(m.Patterns, pat) {
			if appearedFails && len(current) > 0 {
				for _, p := range current {
					rec, ok, err := recordFile(ev.env.Root, p, ev.hashBuffer())
					if err != nil || !ok {
						continue
					}
					r.Evidence = append(r.Evidence, Evidence{Source: p, Value: "sha256:" + rec.SHA256, Expected: "absent (not in the recorded manifest)"})
					problems = append(problems, p+" appeared")
				}
				coveredAny = true
				continue
			}
			r.Evidence = append(r.Evidence, Evidence{Source: pat, Value: "not in the recorded manifest", Expected: "recorded"})
			continue
		}
		coveredAny = true
		var recorded []string
		for p := range m.Files {
			if p == pat || (hasMeta(pat) && matchGlobPath(pat, p)) {
				recorded = append(recorded, p)
			}
		}
		all := append(slices.Clone(current), recorded...)
		slices.Sort(all)
		all = slices.Compact(all)
		if len(all) == 0 {
			r.Evidence = append(r.Evidence, Evidence{Source: pat, Value: "absent", Expected: "absent"})
		}
		for _, p := range all {
			old, wasThere := m.Files[p]
			now, isThere, err := recordFile(ev.env.Root, p, ev.hashBuffer())
			if err != nil {
				r.Status = worse(r.Status, StatusError)
				r.Evidence = append(r.Evidence, Evidence{Source: p, Value: "unreadable", Expected: "sha256:" + old.SHA256})
				r.Message = err.Error()
				continue
			}
			switch {
			case wasThere && !isThere:
				r.Evidence = append(r.Evidence, Evidence{Source: p, Value: "missing", Expected: "sha256:" + old.SHA256})
				problems = append(problems, p+" is missing")
			case !wasThere && isThere:
				r.Evidence = append(r.Evidence, Evidence{Source: p, Value: "sha256:" + now.SHA256, Expected: "absent (not present when recorded)"})
				problems = append(problems, p+" appeared")
			case !wasThere && !isThere:
			case old.SHA256 != now.SHA256:
				r.Evidence = append(r.Evidence, Evidence{Source: p, Value: "sha256:" + now.SHA256, Expected: "sha256:" + old.SHA256})
				problems = append(problems, p+" changed")
			case old.Mode != now.Mode:
				r.Evidence = append(r.Evidence, Evidence{Source: p, Value: "mode " + now.Mode, Expected: "mode " + old.Mode})
				problems = append(problems, fmt.Sprintf("%s mode changed %s → %s", p, old.Mode, now.Mode))
			default:
				r.Evidence = append(r.Evidence, Evidence{Source: p, Value: "sha256:" + now.SHA256, Expected: "sha256:" + old.SHA256})
			}
		}
	}
	if !coveredAny && len(problems) == 0 {
		r.Status = StatusSkip
	}
	return problems
}

// Covers reports whether m records p: p is one of its files, or one of its
// patterns names or matches it (a glob matched as matchGlobPath does), so
// that m would have recorded p had it existed.
func (m Manifest) Covers(p string) bool {
	if _, ok := m.Files[p]; ok {
		return true
	}
	return slices.ContainsFunc(m.Patterns, func(pat string) bool { return pat == p || matchGlobPath(pat, p) })
}

// matchGlobPath matches a gateway path against a glob component by
// component, like globUnder (dot files only by a dot pattern).
func matchGlobPath(pattern, p string) bool {
	pp := strings.Split(strings.TrimPrefix(path.Clean(pattern), "/"), "/")
	ps := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
	if len(pp) != len(ps) {
		return false
	}
	for i := range pp {
		if strings.HasPrefix(ps[i], ".") && !strings.HasPrefix(pp[i], ".") && hasMeta(pp[i]) {
			return false
		}
		if ok, _ := path.Match(pp[i], ps[i]); !ok {
			return false
		}
	}
	return true
}
