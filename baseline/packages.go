package baseline

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
)

const dpkgStatus = "/var/lib/dpkg/status"

type dpkgPackage struct {
	Name    string
	Arch    string
	Version string
	// State is the third word of Status: installed, config-files, ...
	State string
	Line  int
}

// present reports whether the package's files are on disk: fully installed
// or part way through an upgrade. "config-files" and "not-installed" leave
// no code to run.
func (p dpkgPackage) present() bool {
	switch p.State {
	case "installed", "half-configured", "unpacked", "half-installed", "triggers-awaited", "triggers-pending":
		return true
	}
	return false
}

// loadDpkg reads the dpkg status database: one stanza per package instance
// (Multi-Arch: same packages have one per architecture).
func loadDpkg(root string) (map[string][]dpkgPackage, error) {
	f, err := openIn(root, dpkgStatus)
	if err != nil {
		return nil, fmt.Errorf("reading dpkg database: %w", err)
	}
	defer f.Close()
	out := map[string][]dpkgPackage{}
	var cur dpkgPackage
	flush := func() {
		if cur.Name != "" {
			out[cur.Name] = append(out[cur.Name], cur)
		}
		cur = dpkgPackage{}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(b) == 0 {
			flush()
			continue
		}
		// Only four fields matter; most lines are descriptions and
		// dependencies, rejected on their first byte.
		switch b[0] {
		case 'P', 'p':
			if v, ok := fieldValue(b, fieldPackage); ok {
				cur.Name, cur.Line = v, line
			}
		case 'V', 'v':
			if v, ok := fieldValue(b, fieldVersion); ok {
				cur.Version = v
			}
		case 'A', 'a':
			if v, ok := fieldValue(b, fieldArch); ok {
				cur.Arch = v
			}
		case 'S', 's':
			if v, ok := fieldValue(b, fieldStatus); ok {
				if i := strings.LastIndexByte(v, ' '); i >= 0 {
					cur.State = v[i+1:]
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading dpkg database: %w", err)
	}
	flush()
	return out, nil
}

var (
	fieldPackage = []byte("package:")
	fieldVersion = []byte("version:")
	fieldArch    = []byte("architecture:")
	fieldStatus  = []byte("status:")
)

// fieldValue returns the value of a "Name: value" line when the name
// (lower-case, with its colon) matches case-insensitively, as dpkg field
// names do.
func fieldValue(b, name []byte) (string, bool) {
	if len(b) < len(name) || !bytes.EqualFold(b[:len(name)], name) {
		return "", false
	}
	return string(bytes.TrimSpace(b[len(name):])), true
}

func (ev *evaluation) checkPackages(c *Check) Result {
	pkgs, err := ev.dpkg.get(func() (map[string][]dpkgPackage, error) { return loadDpkg(ev.env.Root) })
	if err != nil {
		return c.result(StatusError, err.Error())
	}
	names := slices.Sorted(maps.Keys(c.MinimumVersions))
	r := c.result(StatusPass, "")
	var old []string
	installed := 0
	for _, name := range names {
		minimum := c.MinimumVersions[name]
		expected := "≥ " + minimum
		found := false
		for _, p := range pkgs[name] {
			if !p.present() {
				continue
			}
			found = true
			id := p.Name
			if p.Arch != "" {
				id += ":" + p.Arch
			}
			r.Evidence = append(r.Evidence, Evidence{Source: fmt.Sprintf("%s:%d", dpkgStatus, p.Line), Value: id + " " + p.Version, Expected: expected})
			if CompareDebianVersions(p.Version, minimum) < 0 {
				old = append(old, fmt.Sprintf("%s %s < %s", id, p.Version, minimum))
			}
		}
		if found {
			installed++
		} else {
			r.Evidence = append(r.Evidence, Evidence{Source: dpkgStatus, Value: name + " not installed", Expected: expected})
		}
	}
	return r.verdict(old, "; ", "packages below their minimum version: ",
		fmt.Sprintf("%d of %d listed packages installed, all at or above their minimum", installed, len(names)))
}
