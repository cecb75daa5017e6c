package baseline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// RuntimeReader reads the running kernel's state.
type RuntimeReader interface {
	// Sysctl returns the value of a key in slash form
	// ("net/ipv4/ip_forward"). A key the kernel does not have yields an
	// error wrapping fs.ErrNotExist.
	Sysctl(ctx context.Context, key string) (string, error)
	// Listeners returns the TCP sockets in LISTEN state and the unconnected
	// UDP sockets, of both families.
	Listeners(ctx context.Context) ([]Listener, error)
}

// SysctlWriter is the optional capability Remediate needs to set a runtime
// value.
type SysctlWriter interface {
	// SetSysctl writes a key in slash form. Writing the value already set
	// changes nothing.
	SetSysctl(ctx context.Context, key, value string) error
}

// Listener is a socket waiting for peers.
type Listener struct {
	// Proto is "tcp" or "udp".
	Proto string `json:"proto"`
	// Addr is the bound address and port (the unspecified address for a
	// wildcard bind).
	Addr netip.AddrPort `json:"addr"`
	// Source is the table the socket was read from ("/proc/net/tcp6").
	Source string `json:"source"`
}

// ProcRuntime reads /proc/sys and /proc/net under Root ("/" for the live
// system; a fixture tree in tests).
type ProcRuntime struct{ Root string }

var (
	_ RuntimeReader = ProcRuntime{}
	_ SysctlWriter  = ProcRuntime{}
)

func (p ProcRuntime) root() string {
	if p.Root == "" {
		return "/"
	}
	return p.Root
}

func checkSysctlKey(key string) error {
	if key == "" || strings.Contains(key, "..") || strings.ContainsAny(key, "*?[") {
		return fmt.Errorf("sysctl key %q is not a plain key", key)
	}
	return nil
}

// Sysctl reads /proc/sys/<key>.
func (p ProcRuntime) Sysctl(_ context.Context, key string) (string, error) {
	if err := checkSysctlKey(key); err != nil {
		return "", err
	}
	b, err := readFileIn(p.root(), path.Join("/proc/sys", key))
	if err != nil {
		return "", fmt.Errorf("reading sysctl %s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// SetSysctl writes /proc/sys/<key>. It is idempotent.
func (p ProcRuntime) SetSysctl(_ context.Context, key, value string) error {
	if err := checkSysctlKey(key); err != nil {
		return err
	}
	f, err := openWriteIn(p.root(), path.Join("/proc/sys", key))
	if err != nil {
		return fmt.Errorf("setting sysctl %s: %w", key, err)
	}
	if _, err := f.WriteString(value + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("setting sysctl %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("setting sysctl %s: %w", key, err)
	}
	return nil
}

// Listeners parses /proc/net/{tcp,tcp6,udp,udp6}. A missing table (IPv6
// disabled) is skipped; at least one must exist.
func (p ProcRuntime) Listeners(ctx context.Context) ([]Listener, error) {
	var out []Listener
	found := 0
	for _, table := range []string{"tcp", "tcp6", "udp", "udp6"} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		src := "/proc/net/" + table
		f, err := openIn(p.root(), src)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", src, err)
		}
		ls, err := parseProcNet(f, table, src)
		f.Close()
		if err != nil {
			return nil, err
		}
		found++
		out = append(out, ls...)
	}
	if found == 0 {
		return nil, fmt.Errorf("reading listening sockets: no socket table under %s", hostPath(p.root(), "/proc/net"))
	}
	return out, nil
}

// Kernel socket states (include/net/tcp_states.h): TCP_LISTEN for TCP, and
// TCP_CLOSE for a UDP socket that is bound but not connected.
const (
	tcpListen = 0x0A
	udpUnconn = 0x07
)

// parseProcNet reads one /proc/net socket table:
//
//	sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
func parseProcNet(r io.Reader, table, src string) ([]Listener, error) {
	proto := strings.TrimSuffix(table, "6")
	var out []Listener
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		if line == 1 {
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 4 {
			return nil, fmt.Errorf("parsing %s:%d: short line", src, line)
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("parsing %s:%d: state %q: %w", src, line, f[3], err)
		}
		if (proto == "tcp" && st != tcpListen) || (proto == "udp" && st != udpUnconn) {
			continue
		}
		ap, err := parseProcNetEndpoint(f[1])
		if err != nil {
			return nil, fmt.Errorf("parsing %s:%d: %w", src, line, err)
		}
		out = append(out, Listener{Proto: proto, Addr: ap, Source: src})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", src, err)
	}
	return out, nil
}

// parseProcNetEndpoint decodes "0100007F:0016" or a 32-hex-digit IPv6
// address. The kernel prints each 32-bit word of the network-order address
// as a host-order integer, so each word is written back in native order.
func parseProcNetEndpoint(s string) (netip.AddrPort, error) {
	addrHex, portHex, ok := strings.Cut(s, ":")
	if !ok || (len(addrHex) != 8 && len(addrHex) != 32) {
		return netip.AddrPort{}, fmt.Errorf("socket address %q: unexpected form", s)
	}
	raw := make([]byte, len(addrHex)/2)
	for i := 0; i < len(addrHex); i += 8 {
		w, err := strconv.ParseUint(addrHex[i:i+8], 16, 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("socket address %q: %w", s, err)
		}
		binary.NativeEndian.PutUint32(raw[i/2:], uint32(w))
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("socket port %q: %w", s, err)
	}
	a, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(a, uint16(port)), nil
}

// ErrOffline is wrapped by the readers of a system that is not running (a
// mounted image, a folder built before deployment): there is no kernel to
// read runtime sysctl values, listening sockets or the loaded firewall
// from. Checks that need them report StatusSkip "not applicable offline"
// rather than reading the host they happen to run on; sysctl checks judge
// the boot-time configuration alone, which is what the image will apply.
var ErrOffline = errors.New("not applicable offline")

// Offline is the RuntimeReader and FirewallReader of an offline
// evaluation: every call returns an error wrapping ErrOffline.
type Offline struct{}

var (
	_ RuntimeReader  = Offline{}
	_ FirewallReader = Offline{}
)

// Sysctl reports that no kernel is running.
func (Offline) Sysctl(_ context.Context, key string) (string, error) {
	return "", fmt.Errorf("reading sysctl %s: %w", key, ErrOffline)
}

// Listeners reports that no kernel is running.
func (Offline) Listeners(context.Context) ([]Listener, error) {
	return nil, fmt.Errorf("reading listening sockets: %w", ErrOffline)
}

// Rulesets reports that no firewall is loaded. The rule files an image
// would load at boot (nftables.conf, iptables/rules.v4) depend on which
// service is enabled and are not interpreted.
func (Offline) Rulesets(context.Context) ([]Ruleset, error) {
	return nil, fmt.Errorf("reading the loaded firewall: %w", ErrOffline)
}

// OfflineEnv evaluates the tree under root as an image that is not
// running: files (sshd, sysctl boot files, strongSwan, WireGuard, dpkg
// status, accounts) are read under root with symlinks resolved inside it;
// whatever needs the running kernel is not applicable. No integrity
// manifest is compared.
func OfflineEnv(root string) Env {
	return Env{Root: root, Runtime: Offline{}, Firewall: Offline{}, Tunnels: WireGuardConfigDir{Root: root}}
}

// FirewallReader returns the gateway's firewall rule sets as text.
type FirewallReader interface {
	Rulesets(ctx context.Context) ([]Ruleset, error)
}

// RulesetFormat says how a Ruleset's text is written and which family it
// covers.
type RulesetFormat string

// Rule set formats.
const (
	// FormatIPTables is iptables-save output (IPv4).
	FormatIPTables RulesetFormat = "iptables-save"
	// FormatIP6Tables is ip6tables-save output (IPv6).
	FormatIP6Tables RulesetFormat = "ip6tables-save"
	// FormatNFT is `nft list ruleset` output (every family).
	FormatNFT RulesetFormat = "nft"
)

// Ruleset is one dump of firewall rules.
type Ruleset struct {
	Format RulesetFormat
	// Source names the dump in evidence ("iptables-save").
	Source string
	Text   string
}

// StaticRulesets is a FirewallReader over rule sets already read (tests;
// evidence bundles).
type StaticRulesets []Ruleset

// Rulesets returns the rule sets.
func (s StaticRulesets) Rulesets(context.Context) ([]Ruleset, error) { return s, nil }

// ExecFirewall reads the live rule sets with iptables-save -t filter,
// ip6tables-save -t filter and nft list ruleset. A tool that is not
// installed is skipped; at least one must be.
type ExecFirewall struct {
	// Run executes a command with an argument array and returns its
	// standard output (default: exec.CommandContext, looked up in PATH,
	// then /usr/sbin and /sbin). A missing tool returns an error wrapping
	// exec.ErrNotFound.
	Run func(ctx context.Context, name string, args ...string) ([]byte, error)
}

var (
	_ FirewallReader = ExecFirewall{}
	_ FirewallReader = StaticRulesets{}
)

// Rulesets runs the tools. It changes nothing.
func (f ExecFirewall) Rulesets(ctx context.Context) ([]Ruleset, error) {
	run := f.Run
	if run == nil {
		run = runTool
	}
	var out []Ruleset
	for _, t := range []struct {
		format RulesetFormat
		name   string
		args   []string
	}{
		{FormatIPTables, "iptables-save", []string{"-t", "filter"}},
		{FormatIP6Tables, "ip6tables-save", []string{"-t", "filter"}},
		{FormatNFT, "nft", []string{"list", "ruleset"}},
	} {
		b, err := run(ctx, t.name, t.args...)
		if errors.Is(err, exec.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading firewall with %s: %w", t.name, err)
		}
		out = append(out, Ruleset{Format: t.format, Source: t.name + " " + strings.Join(t.args, " "), Text: string(b)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("reading firewall: none of iptables-save, ip6tables-save, nft is installed: %w", exec.ErrNotFound)
	}
	return out, nil
}

func runTool(ctx context.Context, name string, args ...string) ([]byte, error) {
	bin, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if st, serr := os.Stat(filepath.Join(dir, name)); serr == nil && !st.IsDir() {
				bin, err = filepath.Join(dir, name), nil
				break
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("finding %s: %w", name, exec.ErrNotFound)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("running %s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return b, nil
}

// TunnelReader reports the gateway's WireGuard interfaces. Implementations
// must never return private or preshared keys, only whether they exist.
type TunnelReader interface {
	WireGuard(ctx context.Context) ([]WireGuardInterface, error)
}

// WireGuardInterface is one WireGuard interface as the baseline sees it.
type WireGuardInterface struct {
	Name string `json:"name"`
	// KeyCreated is when the private key was created or last rotated; zero
	// when unknown.
	KeyCreated time.Time `json:"key_created"`
	// KeySource says where KeyCreated comes from.
	KeySource string          `json:"key_source"`
	Peers     []WireGuardPeer `json:"peers"`
}

// WireGuardPeer is one peer of an interface.
type WireGuardPeer struct {
	PublicKey       string `json:"public_key"`
	HasPresharedKey bool   `json:"has_preshared_key"`
	// Source locates the peer ("/etc/wireguard/wg0.conf:12").
	Source string `json:"source"`
}

// StaticWireGuard is a TunnelReader over facts already gathered, for
// instance from wgctrl and the controller's rotation records.
type StaticWireGuard []WireGuardInterface

// WireGuard returns the interfaces.
func (s StaticWireGuard) WireGuard(context.Context) ([]WireGuardInterface, error) { return s, nil }

// WireGuardConfigDir reads wg-quick configurations, Root/etc/wireguard/
// *.conf. The kernel does not know when a key was created, so KeyCreated is
// the configuration file's modification time: rewriting the file for any
// reason makes the key look younger. Where rotation is recorded elsewhere
// (Warden's rotate_credentials), supply a StaticWireGuard built from it.
type WireGuardConfigDir struct{ Root string }

var (
	_ TunnelReader = WireGuardConfigDir{}
	_ TunnelReader = StaticWireGuard{}
)

const wireguardDir = "/etc/wireguard"

// WireGuard parses every interface configuration. No directory means no
// interfaces.
func (w WireGuardConfigDir) WireGuard(ctx context.Context) ([]WireGuardInterface, error) {
	root := w.Root
	if root == "" {
		root = "/"
	}
	var out []WireGuardInterface
	for _, p := range globUnder(root, wireguardDir+"/*.conf") {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		iface, err := parseWGQuick(root, p)
		if err != nil {
			return nil, err
		}
		out = append(out, iface)
	}
	return out, nil
}

func parseWGQuick(root, p string) (WireGuardInterface, error) {
	st, err := statIn(root, p)
	if err != nil {
		return WireGuardInterface{}, fmt.Errorf("reading WireGuard configuration: %w", err)
	}
	data, err := readFileIn(root, p)
	if err != nil {
		return WireGuardInterface{}, fmt.Errorf("reading WireGuard configuration: %w", err)
	}
	iface := WireGuardInterface{Name: strings.TrimSuffix(path.Base(p), ".conf")}
	section := ""
	hasKey := false
	var peer *WireGuardPeer
	for i, line := range strings.Split(string(data), "\n") {
		if c := strings.IndexByte(line, '#'); c >= 0 {
			line = line[:c]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.ToLower(strings.Trim(line, "[] \t"))
			if section == "peer" {
				iface.Peers = append(iface.Peers, WireGuardPeer{Source: fmt.Sprintf("%s:%d", p, i+1)})
				peer = &iface.Peers[len(iface.Peers)-1]
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		switch {
		case section == "interface" && k == "privatekey":
			hasKey = v != ""
		case section == "peer" && k == "publickey":
			peer.PublicKey = v
		case section == "peer" && k == "presharedkey":
			peer.HasPresharedKey = v != "" && strings.Trim(v, "A=") != ""
		}
	}
	if hasKey {
		iface.KeyCreated = st.ModTime()
		iface.KeySource = "modification time of " + p
	} else {
		iface.KeySource = p + " has no PrivateKey"
	}
	return iface, nil
}
