package capture

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// processRecord is one process, as ps -ef would show it plus the hash of the
// executable it runs.
type processRecord struct {
	PID     int       `json:"pid"`
	PPID    int       `json:"ppid"`
	UID     int       `json:"uid"`
	EUID    int       `json:"euid"`
	State   string    `json:"state"`
	Comm    string    `json:"comm"`
	Cmdline []string  `json:"cmdline,omitempty"`
	Started time.Time `json:"started,omitzero"`
	// Exe is where /proc/<pid>/exe points; a " (deleted)" suffix there is
	// reported as ExeDeleted and stripped.
	Exe        string `json:"exe,omitempty"`
	ExeDeleted bool   `json:"exe_deleted,omitempty"`
	// ExeSHA256 is the hash of the running executable, read through
	// /proc/<pid>/exe so that a deleted or replaced file is still the one
	// hashed.
	ExeSHA256 string `json:"exe_sha256,omitempty"`
	// ExeHashError says why there is no hash (too large, unreadable).
	ExeHashError string `json:"exe_hash_error,omitempty"`
	// NetNS is the process's network namespace ("net:[4026531840]"); a
	// process in an unexpected namespace is worth a look.
	NetNS string `json:"netns,omitempty"`
}

type processesReport struct {
	BootTime  time.Time       `json:"boot_time,omitzero"`
	Processes []processRecord `json:"processes"`
}

// exeKey identifies an executable file independently of its path, so a
// binary replaced at the same path is hashed again.
type exeKey struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

type exeHash struct{ sum, err string }

// collectProcesses walks /proc/<pid> for every process, then hashes each
// distinct executable (by device and inode) on as many workers as there are
// CPUs. Hashing stops when a fifth of the collector's time is left, so a
// host with many large binaries still yields its process list, the
// remaining executables marked as not hashed. Files above 64 MiB are not
// hashed.
func collectProcesses(ctx context.Context, opt Options) (processesReport, error) {
	procDir := opt.path("/proc")
	pids, err := listProcessIDs(procDir)
	if err != nil {
		return processesReport{}, err
	}
	rep := processesReport{BootTime: readBootTime(procDir), Processes: []processRecord{}}
	links := make(map[exeKey]string)
	keys := make(map[int]exeKey) // index in rep.Processes → executable
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return processesReport{}, fmt.Errorf("walking processes (reached pid %d of %d): %w", pid, len(pids), err)
		}
		p, key, err := readProcess(filepath.Join(procDir, strconv.Itoa(pid)), pid, rep.BootTime)
		if err != nil {
			continue // the process exited while we walked
		}
		if key != nil {
			keys[len(rep.Processes)] = *key
			if _, ok := links[*key]; !ok {
				links[*key] = filepath.Join(procDir, strconv.Itoa(pid), "exe")
			}
		}
		rep.Processes = append(rep.Processes, p)
	}

	hctx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		hctx, cancel = context.WithDeadline(ctx, dl.Add(-time.Until(dl)/5))
		defer cancel()
	}
	hashes := hashExecutables(hctx, links)
	for i, k := range keys {
		h := hashes[k]
		rep.Processes[i].ExeSHA256, rep.Processes[i].ExeHashError = h.sum, h.err
	}
	return rep, nil
}

// readProcess reads one process and, when it runs an executable, the
// identity of that file for hashing later.
func readProcess(dir string, pid int, boot time.Time) (processRecord, *exeKey, error) {
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return processRecord{}, nil, err
	}
	p, err := parseProcStat(stat)
	if err != nil {
		return processRecord{}, nil, fmt.Errorf("parsing stat of pid %d: %w", pid, err)
	}
	p.PID = pid
	if !boot.IsZero() && p.startTicks > 0 {
		// The kernel reports start times in USER_HZ, which is 100 on every
		// Linux architecture's /proc interface.
		p.Started = boot.Add(time.Duration(p.startTicks) * (time.Second / 100)).UTC()
	}
	if status, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		p.UID, p.EUID = parseStatusUIDs(status)
	}
	if cmd, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil && len(cmd) > 0 {
		p.Cmdline = strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
	}
	if ns, err := os.Readlink(filepath.Join(dir, "ns", "net")); err == nil {
		p.NetNS = ns
	}
	link := filepath.Join(dir, "exe")
	exe, err := os.Readlink(link)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return p.processRecord, nil, nil // a kernel thread
	case err != nil:
		p.ExeHashError = "reading executable link: " + err.Error()
		return p.processRecord, nil, nil
	}
	p.Exe, p.ExeDeleted = strings.CutSuffix(exe, " (deleted)")
	// Stat follows the magic link to the running file even when its path
	// was deleted or replaced.
	fi, err := os.Stat(link)
	if err != nil {
		p.ExeHashError = "reading executable metadata: " + err.Error()
		return p.processRecord, nil, nil
	}
	k := exeKey{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		k.dev, k.ino = st.Dev, st.Ino
	}
	return p.processRecord, &k, nil
}

// hashExecutables hashes each file once, through the given /proc/<pid>/exe
// link, on GOMAXPROCS workers, until ctx ends.
func hashExecutables(ctx context.Context, links map[exeKey]string) map[exeKey]exeHash {
	type job struct {
		key  exeKey
		link string
	}
	jobs := make(chan job)
	out := make(map[exeKey]exeHash, len(links))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range max(1, min(runtime.GOMAXPROCS(0), len(links))) {
		wg.Go(func() {
			buf := make([]byte, 1<<20)
			for j := range jobs {
				h := hashExecutable(ctx, j.link, j.key.size, buf)
				mu.Lock()
				out[j.key] = h
				mu.Unlock()
			}
		})
	}
	for k, l := range links {
		jobs <- job{k, l}
	}
	close(jobs)
	wg.Wait()
	return out
}

func hashExecutable(ctx context.Context, link string, size int64, buf []byte) exeHash {
	if size > maxExecutableHashSize {
		return exeHash{err: fmt.Sprintf("not hashed: %d bytes is over the %d MiB limit", size, maxExecutableHashSize>>20)}
	}
	if ctx.Err() != nil {
		return exeHash{err: "not hashed: the collector's time ran out"}
	}
	f, err := os.Open(link)
	if err != nil {
		return exeHash{err: "opening executable: " + err.Error()}
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, ctxReader{ctx, f}, buf); err != nil {
		if ctx.Err() != nil {
			return exeHash{err: "not hashed: the collector's time ran out"}
		}
		return exeHash{err: "reading executable: " + err.Error()}
	}
	return exeHash{sum: hex.EncodeToString(h.Sum(nil))}
}

// ctxReader stops a long read when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

type procStat struct {
	processRecord
	startTicks uint64
}

// parseProcStat parses /proc/<pid>/stat. The comm field is in parentheses
// and may itself contain spaces and parentheses, so fields are counted from
// the last ")".
func parseProcStat(b []byte) (procStat, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, errors.New("no (comm) field")
	}
	var p procStat
	p.Comm = string(b[open+1 : end])
	f := strings.Fields(string(b[end+1:]))
	// After comm: state(0) ppid(1) ... starttime(19).
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("%d fields after comm, want at least 20", len(f))
	}
	p.State = f[0]
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("parsing ppid %q: %w", f[1], err)
	}
	p.PPID = ppid
	if p.startTicks, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("parsing start time %q: %w", f[19], err)
	}
	return p, nil
}

// parseStatusUIDs reads the real and effective uid from /proc/<pid>/status
// ("Uid:\treal\teffective\tsaved\tfs"). Unknown values are -1.
func parseStatusUIDs(b []byte) (uid, euid int) {
	uid, euid = -1, -1
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Uid:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) >= 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				uid = v
			}
			if v, err := strconv.Atoi(f[1]); err == nil {
				euid = v
			}
		}
		break
	}
	return uid, euid
}

// readBootTime reads btime (seconds since the epoch) from /proc/stat.
func readBootTime(procDir string) time.Time {
	b, err := os.ReadFile(filepath.Join(procDir, "stat"))
	if err != nil {
		return time.Time{}
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "btime "); ok {
			if sec, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64); err == nil {
				return time.Unix(sec, 0).UTC()
			}
		}
	}
	return time.Time{}
}
