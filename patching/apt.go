package patching

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/warden-ir/warden/internal/fault"
)

// Programs and fixed settings.
const (
	aptGetPath  = "/usr/bin/apt-get"
	aptMarkPath = "/usr/bin/apt-mark"
	// envPath is the PATH apt and dpkg run with (dpkg needs tar, rm and
	// friends; maintainer scripts on a gateway need the usual tools).
	envPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// lockTimeout lets apt wait for another package run on the gateway
	// (unattended-upgrades) instead of failing at once.
	lockTimeout = "120"
	// workPrefix names the private directory under ROOT/var/lib/apt.
	workPrefix = "warden-patch-"
)

// session is everything one Apply or Plan needs to run apt against one
// root: the environment, the configuration options shared by every apt
// run, and a private work directory removed by close.
type session struct {
	root     string
	isolated bool
	work     string
	runner   Runner
	log      *slog.Logger
	env      []string
	opts     []string
}

// openSession prepares apt for root. It writes files only under root: an
// APT_CONFIG file for an isolated root and, when sources are given, a
// private sources list and list directory.
func openSession(root string, sources []string, runner Runner, log *slog.Logger) (*session, error) {
	s := &session{root: root, isolated: root != "/", runner: runner, log: log}
	if s.runner == nil {
		s.runner = ExecRunner{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.env = []string{
		"PATH=" + envPath,
		"LC_ALL=C",
		"DEBIAN_FRONTEND=noninteractive",
		"DEBCONF_NONINTERACTIVE_SEEN=true",
		"APT_LISTCHANGES_FRONTEND=none",
		"NEEDRESTART_MODE=l",
	}
	// A gateway may reach its mirror through a proxy set in the
	// environment of the service rather than in apt.conf.
	for _, k := range []string{"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"} {
		if v, ok := os.LookupEnv(k); ok {
			s.env = append(s.env, k+"="+v)
		}
	}
	if s.isolated || len(sources) > 0 {
		aptDir := filepath.Join(root, "var/lib/apt")
		if err := os.MkdirAll(aptDir, 0o755); err != nil {
			return nil, fmt.Errorf("preparing apt state directory: %w", err)
		}
		work, err := os.MkdirTemp(aptDir, workPrefix)
		if err != nil {
			return nil, fmt.Errorf("preparing patch work directory: %w", err)
		}
		s.work = work
		// apt downloads as the unprivileged _apt user, which must be able
		// to reach the private list directory.
		if err := os.Chmod(work, 0o755); err != nil {
			s.close()
			return nil, fmt.Errorf("preparing patch work directory: %w", err)
		}
	}
	s.opts = isolationOptions(root)
	if s.isolated {
		// apt reads APT_CONFIG, then the apt.conf.d parts and apt.conf,
		// and only then its command line. The host's parts carry DPkg
		// hooks (debconf preconfiguration, cache cleaning) that would run
		// on the host, and so would any hook in the root's parts: apt runs
		// hooks with the host's shell, not chrooted. So APT_CONFIG moves
		// Dir into the root and points the parts at an empty directory and
		// the main file at one that does not exist.
		conf := filepath.Join(s.work, "apt.conf")
		parts := filepath.Join(s.work, "apt.conf.d")
		body := fmt.Sprintf("Dir %q;\nDir::Etc::parts %q;\nDir::Etc::main %q;\n",
			root+"/", parts+"/", filepath.Join(s.work, "no-main.conf"))
		if err := os.Mkdir(parts, 0o755); err != nil {
			s.close()
			return nil, fmt.Errorf("writing apt configuration: %w", err)
		}
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			s.close()
			return nil, fmt.Errorf("writing apt configuration: %w", err)
		}
		// apt writes temporary files (checking Release signatures) to
		// TMPDIR: keep them in the root too.
		s.env = append(s.env, "APT_CONFIG="+conf, "TMPDIR="+s.work)
	}
	if len(sources) > 0 {
		opts, err := s.privateSources(sources)
		if err != nil {
			s.close()
			return nil, err
		}
		s.opts = append(s.opts, opts...)
	}
	return s, nil
}

// isolationOptions are the apt options for root: for "/" only the
// non-interactive dpkg settings; for any other root, every directory apt
// and dpkg use is pointed into it.
func isolationOptions(root string) []string {
	var o []string
	if root != "/" {
		o = append(o,
			"-o", "Dir="+root+"/",
			"-o", "Dir::State::status="+filepath.Join(root, dpkgAdminDir, "status"),
			"-o", "Dir::Cache="+filepath.Join(root, "var/cache/apt")+"/",
			"-o", "Dir::Log="+filepath.Join(root, "var/log/apt")+"/",
			// apt passes no root to dpkg by itself: without these dpkg
			// would install into the host. --root sets both the
			// installation and the admin directory (ROOT/var/lib/dpkg).
			"-o", "DPkg::Options::=--root="+root,
			"-o", "DPkg::Options::=--log="+filepath.Join(root, "var/log/dpkg.log"),
		)
	}
	return append(o,
		"-o", "DPkg::Options::=--force-confdef",
		"-o", "DPkg::Options::=--force-confold",
		"-o", "DPkg::Lock::Timeout="+lockTimeout,
	)
}

// privateSources writes the request's sources to the work directory and
// returns the options that make apt use only them, with a list directory
// of their own (so updating them does not discard the root's lists) and no
// binary cache files.
func (s *session) privateSources(sources []string) ([]string, error) {
	list := filepath.Join(s.work, "sources.list")
	parts := filepath.Join(s.work, "sources.list.d")
	lists := filepath.Join(s.work, "lists")
	for _, d := range []string{parts, filepath.Join(lists, "partial")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("preparing private apt lists: %w", err)
		}
	}
	if err := os.WriteFile(list, []byte(strings.Join(sources, "\n")+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("writing private sources list: %w", err)
	}
	return []string{
		"-o", "Dir::Etc::sourcelist=" + list,
		"-o", "Dir::Etc::sourceparts=" + parts + "/",
		"-o", "Dir::State::lists=" + lists + "/",
		"-o", "Dir::Cache::pkgcache=",
		"-o", "Dir::Cache::srcpkgcache=",
	}, nil
}

func (s *session) close() {
	if s.work != "" {
		if err := os.RemoveAll(s.work); err != nil {
			s.log.Warn("removing patch work directory", "dir", s.work, "err", err)
		}
	}
}

// aptGet builds an apt-get command: quiet, assume yes, the session's
// options, then args.
func (s *session) aptGet(args ...string) Command {
	a := append([]string{"-q", "-y"}, s.opts...)
	return Command{Path: aptGetPath, Args: append(a, args...), Env: s.env}
}

// aptMark builds an apt-mark command with the session's options.
func (s *session) aptMark(args ...string) Command {
	a := append([]string{}, s.opts...)
	return Command{Path: aptMarkPath, Args: append(a, args...), Env: s.env}
}

// installArgs is the install of pinned targets: upgrades only (a target
// not installed is refused before), no recommends pulled in, and apt stops
// rather than remove a package to make room.
func installArgs(targets []Target) []string {
	a := []string{"--only-upgrade", "--no-install-recommends", "--no-remove", "install"}
	for _, t := range targets {
		a = append(a, t.String())
	}
	return a
}

// run runs cmd, logs its output at debug level and turns a failure into
// an *AptError.
func (s *session) run(ctx context.Context, step string, cmd Command) ([]byte, error) {
	s.log.Debug("running apt", "step", step, "cmd", redact(cmd.String()))
	out, err := s.runner.Run(ctx, cmd)
	if len(out) > 0 {
		s.log.Debug("apt output", "step", step, "output", redact(string(out)))
	}
	if err != nil {
		return out, newAptError(step, out, err)
	}
	return out, nil
}

// AptError is an apt-get or apt-mark run that failed.
type AptError struct {
	// Step is what was being done ("updating package lists").
	Step string
	// ExitCode is the program's exit status, -1 when it did not exit.
	ExitCode int
	// Messages are apt's error and warning lines ("E: …"), credentials
	// in URLs redacted.
	Messages []string
	err      error
}

func (e *AptError) Error() string {
	msg := fmt.Sprintf("%s: apt exited with status %d", e.Step, e.ExitCode)
	if len(e.Messages) > 0 {
		msg += ": " + strings.Join(e.Messages, "; ")
	} else if e.err != nil {
		msg += ": " + redact(e.err.Error())
	}
	return msg
}

func (e *AptError) Unwrap() error { return e.err }

// terminalMessages are apt errors that retrying will not fix.
var terminalMessages = []string{
	"unable to locate package",
	"was not found",
	"unmet dependencies",
	"held broken packages",
	"has no installation candidate",
	"remove is disabled",
	"held packages were changed",
}

func newAptError(step string, out []byte, err error) error {
	e := &AptError{Step: step, ExitCode: -1, err: err}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		e.ExitCode = exit.ExitCode()
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") ||
			strings.Contains(line, " : Depends: ") || strings.Contains(line, "but it is not installable") {
			e.Messages = append(e.Messages, redact(line))
		}
	}
	if len(e.Messages) > 20 {
		e.Messages = append(e.Messages[:20], "…")
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return e
	}
	text := strings.ToLower(strings.Join(e.Messages, "\n"))
	for _, m := range terminalMessages {
		if strings.Contains(text, m) {
			return fault.Terminal(e)
		}
	}
	return e
}

// Upgrade is one package apt would install, read from a simulation.
type Upgrade struct {
	// Name is the package name, with ":arch" when apt printed one.
	Name string `json:"name"`
	// From is empty for a package that is not installed yet.
	From string `json:"from,omitempty"`
	To   string `json:"to"`
	// Releases are where the new version comes from, as apt prints them
	// ("Debian-Security:12/stable-security").
	Releases []string `json:"releases,omitempty"`
}

// Security reports whether the new version comes from a security archive.
// The same version may be published in several releases; one security
// release is enough.
func (u Upgrade) Security() bool {
	for _, r := range u.Releases {
		r = strings.ToLower(r)
		if strings.HasSuffix(r, "-security") || strings.HasPrefix(r, "debian-security:") {
			return true
		}
	}
	return false
}

// parseSimulation reads the "Inst" lines of apt-get -s:
//
//	Inst NAME [OLD] (NEW RELEASE[, RELEASE…] [ARCH])
//
// where [OLD] is missing for a new package.
func parseSimulation(out []byte) []Upgrade {
	var ups []Upgrade
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Inst ")
		if !ok {
			continue
		}
		name, rest, _ := strings.Cut(rest, " ")
		u := Upgrade{Name: name}
		rest = strings.TrimSpace(rest)
		if strings.HasPrefix(rest, "[") {
			old, after, ok := strings.Cut(rest[1:], "]")
			if !ok {
				continue
			}
			u.From, rest = old, strings.TrimSpace(after)
		}
		inner, ok := strings.CutPrefix(rest, "(")
		if !ok {
			continue
		}
		if i := strings.IndexByte(inner, ')'); i >= 0 {
			inner = inner[:i]
		}
		if i := strings.LastIndex(inner, " ["); i >= 0 {
			inner = inner[:i]
		}
		version, rels, _ := strings.Cut(inner, " ")
		if version == "" {
			continue
		}
		u.To = version
		for _, r := range strings.Split(rels, ",") {
			if r = strings.TrimSpace(r); r != "" {
				u.Releases = append(u.Releases, r)
			}
		}
		ups = append(ups, u)
	}
	return ups
}
