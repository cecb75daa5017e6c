package capture

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/warden-ir/warden/agent/netns"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock"
)

// ManifestEntry is the manifest's record of one artefact.
type ManifestEntry struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	Source string `json:"source"`
	Error  string `json:"error,omitempty"`
}

// Manifest lists what one capture produced, so that a copy of the artefacts
// can be checked against it later (see Manifest.Verify).
type Manifest struct {
	Host      string          `json:"host"`
	BootID    string          `json:"boot_id"`
	Started   time.Time       `json:"started"`
	Finished  time.Time       `json:"finished"`
	Artefacts []ManifestEntry `json:"artefacts"`
}

// Options tunes Collect. The zero value captures the live system.
type Options struct {
	// Root is the filesystem root that /proc, /etc and /var/log are read
	// under (default "/"). Kernel state read over netlink, exec'd tools,
	// uname and the WireGuard and VICI sockets are always live. When Root is
	// not "/", sockets are parsed from Root/proc/thread-self/net instead of
	// asked of the kernel, so that a fixture tree is self-consistent.
	Root string
	// LogLines is how many trailing lines of each log (and records of
	// wtmp/btmp) to keep (default 500).
	LogLines int
	// Timeout bounds each collector (default 1.5s). A collector that runs
	// past it yields an artefact with Error; the others are unaffected.
	Timeout time.Duration
	// WireGuardSocketDir holds userspace WireGuard UAPI sockets (default
	// /var/run/wireguard).
	WireGuardSocketDir string
	// VICISocket is strongSwan's VICI socket (default /var/run/charon.vici).
	VICISocket string
	// Clock stamps artefacts and the manifest (default clock.Real).
	Clock clock.Clock
	// StateDir is the agent's state directory, where an investigation
	// finds the configuration watcher's history, the integrity manifest
	// and the flows quarantines ended (empty: none of them).
	StateDir string
	// LogFiles are classic log files an investigation reads besides
	// DefaultLogFiles (absolute paths, not under Root).
	LogFiles []string
	// Journalctl is the journal reader (default "journalctl").
	Journalctl string
}

// Defaults for Options.
const (
	DefaultLogLines                 = 500
	DefaultTimeout                  = 1500 * time.Millisecond
	DefaultWireGuardSocketDir       = "/var/run/wireguard"
	DefaultVICISocket               = "/var/run/charon.vici"
	maxExecutableHashSize     int64 = 64 << 20
)

// ErrArtefactMismatch reports an artefact whose content no longer matches the
// hash or size recorded when it was collected.
var ErrArtefactMismatch = errors.New("artefact content does not match its recorded hash")

// ErrInvalidOptions reports options Collect cannot run with.
var ErrInvalidOptions = errors.New("invalid capture options")

const (
	mediaJSON = "application/json"
	mediaText = "text/plain"
)

func (o Options) withDefaults() (Options, error) {
	if o.Root == "" {
		o.Root = "/"
	}
	if !filepath.IsAbs(o.Root) {
		return o, fmt.Errorf("%w: root %q is not absolute", ErrInvalidOptions, o.Root)
	}
	o.Root = filepath.Clean(o.Root)
	if o.LogLines < 0 || o.Timeout < 0 {
		return o, fmt.Errorf("%w: negative log lines or timeout", ErrInvalidOptions)
	}
	if o.LogLines == 0 {
		o.LogLines = DefaultLogLines
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.WireGuardSocketDir == "" {
		o.WireGuardSocketDir = DefaultWireGuardSocketDir
	}
	if o.VICISocket == "" {
		o.VICISocket = DefaultVICISocket
	}
	if o.Clock == nil {
		o.Clock = clock.Real
	}
	if o.Journalctl == "" {
		o.Journalctl = "journalctl"
	}
	return o, nil
}

// path joins a system path such as "/proc/1/stat" onto the options' Root.
func (o Options) path(p string) string { return filepath.Join(o.Root, p) }

func (o Options) live() bool { return o.Root == "/" }

// evidenceCollector reads one artefact. collect returns the content and, when
// it differs from the declared one, the source it actually used (a fallback).
type evidenceCollector struct {
	name      string
	mediaType string
	source    string
	collect   func(ctx context.Context) (content []byte, source string, err error)
}

// Collect records the gateway's volatile state — sockets, processes, routes,
// addresses, neighbours, firewall rule sets, WireGuard and strongSwan state,
// logged-in users, login history, log tails and kernel identity — as hashed
// artefacts, plus a manifest of them.
//
// Steps: apply defaults → start every collector concurrently, each bounded by
// Timeout and each running in the network namespace of the calling thread →
// hash each result → build the manifest. Artefacts come back in a fixed
// order. A collector that fails or times out yields an artefact with Error
// and an explanatory text; Collect itself fails only on invalid options or
// when it cannot read the calling thread's network namespace.
//
// Collect only reads: it changes no kernel, firewall or tunnel state, and it
// never records WireGuard private or preshared keys. Calling it twice records
// the state twice; it has no other effect.
func Collect(ctx context.Context, opt Options) ([]wire.Artefact, Manifest, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, Manifest{}, err
	}
	ns, err := netns.Current()
	if err != nil {
		return nil, Manifest{}, fmt.Errorf("capturing volatile evidence: %w", err)
	}

	m := Manifest{Started: opt.Clock.Now().UTC(), BootID: readBootID(opt)}
	if host, err := os.Hostname(); err == nil {
		m.Host = host
	}

	cols := evidenceCollectors(opt)
	arts := make([]wire.Artefact, len(cols))
	// inflight counts collector goroutines, including any abandoned after a
	// timeout: the namespace handle they switch into stays open until the
	// last has finished, so its descriptor can never be reused under them.
	var inflight, all sync.WaitGroup
	for i, c := range cols {
		all.Go(func() { arts[i] = runEvidenceCollector(ctx, opt, ns, c, &inflight) })
	}
	all.Wait()
	go func() {
		inflight.Wait()
		_ = ns.Close()
	}()

	m.Finished = opt.Clock.Now().UTC()
	for _, a := range arts {
		m.Artefacts = append(m.Artefacts, ManifestEntry{Name: a.Name, SHA256: a.SHA256, Size: a.Size, Source: a.Source, Error: a.Error})
	}
	return arts, m, nil
}

type collectorOutcome struct {
	content []byte
	source  string
	err     error
}

func runEvidenceCollector(ctx context.Context, opt Options, ns netns.Namespace, c evidenceCollector, inflight *sync.WaitGroup) wire.Artefact {
	cctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()
	done := make(chan collectorOutcome, 1)
	inflight.Go(func() {
		var o collectorOutcome
		o.err = ns.Do(func() error {
			var err error
			o.content, o.source, err = c.collect(cctx)
			return err
		})
		done <- o
	})

	var o collectorOutcome
	select {
	case o = <-done:
	case <-cctx.Done():
		if errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			o.err = fmt.Errorf("collector timed out after %s", opt.Timeout)
		} else {
			o.err = fmt.Errorf("capture cancelled: %w", ctx.Err())
		}
	}

	a := wire.Artefact{Name: c.name, MediaType: c.mediaType, Source: c.source, Content: o.content}
	if o.source != "" {
		a.Source = o.source
	}
	if o.err != nil {
		a.Error = o.err.Error()
		a.MediaType = mediaText
		a.Content = []byte("collecting " + c.name + " failed: " + a.Error + "\n")
	}
	sum := sha256.Sum256(a.Content)
	a.SHA256 = hex.EncodeToString(sum[:])
	a.Size = int64(len(a.Content))
	a.Collected = opt.Clock.Now().UTC()
	return a
}

// evidenceCollectors is the fixed list of collectors, in artefact order.
func evidenceCollectors(opt Options) []evidenceCollector {
	return []evidenceCollector{
		jsonEvidence("kernel.json", "uname(2), /proc/sys/kernel/random/boot_id, /proc/uptime, /proc/stat",
			func(context.Context) (any, error) { return collectKernel(opt) }),
		{name: "connections.json", mediaType: mediaJSON, source: "netlink sock_diag, /proc/*/fd",
			collect: func(ctx context.Context) ([]byte, string, error) { return collectConnections(ctx, opt) }},
		jsonEvidence("processes.json", "/proc",
			func(ctx context.Context) (any, error) { return collectProcesses(ctx, opt) }),
		jsonEvidence("routes.json", "netlink rtnetlink (routes of all tables, policy rules; IPv4 and IPv6)",
			func(context.Context) (any, error) { return collectRoutes() }),
		jsonEvidence("addresses.json", "netlink rtnetlink (links, addresses; IPv4 and IPv6)",
			func(context.Context) (any, error) { return collectAddresses() }),
		jsonEvidence("neighbours.json", "netlink rtnetlink (neighbours; IPv4 and IPv6)",
			func(context.Context) (any, error) { return collectNeighbours() }),
		jsonEvidence("conntrack.json", "netlink ctnetlink (connection tracking table; IPv4 and IPv6)",
			func(context.Context) (any, error) { return collectConntrack() }),
		execEvidenceCollector("iptables-save.txt", "iptables-save"),
		execEvidenceCollector("ip6tables-save.txt", "ip6tables-save"),
		execEvidenceCollector("nft-ruleset.txt", "nft", "list", "ruleset"),
		jsonEvidence("wireguard.json", "WireGuard UAPI sockets in "+opt.WireGuardSocketDir+"; wgctrl netlink for kernel devices",
			func(ctx context.Context) (any, error) { return collectWireGuard(ctx, opt) }),
		jsonEvidence("strongswan-sas.json", "VICI list-sas via "+opt.VICISocket,
			func(ctx context.Context) (any, error) { return collectStrongSwanSAs(ctx, opt) }),
		jsonEvidence("users.json", "utmp "+opt.path("/var/run/utmp"),
			func(context.Context) (any, error) { return collectUsers(opt) }),
		jsonEvidence("logins.json", "wtmp and btmp in "+opt.path("/var/log"),
			func(context.Context) (any, error) { return collectLogins(opt) }),
		logTailCollector("auth.log.tail", opt, "/var/log/auth.log"),
		logTailCollector("syslog.tail", opt, "/var/log/syslog"),
	}
}

// jsonEvidence makes a collector whose artefact is the indented JSON of
// what fn returns, which is what evidence readers open first.
func jsonEvidence(name, source string, fn func(ctx context.Context) (any, error)) evidenceCollector {
	return evidenceCollector{name: name, mediaType: mediaJSON, source: source, collect: func(ctx context.Context) ([]byte, string, error) {
		v, err := fn(ctx)
		if err != nil {
			return nil, "", err
		}
		b, err := marshalEvidence(v)
		return b, "", err
	}}
}

func marshalEvidence(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding evidence as JSON: %w", err)
	}
	return append(b, '\n'), nil
}

func readBootID(opt Options) string {
	b, err := os.ReadFile(opt.path("/proc/sys/kernel/random/boot_id"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// VerifyArtefacts recomputes every artefact's SHA-256 and size and returns an
// ErrArtefactMismatch naming the first artefact that no longer matches.
func VerifyArtefacts(arts []wire.Artefact) error {
	for _, a := range arts {
		sum := sha256.Sum256(a.Content)
		got := hex.EncodeToString(sum[:])
		if got != a.SHA256 {
			return fmt.Errorf("%w: %s: content hashes to %s, recorded %s", ErrArtefactMismatch, a.Name, got, a.SHA256)
		}
		if int64(len(a.Content)) != a.Size {
			return fmt.Errorf("%w: %s: content is %d bytes, recorded %d", ErrArtefactMismatch, a.Name, len(a.Content), a.Size)
		}
	}
	return nil
}

// Verify checks that arts are exactly the artefacts the manifest lists, each
// with the recorded hash and size and each content still hashing to it. It
// returns an ErrArtefactMismatch naming the first difference.
func (m Manifest) Verify(arts []wire.Artefact) error {
	if err := VerifyArtefacts(arts); err != nil {
		return err
	}
	byName := make(map[string]wire.Artefact, len(arts))
	for _, a := range arts {
		if _, dup := byName[a.Name]; dup {
			return fmt.Errorf("%w: %s: present twice", ErrArtefactMismatch, a.Name)
		}
		byName[a.Name] = a
	}
	for _, e := range m.Artefacts {
		a, ok := byName[e.Name]
		if !ok {
			return fmt.Errorf("%w: %s: listed in the manifest but missing", ErrArtefactMismatch, e.Name)
		}
		if a.SHA256 != e.SHA256 || a.Size != e.Size {
			return fmt.Errorf("%w: %s: manifest records sha256 %s (%d bytes), artefact has %s (%d bytes)", ErrArtefactMismatch, e.Name, e.SHA256, e.Size, a.SHA256, a.Size)
		}
		delete(byName, e.Name)
	}
	for name := range byName {
		return fmt.Errorf("%w: %s: not listed in the manifest", ErrArtefactMismatch, name)
	}
	return nil
}
