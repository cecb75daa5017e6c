// Package pcap records a gateway's traffic as evidence: a bounded packet
// capture on every interface, written as pcapng in pure Go (an AF_PACKET
// socket through golang.org/x/sys/unix, gopacket's pcapgo writer; no
// libpcap, no cgo), kept as a ring of segments so that the newest traffic
// stays within MaxBytes, stopped after Duration or when asked, and finished
// into one file whose SHA-256 the controller checks when it fetches it.
//
// The agent starts one when it quarantines the gateway (what tries to
// leave during quarantine is recorded) and when a person asks. It owns
// the capture only: it must not change the gateway's network, and it
// never sends anything itself (the controller reads the file).
package pcap

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/warden-ir/warden/agent/wire"
)

// segments is how many files the ring keeps: the oldest is dropped when a
// new one starts.
const segments = 4

// maxKept bounds the finished captures kept on the gateway.
const maxKept = 8

// Source delivers packets: a live AF_PACKET socket, or a test's.
type Source interface {
	// Interfaces lists the gateway's interfaces now.
	Interfaces() ([]Interface, error)
	// Read waits up to about a quarter second for one packet; ok false
	// means none came (check for a stop and call again).
	Read() (p Packet, ok bool, err error)
	Close() error
}

// Interface is one network interface of the gateway.
type Interface struct {
	Index int
	Name  string
	// LinkType is what a packet on it starts with (Ethernet, raw IP).
	LinkType layers.LinkType
}

// Packet is one captured packet.
type Packet struct {
	At        time.Time
	Interface int // the kernel's index
	Data      []byte
	Length    int // on the wire
}

// OpenSource opens the packet source of the calling thread's network
// namespace.
type OpenSource func() (Source, error)

// Recorder runs at most one capture at a time and keeps the finished ones
// in its directory.
type Recorder struct {
	dir  string
	open OpenSource
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	current *capture
	done    []wire.CaptureStatus
}

// NewRecorder keeps captures in dir (made 0700) and reads packets from
// open's sources.
func NewRecorder(dir string, open OpenSource, log *slog.Logger) (*Recorder, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("making the capture directory: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{dir: dir, open: open, log: log, now: time.Now}
	r.done = r.loadFinished()
	return r, nil
}

// statusFile is each finished capture's record beside its pcapng file.
func (r *Recorder) statusFile(id string) string { return filepath.Join(r.dir, id+".json") }

func (r *Recorder) loadFinished() []wire.CaptureStatus {
	files, _ := filepath.Glob(filepath.Join(r.dir, "*.json"))
	var out []wire.CaptureStatus
	for _, f := range files {
		b, err := os.ReadFile(f)
		var st wire.CaptureStatus
		if err == nil && json.Unmarshal(b, &st) == nil {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b wire.CaptureStatus) int { return a.Started.Compare(b.Started) })
	return out
}

// capture is the running one.
type capture struct {
	mu     sync.Mutex // guards st while the capture runs
	st     wire.CaptureStatus
	filter wire.CaptureFilter
	stop   chan string
	done   chan struct{}
}

// Handle runs one packet_capture command.
func (r *Recorder) Handle(ctx context.Context, p wire.PacketCaptureParams) (wire.PacketCaptureResult, error) {
	switch p.Op {
	case wire.CaptureOpStart:
		if p.Spec == nil {
			return wire.PacketCaptureResult{}, fmt.Errorf("%w: spec: a start needs one", ErrInvalid)
		}
		st, changed, err := r.Start(*p.Spec)
		return wire.PacketCaptureResult{Capture: &st, Changed: changed}, err
	case wire.CaptureOpStop:
		st, changed, err := r.Stop(ctx, "stopped")
		if err != nil || !changed {
			return wire.PacketCaptureResult{Changed: false, Captures: r.Status()}, err
		}
		return wire.PacketCaptureResult{Capture: &st, Changed: true}, nil
	case wire.CaptureOpStatus:
		return wire.PacketCaptureResult{Captures: r.Status()}, nil
	case wire.CaptureOpRead:
		chunk, eof, err := r.Read(p.ID, p.Offset, p.Length)
		return wire.PacketCaptureResult{Chunk: chunk, EOF: eof}, err
	}
	return wire.PacketCaptureResult{}, fmt.Errorf("%w: op: %q is not start, stop, status or read", ErrInvalid, p.Op)
}

// Errors a caller maps to answers.
var (
	ErrInvalid  = errors.New("invalid capture request")
	ErrNotFound = errors.New("no such capture")
)

// Start starts a capture of spec unless one runs already (then it
// returns that one, unchanged).
func (r *Recorder) Start(spec wire.CaptureSpec) (wire.CaptureStatus, bool, error) {
	if err := spec.Validate(); err != nil {
		return wire.CaptureStatus{}, false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	filter, _ := wire.ParseCaptureFilter(spec.Filter)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.current != nil {
		return r.current.snapshot(), false, nil
	}
	src, err := r.open()
	if err != nil {
		return wire.CaptureStatus{}, false, fmt.Errorf("opening the packet socket: %w", err)
	}
	ifs, err := src.Interfaces()
	if err != nil {
		_ = src.Close()
		return wire.CaptureStatus{}, false, fmt.Errorf("listing interfaces: %w", err)
	}
	id := newID(r.now())
	c := &capture{st: wire.CaptureStatus{ID: id, Spec: spec, Running: true, Started: r.now().UTC()}, filter: filter,
		stop: make(chan string, 1), done: make(chan struct{})}
	for _, i := range ifs {
		c.st.Interfaces = append(c.st.Interfaces, i.Name)
	}
	r.current = c
	go r.run(c, src, ifs)
	r.log.Info("packet capture started", "id", id, "duration", time.Duration(spec.Duration), "max_bytes", spec.MaxBytes, "filter", spec.Filter, "reason", spec.Reason)
	return c.snapshot(), true, nil
}

func (c *capture) snapshot() wire.CaptureStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

// Stop stops the running capture and finishes its file; changed is false
// when none runs.
func (r *Recorder) Stop(ctx context.Context, why string) (wire.CaptureStatus, bool, error) {
	r.mu.Lock()
	c := r.current
	r.mu.Unlock()
	if c == nil {
		return wire.CaptureStatus{}, false, nil
	}
	select {
	case c.stop <- why:
	default:
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return wire.CaptureStatus{}, false, ctx.Err()
	}
	st := c.snapshot()
	return st, true, nil
}

// Close stops a running capture (its file is finished).
func (r *Recorder) Close() error {
	_, _, err := r.Stop(context.Background(), "agent stopped")
	return err
}

// Status lists the finished captures kept and the running one, oldest
// first.
func (r *Recorder) Status() []wire.CaptureStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.done)
	if r.current != nil {
		out = append(out, r.current.snapshot())
	}
	return out
}

// Read returns up to length bytes (at most wire.MaxCaptureChunk) of a
// finished capture's file from offset.
func (r *Recorder) Read(id string, offset, length int64) ([]byte, bool, error) {
	r.mu.Lock()
	i := slices.IndexFunc(r.done, func(s wire.CaptureStatus) bool { return s.ID == id })
	var st wire.CaptureStatus
	if i >= 0 {
		st = r.done[i]
	}
	r.mu.Unlock()
	if i < 0 || st.File == "" {
		return nil, false, fmt.Errorf("%w: %q (running or unknown)", ErrNotFound, id)
	}
	if length <= 0 || length > wire.MaxCaptureChunk {
		length = wire.MaxCaptureChunk
	}
	if offset < 0 || offset > st.Size {
		return nil, false, fmt.Errorf("%w: offset %d is outside the file's %d bytes", ErrInvalid, offset, st.Size)
	}
	f, err := os.Open(filepath.Join(r.dir, st.File))
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	buf := make([]byte, min(length, st.Size-offset))
	n, err := f.ReadAt(buf, offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false, err
	}
	return buf[:n], offset+int64(n) >= st.Size, nil
}

func newID(t time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "cap-" + t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// run captures until the duration passes or a stop comes, then finishes.
func (r *Recorder) run(c *capture, src Source, ifs []Interface) {
	defer close(c.done)
	deadline := time.Now().Add(time.Duration(c.st.Spec.Duration))
	ring := &ring{dir: r.dir, id: c.st.ID, limit: c.st.Spec.MaxBytes / segments, ifs: ifs}
	why := "duration"
	var runErr error
loop:
	for {
		select {
		case why = <-c.stop:
			break loop
		default:
		}
		if !time.Now().Before(deadline) {
			break
		}
		p, ok, err := src.Read()
		if err != nil {
			runErr, why = err, "error"
			break
		}
		if !ok || !Match(c.filter, ring.linkType(p.Interface), p.Data) {
			continue
		}
		if err := ring.write(p); err != nil {
			runErr, why = err, "error"
			break
		}
		c.mu.Lock()
		c.st.Packets, c.st.Dropped = ring.kept, ring.dropped
		c.mu.Unlock()
	}
	_ = src.Close()
	file, size, sum, err := ring.finish()
	c.mu.Lock()
	c.st.Running, c.st.Stopped, c.st.StopReason = false, time.Now().UTC(), why
	c.st.Packets, c.st.Dropped = ring.kept, ring.dropped
	c.st.File, c.st.Size, c.st.SHA256 = file, size, sum
	if err := errors.Join(runErr, err); err != nil {
		c.st.Error = err.Error()
	}
	st := c.st
	c.mu.Unlock()
	if b, err := json.Marshal(st); err == nil {
		_ = os.WriteFile(r.statusFile(st.ID), b, 0o600)
	}
	r.mu.Lock()
	r.current = nil
	r.done = append(r.done, st)
	for len(r.done) > maxKept {
		old := r.done[0]
		_ = os.Remove(filepath.Join(r.dir, old.File))
		_ = os.Remove(r.statusFile(old.ID))
		r.done = r.done[1:]
	}
	r.mu.Unlock()
	r.log.Info("packet capture finished", "id", st.ID, "reason", why, "packets", st.Packets, "dropped", st.Dropped, "bytes", st.Size, "error", st.Error)
}

// ring writes packets into segment files of at most limit bytes each,
// keeping the newest segments.
type ring struct {
	dir, id string
	limit   int64
	ifs     []Interface
	// index maps the kernel's interface index to the file's.
	index map[int]int
	files []string
	cur   *os.File
	w     *pcapgo.NgWriter
	size  int64
	seq   int
	kept  int64
	// dropped counts the packets of segments dropped from the ring.
	dropped    int64
	segPackets []int64
}

func (g *ring) linkType(ifindex int) layers.LinkType {
	for _, i := range g.ifs {
		if i.Index == ifindex {
			return i.LinkType
		}
	}
	return layers.LinkTypeEthernet
}

func ngInterface(i Interface) pcapgo.NgInterface {
	return pcapgo.NgInterface{Name: i.Name, OS: "linux", LinkType: i.LinkType, SnapLength: 0, TimestampResolution: 9}
}

// open starts a new segment, dropping the oldest when the ring is full.
func (g *ring) open() error {
	if err := g.close(); err != nil {
		return err
	}
	if len(g.files) == segments {
		_ = os.Remove(g.files[0])
		g.dropped += g.segPackets[0]
		g.kept -= g.segPackets[0]
		g.files, g.segPackets = g.files[1:], g.segPackets[1:]
	}
	g.seq++
	name := filepath.Join(g.dir, fmt.Sprintf("%s.seg%06d.pcapng", g.id, g.seq))
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("opening a capture segment: %w", err)
	}
	w, err := writerFor(f, g.ifs)
	if err != nil {
		f.Close()
		return err
	}
	g.cur, g.w, g.size = f, w, 0
	g.files, g.segPackets = append(g.files, name), append(g.segPackets, 0)
	g.index = map[int]int{}
	for n, i := range g.ifs {
		g.index[i.Index] = n
	}
	return nil
}

// writerFor writes a section with every interface, in order.
func writerFor(w io.Writer, ifs []Interface) (*pcapgo.NgWriter, error) {
	if len(ifs) == 0 {
		ifs = []Interface{{Index: -1, Name: "none", LinkType: layers.LinkTypeEthernet}}
	}
	opts := pcapgo.DefaultNgWriterOptions
	opts.SectionInfo.Application = "warden agent"
	ng, err := pcapgo.NewNgWriterInterface(w, ngInterface(ifs[0]), opts)
	if err != nil {
		return nil, fmt.Errorf("writing the pcapng header: %w", err)
	}
	for _, i := range ifs[1:] {
		if _, err := ng.AddInterface(ngInterface(i)); err != nil {
			return nil, fmt.Errorf("writing the pcapng header: %w", err)
		}
	}
	return ng, nil
}

func (g *ring) close() error {
	if g.cur == nil {
		return nil
	}
	err := errors.Join(g.w.Flush(), g.cur.Sync(), g.cur.Close())
	g.cur, g.w = nil, nil
	return err
}

func (g *ring) write(p Packet) error {
	if g.cur == nil || g.size >= g.limit {
		if err := g.open(); err != nil {
			return err
		}
	}
	idx, ok := g.index[p.Interface]
	if !ok {
		g.ifs = append(g.ifs, Interface{Index: p.Interface, Name: fmt.Sprintf("if%d", p.Interface), LinkType: layers.LinkTypeEthernet})
		n, err := g.w.AddInterface(ngInterface(g.ifs[len(g.ifs)-1]))
		if err != nil {
			return err
		}
		g.index[p.Interface], idx = n, n
	}
	ci := gopacket.CaptureInfo{Timestamp: p.At, CaptureLength: len(p.Data), Length: max(p.Length, len(p.Data)), InterfaceIndex: idx}
	if err := g.w.WritePacket(ci, p.Data); err != nil {
		return fmt.Errorf("writing a packet: %w", err)
	}
	g.size += int64(len(p.Data)) + 32
	g.kept++
	g.segPackets[len(g.segPackets)-1]++
	return nil
}

// finish merges the kept segments, oldest first, into one pcapng file
// and returns its name, size and SHA-256.
func (g *ring) finish() (string, int64, string, error) {
	if err := g.close(); err != nil {
		return "", 0, "", err
	}
	name := g.id + ".pcapng"
	f, err := os.OpenFile(filepath.Join(g.dir, name), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", 0, "", fmt.Errorf("writing the capture file: %w", err)
	}
	h := sha256.New()
	counted := &countingWriter{w: io.MultiWriter(f, h)}
	w, err := writerFor(counted, g.ifs)
	if err != nil {
		f.Close()
		return "", 0, "", err
	}
	var errs []error
	for _, seg := range g.files {
		if err := copySegment(w, seg); err != nil {
			errs = append(errs, err)
		}
		_ = os.Remove(seg)
	}
	errs = append(errs, w.Flush(), f.Sync(), f.Close())
	return name, counted.n, hex.EncodeToString(h.Sum(nil)), errors.Join(errs...)
}

func copySegment(w *pcapgo.NgWriter, seg string) error {
	f, err := os.Open(seg)
	if err != nil {
		return err
	}
	defer f.Close()
	opts := pcapgo.DefaultNgReaderOptions
	opts.WantMixedLinkType = true
	r, err := pcapgo.NewNgReader(f, opts)
	if err != nil {
		return fmt.Errorf("reading segment %s: %w", filepath.Base(seg), err)
	}
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) || (err != nil && strings.Contains(err.Error(), "EOF")) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading segment %s: %w", filepath.Base(seg), err)
		}
		if err := w.WritePacket(ci, data); err != nil {
			return err
		}
	}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
