// Package actions holds the catalogue of response actions (snapshot,
// isolate, release, power_off, notify, …) and the contract every one keeps:
// Plan (a dry run that reads current state and says what would change),
// Apply (idempotent: a second call changes nothing and says so), Verify
// (reads real state back), and, where possible, Undo.
//
// Every catalogue action lives here, over a small interface declared next
// to it that a provider implements (VMProvider, OSQuarantine, Patcher,
// TunnelRevoker, Notifier, …); recording evidence (RecordEvidence) and
// retrying (WithRetry) are decorators composed once where the catalogue is
// built.
//
// Actions translate a step of a runbook into provider calls. They must not
// decide whether to act (that is the controller's gate) and must not hold
// state of their own between calls: all state lives in the provider (the VM,
// the host) or in the run record the controller keeps.
package actions

import (
	"context"
	"errors"
	"net/netip"

	"github.com/warden-ir/warden/internal/fault"
	"github.com/warden-ir/warden/inventory"
)

// Request is everything an action needs for one step.
type Request struct {
	// IdempotencyKey is stable for a step of a run across retries and
	// restarts. Providers use it to recognise work already done.
	IdempotencyKey string
	// Incident the step belongs to (used in names, e.g. snapshot names).
	Incident string
	// Run is the run the step belongs to ("" for plans and the reconcile
	// loop's repairs): a notification links to its page.
	Run string
	// Gateway the step acts on.
	Gateway inventory.Gateway
	// Params are the step's parameters from the runbook.
	Params map[string]string
	// Blocks is the whole set of remote prefixes block_ioc holds at the
	// gateway (the blocks in force, fleet-wide); other actions ignore it.
	Blocks []netip.Prefix
	// Attempts, when set, observes each attempt of the step (the retry
	// decorator calls it); nil for plans and direct calls.
	Attempts Attempts
}

// Result is what an action reports. It must never carry secrets.
type Result struct {
	// Changed is false when the state was already as wanted.
	Changed bool `json:"changed"`
	// Summary is one human line.
	Summary string `json:"summary"`
	// Details are structured facts (before/after, ids) for audit and report.
	Details map[string]any `json:"details,omitempty"`
}

// Change is what Plan expects Apply to do.
type Change struct {
	// Summary is one human line ("move 2 NICs of gw-hq to quarantine").
	Summary string `json:"summary"`
	// Changes lists each expected change; empty when nothing would change.
	Changes []string `json:"changes,omitempty"`
	// Destructive marks steps that may destroy evidence or availability.
	Destructive bool `json:"destructive,omitempty"`
	// Warnings are what a person should know before approving (plans
	// show them as notes); they never block.
	Warnings []string `json:"warnings,omitempty"`
	// CutsAgent says Apply leaves the gateway's agent unreachable from
	// the controller until release (see Notes).
	CutsAgent bool `json:"cuts_agent,omitempty"`
}

// Action is one entry of the catalogue.
type Action interface {
	// Name is the catalogue name used in runbooks ("isolate").
	Name() string
	// Plan reads current state and describes what Apply would change. It
	// must not change anything.
	Plan(ctx context.Context, req Request) (Change, error)
	// Apply makes the change. It must be idempotent: applying the same
	// request twice leaves the same state and the second Result has
	// Changed=false.
	Apply(ctx context.Context, req Request) (Result, error)
	// Verify reads real state back and returns an error wrapping
	// ErrNotVerified when it does not match what Apply promised.
	Verify(ctx context.Context, req Request) (Result, error)
}

// Undoer is implemented by actions that can be reversed.
type Undoer interface {
	Undo(ctx context.Context, req Request) (Result, error)
}

// ErrNotVerified is wrapped by Verify when the state read back is wrong.
var ErrNotVerified = fault.ErrNotVerified

// ErrUnsupported is returned when an action cannot run against a target (for
// example a gateway with no VM configured). It is terminal.
var ErrUnsupported = errors.New("unsupported")

// Terminal marks err as not worth retrying (bad input, missing object,
// permission denied). Nil stays nil. The class is internal/fault's, which
// the agent marks its answers with too.
func Terminal(err error) error { return fault.Terminal(err) }

// IsTerminal reports whether err (or anything it wraps) was marked terminal,
// or is ErrUnsupported. Everything else is treated as transient and retried
// with backoff by the catalogue's retry layer (WithRetry).
func IsTerminal(err error) bool {
	return fault.IsTerminal(err) || errors.Is(err, ErrUnsupported)
}

// Catalogue action names. Runbooks refer to these.
const (
	NameCaptureVolatile = "capture_volatile"
	NameSnapshot        = "snapshot"
	NameIsolate         = "isolate"
	NameRelease         = "release"
	NamePowerOff        = "power_off"
	NameNotify          = "notify"
	NameVerifyBaseline  = "verify_baseline"
	NamePatch           = "patch"
	// NameRevokePeer removes a compromised gateway's tunnels and blocks
	// its addresses at every peer site.
	NameRevokePeer = "revoke_peer"
	// NameRotateCredentials replaces tunnel credentials in waves.
	NameRotateCredentials = "rotate_credentials"
	// NameBlockIOC holds the fleet's blocks of remote addresses (threat
	// intelligence, detectors, OpenC2) at a gateway.
	NameBlockIOC = "block_ioc"
	// NameKillFlows deletes the tracked flows an isolate with
	// flows: keep left for the capture.
	NameKillFlows = "kill_flows"
)
