package capture

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/strongswan/govici/vici"
	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/internal/charon"
)

// wgDeviceRecord is what evidence keeps of a WireGuard device. It has no
// field for the private key: the type itself guarantees the key cannot be
// written out.
type wgDeviceRecord struct {
	Name         string         `json:"name"`
	Type         string         `json:"type"` // kernel or userspace
	Source       string         `json:"source"`
	PublicKey    string         `json:"public_key,omitempty"`
	ListenPort   int            `json:"listen_port"`
	FirewallMark int            `json:"firewall_mark,omitempty"`
	Peers        []wgPeerRecord `json:"peers"`
	Error        string         `json:"error,omitempty"`
}

// wgPeerRecord is one peer. It says whether a preshared key is set, never
// what it is.
type wgPeerRecord struct {
	PublicKey                  string    `json:"public_key"`
	HasPresharedKey            bool      `json:"has_preshared_key"`
	Endpoint                   string    `json:"endpoint,omitempty"`
	AllowedIPs                 []string  `json:"allowed_ips"`
	LatestHandshake            time.Time `json:"latest_handshake,omitzero"`
	ReceiveBytes               int64     `json:"rx_bytes"`
	TransmitBytes              int64     `json:"tx_bytes"`
	PersistentKeepaliveSeconds int       `json:"persistent_keepalive_seconds,omitempty"`
	ProtocolVersion            int       `json:"protocol_version,omitempty"`
}

type wireGuardReport struct {
	Devices []wgDeviceRecord `json:"devices"`
}

// collectWireGuard records every WireGuard device: kernel devices (links of
// type wireguard) through wgctrl's netlink client, userspace devices
// (wireguard-go and friends) by asking each UAPI socket in the socket
// directory directly. One unreadable device is recorded with its Error and
// does not hide the others. No socket directory means no userspace device.
func collectWireGuard(ctx context.Context, opt Options) (wireGuardReport, error) {
	rep := wireGuardReport{Devices: []wgDeviceRecord{}}
	seen := make(map[string]bool)

	links, err := netlink.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return rep, fmt.Errorf("listing links for WireGuard devices: %w", err)
	}
	var kernelNames []string
	for _, l := range links {
		if l.Type() == "wireguard" {
			kernelNames = append(kernelNames, l.Attrs().Name)
		}
	}
	if len(kernelNames) > 0 {
		rep.Devices = append(rep.Devices, kernelWireGuardDevices(kernelNames)...)
		for _, n := range kernelNames {
			seen[n] = true
		}
	}

	socks, err := uapiSockets(opt.WireGuardSocketDir)
	if err != nil {
		return rep, err
	}
	for _, s := range socks {
		name := strings.TrimSuffix(filepath.Base(s), ".sock")
		if seen[name] {
			continue
		}
		d, err := readUAPIDevice(ctx, s)
		d.Name, d.Type, d.Source = name, "userspace", "UAPI "+s
		if err != nil {
			d.Error = err.Error()
		}
		rep.Devices = append(rep.Devices, d)
	}
	slices.SortFunc(rep.Devices, func(a, b wgDeviceRecord) int { return strings.Compare(a.Name, b.Name) })
	return rep, nil
}

func kernelWireGuardDevices(names []string) []wgDeviceRecord {
	var out []wgDeviceRecord
	c, err := wgctrl.New()
	if err != nil {
		for _, n := range names {
			out = append(out, wgDeviceRecord{Name: n, Type: "kernel", Source: "wgctrl netlink", Peers: []wgPeerRecord{}, Error: "opening wgctrl: " + err.Error()})
		}
		return out
	}
	defer c.Close()
	for _, n := range names {
		d, err := c.Device(n)
		if err != nil {
			out = append(out, wgDeviceRecord{Name: n, Type: "kernel", Source: "wgctrl netlink", Peers: []wgPeerRecord{}, Error: "reading device: " + err.Error()})
			continue
		}
		rec := wgDeviceFromWgctrl(d)
		rec.Type, rec.Source = "kernel", "wgctrl netlink"
		out = append(out, rec)
	}
	return out
}

// wgDeviceFromWgctrl copies the public parts of a wgctrl device; the private
// key and the peers' preshared keys are read only to test for presence.
func wgDeviceFromWgctrl(d *wgtypes.Device) wgDeviceRecord {
	rec := wgDeviceRecord{
		Name:         d.Name,
		Type:         d.Type.String(),
		ListenPort:   d.ListenPort,
		FirewallMark: d.FirewallMark,
		Peers:        []wgPeerRecord{},
	}
	if d.PublicKey != (wgtypes.Key{}) {
		rec.PublicKey = d.PublicKey.String()
	}
	for _, p := range d.Peers {
		pr := wgPeerRecord{
			PublicKey:                  p.PublicKey.String(),
			HasPresharedKey:            p.PresharedKey != (wgtypes.Key{}),
			LatestHandshake:            p.LastHandshakeTime.UTC(),
			ReceiveBytes:               p.ReceiveBytes,
			TransmitBytes:              p.TransmitBytes,
			PersistentKeepaliveSeconds: int(p.PersistentKeepaliveInterval / time.Second),
			ProtocolVersion:            p.ProtocolVersion,
			AllowedIPs:                 []string{},
		}
		if p.LastHandshakeTime.Unix() <= 0 {
			pr.LatestHandshake = time.Time{}
		}
		if p.Endpoint != nil {
			pr.Endpoint = p.Endpoint.String()
		}
		for _, n := range p.AllowedIPs {
			pr.AllowedIPs = append(pr.AllowedIPs, n.String())
		}
		rec.Peers = append(rec.Peers, pr)
	}
	return rec
}

// uapiSockets lists the *.sock sockets in dir (following symlinks).
func uapiSockets(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing WireGuard sockets in %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".sock") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if fi, err := os.Stat(p); err == nil && fi.Mode().Type() == fs.ModeSocket {
			out = append(out, p)
		}
	}
	return out, nil
}

// readUAPIDevice asks one userspace WireGuard device for its state with the
// cross-platform UAPI "get" operation.
func readUAPIDevice(ctx context.Context, sock string) (wgDeviceRecord, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return wgDeviceRecord{Peers: []wgPeerRecord{}}, fmt.Errorf("dialling WireGuard UAPI socket: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, "get=1\n\n"); err != nil {
		return wgDeviceRecord{Peers: []wgPeerRecord{}}, fmt.Errorf("sending UAPI get: %w", err)
	}
	return parseUAPIDevice(conn)
}

// parseUAPIDevice parses a UAPI "get" reply up to its blank line. The
// private key is turned into the public key at once and the preshared keys
// into a yes/no; neither value is stored, and no error message ever quotes
// a line, since any line may hold a key.
func parseUAPIDevice(r io.Reader) (wgDeviceRecord, error) {
	d := wgDeviceRecord{Peers: []wgPeerRecord{}}
	var (
		peer          *wgPeerRecord
		hsSec, hsNsec int64
		lineNo        int
	)
	flushHandshake := func() {
		if peer != nil && (hsSec != 0 || hsNsec != 0) {
			peer.LatestHandshake = time.Unix(hsSec, hsNsec).UTC()
		}
		hsSec, hsNsec = 0, 0
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if line == "" {
			flushHandshake()
			return d, nil
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return d, fmt.Errorf("parsing UAPI reply: line %d is not key=value", lineNo)
		}
		num := func() int64 {
			n, _ := strconv.ParseInt(val, 10, 64)
			return n
		}
		switch key {
		case "private_key":
			k, err := uapiKey(val)
			if err != nil {
				return d, fmt.Errorf("parsing UAPI reply: line %d: private key is malformed", lineNo)
			}
			if k != (wgtypes.Key{}) {
				d.PublicKey = k.PublicKey().String()
			}
			clear(k[:])
		case "listen_port":
			d.ListenPort = int(num())
		case "fwmark":
			d.FirewallMark = int(num())
		case "public_key":
			flushHandshake()
			k, err := uapiKey(val)
			if err != nil {
				return d, fmt.Errorf("parsing UAPI reply: line %d: peer public key is malformed", lineNo)
			}
			d.Peers = append(d.Peers, wgPeerRecord{PublicKey: k.String(), AllowedIPs: []string{}})
			peer = &d.Peers[len(d.Peers)-1]
		case "errno":
			if n := num(); n != 0 {
				return d, fmt.Errorf("UAPI get failed with errno %d", n)
			}
		default:
			if peer == nil {
				continue
			}
			switch key {
			case "preshared_key":
				k, err := uapiKey(val)
				peer.HasPresharedKey = err != nil || k != (wgtypes.Key{})
				clear(k[:])
			case "endpoint":
				peer.Endpoint = val
			case "allowed_ip":
				peer.AllowedIPs = append(peer.AllowedIPs, val)
			case "last_handshake_time_sec":
				hsSec = num()
			case "last_handshake_time_nsec":
				hsNsec = num()
			case "rx_bytes":
				peer.ReceiveBytes = num()
			case "tx_bytes":
				peer.TransmitBytes = num()
			case "persistent_keepalive_interval":
				peer.PersistentKeepaliveSeconds = int(num())
			case "protocol_version":
				peer.ProtocolVersion = int(num())
			}
		}
	}
	if err := sc.Err(); err != nil {
		return d, fmt.Errorf("reading UAPI reply: %w", err)
	}
	return d, errors.New("reading UAPI reply: ended before its blank line")
}

func uapiKey(h string) (wgtypes.Key, error) {
	var k wgtypes.Key
	if len(h) != 2*wgtypes.KeyLen {
		return k, errors.New("bad key length")
	}
	if _, err := hex.Decode(k[:], []byte(h)); err != nil {
		return wgtypes.Key{}, errors.New("bad key encoding")
	}
	return k, nil
}

type strongSwanReport struct {
	Socket string `json:"socket"`
	// SAs holds one entry per IKE SA as list-sas streams it: the IKE SA's
	// name mapped to its fields and CHILD SAs.
	SAs []map[string]any `json:"sas"`
	// IKESAsTotal is charon's own count of IKE SAs (stats), read after
	// list-sas, as a check that no SA went missing on the way.
	IKESAsTotal string   `json:"ike_sas_total,omitempty"`
	Incomplete  []string `json:"incomplete,omitempty"`
}

// errNoVICISocket reports a gateway without strongSwan's VICI socket.
var errNoVICISocket = errors.New("no strongSwan VICI socket")

// maxListedSAs bounds the list-sa events one capture buffers: well above
// the largest hub (a few thousand sites, a handful of SAs each).
const maxListedSAs = 16384

// collectStrongSwanSAs asks charon for its IKE and CHILD SAs (list-sas). The
// reply carries identities, addresses, algorithms, SPIs and counters, no
// keys; fields that could carry a secret are dropped all the same.
//
// The list-sa events are collected by charon.CallStreamed (govici's
// CallStreaming would lose some); charon's stats count is recorded beside
// the list as a cross-check.
func collectStrongSwanSAs(ctx context.Context, opt Options) (strongSwanReport, error) {
	rep := strongSwanReport{Socket: opt.VICISocket, SAs: []map[string]any{}}
	if _, err := os.Stat(opt.VICISocket); errors.Is(err, os.ErrNotExist) {
		return rep, fmt.Errorf("%w at %s", errNoVICISocket, opt.VICISocket)
	}
	s, err := charon.OpenSession(ctx, opt.VICISocket)
	if err != nil {
		return rep, fmt.Errorf("connecting to VICI socket %s: %w", opt.VICISocket, err)
	}
	defer s.Close()
	_, events, err := charon.CallStreamed(ctx, s, "list-sas", nil, "list-sa", maxListedSAs)
	if err != nil {
		return rep, fmt.Errorf("listing SAs over VICI: %w", err)
	}
	for _, ev := range events {
		rep.SAs = append(rep.SAs, viciEvidence(ev))
	}
	if len(rep.SAs) == maxListedSAs {
		rep.Incomplete = append(rep.Incomplete, fmt.Sprintf("kept the first %d SAs only", maxListedSAs))
	}

	stats, err := s.Call(ctx, "stats", nil)
	if err != nil {
		rep.Incomplete = append(rep.Incomplete, "reading charon stats: "+err.Error())
		return rep, nil
	}
	if ike, ok := stats.Get("ikesas").(*vici.Message); ok {
		rep.IKESAsTotal, _ = ike.Get("total").(string)
	}
	if n, err := strconv.Atoi(rep.IKESAsTotal); err == nil && n != len(rep.SAs) {
		rep.Incomplete = append(rep.Incomplete, fmt.Sprintf("list-sas returned %d IKE SAs, stats counts %d (SAs may have come or gone in between)", len(rep.SAs), n))
	}
	return rep, nil
}

// viciEvidence converts a VICI message to plain maps, lists and strings,
// dropping any field whose name marks a secret.
func viciEvidence(m *vici.Message) map[string]any {
	out := make(map[string]any)
	for _, k := range m.Keys() {
		if viciFieldIsSecret(k) {
			continue
		}
		switch v := m.Get(k).(type) {
		case *vici.Message:
			out[k] = viciEvidence(v)
		default:
			out[k] = v
		}
	}
	return out
}

func viciFieldIsSecret(name string) bool {
	switch strings.ToLower(name) {
	case "secret", "psk", "password", "private-key", "privkey", "ppk-secret", "data":
		return true
	}
	return false
}
