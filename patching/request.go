package patching

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/warden-ir/warden/baseline"
	"github.com/warden-ir/warden/internal/fault"
)

// Target is a package that must end at or above a version.
type Target struct {
	// Name is a Debian package name, optionally qualified with an
	// architecture ("openssl", "libssl3:amd64").
	Name string `json:"name"`
	// Version is the version to install ("3.0.15-1~deb12u1"); empty means
	// the newest version the sources offer.
	Version string `json:"version,omitempty"`
}

func (t Target) String() string {
	if t.Version == "" {
		return t.Name
	}
	return t.Name + "=" + t.Version
}

// Request is one patch of one root.
type Request struct {
	// Root is the file system the packages live in: "/" on a gateway, a
	// directory built by a test otherwise.
	Root string
	// Packages are the named packages to bring up to their versions.
	Packages []Target
	// SecurityOnly applies every pending update that comes from a
	// security archive (a release whose suite ends in "-security" or
	// whose label is "Debian-Security"). Exactly one of Packages and
	// SecurityOnly must be given.
	SecurityOnly bool
	// Sources, when given, replace the root's apt sources for this run:
	// one-line sources ("deb [trusted=yes] file:/srv/repo ./"). They are
	// fetched into a private list directory removed afterwards, so the
	// root's own package lists are left as they were.
	Sources []string
	// Log receives progress and apt's output at debug level; nil discards.
	Log *slog.Logger
	// Runner starts programs; nil runs them for real (ExecRunner).
	Runner Runner
}

// Installed is one package whose installed version changed.
type Installed struct {
	// Name is "package:arch".
	Name string `json:"name"`
	// Before is empty when the package was newly installed (a new
	// dependency of an update).
	Before string `json:"before,omitempty"`
	After  string `json:"after"`
}

// Result is what Apply did.
type Result struct {
	// Changed is false when every target was already satisfied (or no
	// security update was pending) and nothing was installed.
	Changed bool `json:"changed"`
	// Installed lists every package whose version changed, sorted by name.
	Installed []Installed `json:"installed,omitempty"`
}

// Targets turns what was installed into targets, so a security-only patch
// (which names no packages) can be verified afterwards.
func (r Result) Targets() []Target {
	out := make([]Target, 0, len(r.Installed))
	for _, in := range r.Installed {
		out = append(out, Target{Name: in.Name, Version: in.After})
	}
	return out
}

// ErrInvalidRequest is wrapped (and marked terminal) for a request that
// cannot be run as given.
var ErrInvalidRequest = errors.New("invalid patch request")

// ErrNotInstalled is wrapped (and marked terminal) when a target package
// is not installed in the root: a patch upgrades, it never installs new
// software.
var ErrNotInstalled = errors.New("package not installed")

// Debian policy: lower-case letters, digits, + - . ; two characters at
// least, starting with an alphanumeric (so never an option). An
// architecture qualifier follows a colon.
var packageName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?$`)

// rootPath is a conservative path alphabet: the root is written into an
// apt configuration file, where quotes or semicolons would be syntax.
var rootPath = regexp.MustCompile(`^/[A-Za-z0-9._+/-]*$`)

const maxSourceLine = 1024

func invalid(format string, args ...any) error {
	return fault.Terminal(fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...)))
}

// validate checks the request and returns its cleaned root.
func (r Request) validate() (string, error) {
	root, err := cleanRoot(r.Root)
	if err != nil {
		return "", err
	}
	switch {
	case r.SecurityOnly && len(r.Packages) > 0:
		return "", invalid("both packages and security-only given")
	case !r.SecurityOnly && len(r.Packages) == 0:
		return "", invalid("no packages named and security-only not set")
	}
	seen := map[string]bool{}
	for _, t := range r.Packages {
		if !packageName.MatchString(t.Name) {
			return "", invalid("package name %q is not a Debian package name", t.Name)
		}
		if seen[t.Name] {
			return "", invalid("package %q named twice", t.Name)
		}
		seen[t.Name] = true
		if t.Version != "" {
			if _, err := baseline.ParseDebianVersion(t.Version); err != nil {
				return "", invalid("package %q: %v", t.Name, err)
			}
		}
	}
	for _, s := range r.Sources {
		if err := validSource(s); err != nil {
			return "", err
		}
	}
	return root, nil
}

func cleanRoot(root string) (string, error) {
	if root == "" {
		return "", invalid("root is empty")
	}
	if !rootPath.MatchString(root) {
		return "", invalid("root %q must be an absolute path of letters, digits and ._+-/", root)
	}
	return filepath.Clean(root), nil
}

// validSource accepts a one-line "deb" source. Its content is the
// operator's choice (a [trusted=yes] repository is trusted), so the check
// is about shape: one line, no control characters, a deb entry.
func validSource(s string) error {
	if len(s) > maxSourceLine {
		return invalid("source line longer than %d bytes", maxSourceLine)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return invalid("source line contains a control character")
		}
	}
	f := strings.Fields(s)
	if len(f) < 3 || f[0] != "deb" {
		return invalid("source line %q is not a one-line \"deb URI SUITE [COMPONENT...]\" entry", redact(s))
	}
	return nil
}
