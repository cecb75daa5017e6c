package sensors

// The durable queue between the watchers and the controller. Findings are
// appended as JSON lines to segment files and acknowledged by a watermark
// (the highest sequence number the controller has taken) kept in its own
// file: appending never rewrites a file, and a crash at any point leaves
// either the finding delivered and acknowledged, or still queued to be
// delivered again (at least once; the controller's fingerprint makes a
// second delivery harmless). A segment whose findings are all acknowledged
// leaves the disk: removed, or emptied when it is the one being appended
// to.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/warden-ir/warden/agent/wire"
)

// Queue defaults.
const (
	DefaultQueueMaxBytes      = 16 << 20
	DefaultQueueSegmentBytes  = 1 << 20
	DefaultQueueMaxEntryBytes = 256 << 10
)

// queueHeadFile holds the acknowledged watermark and the drop count;
// segments are named after their first sequence number.
const (
	queueHeadFile   = "head.json"
	queueSegmentExt = ".jsonl"
)

// ErrFindingTooLarge is returned by Append for a finding that does not fit
// in QueueOptions.MaxEntryBytes even without its evidence.
var ErrFindingTooLarge = errors.New("finding too large for the queue")

// ErrQueueClosed is returned by Append after Close.
var ErrQueueClosed = errors.New("finding queue closed")

// QueueOptions bound the queue. Zero fields take the defaults.
type QueueOptions struct {
	// MaxBytes bounds the queued findings (the sum of their lines); past
	// it the oldest are dropped and counted in QueueStats.Dropped. A
	// controller that is away for days must not fill the gateway's disk.
	MaxBytes int64
	// SegmentBytes: a segment file past this size is closed and a new one
	// begun, so that acknowledged findings leave the disk in pieces.
	SegmentBytes int64
	// MaxEntryBytes bounds one finding's line. Evidence is trimmed to fit
	// (and says so); a finding that still does not fit is refused.
	MaxEntryBytes int
	// Log receives what the queue repairs at open and what Emit cannot
	// queue. Default: discard.
	Log *slog.Logger
}

func (o QueueOptions) withDefaults() QueueOptions {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultQueueMaxBytes
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = DefaultQueueSegmentBytes
	}
	if o.MaxEntryBytes <= 0 {
		o.MaxEntryBytes = DefaultQueueMaxEntryBytes
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate names the field that cannot work.
func (o QueueOptions) Validate() error {
	o = o.withDefaults()
	switch {
	case o.MaxEntryBytes < 1024:
		return fmt.Errorf("queue max entry bytes: %d is less than 1024", o.MaxEntryBytes)
	case int64(o.MaxEntryBytes) > o.MaxBytes:
		return fmt.Errorf("queue max entry bytes: %d is more than the queue's max bytes %d", o.MaxEntryBytes, o.MaxBytes)
	}
	return nil
}

// QueueEntry is one queued finding and its sequence number (Ack takes it).
type QueueEntry struct {
	Seq     uint64
	Finding wire.Finding
}

// QueueStats says what the queue holds and what it lost.
type QueueStats struct {
	// Pending findings and their bytes.
	Pending int
	Bytes   int64
	// Acked is the watermark: every finding up to it was delivered, or
	// dropped.
	Acked uint64
	// Dropped counts the oldest findings dropped to stay within MaxBytes,
	// since the queue was created (kept across restarts).
	Dropped uint64
	// Refused counts findings Append refused (too large, or the disk
	// failed) since the queue was opened.
	Refused uint64
	// Repaired counts lines found torn or corrupt when the queue was
	// opened (a crash in the middle of an append).
	Repaired int
}

// Queue is the agent's durable, bounded queue of findings: safe for
// concurrent use; one sender takes from its head (Peek, Ack).
type Queue struct {
	dir string
	opt QueueOptions

	mu       sync.Mutex
	pending  []queued // oldest first
	bytes    int64
	head     queueHead
	nextSeq  uint64
	segments []queueSegment // oldest first; the last may be active
	active   *os.File       // the last segment, open for appending; nil until the next append
	written  uint64         // the last sequence number written to active
	synced   uint64         // every line up to it is on disk
	refused  uint64
	repaired int
	closed   bool

	syncMu sync.Mutex // one fsync at a time; the others wait and share it
	ready  chan struct{}
}

type queued struct {
	seq uint64
	raw json.RawMessage // the finding
	n   int64           // its line's size
}

type queueHead struct {
	Acked   uint64 `json:"acked"`
	Dropped uint64 `json:"dropped"`
}

type queueSegment struct {
	name string
	last uint64 // 0: no finding in it
	size int64
}

// queueRecord is one line of a segment.
type queueRecord struct {
	Seq     uint64          `json:"seq"`
	Finding json.RawMessage `json:"finding"`
}

// OpenQueue opens (creating it 0700) the queue in dir, such as
// <state-dir>/sensors/queue, and recovers what a crash left: a torn last
// line is cut off, a corrupt line skipped, segments already acknowledged
// removed; whatever is past the watermark is pending again.
func OpenQueue(dir string, opt QueueOptions) (*Queue, error) {
	if err := opt.Validate(); err != nil {
		return nil, fmt.Errorf("opening finding queue: %w", err)
	}
	q := &Queue{dir: dir, opt: opt.withDefaults(), ready: make(chan struct{}, 1)}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating finding queue %s: %w", dir, err)
	}
	if err := q.loadHead(); err != nil {
		return nil, err
	}
	names, err := q.segmentNames()
	if err != nil {
		return nil, err
	}
	maxSeq := q.head.Acked
	for i, name := range names {
		seg, err := q.recoverSegment(name, i == len(names)-1)
		if err != nil {
			return nil, err
		}
		maxSeq = max(maxSeq, seg.last)
		q.segments = append(q.segments, seg)
	}
	q.nextSeq = maxSeq + 1
	q.written, q.synced = maxSeq, maxSeq
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.removeAckedLocked(); err != nil {
		return nil, err
	}
	if err := q.enforceBoundLocked(); err != nil {
		return nil, err
	}
	if len(q.pending) > 0 {
		q.signal()
	}
	return q, nil
}

// loadHead reads the watermark. A missing file is a new queue; a file
// that does not parse is treated as one too, and logged: delivering again
// is safe, losing findings is not.
func (q *Queue) loadHead() error {
	b, err := os.ReadFile(filepath.Join(q.dir, queueHeadFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading finding queue watermark: %w", err)
	}
	if err := json.Unmarshal(b, &q.head); err != nil {
		q.opt.Log.Warn("finding queue watermark is unreadable; delivering every queued finding again", "file", filepath.Join(q.dir, queueHeadFile), "err", err)
		q.head = queueHead{}
	}
	return nil
}

// segmentNames lists the segment files, oldest first. Names are zero-padded
// sequence numbers, so lexical order is numeric order.
func (q *Queue) segmentNames() ([]string, error) {
	ents, err := os.ReadDir(q.dir)
	if err != nil {
		return nil, fmt.Errorf("listing finding queue %s: %w", q.dir, err)
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), "."+queueHeadFile+".") {
			// A watermark write a crash interrupted: the old file stands.
			_ = os.Remove(filepath.Join(q.dir, e.Name()))
			continue
		}
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), queueSegmentExt) {
			if _, err := strconv.ParseUint(strings.TrimSuffix(e.Name(), queueSegmentExt), 10, 64); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	slices.Sort(names)
	return names, nil
}

// recoverSegment reads one segment into the pending list. In the last
// segment a line without its newline, or one that does not parse at the
// end, is what a crash mid-append leaves: the file is cut back to the last
// whole line. A bad line anywhere else is skipped and logged.
func (q *Queue) recoverSegment(name string, last bool) (queueSegment, error) {
	path := filepath.Join(q.dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		return queueSegment{}, fmt.Errorf("reading finding queue segment: %w", err)
	}
	seg := queueSegment{name: name}
	good := int64(0) // end of the last whole, parsed line
	off := 0
	for off < len(data) {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			break // torn: no newline
		}
		line := data[off : off+end]
		off += end + 1
		var rec queueRecord
		if err := json.Unmarshal(line, &rec); err != nil || rec.Seq == 0 || !decodesAsFinding(rec.Finding) {
			q.repaired++
			q.opt.Log.Warn("finding queue: skipping a corrupt line", "segment", name, "offset", good)
			continue
		}
		good = int64(off)
		seg.last = max(seg.last, rec.Seq)
		if rec.Seq > q.head.Acked {
			q.pending = append(q.pending, queued{seq: rec.Seq, raw: rec.Finding, n: int64(end + 1)})
			q.bytes += int64(end + 1)
		}
	}
	seg.size = int64(len(data))
	if good < seg.size && last {
		if off < len(data) {
			q.repaired++ // the torn tail
		}
		q.opt.Log.Warn("finding queue: cutting a torn write off the last segment", "segment", name, "bytes", seg.size-good)
		if err := os.Truncate(path, good); err != nil {
			return seg, fmt.Errorf("repairing finding queue segment %s: %w", name, err)
		}
		seg.size = good
	}
	return seg, nil
}

// decodesAsFinding reports whether raw is a finding Peek can return: a
// line that is not would otherwise block the sender for good.
func decodesAsFinding(raw json.RawMessage) bool {
	var f wire.Finding
	return len(raw) > 0 && raw[0] == '{' && json.Unmarshal(raw, &f) == nil
}

// Append queues f durably: when it returns nil the finding is on disk.
// Concurrent appends share one fsync. Evidence is trimmed to fit
// MaxEntryBytes; the oldest findings are dropped to stay within MaxBytes.
func (q *Queue) Append(f wire.Finding) error {
	raw, err := fitFinding(f, q.opt.MaxEntryBytes)
	if err != nil {
		q.countRefused()
		return err
	}
	seq, err := q.write(raw)
	if err != nil {
		q.countRefused()
		return err
	}
	// The sender may take the finding while it is being synced: a finding
	// delivered before it reached the disk is merely one a crash could
	// not have lost, and its delivery (an attacker's containment) does not
	// wait for this fsync.
	q.signal()
	if beforeSync != nil {
		beforeSync()
	}
	if err := q.syncTo(seq); err != nil {
		return fmt.Errorf("syncing finding queue: %w", err)
	}
	return nil
}

// beforeSync, set only by tests, runs between an append's write and its
// fsync.
var beforeSync func()

// Emit is Append for a sensor's emit function, which cannot return an
// error: a finding it cannot queue is logged (its kind, sensor and key,
// never its evidence) and counted in QueueStats.Refused.
func (q *Queue) Emit(f wire.Finding) {
	if err := q.Append(f); err != nil {
		q.opt.Log.Error("cannot queue a finding", "kind", f.Kind, "sensor", f.Sensor, "key", f.Key, "err", err)
	}
}

func (q *Queue) countRefused() {
	q.mu.Lock()
	q.refused++
	q.mu.Unlock()
}

// write appends one line to the active segment (beginning a new one when
// needed) and returns its sequence number.
func (q *Queue) write(raw json.RawMessage) (uint64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0, ErrQueueClosed
	}
	seq := q.nextSeq
	line, err := json.Marshal(queueRecord{Seq: seq, Finding: raw})
	if err != nil {
		return 0, fmt.Errorf("encoding finding: %w", err)
	}
	line = append(line, '\n')
	if err := q.ensureActiveLocked(seq); err != nil {
		return 0, err
	}
	seg := &q.segments[len(q.segments)-1]
	if _, err := q.active.Write(line); err != nil {
		// Take back a partial line so that the next one starts clean.
		_ = q.active.Truncate(seg.size)
		return 0, fmt.Errorf("writing finding queue segment %s: %w", seg.name, err)
	}
	q.nextSeq++
	seg.size += int64(len(line))
	seg.last = seq
	q.written = seq
	q.pending = append(q.pending, queued{seq: seq, raw: raw, n: int64(len(line))})
	q.bytes += int64(len(line))
	if err := q.enforceBoundLocked(); err != nil {
		// The finding is queued; only the drop could not be recorded
		// (and is tried again by the next append or ack).
		q.opt.Log.Error("finding queue: cannot record dropped findings", "err", err)
	}
	return seq, nil
}

// ensureActiveLocked opens the last segment for appending, or begins a new
// one (named after seq) when there is none or the last is full.
func (q *Queue) ensureActiveLocked(seq uint64) error {
	if n := len(q.segments); q.active != nil && q.segments[n-1].size < q.opt.SegmentBytes {
		return nil
	}
	if q.active != nil {
		// Everything written to the full segment reaches the disk before
		// it is closed: syncTo cannot reach a closed file.
		if err := q.active.Sync(); err != nil {
			return fmt.Errorf("syncing finding queue segment: %w", err)
		}
		q.synced = max(q.synced, q.written)
		_ = q.active.Close()
		q.active = nil
	} else if n := len(q.segments); n > 0 && q.segments[n-1].size < q.opt.SegmentBytes {
		// The last segment survived a restart with room left.
		f, err := os.OpenFile(filepath.Join(q.dir, q.segments[n-1].name), os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("opening finding queue segment: %w", err)
		}
		q.active = f
		return nil
	}
	name := fmt.Sprintf("%020d%s", seq, queueSegmentExt)
	f, err := os.OpenFile(filepath.Join(q.dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("creating finding queue segment: %w", err)
	}
	if err := syncDir(q.dir); err != nil {
		_ = f.Close()
		return fmt.Errorf("creating finding queue segment: %w", err)
	}
	q.active = f
	q.segments = append(q.segments, queueSegment{name: name})
	return nil
}

// syncTo returns once every line up to seq is on disk. Whoever holds
// syncMu fsyncs for everyone who wrote before it started; the others find
// their line already synced.
func (q *Queue) syncTo(seq uint64) error {
	q.syncMu.Lock()
	defer q.syncMu.Unlock()
	for {
		q.mu.Lock()
		if q.synced >= seq || q.head.Acked >= seq {
			q.mu.Unlock()
			return nil
		}
		f, target := q.active, q.written
		q.mu.Unlock()
		if f == nil {
			return fmt.Errorf("finding %d is neither synced nor in an open segment", seq)
		}
		err := f.Sync()
		q.mu.Lock()
		if err == nil {
			q.synced = max(q.synced, target)
		}
		closed := q.closed
		q.mu.Unlock()
		switch {
		case err == nil:
		case errors.Is(err, os.ErrClosed) && closed:
			return ErrQueueClosed
		case !errors.Is(err, os.ErrClosed):
			return err
		}
		// Synced, or the segment was closed meanwhile (rotated, synced
		// first; or acknowledged and removed): look again.
	}
}

// enforceBoundLocked drops the oldest findings while the queue is over
// MaxBytes, and records how many in the watermark file.
func (q *Queue) enforceBoundLocked() error {
	if q.bytes <= q.opt.MaxBytes {
		return nil
	}
	n := 0
	for q.bytes > q.opt.MaxBytes && n < len(q.pending)-1 {
		q.bytes -= q.pending[n].n
		n++
	}
	if n == 0 {
		return nil
	}
	upTo := q.pending[n-1].seq
	q.opt.Log.Warn("finding queue is full: dropping the oldest findings", "dropped", n, "max_bytes", q.opt.MaxBytes)
	q.pending = slices.Delete(q.pending, 0, n)
	q.head.Dropped += uint64(n)
	q.head.Acked = upTo
	if err := q.saveHeadLocked(); err != nil {
		return err
	}
	return q.removeAckedLocked()
}

// Ready receives a value after an append, so a sender waiting for work
// wakes up; it may also wake up to an empty queue.
func (q *Queue) Ready() <-chan struct{} { return q.ready }

func (q *Queue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Peek returns the oldest pending findings, at most limit of them and, past
// the first, at most maxBytes of lines. It does not remove them: Ack does,
// once the controller has taken them.
func (q *Queue) Peek(limit int, maxBytes int64) ([]QueueEntry, error) {
	q.mu.Lock()
	var take []queued
	var size int64
	for _, e := range q.pending {
		if len(take) == limit || (len(take) > 0 && size+e.n > maxBytes) {
			break
		}
		take = append(take, e)
		size += e.n
	}
	q.mu.Unlock()
	out := make([]QueueEntry, len(take))
	for i, e := range take {
		out[i].Seq = e.seq
		if err := json.Unmarshal(e.raw, &out[i].Finding); err != nil {
			return nil, fmt.Errorf("decoding queued finding %d: %w", e.seq, err)
		}
	}
	return out, nil
}

// Ack removes every finding up to seq, durably: after a restart they are
// not delivered again. Acknowledging what is already gone does nothing.
func (q *Queue) Ack(seq uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	seq = min(seq, q.nextSeq-1)
	if seq <= q.head.Acked {
		return nil
	}
	n := 0
	for n < len(q.pending) && q.pending[n].seq <= seq {
		q.bytes -= q.pending[n].n
		n++
	}
	q.pending = slices.Delete(q.pending, 0, n)
	q.head.Acked = seq
	if err := q.saveHeadLocked(); err != nil {
		return err
	}
	return q.removeAckedLocked()
}

// removeAckedLocked deletes the segments whose every finding is
// acknowledged (the active one too, closed first).
func (q *Queue) removeAckedLocked() error {
	keep := q.segments[:0]
	var errs []error
	for i, seg := range q.segments {
		isLast := i == len(q.segments)-1
		acked := seg.last != 0 && seg.last <= q.head.Acked
		// A segment without a finding (every line corrupt) goes too,
		// unless it is the last, which the next append may be using.
		if !acked && (seg.last != 0 || isLast) {
			keep = append(keep, seg)
			continue
		}
		if isLast && q.active != nil {
			// The active segment is emptied and kept for the next append:
			// an alert's finding then costs one fsync, not a new file and
			// its directory's fsync too. Its name stays that of an older
			// first sequence number, which keeps it last in name order.
			// Emptying needs no fsync: a crash that brings the lines back
			// finds them acknowledged by the watermark, saved before.
			if err := q.active.Truncate(0); err == nil {
				keep = append(keep, queueSegment{name: seg.name})
				continue
			}
			_ = q.active.Close()
			q.active = nil
		}
		if err := os.Remove(filepath.Join(q.dir, seg.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing acknowledged finding queue segment: %w", err))
			keep = append(keep, seg)
		}
	}
	clear(q.segments[len(keep):])
	q.segments = keep
	q.synced = max(q.synced, q.head.Acked)
	return errors.Join(errs...)
}

// saveHeadLocked replaces the watermark file atomically.
func (q *Queue) saveHeadLocked() error {
	b, err := json.Marshal(q.head)
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(q.dir, queueHeadFile, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving finding queue watermark: %w", err)
	}
	return nil
}

// Stats reports what the queue holds.
func (q *Queue) Stats() QueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return QueueStats{Pending: len(q.pending), Bytes: q.bytes, Acked: q.head.Acked, Dropped: q.head.Dropped, Refused: q.refused, Repaired: q.repaired}
}

// Close syncs and closes the active segment; later appends fail with
// ErrQueueClosed.
func (q *Queue) Close() error {
	q.syncMu.Lock()
	defer q.syncMu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	if q.active == nil {
		return nil
	}
	err := q.active.Sync()
	if err == nil {
		q.synced = max(q.synced, q.written)
	}
	return errors.Join(err, q.active.Close())
}

// fitFinding encodes f within limit bytes (with room for the line's
// envelope), trimming its evidence when it must: over-long evidence lines
// are cut first, then lines are left out from the end, and a last line
// says how many.
func fitFinding(f wire.Finding, limit int) (json.RawMessage, error) {
	const envelope = 64 // {"seq":…,"finding":…}\n
	budget := limit - envelope
	raw, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("encoding finding: %w", err)
	}
	if len(raw) <= budget {
		return raw, nil
	}
	total := len(f.Evidence)
	lines := make([]string, total)
	lineMax := max(budget/8, 256)
	for i, l := range f.Evidence {
		lines[i] = clipEvidence(l, lineMax)
	}
	f.Evidence = lines
	for kept := total; ; {
		if raw, err = json.Marshal(f); err != nil {
			return nil, fmt.Errorf("encoding finding: %w", err)
		}
		over := len(raw) - budget
		if over <= 0 {
			return raw, nil
		}
		if kept == 0 {
			return nil, fmt.Errorf("%w: %d bytes without evidence, limit %d (kind %s, key %s)", ErrFindingTooLarge, len(raw), limit, f.Kind, f.Key)
		}
		// Leave out lines from the end until their encoded size covers
		// what is over, with room for the note.
		over += 128
		for kept > 0 && over > 0 {
			kept--
			enc, _ := json.Marshal(lines[kept])
			over -= len(enc) + 1
		}
		f.Evidence = append(lines[:kept:kept], fmt.Sprintf("[warden: %d of %d evidence lines left out: the finding was larger than %d bytes]", total-kept, total, limit))
	}
}

// clipEvidence cuts s to at most n bytes on a character boundary, saying
// so.
func clipEvidence(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = " …[cut]"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
