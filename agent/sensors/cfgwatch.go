package sensors

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/fsnotify/fsnotify"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock"
)

// The configuration watcher: inotify on the gateway's security-relevant
// configuration (tunnels, firewall, sshd, sudoers, cron, systemd units,
// authorized_keys) and a `config_change` finding per file created,
// changed, deleted or re-permissioned, with the old and new SHA-256 and a
// unified diff against the copy the agent keeps, secrets redacted.
//
// Inotify only says when to look: every look compares all watched files
// with the kept copies (level-based, like the health watcher), so missed
// or coalesced events, rotated editors' temporary files and changes made
// while the agent was down all come out the same way. A burst of events
// (an editor writes twice) waits for a quiet Debounce before one look.

// Names and defaults of the configuration watcher.
const (
	ConfigSensorName = "config"
	// ConfigStateDir is the directory, in the agent's state dir, with the
	// index of watched files, their redacted contents and the redaction
	// key (0700, files 0600).
	ConfigStateDir            = "sensors-config"
	DefaultConfigSeverity     = SeverityHigh
	DefaultConfigDebounce     = 500 * time.Millisecond
	DefaultConfigRescan       = 10 * time.Minute
	DefaultConfigMaxFileBytes = 1 << 20
	DefaultConfigMaxFiles     = 5000
	DefaultConfigMaxDiffLines = 200

	configStateVersion = 1
	configIndexFile    = "index.json"
	configKeyFile      = "redact.key"
	configContentDir   = "content"
	diffContext        = 3
	// maxDiffCells bounds the LCS table of one diff; a larger change is
	// shown as all old lines removed and all new lines added.
	maxDiffCells = 1 << 20
	maxWalkDepth = 8
)

// DefaultConfigPaths are watched when sensors.config.paths is not set.
// A path may hold glob patterns (filepath.Match) in any element; a
// directory is watched with everything under it.
var DefaultConfigPaths = []string{
	"/etc/swanctl", "/etc/strongswan.d", "/etc/ipsec.conf", "/etc/ipsec.secrets",
	"/etc/wireguard", "/etc/nftables.conf", "/etc/iptables",
	"/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d",
	"/etc/sudoers", "/etc/sudoers.d",
	"/etc/cron.d", "/etc/crontab", "/var/spool/cron",
	"/etc/systemd/system",
	"/root/.ssh/authorized_keys", "/home/*/.ssh/authorized_keys",
}

// builtinRedactions find the secrets of the files watched by default; the
// groups named "secret" are what is replaced. Commented-out lines count:
// an old key left in a comment is still a key.
var builtinRedactions = []string{
	// swanctl.conf: secrets { ike-x { secret = … } }, token pins.
	`(?m)^[ \t]*#?[ \t]*(?:secret|pin)[ \t]*=[ \t]*(?P<secret>[^\r\n]*?)[ \t]*$`,
	// ipsec.secrets: "ids : PSK|EAP|XAUTH|NTLM|PIN value".
	`(?m)^[^\r\n]*?:[ \t]*(?:PSK|EAP|XAUTH|NTLM|PIN)[ \t]+(?P<secret>[^\r\n]*?)[ \t]*$`,
	// ipsec.secrets: "ids : RSA|ECDSA|… keyfile passphrase" (the file name stays).
	`(?m)^[^\r\n]*?:[ \t]*(?:RSA|ECDSA|ED25519|ED448|BLISS|PKCS8|PKCS12|P12)[ \t]+\S+[ \t]+(?P<secret>[^\r\n]*?)[ \t]*$`,
	// WireGuard (wg-quick and wg setconf files).
	`(?m)^[ \t]*#?[ \t]*(?:PrivateKey|PresharedKey)[ \t]*=[ \t]*(?P<secret>[^\r\n]*?)[ \t]*$`,
	// PEM private keys (/etc/swanctl/private, …).
	`(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\r?\n(?P<secret>.*?)\r?\n-----END [A-Z0-9 ]*PRIVATE KEY-----`,
}

// ConfigWatchConfig configures the configuration watcher (sensors.config).
type ConfigWatchConfig struct {
	Enabled bool `yaml:"enabled"`
	// Root is the filesystem root the paths are read under (default "/";
	// tests and containers use another).
	Root string `yaml:"root"`
	// Paths are the watched files and directories (absolute, may hold glob
	// patterns). Default DefaultConfigPaths.
	Paths []string `yaml:"paths"`
	// Severity of a change (default high: the default policies then
	// contain the gateway once a person approves).
	Severity string `yaml:"severity"`
	// Redact are more regular expressions whose matches are secrets: the
	// groups named "secret", else group 1, else the whole match.
	Redact []string `yaml:"redact"`
	// Debounce is the quiet time after a file event before the files are
	// compared (default 500ms); a burst is compared at the latest ten
	// Debounces after its first event.
	Debounce time.Duration `yaml:"debounce"`
	// Rescan is how often all files are compared without an event
	// (default 10 minutes), in case inotify missed one.
	Rescan time.Duration `yaml:"rescan_interval"`
	// MaxFileBytes: larger files are hashed but not kept or diffed
	// (default 1 MiB).
	MaxFileBytes int64 `yaml:"max_file_bytes"`
	// MaxFiles bounds the files watched (default 5000).
	MaxFiles int `yaml:"max_files"`
	// MaxDiffLines bounds a finding's diff (default 200).
	MaxDiffLines int `yaml:"max_diff_lines"`
}

// WithDefaults returns c with unset fields set to their defaults.
func (c ConfigWatchConfig) WithDefaults() ConfigWatchConfig {
	if c.Root == "" {
		c.Root = "/"
	}
	if c.Paths == nil {
		c.Paths = slices.Clone(DefaultConfigPaths)
	}
	if c.Severity == "" {
		c.Severity = DefaultConfigSeverity
	}
	if c.Debounce == 0 {
		c.Debounce = DefaultConfigDebounce
	}
	if c.Rescan == 0 {
		c.Rescan = DefaultConfigRescan
	}
	if c.MaxFileBytes == 0 {
		c.MaxFileBytes = DefaultConfigMaxFileBytes
	}
	if c.MaxFiles == 0 {
		c.MaxFiles = DefaultConfigMaxFiles
	}
	if c.MaxDiffLines == 0 {
		c.MaxDiffLines = DefaultConfigMaxDiffLines
	}
	return c
}

// Validate checks c after WithDefaults, naming each bad field.
func (c ConfigWatchConfig) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !filepath.IsAbs(c.Root) {
		bad("sensors.config.root: %q is not an absolute path", c.Root)
	}
	for i, p := range c.Paths {
		if err := checkWatchPath(p); err != nil {
			bad("sensors.config.paths[%d]: %q %w", i, p, err)
		}
	}
	if err := checkSeverity("sensors.config.severity", c.Severity); err != nil {
		errs = append(errs, err)
	}
	for i, expr := range c.Redact {
		if _, err := regexp.Compile(expr); err != nil {
			bad("sensors.config.redact[%d]: %w", i, err)
		}
	}
	if c.Debounce < 0 || c.Debounce > time.Minute {
		bad("sensors.config.debounce: %s is not between 0 and 1m", c.Debounce)
	}
	if c.Rescan < time.Second {
		bad("sensors.config.rescan_interval: %s is shorter than 1s", c.Rescan)
	}
	if c.MaxFileBytes < 0 {
		bad("sensors.config.max_file_bytes: %d is negative", c.MaxFileBytes)
	}
	if c.MaxFiles < 0 {
		bad("sensors.config.max_files: %d is negative", c.MaxFiles)
	}
	if c.MaxDiffLines < 2 {
		bad("sensors.config.max_diff_lines: %d is less than 2", c.MaxDiffLines)
	}
	return errors.Join(errs...)
}

func checkWatchPath(p string) error {
	switch {
	case !filepath.IsAbs(p):
		return errors.New("is not an absolute path")
	case filepath.Clean(p) != p || p == "/":
		return errors.New("is not a clean path below /")
	}
	if _, err := filepath.Match(p, ""); err != nil {
		return fmt.Errorf("is not a valid pattern: %w", err)
	}
	return nil
}

// ConfigWatchDeps are the configuration watcher's seams.
type ConfigWatchDeps struct {
	// StateDir is the agent's state dir; ConfigStateDir is made in it
	// (required).
	StateDir string
	// Clock defaults to clock.Real.
	Clock clock.Clock
	// Log defaults to discarding.
	Log *slog.Logger
}

// ConfigWatch is the configuration watcher.
type ConfigWatch struct {
	cfg   ConfigWatchConfig
	deps  ConfigWatchDeps
	rules []redactRule

	// Test hooks: started once Run has taken its first look; scanned
	// after every look, with the number of findings it emitted.
	started func()
	scanned func(findings int)
}

var _ Sensor = (*ConfigWatch)(nil)

// NewConfigWatch returns the configuration watcher for cfg (defaulted and
// validated here).
func NewConfigWatch(cfg ConfigWatchConfig, deps ConfigWatchDeps) (Sensor, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.StateDir == "" {
		return nil, errors.New("configuration watcher: no state dir")
	}
	if deps.Clock == nil {
		deps.Clock = clock.Real
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	rules, err := compileRedactions(append(slices.Clone(builtinRedactions), cfg.Redact...))
	if err != nil {
		return nil, err
	}
	return &ConfigWatch{cfg: cfg, deps: deps, rules: rules}, nil
}

// Name implements Sensor.
func (w *ConfigWatch) Name() string { return ConfigSensorName }

// Run implements Sensor: a first look (on the very first run, and for
// paths new to the configuration, it only records; otherwise it reports
// what changed while the agent was down), then a look after every quiet
// burst of relevant file events and every Rescan.
func (w *ConfigWatch) Run(ctx context.Context, emit func(wire.Finding)) error {
	r, err := w.begin()
	if err != nil {
		return err
	}
	defer r.close()
	r.look(emit)
	if w.started != nil {
		w.started()
	}
	rescan := w.deps.Clock.After(w.cfg.Rescan)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-r.events:
			if !ok { // inotify failed: rescans only
				r.events = nil
				w.deps.Log.Warn("inotify stopped: configuration is compared every rescan_interval only")
				continue
			}
			if r.relevant(ev.Name) {
				r.arm()
			}
		case err, ok := <-r.errors:
			if !ok {
				r.errors = nil
				continue
			}
			w.deps.Log.Warn("inotify", "err", err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				r.arm() // events were lost: look at everything
			}
		case <-r.fire:
			r.timer = nil
			r.look(emit)
		case <-rescan:
			r.look(emit)
			rescan = w.deps.Clock.After(w.cfg.Rescan)
		}
	}
}

// configRun is one Run's working state.
type configRun struct {
	w       *ConfigWatch
	dir     string
	key     []byte
	idx     configIndex
	saved   []byte
	watcher *fsnotify.Watcher // nil: inotify unavailable, rescans only
	events  chan fsnotify.Event
	errors  chan error
	// baseline holds the patterns whose files the next look records
	// without reporting: all of them on the first run, else those new to
	// the configuration.
	baseline map[string]bool
	// Debouncing: timer is the pending look, burst when its burst began.
	fire  chan struct{}
	timer clock.Timer
	burst time.Time
	// lost is why the kept copies could not be read, until reported.
	lost error
}

// configIndex is ConfigStateDir/index.json.
type configIndex struct {
	Version  int                 `json:"version"`
	Patterns []string            `json:"patterns"`
	Files    map[string]fileMeta `json:"files"`
}

// fileMeta is what the agent keeps about a watched file besides its
// redacted content.
type fileMeta struct {
	Type string `json:"type"` // file or symlink
	// SHA256 is the hash of the content (a symlink's: of its target);
	// kept here only.
	SHA256 string `json:"sha256"`
	// Shown is the hash findings carry: SHA256, or, when secrets were
	// redacted, the hash of the redacted content (the hash of a file of
	// known shape with one weak secret would let the secret be guessed).
	Shown    string      `json:"shown_sha256"`
	Redacted bool        `json:"redacted,omitempty"`
	Diffable bool        `json:"diffable,omitempty"`
	Mode     fs.FileMode `json:"mode"`
	UID      uint32      `json:"uid"`
	GID      uint32      `json:"gid"`
	Size     int64       `json:"size"`
	MtimeNS  int64       `json:"mtime_ns"`
	CtimeNS  int64       `json:"ctime_ns"`
	Ino      uint64      `json:"ino"`
}

// begin opens the state, the redaction key and inotify.
func (w *ConfigWatch) begin() (*configRun, error) {
	dir := filepath.Join(w.deps.StateDir, ConfigStateDir)
	_, statErr := os.Stat(dir)
	firstRun := errors.Is(statErr, fs.ErrNotExist)
	if err := os.MkdirAll(filepath.Join(dir, configContentDir), 0o700); err != nil {
		return nil, fmt.Errorf("making %s: %w", dir, err)
	}
	key, err := loadRedactionKey(dir)
	if err != nil {
		return nil, err
	}
	idx, existed, err := loadConfigIndex(dir)
	if err == nil && !existed && !firstRun {
		err = fmt.Errorf("%s is missing", filepath.Join(dir, configIndexFile))
	}
	var lost error
	if err != nil {
		// Unreadable kept copies must not let the next changes pass as a
		// first run: record anew, and say so.
		lost = err
		idx, existed = configIndex{Version: configStateVersion, Files: map[string]fileMeta{}}, false
	}
	r := &configRun{w: w, dir: dir, key: key, idx: idx, fire: make(chan struct{}, 1), baseline: map[string]bool{}, lost: lost}
	for _, p := range w.cfg.Paths {
		if !existed || !slices.Contains(idx.Patterns, p) {
			r.baseline[p] = true
		}
	}
	r.idx.Patterns = slices.Clone(w.cfg.Paths)
	if r.watcher, err = fsnotify.NewBufferedWatcher(1024); err != nil {
		w.deps.Log.Warn("inotify unavailable: configuration is compared every rescan_interval only", "err", err)
	} else {
		r.events, r.errors = r.watcher.Events, r.watcher.Errors
	}
	return r, nil
}

func (r *configRun) close() {
	if r.timer != nil {
		r.timer.Stop()
	}
	if r.watcher != nil {
		_ = r.watcher.Close()
	}
}

// arm (re)starts the debounce timer: the look happens after Debounce
// without events, or ten Debounces after the burst's first event.
func (r *configRun) arm() {
	clk, d := r.w.deps.Clock, r.w.cfg.Debounce
	now := clk.Now()
	if r.timer != nil {
		r.timer.Stop()
	} else {
		r.burst = now
	}
	wait := min(d, max(0, 10*d-now.Sub(r.burst)))
	fire := r.fire
	r.timer = clk.AfterFunc(wait, func() {
		select {
		case fire <- struct{}{}:
		default:
		}
	})
}

// relevant reports whether a host path is, is under or leads to a watched
// path.
func (r *configRun) relevant(hostPath string) bool {
	p, ok := r.configPath(hostPath)
	if !ok {
		return false
	}
	for _, pattern := range r.w.cfg.Paths {
		if pathMatchesPrefix(pattern, p) {
			return true
		}
	}
	return false
}

// pathMatchesPrefix reports whether p and pattern agree element by element
// as far as both go: p is an ancestor of a match, a match, or under one.
func pathMatchesPrefix(pattern, p string) bool {
	pc, nc := splitPath(pattern), splitPath(p)
	for i := range min(len(pc), len(nc)) {
		if ok, _ := filepath.Match(pc[i], nc[i]); !ok {
			return false
		}
	}
	return true
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// host maps a watched path to the path on this machine.
func (r *configRun) host(p string) string { return filepath.Join(r.w.cfg.Root, p) }

// configPath maps a path on this machine back to the watched namespace.
func (r *configRun) configPath(hostPath string) (string, bool) {
	rel, err := filepath.Rel(r.w.cfg.Root, hostPath)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	return filepath.Join("/", rel), true
}

// ---- one look ----

// look compares every watched file with its kept copy, emits a finding per
// change, records the new state and moves the inotify watches to where
// changes may now appear.
func (r *configRun) look(emit func(wire.Finding)) {
	emit = r.remembering(emit)
	files, dirs, complete := r.resolve()
	now := r.w.deps.Clock.Now()
	n := 0
	if r.lost != nil {
		emit(r.lostFinding(now))
		r.lost = nil
		n++
	}
	if !complete {
		r.w.deps.Log.Warn("configuration watcher: more files than sensors.config.max_files; deletions are not reported", "max_files", r.w.cfg.MaxFiles)
	}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		if f, ok := r.check(p, files[p], now); ok {
			emit(f)
			n++
		}
	}
	if complete {
		for _, p := range slices.Sorted(maps.Keys(r.idx.Files)) {
			if _, still := files[p]; still {
				continue
			}
			if f, ok := r.forget(p, now); ok {
				emit(f)
				n++
			}
		}
	}
	clear(r.baseline)
	if err := r.save(); err != nil {
		r.w.deps.Log.Warn("saving the configuration watcher's state", "err", err)
	}
	r.syncWatches(dirs)
	if r.w.scanned != nil {
		r.w.scanned(n)
	}
}

// resolve expands the watched paths into the files to compare (with the
// pattern each came from) and the directories to watch: the parents of
// every target, every directory under a watched directory, and, where an
// element is a pattern or does not exist yet, the directory it would
// appear in. complete is false when MaxFiles cut the list short.
func (r *configRun) resolve() (files map[string]string, dirs map[string]bool, complete bool) {
	files, dirs = map[string]string{}, map[string]bool{}
	complete = true
	for _, pattern := range r.w.cfg.Paths {
		for _, t := range r.expand(pattern, dirs) {
			if !r.collect(t, pattern, files, dirs) {
				complete = false
			}
		}
	}
	return files, dirs, complete
}

// expand returns the existing paths that match pattern, adding to dirs the
// directories where a match could appear.
func (r *configRun) expand(pattern string, dirs map[string]bool) []string {
	elems := splitPath(pattern)
	cur := []string{"/"}
	for i, elem := range elems {
		last := i == len(elems)-1
		var next []string
		for _, c := range cur {
			m := r.matchIn(c, elem, !last)
			if last || len(m) == 0 || hasGlobMeta(elem) {
				dirs[r.host(c)] = true // where a match may appear or go
			}
			next = append(next, m...)
		}
		cur = next
	}
	return cur
}

// matchIn returns the entries of directory dir named elem (a pattern or a
// name); onlyDirs keeps directories only.
func (r *configRun) matchIn(dir, elem string, onlyDirs bool) []string {
	keep := func(p string) bool {
		fi, err := os.Lstat(r.host(p))
		return err == nil && (!onlyDirs || fi.IsDir())
	}
	if !hasGlobMeta(elem) {
		p := filepath.Join(dir, elem)
		if keep(p) {
			return []string{p}
		}
		return nil
	}
	entries, err := os.ReadDir(r.host(dir))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if ok, _ := filepath.Match(elem, e.Name()); ok && keep(filepath.Join(dir, e.Name())) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

func hasGlobMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// collect adds target to files (a file or symlink) or walks it (a
// directory: every file and symlink under it, every directory watched),
// never following symlinks. It returns false when MaxFiles was reached.
func (r *configRun) collect(target, pattern string, files map[string]string, dirs map[string]bool) bool {
	full := r.w.cfg.MaxFiles
	add := func(p string) bool {
		if _, seen := files[p]; !seen && len(files) >= full {
			return false
		}
		if _, seen := files[p]; !seen {
			files[p] = pattern
		}
		return true
	}
	fi, err := os.Lstat(r.host(target))
	if err != nil {
		return true
	}
	if !fi.IsDir() {
		return !watchedFileMode(fi.Mode()) || add(target)
	}
	ok := true
	base := len(splitPath(target))
	_ = filepath.WalkDir(r.host(target), func(hp string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: skipped, compared again next look
		}
		p, inRoot := r.configPath(hp)
		if !inRoot {
			return filepath.SkipDir
		}
		if d.IsDir() {
			if len(splitPath(p))-base >= maxWalkDepth {
				return filepath.SkipDir
			}
			dirs[hp] = true
			return nil
		}
		if watchedFileMode(d.Type()) && !add(p) {
			ok = false
			return filepath.SkipAll
		}
		return nil
	})
	return ok
}

// watchedFileMode reports whether a file of mode m is compared: regular files and
// symlinks (sockets, FIFOs and devices are not configuration).
func watchedFileMode(m fs.FileMode) bool { return m.IsRegular() || m&fs.ModeSymlink != 0 }

// check compares one file with its kept copy.
func (r *configRun) check(p, pattern string, now time.Time) (wire.Finding, bool) {
	prev, had := r.idx.Files[p]
	snap, err := r.snapshot(p, prev, had)
	if errors.Is(err, errUnchanged) {
		return wire.Finding{}, false
	}
	if err != nil {
		r.w.deps.Log.Warn("reading a watched file", "path", p, "err", err)
		return wire.Finding{}, false
	}
	var old string
	if had && prev.Diffable && prev.SHA256 != snap.meta.SHA256 {
		old = r.loadContent(p)
	}
	if err := r.keep(p, snap); err != nil {
		r.w.deps.Log.Warn("keeping a watched file's copy", "path", p, "err", err)
		return wire.Finding{}, false
	}
	switch {
	case !had && r.baseline[pattern]:
		return wire.Finding{}, false
	case !had:
		return r.finding(p, "created", nil, &snap.meta, "", snap.text, now), true
	case prev.SHA256 != snap.meta.SHA256:
		return r.finding(p, "modified", &prev, &snap.meta, old, snap.text, now), true
	case prev.Mode != snap.meta.Mode || prev.UID != snap.meta.UID || prev.GID != snap.meta.GID:
		return r.finding(p, "metadata", &prev, &snap.meta, "", "", now), true
	}
	return wire.Finding{}, false
}

// lostFinding says that the kept copies were unreadable (deleted or
// corrupted, perhaps to hide a change): every file was recorded anew and
// what changed before cannot be shown.
func (r *configRun) lostFinding(now time.Time) wire.Finding {
	index := filepath.Join(r.dir, configIndexFile)
	return wire.Finding{
		Kind: KindConfigChange, Severity: SeverityMedium, Confidence: 0.5, ObservedAt: now.UTC(), Sensor: ConfigSensorName,
		Summary:  "the configuration watcher's kept copies were unreadable: every watched file was recorded anew, earlier changes cannot be shown",
		Labels:   map[string]string{"path": index, "change": "state_lost"},
		Evidence: []string{r.lost.Error()},
		Key:      fmt.Sprintf("config_change/state_lost/%d", now.UnixNano()),
	}
}

// forget drops a file that is gone, reporting it when it still matches a
// watched path (not when its path left the configuration).
func (r *configRun) forget(p string, now time.Time) (wire.Finding, bool) {
	prev := r.idx.Files[p]
	var old string
	if prev.Diffable {
		old = r.loadContent(p)
	}
	delete(r.idx.Files, p)
	_ = os.Remove(r.contentPath(p))
	for _, pattern := range r.w.cfg.Paths {
		if pathMatchesPrefix(pattern, p) && len(splitPath(p)) >= len(splitPath(pattern)) {
			return r.finding(p, "deleted", &prev, nil, old, "", now), true
		}
	}
	return wire.Finding{}, false
}

// fileSnapshot is a file as read now.
type fileSnapshot struct {
	meta fileMeta
	text string // the redacted content, when meta.Diffable
}

var errUnchanged = errors.New("unchanged since the last look")

// snapshot reads p unless its stat says it is the same as prev.
func (r *configRun) snapshot(p string, prev fileMeta, had bool) (fileSnapshot, error) {
	hp := r.host(p)
	fi, err := os.Lstat(hp)
	if err != nil {
		return fileSnapshot{}, err
	}
	meta := statMeta(fi)
	if had && sameStat(prev, meta) {
		return fileSnapshot{}, errUnchanged
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(hp)
		if err != nil {
			return fileSnapshot{}, err
		}
		text := "symlink to " + target + "\n"
		meta.Type, meta.Diffable = "symlink", true
		meta.SHA256 = sha256Hex([]byte(text))
		meta.Shown = meta.SHA256
		return fileSnapshot{meta: meta, text: text}, nil
	}
	return r.readRegular(hp)
}

// readRegular hashes a regular file and keeps its redacted text when it is
// text no larger than MaxFileBytes. The stat is taken from the open file,
// so that it goes with the content read.
func (r *configRun) readRegular(hp string) (fileSnapshot, error) {
	f, err := os.Open(hp)
	if err != nil {
		return fileSnapshot{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileSnapshot{}, err
	}
	meta := statMeta(fi)
	meta.Type = "file"
	h := sha256.New()
	var buf bytes.Buffer
	limit := r.w.cfg.MaxFileBytes
	if _, err := io.Copy(io.MultiWriter(h, &limitedBuffer{buf: &buf, left: limit + 1}), f); err != nil {
		return fileSnapshot{}, err
	}
	meta.SHA256 = hex.EncodeToString(h.Sum(nil))
	meta.Shown = meta.SHA256
	data := buf.Bytes()
	if int64(len(data)) > limit || !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0 {
		return fileSnapshot{meta: meta}, nil
	}
	text, n := r.redact(string(data))
	meta.Diffable = true
	if n > 0 {
		meta.Redacted = true
		meta.Shown = sha256Hex([]byte(text))
	}
	return fileSnapshot{meta: meta, text: text}, nil
}

// limitedBuffer keeps the first left bytes written to it and drops the
// rest without failing the copy.
type limitedBuffer struct {
	buf  *bytes.Buffer
	left int64
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.left > 0 {
		n := min(int64(len(p)), b.left)
		b.buf.Write(p[:n])
		b.left -= n
	}
	return len(p), nil
}

func statMeta(fi fs.FileInfo) fileMeta {
	m := fileMeta{Mode: fi.Mode(), Size: fi.Size(), MtimeNS: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		m.UID, m.GID, m.Ino = st.Uid, st.Gid, st.Ino
		m.CtimeNS = st.Ctim.Nano()
	}
	return m
}

// sameStat reports whether a file's stat is the one seen last: then its
// content is taken as unchanged without reading it (a write moves the
// ctime).
func sameStat(a, b fileMeta) bool {
	return a.Mode == b.Mode && a.UID == b.UID && a.GID == b.GID && a.Size == b.Size &&
		a.MtimeNS == b.MtimeNS && a.CtimeNS == b.CtimeNS && a.Ino == b.Ino && a.CtimeNS != 0
}

// finding describes one change; prev is nil for a created file, cur for a
// deleted one.
func (r *configRun) finding(p, change string, prev, cur *fileMeta, oldText, newText string, now time.Time) wire.Finding {
	f := wire.Finding{
		Kind: KindConfigChange, Severity: r.w.cfg.Severity, Confidence: 0.8,
		ObservedAt: now.UTC(), Sensor: ConfigSensorName,
		Labels: map[string]string{"path": p, "change": change, "sha256_of": "file"},
	}
	var oldHash, newHash string
	if prev != nil {
		oldHash = prev.Shown
		f.Labels["old_sha256"], f.Labels["old_mode"] = prev.Shown, modeString(prev.Mode)
		f.Labels["old_owner"] = fmt.Sprintf("%d:%d", prev.UID, prev.GID)
	}
	if cur != nil {
		newHash = cur.Shown
		f.Labels["new_sha256"], f.Labels["new_mode"] = cur.Shown, modeString(cur.Mode)
		f.Labels["new_owner"] = fmt.Sprintf("%d:%d", cur.UID, cur.GID)
	}
	if (prev != nil && prev.Redacted) || (cur != nil && cur.Redacted) {
		f.Labels["sha256_of"] = "redacted_content"
	}
	f.Key = fmt.Sprintf("config_change/%s/%s/%s", p, change, shortID(newHash+"|"+oldHash+"|"+f.Labels["new_mode"]+f.Labels["new_owner"]))
	switch change {
	case "metadata":
		f.Summary = fmt.Sprintf("%s: mode %s → %s, owner %s → %s", p, f.Labels["old_mode"], f.Labels["new_mode"], f.Labels["old_owner"], f.Labels["new_owner"])
		f.Evidence = []string{f.Summary}
		return f
	}
	diffable := (prev == nil || prev.Diffable) && (cur == nil || cur.Diffable)
	if !diffable {
		f.Summary = fmt.Sprintf("%s was %s (binary or larger than max_file_bytes: no diff)", p, change)
		f.Evidence = []string{fmt.Sprintf("%s: sha256 %s → %s", p, orNone(oldHash), orNone(newHash))}
		return f
	}
	from, to := "a"+p, "b"+p
	if prev == nil {
		from = "/dev/null"
	}
	if cur == nil {
		to = "/dev/null"
	}
	diff, added, removed := unifiedDiff(from, to, textLines(oldText), textLines(newText), r.w.cfg.MaxDiffLines)
	f.Evidence = diff
	f.Summary = fmt.Sprintf("%s was %s (+%d −%d lines)", p, change, added, removed)
	if added == 0 && removed == 0 {
		f.Summary = fmt.Sprintf("%s was %s (only redacted secrets or line endings differ)", p, change)
	}
	return f
}

// modeString renders a mode as chmod takes it ("4755"); a symlink's mode
// means nothing.
func modeString(m fs.FileMode) string {
	if m&fs.ModeSymlink != 0 {
		return "symlink"
	}
	bits := uint32(m.Perm())
	for flag, bit := range map[fs.FileMode]uint32{fs.ModeSetuid: 0o4000, fs.ModeSetgid: 0o2000, fs.ModeSticky: 0o1000} {
		if m&flag != 0 {
			bits |= bit
		}
	}
	return fmt.Sprintf("%04o", bits)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func shortID(s string) string { return sha256Hex([]byte(s))[:16] }

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ---- kept copies ----

// keep records snap as p's copy: its meta in the index, its redacted text
// in the content dir.
func (r *configRun) keep(p string, snap fileSnapshot) error {
	if snap.meta.Diffable {
		if err := WriteFileAtomic(filepath.Join(r.dir, configContentDir), contentName(p), []byte(snap.text), 0o600); err != nil {
			return err
		}
	} else {
		_ = os.Remove(r.contentPath(p))
	}
	if r.idx.Files == nil {
		r.idx.Files = map[string]fileMeta{}
	}
	r.idx.Files[p] = snap.meta
	return nil
}

func (r *configRun) loadContent(p string) string {
	data, err := os.ReadFile(r.contentPath(p))
	if err != nil {
		r.w.deps.Log.Warn("reading a watched file's kept copy", "path", p, "err", err)
		return ""
	}
	return string(data)
}

func (r *configRun) contentPath(p string) string {
	return filepath.Join(r.dir, configContentDir, contentName(p))
}

func contentName(p string) string { return sha256Hex([]byte(p))[:32] }

// save writes the index when it changed.
func (r *configRun) save() error {
	data, err := json.MarshalIndent(r.idx, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the configuration index: %w", err)
	}
	if bytes.Equal(data, r.saved) {
		return nil
	}
	if err := WriteFileAtomic(r.dir, configIndexFile, append(data, '\n'), 0o600); err != nil {
		return err
	}
	r.saved = data
	return nil
}

func loadConfigIndex(dir string) (configIndex, bool, error) {
	data, err := os.ReadFile(filepath.Join(dir, configIndexFile))
	if errors.Is(err, fs.ErrNotExist) {
		return configIndex{Version: configStateVersion, Files: map[string]fileMeta{}}, false, nil
	}
	if err != nil {
		return configIndex{}, false, fmt.Errorf("loading the configuration index: %w", err)
	}
	var idx configIndex
	if err := json.Unmarshal(data, &idx); err != nil {
		return configIndex{}, false, fmt.Errorf("decoding %s: %w", filepath.Join(dir, configIndexFile), err)
	}
	if idx.Version != configStateVersion {
		return configIndex{}, false, fmt.Errorf("decoding %s: version %d, want %d", filepath.Join(dir, configIndexFile), idx.Version, configStateVersion)
	}
	if idx.Files == nil {
		idx.Files = map[string]fileMeta{}
	}
	return idx, true, nil
}

// syncWatches moves the inotify watches to dirs.
func (r *configRun) syncWatches(dirs map[string]bool) {
	if r.watcher == nil {
		return
	}
	have := map[string]bool{}
	for _, d := range r.watcher.WatchList() {
		have[d] = true
		if !dirs[d] {
			_ = r.watcher.Remove(d)
		}
	}
	for d := range dirs {
		if have[d] {
			continue
		}
		if err := r.watcher.Add(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.w.deps.Log.Warn("inotify: watching a directory", "dir", d, "err", err)
		}
	}
}

// ---- redaction ----

// redactRule is one pattern of secrets.
type redactRule struct {
	re *regexp.Regexp
	// groups are the submatches that are secrets; none: the whole match.
	groups []int
}

func compileRedactions(exprs []string) ([]redactRule, error) {
	rules := make([]redactRule, 0, len(exprs))
	for i, expr := range exprs {
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("compiling redaction %d: %w", i, err)
		}
		rule := redactRule{re: re}
		for g, name := range re.SubexpNames() {
			if name == "secret" {
				rule.groups = append(rule.groups, g)
			}
		}
		if rule.groups == nil && re.NumSubexp() > 0 {
			rule.groups = []int{1}
		}
		rules = append(rules, rule)
	}
	return rules, nil
}

// redact replaces every secret in text by a tag "<redacted:xxxxxxxx>", an
// HMAC of the secret under the agent's own key: a diff still shows which
// secret changed, and the tag cannot be checked against guesses without
// the key. It returns how many secrets it replaced.
func (r *configRun) redact(text string) (string, int) {
	n := 0
	for _, rule := range r.w.rules {
		matches := rule.re.FindAllStringSubmatchIndex(text, -1)
		if matches == nil {
			continue
		}
		var b strings.Builder
		last := 0
		for _, m := range matches {
			for _, s := range rule.spans(m) {
				if s[0] < last {
					continue
				}
				b.WriteString(text[last:s[0]])
				b.WriteString(r.tag(text[s[0]:s[1]]))
				last = s[1]
				n++
			}
		}
		b.WriteString(text[last:])
		text = b.String()
	}
	return text, n
}

// spans returns the non-empty secret spans of one match.
func (rule redactRule) spans(m []int) [][2]int {
	if rule.groups == nil {
		if m[1] > m[0] {
			return [][2]int{{m[0], m[1]}}
		}
		return nil
	}
	var out [][2]int
	for _, g := range rule.groups {
		if 2*g+1 < len(m) && m[2*g] >= 0 && m[2*g+1] > m[2*g] {
			out = append(out, [2]int{m[2*g], m[2*g+1]})
		}
	}
	return out
}

func (r *configRun) tag(secret string) string {
	mac := hmac.New(sha256.New, r.key)
	mac.Write([]byte(secret))
	return "<redacted:" + hex.EncodeToString(mac.Sum(nil))[:8] + ">"
}

// loadRedactionKey reads the redaction key, making one the first time.
func loadRedactionKey(dir string) ([]byte, error) {
	key, err := os.ReadFile(filepath.Join(dir, configKeyFile))
	if err == nil && len(key) == 32 {
		return key, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("loading the redaction key: %w", err)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("making the redaction key: %w", err)
	}
	if err := WriteFileAtomic(dir, configKeyFile, key, 0o600); err != nil {
		return nil, fmt.Errorf("saving the redaction key: %w", err)
	}
	return key, nil
}

// ---- unified diff ----

// textLines splits text into lines without their newlines.
func textLines(text string) []string {
	if text == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(text, "\n"), "\n")
}

// diffEdit is one line of an edit script: kept, removed (-) or added (+).
type diffEdit struct {
	op   byte
	line string
}

// editScript returns a shortest edit script from a to b: common prefix
// and suffix kept, the middle by longest common subsequence (or replaced
// whole when the table would exceed maxDiffCells).
func editScript(a, b []string) []diffEdit {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	es := make([]diffEdit, 0, len(a)+len(b))
	for _, l := range a[:pre] {
		es = append(es, diffEdit{' ', l})
	}
	es = append(es, lcsEdits(a[pre:len(a)-suf], b[pre:len(b)-suf])...)
	for _, l := range a[len(a)-suf:] {
		es = append(es, diffEdit{' ', l})
	}
	return es
}

func lcsEdits(a, b []string) []diffEdit {
	n, m := len(a), len(b)
	var es []diffEdit
	if n == 0 || m == 0 || n*m > maxDiffCells {
		for _, l := range a {
			es = append(es, diffEdit{'-', l})
		}
		for _, l := range b {
			es = append(es, diffEdit{'+', l})
		}
		return es
	}
	w := m + 1
	lcs := make([]int32, (n+1)*w) // lcs[i*w+j]: LCS of a[i:] and b[j:]
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i*w+j] = lcs[(i+1)*w+j+1] + 1
			} else {
				lcs[i*w+j] = max(lcs[(i+1)*w+j], lcs[i*w+j+1])
			}
		}
	}
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case a[i] == b[j]:
			es = append(es, diffEdit{' ', a[i]})
			i, j = i+1, j+1
		case lcs[(i+1)*w+j] >= lcs[i*w+j+1]:
			es = append(es, diffEdit{'-', a[i]})
			i++
		default:
			es = append(es, diffEdit{'+', b[j]})
			j++
		}
	}
	for ; i < n; i++ {
		es = append(es, diffEdit{'-', a[i]})
	}
	for ; j < m; j++ {
		es = append(es, diffEdit{'+', b[j]})
	}
	return es
}

// unifiedDiff returns the unified diff of a and b (diffContext lines of
// context) under the headers from and to, at most maxLines lines (the
// last then says how many were left out), and the counts of lines added
// and removed.
func unifiedDiff(from, to string, a, b []string, maxLines int) (out []string, added, removed int) {
	es := editScript(a, b)
	// ac[k], bc[k]: lines of a and b before edit k.
	ac, bc := make([]int, len(es)+1), make([]int, len(es)+1)
	for k, e := range es {
		ac[k+1], bc[k+1] = ac[k], bc[k]
		if e.op != '+' {
			ac[k+1]++
		}
		if e.op != '-' {
			bc[k+1]++
		}
		switch e.op {
		case '+':
			added++
		case '-':
			removed++
		}
	}
	if added == 0 && removed == 0 {
		return nil, 0, 0
	}
	out = []string{"--- " + from, "+++ " + to}
	for k := 0; k < len(es); {
		if es[k].op == ' ' {
			k++
			continue
		}
		start, lastChange := max(0, k-diffContext), k
		end := k
		for ; end < len(es); end++ {
			if es[end].op != ' ' {
				lastChange = end
			} else if end-lastChange > 2*diffContext {
				break
			}
		}
		end = min(len(es), lastChange+diffContext+1)
		out = append(out, "@@ -"+hunkRange(ac[start], ac[end]-ac[start])+" +"+hunkRange(bc[start], bc[end]-bc[start])+" @@")
		for _, e := range es[start:end] {
			out = append(out, string(e.op)+e.line)
		}
		k = end
	}
	if len(out) > maxLines {
		left := len(out) - (maxLines - 1)
		out = append(out[:maxLines-1], fmt.Sprintf("… %d more diff lines left out", left))
	}
	return out, added, removed
}

// hunkRange renders a hunk's range: start is the count of lines before it;
// an empty range names the line before it, as diff -u does.
func hunkRange(before, n int) string {
	if n == 0 {
		return fmt.Sprintf("%d,0", before)
	}
	if n == 1 {
		return fmt.Sprintf("%d", before+1)
	}
	return fmt.Sprintf("%d,%d", before+1, n)
}
