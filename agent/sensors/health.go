package sensors

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock"
)

// The health watcher: restarts and crashes of the gateway's own programs
// (charon, sshd, the agent itself, WireGuard devices, systemd units), and
// the kernel's OOM kills, warnings and oopses, each a `crash` finding.
//
// It is level-based: every Interval it reads what is running now and
// compares it with what it saw last, and it keeps that picture in the
// state dir, so a charon that restarted while the agent itself was down is
// still reported when the agent comes back.

// Names and defaults of the health watcher.
const (
	HealthSensorName = "health"
	// HealthStateFile is the health watcher's state in the agent's state
	// dir: the processes, devices and units it saw last, the kernel log
	// position, and the agent's own run record.
	HealthStateFile        = "sensors-health.json"
	DefaultHealthInterval  = 5 * time.Second
	DefaultKernelLog       = "/dev/kmsg"
	DefaultKernelRateLimit = time.Minute
	DefaultSystemctl       = "systemctl"
	DefaultProcRoot        = "/proc"
	// KernelLogOff turns the kernel log off (sensors.health.kernel_log).
	KernelLogOff = "off"
	// maxCommLen is the longest name /proc/PID/comm shows (TASK_COMM_LEN-1).
	maxCommLen = 15
	// userHZ is the unit of /proc/PID/stat's start time: USER_HZ is 100 on
	// every architecture Warden's agent runs on.
	userHZ = 100
	// systemctlTimeout bounds one `systemctl show`.
	systemctlTimeout   = 10 * time.Second
	healthStateVersion = 1
)

// DefaultHealthProcesses are watched when sensors.health.processes is not
// set; their crashes are high severity.
var DefaultHealthProcesses = []string{"charon", "sshd"}

// HealthConfig configures the health watcher (sensors.health).
type HealthConfig struct {
	Enabled bool `yaml:"enabled"`
	// Processes names the programs to watch, as /proc/PID/comm shows them
	// (at most 15 bytes: "charon", "sshd", "wireguard-go"). Only the top of
	// each program's process tree is watched, so sshd's per-session
	// children coming and going is not a crash. Default: charon, sshd; an
	// empty list watches none.
	Processes []string `yaml:"processes"`
	// Critical names the watched programs whose crash is high severity;
	// the others' crashes are medium. Default: the same as Processes.
	Critical []string `yaml:"critical"`
	// AllNamespaces watches matching processes in every network
	// namespace. By default only those in one namespace count (one host
	// may run a charon per site namespace): NetNamespace.
	AllNamespaces bool `yaml:"all_namespaces"`
	// NetNamespace is the network namespace whose processes are watched,
	// as a path: /run/netns/NAME or /proc/PID/ns/net. Default: the
	// agent's own (<proc_root>/self/ns/net).
	NetNamespace string `yaml:"net_namespace"`
	// WireGuardDevices are links whose disappearance is a crash (a killed
	// wireguard-go takes its device with it). A link set down, as the
	// quarantine does, is not a disappearance.
	WireGuardDevices []string `yaml:"wireguard_devices"`
	// Units are systemd units to watch with `systemctl show` (failed,
	// restarted by systemd, stopped).
	Units []string `yaml:"units"`
	// Systemctl is the systemctl program (default "systemctl", found in
	// PATH).
	Systemctl string `yaml:"systemctl"`
	// KernelLog is where kernel messages are read: /dev/kmsg (default), a
	// file that grows (a kern.log, or a test's file), or "off".
	KernelLog string `yaml:"kernel_log"`
	// KernelRateLimit is the shortest time between two findings of the
	// same kernel sign (a warning in a loop must not flood the queue);
	// the next finding counts those left out. Default one minute.
	KernelRateLimit time.Duration `yaml:"kernel_rate_limit"`
	// Interval is how often processes, devices and units are read
	// (default 5 s).
	Interval time.Duration `yaml:"interval"`
	// ProcRoot is where proc is mounted (default /proc; tests use a fake).
	ProcRoot string `yaml:"proc_root"`
}

// WithDefaults returns c with unset fields set to their defaults. A nil
// Processes or Critical is unset; an empty one is not.
func (c HealthConfig) WithDefaults() HealthConfig {
	if c.Processes == nil {
		c.Processes = slices.Clone(DefaultHealthProcesses)
	}
	if c.Critical == nil {
		c.Critical = slices.Clone(c.Processes)
	}
	if c.Systemctl == "" {
		c.Systemctl = DefaultSystemctl
	}
	if c.KernelLog == "" {
		c.KernelLog = DefaultKernelLog
	}
	if c.KernelRateLimit == 0 {
		c.KernelRateLimit = DefaultKernelRateLimit
	}
	if c.Interval == 0 {
		c.Interval = DefaultHealthInterval
	}
	if c.ProcRoot == "" {
		c.ProcRoot = DefaultProcRoot
	}
	return c
}

// Validate checks c after WithDefaults, naming each bad field.
func (c HealthConfig) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for i, p := range c.Processes {
		if err := checkCommName(p); err != nil {
			bad("sensors.health.processes[%d]: %q %w", i, p, err)
		}
	}
	for i, p := range c.Critical {
		if !slices.Contains(c.Processes, p) {
			bad("sensors.health.critical[%d]: %q is not among sensors.health.processes", i, p)
		}
	}
	for i, d := range c.WireGuardDevices {
		if err := checkLinkName(d); err != nil {
			bad("sensors.health.wireguard_devices[%d]: %q %w", i, d, err)
		}
	}
	for i, u := range c.Units {
		if err := checkUnitName(u); err != nil {
			bad("sensors.health.units[%d]: %q %w", i, u, err)
		}
	}
	if c.KernelLog != KernelLogOff && !filepath.IsAbs(c.KernelLog) {
		bad("sensors.health.kernel_log: %q is neither an absolute path nor %q", c.KernelLog, KernelLogOff)
	}
	if c.KernelRateLimit < 0 {
		bad("sensors.health.kernel_rate_limit: %s is negative", c.KernelRateLimit)
	}
	if c.Interval < 100*time.Millisecond {
		bad("sensors.health.interval: %s is shorter than 100ms", c.Interval)
	}
	if !filepath.IsAbs(c.ProcRoot) {
		bad("sensors.health.proc_root: %q is not an absolute path", c.ProcRoot)
	}
	if c.NetNamespace != "" && !filepath.IsAbs(c.NetNamespace) {
		bad("sensors.health.net_namespace: %q is not an absolute path", c.NetNamespace)
	}
	return errors.Join(errs...)
}

func checkCommName(s string) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case len(s) > maxCommLen:
		return fmt.Errorf("is longer than %d bytes, the most /proc/PID/comm shows", maxCommLen)
	case strings.ContainsAny(s, "/\n"):
		return errors.New("contains / or a newline")
	}
	return nil
}

func checkLinkName(s string) error {
	if s == "" || len(s) > maxCommLen || strings.ContainsAny(s, "/ \t\n:") {
		return errors.New("is not a network interface name")
	}
	return nil
}

// checkUnitName accepts systemd unit names (letters, digits, ":-_.\@");
// a leading "-" could be read as an option.
func checkUnitName(s string) error {
	if s == "" || strings.HasPrefix(s, "-") {
		return errors.New("is not a systemd unit name")
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(":-_.\\@", r)
		if !ok {
			return fmt.Errorf("is not a systemd unit name (%q)", r)
		}
	}
	return nil
}

// HealthDeps are the health watcher's seams.
type HealthDeps struct {
	// StateDir is the agent's state dir, where HealthStateFile is kept
	// (required).
	StateDir string
	// Clock defaults to clock.Real.
	Clock clock.Clock
	// Log defaults to discarding.
	Log *slog.Logger
	// Links lists the link names of the agent's network namespace
	// (default: net.Interfaces).
	Links func() ([]string, error)
	// Systemctl runs systemctl with args and returns its standard output
	// (default: exec of HealthConfig.Systemctl with an argument array).
	Systemctl func(ctx context.Context, args ...string) ([]byte, error)
}

// Health is the health watcher.
type Health struct {
	cfg      HealthConfig
	deps     HealthDeps
	watched  map[string]bool
	critical map[string]bool

	// Test hooks: started is called once Run has read its state, opened
	// the kernel log and taken its first look; looked after every look.
	started func()
	looked  func()
}

var _ Sensor = (*Health)(nil)

// NewHealth returns the health watcher for cfg (defaulted and validated
// here).
func NewHealth(cfg HealthConfig, deps HealthDeps) (Sensor, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.StateDir == "" {
		return nil, errors.New("health watcher: no state dir")
	}
	if deps.Clock == nil {
		deps.Clock = clock.Real
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Links == nil {
		deps.Links = interfaceNames
	}
	if deps.Systemctl == nil {
		deps.Systemctl = execSystemctl(cfg.Systemctl)
	}
	h := &Health{cfg: cfg, deps: deps, watched: map[string]bool{}, critical: map[string]bool{}}
	for _, p := range cfg.Processes {
		h.watched[p] = true
	}
	for _, p := range cfg.Critical {
		h.critical[p] = true
	}
	return h, nil
}

// Name implements Sensor.
func (h *Health) Name() string { return HealthSensorName }

// Run implements Sensor: it reads its state, reports what changed while
// the agent was not watching (the agent's own unclean stop, a reboot,
// programs that restarted), then every Interval compares processes,
// devices and units with the last look, and reports kernel crash signs as
// they are logged. When ctx ends it records a clean stop.
func (h *Health) Run(ctx context.Context, emit func(wire.Finding)) error {
	r, err := h.begin(ctx, emit)
	if err != nil {
		return err
	}
	defer r.kernel.close()
	if h.started != nil {
		h.started()
	}
	tick := h.deps.Clock.After(h.cfg.Interval)
	for {
		select {
		case <-ctx.Done():
			if err := r.stop(); err != nil {
				return errors.Join(ctx.Err(), err)
			}
			return ctx.Err()
		case rec, ok := <-r.kernel.records:
			if !ok {
				r.kernel.records = nil // the reader stopped; it logged why
				continue
			}
			r.handleKernel(rec, emit)
		case <-tick:
			for _, rec := range r.kernel.poll() {
				r.handleKernel(rec, emit)
			}
			r.look(ctx, emit)
			tick = h.deps.Clock.After(h.cfg.Interval)
		}
	}
}

// healthRun is one Run's working state.
type healthRun struct {
	h      *Health
	st     healthState
	saved  []byte // st as last written
	boot   bootInfo
	selfNS string
	kernel *kernelSource
	oom    map[int]string // pid → its "oom-kill:" line, until its kill line
	limit  rateLimiter
	warned map[string]string // source → the last error logged for it
}

// warn logs err for source unless it is the error logged last for it: a
// missing systemctl must not fill the log every Interval.
func (r *healthRun) warn(source string, err error) {
	if err == nil {
		delete(r.warned, source)
		return
	}
	if r.warned[source] == err.Error() {
		return
	}
	r.warned[source] = err.Error()
	r.h.deps.Log.Warn("health watcher: "+source, "err", err)
}

// bootInfo is what /proc says about this boot.
type bootInfo struct {
	id    string    // /proc/sys/kernel/random/boot_id ("" when unknown)
	btime time.Time // boot time, for process start times
}

// begin loads the state, judges the agent's previous run, opens the
// kernel log and takes the first look, reporting what changed since the
// state was written.
func (h *Health) begin(ctx context.Context, emit func(wire.Finding)) (*healthRun, error) {
	if err := os.MkdirAll(h.deps.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("making the state dir: %w", err)
	}
	st, hadState, err := loadHealthState(h.deps.StateDir)
	if err != nil {
		// Watching without history beats not watching.
		h.deps.Log.Warn("health watcher: starting without its state", "err", err)
		st, hadState = healthState{Version: healthStateVersion}, false
	}
	r := &healthRun{h: h, st: st, oom: map[int]string{}, warned: map[string]string{},
		limit: rateLimiter{every: h.cfg.KernelRateLimit, last: map[string]time.Time{}, left: map[string]int{}}}
	r.boot = readBootInfo(h.cfg.ProcRoot)
	ns := h.cfg.NetNamespace
	if ns == "" {
		ns = filepath.Join(h.cfg.ProcRoot, "self", "ns", "net")
	}
	r.selfNS = namespaceID(ns)
	now := h.deps.Clock.Now()
	self, err := readProcStat(filepath.Join(h.cfg.ProcRoot, "self", "stat"))
	if err != nil {
		return nil, fmt.Errorf("reading the agent's own process: %w", err)
	}
	if f, ok := judgePreviousRun(st.Agent, hadState, st.BootID, r.boot.id, now); ok {
		emit(f)
	}
	sameBoot := hadState && st.BootID != "" && st.BootID == r.boot.id
	if !sameBoot {
		// Processes, devices and units of another boot say nothing about
		// this one: start a new picture.
		r.st.Processes, r.st.Links, r.st.Units, r.st.KernelSeq = nil, nil, nil, nil
	}
	r.st.Agent = nextAgentRecord(st.Agent, hadState, self, now)
	r.st.BootID = r.boot.id
	r.kernel = h.openKernel(r.st.KernelSeq)
	r.look(ctx, emit)
	if err := r.save(); err != nil {
		r.kernel.close()
		return nil, err
	}
	return r, nil
}

// stop records a clean stop.
func (r *healthRun) stop() error {
	r.st.Agent.Clean = true
	return r.save()
}

// look compares processes, devices and units with the last look, emits a
// finding per crash, and saves the state when it changed.
func (r *healthRun) look(ctx context.Context, emit func(wire.Finding)) {
	now := r.h.deps.Clock.Now()
	for _, f := range r.lookProcesses(now) {
		emit(f)
	}
	for _, f := range r.lookLinks(now) {
		emit(f)
	}
	for _, f := range r.lookUnits(ctx, now) {
		emit(f)
	}
	if r.kernel.device && r.kernel.seq != nil {
		r.st.KernelSeq = r.kernel.seq
	}
	r.warn("saving state", r.save())
	if r.h.looked != nil {
		r.h.looked()
	}
}

// save writes the state when it changed since the last write.
func (r *healthRun) save() error {
	data, err := json.MarshalIndent(r.st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the health watcher's state: %w", err)
	}
	if bytes.Equal(data, r.saved) {
		return nil
	}
	if err := WriteFileAtomic(r.h.deps.StateDir, HealthStateFile, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving the health watcher's state: %w", err)
	}
	r.saved = data
	return nil
}

// ---- state ----

// healthState is HealthStateFile.
type healthState struct {
	Version int    `json:"version"`
	BootID  string `json:"boot_id"`
	// Agent is this agent's run record.
	Agent agentRecord `json:"agent"`
	// Processes are the watched programs' instances at the last look; a
	// name without an entry has not been looked at yet this boot.
	Processes map[string][]procInstance `json:"processes,omitempty"`
	// Links says which WireGuard devices were present at the last look.
	Links map[string]bool `json:"links,omitempty"`
	// Units are the watched units at the last look.
	Units map[string]unitState `json:"units,omitempty"`
	// KernelSeq is the last /dev/kmsg record handled this boot.
	KernelSeq *uint64 `json:"kernel_seq,omitempty"`
}

// agentRecord is what the agent notes about its own run: a run that ends
// without Clean ended by a kill, a crash or a power cut.
type agentRecord struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start_ticks"`
	// Started is when this run began.
	Started time.Time `json:"started"`
	Clean   bool      `json:"clean_stop"`
	// Runs counts the agent's runs since its state was first written.
	Runs int `json:"runs"`
	// UncleanStops counts runs that ended without a clean stop.
	UncleanStops int `json:"unclean_stops"`
}

func loadHealthState(dir string) (healthState, bool, error) {
	data, err := os.ReadFile(filepath.Join(dir, HealthStateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return healthState{Version: healthStateVersion}, false, nil
	}
	if err != nil {
		return healthState{}, false, fmt.Errorf("loading the health watcher's state: %w", err)
	}
	var st healthState
	if err := json.Unmarshal(data, &st); err != nil {
		return healthState{}, false, fmt.Errorf("decoding %s: %w", HealthStateFile, err)
	}
	if st.Version != healthStateVersion {
		return healthState{}, false, fmt.Errorf("decoding %s: version %d, want %d", HealthStateFile, st.Version, healthStateVersion)
	}
	return st, true, nil
}

// nextAgentRecord is the record of the run starting now.
func nextAgentRecord(prev agentRecord, hadState bool, self procEntry, now time.Time) agentRecord {
	next := agentRecord{PID: self.pid, Start: self.start, Started: now.UTC(), Runs: prev.Runs + 1, UncleanStops: prev.UncleanStops}
	if hadState && !prev.Clean {
		next.UncleanStops++
	}
	return next
}

// judgePreviousRun decides what the previous run's record says now: the
// agent was killed or crashed (same boot, no clean stop), the gateway went
// down under it (another boot, no clean stop), or the gateway rebooted
// cleanly (low severity: worth a line in the record, not an
// investigation).
func judgePreviousRun(prev agentRecord, hadState bool, prevBoot, boot string, now time.Time) (wire.Finding, bool) {
	if !hadState || prev.PID == 0 {
		return wire.Finding{}, false
	}
	rebooted := prevBoot != "" && boot != "" && prevBoot != boot
	f := wire.Finding{
		Kind:       KindCrash,
		Confidence: 0.7,
		ObservedAt: now.UTC(),
		Sensor:     HealthSensorName,
		Labels: map[string]string{
			"source": "agent", "process": "warden-agent", "pid": strconv.Itoa(prev.PID),
			"previous_start": prev.Started.UTC().Format(time.RFC3339),
		},
		Evidence: []string{fmt.Sprintf("previous warden-agent run: pid %d, started %s, boot %s, clean stop %t",
			prev.PID, prev.Started.UTC().Format(time.RFC3339), prevBoot, prev.Clean)},
		Key: fmt.Sprintf("crash/agent/%s/%d@%d", prevBoot, prev.PID, prev.Start),
	}
	switch {
	case rebooted && prev.Clean:
		f.Severity, f.Confidence = SeverityLow, 1
		f.Summary = "the gateway rebooted (warden-agent had stopped cleanly)"
		f.Labels["event"] = "reboot"
	case rebooted:
		f.Severity = SeverityMedium
		f.Summary = "the gateway went down while warden-agent ran: power loss, kernel crash or hard reset"
		f.Labels["event"] = "unclean_reboot"
	case !prev.Clean:
		f.Severity = SeverityMedium
		f.Summary = fmt.Sprintf("warden-agent (pid %d) stopped without a clean shutdown: killed or crashed", prev.PID)
		f.Labels["event"] = "agent_unclean_stop"
	default:
		return wire.Finding{}, false
	}
	return f, true
}

// ---- processes ----

// procInstance is one run of a watched program: a pid and the start time
// that goes with it, so that a reused pid is a new run.
type procInstance struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start_ticks"` // clock ticks after boot
}

// procEntry is what /proc/PID/stat says about a process.
type procEntry struct {
	pid, ppid int
	comm      string
	state     byte // R, S, D, Z (zombie), X (dead), …
	start     uint64
}

// readProcStat reads and parses one /proc/PID/stat.
func readProcStat(path string) (procEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return procEntry{}, err
	}
	return parseProcStat(data)
}

// parseProcStat parses "pid (comm) state ppid … starttime …": comm may
// hold spaces and parentheses, so it runs to the last ")".
func parseProcStat(data []byte) (procEntry, error) {
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 1 || end < open {
		return procEntry{}, errors.New("parsing stat: no (comm)")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data[:open])))
	if err != nil {
		return procEntry{}, fmt.Errorf("parsing stat: pid: %w", err)
	}
	// Fields after comm: state is field 3, ppid 4, starttime 22.
	rest := strings.Fields(string(data[end+1:]))
	if len(rest) < 20 {
		return procEntry{}, fmt.Errorf("parsing stat of %d: %d fields after comm, want at least 20", pid, len(rest))
	}
	ppid, err := strconv.Atoi(rest[1])
	if err != nil {
		return procEntry{}, fmt.Errorf("parsing stat of %d: ppid: %w", pid, err)
	}
	start, err := strconv.ParseUint(rest[19], 10, 64)
	if err != nil {
		return procEntry{}, fmt.Errorf("parsing stat of %d: starttime: %w", pid, err)
	}
	return procEntry{pid: pid, ppid: ppid, comm: string(data[open+1 : end]), state: rest[0][0], start: start}, nil
}

// scanProcesses returns the running instances of every watched program:
// the processes named so whose parent is not named so (the top of the
// program's tree), in the agent's network namespace unless
// AllNamespaces. Processes that vanish while being read are left out, and
// so are those that have exited and wait to be reaped (zombies): a zombie
// runs nothing, and a per-session child (sshd's unprivileged [net]
// process) whose parent exited first is re-parented to PID 1 as one, which
// is no new instance of the program, nor its crash when reaped.
func (r *healthRun) scanProcesses() (map[string][]procInstance, error) {
	root := r.h.cfg.ProcRoot
	dirents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", root, err)
	}
	all := make(map[int]procEntry, len(dirents))
	for _, d := range dirents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if e, err := readProcStat(filepath.Join(root, d.Name(), "stat")); err == nil {
			all[pid] = e
		}
	}
	out := make(map[string][]procInstance, len(r.h.watched))
	for name := range r.h.watched {
		out[name] = []procInstance{}
	}
	for _, e := range all {
		if !r.h.watched[e.comm] || e.state == 'Z' || e.state == 'X' || all[e.ppid].comm == e.comm || !r.inOurNamespace(e.pid) {
			continue
		}
		out[e.comm] = append(out[e.comm], procInstance{PID: e.pid, Start: e.start})
	}
	for _, list := range out {
		slices.SortFunc(list, func(a, b procInstance) int { return a.PID - b.PID })
	}
	return out, nil
}

// inOurNamespace reports whether pid shares the agent's network namespace;
// when either cannot be read it counts as shared (watching too much beats
// missing a crash).
func (r *healthRun) inOurNamespace(pid int) bool {
	if r.h.cfg.AllNamespaces || r.selfNS == "" {
		return true
	}
	ns := namespaceID(filepath.Join(r.h.cfg.ProcRoot, strconv.Itoa(pid), "ns", "net"))
	return ns == "" || ns == r.selfNS
}

// namespaceID names the namespace at path by its nsfs inode, so that
// /proc/PID/ns/net and a /run/netns bind mount of the same namespace
// agree; where it cannot be stat'ed (a fake /proc), by its link text
// ("net:[4026531840]"); "" when neither can be read.
func namespaceID(path string) string {
	if fi, err := os.Stat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			return fmt.Sprintf("ino:%d:%d", st.Dev, st.Ino)
		}
	}
	link, _ := os.Readlink(path)
	return link
}

// procChange is a watched program's run that ended, and the run that
// replaced it if there is one.
type procChange struct {
	name string
	gone procInstance
	next *procInstance
}

// diffProcesses pairs each run that was there before and is not now with a
// new run of the same program, if any. A program with no earlier look has
// nothing to compare.
func diffProcesses(prev, cur map[string][]procInstance) []procChange {
	var out []procChange
	names := make([]string, 0, len(cur))
	for name := range cur {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		before, seen := prev[name]
		if !seen {
			continue
		}
		var gone, started []procInstance
		for _, p := range before {
			if !slices.Contains(cur[name], p) {
				gone = append(gone, p)
			}
		}
		for _, p := range cur[name] {
			if !slices.Contains(before, p) {
				started = append(started, p)
			}
		}
		for i, g := range gone {
			c := procChange{name: name, gone: g}
			if i < len(started) {
				c.next = &started[i]
			}
			out = append(out, c)
		}
	}
	return out
}

// lookProcesses reads the watched programs and returns a finding per run
// that ended.
func (r *healthRun) lookProcesses(now time.Time) []wire.Finding {
	if len(r.h.watched) == 0 {
		return nil
	}
	cur, err := r.scanProcesses()
	r.warn("reading processes", err)
	if err != nil {
		return nil
	}
	var out []wire.Finding
	for _, c := range diffProcesses(r.st.Processes, cur) {
		out = append(out, r.processFinding(c, now))
	}
	r.st.Processes = cur
	return out
}

// processFinding describes a run of a watched program that ended.
func (r *healthRun) processFinding(c procChange, now time.Time) wire.Finding {
	sev := SeverityMedium
	if r.h.critical[c.name] {
		sev = SeverityHigh
	}
	f := wire.Finding{
		Kind: KindCrash, Severity: sev, Confidence: 1, ObservedAt: now.UTC(), Sensor: HealthSensorName,
		Labels: map[string]string{
			"source": "process", "process": c.name, "pid": strconv.Itoa(c.gone.PID),
			"started": r.startTime(c.gone.Start),
		},
		Evidence: []string{fmt.Sprintf("%s pid %d (started %s) is gone", c.name, c.gone.PID, r.startTime(c.gone.Start))},
		Key:      fmt.Sprintf("crash/process/%s/%d@%d", c.name, c.gone.PID, c.gone.Start),
	}
	if c.next == nil {
		f.Summary = fmt.Sprintf("%s (pid %d) stopped and is not running", c.name, c.gone.PID)
		f.Labels["event"] = "stopped"
		return f
	}
	f.Summary = fmt.Sprintf("%s restarted: pid %d ended, pid %d runs now", c.name, c.gone.PID, c.next.PID)
	f.Labels["event"] = "restarted"
	f.Labels["new_pid"] = strconv.Itoa(c.next.PID)
	f.Evidence = append(f.Evidence, fmt.Sprintf("%s pid %d started %s", c.name, c.next.PID, r.startTime(c.next.Start)))
	return f
}

// startTime renders a start time in clock ticks after boot as a time, or
// as ticks when the boot time is unknown.
func (r *healthRun) startTime(ticks uint64) string {
	if r.boot.btime.IsZero() {
		return fmt.Sprintf("%d ticks after boot", ticks)
	}
	return r.boot.btime.Add(time.Duration(ticks) * time.Second / userHZ).UTC().Format(time.RFC3339)
}

// readBootInfo reads the boot id and boot time; what cannot be read stays
// zero.
func readBootInfo(procRoot string) bootInfo {
	var b bootInfo
	if data, err := os.ReadFile(filepath.Join(procRoot, "sys", "kernel", "random", "boot_id")); err == nil {
		b.id = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile(filepath.Join(procRoot, "stat")); err == nil {
		for line := range strings.Lines(string(data)) {
			if v, ok := strings.CutPrefix(line, "btime "); ok {
				if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
					b.btime = time.Unix(s, 0).UTC()
				}
			}
		}
	}
	return b
}

// ---- WireGuard devices ----

// lookLinks returns a finding per configured device that was there at the
// last look and is gone now.
func (r *healthRun) lookLinks(now time.Time) []wire.Finding {
	if len(r.h.cfg.WireGuardDevices) == 0 {
		return nil
	}
	names, err := r.h.deps.Links()
	r.warn("listing links", err)
	if err != nil {
		return nil
	}
	cur := make(map[string]bool, len(r.h.cfg.WireGuardDevices))
	var out []wire.Finding
	for _, dev := range r.h.cfg.WireGuardDevices {
		cur[dev] = slices.Contains(names, dev)
		if was, seen := r.st.Links[dev]; seen && was && !cur[dev] {
			out = append(out, wire.Finding{
				Kind: KindCrash, Severity: SeverityHigh, Confidence: 1, ObservedAt: now.UTC(), Sensor: HealthSensorName,
				Summary:  fmt.Sprintf("WireGuard device %s disappeared", dev),
				Labels:   map[string]string{"source": "link", "device": dev, "event": "disappeared"},
				Evidence: []string{fmt.Sprintf("link %s present at the last look, absent now (links: %s)", dev, strings.Join(names, ","))},
				Key:      fmt.Sprintf("crash/link/%s/%d", dev, now.UnixNano()),
			})
		}
	}
	r.st.Links = cur
	return out
}

func interfaceNames() ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	names := make([]string, len(ifs))
	for i, ifc := range ifs {
		names[i] = ifc.Name
	}
	return names, nil
}

// ---- systemd units ----

// unitProperties are the properties read with `systemctl show -p`.
var unitProperties = []string{"LoadState", "ActiveState", "SubState", "Result", "NRestarts", "InvocationID", "ExecMainCode", "ExecMainStatus"}

// unitState is a unit as `systemctl show` describes it.
type unitState struct {
	LoadState    string `json:"load_state,omitempty"`
	ActiveState  string `json:"active_state,omitempty"`
	SubState     string `json:"sub_state,omitempty"`
	Result       string `json:"result,omitempty"`
	NRestarts    int    `json:"n_restarts,omitempty"`
	InvocationID string `json:"invocation_id,omitempty"`
	ExecMainCode string `json:"exec_main_code,omitempty"`
	ExecMainStat string `json:"exec_main_status,omitempty"`
}

// showUnits runs one `systemctl show` for every unit.
func (r *healthRun) showUnits(ctx context.Context) ([]unitState, error) {
	ctx, cancel := context.WithTimeout(ctx, systemctlTimeout)
	defer cancel()
	args := append([]string{"show", "-p", strings.Join(unitProperties, ","), "--"}, r.h.cfg.Units...)
	out, err := r.h.deps.Systemctl(ctx, args...)
	if err != nil {
		return nil, err
	}
	return parseSystemctlShow(out, len(r.h.cfg.Units))
}

// parseSystemctlShow parses n blocks of Key=Value lines separated by blank
// lines, as `systemctl show` prints them for n units, in order.
func parseSystemctlShow(out []byte, n int) ([]unitState, error) {
	var units []unitState
	cur, open := unitState{}, false
	for line := range strings.Lines(string(out)) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if open {
				units = append(units, cur)
			}
			cur, open = unitState{}, false
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("parsing systemctl show: line %q is not Key=Value", line)
		}
		open = true
		setUnitProperty(&cur, key, val)
	}
	if open {
		units = append(units, cur)
	}
	if len(units) != n {
		return nil, fmt.Errorf("parsing systemctl show: %d units described, want %d", len(units), n)
	}
	return units, nil
}

func setUnitProperty(u *unitState, key, val string) {
	switch key {
	case "LoadState":
		u.LoadState = val
	case "ActiveState":
		u.ActiveState = val
	case "SubState":
		u.SubState = val
	case "Result":
		u.Result = val
	case "NRestarts":
		u.NRestarts, _ = strconv.Atoi(val)
	case "InvocationID":
		u.InvocationID = val
	case "ExecMainCode":
		u.ExecMainCode = val
	case "ExecMainStatus":
		u.ExecMainStat = val
	}
}

// lookUnits returns a finding per watched unit that failed, was
// restarted or stopped since the last look.
func (r *healthRun) lookUnits(ctx context.Context, now time.Time) []wire.Finding {
	if len(r.h.cfg.Units) == 0 {
		return nil
	}
	states, err := r.showUnits(ctx)
	r.warn("reading systemd units", err)
	if err != nil {
		return nil
	}
	var out []wire.Finding
	cur := make(map[string]unitState, len(states))
	for i, unit := range r.h.cfg.Units {
		cur[unit] = states[i]
		if prev, seen := r.st.Units[unit]; seen {
			if f, ok := judgeUnit(unit, prev, states[i], now); ok {
				out = append(out, f)
			}
		}
	}
	r.st.Units = cur
	return out
}

// judgeUnit decides what a unit's change between two looks means: systemd
// restarted it after a failure (NRestarts grew), it failed, it was
// stopped, or someone restarted it (a new invocation, no failure: low).
func judgeUnit(unit string, prev, cur unitState, now time.Time) (wire.Finding, bool) {
	f := wire.Finding{
		Kind: KindCrash, Confidence: 1, ObservedAt: now.UTC(), Sensor: HealthSensorName,
		Labels: map[string]string{"source": "systemd", "unit": unit, "active_state": cur.ActiveState,
			"sub_state": cur.SubState, "result": cur.Result, "n_restarts": strconv.Itoa(cur.NRestarts)},
		Evidence: []string{"before: " + describeUnit(prev), "now: " + describeUnit(cur)},
		Key:      fmt.Sprintf("crash/unit/%s/%s/%d", unit, prev.InvocationID, prev.NRestarts),
	}
	switch {
	case cur.NRestarts > prev.NRestarts:
		f.Severity, f.Labels["event"] = SeverityHigh, "restarted_after_failure"
		f.Summary = fmt.Sprintf("systemd restarted %s after it failed (%d restarts, result %s)", unit, cur.NRestarts, cur.Result)
	case prev.ActiveState == "active" && cur.ActiveState == "failed":
		f.Severity, f.Labels["event"] = SeverityHigh, "failed"
		f.Summary = fmt.Sprintf("%s failed (result %s)", unit, cur.Result)
	case prev.ActiveState == "active" && cur.ActiveState == "inactive":
		f.Severity, f.Labels["event"] = SeverityMedium, "stopped"
		f.Summary = fmt.Sprintf("%s was stopped", unit)
	case prev.ActiveState == "active" && cur.ActiveState == "active" && prev.InvocationID != "" && prev.InvocationID != cur.InvocationID:
		f.Severity, f.Labels["event"] = SeverityLow, "restarted"
		f.Summary = fmt.Sprintf("%s was restarted (not after a failure)", unit)
	default:
		return wire.Finding{}, false
	}
	return f, true
}

func describeUnit(u unitState) string {
	return fmt.Sprintf("ActiveState=%s SubState=%s Result=%s NRestarts=%d InvocationID=%s ExecMainCode=%s ExecMainStatus=%s",
		u.ActiveState, u.SubState, u.Result, u.NRestarts, u.InvocationID, u.ExecMainCode, u.ExecMainStat)
}

// execSystemctl runs path with an argument array, never through a shell.
func execSystemctl(path string) func(ctx context.Context, args ...string) ([]byte, error) {
	return func(ctx context.Context, args ...string) ([]byte, error) {
		out, err := exec.CommandContext(ctx, path, args...).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) && len(ee.Stderr) > 0 {
				msg, _, _ := strings.Cut(strings.TrimSpace(string(ee.Stderr)), "\n")
				return nil, fmt.Errorf("running %s %s: %w: %s", path, args[0], err, msg)
			}
			return nil, fmt.Errorf("running %s %s: %w", path, args[0], err)
		}
		return out, nil
	}
}

// ---- kernel log ----

// kernelRecord is one kernel message.
type kernelRecord struct {
	seq    uint64 // the /dev/kmsg sequence number, when hasSeq
	hasSeq bool
	msg    string // the message
	line   string // as read, for evidence
}

// kernelSource reads kernel messages: /dev/kmsg (a character device, read
// record by record in its own goroutine, resumed after the last record
// handled this boot) or a regular file that grows (polled at each look,
// from its end when the watcher starts, reopened when rotated).
type kernelSource struct {
	log    *slog.Logger
	device bool
	// records carries /dev/kmsg records; nil otherwise.
	records chan kernelRecord
	// resume: records up to this sequence number were handled by an
	// earlier run of this boot.
	resume *uint64
	// seq is the last record handled.
	seq  *uint64
	stop func()

	// A regular file's position.
	path    string
	f       *os.File
	off     int64
	partial []byte
}

// openKernel opens the configured kernel log; when it cannot, the watcher
// goes on without it (and says so).
func (h *Health) openKernel(resume *uint64) *kernelSource {
	k := &kernelSource{log: h.deps.Log, path: h.cfg.KernelLog, stop: func() {}}
	if h.cfg.KernelLog == KernelLogOff {
		return k
	}
	f, err := os.Open(h.cfg.KernelLog)
	if err != nil {
		h.deps.Log.Warn("kernel log not read", "path", h.cfg.KernelLog, "err", err)
		return k
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		h.deps.Log.Warn("kernel log not read", "path", h.cfg.KernelLog, "err", err)
		return k
	}
	if fi.Mode()&fs.ModeCharDevice != 0 {
		k.startDevice(f, resume)
		return k
	}
	k.f = f
	k.off, err = f.Seek(0, 2)
	if err != nil {
		h.deps.Log.Warn("kernel log: seeking to its end", "path", h.cfg.KernelLog, "err", err)
	}
	return k
}

// startDevice starts reading /dev/kmsg: from the oldest record kept when
// an earlier run of this boot left a position, else from now on.
func (k *kernelSource) startDevice(f *os.File, resume *uint64) {
	k.device, k.resume = true, resume
	if resume == nil {
		if _, err := f.Seek(0, 2); err != nil {
			k.log.Warn("kernel log: seeking to its end", "path", k.path, "err", err)
		}
	}
	k.records = make(chan kernelRecord, 1024)
	done := make(chan struct{})
	quit := make(chan struct{})
	go func() {
		defer close(done)
		defer close(k.records)
		k.readDevice(f, quit)
	}()
	k.stop = func() {
		close(quit)
		_ = f.Close() // unblocks the read: /dev/kmsg is pollable
		<-done
	}
}

// readDevice reads one record per read(2) until f is closed.
func (k *kernelSource) readDevice(f *os.File, quit <-chan struct{}) {
	buf := make([]byte, 16<<10) // a record is at most 8 KiB; a shorter buffer fails the read
	for {
		n, err := f.Read(buf)
		if errors.Is(err, syscall.EPIPE) {
			continue // records were overwritten before we read them
		}
		if err != nil {
			select {
			case <-quit:
			default:
				k.log.Warn("kernel log: reading stopped", "path", k.path, "err", err)
			}
			return
		}
		rec := parseKernelLine(strings.TrimRight(string(buf[:n]), "\n"))
		select {
		case k.records <- rec:
		case <-quit:
			return
		}
	}
}

// poll returns the complete lines appended to a regular file since the
// last poll; a shorter file was truncated and a new inode was rotated in:
// both are read from their start.
func (k *kernelSource) poll() []kernelRecord {
	if k.f == nil {
		return nil
	}
	if k.rotated() {
		f, err := os.Open(k.path)
		if err != nil {
			return nil // between rotation and the new file: next time
		}
		_ = k.f.Close()
		k.f, k.off, k.partial = f, 0, nil
	}
	if fi, err := k.f.Stat(); err == nil && fi.Size() < k.off {
		k.off, k.partial = 0, nil
	}
	data := make([]byte, 0, 64<<10)
	buf := make([]byte, 64<<10)
	for len(data) < 4<<20 {
		n, err := k.f.ReadAt(buf, k.off)
		data = append(data, buf[:n]...)
		k.off += int64(n)
		if err != nil || n == 0 {
			break
		}
	}
	data = append(k.partial, data...)
	last := bytes.LastIndexByte(data, '\n')
	if last < 0 {
		k.partial = data
		return nil
	}
	k.partial = slices.Clone(data[last+1:])
	var out []kernelRecord
	for line := range strings.Lines(string(data[:last+1])) {
		if line = strings.TrimRight(line, "\r\n"); line != "" {
			out = append(out, parseKernelLine(line))
		}
	}
	return out
}

// rotated reports whether the path now names another file than the one
// open.
func (k *kernelSource) rotated() bool {
	cur, err1 := k.f.Stat()
	now, err2 := os.Stat(k.path)
	return err1 == nil && err2 == nil && !os.SameFile(cur, now)
}

func (k *kernelSource) close() {
	k.stop()
	if k.f != nil {
		_ = k.f.Close()
	}
}

// parseKernelLine splits a /dev/kmsg record ("pri,seq,usec,flags;message"
// and continuation lines) into its sequence number and message; any other
// line (dmesg, syslog) is all message.
func parseKernelLine(line string) kernelRecord {
	rec := kernelRecord{msg: line, line: line}
	head, body, ok := strings.Cut(line, ";")
	if !ok {
		return rec
	}
	fields := strings.Split(head, ",")
	if len(fields) < 4 {
		return rec
	}
	for _, f := range fields[:3] {
		if _, err := strconv.ParseUint(f, 10, 64); err != nil {
			return rec
		}
	}
	rec.seq, _ = strconv.ParseUint(fields[1], 10, 64)
	rec.hasSeq = true
	rec.msg, _, _ = strings.Cut(body, "\n") // continuation lines are key=value metadata
	rec.line = head + ";" + rec.msg
	return rec
}

// Kernel crash signs.
const (
	kernelOOMKill  = "oom_kill"
	kernelOOMNote  = "oom_note" // the "oom-kill:" summary before the kill line
	kernelWarning  = "kernel_warning"
	kernelBug      = "kernel_bug"
	kernelSegfault = "segfault"
)

// kernelSign is what a kernel message says, if it is a crash sign.
type kernelSign struct {
	event   string
	process string
	pid     int
	detail  string
}

var (
	reOOMKilled = regexp.MustCompile(`Killed process (\d+) \((.+?)\)(?: |$)`)
	reOOMNote   = regexp.MustCompile(`oom-kill:.*,task=(.*),pid=(\d+),uid=\d+`)
	reSegfault  = regexp.MustCompile(`(\S+)\[(\d+)\]: (segfault) at `)
	reTrap      = regexp.MustCompile(`traps: (\S+)\[(\d+)\] (general protection fault|trap [^:]+?) ip:`)
	reWarning   = regexp.MustCompile(`WARNING: (?:CPU: \d+ PID: \d+ )?at (\S+)`)
	reBug       = regexp.MustCompile(`(?:\bBUG: (.+)|kernel BUG at (\S+)|\b((?:Oops|general protection fault): [0-9a-f]+ \[#\d+\].*))`)
)

// classifyKernel recognises the crash signs of a kernel message.
func classifyKernel(msg string) (kernelSign, bool) {
	if m := reOOMKilled.FindStringSubmatch(msg); m != nil {
		pid, _ := strconv.Atoi(m[1])
		return kernelSign{event: kernelOOMKill, process: m[2], pid: pid}, true
	}
	if m := reOOMNote.FindStringSubmatch(msg); m != nil {
		pid, _ := strconv.Atoi(m[2])
		return kernelSign{event: kernelOOMNote, process: m[1], pid: pid}, true
	}
	for _, re := range []*regexp.Regexp{reSegfault, reTrap} {
		if m := re.FindStringSubmatch(msg); m != nil {
			pid, _ := strconv.Atoi(m[2])
			return kernelSign{event: kernelSegfault, process: m[1], pid: pid, detail: m[3]}, true
		}
	}
	if m := reWarning.FindStringSubmatch(msg); m != nil {
		return kernelSign{event: kernelWarning, detail: m[1]}, true
	}
	if m := reBug.FindStringSubmatch(msg); m != nil {
		return kernelSign{event: kernelBug, detail: clip(m[1]+m[2]+m[3], 160)}, true
	}
	return kernelSign{}, false
}

// handleKernel turns a kernel message into a finding when it is a crash
// sign and the sign's rate limit allows.
func (r *healthRun) handleKernel(rec kernelRecord, emit func(wire.Finding)) {
	k := r.kernel
	if k.device && rec.hasSeq {
		if k.resume != nil && rec.seq <= *k.resume {
			return
		}
		seq := rec.seq
		k.seq = &seq
	}
	sign, ok := classifyKernel(rec.msg)
	if !ok {
		return
	}
	if sign.event == kernelOOMNote {
		if len(r.oom) > 64 {
			clear(r.oom)
		}
		r.oom[sign.pid] = rec.line
		return
	}
	now := r.h.deps.Clock.Now()
	left, ok := r.limit.allow(sign.event+"/"+sign.process, now)
	if !ok {
		return
	}
	f := r.kernelFinding(sign, rec, now)
	if left > 0 {
		f.Labels["left_out"] = strconv.Itoa(left)
		f.Summary += fmt.Sprintf(" (%d more of the same left out)", left)
	}
	emit(f)
}

// kernelFinding describes a kernel crash sign.
func (r *healthRun) kernelFinding(sign kernelSign, rec kernelRecord, now time.Time) wire.Finding {
	f := wire.Finding{
		Kind: KindCrash, Confidence: 1, ObservedAt: now.UTC(), Sensor: HealthSensorName,
		Labels:   map[string]string{"source": "kernel", "event": sign.event},
		Evidence: []string{rec.line},
	}
	if rec.hasSeq && r.kernel.device {
		f.Key = fmt.Sprintf("crash/kernel/%s/%s/%d", sign.event, r.boot.id, rec.seq)
	} else {
		f.Key = fmt.Sprintf("crash/kernel/%s/%s", sign.event, lineID(rec.line))
	}
	if sign.process != "" {
		f.Labels["process"], f.Labels["pid"] = sign.process, strconv.Itoa(sign.pid)
	}
	important := r.h.critical[sign.process] || sign.process == "warden-agent"
	switch sign.event {
	case kernelOOMKill:
		f.Severity = severityIf(important, SeverityHigh, SeverityMedium)
		f.Summary = fmt.Sprintf("the kernel's OOM killer killed %s (pid %d)", sign.process, sign.pid)
		if note, ok := r.oom[sign.pid]; ok {
			f.Evidence = []string{note, rec.line}
			delete(r.oom, sign.pid)
		}
	case kernelSegfault:
		f.Severity = severityIf(important, SeverityHigh, SeverityMedium)
		f.Summary = fmt.Sprintf("%s (pid %d) crashed: %s", sign.process, sign.pid, sign.detail)
	case kernelWarning:
		f.Severity = SeverityMedium
		f.Summary = "kernel warning at " + sign.detail
		f.Labels["at"] = sign.detail
	default:
		f.Severity = SeverityHigh
		f.Summary = "kernel bug: " + sign.detail
	}
	return f
}

// rateLimiter lets a key through at most once per every, counting what it
// held back.
type rateLimiter struct {
	every time.Duration
	last  map[string]time.Time
	left  map[string]int
}

// allow reports whether key may pass at now, and how many were held back
// since it last passed.
func (l *rateLimiter) allow(key string, now time.Time) (left int, ok bool) {
	if l.every <= 0 {
		return 0, true
	}
	if t, seen := l.last[key]; seen && now.Sub(t) < l.every {
		l.left[key]++
		return 0, false
	}
	left = l.left[key]
	delete(l.left, key)
	l.last[key] = now
	return left, true
}

func severityIf(cond bool, yes, no string) string {
	if cond {
		return yes
	}
	return no
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func lineID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}
