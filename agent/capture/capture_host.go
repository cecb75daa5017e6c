package capture

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// maxExecOutput bounds what one exec'd tool may return.
const maxExecOutput = 32 << 20

// execSearchPath is where evidence tools are looked for when PATH (often
// minimal for a service) lacks them.
func execSearchPath() []string { return []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} }

// errToolMissing reports an evidence tool that is not installed.
var errToolMissing = errors.New("tool not installed")

// execEvidenceCollector runs a read-only tool with an argument array (never
// a shell) and keeps its standard output as a text artefact.
func execEvidenceCollector(name, tool string, args ...string) evidenceCollector {
	return evidenceCollector{
		name:      name,
		mediaType: mediaText,
		source:    "exec " + strings.Join(append([]string{tool}, args...), " "),
		collect: func(ctx context.Context) ([]byte, string, error) {
			path, err := lookEvidenceTool(tool)
			if err != nil {
				return nil, "", err
			}
			out, err := runEvidenceTool(ctx, path, args...)
			return out, "exec " + strings.Join(append([]string{path}, args...), " "), err
		},
	}
}

func lookEvidenceTool(tool string) (string, error) {
	if p, err := exec.LookPath(tool); err == nil {
		return p, nil
	}
	for _, dir := range execSearchPath() {
		p := filepath.Join(dir, tool)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("finding %s: %w", tool, errToolMissing)
}

// runEvidenceTool runs path with args in the calling thread's namespaces, with a
// fixed environment, and returns its bounded standard output. Standard
// error is kept only to explain a failure.
func runEvidenceTool(ctx context.Context, path string, args ...string) ([]byte, error) {
	cmd := execCommand(ctx, path, args...)
	var stdout, stderr cappedBuffer
	stdout.limit, stderr.limit = maxExecOutput, 4<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			return nil, fmt.Errorf("running %s: %w: %s", filepath.Base(path), err, msg)
		}
		return nil, fmt.Errorf("running %s: %w", filepath.Base(path), err)
	}
	if stdout.truncated {
		return nil, fmt.Errorf("running %s: output exceeds %d bytes", filepath.Base(path), stdout.limit)
	}
	return stdout.Bytes(), nil
}

// execCommand is an evidence tool's command: an argument array, never a
// shell, with a fixed environment.
func execCommand(ctx context.Context, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// cappedBuffer keeps at most limit bytes and notes that more came.
type cappedBuffer struct {
	bytes.Buffer
	limit     int
	truncated bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.Len(); len(p) > room {
		b.truncated = true
		b.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// logTailCollector keeps the last LogLines lines of a log file.
func logTailCollector(name string, opt Options, logPath string) evidenceCollector {
	path := opt.path(logPath)
	return evidenceCollector{
		name:      name,
		mediaType: mediaText,
		source:    fmt.Sprintf("last %d lines of %s", opt.LogLines, path),
		collect: func(ctx context.Context) ([]byte, string, error) {
			b, err := tailFile(path, opt.LogLines, maxTailBytes)
			return b, "", err
		},
	}
}

// maxTailBytes bounds how far back a log tail reads, whatever the line
// lengths.
const maxTailBytes = 8 << 20

// tailFile returns the last n lines of the file at path, reading backwards
// from its end in blocks and never more than limit bytes. A final line
// without a newline counts as a line. When the limit cuts a line, that
// partial line is dropped.
func tailFile(path string, n int, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading log metadata: %w", err)
	}
	return tailLines(f, fi.Size(), n, limit)
}

func tailLines(r io.ReaderAt, size int64, n int, limit int64) ([]byte, error) {
	if n <= 0 || size == 0 {
		return []byte{}, nil
	}
	const block = 64 << 10
	var (
		buf   []byte
		off   = size
		lines int // newlines seen that end a line we keep
	)
	for off > 0 && size-off < limit {
		step := min(int64(block), off, limit-(size-off))
		off -= step
		chunk := make([]byte, step)
		if _, err := r.ReadAt(chunk, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading log: %w", err)
		}
		// Count newlines from the end of this chunk; the file's own final
		// newline terminates the last line rather than starting a new one.
		for i := len(chunk) - 1; i >= 0; i-- {
			if chunk[i] != '\n' || off+int64(i) == size-1 {
				continue
			}
			lines++
			if lines == n {
				return append(chunk[i+1:], buf...), nil
			}
		}
		buf = append(chunk, buf...)
	}
	if off > 0 {
		// The byte limit stopped us mid-line: drop the partial first line.
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			return buf[i+1:], nil
		}
		return []byte{}, nil
	}
	return buf, nil
}

// utmp record layout of glibc on 64-bit Linux (x86_64, arm64): 384 bytes
// with 32-bit seconds in ut_tv.
const (
	utmpRecordSize = 384
	utmpUserProc   = 7
)

type utmpRecord struct {
	Type    string    `json:"type"`
	PID     int32     `json:"pid"`
	Line    string    `json:"line"`
	ID      string    `json:"id,omitempty"`
	User    string    `json:"user,omitempty"`
	Host    string    `json:"host,omitempty"`
	Addr    string    `json:"addr,omitempty"`
	Session int32     `json:"session,omitempty"`
	Time    time.Time `json:"time"`
	// Alive says whether the session's process still exists; utmp keeps
	// stale entries after unclean logouts.
	Alive *bool `json:"alive,omitempty"`
}

func utmpTypeName(t int16) string {
	switch t {
	case 0:
		return "EMPTY"
	case 1:
		return "RUN_LVL"
	case 2:
		return "BOOT_TIME"
	case 3:
		return "NEW_TIME"
	case 4:
		return "OLD_TIME"
	case 5:
		return "INIT_PROCESS"
	case 6:
		return "LOGIN_PROCESS"
	case utmpUserProc:
		return "USER_PROCESS"
	case 8:
		return "DEAD_PROCESS"
	case 9:
		return "ACCOUNTING"
	}
	return "TYPE_" + strconv.Itoa(int(t))
}

// parseUTMP decodes whole utmp/wtmp/btmp records; a trailing partial record
// (a file caught mid-write) is reported as an error after the whole ones.
func parseUTMP(b []byte) ([]utmpRecord, error) {
	var out []utmpRecord
	for len(b) >= utmpRecordSize {
		r := b[:utmpRecordSize]
		b = b[utmpRecordSize:]
		le := binary.LittleEndian
		rec := utmpRecord{
			Type:    utmpTypeName(int16(le.Uint16(r[0:]))),
			PID:     int32(le.Uint32(r[4:])),
			Line:    cString(r[8:40]),
			ID:      cString(r[40:44]),
			User:    cString(r[44:76]),
			Host:    cString(r[76:332]),
			Session: int32(le.Uint32(r[336:])),
			Time:    time.Unix(int64(int32(le.Uint32(r[340:]))), int64(int32(le.Uint32(r[344:])))*1000).UTC(),
		}
		rec.Addr = utmpAddr(r[348:364])
		out = append(out, rec)
	}
	if len(b) != 0 {
		return out, fmt.Errorf("parsing utmp: %d trailing bytes after %d records", len(b), len(out))
	}
	return out, nil
}

// utmpAddr decodes ut_addr_v6: IPv4 in the first word only, else IPv6.
func utmpAddr(b []byte) string {
	var a [16]byte
	copy(a[:], b)
	if a == [16]byte{} {
		return ""
	}
	if bytes.Equal(a[4:], make([]byte, 12)) {
		return netip.AddrFrom4([4]byte(a[:4])).String()
	}
	return netip.AddrFrom16(a).String()
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

type usersReport struct {
	Sessions []utmpRecord `json:"sessions"`
	BootTime *time.Time   `json:"boot_time,omitempty"`
	Warning  string       `json:"warning,omitempty"`
}

// collectUsers lists logged-in users from utmp, as who(1) does.
func collectUsers(opt Options) (usersReport, error) {
	path := opt.path("/var/run/utmp")
	b, err := os.ReadFile(path)
	if err != nil {
		return usersReport{}, fmt.Errorf("reading utmp: %w", err)
	}
	recs, perr := parseUTMP(b)
	rep := usersReport{Sessions: []utmpRecord{}}
	if perr != nil {
		rep.Warning = perr.Error()
	}
	for _, r := range recs {
		switch r.Type {
		case "USER_PROCESS":
			_, err := os.Stat(opt.path("/proc/" + strconv.Itoa(int(r.PID))))
			alive := err == nil
			r.Alive = &alive
			rep.Sessions = append(rep.Sessions, r)
		case "BOOT_TIME":
			t := r.Time
			rep.BootTime = &t
		}
	}
	return rep, nil
}

type loginsReport struct {
	// Wtmp holds the last logins, logouts and boots; Btmp the last failed
	// logins.
	Wtmp   []utmpRecord      `json:"wtmp"`
	Btmp   []utmpRecord      `json:"btmp"`
	Errors map[string]string `json:"errors,omitempty"`
}

// collectLogins keeps the last LogLines records of wtmp and btmp. One
// missing file is noted; both missing is an error.
func collectLogins(opt Options) (loginsReport, error) {
	rep := loginsReport{Wtmp: []utmpRecord{}, Btmp: []utmpRecord{}}
	var failed []string
	for _, f := range []struct {
		name string
		dst  *[]utmpRecord
	}{{"wtmp", &rep.Wtmp}, {"btmp", &rep.Btmp}} {
		recs, err := tailUTMP(opt.path("/var/log/"+f.name), opt.LogLines)
		if err != nil {
			if rep.Errors == nil {
				rep.Errors = make(map[string]string)
			}
			rep.Errors[f.name] = err.Error()
			failed = append(failed, err.Error())
		}
		*f.dst = append(*f.dst, recs...)
	}
	if len(failed) == 2 {
		return rep, errors.New(strings.Join(failed, "; "))
	}
	return rep, nil
}

// tailUTMP reads the last n whole records of a wtmp-format file.
func tailUTMP(path string, n int) ([]utmpRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", filepath.Base(path), err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading %s metadata: %w", filepath.Base(path), err)
	}
	whole := fi.Size() / utmpRecordSize
	keep := min(whole, int64(n))
	buf := make([]byte, keep*utmpRecordSize)
	if _, err := f.ReadAt(buf, (whole-keep)*utmpRecordSize); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading %s: %w", filepath.Base(path), err)
	}
	return parseUTMP(buf)
}

type kernelReport struct {
	Sysname       string    `json:"sysname"`
	Nodename      string    `json:"nodename"`
	Release       string    `json:"release"`
	Version       string    `json:"version"`
	Machine       string    `json:"machine"`
	BootID        string    `json:"boot_id"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	BootTime      time.Time `json:"boot_time,omitzero"`
}

// collectKernel records which kernel and which boot the evidence comes from.
func collectKernel(opt Options) (kernelReport, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return kernelReport{}, fmt.Errorf("reading uname: %w", err)
	}
	rep := kernelReport{
		Sysname:  unix.ByteSliceToString(u.Sysname[:]),
		Nodename: unix.ByteSliceToString(u.Nodename[:]),
		Release:  unix.ByteSliceToString(u.Release[:]),
		Version:  unix.ByteSliceToString(u.Version[:]),
		Machine:  unix.ByteSliceToString(u.Machine[:]),
		BootID:   readBootID(opt),
		BootTime: readBootTime(opt.path("/proc")),
	}
	up, err := os.ReadFile(opt.path("/proc/uptime"))
	if err != nil {
		return rep, fmt.Errorf("reading uptime: %w", err)
	}
	if f := strings.Fields(string(up)); len(f) > 0 {
		rep.UptimeSeconds, _ = strconv.ParseFloat(f[0], 64)
	}
	return rep, nil
}
