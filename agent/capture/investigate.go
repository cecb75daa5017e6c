package capture

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/warden-ir/warden/agent/netfilter"
	"github.com/warden-ir/warden/agent/sensors"
	"github.com/warden-ir/warden/agent/wire"
)

// An investigation reads, for a window of time, what the gateway recorded
// of an intrusion and normalises it into events (time, actor, action,
// object, address, and the artefact and line it was read from). Unlike a
// volatile capture it looks back: journald, classic log files, the login
// records, connection records (the conntrack table now and the flows the
// quarantine ended), counters, package and configuration history, shell
// histories and processes. What it cannot read is named as a gap with
// the reason; it never fails because one source is missing.

// Defaults of an investigation.
const (
	// investigateSlack widens the window on both sides: the controller's
	// clock and the gateway's may differ (the controller measures by how
	// much and corrects).
	investigateSlack = 2 * time.Minute
	// investigateCollectorTimeout bounds each source.
	investigateCollectorTimeout = 15 * time.Second
	// maxLogReadBytes bounds how far back a classic log file is read.
	maxLogReadBytes = 8 << 20
	// maxMessage bounds an event's message.
	maxMessage = 1000
	// maxKilledFlowFiles bounds the records of flows quarantines ended.
	maxKilledFlowFiles = 20
	killedFlowsDir     = "flows"
)

// DefaultLogFiles are the classic log files read when present (Debian 12
// without rsyslog has none of them: the journal is read instead).
var DefaultLogFiles = []string{"/var/log/auth.log", "/var/log/syslog", "/var/log/secure", "/var/log/messages", "/var/log/charon.log"}

// investigation is one run's state: the window and what was collected.
type investigation struct {
	opt          Options
	since, until time.Time
	res          wire.InvestigateResult
	events       []wire.TimelineEvent
	// kept counts the artefacts' bytes (MaxInvestigateTotalBytes).
	kept int
}

// Investigate collects what the gateway recorded between p.Since and
// p.Until (widened by two minutes each side). It only reads. Each source
// is bounded in time and size; a source that fails or is missing is a
// gap with its reason, and Investigate itself fails only on an invalid
// window or options.
func Investigate(ctx context.Context, opt Options, p wire.InvestigateParams) (wire.InvestigateResult, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return wire.InvestigateResult{}, err
	}
	started := opt.Clock.Now().UTC()
	if p.Since.IsZero() || p.Until.IsZero() || !p.Since.Before(p.Until) {
		return wire.InvestigateResult{}, fmt.Errorf("%w: the window needs since before until", ErrInvalidOptions)
	}
	inv := &investigation{opt: opt, since: p.Since.Add(-investigateSlack).UTC(), until: p.Until.Add(investigateSlack).UTC()}
	inv.res.Since, inv.res.Until, inv.res.Started = inv.since, inv.until, started
	if host, err := os.Hostname(); err == nil {
		inv.res.Host = host
	}
	for _, c := range []struct {
		what string
		run  func(ctx context.Context) error
	}{
		{"journald", inv.journal},
		{"classic log files", inv.logFiles},
		{"login records (wtmp, btmp, lastlog)", inv.logins},
		{"package history (dpkg, apt)", inv.packages},
		{"configuration history", inv.configuration},
		{"shell histories", inv.shellHistories},
		{"processes", inv.processes},
		{"connection records (conntrack)", inv.connections},
		{"interface and tunnel counters", inv.counters},
	} {
		cctx, cancel := context.WithTimeout(ctx, investigateCollectorTimeout)
		err := c.run(cctx)
		cancel()
		if err != nil {
			inv.gap(c.what, err.Error())
		}
		if ctx.Err() != nil {
			inv.gap("the rest of the sources", "the investigation was cancelled: "+ctx.Err().Error())
			break
		}
	}
	slices.SortStableFunc(inv.events, func(a, b wire.TimelineEvent) int { return a.Time.Compare(b.Time) })
	if n := len(inv.events); n > wire.MaxInvestigateEvents {
		inv.gap("events", fmt.Sprintf("%d events, only the last %d are sent (the artefacts hold every record)", n, wire.MaxInvestigateEvents))
		inv.events = inv.events[n-wire.MaxInvestigateEvents:]
	}
	inv.res.Events = inv.events
	if inv.res.Events == nil {
		inv.res.Events = []wire.TimelineEvent{}
	}
	inv.res.AgentTime = opt.Clock.Now().UTC()
	return inv.res, nil
}

func (inv *investigation) gap(what, why string) {
	inv.res.Gaps = append(inv.res.Gaps, wire.Gap{What: what, Why: why})
}

func (inv *investigation) in(t time.Time) bool {
	return !t.Before(inv.since) && !t.After(inv.until)
}

// artefact keeps content (cut at a line when it exceeds the bound, the
// cut named as a gap) with its hash, and returns its name.
func (inv *investigation) artefact(name, media, source string, content []byte) string {
	if room := min(wire.MaxInvestigateArtefactBytes, wire.MaxInvestigateTotalBytes-inv.kept); len(content) > room {
		cut := content[:max(room, 0)]
		if i := bytes.LastIndexByte(cut, '\n'); i > 0 {
			cut = cut[:i+1]
		}
		inv.gap(name, fmt.Sprintf("%d bytes, only the first %d are sent (the answer's bound; the gateway keeps the rest)", len(content), len(cut)))
		content = cut
	}
	inv.kept += len(content)
	sum := sha256.Sum256(content)
	inv.res.Artefacts = append(inv.res.Artefacts, wire.Artefact{Name: name, MediaType: media, SHA256: hex.EncodeToString(sum[:]),
		Size: int64(len(content)), Collected: inv.opt.Clock.Now().UTC(), Source: source, Content: content})
	return name
}

func (inv *investigation) jsonArtefact(name, source string, v any) (string, error) {
	b, err := marshalEvidence(v)
	if err != nil {
		return "", err
	}
	return inv.artefact(name, mediaJSON, source, b), nil
}

func (inv *investigation) event(e wire.TimelineEvent) {
	if len(e.Message) > maxMessage {
		e.Message = e.Message[:maxMessage] + "…"
	}
	e.Message = strings.ToValidUTF8(e.Message, "\uFFFD")
	e.Time = e.Time.UTC()
	inv.events = append(inv.events, e)
}

// ---- logs ----

// logLine is one line of a log, however it was read.
type logLine struct {
	at      time.Time
	approx  bool
	ident   string
	message string
	raw     string
}

// lineEvent turns a log line into an event when it says something an
// investigation follows: an authentication (sshd, charon), a sudo, an IKE
// SA coming up or going down.
func (inv *investigation) lineEvent(l logLine, source, artefact string, line int) {
	e := wire.TimelineEvent{Time: l.at, TimeApprox: l.approx, Source: source, Message: l.raw, Artefact: artefact, Line: line}
	if r, ok := sensors.ParseAuthMessage(l.ident, l.message); ok {
		e.Action, e.Actor, e.Address, e.Object, e.Outcome = wire.ActionLoginFailed, r.User, r.Source, r.Service, r.Outcome
		if r.Outcome == "success" {
			e.Action = wire.ActionLoginAccepted
		}
		if r.Method != "" {
			e.Detail = map[string]string{"method": r.Method}
		}
		inv.event(e)
		return
	}
	switch {
	case l.ident == "sudo":
		if user, cmd, ok := parseSudo(l.message); ok {
			e.Action, e.Actor, e.Object, e.Outcome = wire.ActionSudo, user, cmd, "success"
			if strings.Contains(l.message, "command not allowed") || strings.Contains(l.message, "incorrect password") {
				e.Outcome = "failure"
			}
			inv.event(e)
		}
	case strings.HasPrefix(l.ident, "charon"):
		msg := l.message
		if m := reCharonThread.FindStringIndex(msg); m != nil {
			msg = msg[m[1]:]
		}
		if name, what, ok := parseIKEState(msg); ok {
			e.Action, e.Object, e.Outcome = wire.ActionTunnel, name, what
			inv.event(e)
		}
	}
}

// reCharonThread is charon's prefix in syslog: "13[IKE] <PEER|3> ".
var reCharonThread = regexp.MustCompile(`^\d+\[[A-Z]{2,4}\] (?:<[^>]*> )?`)

// parseSudo reads sudo's log line "alice : TTY=pts/0 ; PWD=/root ;
// USER=root ; COMMAND=/bin/sh".
func parseSudo(msg string) (user, command string, ok bool) {
	user, rest, ok := strings.Cut(msg, " : ")
	if !ok || !strings.Contains(rest, "COMMAND=") {
		return "", "", false
	}
	_, command, _ = strings.Cut(rest, "COMMAND=")
	return strings.TrimSpace(user), strings.TrimSpace(command), true
}

// parseIKEState reads charon's "IKE_SA name[3] established between …" and
// "deleting IKE_SA name[3] between …".
func parseIKEState(msg string) (name, what string, ok bool) {
	switch {
	case strings.HasPrefix(msg, "IKE_SA ") && strings.Contains(msg, " established between "):
		name, _, _ = strings.Cut(strings.TrimPrefix(msg, "IKE_SA "), " ")
		return name, "established", true
	case strings.HasPrefix(msg, "deleting IKE_SA "):
		name, _, _ = strings.Cut(strings.TrimPrefix(msg, "deleting IKE_SA "), " ")
		return name, "deleted", true
	}
	return "", "", false
}

// journalEntry is the part of a journal entry (journalctl -o json) an
// investigation reads.
type journalEntry struct {
	Realtime   string          `json:"__REALTIME_TIMESTAMP"`
	Message    json.RawMessage `json:"MESSAGE"`
	Identifier string          `json:"SYSLOG_IDENTIFIER"`
	Comm       string          `json:"_COMM"`
	PID        string          `json:"_PID"`
	Unit       string          `json:"_SYSTEMD_UNIT"`
}

// journal reads every unit's entries of the window, newest first so that
// the bound keeps the most recent, then in time order.
func (inv *investigation) journal(ctx context.Context) error {
	if !inv.opt.live() {
		return errors.New("not read: the investigation reads a file tree, not the running system")
	}
	path, err := lookEvidenceTool(inv.opt.Journalctl)
	if err != nil {
		return err
	}
	args := []string{"--output=json", "--no-pager", "--utc", "--reverse",
		"--since=@" + strconv.FormatInt(inv.since.Unix(), 10), "--until=@" + strconv.FormatInt(inv.until.Unix()+1, 10)}
	out, err := runEvidenceToolBounded(ctx, path, wire.MaxInvestigateArtefactBytes, args...)
	if err != nil {
		return err
	}
	lines := bytes.Split(bytes.TrimRight(out.data, "\n"), []byte{'\n'})
	if out.truncated && len(lines) > 0 {
		lines = lines[:len(lines)-1] // the cut line
	}
	slices.Reverse(lines)
	var content bytes.Buffer
	for _, l := range lines {
		if len(l) > 0 {
			content.Write(l)
			content.WriteByte('\n')
		}
	}
	name := inv.artefact("journal.jsonl", "application/jsonl", "exec journalctl "+strings.Join(args, " "), content.Bytes())
	if out.truncated {
		inv.gap("journald", fmt.Sprintf("more than %d bytes in the window: only the newest entries are kept", wire.MaxInvestigateArtefactBytes))
	}
	for i, raw := range bytes.Split(content.Bytes(), []byte{'\n'}) {
		var j journalEntry
		if len(raw) == 0 || json.Unmarshal(raw, &j) != nil {
			continue
		}
		us, err := strconv.ParseInt(j.Realtime, 10, 64)
		msg, ok := sensors.DecodeJournalMessage(j.Message)
		if err != nil || !ok {
			continue
		}
		ident := j.Identifier
		if ident == "" {
			ident = j.Comm
		}
		l := logLine{at: time.UnixMicro(us).UTC(), ident: ident, message: msg}
		l.raw = l.at.Format(time.RFC3339Nano) + " " + ident
		if j.PID != "" {
			l.raw += "[" + j.PID + "]"
		}
		l.raw += ": " + msg
		inv.lineEvent(l, wire.SourceJournal, name, i+1)
	}
	return nil
}

// logFiles reads the window's lines of each classic log file present.
func (inv *investigation) logFiles(ctx context.Context) error {
	files := slices.Concat(DefaultLogFiles, inv.opt.LogFiles)
	seen := map[string]bool{}
	for _, f := range files {
		if seen[f] || ctx.Err() != nil {
			continue
		}
		seen[f] = true
		path := f
		if !filepath.IsAbs(f) || !slices.Contains(inv.opt.LogFiles, f) {
			path = inv.opt.path(f)
		}
		data, err := tailFile(path, 1<<30, maxLogReadBytes)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			inv.gap(f, err.Error())
			continue
		}
		var kept []logLine
		for _, raw := range strings.Split(string(data), "\n") {
			l, ok := parseLogLine(raw, inv.until)
			if ok && inv.in(l.at) {
				kept = append(kept, l)
			}
		}
		var content strings.Builder
		for _, l := range kept {
			content.WriteString(l.raw)
			content.WriteByte('\n')
		}
		name := inv.artefact("log"+strings.ReplaceAll(filepath.Clean(f), "/", "_"), mediaText,
			fmt.Sprintf("lines of %s in the window", path), []byte(content.String()))
		for i, l := range kept {
			inv.lineEvent(l, wire.SourceLogFile, name, i+1)
		}
	}
	return nil
}

// parseLogLine reads a classic syslog line: an RFC 3339 timestamp
// (rsyslog's default on Debian) or the traditional "Jan _2 15:04:05" in
// local time without a year, which is taken as the latest such time not
// after ref (plus a day's slack) and marked approximate.
func parseLogLine(raw string, ref time.Time) (logLine, bool) {
	raw = strings.TrimRight(raw, "\r")
	head, ident, msg, ok := sensors.SplitSyslogLine(raw)
	if !ok {
		return logLine{}, false
	}
	l := logLine{ident: ident, message: msg, raw: raw}
	fields := strings.Fields(head)
	if len(fields) == 0 {
		return logLine{}, false
	}
	if t, err := time.Parse(time.RFC3339Nano, fields[0]); err == nil {
		l.at = t.UTC()
		return l, true
	}
	if len(head) < len(time.Stamp) {
		return logLine{}, false
	}
	t, err := time.ParseInLocation(time.Stamp, head[:len(time.Stamp)], time.Local)
	if err != nil {
		return logLine{}, false
	}
	ref = ref.In(time.Local)
	t = t.AddDate(ref.Year(), 0, 0)
	if t.After(ref.Add(24 * time.Hour)) {
		t = t.AddDate(-1, 0, 0)
	}
	l.at, l.approx = t.UTC(), true
	return l, true
}

// ---- logins ----

// logins reads wtmp (logins), btmp (failed logins) and lastlog (each
// account's last login).
func (inv *investigation) logins(context.Context) error {
	var failed []string
	for _, f := range []struct {
		file, source, action, outcome string
	}{
		{"wtmp", wire.SourceWtmp, wire.ActionLoginAccepted, "success"},
		{"btmp", wire.SourceBtmp, wire.ActionLoginFailed, "failure"},
	} {
		path := inv.opt.path("/var/log/" + f.file)
		b, err := os.ReadFile(path)
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", f.file, err))
			continue
		}
		recs, perr := parseUTMP(b)
		if perr != nil {
			inv.gap(f.file, perr.Error())
		}
		var kept []utmpRecord
		for _, r := range recs {
			if inv.in(r.Time) && (f.file == "btmp" || r.Type == "USER_PROCESS") {
				kept = append(kept, r)
			}
		}
		name, err := inv.jsonArtefact(f.file+".json", "records of "+path+" in the window", kept)
		if err != nil {
			return err
		}
		for i, r := range kept {
			addr := r.Addr
			if addr == "" {
				addr = r.Host
			}
			inv.event(wire.TimelineEvent{Time: r.Time, Source: f.source, Actor: r.User, Action: f.action, Object: r.Line,
				Address: addr, Outcome: f.outcome, Message: fmt.Sprintf("%s %s %s from %s", r.Type, r.User, r.Line, addr),
				Artefact: name, Line: i + 1})
		}
	}
	if len(failed) > 0 {
		inv.gap("login records", strings.Join(failed, "; "))
	}
	return inv.lastlog()
}

// lastlog record layout (glibc, 64-bit): int32 time, line[32], host[256].
const lastlogRecordSize = 292

func (inv *investigation) lastlog() error {
	b, err := os.ReadFile(inv.opt.path("/var/log/lastlog"))
	if errors.Is(err, fs.ErrNotExist) {
		inv.gap("lastlog", "no /var/log/lastlog (Debian 12 keeps last logins in wtmp and the journal)")
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading lastlog: %w", err)
	}
	users := passwdNames(inv.opt.path("/etc/passwd"))
	type lastLogin struct {
		UID  int       `json:"uid"`
		User string    `json:"user,omitempty"`
		Time time.Time `json:"time"`
		Line string    `json:"line"`
		Host string    `json:"host"`
	}
	var kept []lastLogin
	for uid := 0; (uid+1)*lastlogRecordSize <= len(b); uid++ {
		r := b[uid*lastlogRecordSize:]
		sec := int32(uint32(r[0]) | uint32(r[1])<<8 | uint32(r[2])<<16 | uint32(r[3])<<24)
		if sec == 0 {
			continue
		}
		t := time.Unix(int64(sec), 0).UTC()
		if inv.in(t) {
			kept = append(kept, lastLogin{UID: uid, User: users[uid], Time: t, Line: cString(r[4:36]), Host: cString(r[36:292])})
		}
	}
	name, err := inv.jsonArtefact("lastlog.json", "records of /var/log/lastlog in the window", kept)
	if err != nil {
		return err
	}
	for i, l := range kept {
		inv.event(wire.TimelineEvent{Time: l.Time, Source: wire.SourceLastlog, Actor: l.User, Action: wire.ActionLoginAccepted,
			Object: l.Line, Address: l.Host, Outcome: "success", Message: fmt.Sprintf("last login of %s (uid %d) on %s from %s", l.User, l.UID, l.Line, l.Host),
			Artefact: name, Line: i + 1})
	}
	return nil
}

// passwdNames maps uids to account names.
func passwdNames(path string) map[int]string {
	out := map[int]string{}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) > 2 {
			if uid, err := strconv.Atoi(f[2]); err == nil {
				out[uid] = f[0]
			}
		}
	}
	return out
}

// ---- packages ----

// packages reads dpkg's log ("2024-06-23 08:07:26 install name:arch
// <none> 1.2") and apt's history (blocks of Start-Date, Commandline,
// Requested-By, Install/Upgrade/Remove).
func (inv *investigation) packages(context.Context) error {
	var missing []string
	if b, err := tailFile(inv.opt.path("/var/log/dpkg.log"), 1<<30, maxLogReadBytes); err != nil {
		missing = append(missing, "dpkg.log: "+err.Error())
	} else {
		var kept []string
		var when []time.Time
		for _, l := range strings.Split(string(b), "\n") {
			if len(l) < 20 {
				continue
			}
			t, err := time.ParseInLocation("2006-01-02 15:04:05", l[:19], time.Local)
			f := strings.Fields(l[19:])
			if err != nil || !inv.in(t) || len(f) < 2 || !slices.Contains([]string{"install", "upgrade", "remove", "purge"}, f[0]) {
				continue
			}
			kept, when = append(kept, l), append(when, t)
		}
		name := inv.artefact("dpkg.log", mediaText, "lines of /var/log/dpkg.log in the window", []byte(strings.Join(kept, "\n")))
		for i, l := range kept {
			f := strings.Fields(l[19:])
			e := wire.TimelineEvent{Time: when[i], Source: wire.SourcePackages, Action: wire.ActionPackage, Object: f[1], Outcome: f[0],
				Message: l, Artefact: name, Line: i + 1}
			if len(f) >= 4 {
				e.Detail = map[string]string{"from": f[2], "to": f[3]}
			}
			inv.event(e)
		}
	}
	if b, err := tailFile(inv.opt.path("/var/log/apt/history.log"), 1<<30, maxLogReadBytes); err != nil {
		missing = append(missing, "apt history: "+err.Error())
	} else {
		inv.aptHistory(string(b))
	}
	if len(missing) == 2 {
		return errors.New(strings.Join(missing, "; "))
	}
	return nil
}

func (inv *investigation) aptHistory(text string) {
	type block struct {
		at    time.Time
		lines []string
	}
	var blocks []block
	var cur *block
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, "Start-Date: "); ok {
			t, err := time.ParseInLocation("2006-01-02  15:04:05", strings.TrimSpace(v), time.Local)
			if err != nil {
				cur = nil
				continue
			}
			blocks = append(blocks, block{at: t})
			cur = &blocks[len(blocks)-1]
		}
		if cur != nil && l != "" {
			cur.lines = append(cur.lines, l)
		}
	}
	var out []string
	var events []wire.TimelineEvent
	for _, b := range blocks {
		if !inv.in(b.at) {
			continue
		}
		start := len(out) + 1
		out = append(out, b.lines...)
		e := wire.TimelineEvent{Time: b.at, Source: wire.SourcePackages, Action: wire.ActionPackage, Line: start, Detail: map[string]string{}}
		for _, l := range b.lines {
			k, v, _ := strings.Cut(l, ": ")
			switch k {
			case "Commandline":
				e.Object, e.Message = v, l
			case "Requested-By":
				e.Actor, _, _ = strings.Cut(v, " ")
			case "Install", "Upgrade", "Remove", "Purge":
				e.Outcome = strings.ToLower(k)
				e.Detail[strings.ToLower(k)] = v
			}
		}
		events = append(events, e)
		out = append(out, "")
	}
	name := inv.artefact("apt-history.log", mediaText, "blocks of /var/log/apt/history.log in the window", []byte(strings.Join(out, "\n")))
	for _, e := range events {
		e.Artefact = name
		inv.event(e)
	}
}

// ---- configuration ----

// configuration reads the configuration watcher's history of reported
// changes (hashes and redacted diffs) and compares the files of the
// integrity manifest with their recorded hashes.
func (inv *investigation) configuration(context.Context) error {
	if inv.opt.StateDir == "" {
		return errors.New("the agent has no state directory")
	}
	changes, lines, err := sensors.ReadConfigHistory(inv.opt.StateDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		inv.gap("configuration history", "none kept: the agent's configuration watcher (sensors: config) is not running or saw no change")
	case err != nil:
		inv.gap("configuration history", err.Error())
	}
	var kept []string
	for i, c := range changes {
		if !inv.in(c.At) {
			continue
		}
		kept = append(kept, lines[i].Raw)
		e := wire.TimelineEvent{Time: c.At, Source: wire.SourceConfig, Action: wire.ActionConfigChanged, Object: c.Path, Outcome: c.Change,
			Message: c.Summary, Line: len(kept), Detail: map[string]string{"old_sha256": c.OldSHA256, "new_sha256": c.NewSHA256}}
		if len(c.Diff) > 0 {
			e.Detail["diff"] = strings.Join(c.Diff, "\n")
		}
		inv.events = append(inv.events, e) // Artefact set below
	}
	if len(kept) > 0 || err == nil {
		name := inv.artefact("config-history.jsonl", "application/jsonl", "the configuration watcher's history of changes in the window", []byte(strings.Join(kept, "\n")))
		for i := range inv.events {
			if inv.events[i].Source == wire.SourceConfig && inv.events[i].Artefact == "" {
				inv.events[i].Artefact = name
			}
		}
	}
	return inv.integrity()
}

// manifestFile is agent/host's recorded integrity manifest.
const manifestFile = "baseline-manifest.json"

// integrity compares the files of the recorded integrity manifest with
// their hashes now; a difference is an event at the file's modification
// time.
func (inv *investigation) integrity() error {
	b, err := os.ReadFile(filepath.Join(inv.opt.StateDir, manifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		inv.gap("integrity manifest", "none recorded (verify_baseline records it)")
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the integrity manifest: %w", err)
	}
	var m struct {
		Recorded time.Time `json:"recorded"`
		Files    map[string]struct {
			SHA256 string `json:"sha256"`
		} `json:"files"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("reading the integrity manifest: %w", err)
	}
	type differs struct {
		Path     string    `json:"path"`
		Recorded string    `json:"recorded_sha256"`
		Now      string    `json:"sha256_now,omitempty"`
		Modified time.Time `json:"modified,omitzero"`
		Error    string    `json:"error,omitempty"`
	}
	var out []differs
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for k := range m.Files {
			if !yield(k) {
				return
			}
		}
	}) {
		d := differs{Path: p, Recorded: m.Files[p].SHA256}
		data, err := os.ReadFile(inv.opt.path(p))
		if err != nil {
			d.Error = err.Error()
		} else if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != d.Recorded {
			d.Now = hex.EncodeToString(sum[:])
		} else {
			continue
		}
		if fi, err := os.Stat(inv.opt.path(p)); err == nil {
			d.Modified = fi.ModTime().UTC()
		}
		out = append(out, d)
	}
	name, err := inv.jsonArtefact("integrity-differences.json", fmt.Sprintf("files differing from the integrity manifest recorded %s", m.Recorded.UTC().Format(time.RFC3339)), out)
	if err != nil {
		return err
	}
	for i, d := range out {
		if d.Modified.IsZero() || !inv.in(d.Modified) {
			continue
		}
		inv.event(wire.TimelineEvent{Time: d.Modified, TimeApprox: true, Source: wire.SourceConfig, Action: wire.ActionConfigChanged, Object: d.Path,
			Outcome: "differs_from_manifest", Message: fmt.Sprintf("%s differs from the integrity manifest (sha256 %s, recorded %s)", d.Path, d.Now, d.Recorded),
			Artefact: name, Line: i + 1, Detail: map[string]string{"old_sha256": d.Recorded, "new_sha256": d.Now}})
	}
	return nil
}

// ---- shell histories ----

// shellHistories keeps root's and every home's bash and zsh history.
// Commands carry a time only where the shell wrote one (HISTTIMEFORMAT's
// "#1700000000" lines, zsh's extended history); otherwise the file's
// modification time says when it was last written.
func (inv *investigation) shellHistories(context.Context) error {
	var files []string
	for _, pattern := range []string{"/root/.bash_history", "/root/.zsh_history", "/home/*/.bash_history", "/home/*/.zsh_history"} {
		m, _ := filepath.Glob(inv.opt.path(pattern))
		files = append(files, m...)
	}
	if len(files) == 0 {
		inv.gap("shell histories", "none found")
		return nil
	}
	for _, f := range files {
		b, err := tailFile(f, 1<<30, 1<<20)
		if err != nil {
			inv.gap(f, err.Error())
			continue
		}
		rel, _ := filepath.Rel(inv.opt.Root, f)
		user := historyOwner("/" + rel)
		name := inv.artefact("shell"+strings.ReplaceAll("/"+rel, "/", "_"), mediaText, "shell history "+f, b)
		timed := false
		var at time.Time
		for i, l := range strings.Split(string(b), "\n") {
			if sec, ok := strings.CutPrefix(l, "#"); ok {
				if n, err := strconv.ParseInt(sec, 10, 64); err == nil {
					at, timed = time.Unix(n, 0), true
					continue
				}
			}
			if strings.HasPrefix(l, ": ") { // zsh ": 1700000000:0;command"
				if ts, cmd, ok := strings.Cut(l[2:], ";"); ok {
					sec, _, _ := strings.Cut(ts, ":")
					if n, err := strconv.ParseInt(sec, 10, 64); err == nil {
						at, timed, l = time.Unix(n, 0), true, cmd
					}
				}
			}
			if l == "" || at.IsZero() || !inv.in(at) {
				continue
			}
			inv.event(wire.TimelineEvent{Time: at, Source: wire.SourceShellHistory, Actor: user, Action: wire.ActionCommand, Object: l,
				Message: l, Artefact: name, Line: i + 1})
			at = time.Time{}
		}
		if !timed {
			if fi, err := os.Stat(f); err == nil && inv.in(fi.ModTime()) {
				inv.event(wire.TimelineEvent{Time: fi.ModTime(), TimeApprox: true, Source: wire.SourceShellHistory, Actor: user, Action: wire.ActionCommand,
					Object: "/" + rel, Message: fmt.Sprintf("shell history of %s last written (no timestamps: HISTTIMEFORMAT unset)", user), Artefact: name})
			}
		}
	}
	return nil
}

// historyOwner is the account a history file belongs to, by its path.
func historyOwner(p string) string {
	if strings.HasPrefix(p, "/root/") {
		return "root"
	}
	if rest, ok := strings.CutPrefix(p, "/home/"); ok {
		u, _, _ := strings.Cut(rest, "/")
		return u
	}
	return ""
}

// ---- processes ----

// processes records every process with its start time and its
// executable's hash; those started in the window are events.
func (inv *investigation) processes(ctx context.Context) error {
	rep, err := collectProcesses(ctx, inv.opt)
	if err != nil {
		return err
	}
	name, err := inv.jsonArtefact("processes.json", "/proc (start times, executables and their SHA-256)", rep)
	if err != nil {
		return err
	}
	for i, p := range rep.Processes {
		if p.Started.IsZero() || !inv.in(p.Started) {
			continue
		}
		e := wire.TimelineEvent{Time: p.Started, Source: wire.SourceProcess, Actor: "uid " + strconv.Itoa(p.UID), Action: wire.ActionProcessStart,
			Object: cmp(p.Exe, p.Comm), Message: fmt.Sprintf("pid %d (%s) %s", p.PID, p.Comm, strings.Join(p.Cmdline, " ")), Artefact: name, Line: i + 1}
		if p.ExeSHA256 != "" {
			e.Detail = map[string]string{"sha256": p.ExeSHA256}
		}
		if names := passwdNames(inv.opt.path("/etc/passwd")); names[p.UID] != "" {
			e.Actor = names[p.UID]
		}
		inv.event(e)
	}
	return nil
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// ---- connections ----

// connections reads the conntrack table now and the flows quarantines
// ended (RecordKilledFlows), with their byte counts.
func (inv *investigation) connections(ctx context.Context) error {
	for _, s := range []struct{ file, what string }{
		{"/proc/sys/net/netfilter/nf_conntrack_acct", "byte counts per connection: net.netfilter.nf_conntrack_acct is 0 (set it to 1 to count)"},
		{"/proc/sys/net/netfilter/nf_conntrack_timestamp", "connection start times: net.netfilter.nf_conntrack_timestamp is 0 (connections are placed when they were seen)"},
	} {
		if b, err := os.ReadFile(inv.opt.path(s.file)); err == nil && strings.TrimSpace(string(b)) == "0" {
			inv.gap("conntrack", s.what)
		}
	}
	ended, err := readKilledFlows(inv.opt.StateDir, inv.since, inv.until)
	if err != nil {
		inv.gap("flows the quarantine ended", err.Error())
	}
	inv.flows("conntrack-ended-by-quarantine.json", "connections the quarantine ended, as conntrack counted them", ended)
	if !inv.opt.live() {
		return nil
	}
	now, err := netfilter.DumpFlows(ctx)
	if err != nil {
		return err
	}
	inv.flows("conntrack.json", "netlink conntrack dump (IPv4 and IPv6)", now)
	return nil
}

func (inv *investigation) flows(name, source string, flows []wire.Flow) {
	if flows == nil {
		flows = []wire.Flow{}
	}
	name, err := inv.jsonArtefact(name, source, flows)
	if err != nil {
		inv.gap(name, err.Error())
		return
	}
	for i, f := range flows {
		f.Artefact = name
		inv.res.Flows = append(inv.res.Flows, f)
		at, approx := f.Start, false
		if at.IsZero() {
			at, approx = f.SeenAt, true
		}
		if !inv.in(at) && !(approx && inv.in(f.SeenAt)) {
			continue
		}
		e := wire.TimelineEvent{Time: at, TimeApprox: approx, Source: wire.SourceConntrack, Action: wire.ActionConnection,
			Object: fmt.Sprintf("%s %s:%d → %s:%d", f.Proto, f.Src, f.SrcPort, f.Dst, f.DstPort), Address: f.Dst,
			Message:  fmt.Sprintf("%s src=%s dst=%s sport=%d dport=%d bytes=%d/%d %s", f.Proto, f.Src, f.Dst, f.SrcPort, f.DstPort, f.OrigBytes, f.ReplyBytes, f.State),
			Artefact: name, Line: i + 1, Detail: map[string]string{"src": f.Src, "dst": f.Dst}}
		if f.Accounted {
			e.Detail["orig_bytes"], e.Detail["reply_bytes"] = strconv.FormatUint(f.OrigBytes, 10), strconv.FormatUint(f.ReplyBytes, 10)
		}
		inv.event(e)
	}
}

// RecordKilledFlows keeps the connections a quarantine ended, as conntrack
// counted them just before, in stateDir (the last maxKilledFlowFiles
// records), for an investigation to read.
func RecordKilledFlows(stateDir string, flows []wire.Flow, now time.Time) error {
	dir := filepath.Join(stateDir, killedFlowsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("recording ended flows: %w", err)
	}
	b, err := json.Marshal(flows)
	if err != nil {
		return fmt.Errorf("recording ended flows: %w", err)
	}
	name := fmt.Sprintf("ended-%020d.json", now.UnixNano())
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		return fmt.Errorf("recording ended flows: %w", err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "ended-*.json"))
	slices.Sort(old)
	for len(old) > maxKilledFlowFiles {
		_ = os.Remove(old[0])
		old = old[1:]
	}
	return nil
}

// readKilledFlows returns the flows recorded in the window.
func readKilledFlows(stateDir string, since, until time.Time) ([]wire.Flow, error) {
	if stateDir == "" {
		return nil, errors.New("the agent has no state directory")
	}
	files, _ := filepath.Glob(filepath.Join(stateDir, killedFlowsDir, "ended-*.json"))
	slices.Sort(files)
	var out []wire.Flow
	var errs []error
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var flows []wire.Flow
		if err := json.Unmarshal(b, &flows); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", filepath.Base(f), err))
			continue
		}
		for _, fl := range flows {
			if !fl.SeenAt.Before(since) && !fl.SeenAt.After(until) {
				out = append(out, fl)
			}
		}
	}
	return out, errors.Join(errs...)
}

// ---- counters ----

// counters records every link's byte and packet counters, the WireGuard
// peers' counters and latest handshakes, and strongSwan's SAs.
func (inv *investigation) counters(ctx context.Context) error {
	if !inv.opt.live() {
		return nil
	}
	type linkCounters struct {
		Name      string `json:"name"`
		Type      string `json:"type"`
		RxBytes   uint64 `json:"rx_bytes"`
		TxBytes   uint64 `json:"tx_bytes"`
		RxPackets uint64 `json:"rx_packets"`
		TxPackets uint64 `json:"tx_packets"`
	}
	links, err := netlink.LinkList()
	if err != nil {
		inv.gap("interface counters", err.Error())
	} else {
		var out []linkCounters
		for _, l := range links {
			a := l.Attrs()
			c := linkCounters{Name: a.Name, Type: l.Type()}
			if s := a.Statistics; s != nil {
				c.RxBytes, c.TxBytes, c.RxPackets, c.TxPackets = s.RxBytes, s.TxBytes, s.RxPackets, s.TxPackets
			}
			out = append(out, c)
		}
		if _, err := inv.jsonArtefact("interface-counters.json", "netlink link statistics", out); err != nil {
			return err
		}
	}
	if addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL); err == nil {
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				inv.res.Addresses = append(inv.res.Addresses, ip.Unmap().String())
			}
		}
	}
	wg, err := collectWireGuard(ctx, inv.opt)
	if err != nil {
		inv.gap("WireGuard", err.Error())
	} else if len(wg.Devices) > 0 {
		name, err := inv.jsonArtefact("wireguard.json", "WireGuard devices (peers' counters and latest handshakes)", wg)
		if err != nil {
			return err
		}
		line := 0
		for _, d := range wg.Devices {
			for _, p := range d.Peers {
				line++
				if p.LatestHandshake.IsZero() || !inv.in(p.LatestHandshake) {
					continue
				}
				inv.event(wire.TimelineEvent{Time: p.LatestHandshake, Source: wire.SourceTunnel, Action: wire.ActionTunnel, Object: d.Name,
					Address: p.Endpoint, Outcome: "handshake", Message: fmt.Sprintf("%s: latest handshake with peer %s at %s (rx %d, tx %d bytes)", d.Name, p.PublicKey, p.Endpoint, p.ReceiveBytes, p.TransmitBytes),
					Artefact: name, Line: line})
			}
		}
		inv.gap("WireGuard handshakes", "WireGuard keeps only each peer's latest handshake")
	}
	sas, err := collectStrongSwanSAs(ctx, inv.opt)
	if err == nil {
		if _, err := inv.jsonArtefact("strongswan-sas.json", "VICI list-sas (SAs with their counters)", sas); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) && !strings.Contains(err.Error(), "no such file") {
		inv.gap("strongSwan SAs", err.Error())
	}
	return nil
}

// ---- running tools ----

type boundedOutput struct {
	data      []byte
	truncated bool
}

// runEvidenceToolBounded runs path with args and keeps the first limit
// bytes of its output: a tool that writes more is stopped and the output
// marked truncated (not an error).
func runEvidenceToolBounded(ctx context.Context, path string, limit int, args ...string) (boundedOutput, error) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := execCommand(cctx, path, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return boundedOutput{}, err
	}
	var stderr cappedBuffer
	stderr.limit = 4 << 10
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return boundedOutput{}, fmt.Errorf("running %s: %w", filepath.Base(path), err)
	}
	var out boundedOutput
	r := bufio.NewReader(stdout)
	buf := make([]byte, 64<<10)
	for {
		n, rerr := r.Read(buf)
		out.data = append(out.data, buf[:n]...)
		if len(out.data) > limit {
			out.data, out.truncated = out.data[:limit], true
			cancel()
			break
		}
		if rerr != nil {
			break
		}
	}
	err = cmd.Wait()
	if err != nil && !out.truncated {
		msg := strings.TrimSpace(stderr.String())
		return out, fmt.Errorf("running %s: %w: %s", filepath.Base(path), err, msg)
	}
	return out, nil
}
