package agent

import (
	"context"
	"errors"
	"net/netip"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock"
)

// Firewall is the quarantine rule set on the gateway. Every method is
// idempotent and safe to call again after a failure.
type Firewall interface {
	// Apply installs or repairs the quarantine for spec (IPv4 and IPv6);
	// changed is false when the rules already matched.
	Apply(ctx context.Context, spec wire.QuarantineSpec) (changed bool, err error)
	// Remove removes exactly what Apply added; changed is false when there
	// was nothing to remove.
	Remove(ctx context.Context) (changed bool, err error)
	// Observe reads the rules back and lists their drift from want (no
	// drift is computed when want has no management network).
	Observe(ctx context.Context, want wire.QuarantineSpec) (wire.FirewallState, error)
}

// KillFlowsFunc deletes established flows whose addresses all lie outside
// keep and returns how many it deleted. Called only after Apply.
type KillFlowsFunc func(ctx context.Context, keep []netip.Prefix) (int, error)

// BaselineFunc evaluates the hardened baseline.
type BaselineFunc func(ctx context.Context, p wire.BaselineParams) (wire.BaselineResult, error)

// PatchFunc installs package updates.
type PatchFunc func(ctx context.Context, p wire.PatchParams) (wire.PatchResult, error)

// InvestigateFunc collects what the gateway recorded in a time window.
type InvestigateFunc func(ctx context.Context, p wire.InvestigateParams) (wire.InvestigateResult, error)

// PacketCaptureFunc starts, stops, lists or reads the gateway's packet
// captures.
type PacketCaptureFunc func(ctx context.Context, p wire.PacketCaptureParams) (wire.PacketCaptureResult, error)

// CaptureFunc collects volatile evidence.
type CaptureFunc func(ctx context.Context, p wire.CaptureParams) (wire.CaptureResult, error)

// Link is a network link as the tunnel seam sees it.
type Link struct {
	Name string
	// Type is the kernel's link kind ("wireguard", "veth", "tun").
	Type string
	Up   bool
}

// LinkController brings tunnel links down and up. SetDown and SetUp are
// idempotent.
type LinkController interface {
	Links(ctx context.Context) ([]Link, error)
	SetDown(ctx context.Context, name string) error
	SetUp(ctx context.Context, name string) error
}

// SAController terminates and re-initiates strongSwan security
// associations.
type SAController interface {
	// List returns the established (or establishing) IKE SAs by connection
	// name with their child SA names; none when no IKE daemon is running.
	List(ctx context.Context) ([]wire.SA, error)
	// Terminate tears an IKE SA and its children down without waiting for
	// the peer (the quarantine drops its answer anyway).
	Terminate(ctx context.Context, sa wire.SA) error
	// Initiate starts the connection's children again (or the IKE SA alone
	// when it had none) without waiting for the outcome.
	Initiate(ctx context.Context, sa wire.SA) error
}

// WireGuardController reads and changes the gateway's own WireGuard
// devices. Implementations refuse a device that is not a WireGuard link in
// the agent's network namespace (ErrNotFound), never return a private key,
// and return preshared keys only as references (wire.WGPeer).
type WireGuardController interface {
	// Device reads one device. It changes nothing.
	Device(ctx context.Context, name string) (wire.WGDevice, error)
	// Configure applies cfg in one transaction (never replacing every
	// peer) and returns the device read back after the change. Applying
	// the same cfg again leaves the device as it is. Malformed keys are
	// ErrInvalidParams, without the value in the error.
	Configure(ctx context.Context, name string, cfg wire.WGConfig) (wire.WGDevice, error)
}

// VICIRunner runs one whitelisted command (wire.VICICommands) against the
// gateway's charon and returns its reply and, for a streamed command, its
// events. A command charon refuses comes back as an error carrying
// charon's errmsg; no charon is ErrUnavailable.
type VICIRunner interface {
	Run(ctx context.Context, p wire.VICIParams) (wire.VICIResult, error)
}

// BlockObservation is the blocklist read back from the kernel.
type BlockObservation struct {
	// Prefixes are the blocked networks.
	Prefixes []netip.Prefix
	// Enforced reports that every one of them is dropped in both
	// families and on every hook.
	Enforced bool
	// Backend names the kernel firewall ("nftables", "iptables"), and
	// Faults how the rules differ from what Set writes (empty when
	// Enforced); the IoC blocklist reports both to the controller.
	Backend string
	Faults  []string
}

// Blocker drops every packet from or to a set of networks (revoked peers'
// addresses; for the IoC blocklist, remote addresses threat intelligence
// names), independently of the quarantine and of the other blocklist.
type Blocker interface {
	// Set makes the blocked set exactly prefixes (none lifts every block).
	// It is idempotent: changed is false when the kernel already matched.
	// A set it refuses as such (one holding the host's own address) is
	// ErrInvalidParams; the agent then forgets the block it was adding.
	Set(ctx context.Context, prefixes []netip.Prefix) (changed bool, err error)
	// Observe reads the blocked set back. It changes nothing.
	Observe(ctx context.Context) (BlockObservation, error)
}

// Errors a seam returns to choose the agent's answer (see statusOf).
var (
	// ErrInvalidParams marks a request a seam refuses as malformed (400).
	ErrInvalidParams = errors.New("invalid parameters")
	// ErrNotFound marks a request for something the gateway does not have,
	// or must not touch (404).
	ErrNotFound = errors.New("not found")
	// ErrUnavailable marks a daemon the command needs that is not running
	// (503): the controller may retry later.
	ErrUnavailable = errors.New("unavailable")
)

// SensorsFunc reads what the gateway's sensors watch and have learned.
type SensorsFunc func(ctx context.Context, _ struct{}) (wire.SensorsSummary, error)

// Deps are the agent's seams to the gateway. Firewall and KillFlows are
// required. Links and SAs may be nil when the gateway has no WireGuard or
// no strongSwan; Capture, Baseline, Patch, WireGuard, VICI, Blocker and
// IOCBlocker may be nil, and their commands then fail with 501 Not
// Implemented. Clock defaults to clock.Real; tests inject a fake one so the
// commit-confirmed window can pass without waiting.
type Deps struct {
	Firewall  Firewall
	KillFlows KillFlowsFunc
	Capture   CaptureFunc
	// Investigate collects logs, logins, connection records, counters and
	// configuration history for a window (the investigate command).
	Investigate InvestigateFunc
	// PacketCapture records traffic as pcapng (started by a quarantine
	// that asks for it, and by the packet_capture command).
	PacketCapture PacketCaptureFunc
	Baseline      BaselineFunc
	Patch         PatchFunc
	Links         LinkController
	SAs           SAController
	WireGuard     WireGuardController
	VICI          VICIRunner
	Blocker       Blocker
	// IOCBlocker is the IoC blocklist (ioc_block), a Blocker of its own
	// rules that never touches the peer blocklist's.
	IOCBlocker Blocker
	// Sensors, when the agent runs sensors, says what they watch and have
	// learned (the sensors command).
	Sensors SensorsFunc
	Clock   clock.Clock
}
