// Package journal is the intake's group-commit journal: an append-only
// file of records, written in batches with one fsync per batch. Append
// returns only once the batch holding its records is on disk, so that an
// answer sent after it promises what a committed transaction promises.
//
// A record is framed as its length (4 bytes, little endian), the CRC-32C
// of its payload (4 bytes) and the payload. A torn tail (a batch cut
// short by a crash before its fsync returned, so never acknowledged) is
// cut off when the journal is opened. The journal is kept in segments
// (one file each, NNNNNNNNNNNNNNNN.wal); the reader releases a segment
// once every record in it is decided, which deletes it.
package journal

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// SegmentBytes is the size after which appends go to a new segment.
const SegmentBytes = 64 << 20

// MaxRecord bounds one record's payload.
const MaxRecord = 4 << 20

const headerLen = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Pos is a place in the journal: a segment and a byte offset in it.
type Pos struct {
	Segment int64
	Offset  int64
}

// Before reports whether p comes before q.
func (p Pos) Before(q Pos) bool {
	return p.Segment < q.Segment || (p.Segment == q.Segment && p.Offset < q.Offset)
}

// Journal is an open journal. Its methods are safe for concurrent use.
type Journal struct {
	dir string

	mu   sync.Mutex
	f    *os.File
	seg  int64 // segment f writes
	size int64 // bytes of f
	// zeroed is how far f is written (zeros past size) and synced, so
	// that a batch within it needs fdatasync only, not a journal commit
	// of the file system's metadata. Only the writer touches it.
	zeroed int64
	// segmentBytes and zeroChunk are SegmentBytes and ZeroChunk, but for
	// tests.
	segmentBytes, zeroChunk int64
	durable                 Pos   // end of the last fsynced batch
	err                     error // a failed write or fsync: the journal refuses appends
	queue                   []*batch
	writing                 bool
	changed                 chan struct{} // closed (and replaced) when durable moves
	closed                  bool
}

type batch struct {
	recs [][]byte
	end  Pos
	err  error
	done chan struct{}
}

// Open opens (creating it if needed) the journal in dir, and cuts off a
// torn tail of its last segment.
func Open(dir string) (*Journal, error) {
	return open(dir, SegmentBytes, ZeroChunk)
}

func open(dir string, segmentBytes, zeroChunk int64) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	segs, err := segments(dir)
	if err != nil {
		return nil, err
	}
	j := &Journal{dir: dir, changed: make(chan struct{}), segmentBytes: segmentBytes, zeroChunk: zeroChunk}
	if len(segs) == 0 {
		segs = []int64{1}
	}
	j.seg = segs[len(segs)-1]
	f, err := os.OpenFile(j.path(j.seg), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	end, err := validEnd(f)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	if err := f.Truncate(end); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("journal: cutting the torn tail: %w", err)
	}
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("journal: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("journal: %w", err)
	}
	if err := syncDir(dir); err != nil {
		_ = f.Close()
		return nil, err
	}
	j.f, j.size, j.zeroed, j.durable = f, end, end, Pos{Segment: j.seg, Offset: end}
	return j, nil
}

// First is the position of the oldest record kept.
func (j *Journal) First() (Pos, error) {
	segs, err := segments(j.dir)
	if err != nil || len(segs) == 0 {
		return Pos{Segment: 1}, err
	}
	return Pos{Segment: segs[0]}, nil
}

func (j *Journal) path(seg int64) string {
	return filepath.Join(j.dir, fmt.Sprintf("%016d.wal", seg))
}

// segments lists the segment numbers in dir, in order.
func segments(dir string) ([]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var out []int64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".wal")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(name, 10, 64); err == nil {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// validEnd is the offset after the last whole, checksummed record of f.
func validEnd(f *os.File) (int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("journal: %w", err)
	}
	r := &countingReader{r: f}
	var off int64
	for {
		if _, err := readRecord(r, nil); err != nil {
			if errors.Is(err, errTorn) || errors.Is(err, io.EOF) {
				return off, nil
			}
			return 0, err
		}
		off = r.n
	}
}

var errTorn = errors.New("journal: torn record")

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// readRecord reads one record into buf (grown as needed): io.EOF at a
// clean end, errTorn for a partial or corrupt record.
func readRecord(r io.Reader, buf []byte) ([]byte, error) {
	var h [headerLen]byte
	if n, err := io.ReadFull(r, h[:]); err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errTorn
		}
		return nil, fmt.Errorf("journal: %w", err)
	}
	n := binary.LittleEndian.Uint32(h[:4])
	if n == 0 || n > MaxRecord {
		return nil, errTorn
	}
	buf = slices.Grow(buf[:0], int(n))[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, errTorn
		}
		return nil, fmt.Errorf("journal: %w", err)
	}
	if crc32.Checksum(buf, castagnoli) != binary.LittleEndian.Uint32(h[4:]) {
		return nil, errTorn
	}
	return buf, nil
}

// Append writes recs and returns once they are on disk (fsynced), with
// the position after them. Concurrent calls share a write and an fsync:
// whoever finds no write in progress writes every batch queued so far.
func (j *Journal) Append(ctx context.Context, recs ...[]byte) (Pos, error) {
	for _, r := range recs {
		if len(r) == 0 || len(r) > MaxRecord {
			return Pos{}, fmt.Errorf("journal: a record of %d bytes (1 to %d)", len(r), MaxRecord)
		}
	}
	b := &batch{recs: recs, done: make(chan struct{})}
	j.mu.Lock()
	if j.closed || j.err != nil {
		err := j.err
		j.mu.Unlock()
		if err == nil {
			err = errors.New("journal: closed")
		}
		return Pos{}, err
	}
	j.queue = append(j.queue, b)
	if j.writing {
		j.mu.Unlock()
		<-b.done // the write holding b has started: it is not abandoned
		return b.end, b.err
	}
	j.writing = true
	for len(j.queue) > 0 {
		q := j.queue
		j.queue = nil
		j.mu.Unlock()
		j.write(q)
		j.mu.Lock()
	}
	j.writing = false
	j.mu.Unlock()
	return b.end, b.err
}

// write writes the batches of q in one write and one fsync. Only the
// writer (j.writing) calls it.
func (j *Journal) write(q []*batch) {
	var buf []byte
	for _, b := range q {
		for _, r := range b.recs {
			buf = binary.LittleEndian.AppendUint32(buf, uint32(len(r)))
			buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(r, castagnoli))
			buf = append(buf, r...)
		}
	}
	j.mu.Lock()
	err, f, seg, size := j.err, j.f, j.seg, j.size
	j.mu.Unlock()
	if err == nil && size+int64(len(buf)) > j.zeroed {
		err = j.zeroFill(f, size+int64(len(buf)))
	}
	if err == nil {
		_, err = f.WriteAt(buf, size)
		if err == nil {
			err = unix.Fdatasync(int(f.Fd()))
		}
	}
	end := Pos{Segment: seg, Offset: size + int64(len(buf))}
	j.mu.Lock()
	if err != nil {
		// What was written may or may not be on disk; nothing after it
		// may be acknowledged.
		j.err = fmt.Errorf("journal: writing: %w", err)
		err = j.err
	} else {
		j.size, j.durable = end.Offset, end
		close(j.changed)
		j.changed = make(chan struct{})
		if j.size >= j.segmentBytes {
			j.rotate()
		}
	}
	j.mu.Unlock()
	for _, b := range q {
		b.end, b.err = end, err
		close(b.done)
	}
}

// ZeroChunk is how much of a segment is written ahead with zeros at once.
const ZeroChunk = 8 << 20

// zeroFill writes zeros from j.zeroed to at least need (a chunk at a
// time) and syncs them with their metadata: the appends that then
// overwrite them change no file size or extent, so their fdatasync is a
// data write and a cache flush. A record never has length zero, so the
// zeros read as the end.
func (j *Journal) zeroFill(f *os.File, need int64) error {
	to := max(need, j.zeroed+j.zeroChunk)
	zeros := make([]byte, min(1<<20, j.zeroChunk))
	for off := j.zeroed; off < to; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), to-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	j.zeroed = to
	return nil
}

// rotate starts the next segment, cutting the zeros written ahead off
// the one it leaves. j.mu is held.
func (j *Journal) rotate() {
	if err := j.f.Truncate(j.size); err != nil {
		j.err = fmt.Errorf("journal: closing a segment: %w", err)
		return
	}
	if err := j.f.Sync(); err != nil {
		j.err = fmt.Errorf("journal: closing a segment: %w", err)
		return
	}
	f, err := os.OpenFile(j.path(j.seg+1), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		err = syncDir(j.dir)
	}
	if err != nil {
		j.err = fmt.Errorf("journal: starting a segment: %w", err)
		return
	}
	_ = j.f.Close()
	j.f, j.seg, j.size, j.zeroed = f, j.seg+1, 0, 0
	j.durable = Pos{Segment: j.seg}
}

// Durable is the end of what is on disk, and a channel closed when it
// moves.
func (j *Journal) Durable() (Pos, <-chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.durable, j.changed
}

// Read returns up to max records from p, only ones already durable, and
// the position after them. A segment read to its end moves on to the next.
func (j *Journal) Read(p Pos, max int) ([][]byte, Pos, error) {
	end, _ := j.Durable()
	var out [][]byte
	for len(out) < max && p.Before(end) {
		f, err := os.Open(j.path(p.Segment))
		if err != nil {
			return out, p, fmt.Errorf("journal: %w", err)
		}
		limit := int64(-1)
		if p.Segment == end.Segment {
			limit = end.Offset
		}
		recs, off, err := readSegment(f, p.Offset, limit, max-len(out))
		_ = f.Close()
		if err != nil {
			return out, p, err
		}
		out = append(out, recs...)
		p.Offset = off
		if len(out) < max && p.Segment < end.Segment {
			p = Pos{Segment: p.Segment + 1} // an older segment, read to its end
		}
	}
	return out, p, nil
}

// readSegment reads up to max records of f from off, stopping at limit
// (-1: the end of the file).
func readSegment(f *os.File, off, limit int64, max int) ([][]byte, int64, error) {
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, off, fmt.Errorf("journal: %w", err)
	}
	var src io.Reader = f
	if limit >= 0 {
		src = io.LimitReader(f, limit-off)
	}
	r := bufio.NewReaderSize(src, 64<<10)
	var out [][]byte
	for len(out) < max {
		rec, err := readRecord(r, nil)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, off, fmt.Errorf("journal: reading segment at %d: %w", off, err)
		}
		out = append(out, rec)
		off += int64(headerLen + len(rec))
	}
	return out, off, nil
}

// Count is the number of records kept (from the oldest segment to the
// durable end).
func (j *Journal) Count() (int, error) {
	p, err := j.First()
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		recs, next, err := j.Read(p, 4096)
		if err != nil || len(recs) == 0 {
			return n, err
		}
		n += len(recs)
		p = next
	}
}

// Release deletes the segments wholly before p (every record in them is
// decided).
func (j *Journal) Release(p Pos) error {
	segs, err := segments(j.dir)
	if err != nil {
		return err
	}
	for _, s := range segs {
		if s >= p.Segment {
			break
		}
		if err := os.Remove(j.path(s)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("journal: %w", err)
		}
	}
	return nil
}

// Close closes the journal; appends after it fail.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	return j.f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("journal: syncing %s: %w", dir, err)
	}
	return nil
}
