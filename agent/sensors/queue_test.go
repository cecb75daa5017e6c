package sensors_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/sensors"
	"github.com/warden-ir/warden/agent/wire"
)

// qT0 dates the findings of these tests.
var qT0 = time.Date(2030, 1, 8, 3, 0, 0, 0, time.UTC)

// queueFinding is a finding told apart by key.
func queueFinding(key string) wire.Finding {
	return wire.Finding{
		Kind: "auth_failure_burst", Severity: "high", Confidence: 0.9, Summary: "10 failed SSH logins from 198.51.100.9",
		IPs: []string{"198.51.100.9"}, Labels: map[string]string{"service": "sshd"},
		Evidence:   []string{"Failed password for invalid user admin from 198.51.100.9 port 51234 ssh2"},
		ObservedAt: qT0, Key: key, Sensor: "auth",
	}
}

func openQueue(t *testing.T, dir string, opt sensors.QueueOptions) *sensors.Queue {
	t.Helper()
	q, err := sensors.OpenQueue(dir, opt)
	if err != nil {
		t.Fatalf("opening the queue: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func appendKeys(t *testing.T, q *sensors.Queue, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if err := q.Append(queueFinding(k)); err != nil {
			t.Fatalf("appending %s: %v", k, err)
		}
	}
}

// pendingKeys peeks at everything pending and returns the keys, oldest
// first, and the last sequence number.
func pendingKeys(t *testing.T, q *sensors.Queue) ([]string, uint64) {
	t.Helper()
	es, err := q.Peek(1<<20, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var last uint64
	for _, e := range es {
		keys = append(keys, e.Finding.Key)
		if e.Seq <= last {
			t.Fatalf("sequence numbers out of order: %d after %d", e.Seq, last)
		}
		last = e.Seq
	}
	return keys, last
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestQueueAppendPeekAck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "queue")
	q := openQueue(t, dir, sensors.QueueOptions{})
	appendKeys(t, q, "a", "b", "c")

	es, err := q.Peek(2, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Finding.Key != "a" || es[1].Finding.Key != "b" {
		t.Fatalf("Peek(2) = %+v, want a and b", es)
	}
	if got := es[0].Finding; !got.ObservedAt.Equal(qT0) || got.Evidence[0] != queueFinding("a").Evidence[0] || got.Labels["service"] != "sshd" {
		t.Fatalf("the finding did not come back whole: %+v", got)
	}
	if err := q.Ack(es[1].Seq); err != nil {
		t.Fatal(err)
	}
	if keys, _ := pendingKeys(t, q); !slices.Equal(keys, []string{"c"}) {
		t.Fatalf("after acking a and b pending = %v, want [c]", keys)
	}
	if err := q.Ack(es[0].Seq); err != nil {
		t.Fatalf("acking what is already gone: %v", err)
	}
	if st := q.Stats(); st.Pending != 1 || st.Acked != es[1].Seq || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}

	// Modes: the directory 0700, every file 0600.
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("queue directory: %v %v", fi.Mode().Perm(), err)
	}
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		fi, _ := f.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f.Name(), fi.Mode().Perm())
		}
	}

	// Acking everything leaves no finding on the disk (the active segment
	// stays, emptied, for the next append); the watermark stays.
	_, last := pendingKeys(t, q)
	if err := q.Ack(last); err != nil {
		t.Fatal(err)
	}
	before := segmentFiles(t, dir)
	for _, seg := range before {
		if fi, err := os.Stat(seg); err != nil || fi.Size() != 0 {
			t.Fatalf("segment %s after acking everything: %v bytes (%v), want none", seg, fi.Size(), err)
		}
	}
	appendKeys(t, q, "d")
	keys, dSeq := pendingKeys(t, q)
	if !slices.Equal(keys, []string{"d"}) || dSeq <= last {
		t.Fatalf("after a new append pending = %v (last seq %d), want [d] after %d", keys, dSeq, last)
	}
	// The next finding went into the kept segment: no new file (and no
	// directory fsync) per alert.
	if after := segmentFiles(t, dir); !slices.Equal(after, before) {
		t.Fatalf("segments %v after the next append, want the kept %v", after, before)
	}
	// A crash now (no Close): d is pending again, and nothing acked.
	q2 := openQueue(t, dir, sensors.QueueOptions{})
	if keys, seq := pendingKeys(t, q2); !slices.Equal(keys, []string{"d"}) || seq != dSeq {
		t.Fatalf("after a crash pending = %v (last seq %d), want [d] (%d)", keys, seq, dSeq)
	}
}

// TestQueueRestart: what was appended and not acknowledged is pending
// again after a restart, clean (Close) or not (a crash: the process went
// away between the append and the ack, so the finding is delivered
// again); what was acknowledged is not; sequence numbers go on.
func TestQueueRestart(t *testing.T) {
	tests := map[string]struct {
		ackFirst bool
		close    bool
		want     []string
	}{
		"clean stop, nothing acked":       {close: true, want: []string{"a", "b", "c"}},
		"clean stop, first acked":         {ackFirst: true, close: true, want: []string{"b", "c"}},
		"crash between append and ack":    {want: []string{"a", "b", "c"}},
		"crash after the first was acked": {ackFirst: true, want: []string{"b", "c"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			q := openQueue(t, dir, sensors.QueueOptions{})
			appendKeys(t, q, "a", "b", "c")
			es, err := q.Peek(1, 1<<20) // the sender took "a" …
			if err != nil {
				t.Fatal(err)
			}
			if tc.ackFirst { // … and the controller's 2xx came back
				if err := q.Ack(es[0].Seq); err != nil {
					t.Fatal(err)
				}
			}
			if tc.close { // else openQueue closes it when the test ends
				if err := q.Close(); err != nil {
					t.Fatal(err)
				}
			}

			again := openQueue(t, dir, sensors.QueueOptions{})
			keys, last := pendingKeys(t, again)
			if !slices.Equal(keys, tc.want) {
				t.Fatalf("after restart pending = %v, want %v", keys, tc.want)
			}
			appendKeys(t, again, "d")
			es, _ = again.Peek(1<<20, 1<<40)
			if got := es[len(es)-1]; got.Finding.Key != "d" || got.Seq != last+1 {
				t.Fatalf("next append got seq %d (%s), want %d", got.Seq, got.Finding.Key, last+1)
			}
		})
	}
}

// TestQueueRepairsTornWrites: a crash in the middle of an append leaves a
// partial or garbled last line; opening cuts it off (or skips a bad line
// in the middle) and keeps every whole finding.
func TestQueueRepairsTornWrites(t *testing.T) {
	tests := map[string]struct {
		tail     string
		middle   bool // the bad line sits between good ones
		repaired int
	}{
		"line without its newline":   {tail: `{"seq":3,"finding":{"kind":"cra`, repaired: 1},
		"garbage with a newline":     {tail: "\x00\x00\x00\n", repaired: 1},
		"a record without seq":       {tail: `{"finding":{"kind":"crash"}}` + "\n", repaired: 1},
		"a finding of another shape": {tail: `{"seq":3,"finding":{"kind":["crash"]}}` + "\n", repaired: 1},
		"a bad line in the middle":   {tail: "not json\n", middle: true, repaired: 1},
		"nothing wrong, empty tail":  {tail: "", repaired: 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			q := openQueue(t, dir, sensors.QueueOptions{})
			appendKeys(t, q, "a", "b")
			segs := segmentFiles(t, dir)
			if len(segs) != 1 {
				t.Fatalf("segments %v", segs)
			}
			f, err := os.OpenFile(segs[0], os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString(tc.tail); err != nil {
				t.Fatal(err)
			}
			_ = f.Close()
			if tc.middle {
				appendKeys(t, q, "c")
			}
			_ = q.Close()

			again := openQueue(t, dir, sensors.QueueOptions{})
			want := []string{"a", "b"}
			if tc.middle {
				want = append(want, "c")
			}
			if keys, _ := pendingKeys(t, again); !slices.Equal(keys, want) {
				t.Fatalf("pending %v, want %v", keys, want)
			}
			if st := again.Stats(); st.Repaired != tc.repaired {
				t.Fatalf("repaired %d lines, want %d", st.Repaired, tc.repaired)
			}
			// The queue goes on cleanly: a later restart reads every line.
			appendKeys(t, again, "e")
			_ = again.Close()
			third := openQueue(t, dir, sensors.QueueOptions{})
			if keys, _ := pendingKeys(t, third); !slices.Equal(keys, append(want, "e")) {
				t.Fatalf("after appending to the repaired queue pending %v, want %v", keys, append(want, "e"))
			}
			if st := third.Stats(); st.Repaired != 0 && !tc.middle {
				t.Fatalf("the repair did not stick: %d lines repaired again", st.Repaired)
			}
		})
	}
}

// TestQueueBounds: past MaxBytes the oldest findings go, counted (across
// restarts too); the newest stay; acknowledged segments leave the disk.
func TestQueueBounds(t *testing.T) {
	dir := t.TempDir()
	opt := sensors.QueueOptions{MaxBytes: 8 << 10, SegmentBytes: 2 << 10, MaxEntryBytes: 2 << 10}
	q, err := sensors.OpenQueue(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for i := range 200 {
		all = append(all, fmt.Sprintf("k%03d", i))
	}
	appendKeys(t, q, all...)
	st := q.Stats()
	if st.Bytes > opt.MaxBytes {
		t.Fatalf("queue holds %d bytes, bound %d", st.Bytes, opt.MaxBytes)
	}
	if st.Dropped == 0 || int(st.Dropped)+st.Pending != len(all) {
		t.Fatalf("dropped %d + pending %d != appended %d", st.Dropped, st.Pending, len(all))
	}
	keys, _ := pendingKeys(t, q)
	if want := all[len(all)-len(keys):]; !slices.Equal(keys, want) {
		t.Fatalf("kept %v, want the newest %d", keys, len(want))
	}
	if segs := segmentFiles(t, dir); len(segs) > int(opt.MaxBytes/opt.SegmentBytes)+2 {
		t.Fatalf("%d segments on disk for %d bytes of findings", len(segs), st.Bytes)
	}
	_ = q.Close()

	again := openQueue(t, dir, opt)
	if st2 := again.Stats(); st2.Dropped != st.Dropped || st2.Pending != st.Pending {
		t.Fatalf("after restart %+v, before %+v", st2, st)
	}
	if keys2, _ := pendingKeys(t, again); !slices.Equal(keys2, keys) {
		t.Fatalf("after restart pending %v, want %v", keys2, keys)
	}
	// A smaller bound at the next start drops what is now too much.
	_ = again.Close()
	smaller := opt
	smaller.MaxBytes = 4 << 10
	third := openQueue(t, dir, smaller)
	if st3 := third.Stats(); st3.Bytes > smaller.MaxBytes || st3.Dropped <= st.Dropped {
		t.Fatalf("with a smaller bound: %+v", st3)
	}
}

// TestQueueFitsLargeFindings: evidence is trimmed to fit one entry, and
// says so; a finding too large without evidence is refused and counted.
func TestQueueFitsLargeFindings(t *testing.T) {
	q := openQueue(t, t.TempDir(), sensors.QueueOptions{MaxEntryBytes: 4 << 10, MaxBytes: 1 << 20})
	tests := map[string]struct {
		edit      func(f *wire.Finding)
		wantErr   error
		wantNote  bool
		wantLines func(t *testing.T, ev []string)
	}{
		"fits as it is": {edit: func(f *wire.Finding) {}},
		"many evidence lines": {
			edit: func(f *wire.Finding) {
				f.Evidence = nil
				for i := range 200 {
					f.Evidence = append(f.Evidence, fmt.Sprintf("Jan  8 03:00:%02d gw sshd[1]: Failed password for root from 198.51.100.9 port %d ssh2", i%60, 40000+i))
				}
			},
			wantNote: true,
			wantLines: func(t *testing.T, ev []string) {
				if !strings.HasPrefix(ev[0], "Jan  8 03:00:00") {
					t.Fatalf("the first lines should stay: %q", ev[0])
				}
			},
		},
		"one huge evidence line": {
			edit:     func(f *wire.Finding) { f.Evidence = []string{strings.Repeat("日本語", 5000)} },
			wantNote: false,
			wantLines: func(t *testing.T, ev []string) {
				if len(ev) != 1 || !strings.HasSuffix(ev[0], "…[cut]") || !utf8Valid(ev[0]) {
					t.Fatalf("evidence %d lines, %q…", len(ev), ev[0][:min(40, len(ev[0]))])
				}
			},
		},
		"too large without evidence": {
			edit:    func(f *wire.Finding) { f.Summary = strings.Repeat("x", 8<<10) },
			wantErr: sensors.ErrFindingTooLarge,
		},
	}
	refused := uint64(0)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := queueFinding(name)
			tc.edit(&f)
			err := q.Append(f)
			if tc.wantErr != nil {
				refused++
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Append = %v, want %v", err, tc.wantErr)
				}
				if st := q.Stats(); st.Refused != refused {
					t.Fatalf("refused %d, want %d", st.Refused, refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			es, _ := q.Peek(1<<20, 1<<40)
			got := es[len(es)-1].Finding
			if got.Key != name {
				t.Fatalf("last queued %q", got.Key)
			}
			note := len(got.Evidence) > 0 && strings.HasPrefix(got.Evidence[len(got.Evidence)-1], "[warden: ")
			if note != tc.wantNote {
				t.Fatalf("note %v, want %v (evidence %d lines)", note, tc.wantNote, len(got.Evidence))
			}
			if tc.wantLines != nil {
				tc.wantLines(t, got.Evidence)
			}
		})
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// TestQueueConcurrentAppends: appends from many sensors at once each get
// their own sequence number and all survive a restart.
func TestQueueConcurrentAppends(t *testing.T) {
	dir := t.TempDir()
	q, err := sensors.OpenQueue(dir, sensors.QueueOptions{SegmentBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				q.Emit(queueFinding(fmt.Sprintf("w%d-%02d", w, i)))
			}
		})
	}
	// A sender acknowledging meanwhile must not lose or duplicate any.
	var acked []string
	wg.Go(func() {
		for len(acked) < writers*each/2 {
			es, err := q.Peek(10, 1<<20)
			if err != nil {
				t.Error(err)
				return
			}
			if len(es) == 0 {
				<-q.Ready()
				continue
			}
			for _, e := range es {
				acked = append(acked, e.Finding.Key)
			}
			if err := q.Ack(es[len(es)-1].Seq); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.Append(queueFinding("late")); !errors.Is(err, sensors.ErrQueueClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	again := openQueue(t, dir, sensors.QueueOptions{SegmentBytes: 16 << 10})
	rest, _ := pendingKeys(t, again)
	all := append(slices.Clone(acked), rest...)
	slices.Sort(all)
	if len(all) != writers*each || len(slices.Compact(slices.Clone(all))) != len(all) {
		t.Fatalf("acked %d + pending %d = %d findings (distinct %d), want %d", len(acked), len(rest), len(all), len(slices.Compact(slices.Clone(all))), writers*each)
	}
}

func TestQueueOptionsValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		opt  sensors.QueueOptions
		want string
	}{
		"defaults":                    {opt: sensors.QueueOptions{}},
		"entry bound too small":       {opt: sensors.QueueOptions{MaxEntryBytes: 100}, want: "less than 1024"},
		"entry larger than the queue": {opt: sensors.QueueOptions{MaxEntryBytes: 8 << 10, MaxBytes: 4 << 10}, want: "more than the queue's max bytes"},
	} {
		t.Run(name, func(t *testing.T) {
			err := tc.opt.Validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
			if _, err := sensors.OpenQueue(t.TempDir(), tc.opt); (err == nil) != (tc.want == "") {
				t.Fatalf("OpenQueue = %v", err)
			}
		})
	}
}
