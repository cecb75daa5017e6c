package pcap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
)

// fakeSource hands out the packets it is given, then nothing.
type fakeSource struct {
	mu      sync.Mutex
	packets []Packet
	closed  bool
}

func (f *fakeSource) Interfaces() ([]Interface, error) {
	return []Interface{{Index: 2, Name: "eth0", LinkType: layers.LinkTypeEthernet}, {Index: 7, Name: "ipsec0", LinkType: layers.LinkTypeRaw}}, nil
}

func (f *fakeSource) Read() (Packet, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.packets) == 0 {
		f.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		f.mu.Lock()
		return Packet{}, false, nil
	}
	p := f.packets[0]
	f.packets = f.packets[1:]
	return p, true, nil
}

func (f *fakeSource) Close() error { f.closed = true; return nil }

func (f *fakeSource) drained() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.packets) == 0
}

// udpFrame is an Ethernet (or, raw, a bare IPv4) UDP packet of n payload
// bytes from src to dst.
func udpFrame(t *testing.T, raw bool, src, dst string, dport uint16, n int) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
	udp := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(dport)}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	ls := []gopacket.SerializableLayer{ip, udp, gopacket.Payload(bytes.Repeat([]byte{'x'}, n))}
	if !raw {
		ls = append([]gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}}, ls...)
	}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readPcapng opens a finished file with gopacket's pcapng reader and
// returns its interfaces' names and its packets.
func readPcapng(t *testing.T, b []byte) ([]string, [][]byte) {
	t.Helper()
	opts := pcapgo.DefaultNgReaderOptions
	opts.WantMixedLinkType = true
	r, err := pcapgo.NewNgReader(bytes.NewReader(b), opts)
	if err != nil {
		t.Fatalf("the capture is no pcapng: %v", err)
	}
	var names []string
	var out [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading a packet: %v", err)
		}
		out = append(out, data)
	}
	for i := range r.NInterfaces() {
		ifc, _ := r.Interface(i)
		names = append(names, ifc.Name)
	}
	return names, out
}

func TestRecorderKeepsTheNewestWithinItsBoundAndFilters(t *testing.T) {
	src := &fakeSource{}
	// 200 packets of ~1 KiB for the attacker on eth0, a tunnel packet on
	// ipsec0, and noise the filter drops.
	for i := range 200 {
		src.packets = append(src.packets, Packet{At: time.Unix(1700000000, int64(i)), Interface: 2, Data: udpFrame(t, false, "192.0.2.1", "203.0.113.9", 443, 1000)})
		src.packets = append(src.packets, Packet{At: time.Unix(1700000000, int64(i)), Interface: 2, Data: udpFrame(t, false, "192.0.2.1", "198.51.100.1", 53, 100)})
	}
	src.packets = append(src.packets, Packet{At: time.Unix(1700000001, 0), Interface: 7, Data: udpFrame(t, true, "10.1.0.5", "203.0.113.9", 443, 10)})
	dir := t.TempDir()
	r, err := NewRecorder(dir, func() (Source, error) { return src, nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec := wire.CaptureSpec{Duration: wire.Duration(time.Minute), MaxBytes: 64 << 10, Filter: "host 203.0.113.9 and not port 53"}
	st, changed, err := r.Start(spec)
	if err != nil || !changed || !st.Running {
		t.Fatalf("start: %+v %v %v", st, changed, err)
	}
	if again, changed, _ := r.Start(spec); changed || again.ID != st.ID {
		t.Errorf("a second start while one runs: %+v changed %v", again, changed)
	}
	for !src.drained() {
		time.Sleep(5 * time.Millisecond)
	}
	done, changed, err := r.Stop(t.Context(), "stopped")
	if err != nil || !changed || done.Running || done.StopReason != "stopped" || done.SHA256 == "" || done.Error != "" {
		t.Fatalf("stop: %+v %v %v", done, changed, err)
	}
	if done.Dropped == 0 || done.Packets == 0 || done.Packets+done.Dropped != 201 {
		t.Errorf("kept %d, dropped %d: want the ring to have dropped the oldest of 201", done.Packets, done.Dropped)
	}
	var file []byte
	for off := int64(0); ; {
		chunk, eof, err := r.Read(done.ID, off, 10000)
		if err != nil {
			t.Fatal(err)
		}
		file, off = append(file, chunk...), off+int64(len(chunk))
		if eof {
			break
		}
	}
	sum := sha256.Sum256(file)
	if hex.EncodeToString(sum[:]) != done.SHA256 || int64(len(file)) != done.Size || done.Size > 2*spec.MaxBytes {
		t.Errorf("file of %d bytes hashing %x, status %+v", len(file), sum, done)
	}
	names, packets := readPcapng(t, file)
	if int64(len(packets)) != done.Packets || len(names) < 2 || names[0] != "eth0" || names[1] != "ipsec0" {
		t.Errorf("%d packets on %v, status %+v", len(packets), names, done)
	}
	for _, p := range packets {
		if bytes.Contains(p, []byte{198, 51, 100, 1}) {
			t.Error("a packet the filter excludes was kept")
		}
	}
	if !bytes.Equal(packets[len(packets)-1], src2Last(t)) {
		t.Error("the newest packet (the tunnel's) is not the last kept")
	}
	if _, _, err := r.Read("cap-nope", 0, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("reading an unknown capture: %v", err)
	}
	// A new recorder on the same directory still knows the finished one.
	again, _ := NewRecorder(dir, func() (Source, error) { return &fakeSource{}, nil }, nil)
	if list := again.Status(); len(list) != 1 || list[0].ID != done.ID || list[0].SHA256 != done.SHA256 {
		t.Errorf("after a restart: %+v", list)
	}
}

func src2Last(t *testing.T) []byte { return udpFrame(t, true, "10.1.0.5", "203.0.113.9", 443, 10) }

func TestRecorderRefusesBadSpecs(t *testing.T) {
	r, _ := NewRecorder(t.TempDir(), func() (Source, error) { return &fakeSource{}, nil }, nil)
	for name, spec := range map[string]wire.CaptureSpec{
		"too short":  {Duration: wire.Duration(time.Millisecond), MaxBytes: 1 << 20},
		"too small":  {Duration: wire.Duration(time.Minute), MaxBytes: 100},
		"bad filter": {Duration: wire.Duration(time.Minute), MaxBytes: 1 << 20, Filter: "host nowhere"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := r.Start(spec); !errors.Is(err, ErrInvalid) {
				t.Errorf("start %+v: %v", spec, err)
			}
		})
	}
}

func TestFilterLanguage(t *testing.T) {
	pkt := func(src, dst string, dport uint16) []byte { return udpFrame(t, false, src, dst, dport, 1) }
	tests := map[string]struct {
		filter string
		data   []byte
		want   bool
	}{
		"empty":            {"", pkt("192.0.2.1", "203.0.113.9", 1), true},
		"host":             {"host 203.0.113.9", pkt("192.0.2.1", "203.0.113.9", 1), true},
		"src host":         {"src host 203.0.113.9", pkt("192.0.2.1", "203.0.113.9", 1), false},
		"net and port":     {"net 192.0.2.0/24 and dst port 53", pkt("192.0.2.1", "203.0.113.9", 53), true},
		"or":               {"tcp or udp", pkt("192.0.2.1", "203.0.113.9", 53), true},
		"not and brackets": {"udp and not (port 53 or port 123)", pkt("192.0.2.1", "203.0.113.9", 53), false},
		"proto":            {"icmp", pkt("192.0.2.1", "203.0.113.9", 53), false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f, err := wire.ParseCaptureFilter(tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			if got := Match(f, layers.LinkTypeEthernet, tc.data); got != tc.want {
				t.Errorf("%q: %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
	for _, bad := range []string{"host", "port http", "(tcp", "tcp and", "everything"} {
		if _, err := wire.ParseCaptureFilter(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestAFPacketCapturesANamespace captures real traffic in a lab: the
// socket sees the packets a peer sends to the gateway, in pcapng a reader
// opens.
func TestAFPacketCapturesANamespace(t *testing.T) {
	netlabtest.Skip(t)
	lab := netlabtest.New(t, netlab.Options{Prefix: "pcap16", Sites: []string{"a"}})
	s := lab.Sites()[0]
	var r *Recorder
	err := netlab.Do(s.Gateway.NS, func() error {
		var err error
		r, err = NewRecorder(t.TempDir(), OpenAFPacket, nil)
		if err != nil {
			return err
		}
		_, _, err = r.Start(wire.CaptureSpec{Duration: wire.Duration(time.Minute), MaxBytes: 1 << 20, Filter: "udp and port 9999"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	to := netip.AddrPortFrom(s.Gateway.V4, 9999)
	for range 5 {
		err := netlab.Do(s.LAN.NS, func() error {
			c, err := net.Dial("udp", to.String())
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("attacker-probe"))
			return err
		})
		if err != nil {
			t.Fatalf("sending a probe: %v", err)
		}
	}
	// Stop ends the capture at once, whatever the socket still holds: let
	// the capture take what was sent first. A busy machine may not run its
	// reader for a while, and a probe waits for the gateway's address to
	// resolve (ARP retries after a second); nothing here asserts on time.
	for wait := time.Now().Add(10 * time.Second); capturedPackets(r) < 5 && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, _, err := r.Stop(ctx, "stopped")
	if err != nil || st.Error != "" {
		t.Fatalf("stop: %+v %v", st, err)
	}
	b, err := os.ReadFile(filepath.Join(r.dir, st.File))
	if err != nil {
		t.Fatal(err)
	}
	_, packets := readPcapng(t, b)
	n := 0
	for _, p := range packets {
		if bytes.Contains(p, []byte("attacker-probe")) {
			n++
		}
	}
	if n < 5 {
		t.Errorf("%d of the 5 probes captured (%d packets)", n, len(packets))
	}
}

// capturedPackets is how many packets r's running capture has kept.
func capturedPackets(r *Recorder) int64 {
	for _, st := range r.Status() {
		if st.Running {
			return st.Packets
		}
	}
	return 0
}
