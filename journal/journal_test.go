package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// Concurrent appends are all read back, once each, in some order; and a
// journal opened again reads the same. Also with small segments and
// chunks, so that fills ahead and new segments happen while appends run.
func TestAppendConcurrentThenRead(t *testing.T) {
	t.Run("default sizes", func(t *testing.T) { testAppendConcurrentThenRead(t, SegmentBytes, ZeroChunk) })
	t.Run("small segments", func(t *testing.T) { testAppendConcurrentThenRead(t, 2<<10, 512) })
}

func testAppendConcurrentThenRead(t *testing.T, segmentBytes, zeroChunk int64) {
	dir := t.TempDir()
	j, err := open(dir, segmentBytes, zeroChunk)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for n := range 50 {
				if _, err := j.Append(t.Context(), fmt.Appendf(nil, "w%d-n%d", w, n)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	check := func(j *Journal) {
		t.Helper()
		seen := map[string]int{}
		for _, r := range readAll(t, j, 37) {
			seen[r]++
		}
		if len(seen) != 800 {
			t.Fatalf("read %d distinct records, want 800", len(seen))
		}
		for r, n := range seen {
			if n != 1 {
				t.Fatalf("record %s read %d times", r, n)
			}
		}
	}
	check(j)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2, err := open(dir, segmentBytes, zeroChunk)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	check(j2)
}

// TestSegmentsEndAtTheirLastRecord: appends go on across several
// segments and read back in order, before and after the journal is opened
// again; a segment left behind ends at its last record (the zeros written
// ahead are cut off: a reader takes zeros inside a segment for a torn
// record), and the one in use has zeros written ahead of the next append.
func TestSegmentsEndAtTheirLastRecord(t *testing.T) {
	dir := t.TempDir()
	const segment, chunk = 64 << 10, 8 << 10
	j, err := open(dir, segment, chunk)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	rec := make([]byte, 1000)
	for i := range 300 { // about 4.6 segments
		r := fmt.Appendf(rec[:0:len(rec)], "record %d ", i)
		r = r[:len(rec)]
		if _, err := j.Append(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		want = append(want, string(r))
	}
	j.mu.Lock()
	seg, size, zeroed := j.seg, j.size, j.zeroed
	j.mu.Unlock()
	if seg < 4 || zeroed <= size {
		t.Errorf("segment %d, %d bytes written ahead: want the 4th segment at least, and zeros ahead", seg, zeroed-size)
	}
	readBack := func(j *Journal) {
		t.Helper()
		if got := readAll(t, j, 50); !slices.Equal(got, want) {
			t.Fatalf("read %d records back, want the %d appended, in order", len(got), len(want))
		}
	}
	readBack(j)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	for s := int64(1); s < seg; s++ {
		fi, err := os.Stat(j.path(s))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() < segment || fi.Size() > segment+int64(len(rec))+headerLen {
			t.Errorf("segment %d is %d bytes: want its records only (%d to %d)", s, fi.Size(), segment, segment+len(rec)+headerLen)
		}
	}
	j, err = open(dir, segment, chunk)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	readBack(j)
}

// readAll reads every record kept, from the oldest segment, max at a time.
func readAll(t *testing.T, j *Journal, max int) []string {
	t.Helper()
	p, err := j.First()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		recs, next, err := j.Read(p, max)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		for _, r := range recs {
			out = append(out, string(r))
		}
		p = next
	}
}

// A torn tail (a batch cut short by a crash, never acknowledged) is cut
// off at open, and what was acknowledged before it stays.
func TestTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(t.Context(), []byte("one"), []byte("two")); err != nil {
		t.Fatal(err)
	}
	_ = j.Close()
	seg := filepath.Join(dir, fmt.Sprintf("%016d.wal", 1))
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write([]byte{9, 0, 0, 0, 1, 2, 3, 4, 'x'}) // a record of 9 bytes, 1 written
	_ = f.Close()
	j, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.Append(t.Context(), []byte("three")); err != nil {
		t.Fatal(err)
	}
	recs, _, err := j.Read(Pos{Segment: 1}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || string(recs[0]) != "one" || string(recs[1]) != "two" || string(recs[2]) != "three" {
		t.Fatalf("read %q, want one, two, three", recs)
	}
}

// A corrupted byte in an acknowledged record is reported by Read, never
// skipped silently.
func TestCorruptRecordIsAnError(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.Append(t.Context(), []byte("one"), []byte("two")); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(dir, fmt.Sprintf("%016d.wal", 1))
	b, _ := os.ReadFile(seg)
	end, _ := j.Durable()
	b[end.Offset-1] ^= 0xff // the last byte of "two" (zeros follow, written ahead)
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := j.Read(Pos{Segment: 1}, 10); err == nil {
		t.Fatal("a corrupt record was read without an error")
	}
}

// BenchmarkAppend16 measures appends from 16 goroutines (one fsync per
// group).
func BenchmarkAppend16(b *testing.B) {
	j, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	rec := make([]byte, 400)
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := j.Append(b.Context(), rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
