// Package wire holds the JSON messages exchanged between the controller and
// `warden agent`: the signed-by-TLS command envelope with its nonce and
// expiry, and the parameters and results of each command kind; and the few
// data shapes both sides and the agent's seams share (QuarantineSpec,
// Artefact, SA, the WireGuard device and VICI message forms), so that no
// type is declared twice across the agent and the controller.
//
// It is shared by the agent (package agent and everything under agent/)
// and the controller-side client (providers/linux) so neither imports the
// other. It owns only data shapes and their validation helpers: it must not
// do I/O, hold state, or import anything from Warden.
package wire

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Paths served by the agent, all behind mutual TLS.
const (
	// CommandsPath accepts one Command per POST.
	CommandsPath = "/v1/commands"
	// HealthPath answers GET with 200 when the agent is serving.
	HealthPath = "/healthz"
)

// Size limits. Requests are small; only capture results are large.
const (
	MaxRequestBytes  = 64 << 10
	MaxResponseBytes = 16 << 20
)

// DefaultControllerIdentity is the name the agent expects in the
// controller's client certificate (CommonName, DNS or URI SAN).
const DefaultControllerIdentity = "warden-controller"

// Command kinds.
const (
	KindCapture = "capture"
	KindIsolate = "isolate"
	KindConfirm = "confirm"
	KindRelease = "release"
	KindObserve = "observe"
	// KindBaseline evaluates the gateway's hardened baseline (and may
	// record the integrity manifest or apply safe remediations).
	KindBaseline = "baseline"
	// KindPatch installs package updates with apt (or, with VerifyOnly,
	// reads installed versions back).
	KindPatch = "patch"
	// KindWireGuard reads or configures a WireGuard device of the gateway
	// (see WireGuardParams).
	KindWireGuard = "wireguard"
	// KindVICI runs one whitelisted VICI command against the gateway's
	// charon (see VICIParams).
	KindVICI = "vici"
	// KindBlock blocks (or unblocks) a revoked peer's addresses on the
	// gateway (see BlockParams).
	KindBlock = "block"
	// KindKillFlows deletes the tracked flows a quarantine isolated with
	// IsolateParams.KeepFlows left for the capture (see KillFlowsResult).
	KindKillFlows = "kill_flows"
)

// Kinds lists every command kind the agent understands.
func Kinds() []string {
	return []string{KindCapture, KindIsolate, KindConfirm, KindRelease, KindObserve, KindKillFlows, KindBaseline, KindPatch, KindWireGuard, KindVICI, KindBlock, KindIOCBlock, KindSensors, KindInvestigate, KindPacketCapture}
}

// ReadOnly reports whether commands of kind only read the gateway's state
// (the agent then keeps their nonce without a disk flush).
func ReadOnly(kind string) bool { return kind == KindObserve || kind == KindSensors }

// Command is the envelope of every request. The agent refuses a command
// whose ID it has seen before (until the command expires), one that has
// expired, and one whose lifetime is longer than the agent allows, so a
// captured request cannot be replayed.
type Command struct {
	// ID is a random 128-bit nonce, 32 lower-case hex digits.
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// IssuedAt and ExpiresAt bound the command's validity (controller
	// clock; the agent tolerates a small skew).
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// Epoch is the controller's writer-lease epoch the command was sent
	// under. The agent remembers the highest it has seen (on disk) and
	// refuses a lower one (StatusStaleEpoch): a deposed leader cannot act
	// after its successor did. 0 is a command sent outside any lease (a
	// tool run by hand, a test), which no epoch check applies to.
	Epoch  int64           `json:"epoch,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
}

// StatusStaleEpoch is the agent's answer to a command whose epoch is
// lower than one it has seen (412 Precondition Failed: the precondition
// is leading).
const StatusStaleEpoch = 412

// NewCommand builds a command of kind with a fresh nonce, valid for ttl
// from now. params may be nil.
func NewCommand(kind string, params any, now time.Time, ttl time.Duration) (Command, error) {
	id, err := NewNonce()
	if err != nil {
		return Command{}, err
	}
	c := Command{ID: id, Kind: kind, IssuedAt: now.UTC(), ExpiresAt: now.Add(ttl).UTC()}
	if params != nil {
		raw, err := json.Marshal(params)
		if err != nil {
			return Command{}, fmt.Errorf("encoding %s parameters: %w", kind, err)
		}
		c.Params = raw
	}
	return c, nil
}

// NewNonce returns 128 random bits as 32 hex digits.
func NewNonce() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reading random nonce: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// ValidNonce reports whether id has the form NewNonce produces.
func ValidNonce(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("parsing duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// IsolateParams asks the agent to quarantine the gateway.
type IsolateParams struct {
	// Management networks (CIDR) stay reachable in both directions. The
	// agent adds its own configured management networks and the address
	// the command came from, so the controller↔agent path always survives.
	Management []string `json:"management,omitempty"`
	// Forensics networks (CIDR) stay reachable too.
	Forensics []string `json:"forensics,omitempty"`
	// ConfirmWindow overrides the agent's commit-confirmed window; zero
	// means the agent's default.
	ConfirmWindow Duration `json:"confirm_window,omitempty"`
	// KeepFlows puts the drop rules in force but leaves the connection
	// tracking table as it is, so that a capture under quarantine still
	// records the attacker's flows (evidence first without the attacker
	// last): their packets are dropped all the same. KindKillFlows then
	// deletes them; until it does, re-enforcing (heal, restart) keeps them
	// too. A quarantine whose flows were already killed stays so.
	KeepFlows bool `json:"keep_flows,omitempty"`
	// Capture, when set, starts a bounded packet capture on every
	// interface once the quarantine is in force (none starts while one
	// runs), so that what tries to leave during quarantine is recorded.
	Capture *CaptureSpec `json:"capture,omitempty"`
}

// IsolateResult reports what isolate did.
type IsolateResult struct {
	// Changed is false when the same quarantine was already in force.
	Changed bool `json:"changed"`
	// Generation identifies this quarantine; Confirm must name it.
	Generation int64 `json:"generation"`
	// Confirmed is true when this quarantine needs no further confirm (it
	// was already confirmed with the same networks).
	Confirmed bool `json:"confirmed"`
	// ConfirmBy is when the agent reverts unless confirmed (zero when
	// Confirmed).
	ConfirmBy time.Time `json:"confirm_by,omitzero"`
	// Management and Forensics are the networks in force, after the agent
	// merged in its own.
	Management    []string `json:"management"`
	Forensics     []string `json:"forensics,omitempty"`
	KilledFlows   int      `json:"killed_flows"`
	LinksDown     []string `json:"links_down,omitempty"`
	SAsTerminated int      `json:"sas_terminated"`
	// Warnings are partial failures that did not stop the quarantine (a
	// tunnel link that would not go down).
	Warnings []string `json:"warnings,omitempty"`
}

// ConfirmParams confirms a quarantine generation.
type ConfirmParams struct {
	Generation int64 `json:"generation"`
	// Check makes the agent read its rules back first and refuse to
	// confirm (409) unless the quarantine of Generation is enforced for
	// IPv4 and IPv6 without drift; the answer carries that read-back. A
	// controller sending it over a connection opened after the isolate
	// proves the management path and the rules in one round trip.
	Check bool `json:"check,omitempty"`
}

// ConfirmNotEnforced starts the 409 message of a confirm whose Check found
// the rules not enforced: the isolate may be repeated (it re-enforces), as
// opposed to a confirm that came too late or for another generation.
const ConfirmNotEnforced = "not confirming: rules not enforced"

// ConfirmResult reports a confirm.
type ConfirmResult struct {
	// Changed is false when the generation was already confirmed.
	Changed    bool  `json:"changed"`
	Generation int64 `json:"generation"`
	// State is the read-back a Check made before confirming.
	State *State `json:"state,omitempty"`
}

// KillFlowsResult reports a kill_flows command.
type KillFlowsResult struct {
	// Changed is false when no flow was kept and none was left to delete.
	Changed bool `json:"changed"`
	// Killed counts the tracked flows deleted (IPv4 and IPv6).
	Killed int `json:"killed"`
	// WereKept is true when the quarantine had kept its flows until now.
	WereKept bool `json:"were_kept"`
}

// ReleaseResult reports a release.
type ReleaseResult struct {
	// Changed is false when there was no quarantine to release.
	Changed bool `json:"changed"`
	// LinksUp are the tunnel links the agent brought back up.
	LinksUp []string `json:"links_up,omitempty"`
	// SAsRestarted counts the strongSwan connections re-initiated.
	SAsRestarted int      `json:"sas_restarted"`
	Warnings     []string `json:"warnings,omitempty"`
}

// CaptureParams asks for volatile evidence.
type CaptureParams struct {
	// Incident names the incident the capture belongs to (for the
	// manifest); optional.
	Incident string `json:"incident,omitempty"`
}

// Artefact is one piece of volatile evidence.
type Artefact struct {
	Name      string    `json:"name"`
	MediaType string    `json:"media_type"`
	SHA256    string    `json:"sha256"`
	Size      int64     `json:"size"`
	Collected time.Time `json:"collected"`
	Source    string    `json:"source"`
	// Error is set when the artefact could not be collected.
	Error   string `json:"error,omitempty"`
	Content []byte `json:"content,omitempty"`
}

// CaptureResult is the evidence and its manifest.
type CaptureResult struct {
	Artefacts []Artefact `json:"artefacts"`
	// Manifest is the gateway's manifest exactly as it produced it; its
	// bytes are kept verbatim so hashes over it stay valid.
	Manifest json.RawMessage `json:"manifest,omitempty"`
}

// FirewallState is the quarantine as read back from the gateway's kernel.
type FirewallState struct {
	Backend string `json:"backend"`
	// Quarantined reports that IPv4 and IPv6 are fully enforced.
	Quarantined bool `json:"quarantined"`
	// Absent reports that no trace of Warden's rules remains.
	Absent bool `json:"absent"`
	// Drift lists differences from the agent's recorded quarantine; empty
	// when they match or when no quarantine is recorded.
	Drift []string `json:"drift,omitempty"`
	// Detail is the backend's full read-back (agent/netfilter's State).
	Detail json.RawMessage `json:"detail,omitempty"`
}

// SA names a strongSwan connection the agent terminated.
type SA struct {
	IKE      string   `json:"ike"`
	Children []string `json:"children,omitempty"`
}

// State is the agent's quarantine record plus, from observe, the firewall
// read back.
type State struct {
	Quarantined bool      `json:"quarantined"`
	Confirmed   bool      `json:"confirmed"`
	Generation  int64     `json:"generation"`
	ConfirmBy   time.Time `json:"confirm_by,omitzero"`
	Management  []string  `json:"management,omitempty"`
	Forensics   []string  `json:"forensics,omitempty"`
	// QuarantinedAt is when the current quarantine was first applied.
	QuarantinedAt time.Time `json:"quarantined_at,omitzero"`
	LinksDown     []string  `json:"links_down,omitempty"`
	TerminatedSAs []SA      `json:"terminated_sas,omitempty"`
	// LastReverted and LastRevertReason record the last automatic revert
	// of an unconfirmed quarantine.
	LastReverted     time.Time `json:"last_reverted,omitzero"`
	LastRevertReason string    `json:"last_revert_reason,omitempty"`
	// LastHealed and Heals record self-repairs of drifted rules.
	LastHealed time.Time `json:"last_healed,omitzero"`
	Heals      int       `json:"heals,omitempty"`
	// FlowsKept is true while the quarantine keeps the tracked flows it
	// found (isolated with KeepFlows, not yet killed).
	FlowsKept bool `json:"flows_kept,omitempty"`
	// Firewall is filled by observe.
	Firewall *FirewallState `json:"firewall,omitempty"`
	// Blocked lists the revoked peers whose addresses the gateway drops,
	// with those addresses.
	Blocked []BlockedPeer `json:"blocked,omitempty"`
	// BlockEnforced, from observe, reports that the kernel drops every
	// blocked address (both families, every hook).
	BlockEnforced bool `json:"block_enforced,omitempty"`
	// AgentStarted is when this agent process started.
	AgentStarted time.Time `json:"agent_started,omitzero"`
	// LeaseEpoch is the highest controller lease epoch the agent has
	// taken a command under (it refuses lower ones).
	LeaseEpoch int64 `json:"lease_epoch,omitempty"`
}

// Error is the body of every non-2xx response.
type Error struct {
	Error string `json:"error"`
}

// BaselineParams asks the agent to check its hardened baseline.
type BaselineParams struct {
	// Management networks (CIDR): listeners bound inside them count as
	// management-only.
	Management []string `json:"management,omitempty"`
	// RecordManifest records the integrity manifest (hashes of critical
	// files) now, when none is recorded yet or when Rerecord is set.
	// Rerecord takes every file as known good (a person's decision, after
	// a rebuild); after a patch, SanctionPackages re-records only what the
	// patch installed.
	RecordManifest bool `json:"record_manifest,omitempty"`
	Rerecord       bool `json:"rerecord,omitempty"`
	// SanctionPackages names the packages ("name" or "name:arch") a patch
	// upgraded and that the controller has verified (versions read back,
	// services answering). Before evaluating, the agent re-records in the
	// manifest the files those packages own whose content is exactly what
	// dpkg recorded it installed; every other difference stays a
	// violation. Idempotent: asked again, it changes nothing more and
	// reports the same re-recorded entries.
	SanctionPackages []string `json:"sanction_packages,omitempty"`
	// Remediate lists check ids to remediate first; only checks whose
	// remediation is marked safe are touched, the others are refused.
	Remediate []string `json:"remediate,omitempty"`
}

// BaselineResult is the evaluation.
type BaselineResult struct {
	// Report is a baseline.Report as JSON (kept opaque here so this
	// package stays free of the checks).
	Report json.RawMessage `json:"report"`
	Passed bool            `json:"passed"`
	// ManifestRecorded is true when this call recorded the manifest.
	ManifestRecorded bool `json:"manifest_recorded,omitempty"`
	// Remediated lists the checks remediated by this call.
	Remediated []string `json:"remediated,omitempty"`
	Warnings   []string `json:"warnings,omitempty"`
	// Sanction answers SanctionPackages (nil when none were named).
	Sanction *ManifestSanction `json:"sanction,omitempty"`
}

// ManifestSanction is what a verified patch changed in the integrity
// manifest.
type ManifestSanction struct {
	// NoManifest is true when no manifest was recorded yet: there was
	// nothing to re-record.
	NoManifest bool `json:"no_manifest,omitempty"`
	// Rerecorded lists the manifest entries the named packages, at their
	// installed versions, account for: re-recorded by this call or by an
	// earlier one for the same versions (so a repeated call reports the
	// same), sorted by path.
	Rerecorded []ManifestChange `json:"rerecorded,omitempty"`
	// Refused lists the files that differ from the manifest and that the
	// patch does not account for; they stay integrity violations.
	Refused []ManifestRefusal `json:"refused,omitempty"`
}

// ManifestChange is one entry of the integrity manifest that a verified
// patch re-records: the file now holds exactly what an upgraded package
// installed (patching.PlanManifestUpdate decides it).
type ManifestChange struct {
	Path string `json:"path"`
	// Package ("name:arch") and Version are the upgraded package instance
	// that installed the content.
	Package string `json:"package"`
	Version string `json:"version"`
	// OldSHA256 is the digest the manifest held ("" when the file was not
	// recorded: it appeared under a recorded pattern); NewSHA256 is the
	// file's digest now.
	OldSHA256 string `json:"old_sha256,omitempty"`
	NewSHA256 string `json:"new_sha256"`
	Mode      string `json:"mode"`
	// At is when the agent re-recorded it (zero in a plan not yet applied).
	At time.Time `json:"at"`
}

// ManifestRefusal is a file that differs from the manifest and that the
// patch does not account for: it is not re-recorded and stays an
// integrity violation.
type ManifestRefusal struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
	// Package is the upgraded package instance owning the file, if any.
	Package   string `json:"package,omitempty"`
	OldSHA256 string `json:"old_sha256,omitempty"`
	// NewSHA256 is empty when the file is missing or unreadable.
	NewSHA256 string `json:"new_sha256,omitempty"`
}

// PatchTarget is a package and the version it must reach ("" = newest).
type PatchTarget struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// PatchParams asks the agent to patch. Package sources are the gateway's
// own apt configuration: the controller never tells a gateway where to
// fetch software from.
type PatchParams struct {
	Packages     []PatchTarget `json:"packages,omitempty"`
	SecurityOnly bool          `json:"security_only,omitempty"`
	// VerifyOnly reads the installed versions back and checks them
	// against Packages without installing anything.
	VerifyOnly bool `json:"verify_only,omitempty"`
}

// PatchInstalled is one package changed by a patch.
type PatchInstalled struct {
	Name   string `json:"name"`
	Before string `json:"before"`
	After  string `json:"after"`
}

// PatchCheck is one verification result.
type PatchCheck struct {
	Name     string `json:"name"`
	Passed   bool   `json:"passed"`
	Expected string `json:"expected,omitempty"`
	Observed string `json:"observed,omitempty"`
	Message  string `json:"message,omitempty"`
}

// PatchResult reports a patch.
type PatchResult struct {
	Changed   bool             `json:"changed"`
	Installed []PatchInstalled `json:"installed,omitempty"`
	Checks    []PatchCheck     `json:"checks,omitempty"`
	Passed    bool             `json:"passed"`
}
