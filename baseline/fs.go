package baseline

import (
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// hostPath joins a gateway path ("/etc/ssh/sshd_config") onto root.
func hostPath(root, p string) string { return filepath.Join(root, filepath.FromSlash(p)) }

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// globUnder expands an absolute, slash-separated pattern against the tree
// under root the way glob(3) does for sshd, strongSwan and the integrity
// manifest: wildcards in any component, names starting with a dot matched
// only by a pattern starting with a dot, results sorted. It returns gateway
// paths of entries that exist; a pattern without wildcards is returned only
// if it exists. Matching is done per directory entry, so wildcard
// characters in root itself are never interpreted.
func globUnder(root, pattern string) []string {
	clean := path.Clean("/" + pattern)
	parts := strings.Split(strings.TrimPrefix(clean, "/"), "/")
	cur := []string{"/"}
	for _, part := range parts {
		if part == "" {
			continue
		}
		var next []string
		for _, dir := range cur {
			if !hasMeta(part) {
				next = append(next, path.Join(dir, part))
				continue
			}
			ents, err := os.ReadDir(hostPath(root, dir))
			if err != nil {
				continue
			}
			for _, e := range ents {
				name := e.Name()
				if strings.HasPrefix(name, ".") && !strings.HasPrefix(part, ".") {
					continue
				}
				if ok, _ := path.Match(part, name); ok {
					next = append(next, path.Join(dir, name))
				}
			}
		}
		cur = next
	}
	var out []string
	for _, p := range cur {
		if _, err := os.Lstat(hostPath(root, p)); err == nil {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}
