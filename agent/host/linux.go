package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/capture"
	"github.com/warden-ir/warden/agent/netfilter"
	"github.com/warden-ir/warden/agent/netns"
	"github.com/warden-ir/warden/agent/pcap"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/fault"
)

// Backends of the quarantine firewall.
const (
	BackendIPTables = netfilter.BackendIPTables
	BackendNFTables = netfilter.BackendNFTables
)

// Options choose the gateway's implementations.
type Options struct {
	// Backend is BackendIPTables or BackendNFTables.
	Backend string
	// VICISocket is charon's socket (DefaultVICISocket when empty); set
	// NoVICI to leave strongSwan alone.
	VICISocket string
	NoVICI     bool
	// Capture tunes evidence capture; its VICISocket defaults to the one
	// above.
	Capture capture.Options
	Log     *slog.Logger
}

// Deps builds the agent's seams for the network namespace of the calling
// thread. The returned io.Closer releases the firewall backend, the netlink
// socket and the namespace handle.
func Deps(opt Options) (agent.Deps, io.Closer, error) {
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var closers closeAll
	fail := func(err error) (agent.Deps, io.Closer, error) {
		_ = closers.Close()
		return agent.Deps{}, nil, err
	}
	// Conntrack and capture act on the calling thread's namespace, unlike
	// the firewall backends which bind themselves: run them in the
	// namespace the deps were built in, whichever goroutine calls.
	bound, err := netns.Current()
	if err != nil {
		return fail(err)
	}
	closers = append(closers, bound.Close)
	var fw interface {
		netfilter.Quarantine
		Close() error
	}
	switch opt.Backend {
	case BackendIPTables, "":
		fw, err = netfilter.NewIPTables(log)
	case BackendNFTables:
		fw, err = netfilter.NewNFTables(log)
	default:
		return fail(fmt.Errorf("firewall backend %q: want %s or %s", opt.Backend, BackendIPTables, BackendNFTables))
	}
	if err != nil {
		return fail(fmt.Errorf("opening %s firewall: %w", opt.Backend, err))
	}
	closers = append(closers, fw.Close)
	links, err := NewLinks()
	if err != nil {
		return fail(err)
	}
	closers = append(closers, links.Close)
	capOpt := opt.Capture
	if capOpt.VICISocket == "" {
		capOpt.VICISocket = opt.VICISocket
	}
	d := agent.Deps{
		Firewall: Firewall{FW: fw},
		KillFlows: func(ctx context.Context, keep []netip.Prefix) (n int, err error) {
			var killed []wire.Flow
			var mu sync.Mutex
			err = bound.Do(func() error {
				n, err = netfilter.KillFlowsRecording(ctx, keep, func(f wire.Flow) {
					mu.Lock()
					killed = append(killed, f)
					mu.Unlock()
				})
				return err
			})
			// The quarantine ends these connections: what they carried is
			// kept for an investigation (never at the cost of the kill).
			if capOpt.StateDir != "" && len(killed) > 0 {
				if rerr := capture.RecordKilledFlows(capOpt.StateDir, killed, time.Now()); rerr != nil {
					log.Warn("recording the flows the quarantine ended", "error", rerr.Error())
				}
			}
			return n, err
		},
		Investigate: func(ctx context.Context, p wire.InvestigateParams) (res wire.InvestigateResult, err error) {
			err = bound.Do(func() error {
				res, err = capture.Investigate(ctx, capOpt, p)
				return err
			})
			return res, classifyCapture(err)
		},
		Capture: func(ctx context.Context, p wire.CaptureParams) (res wire.CaptureResult, err error) {
			err = bound.Do(func() error {
				res, err = Capture(ctx, capOpt)
				return err
			})
			return res, err
		},
		Links: links,
	}
	if !opt.NoVICI {
		d.SAs = NewVICI(opt.VICISocket)
	}
	if capOpt.StateDir != "" {
		rec, err := pcap.NewRecorder(filepath.Join(capOpt.StateDir, "captures"), func() (src pcap.Source, err error) {
			err = bound.Do(func() error {
				src, err = pcap.OpenAFPacket()
				return err
			})
			return src, err
		}, log)
		if err != nil {
			log.Warn("packet capture unavailable; packet_capture commands will answer 501", "error", err.Error())
		} else {
			closers = append(closers, rec.Close)
			d.PacketCapture = func(ctx context.Context, p wire.PacketCaptureParams) (wire.PacketCaptureResult, error) {
				res, err := rec.Handle(ctx, p)
				switch {
				case errors.Is(err, pcap.ErrInvalid):
					err = fmt.Errorf("%w: %w", agent.ErrInvalidParams, err)
				case errors.Is(err, pcap.ErrNotFound):
					err = fmt.Errorf("%w: %w", agent.ErrNotFound, err)
				}
				return res, err
			}
		}
	}
	return d, closers, nil
}

// closeAll closes in reverse order.
type closeAll []func() error

func (c closeAll) Close() error {
	var errs []error
	for i := len(c) - 1; i >= 0; i-- {
		errs = append(errs, c[i]())
	}
	return errors.Join(errs...)
}

// Firewall adapts a netfilter quarantine backend to the agent's firewall
// seam: it adds the read-back's JSON detail and its drift from the agent's
// record. Refused specs and a missing backend are marked terminal.
type Firewall struct{ FW netfilter.Quarantine }

var _ agent.Firewall = Firewall{}

// Apply implements agent.Firewall.
func (f Firewall) Apply(ctx context.Context, s wire.QuarantineSpec) (bool, error) {
	changed, err := f.FW.Apply(ctx, s)
	return changed, classify(err)
}

// Remove implements agent.Firewall.
func (f Firewall) Remove(ctx context.Context) (bool, error) {
	changed, err := f.FW.Remove(ctx)
	return changed, classify(err)
}

// Observe implements agent.Firewall.
func (f Firewall) Observe(ctx context.Context, want wire.QuarantineSpec) (wire.FirewallState, error) {
	st, err := f.FW.Observe(ctx)
	if err != nil {
		return wire.FirewallState{}, classify(err)
	}
	detail, err := json.Marshal(st)
	if err != nil {
		return wire.FirewallState{}, fmt.Errorf("encoding firewall state: %w", err)
	}
	out := wire.FirewallState{Backend: st.Backend, Quarantined: st.Quarantined(), Absent: st.Absent(), Detail: detail}
	if len(want.Management) > 0 {
		if out.Drift, err = st.Drift(want); err != nil {
			return wire.FirewallState{}, classify(err)
		}
	}
	return out, nil
}

func classify(err error) error {
	if errors.Is(err, netfilter.ErrInvalidSpec) || errors.Is(err, netfilter.ErrUnavailable) {
		return fault.Terminal(err)
	}
	return err
}

// Capture runs capture.Collect and returns its result in the wire form;
// the manifest is encoded once, here, and travels verbatim.
func Capture(ctx context.Context, opt capture.Options) (wire.CaptureResult, error) {
	arts, manifest, err := capture.Collect(ctx, opt)
	if err != nil {
		return wire.CaptureResult{}, classifyCapture(err)
	}
	m, err := json.Marshal(manifest)
	if err != nil {
		return wire.CaptureResult{}, fmt.Errorf("encoding capture manifest: %w", err)
	}
	return wire.CaptureResult{Artefacts: arts, Manifest: m}, nil
}

func classifyCapture(err error) error {
	if errors.Is(err, capture.ErrInvalidOptions) {
		return fault.Terminal(err)
	}
	return err
}
