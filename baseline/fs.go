package baseline

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Files of the gateway are read under Env.Root, which is "/" on a live
// gateway and a mounted image or a copied tree otherwise (the agent's
// --baseline-root, `warden baseline check --root`). Under any other root a
// symlink must mean what it would mean on the gateway once booted from that
// tree: an absolute target /x is Root/x, and ".." stops at Root. Following
// it with the host's own path resolution would read the host's files (a
// link etc/ssh/sshd_config -> /etc/ssh/sshd_config judges the host, not the
// image) and lets whoever controls the tree make the agent read anything
// on the host into evidence. So under any root but "/" every access below
// resolves the path component by component inside the root first, then
// opens the resolved, symlink-free path through an os.Root, which refuses
// anything that would still leave the root if the tree changed between the
// two steps. Under "/" the kernel's own resolution is the gateway's.

// maxSymlinks is Linux's MAXSYMLINKS: more links than this in one
// resolution is ELOOP, as the kernel says.
const maxSymlinks = 40

// hostPath joins a gateway path ("/etc/ssh/sshd_config") onto root. It does
// not resolve symlinks: use it only for messages and for paths already
// resolved by resolveIn.
func hostPath(root, p string) string { return filepath.Join(root, filepath.FromSlash(p)) }

func isHostRoot(root string) bool {
	return root == "" || filepath.Clean(root) == string(filepath.Separator)
}

// underRoot is one gateway filesystem being read. Under the host's root it
// uses plain system calls (the kernel's resolution is the gateway's);
// under any other root, an os.Root.
type underRoot struct {
	root string
	r    *os.Root // nil for the host's root
}

func openUnder(root string) (*underRoot, error) {
	if isHostRoot(root) {
		return &underRoot{root: "/"}, nil
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("opening root %s: %w", root, err)
	}
	return &underRoot{root: root, r: r}, nil
}

func (u *underRoot) Close() {
	if u.r != nil {
		u.r.Close()
	}
}

// rel turns a resolved gateway path into a name for the os.Root.
func rel(p string) string {
	if p = strings.TrimPrefix(p, "/"); p == "" {
		return "."
	}
	return p
}

// lstat and readlink serve the resolution walk, on paths whose every
// directory has just been checked not to be a symlink, so the host path
// names the same file. They only ever see metadata and link targets;
// content is read through the os.Root, which fails rather than leave the
// root should the tree change under the walk.
func (u *underRoot) lstat(p string) (fs.FileInfo, error) { return os.Lstat(hostPath(u.root, p)) }

func (u *underRoot) readlink(p string) (string, error) { return os.Readlink(hostPath(u.root, p)) }

// pathError restates err (from a step of the resolution) for the gateway
// path the caller asked for, without the host's root.
func pathError(op, p string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &fs.PathError{Op: op, Path: p, Err: err}
}

// resolve returns the gateway path p leads to, with every symlink replaced
// by its target read inside the root: absolute targets restart at the
// root, ".." never climbs above it. followLast false leaves a final symlink
// in place (lstat semantics). allowMissing returns the path lexically from
// the first component that does not exist (for creating it); otherwise
// that is an error wrapping fs.ErrNotExist.
func (u *underRoot) resolve(p string, followLast, allowMissing bool) (string, error) {
	orig := p
	resolved := "/"
	// Not path.Clean: "d/.." must be resolved after d, as the kernel does.
	rest := strings.TrimLeft(p, "/")
	links := 0
	for rest != "" {
		c, tail, _ := strings.Cut(rest, "/")
		rest = tail
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = path.Dir(resolved)
			continue
		}
		next := path.Join(resolved, c)
		fi, err := u.lstat(next)
		if err != nil {
			if allowMissing && errors.Is(err, fs.ErrNotExist) {
				return path.Join(next, rest), nil
			}
			return "", pathError("resolve", orig, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 || (rest == "" && !followLast) {
			if rest != "" && !fi.IsDir() {
				return "", pathError("resolve", orig, syscall.ENOTDIR)
			}
			resolved = next
			continue
		}
		if links++; links > maxSymlinks {
			return "", pathError("resolve", orig, syscall.ELOOP)
		}
		target, err := u.readlink(next)
		if err != nil {
			return "", pathError("resolve", orig, err)
		}
		if path.IsAbs(target) {
			resolved = "/"
		}
		rest = strings.TrimPrefix(target, "/") + "/" + rest
	}
	return resolved, nil
}

// open opens a file for reading after resolving it inside the root. Under
// the host's root the kernel's own resolution is the gateway's.
//
// O_NONBLOCK keeps a FIFO planted where a configuration file belongs from
// blocking the evaluation in open(2); readers reject what is not a regular
// file or a directory.
func (u *underRoot) open(p string) (*os.File, error) {
	return u.openFile(p, os.O_RDONLY|syscall.O_NONBLOCK)
}

// openFile opens p with flag after resolving it inside the root, following
// a final symlink (inside the root).
func (u *underRoot) openFile(p string, flag int) (*os.File, error) {
	if u.r == nil {
		return os.OpenFile(p, flag, 0)
	}
	real, err := u.resolve(p, true, false)
	if err != nil {
		return nil, err
	}
	f, err := u.r.OpenFile(rel(real), flag, 0)
	if err != nil {
		return nil, pathError("open", p, err)
	}
	return f, nil
}

// resolveIn is resolve for a single path, see underRoot.resolve.
func resolveIn(root, p string, followLast bool) (string, error) {
	u, err := openUnder(root)
	if err != nil {
		return "", err
	}
	defer u.Close()
	return u.resolve(p, followLast, false)
}

// openIn opens the gateway path p under root for reading, following
// symlinks inside root only.
func openIn(root, p string) (*os.File, error) {
	u, err := openUnder(root)
	if err != nil {
		return nil, err
	}
	defer u.Close()
	return u.open(p)
}

// readFileIn reads the gateway path p under root, following symlinks
// inside root only.
func readFileIn(root, p string) ([]byte, error) {
	f, err := openIn(root, p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, pathError("read", p, err)
	}
	if st.IsDir() {
		return nil, pathError("read", p, syscall.EISDIR)
	}
	if !st.Mode().IsRegular() {
		// A device (/dev/zero) or FIFO would never end or block.
		return nil, pathError("read", p, errNotRegular)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, pathError("read", p, err)
	}
	return data, nil
}

// errNotRegular is returned for reading something that is not a file.
var errNotRegular = errors.New("not a regular file")

// statIn stats the gateway path p under root, following symlinks inside
// root only.
func statIn(root, p string) (fs.FileInfo, error) { return statUnder(root, p, true) }

// lstatIn is lstat of the gateway path p under root: the directories
// leading to it are resolved inside root, a final symlink is not followed.
func lstatIn(root, p string) (fs.FileInfo, error) { return statUnder(root, p, false) }

// statUnder stats the gateway path p under root, resolving the directories
// leading to it inside root; a final symlink is followed (inside root) only
// when follow is set.
func statUnder(root, p string, follow bool) (fs.FileInfo, error) {
	op, hostStat, rootStat := "lstat", os.Lstat, (*os.Root).Lstat
	if follow {
		op, hostStat, rootStat = "stat", os.Stat, (*os.Root).Stat
	}
	u, err := openUnder(root)
	if err != nil {
		return nil, err
	}
	defer u.Close()
	if u.r == nil {
		return hostStat(p)
	}
	real, err := u.resolve(p, follow, false)
	if err != nil {
		return nil, err
	}
	fi, err := rootStat(u.r, rel(real))
	if err != nil {
		return nil, pathError(op, p, err)
	}
	return fi, nil
}

// readDirIn lists the directory at gateway path p under root, sorted by
// name, following symlinks inside root only.
func readDirIn(root, p string) ([]fs.DirEntry, error) {
	f, err := openIn(root, p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, pathError("readdir", p, err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	return ents, nil
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// globUnder expands an absolute, slash-separated pattern against the tree
// under root the way glob(3) does for sshd, strongSwan and the integrity
// manifest: wildcards in any component, names starting with a dot matched
// only by a pattern starting with a dot, results sorted. It returns gateway
// paths of entries that exist; a pattern without wildcards is returned only
// if it exists. Matching is done per directory entry, so wildcard
// characters in root itself are never interpreted; directories are read
// through symlinks resolved inside root.
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
			ents, err := readDirIn(root, dir)
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
		if _, err := lstatIn(root, p); err == nil {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// openWriteIn opens an existing file at gateway path p under root for
// writing (truncating it), following symlinks inside root only.
func openWriteIn(root, p string) (*os.File, error) {
	u, err := openUnder(root)
	if err != nil {
		return nil, err
	}
	defer u.Close()
	return u.openFile(p, os.O_WRONLY|os.O_TRUNC)
}

// replaceFileIn atomically replaces the file at gateway path p under root
// with data (mode 0644): the directory is resolved inside root (and created
// there if missing), the data written to a temporary file beside it, then
// renamed over p. A symlink at p itself is replaced, never followed, so the
// write cannot land outside root.
func replaceFileIn(root, p string, data []byte) error {
	u, err := openUnder(root)
	if err != nil {
		return err
	}
	defer u.Close()
	dir, err := u.resolve(path.Dir(p), true, true)
	if err != nil {
		return err
	}
	hostDir := hostPath(u.root, dir)
	if u.r != nil {
		if err := u.r.MkdirAll(rel(dir), 0o755); err != nil {
			return pathError("mkdir", path.Dir(p), err)
		}
		// The directory exists now: resolve again so that the host path
		// used below has no symlink in it.
		if dir, err = u.resolve(path.Dir(p), true, false); err != nil {
			return err
		}
		hostDir = hostPath(u.root, dir)
	} else if err := os.MkdirAll(hostDir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(hostDir, ".warden-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(hostDir, path.Base(p)))
}
