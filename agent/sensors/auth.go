package sensors

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock"
)

// Auth sources.
const (
	AuthSourceJournald = "journald"
	AuthSourceFiles    = "files"
)

// Defaults of the authentication watcher.
const (
	DefaultAuthFailureThreshold = 10
	DefaultAuthFailureWindow    = 60 * time.Second
	DefaultAuthPollInterval     = 250 * time.Millisecond
)

// Bounds that keep the watcher's memory small whatever the logs say.
const (
	maxAuthLine       = 8 << 10 // longer lines are cut (evidence) or dropped (journal JSON beyond 1 MiB)
	maxJournalLine    = 1 << 20
	maxAuthSources    = 1 << 16 // sources with failures in the window
	maxAuthTracked    = 1 << 14 // sshd sessions, charon correlations
	maxBurstEvidence  = 50
	authTrackedMaxAge = 10 * time.Minute
	charonDupWindow   = 2 * time.Second
	journalMaxBackoff = 30 * time.Second
)

// AuthConfig configures the authentication watcher (sensors.auth).
type AuthConfig struct {
	Enabled bool `yaml:"enabled"`
	// Source is "journald" (journalctl -f -o json) or "files".
	Source string `yaml:"source"`
	// Files are followed when Source is "files" (/var/log/auth.log,
	// /var/log/charon.log): from their end at start, across rotation
	// (rename and create) and truncation.
	Files []string `yaml:"files"`
	// Journalctl is the journalctl binary (default "journalctl" in PATH).
	Journalctl string `yaml:"journalctl"`
	// SSHDIdentifiers and CharonIdentifiers are the syslog identifiers (or
	// process names) of sshd and charon: defaults sshd, sshd-session
	// (OpenSSH 9.8 and later) and charon, charon-systemd.
	SSHDIdentifiers   []string `yaml:"sshd_identifiers"`
	CharonIdentifiers []string `yaml:"charon_identifiers"`
	// FailureThreshold failures from one source within FailureWindow make
	// an auth_failure_burst (defaults 10 and 60s).
	FailureThreshold int           `yaml:"failure_threshold"`
	FailureWindow    time.Duration `yaml:"failure_window"`
	// AdminUsers are the accounts whose logins are watched; root always is.
	AdminUsers []string `yaml:"admin_users"`
	// TimeZone is the site's IANA time zone (default UTC).
	TimeZone      string            `yaml:"time_zone"`
	BusinessHours AuthBusinessHours `yaml:"business_hours"`
	// ManagementNetworks (CIDRs) are where admins are expected to log in
	// from: logins from there are never new_admin_source.
	ManagementNetworks []string `yaml:"management_networks"`
	// PollInterval is how often followed files are checked for new lines,
	// rotation and truncation (default 250ms), besides whenever inotify
	// reports a change to one.
	PollInterval time.Duration `yaml:"poll_interval"`
}

// AuthBusinessHours are the site's working hours, as in the inventory.
type AuthBusinessHours struct {
	// Start and End are "HH:MM" in the site's time zone; End is exclusive
	// and may be earlier than Start (a night shift). Default 09:00–18:00.
	Start string `yaml:"start"`
	End   string `yaml:"end"`
	// Days are three-letter lower-case names (default mon..fri).
	Days []string `yaml:"days"`
}

// WithDefaults returns c with empty fields set to their defaults.
func (c AuthConfig) WithDefaults() AuthConfig {
	if c.Source == "" {
		c.Source = AuthSourceJournald
	}
	if c.Journalctl == "" {
		c.Journalctl = "journalctl"
	}
	if c.SSHDIdentifiers == nil {
		c.SSHDIdentifiers = []string{"sshd", "sshd-session"}
	}
	if c.CharonIdentifiers == nil {
		c.CharonIdentifiers = []string{"charon", "charon-systemd"}
	}
	if c.FailureThreshold == 0 {
		c.FailureThreshold = DefaultAuthFailureThreshold
	}
	if c.FailureWindow == 0 {
		c.FailureWindow = DefaultAuthFailureWindow
	}
	if c.TimeZone == "" {
		c.TimeZone = "UTC"
	}
	if c.BusinessHours.Start == "" && c.BusinessHours.End == "" {
		c.BusinessHours.Start, c.BusinessHours.End = "09:00", "18:00"
	}
	if len(c.BusinessHours.Days) == 0 {
		c.BusinessHours.Days = []string{"mon", "tue", "wed", "thu", "fri"}
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultAuthPollInterval
	}
	return c
}

// Validate checks c after WithDefaults, naming each bad field.
func (c AuthConfig) Validate() error {
	_, err := c.compile()
	return err
}

// authSettings is a validated AuthConfig in the form the detector uses.
type authSettings struct {
	threshold  int
	window     time.Duration
	admins     map[string]bool
	loc        *time.Location
	start, end time.Duration // since local midnight
	days       map[time.Weekday]bool
	hours      string // "09:00-18:00 mon,tue,…" for summaries
	management []netip.Prefix
	sshd       map[string]bool
	charon     map[string]bool
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

func (c AuthConfig) compile() (authSettings, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch c.Source {
	case AuthSourceJournald:
		if c.Journalctl == "" {
			bad("sensors.auth.journalctl: empty")
		}
	case AuthSourceFiles:
		if len(c.Files) == 0 {
			bad("sensors.auth.files: source is files but no file is named")
		}
		for i, f := range c.Files {
			if f == "" {
				bad("sensors.auth.files[%d]: empty path", i)
			}
		}
	default:
		bad("sensors.auth.source: %q is neither %q nor %q", c.Source, AuthSourceJournald, AuthSourceFiles)
	}
	if len(c.SSHDIdentifiers) == 0 && len(c.CharonIdentifiers) == 0 {
		bad("sensors.auth.sshd_identifiers, charon_identifiers: both empty, nothing to watch")
	}
	if c.FailureThreshold < 1 {
		bad("sensors.auth.failure_threshold: %d is below 1", c.FailureThreshold)
	}
	if c.FailureWindow <= 0 {
		bad("sensors.auth.failure_window: %s is not positive", c.FailureWindow)
	}
	if c.PollInterval <= 0 {
		bad("sensors.auth.poll_interval: %s is not positive", c.PollInterval)
	}
	s := authSettings{
		threshold: c.FailureThreshold,
		window:    c.FailureWindow,
		admins:    map[string]bool{"root": true},
		days:      map[time.Weekday]bool{},
		sshd:      setOf(c.SSHDIdentifiers),
		charon:    setOf(c.CharonIdentifiers),
	}
	for i, u := range c.AdminUsers {
		if strings.TrimSpace(u) == "" {
			bad("sensors.auth.admin_users[%d]: empty", i)
		}
		s.admins[u] = true
	}
	loc, err := time.LoadLocation(c.TimeZone)
	if err != nil {
		bad("sensors.auth.time_zone: unknown time zone %q", c.TimeZone)
	}
	s.loc = loc
	if s.start, err = parseClockTime(c.BusinessHours.Start); err != nil {
		bad("sensors.auth.business_hours.start: %w", err)
	}
	if s.end, err = parseClockTime(c.BusinessHours.End); err != nil {
		bad("sensors.auth.business_hours.end: %w", err)
	}
	for _, d := range c.BusinessHours.Days {
		wd, ok := weekdays[strings.ToLower(d)]
		if !ok {
			bad("sensors.auth.business_hours.days: unknown day %q (use mon..sun)", d)
		}
		s.days[wd] = true
	}
	s.hours = fmt.Sprintf("%s-%s %s", c.BusinessHours.Start, c.BusinessHours.End, strings.Join(c.BusinessHours.Days, ","))
	if s.management, err = ParsePrefixes("sensors.auth.management_networks", c.ManagementNetworks); err != nil {
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

func setOf(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// parseClockTime parses "HH:MM" into the time since midnight.
func parseClockTime(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

// inBusinessHours reports whether t is within the site's hours, in the
// site's zone.
func (s authSettings) inBusinessHours(t time.Time) bool {
	lt := t.In(s.loc)
	since := time.Duration(lt.Hour())*time.Hour + time.Duration(lt.Minute())*time.Minute
	if s.start <= s.end {
		return s.days[lt.Weekday()] && since >= s.start && since < s.end
	}
	// A night shift belongs to the day it starts on.
	if since >= s.start {
		return s.days[lt.Weekday()]
	}
	return since < s.end && s.days[lt.AddDate(0, 0, -1).Weekday()]
}

// JournalOpener starts a journal reader with args (everything after the
// program name) and returns its output, JSON objects one a line. Closing
// the reader stops the reader process and reaps it. It is the seam tests
// replace; the default runs Journalctl.
type JournalOpener func(ctx context.Context, args []string) (io.ReadCloser, error)

// AuthDeps are what the authentication watcher needs besides its config.
type AuthDeps struct {
	// Learned holds the admin login sources; required.
	Learned *Learned
	// Clock is the time rules are judged at (windows, business hours,
	// learning); nil is clock.Real.
	Clock clock.Clock
	// PollClock paces file polling and journal restarts; nil is
	// clock.Real. Tests drive it separately from Clock so that polling
	// does not move the rules' time.
	PollClock clock.Clock
	// OpenJournal replaces running journalctl (tests); nil runs it.
	OpenJournal JournalOpener
	Log         *slog.Logger
}

type authWatcher struct {
	cfg  AuthConfig
	set  authSettings
	deps AuthDeps
}

var _ Sensor = (*authWatcher)(nil)

// NewAuth returns the authentication watcher for cfg (defaults applied
// here); it fails on an invalid config or a missing Learned. The watcher
// reads the results of sshd and charon (IKE) authentications, from
// journald in follow mode or from log files followed like tail -F, and
// reports:
//
//   - auth_failure_burst: FailureThreshold failures from one source within
//     FailureWindow (once per source per window);
//   - off_hours_admin_login: an admin user's successful SSH login outside
//     the site's business hours, in the site's time zone;
//   - new_admin_source: an admin user's successful SSH login from an
//     address outside the management networks never seen before (learned,
//     not reported, during the learning period).
//
// WireGuard has no authentication log: a handshake with an unknown key or a
// bad MAC is dropped silently by the kernel (only a kernel built with
// dynamic debug can be made to print it), so there is nothing to read.
// WireGuard peers are watched by the volume and health watchers instead.
//
// Times are the watcher's clock when a line is read, not the line's own
// timestamp: lines are read as they are written ("since now"), file lines
// carry no year or zone, and one clock keeps windows and business hours
// consistent (and testable). A journal entry's own time is kept as the
// label logged_at.
func NewAuth(cfg AuthConfig, deps AuthDeps) (Sensor, error) {
	cfg = cfg.WithDefaults()
	set, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	if deps.Learned == nil {
		return nil, errors.New("creating the auth watcher: no learned state")
	}
	if deps.Clock == nil {
		deps.Clock = clock.Real
	}
	if deps.PollClock == nil {
		deps.PollClock = clock.Real
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.OpenJournal == nil {
		deps.OpenJournal = execJournal(cfg.Journalctl)
	}
	return &authWatcher{cfg: cfg, set: set, deps: deps}, nil
}

// Name implements Sensor.
func (w *authWatcher) Name() string { return "auth" }

// Run implements Sensor: readers (the journal, or one per file) send
// entries to one loop that judges them, so the detector needs no lock.
func (w *authWatcher) Run(ctx context.Context, emit func(wire.Finding)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	entries := make(chan logEntry, 256)
	readErr := make(chan error, 1)
	var wg sync.WaitGroup
	for _, read := range w.readers() {
		wg.Go(func() {
			if err := read(ctx, entries); err != nil && ctx.Err() == nil {
				select {
				case readErr <- err:
				default:
				}
				cancel()
			}
		})
	}
	defer wg.Wait()
	d := newAuthDetector(w.set, w.deps.Learned)
	for {
		select {
		case <-ctx.Done():
			select {
			case err := <-readErr:
				return err
			default:
				return ctx.Err()
			}
		case e := <-entries:
			for _, f := range d.handle(e, w.deps.Clock.Now()) {
				emit(f)
			}
		}
	}
}

// readers returns one reading loop per source.
func (w *authWatcher) readers() []func(context.Context, chan<- logEntry) error {
	if w.cfg.Source == AuthSourceJournald {
		return []func(context.Context, chan<- logEntry) error{w.followJournal}
	}
	var rs []func(context.Context, chan<- logEntry) error
	for _, path := range w.cfg.Files {
		rs = append(rs, func(ctx context.Context, out chan<- logEntry) error {
			f := &fileFollower{path: path, poll: w.cfg.PollInterval, clk: w.deps.PollClock, log: w.deps.Log}
			return f.follow(ctx, func(line string) {
				if e, ok := parseSyslogLine(line, w.set); ok {
					sendEntry(ctx, out, e)
				}
			})
		})
	}
	return rs
}

func sendEntry(ctx context.Context, out chan<- logEntry, e logEntry) {
	select {
	case out <- e:
	case <-ctx.Done():
	}
}

// ---- log entries ----

// logEntry is one log line of sshd or charon, however it was read.
type logEntry struct {
	Ident   string // the syslog identifier (sshd, charon-systemd, …)
	PID     string
	Message string // the message alone, without charon's thread prefix
	// Thread and IKESA are charon's thread number and IKE SA unique id,
	// when known: they tie a failure to the packet that carried it.
	Thread, IKESA string
	LoggedAt      time.Time // zero when unknown (files)
	Raw           string    // the line as evidence
	// Repeat is how many times the message was logged when syslog folded
	// repeats into one line ("message repeated 5 times: [ … ]"); 0 is once.
	Repeat int
}

var (
	// ident[pid]: or ident: after a timestamp and host.
	reSyslogTag = regexp.MustCompile(`(?:^|\s)([A-Za-z][\w.@-]*)(?:\[(\d+)\])?:\s`)
	// charon's own file logger: "Jun 23 08:07:26 13[IKE] …" (no ident).
	reCharonFile = regexp.MustCompile(`(?:^|\s)(\d{2,})\[[A-Z]{2,4}\] `)
	// charon's prefix in syslog: "13[IKE] <PEER|3> " (the IKE SA part only
	// with ike_name = yes; "<3>" for an unnamed SA).
	reCharonPrefix = regexp.MustCompile(`^(\d+)\[[A-Z]{2,4}\] (?:<(?:[^|>]*\|)?(\d+)> )?`)
	// rsyslog's repeated-message reduction.
	reRepeated = regexp.MustCompile(`^message repeated (\d+) times: \[ ?(.*)\]$`)
)

// parseSyslogLine reads a line of a syslog-style file (auth.log, syslog,
// charon.log) and keeps it when it comes from a watched identifier.
func parseSyslogLine(line string, s authSettings) (logEntry, bool) {
	line = strings.TrimRight(line, "\r\n")
	for _, m := range reSyslogTag.FindAllStringSubmatchIndex(line, 4) {
		ident := line[m[2]:m[3]]
		if !s.sshd[ident] && !s.charon[ident] {
			continue
		}
		e := logEntry{Ident: ident, Message: line[m[1]:], Raw: line}
		if m[4] >= 0 {
			e.PID = line[m[4]:m[5]]
		}
		if r := reRepeated.FindStringSubmatch(e.Message); r != nil {
			e.Repeat, _ = strconv.Atoi(r[1])
			e.Message = r[2]
		}
		e.splitCharonPrefix(s)
		return e, true
	}
	if s.charon["charon"] {
		if m := reCharonFile.FindStringIndex(line); m != nil {
			start := m[0]
			if line[start] == ' ' || line[start] == '\t' {
				start++
			}
			e := logEntry{Ident: "charon", Message: line[start:], Raw: line}
			e.splitCharonPrefix(s)
			return e, true
		}
	}
	return logEntry{}, false
}

// splitCharonPrefix moves charon's "13[IKE] <PEER|3> " into Thread and
// IKESA.
func (e *logEntry) splitCharonPrefix(s authSettings) {
	if !s.charon[e.Ident] {
		return
	}
	m := reCharonPrefix.FindStringSubmatch(e.Message)
	if m == nil {
		return
	}
	e.Message = e.Message[len(m[0]):]
	if e.Thread == "" {
		e.Thread = m[1]
	}
	if e.IKESA == "" {
		e.IKESA = m[2]
	}
}

// journalRecord is the part of a journal entry (journalctl -o json) the
// watcher reads.
type journalRecord struct {
	Cursor      string          `json:"__CURSOR"`
	Realtime    string          `json:"__REALTIME_TIMESTAMP"`
	Message     json.RawMessage `json:"MESSAGE"`
	Identifier  string          `json:"SYSLOG_IDENTIFIER"`
	Comm        string          `json:"_COMM"`
	PID         string          `json:"_PID"`
	SyslogPID   string          `json:"SYSLOG_PID"`
	Thread      string          `json:"THREAD"`
	IKESAUnique string          `json:"IKE_SA_UNIQUE_ID"`
}

// parseJournalLine decodes one JSON line of journalctl -o json; it returns
// the cursor even when the entry is not one the watcher reads.
func parseJournalLine(line []byte, s authSettings) (e logEntry, cursor string, ok bool) {
	var r journalRecord
	if err := json.Unmarshal(line, &r); err != nil {
		return logEntry{}, "", false
	}
	ident := r.Identifier
	if !s.sshd[ident] && !s.charon[ident] {
		ident = r.Comm
	}
	if !s.sshd[ident] && !s.charon[ident] {
		return logEntry{}, r.Cursor, false
	}
	msg, ok := journalMessage(r.Message)
	if !ok {
		return logEntry{}, r.Cursor, false
	}
	e = logEntry{Ident: ident, PID: cmp.Or(r.PID, r.SyslogPID), Message: msg, Thread: r.Thread, IKESA: r.IKESAUnique}
	if us, err := strconv.ParseInt(r.Realtime, 10, 64); err == nil {
		e.LoggedAt = time.UnixMicro(us).UTC()
	}
	e.splitCharonPrefix(s)
	e.Raw = journalEvidence(e, msg)
	return e, r.Cursor, true
}

// journalMessage decodes MESSAGE: a string, or an array of bytes when it is
// not valid UTF-8 (journalctl's JSON format); null (too large) is skipped.
func journalMessage(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, true
	}
	var b []byte
	var ints []int
	if err := json.Unmarshal(raw, &ints); err != nil || len(ints) == 0 {
		return "", false
	}
	for _, i := range ints {
		if i < 0 || i > 255 {
			return "", false
		}
		b = append(b, byte(i))
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), true
}

// journalEvidence is a journal entry written as a syslog line.
func journalEvidence(e logEntry, msg string) string {
	var b strings.Builder
	if !e.LoggedAt.IsZero() {
		b.WriteString(e.LoggedAt.Format(time.RFC3339Nano))
		b.WriteByte(' ')
	}
	b.WriteString(e.Ident)
	if e.PID != "" {
		b.WriteString("[" + e.PID + "]")
	}
	b.WriteString(": ")
	b.WriteString(msg)
	return b.String()
}

// ---- reading the journal ----

// journalArgs are journalctl's arguments: JSON, following, from now or
// after the last entry read (a restarted journalctl misses nothing), only
// the watched identifiers (SYSLOG_IDENTIFIER or, for charon-systemd, which
// logs natively without one, _COMM).
func journalArgs(s authSettings, cursor string) []string {
	args := []string{"--follow", "--output=json", "--no-pager"}
	if cursor != "" {
		args = append(args, "--after-cursor="+cursor)
	} else {
		args = append(args, "--since=now")
	}
	idents := slices.Sorted(func(yield func(string) bool) {
		for k := range s.sshd {
			if !yield(k) {
				return
			}
		}
		for k := range s.charon {
			if !s.sshd[k] && !yield(k) {
				return
			}
		}
	})
	for _, id := range idents {
		args = append(args, "SYSLOG_IDENTIFIER="+id)
	}
	args = append(args, "+")
	for _, id := range idents {
		args = append(args, "_COMM="+id)
	}
	return args
}

// followJournal reads the journal until ctx ends, restarting the reader
// (after the last cursor, with a growing pause) whenever it stops.
func (w *authWatcher) followJournal(ctx context.Context, out chan<- logEntry) error {
	cursor := ""
	pause := time.Second
	for {
		got, err := w.readJournal(ctx, cursor, out)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, exec.ErrNotFound) {
			return err // no journalctl: waiting will not bring one
		}
		if got != "" {
			cursor, pause = got, time.Second
		}
		w.deps.Log.Warn("journal reader stopped, restarting", "sensor", "auth", "err", err, "in", pause)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.deps.PollClock.After(pause):
		}
		pause = min(2*pause, journalMaxBackoff)
	}
}

// readJournal runs one journal reader to its end and returns the last
// cursor it read.
func (w *authWatcher) readJournal(ctx context.Context, cursor string, out chan<- logEntry) (string, error) {
	rc, err := w.deps.OpenJournal(ctx, journalArgs(w.set, cursor))
	if err != nil {
		return "", fmt.Errorf("starting the journal reader: %w", err)
	}
	// A read blocks until journalctl writes: closing the reader when ctx
	// ends is what unblocks it.
	stop := context.AfterFunc(ctx, func() { _ = rc.Close() })
	defer stop()
	last := ""
	var split lineSplitter
	split.max = maxJournalLine
	buf := make([]byte, 64<<10)
	for {
		n, rerr := rc.Read(buf)
		split.feed(buf[:n], func(line []byte) {
			e, c, ok := parseJournalLine(line, w.set)
			if c != "" {
				last = c
			}
			if ok {
				sendEntry(ctx, out, e)
			}
		})
		if rerr != nil {
			cerr := rc.Close()
			if errors.Is(rerr, io.EOF) {
				rerr = cerr
			}
			if rerr == nil {
				rerr = errors.New("journal reader ended")
			}
			return last, rerr
		}
	}
}

// execJournal is the real JournalOpener: journalctl with args, its
// standard error kept (bounded) for the error when it fails.
func execJournal(bin string) JournalOpener {
	return func(ctx context.Context, args []string) (io.ReadCloser, error) {
		path, err := exec.LookPath(bin)
		if err != nil {
			if !errors.Is(err, exec.ErrNotFound) {
				err = fmt.Errorf("%w: %w", exec.ErrNotFound, err) // a path that is missing or not executable
			}
			return nil, fmt.Errorf("sensors.auth.journalctl: %w", err)
		}
		cmd := exec.CommandContext(ctx, path, args...)
		stderr := &boundedBuffer{max: 4 << 10}
		cmd.Stderr = stderr
		cmd.WaitDelay = 5 * time.Second
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, fmt.Errorf("running %s: %w", path, err)
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("running %s: %w", path, err)
		}
		return &journalProcess{ReadCloser: stdout, cmd: cmd, stderr: stderr}, nil
	}
}

type journalProcess struct {
	io.ReadCloser
	cmd    *exec.Cmd
	stderr *boundedBuffer
	once   sync.Once
	err    error
}

// Close stops journalctl and reaps it; an exit it was not asked for is an
// error naming its standard error.
func (p *journalProcess) Close() error {
	p.once.Do(func() {
		exited := p.cmd.ProcessState != nil
		if !exited {
			_ = p.cmd.Process.Kill()
		}
		err := p.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) && !ee.Exited() {
			err = nil // killed by us
		}
		if err != nil {
			p.err = fmt.Errorf("journalctl: %w: %s", err, strings.TrimSpace(p.stderr.String()))
		}
	})
	return p.err
}

// boundedBuffer keeps the first max bytes written to it.
type boundedBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.b.Len(); room > 0 {
		b.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// ---- following files ----

// lineSplitter cuts a byte stream into lines, keeping a partial last line
// for the next feed and dropping lines longer than max (what is left of
// one once its newline comes is dropped too).
type lineSplitter struct {
	max      int
	partial  []byte
	overlong bool
}

func (s *lineSplitter) feed(p []byte, line func([]byte)) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.keep(p)
			return
		}
		s.keep(p[:i])
		if !s.overlong && len(s.partial) > 0 {
			line(bytes.TrimSuffix(s.partial, []byte("\r")))
		}
		s.partial, s.overlong = s.partial[:0], false
		p = p[i+1:]
	}
}

func (s *lineSplitter) keep(p []byte) {
	if s.overlong {
		return
	}
	if len(s.partial)+len(p) > s.max {
		s.partial, s.overlong = s.partial[:0], true
		return
	}
	s.partial = append(s.partial, p...)
}

// reset forgets a partial line (the file it came from was replaced).
func (s *lineSplitter) reset() { s.partial, s.overlong = s.partial[:0], false }

// fileFollower follows one file like tail -F: from its end when it exists
// at start (from its start when it appears later), reopening it when it is
// replaced (rotation by rename and create) and rereading it from the start
// when it shrinks (truncation, copytruncate).
//
// It looks at the file as soon as inotify says the file was written,
// created or renamed (fileWatch), and at every poll besides: a line
// reaches the detector within milliseconds rather than within a poll
// interval, and the poll still finds what inotify cannot tell (a file
// system without it, a watch that could not be added).
type fileFollower struct {
	path string
	poll time.Duration
	clk  clock.Clock
	log  *slog.Logger

	f     *os.File
	info  fs.FileInfo // of the open file
	off   int64
	split lineSplitter
	buf   []byte
}

// follow calls line for every complete line until ctx ends. Errors other
// than the file missing stop it.
func (t *fileFollower) follow(ctx context.Context, line func(string)) error {
	t.split.max = maxAuthLine
	t.buf = make([]byte, 64<<10)
	defer t.close()
	emit := func(b []byte) { line(string(b)) }
	// Watching starts before the first look, so that nothing written after
	// it goes unnoticed until the next poll.
	changed, unwatch := t.watch()
	defer unwatch()
	if err := t.open(true); err != nil {
		return err
	}
	var poll <-chan time.Time
	for {
		if err := t.drain(emit); err != nil {
			return err
		}
		if err := t.check(emit); err != nil {
			return err
		}
		if poll == nil {
			poll = t.clk.After(t.poll)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-poll:
			poll = nil
		case <-changed:
		}
	}
}

// watch has inotify report changes of the followed file (fileWatch). The
// channel receives a value (pending ones coalesce) at each; unwatch stops
// it. Without inotify (no directory, no watches left) the channel is nil
// and the poll alone finds changes.
func (t *fileFollower) watch() (changed <-chan struct{}, unwatch func()) {
	w, err := newFileWatch(t.path)
	if err != nil {
		t.log.Warn("cannot watch a log file with inotify; polling it only", "sensor", "auth", "file", t.path, "every", t.poll, "err", err)
		return nil, func() {}
	}
	return w.changed, w.close
}

// fileWatch reports, through inotify, changes of one file: writes to it
// (and truncation) through a watch on the file itself, and its name being
// created, moved or removed (rotation) through a watch on its directory,
// which outlives the file. Writes to the directory's other files (a busy
// /var/log) wake nothing: a watch on the directory for writes would wake
// the agent for every line of every log there.
type fileWatch struct {
	f       *os.File // the inotify instance, read through Go's poller
	path    string
	dir     int32 // the directory's watch descriptor
	changed chan struct{}
	done    chan struct{}
}

// Watch masks: the directory for the file's name coming and going, the
// file (each one the name held, rotated ones too) for writes.
const (
	inotifyDirMask  = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE | unix.IN_ONLYDIR
	inotifyFileMask = unix.IN_MODIFY
)

func newFileWatch(path string) (*fileWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &fileWatch{path: filepath.Clean(path), changed: make(chan struct{}, 1), done: make(chan struct{})}
	dir, err := unix.InotifyAddWatch(fd, filepath.Dir(w.path), inotifyDirMask)
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("watching %s: %w", filepath.Dir(w.path), err)
	}
	w.dir = int32(dir)
	if _, err := unix.InotifyAddWatch(fd, w.path, inotifyFileMask); err != nil && !errors.Is(err, unix.ENOENT) {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("watching %s: %w", w.path, err)
	}
	w.f = os.NewFile(uintptr(fd), "inotify")
	go w.read()
	return w, nil
}

// read turns inotify's events into wakeups until close, and watches each
// new file the name comes to hold.
func (w *fileWatch) read() {
	defer close(w.done)
	buf := make([]byte, 16<<10)
	base := filepath.Base(w.path)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return // closed
		}
		wake, created := inotifyWakes(buf[:n], w.dir, base)
		if created {
			if rc, err := w.f.SyscallConn(); err == nil {
				_ = rc.Control(func(fd uintptr) { _, _ = unix.InotifyAddWatch(int(fd), w.path, inotifyFileMask) })
			}
		}
		if wake {
			select {
			case w.changed <- struct{}{}:
			default:
			}
		}
	}
}

func (w *fileWatch) close() {
	_ = w.f.Close()
	<-w.done
}

// inotifyWakes reads a buffer of inotify events: wake when one concerns
// the followed file (an event of any watch but the directory's: the file,
// or one rotated away that its writer still finishes; an event of the
// directory naming base; an overflow, which may have eaten one), created
// when base appeared in the directory, a new file to watch.
func inotifyWakes(b []byte, dir int32, base string) (wake, created bool) {
	for len(b) >= unix.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(b[0:]))
		mask := binary.NativeEndian.Uint32(b[4:])
		n := int(binary.NativeEndian.Uint32(b[12:]))
		if n > len(b)-unix.SizeofInotifyEvent {
			return true, false // cannot happen; look anyway
		}
		name := strings.TrimRight(string(b[unix.SizeofInotifyEvent:unix.SizeofInotifyEvent+n]), "\x00")
		b = b[unix.SizeofInotifyEvent+n:]
		switch {
		case mask&unix.IN_Q_OVERFLOW != 0:
			wake = true
		case mask&unix.IN_IGNORED != 0:
			// A watch went away with its file.
		case wd != dir:
			wake = true
		case name == base:
			wake = true
			created = created || mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0
		}
	}
	return wake, created
}

// open opens the file if it exists; atEnd starts at its end.
func (t *fileFollower) open(atEnd bool) error {
	f, err := os.Open(t.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("following %s: %w", t.path, err)
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("following %s: %w", t.path, err)
	}
	t.f, t.info, t.off = f, info, 0
	if atEnd {
		t.off = info.Size()
		if _, err := f.Seek(t.off, io.SeekStart); err != nil {
			return fmt.Errorf("following %s: %w", t.path, err)
		}
	}
	t.split.reset()
	return nil
}

func (t *fileFollower) close() {
	if t.f != nil {
		_ = t.f.Close()
		t.f = nil
	}
}

// drain reads the open file to its current end.
func (t *fileFollower) drain(line func([]byte)) error {
	if t.f == nil {
		return nil
	}
	for {
		n, err := t.f.Read(t.buf)
		t.off += int64(n)
		t.split.feed(t.buf[:n], line)
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", t.path, err)
		}
	}
}

// check notices rotation and truncation; after a rotation it reads the
// new file from its start.
func (t *fileFollower) check(line func([]byte)) error {
	info, err := os.Stat(t.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // rotated away and not yet recreated: keep the old one
	case err != nil:
		return fmt.Errorf("following %s: %w", t.path, err)
	case t.f == nil:
		if err := t.open(false); err != nil {
			return err
		}
		return t.drain(line)
	case !os.SameFile(info, t.info):
		t.close()
		if err := t.open(false); err != nil {
			return err
		}
		return t.drain(line)
	case info.Size() < t.off:
		t.log.Info("log file truncated, reading it from the start", "sensor", "auth", "file", t.path)
		if _, err := t.f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("rereading %s: %w", t.path, err)
		}
		t.off = 0
		t.split.reset()
		return t.drain(line)
	}
	return nil
}

// ---- what a line says ----

// authKind is what an authentication line says.
type authKind int

const (
	authNone authKind = iota
	// authFailure is one failed attempt.
	authFailure
	// authFailedSession says a session failed without saying how often
	// (invalid user, too many attempts, closed while authenticating): it
	// counts as one failure unless the session already counted some.
	authFailedSession
	authSuccess
	// ikePacket is charon receiving a packet: the peer address a later
	// failure on the same IKE SA or thread came from.
	ikePacket
)

// Services (the burst key's middle part).
const (
	serviceSSH = "sshd"
	serviceIKE = "ike"
)

// authEvent is a parsed authentication line.
type authEvent struct {
	Kind    authKind
	Service string
	Source  netip.Addr // invalid when the line names none
	// SourceName is the source when it is not an address (an sshd with
	// UseDNS, or an IKE identity when no packet told the address).
	SourceName string
	User       string
	Method     string
}

var (
	// OpenSSH auth.c: "%s %s%s%s for %s%.100s from %.200s port %d ssh2%s%s".
	// The user is the client's to choose and may contain " from … port …":
	// the greedy user makes the last "from … port N ssh2" win, and the
	// text after it (key fingerprints) is sshd's own.
	reSSHFailed   = regexp.MustCompile(`^Failed (\S+) for (invalid user )?(.*) from (\S+) port (\d+) ssh2(?:: .*)?$`)
	reSSHAccepted = regexp.MustCompile(`^Accepted (\S+) for (.*) from (\S+) port (\d+) ssh2(?:: .*)?$`)
	reSSHInvalid  = regexp.MustCompile(`^Invalid user (.*) from (\S+?)(?: port (\d+))?$`)
	reSSHMaxTries = regexp.MustCompile(`^maximum authentication attempts exceeded for (invalid user )?(.*) from (\S+) port (\d+) ssh2(?: \[preauth\])?$`)
	reSSHClosed   = regexp.MustCompile(`^(?:Connection closed by|Connection reset by|Disconnected from) (?:authenticating|invalid) user (.*) (\S+) port (\d+)(?: \[preauth\])?$`)
	reSSHDisconn  = regexp.MustCompile(`^Disconnecting (?:authenticating|invalid) user (.*) (\S+) port (\d+): .*$`)
)

// parseSSHD reads an sshd message.
func parseSSHD(msg string) authEvent {
	msg = strings.TrimPrefix(msg, "error: ")
	ev := authEvent{Service: serviceSSH}
	if m := reSSHFailed.FindStringSubmatch(msg); m != nil {
		ev.Kind, ev.Method, ev.User = authFailure, m[1], m[3]
		ev.setSource(m[4])
	} else if m := reSSHAccepted.FindStringSubmatch(msg); m != nil {
		ev.Kind, ev.Method, ev.User = authSuccess, m[1], m[2]
		ev.setSource(m[3])
	} else if m := reSSHInvalid.FindStringSubmatch(msg); m != nil {
		ev.Kind, ev.User = authFailedSession, m[1]
		ev.setSource(m[2])
	} else if m := reSSHMaxTries.FindStringSubmatch(msg); m != nil {
		ev.Kind, ev.User = authFailedSession, m[2]
		ev.setSource(m[3])
	} else if m := reSSHClosed.FindStringSubmatch(msg); m != nil {
		ev.Kind, ev.User = authFailedSession, m[1]
		ev.setSource(m[2])
	} else if m := reSSHDisconn.FindStringSubmatch(msg); m != nil {
		ev.Kind, ev.User = authFailedSession, m[1]
		ev.setSource(m[2])
	}
	return ev
}

func (ev *authEvent) setSource(s string) {
	if a, err := netip.ParseAddr(s); err == nil {
		ev.Source = a.Unmap().WithZone("")
		return
	}
	ev.SourceName = s
}

var (
	reIKEPacket    = regexp.MustCompile(`^received packet: from (\S+?)\[\d+\] to `)
	reIKEMACBad    = regexp.MustCompile(`^tried \d+ shared keys? for '(.*)' - '(.*)', but MAC mismatched$`)
	reIKENoPSK     = regexp.MustCompile(`^no shared key found for '(.*)' - '(.*)'$`)
	reIKEAuthFail  = regexp.MustCompile(`^authentication of '(.*)' with .* failed$`)
	reIKENoTrusted = regexp.MustCompile(`^no trusted .* public key found for '(.*)'$`)
	reIKEEAPFail   = regexp.MustCompile(`^EAP method \S+ failed for peer (.*)$`)
)

// parseCharon reads a charon message (prefix already split off). The peer
// is named by its identity here; the detector finds its address.
func parseCharon(msg string) authEvent {
	ev := authEvent{Service: serviceIKE}
	if m := reIKEPacket.FindStringSubmatch(msg); m != nil {
		ev.Kind = ikePacket
		ev.setSource(m[1])
		return ev
	}
	if strings.HasPrefix(msg, "received AUTHENTICATION_FAILED") {
		// We initiated and the peer refused our credentials.
		ev.Kind = authFailure
		return ev
	}
	var peer string
	if m := reIKEMACBad.FindStringSubmatch(msg); m != nil {
		peer = m[2]
	} else if m := reIKENoPSK.FindStringSubmatch(msg); m != nil {
		peer = m[2]
	} else if m := reIKEAuthFail.FindStringSubmatch(msg); m != nil && !strings.Contains(msg, "(myself)") {
		peer = m[1]
	} else if m := reIKENoTrusted.FindStringSubmatch(msg); m != nil {
		peer = m[1]
	} else if m := reIKEEAPFail.FindStringSubmatch(msg); m != nil {
		peer = m[1]
	} else {
		return ev
	}
	ev.Kind, ev.User = authFailure, peer
	return ev
}

// ---- deciding ----

// authDetector judges entries; it is used by one goroutine.
type authDetector struct {
	set     authSettings
	learned *Learned

	runs     map[string]*failureRun // service/source → failures in the window
	sessions map[string]*sshSession // ident/pid → what the session counted
	peers    map[string]tracked     // charon "sa:3" / "thr:13" → last packet's source
	seen     map[string]tracked     // charon failures by message, for duplicate loggers
	swept    time.Time
}

// failureRun is one source's failures within the window, oldest first, at
// most the threshold of them (enough to decide; older ones add nothing).
type failureRun struct {
	service  string
	source   netip.Addr
	name     string
	failures []failure
	users    []string
	fired    time.Time // last burst reported
}

type failure struct {
	at   time.Time
	line string // empty for the repeats of a folded line
}

type sshSession struct {
	at       time.Time
	counted  bool // the session counted a failure
	onlyMark bool // …and only by a failed-session line
}

type tracked struct {
	at    time.Time
	addr  netip.Addr
	ident string
}

func newAuthDetector(set authSettings, learned *Learned) *authDetector {
	return &authDetector{
		set: set, learned: learned,
		runs: map[string]*failureRun{}, sessions: map[string]*sshSession{},
		peers: map[string]tracked{}, seen: map[string]tracked{},
	}
}

// handle judges one entry seen at now and returns the findings it makes.
func (d *authDetector) handle(e logEntry, now time.Time) []wire.Finding {
	d.sweep(now)
	switch {
	case d.set.sshd[e.Ident]:
		return d.handleSSH(e, parseSSHD(e.Message), now)
	case d.set.charon[e.Ident]:
		return d.handleIKE(e, parseCharon(e.Message), now)
	}
	return nil
}

func (d *authDetector) handleSSH(e logEntry, ev authEvent, now time.Time) []wire.Finding {
	switch ev.Kind {
	case authFailure, authFailedSession:
		if !d.countSSH(e, ev.Kind, now) {
			return nil
		}
		return d.failure(ev, e, now, max(e.Repeat, 1))
	case authSuccess:
		return d.success(ev, e, now)
	}
	return nil
}

// countSSH says whether a failure line counts: a failed-session line counts
// only for a session that counted nothing yet, and the first failed attempt
// after it is the same failure ("Invalid user" then "Failed password for
// invalid user").
func (d *authDetector) countSSH(e logEntry, kind authKind, now time.Time) bool {
	if e.PID == "" {
		return true
	}
	key := e.Ident + "/" + e.PID
	s := d.sessions[key]
	if s == nil {
		if len(d.sessions) >= maxAuthTracked {
			return true
		}
		s = &sshSession{}
		d.sessions[key] = s
	}
	s.at = now
	switch {
	case kind == authFailedSession && s.counted:
		return false
	case kind == authFailedSession:
		s.counted, s.onlyMark = true, true
		return true
	case s.onlyMark:
		s.onlyMark = false
		return false
	default:
		s.counted = true
		return true
	}
}

func (d *authDetector) handleIKE(e logEntry, ev authEvent, now time.Time) []wire.Finding {
	switch ev.Kind {
	case ikePacket:
		if ev.Source.IsValid() {
			d.track(d.peers, ikeKeys(e), tracked{at: now, addr: ev.Source})
		}
	case authFailure:
		for _, k := range ikeKeys(e) {
			if p, ok := d.peers[k]; ok {
				ev.Source = p.addr
				break
			}
		}
		if !ev.Source.IsValid() {
			ev.SourceName = "id:" + ev.User
		}
		if d.duplicate(e, ev, now) {
			return nil
		}
		return d.failure(ev, e, now, max(e.Repeat, 1))
	}
	return nil
}

// ikeKeys are the correlation keys of a charon entry, surest first. A
// packet is remembered under all of them.
func ikeKeys(e logEntry) []string {
	var ks []string
	if e.IKESA != "" {
		ks = append(ks, "sa:"+e.IKESA)
	}
	if e.Thread != "" {
		ks = append(ks, "thr:"+e.Thread)
	}
	if e.PID != "" {
		// A logger that says neither (charon-systemd's lines in a syslog
		// file): the process's last packet.
		ks = append(ks, "pid:"+e.PID)
	}
	return ks
}

// duplicate reports a charon failure that another charon logger already
// wrote (charon's syslog and charon-systemd's journal both on): the same
// message about the same source from a different identifier just before.
func (d *authDetector) duplicate(e logEntry, ev authEvent, now time.Time) bool {
	key := ev.Source.String() + "|" + ev.SourceName + "|" + e.Message
	prev, ok := d.seen[key]
	d.track(d.seen, []string{key}, tracked{at: now, ident: e.Ident})
	return ok && prev.ident != e.Ident && now.Sub(prev.at) <= charonDupWindow
}

func (d *authDetector) track(m map[string]tracked, keys []string, t tracked) {
	for _, k := range keys {
		if _, ok := m[k]; !ok && len(m) >= maxAuthTracked {
			return
		}
		m[k] = t
	}
}

// failure counts n failures (a line syslog folded n repeats into) and
// returns a burst when the source reached the threshold within the window
// and was not reported within the window.
func (d *authDetector) failure(ev authEvent, e logEntry, now time.Time, n int) []wire.Finding {
	src := ev.SourceName
	if ev.Source.IsValid() {
		src = ev.Source.String()
	}
	if src == "" {
		src = "unknown"
	}
	key := ev.Service + "/" + src
	r := d.runs[key]
	if r == nil {
		if len(d.runs) >= maxAuthSources {
			d.evictOldestRun()
		}
		r = &failureRun{service: ev.Service, source: ev.Source, name: src}
		d.runs[key] = r
	}
	r.prune(now, d.set.window)
	line := evidenceLine(e.Raw)
	for range min(n, d.set.threshold) {
		r.failures = append(r.failures, failure{at: now, line: line})
		line = ""
	}
	if over := len(r.failures) - d.set.threshold; over > 0 {
		r.failures = slices.Delete(r.failures, 0, over)
	}
	if ev.User != "" && len(r.users) < 10 && !slices.Contains(r.users, ev.User) {
		r.users = append(r.users, ev.User)
	}
	if len(r.failures) < d.set.threshold || (!r.fired.IsZero() && now.Sub(r.fired) < d.set.window) {
		return nil
	}
	f := d.burst(r, e, now)
	r.fired = now
	r.failures, r.users = nil, nil
	return []wire.Finding{f}
}

// prune drops failures older than the window.
func (r *failureRun) prune(now time.Time, window time.Duration) {
	i := 0
	for i < len(r.failures) && now.Sub(r.failures[i].at) >= window {
		i++
	}
	r.failures = slices.Delete(r.failures, 0, i)
	if len(r.failures) == 0 {
		r.users = nil
	}
}

// evidence is the lines of the run, the latest maxBurstEvidence of them.
func (r *failureRun) evidence() []string {
	var out []string
	for _, f := range r.failures {
		if f.line != "" {
			out = append(out, f.line)
		}
	}
	return out[max(0, len(out)-maxBurstEvidence):]
}

func (d *authDetector) burst(r *failureRun, e logEntry, now time.Time) wire.Finding {
	what := "sshd"
	if r.service == serviceIKE {
		what = "IKE"
	}
	f := wire.Finding{
		Kind:       KindAuthFailureBurst,
		Severity:   SeverityHigh,
		Confidence: 0.9,
		Summary: fmt.Sprintf("%d failed %s authentications from %s within %s",
			len(r.failures), what, r.name, d.set.window),
		Labels: map[string]string{
			"service":  r.service,
			"failures": strconv.Itoa(len(r.failures)),
			"window":   d.set.window.String(),
		},
		Evidence:   r.evidence(),
		ObservedAt: now,
		Key:        KindAuthFailureBurst + "/" + r.service + "/" + r.name,
		Sensor:     "auth",
	}
	if r.source.IsValid() {
		f.IPs = []string{r.source.String()}
	} else {
		f.Labels["source"] = r.name
	}
	if len(r.users) > 0 {
		f.Labels["users"] = strings.Join(r.users, ",")
	}
	if !e.LoggedAt.IsZero() {
		f.Labels["logged_at"] = e.LoggedAt.Format(time.RFC3339Nano)
	}
	return f
}

// success judges an accepted SSH login of an admin: off hours, and a new
// source outside the management networks (learned, not reported, while
// learning).
func (d *authDetector) success(ev authEvent, e logEntry, now time.Time) []wire.Finding {
	if !d.set.admins[ev.User] {
		return nil
	}
	var out []wire.Finding
	if !d.set.inBusinessHours(now) {
		out = append(out, d.adminFinding(KindOffHoursAdminLogin, ev, e, now, 0.8,
			fmt.Sprintf("admin %s logged in over SSH (%s) from %s at %s, outside business hours (%s %s)",
				ev.User, ev.Method, ev.sourceText(), now.In(d.set.loc).Format("Mon 15:04"), d.set.hours, d.set.loc)))
	}
	if ev.Source.IsValid() {
		isNew := d.learned.AdminSources().Observe(ev.Source, ev.User, now)
		if isNew && !d.learned.Learning(now) && !InPrefixes(d.set.management, ev.Source) {
			out = append(out, d.adminFinding(KindNewAdminSource, ev, e, now, 0.7,
				fmt.Sprintf("admin %s logged in over SSH (%s) from %s, an address outside the management networks never seen before",
					ev.User, ev.Method, ev.Source)))
		}
	}
	return out
}

func (ev authEvent) sourceText() string {
	if ev.Source.IsValid() {
		return ev.Source.String()
	}
	return ev.SourceName
}

func (d *authDetector) adminFinding(kind string, ev authEvent, e logEntry, now time.Time, confidence float64, summary string) wire.Finding {
	f := wire.Finding{
		Kind:       kind,
		Severity:   SeverityHigh,
		Confidence: confidence,
		Summary:    summary,
		Labels: map[string]string{
			"service":    ev.Service,
			"user":       ev.User,
			"method":     ev.Method,
			"local_time": now.In(d.set.loc).Format(time.RFC3339),
			"time_zone":  d.set.loc.String(),
		},
		Evidence:   []string{evidenceLine(e.Raw)},
		ObservedAt: now,
		Key:        kind + "/" + ev.Service + "/" + ev.User + "/" + ev.sourceText(),
		Sensor:     "auth",
	}
	if ev.Source.IsValid() {
		f.IPs = []string{ev.Source.String()}
	} else if ev.SourceName != "" {
		f.Labels["source"] = ev.SourceName
	}
	if !e.LoggedAt.IsZero() {
		f.Labels["logged_at"] = e.LoggedAt.Format(time.RFC3339Nano)
	}
	return f
}

// evidenceLine bounds a line kept as evidence. sshd and charon lines carry
// no secrets of ours (usernames a client tried are kept: they are what an
// investigator wants to see).
func evidenceLine(s string) string {
	if len(s) > maxAuthLine {
		return strings.ToValidUTF8(s[:maxAuthLine], "") + "…"
	}
	return s
}

// sweep forgets, at most once a window, what can no longer matter: failure
// runs outside the window and sessions and correlations older than ten
// minutes.
func (d *authDetector) sweep(now time.Time) {
	if now.Sub(d.swept) < d.set.window {
		return
	}
	d.swept = now
	for k, r := range d.runs {
		r.prune(now, d.set.window)
		if len(r.failures) == 0 && now.Sub(r.fired) >= d.set.window {
			delete(d.runs, k)
		}
	}
	for k, s := range d.sessions {
		if now.Sub(s.at) > authTrackedMaxAge {
			delete(d.sessions, k)
		}
	}
	for _, m := range []map[string]tracked{d.peers, d.seen} {
		for k, t := range m {
			if now.Sub(t.at) > authTrackedMaxAge {
				delete(m, k)
			}
		}
	}
}

// evictOldestRun makes room for a new source by forgetting the one whose
// latest failure is oldest.
func (d *authDetector) evictOldestRun() {
	var oldestKey string
	var oldest time.Time
	for k, r := range d.runs {
		last := r.fired
		if n := len(r.failures); n > 0 {
			last = r.failures[n-1].at
		}
		if oldestKey == "" || last.Before(oldest) {
			oldestKey, oldest = k, last
		}
	}
	delete(d.runs, oldestKey)
}
