package patching

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/warden-ir/warden/baseline"
)

const (
	dpkgAdminDir   = "var/lib/dpkg"
	extendedStates = "var/lib/apt/extended_states"
)

// pkgInstance is one stanza of dpkg's status database.
type pkgInstance struct {
	Name, Arch, Version string
	// State is the last word of Status: installed, unpacked,
	// config-files, not-installed…
	State string
	// Conffiles maps each configuration file the installed version ships
	// to the MD5 of the content it shipped (dpkg keeps these in the status
	// database, not in .md5sums). Obsolete conffiles, which the version no
	// longer ships, are left out.
	Conffiles map[string]string
}

// id is "name:arch", the key apt and dpkg use for a package instance.
func (p pkgInstance) id() string {
	if p.Arch == "" {
		return p.Name
	}
	return p.Name + ":" + p.Arch
}

// present reports whether the package's files are on disk (fully
// installed or part way through a change).
func (p pkgInstance) present() bool {
	switch p.State {
	case "installed", "half-configured", "unpacked", "half-installed", "triggers-awaited", "triggers-pending":
		return true
	}
	return false
}

// dpkgDB is the status database: instances by "name:arch".
type dpkgDB map[string]pkgInstance

// readDpkgUnder checks and cleans the root a caller named, and reads the
// status database under it.
func readDpkgUnder(root string) (string, dpkgDB, error) {
	root, err := cleanRoot(root)
	if err != nil {
		return "", nil, err
	}
	db, err := readDpkg(root)
	if err != nil {
		return "", nil, err
	}
	return root, db, nil
}

// readDpkg reads the status database under root the way dpkg does: the
// status file, then the journal in updates/ (entries of a run that was
// interrupted before dpkg folded them into status), in numeric order.
func readDpkg(root string) (dpkgDB, error) {
	dir := filepath.Join(root, dpkgAdminDir)
	db := dpkgDB{}
	f, err := os.Open(filepath.Join(dir, "status"))
	if err != nil {
		return nil, fmt.Errorf("reading dpkg status: %w", err)
	}
	err = parseStanzas(f, func(p pkgInstance) { db[p.id()] = p })
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("reading dpkg status: %w", err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "updates"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading dpkg journal: %w", err)
	}
	type entry struct {
		n    int
		name string
	}
	var journal []entry
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && e.Type().IsRegular() {
			journal = append(journal, entry{n, e.Name()})
		}
	}
	sort.Slice(journal, func(i, j int) bool { return journal[i].n < journal[j].n })
	for _, e := range journal {
		b, err := os.ReadFile(filepath.Join(dir, "updates", e.name))
		if err != nil {
			return nil, fmt.Errorf("reading dpkg journal: %w", err)
		}
		if err := parseStanzas(bytes.NewReader(b), func(p pkgInstance) { db[p.id()] = p }); err != nil {
			return nil, fmt.Errorf("reading dpkg journal: %w", err)
		}
	}
	return db, nil
}

// parseStanzas calls fn for each stanza naming a package. Only the fields
// patching needs are read; field names match case-insensitively, as in
// dpkg.
func parseStanzas(r io.Reader, fn func(pkgInstance)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	var cur pkgInstance
	field := ""
	flush := func() {
		if cur.Name != "" {
			fn(cur)
		}
		cur, field = pkgInstance{}, ""
	}
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			// Continuation of a multi-line field; of those only Conffiles
			// (" /etc/path md5 [obsolete|remove-on-upgrade]") is read.
			if f := strings.Fields(line); field == "conffiles" && len(f) >= 2 && !slices.Contains(f[2:], "obsolete") {
				if cur.Conffiles == nil {
					cur.Conffiles = map[string]string{}
				}
				cur.Conffiles[f[0]] = f[1]
			}
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		field = strings.ToLower(name)
		switch field {
		case "package":
			cur.Name = value
		case "architecture":
			cur.Arch = value
		case "version":
			cur.Version = value
		case "status":
			if i := strings.LastIndexByte(value, ' '); i >= 0 {
				cur.State = value[i+1:]
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	flush()
	return nil
}

// instances returns the present instances a target name refers to: the
// one named "name:arch", or every architecture of "name".
func (db dpkgDB) instances(name string) []pkgInstance {
	var out []pkgInstance
	if _, _, qualified := strings.Cut(name, ":"); qualified {
		if p, ok := db[name]; ok && p.present() {
			out = append(out, p)
		}
		return out
	}
	for _, p := range db {
		if p.Name == name && p.present() {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Arch < out[j].Arch })
	return out
}

// satisfied reports whether every present instance of t is at or above
// its version (any version when t has none). found is false when the
// package is not installed at all.
func (db dpkgDB) satisfied(t Target) (ok, found bool) {
	inst := db.instances(t.Name)
	if len(inst) == 0 {
		return false, false
	}
	for _, p := range inst {
		if t.Version != "" && baseline.CompareDebianVersions(p.Version, t.Version) < 0 {
			return false, true
		}
	}
	return true, true
}

// changes lists the instances whose installed version differs between
// before and after, sorted by id.
func changes(before, after dpkgDB) []Installed {
	var out []Installed
	for id, a := range after {
		if !a.present() {
			continue
		}
		b, had := before[id]
		if had && b.present() && b.Version == a.Version {
			continue
		}
		in := Installed{Name: id, After: a.Version}
		if had && b.present() {
			in.Before = b.Version
		}
		out = append(out, in)
	}
	for id, b := range before {
		if a, ok := after[id]; b.present() && (!ok || !a.present()) {
			out = append(out, Installed{Name: id, Before: b.Version})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// autoSet holds the "name:arch" ids apt has marked as automatically
// installed.
type autoSet map[string]bool

// has reports whether p is marked automatic. apt records an
// Architecture: all package under the native architecture, so for those
// any architecture of the name counts.
func (a autoSet) has(p pkgInstance) bool {
	if a[p.id()] {
		return true
	}
	if p.Arch != "all" {
		return false
	}
	for id := range a {
		if name, _, _ := strings.Cut(id, ":"); name == p.Name {
			return true
		}
	}
	return false
}

// readAutoInstalled reads apt's automatic-install marks under root.
func readAutoInstalled(root string) (autoSet, error) {
	b, err := os.ReadFile(filepath.Join(root, extendedStates))
	if errors.Is(err, fs.ErrNotExist) {
		return autoSet{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading apt extended states: %w", err)
	}
	out := autoSet{}
	var name, arch string
	auto := false
	flush := func() {
		if name != "" && auto {
			if arch != "" {
				out[name+":"+arch] = true
			} else {
				out[name] = true
			}
		}
		name, arch, auto = "", "", false
	}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "package":
			name = v
		case "architecture":
			arch = v
		case "auto-installed":
			auto = v == "1"
		}
	}
	flush()
	return out, nil
}
