package baseline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/internal/clock"
)

// Baseline is a named list of checks, loaded from YAML (see Load).
type Baseline struct {
	// Name identifies the baseline in reports ("gateway").
	Name string `yaml:"name" json:"name"`
	// Description is one paragraph for humans.
	Description string `yaml:"description" json:"description,omitempty"`
	// Profile names the kind of host the baseline is for ("vpn-gateway").
	// Checks that depart from generic benchmarks because of it say so in
	// their ProfileOverride.
	Profile string `yaml:"profile" json:"profile,omitempty"`
	// Checks run in this order.
	Checks []Check `yaml:"checks" json:"checks"`
	// File is where the baseline was loaded from.
	File string `yaml:"-" json:"file,omitempty"`
}

// CheckType selects what a check reads and which parameters it takes.
type CheckType string

// The check types.
const (
	TypeSSHD      CheckType = "sshd"
	TypeSysctl    CheckType = "sysctl"
	TypeFirewall  CheckType = "firewall"
	TypeTunnels   CheckType = "tunnels"
	TypePackages  CheckType = "packages"
	TypeIntegrity CheckType = "integrity"
)

// Check is one named verification. Common fields come first; the rest are
// parameters, each valid for one type only (Load rejects the others).
type Check struct {
	ID        string             `yaml:"id" json:"id"`
	Title     string             `yaml:"title" json:"title"`
	Rationale string             `yaml:"rationale" json:"rationale"`
	Severity  indicator.Severity `yaml:"severity" json:"severity"`
	Type      CheckType          `yaml:"type" json:"type"`
	// ProfileOverride records that this check deliberately departs from a
	// generic benchmark because of the baseline's profile.
	ProfileOverride *ProfileOverride `yaml:"profile_override" json:"profile_override,omitempty"`
	// Remediation says how to fix a failure; only Safe ones are applied by
	// Remediate.
	Remediation *Remediation `yaml:"remediation" json:"remediation,omitempty"`

	// Expected values, shared by sshd (option values) and sysctl (keys).
	Expect `yaml:",inline"`
	// sshd parameters.
	SSHDParams `yaml:",inline"`
	// sysctl parameters.
	SysctlParams `yaml:",inline"`
	// firewall parameters.
	FirewallParams `yaml:",inline"`
	// tunnels parameters.
	TunnelParams `yaml:",inline"`
	// packages parameters.
	PackageParams `yaml:",inline"`
	// integrity parameters.
	IntegrityParams `yaml:",inline"`

	// File and Line locate the check in its baseline file.
	File string `yaml:"-" json:"-"`
	Line int    `yaml:"-" json:"-"`
}

// ProfileOverride documents a deliberate departure from a generic benchmark.
type ProfileOverride struct {
	// Benchmark names the generic recommendation overridden, with the value
	// it asks for.
	Benchmark string `yaml:"benchmark" json:"benchmark"`
	// Rationale says why the profile needs a different value.
	Rationale string `yaml:"rationale" json:"rationale"`
}

// Remediation describes how to fix a failed check.
type Remediation struct {
	// Safe is true only when applying the fix cannot lock anyone out or
	// change what the gateway carries (a sysctl hardening value). Only safe
	// remediations of sysctl checks are applied automatically.
	Safe bool `yaml:"safe" json:"safe"`
	// Description tells a person what to do.
	Description string `yaml:"description" json:"description,omitempty"`
	// Value is what Remediate writes (sysctl); it must be one of one_of.
	Value string `yaml:"value" json:"value,omitempty"`
}

// Expect is how sshd and sysctl checks say what is acceptable: a set of
// values, or integer bounds.
type Expect struct {
	// OneOf lists acceptable values (sshd: case-insensitive).
	OneOf []string `yaml:"one_of" json:"one_of,omitempty"`
	// Max and Min bound an integer value, inclusive.
	Max *int `yaml:"max" json:"max,omitempty"`
	Min *int `yaml:"min" json:"min,omitempty"`
}

// SSHDParams are the parameters of an sshd check.
type SSHDParams struct {
	// Option is the sshd_config keyword (case-insensitive).
	Option string `yaml:"option" json:"option,omitempty"`
	// AllowedAlgorithms, for Ciphers, MACs, KexAlgorithms and the like:
	// every algorithm the effective list enables must be in this list.
	AllowedAlgorithms []string `yaml:"allowed_algorithms" json:"allowed_algorithms,omitempty"`
}

// SysctlParams are the parameters of a sysctl check.
type SysctlParams struct {
	// Keys are sysctl names, dotted ("net.ipv4.ip_forward") or slashed.
	// Every key must pass.
	Keys []string `yaml:"keys" json:"keys,omitempty"`
	// RequireBoot fails a key that no boot-time file sets, even when its
	// runtime value is right: a reboot would bring back the kernel default.
	RequireBoot bool `yaml:"require_boot" json:"require_boot,omitempty"`
}

// FirewallParams are the parameters of a firewall check: either default
// policies or allowed listeners.
type FirewallParams struct {
	// DefaultPolicies maps a hook (input, forward, output) to the policy
	// wanted (drop or accept).
	DefaultPolicies map[string]string `yaml:"default_policies" json:"default_policies,omitempty"`
	// Families the policies are checked for (ipv4, ipv6; default both).
	Families []string `yaml:"families" json:"families,omitempty"`
	// AllowedListeners lists the sockets that may listen.
	AllowedListeners []ListenerRule `yaml:"allowed_listeners" json:"allowed_listeners,omitempty"`
	// AllowLoopback accepts any listener bound only to a loopback address.
	AllowLoopback bool `yaml:"allow_loopback" json:"allow_loopback,omitempty"`
}

// ListenerRule allows listeners on some ports, bound to some addresses.
type ListenerRule struct {
	// Proto is tcp or udp (both families).
	Proto string `yaml:"proto" json:"proto"`
	Ports []int  `yaml:"ports" json:"ports"`
	// Addresses the socket may be bound to: "any" (including the wildcard
	// address), "management" (an address inside Env.ManagementNetworks; the
	// wildcard is not one), or an address or CIDR. Default: any.
	Addresses []string `yaml:"addresses" json:"addresses,omitempty"`
	// Comment says what the listener is.
	Comment string `yaml:"comment" json:"comment,omitempty"`
}

// TunnelParams are the parameters of a tunnels check; exactly one is set.
type TunnelParams struct {
	// ForbiddenAlgorithms are strongSwan proposal keywords that no IKE,
	// ESP or AH proposal may contain (3des, md5, sha1, modp1024, ...).
	ForbiddenAlgorithms []string `yaml:"forbidden_algorithms" json:"forbidden_algorithms,omitempty"`
	// ForbidAggressive fails any IKEv1 connection in aggressive mode.
	ForbidAggressive bool `yaml:"forbid_aggressive" json:"forbid_aggressive,omitempty"`
	// MaxKeyAge is the oldest a WireGuard private key may be ("90d").
	MaxKeyAge Duration `yaml:"max_key_age" json:"max_key_age,omitempty"`
	// RequirePSK fails any WireGuard peer without a preshared key.
	RequirePSK bool `yaml:"require_psk" json:"require_psk,omitempty"`
}

// PackageParams are the parameters of a packages check.
type PackageParams struct {
	// MinimumVersions maps a Debian package name to the lowest acceptable
	// version, compared in dpkg order. A package that is not installed
	// passes: there is nothing to patch.
	MinimumVersions map[string]string `yaml:"minimum_versions" json:"minimum_versions,omitempty"`
}

// IntegrityParams are the parameters of an integrity check; exactly one is
// set.
type IntegrityParams struct {
	// UID0Allowed lists the only accounts that may have UID 0.
	UID0Allowed []string `yaml:"uid0_allowed" json:"uid0_allowed,omitempty"`
	// AuthorizedKeys lists users whose ~/.ssh/authorized_keys and
	// authorized_keys2 must match the recorded manifest.
	AuthorizedKeys []string `yaml:"authorized_keys" json:"authorized_keys,omitempty"`
	// Files are paths or globs whose content and mode must match the
	// recorded manifest; a file that appears under a glob (or at a path
	// recorded as absent) fails too.
	Files []string `yaml:"files" json:"files,omitempty"`
}

// Duration is a time.Duration written as Go does ("36h") or in days ("90d").
type Duration time.Duration

// UnmarshalYAML parses "90d" or any time.ParseDuration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := parseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as Go prints it.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(days, "%d", &n); err != nil || n <= 0 || fmt.Sprint(n) != days {
			return 0, fmt.Errorf("parsing duration %q: want a positive number of days such as \"90d\"", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("parsing duration %q: %w", s, err)
	}
	return v, nil
}

// Status is a check's verdict.
type Status string

// Verdicts. Error means the check could not be evaluated (unreadable or
// malformed input); Skip means it does not apply (sshd not configured, no
// WireGuard interface, nothing recorded to compare against).
const (
	StatusPass  Status = "pass"
	StatusFail  Status = "fail"
	StatusError Status = "error"
	StatusSkip  Status = "skip"
)

// Evidence is one fact a verdict rests on.
type Evidence struct {
	// Source is where the value was read: "/etc/ssh/sshd_config:14",
	// "runtime /proc/sys/net/ipv4/ip_forward", "iptables-save:4",
	// "OpenSSH default". Paths are as on the gateway (without Env.Root).
	Source string `json:"source"`
	// Value is what was found. Never a secret.
	Value string `json:"value"`
	// Expected is what the check wants there.
	Expected string `json:"expected,omitempty"`
}

// Result is one check's verdict with its evidence.
type Result struct {
	ID       string             `json:"id"`
	Title    string             `json:"title"`
	Type     CheckType          `json:"type"`
	Severity indicator.Severity `json:"severity"`
	Status   Status             `json:"status"`
	Evidence []Evidence         `json:"evidence,omitempty"`
	// Message explains the verdict in one or two human sentences.
	Message string `json:"message,omitempty"`
	// ProfileOverride names the generic benchmark this check departs from.
	ProfileOverride string `json:"profile_override,omitempty"`
	// Remediable is true when Remediate may fix a failure by itself.
	Remediable bool `json:"remediable,omitempty"`
}

// Counts tallies results by status.
type Counts struct {
	Pass  int `json:"pass"`
	Fail  int `json:"fail"`
	Error int `json:"error"`
	Skip  int `json:"skip"`
}

// Report is one evaluation of a baseline.
type Report struct {
	Baseline string    `json:"baseline"`
	Profile  string    `json:"profile,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Results  []Result  `json:"results"`
	// Passed is true when no check failed or errored. Skipped checks do not
	// count against it; callers that gate on completeness look at
	// Counts.Skip.
	Passed bool   `json:"passed"`
	Counts Counts `json:"counts"`
}

// evidenceMentions reports whether any evidence item contains s in its
// source, value or expected value.
func evidenceMentions(evs []Evidence, s string) bool {
	for _, e := range evs {
		if strings.Contains(e.Source, s) || strings.Contains(e.Value, s) || strings.Contains(e.Expected, s) {
			return true
		}
	}
	return false
}

// Result returns the result for a check id.
func (r Report) Result(id string) (Result, bool) {
	for _, res := range r.Results {
		if res.ID == id {
			return res, true
		}
	}
	return Result{}, false
}

// Env is what a baseline is evaluated against. The zero value (plus Now)
// evaluates the live system.
type Env struct {
	// Root is the filesystem root files are read under (default "/").
	Root string
	// Runtime reads sysctl values and listening sockets (default
	// ProcRuntime{Root}).
	Runtime RuntimeReader
	// Firewall reads the rule sets (default ExecFirewall when Root is "/";
	// with any other Root a firewall check without a reader is an error).
	Firewall FirewallReader
	// Tunnels reads WireGuard keys and peers (default
	// WireGuardConfigDir{Root}).
	Tunnels TunnelReader
	// Recorded is the integrity manifest to compare against; nil skips the
	// manifest-based integrity checks.
	Recorded *Manifest
	// ManagementNetworks are the gateway's management networks: a listener
	// rule for "management" accepts sockets bound to addresses inside them.
	ManagementNetworks []netip.Prefix
	// Clock dates the report and ages handshakes (default clock.Real).
	Clock clock.Clock
}

// ErrInvalidEnv reports an Env that cannot be evaluated against.
var ErrInvalidEnv = errors.New("invalid baseline environment")

func (e Env) withDefaults() (Env, error) {
	if e.Root == "" {
		e.Root = "/"
	}
	if !filepath.IsAbs(e.Root) {
		return e, fmt.Errorf("%w: root %q is not absolute", ErrInvalidEnv, e.Root)
	}
	e.Root = filepath.Clean(e.Root)
	if e.Runtime == nil {
		e.Runtime = ProcRuntime{Root: e.Root}
	}
	if e.Firewall == nil && e.Root == "/" {
		e.Firewall = ExecFirewall{}
	}
	if e.Tunnels == nil {
		e.Tunnels = WireGuardConfigDir{Root: e.Root}
	}
	if e.Clock == nil {
		e.Clock = clock.Real
	}
	return e, nil
}

// Evaluate runs every check against env and reports each verdict with its
// evidence. Checks are independent: one that cannot be evaluated yields a
// result with StatusError and the others still run. The error is non-nil
// only when env itself is invalid. Evaluate changes nothing on the host.
func (b *Baseline) Evaluate(ctx context.Context, env Env) (Report, error) {
	env, err := env.withDefaults()
	if err != nil {
		return Report{}, err
	}
	ev := &evaluation{env: env}
	rep := Report{Baseline: b.Name, Profile: b.Profile, Started: env.Clock.Now(), Results: make([]Result, 0, len(b.Checks))}
	for i := range b.Checks {
		c := &b.Checks[i]
		var r Result
		if err := ctx.Err(); err != nil {
			r = c.result(StatusError, "evaluation cancelled: "+err.Error())
		} else {
			r = ev.run(ctx, c)
		}
		rep.add(r)
	}
	rep.Finished = env.Clock.Now()
	rep.Passed = rep.Counts.Fail == 0 && rep.Counts.Error == 0
	return rep, nil
}

// Check returns the check with the given id.
func (b *Baseline) Check(id string) (*Check, bool) {
	for i := range b.Checks {
		if b.Checks[i].ID == id {
			return &b.Checks[i], true
		}
	}
	return nil, false
}

func (r *Report) add(res Result) {
	r.Results = append(r.Results, res)
	switch res.Status {
	case StatusPass:
		r.Counts.Pass++
	case StatusFail:
		r.Counts.Fail++
	case StatusError:
		r.Counts.Error++
	case StatusSkip:
		r.Counts.Skip++
	}
}

// result starts a Result for c.
func (c *Check) result(st Status, msg string) Result {
	r := Result{ID: c.ID, Title: c.Title, Type: c.Type, Severity: c.Severity, Status: st, Message: msg}
	if c.ProfileOverride != nil {
		r.ProfileOverride = c.ProfileOverride.Benchmark
	}
	r.Remediable = c.Remediation != nil && c.Remediation.Safe
	return r
}

// verdict ends r for a check that lists what it found wrong: failed with
// prefix and the failures joined by sep when there are any, else with
// passMsg and its status as it stands.
func (r Result) verdict(failures []string, sep, prefix, passMsg string) Result {
	if len(failures) > 0 {
		r.Status, r.Message = StatusFail, prefix+strings.Join(failures, sep)
		return r
	}
	r.Message = passMsg
	return r
}

// evaluation holds what one Evaluate call has read, so that eight sshd
// checks parse sshd_config once.
type evaluation struct {
	env       Env
	sshd      lazy[*sshdConfig]
	sysctl    lazy[*sysctlBoot]
	listeners lazy[[]Listener]
	rulesets  lazy[[]Ruleset]
	ipsec     lazy[*ipsecConfig]
	wireguard lazy[[]WireGuardInterface]
	dpkg      lazy[map[string][]dpkgPackage]
	passwd    lazy[[]passwdEntry]
	buf       []byte // for hashing
}

// lazy computes a value once per evaluation. Evaluate is sequential, so no
// locking is needed.
type lazy[T any] struct {
	done bool
	v    T
	err  error
}

func (l *lazy[T]) get(f func() (T, error)) (T, error) {
	if !l.done {
		l.v, l.err = f()
		l.done = true
	}
	return l.v, l.err
}

func (ev *evaluation) run(ctx context.Context, c *Check) Result {
	switch c.Type {
	case TypeSSHD:
		return ev.checkSSHD(c)
	case TypeSysctl:
		return ev.checkSysctl(ctx, c)
	case TypeFirewall:
		if len(c.DefaultPolicies) > 0 {
			return ev.checkFirewallPolicies(ctx, c)
		}
		return ev.checkListeners(ctx, c)
	case TypeTunnels:
		switch {
		case len(c.ForbiddenAlgorithms) > 0:
			return ev.checkProposals(c)
		case c.ForbidAggressive:
			return ev.checkAggressive(c)
		case c.MaxKeyAge > 0:
			return ev.checkKeyAge(ctx, c)
		default:
			return ev.checkPSK(ctx, c)
		}
	case TypePackages:
		return ev.checkPackages(c)
	case TypeIntegrity:
		switch {
		case len(c.UID0Allowed) > 0:
			return ev.checkUID0(c)
		case len(c.AuthorizedKeys) > 0:
			return ev.checkAuthorizedKeys(c)
		default:
			return ev.checkFiles(c)
		}
	}
	return c.result(StatusError, fmt.Sprintf("unknown check type %q", c.Type))
}

// Change is a check that went from pass to fail between two reports.
type Change struct {
	ID       string             `json:"id"`
	Title    string             `json:"title"`
	Type     CheckType          `json:"type"`
	Severity indicator.Severity `json:"severity"`
	// Kind is the indicator this drift becomes: integrity_violation for
	// integrity checks, baseline_drift for the others.
	Kind     indicator.Kind `json:"kind"`
	From     Status         `json:"from"`
	To       Status         `json:"to"`
	Evidence []Evidence     `json:"evidence,omitempty"`
	Message  string         `json:"message,omitempty"`
}

// Diff lists the checks that passed in prev and fail in r, in r's order.
// Checks absent from prev, and any other transition (a check that cannot be
// evaluated, a fix, a failure that persists), are not drift.
func (r Report) Diff(prev Report) []Change {
	before := make(map[string]Status, len(prev.Results))
	for _, res := range prev.Results {
		before[res.ID] = res.Status
	}
	var out []Change
	for _, res := range r.Results {
		if before[res.ID] != StatusPass || res.Status != StatusFail {
			continue
		}
		kind := indicator.BaselineDrift
		if res.Type == TypeIntegrity {
			kind = indicator.IntegrityViolation
		}
		out = append(out, Change{
			ID: res.ID, Title: res.Title, Type: res.Type, Severity: res.Severity, Kind: kind,
			From: StatusPass, To: StatusFail, Evidence: res.Evidence, Message: res.Message,
		})
	}
	return out
}

// Indicator turns a drift into the indicator the controller ingests. The
// verdict is deterministic, hence confidence 1; new hashes seen by an
// integrity check become observables.
func (c Change) Indicator(gateway string, observedAt time.Time) indicator.Indicator {
	in := indicator.Indicator{
		Kind:       c.Kind,
		Gateway:    gateway,
		Severity:   c.Severity,
		Confidence: 1,
		ObservedAt: observedAt,
		Source:     "warden-baseline",
		Summary:    fmt.Sprintf("baseline check %s failed: %s", c.ID, c.Title),
		Labels:     map[string]string{"check": c.ID, "check_type": string(c.Type)},
	}
	if c.Kind == indicator.IntegrityViolation {
		for _, e := range c.Evidence {
			// Only hashes that differ from the recorded ones: the evidence
			// also lists files that did not change, and a known-good hash
			// must never become an indicator of compromise.
			if h, ok := strings.CutPrefix(e.Value, "sha256:"); ok && e.Value != e.Expected {
				in.Observables.Hashes = append(in.Observables.Hashes, h)
			}
		}
	}
	// The default fingerprint ignores labels, which would fold two different
	// checks drifting on one gateway into one alert.
	h := sha256.New()
	for _, s := range append([]string{gateway, string(c.Kind), in.Source, c.ID}, in.Observables.Hashes...) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	in.Fingerprint = hex.EncodeToString(h.Sum(nil))[:32]
	return in
}
