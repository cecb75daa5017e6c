package baseline

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/warden-ir/warden/internal/yamlnode"
)

// defaultFiles holds the shipped baselines.
//
//go:embed default/*.yaml
var defaultFiles embed.FS

// DefaultPath is the shipped gateway baseline inside the embedded files.
const DefaultPath = "default/gateway.yaml"

// Default loads the shipped gateway baseline.
func Default() (*Baseline, error) { return Load(defaultFiles, DefaultPath) }

// LoadFile loads a baseline from a file on disk.
func LoadFile(name string) (*Baseline, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("reading baseline %s: %w", name, err)
	}
	return Parse(name, data)
}

// Load loads a baseline from fsys at the slash-separated path p.
func Load(fsys fs.FS, p string) (*Baseline, error) {
	data, err := fs.ReadFile(fsys, p)
	if err != nil {
		return nil, fmt.Errorf("reading baseline %s: %w", p, err)
	}
	return Parse(p, data)
}

// Parse decodes and validates one baseline document. Decoding is strict:
// an unknown key, a parameter that does not belong to the check's type, a
// duplicate id or an invalid value is an error naming file and line. Every
// problem found is reported, joined.
func Parse(file string, data []byte) (*Baseline, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var b Baseline
	if err := dec.Decode(&b); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty baseline", file)
		}
		return nil, yamlError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: a baseline file holds exactly one YAML document", file)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(file, err)
	}
	b.File = file
	items := yamlnode.Sequence(&root, "checks")
	var errs []error
	if strings.TrimSpace(b.Name) == "" {
		errs = append(errs, fmt.Errorf("%s: name is required", file))
	}
	if len(b.Checks) == 0 {
		errs = append(errs, fmt.Errorf("%s: checks: at least one check is required", file))
	}
	seen := map[string]int{}
	for i := range b.Checks {
		c := &b.Checks[i]
		c.File = file
		var keys []keyAt
		if i < len(items) {
			c.Line = items[i].Line
			keys = mappingKeys(items[i])
		}
		if prev, dup := seen[c.ID]; dup && c.ID != "" {
			errs = append(errs, fmt.Errorf("%s:%d: check %q: duplicate id, first defined at line %d", file, c.Line, c.ID, prev))
		}
		seen[c.ID] = c.Line
		errs = append(errs, validateCheck(c, keys)...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &b, nil
}

type keyAt struct {
	name string
	line int
}

func mappingKeys(n *yaml.Node) []keyAt {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	var out []keyAt
	for i := 0; i+1 < len(n.Content); i += 2 {
		out = append(out, keyAt{n.Content[i].Value, n.Content[i].Line})
	}
	return out
}

var commonKeys = []string{"id", "title", "rationale", "severity", "type", "profile_override", "remediation"}

// typeKeys lists the parameters each type accepts.
var typeKeys = map[CheckType][]string{
	TypeSSHD:      {"option", "one_of", "max", "min", "allowed_algorithms"},
	TypeSysctl:    {"keys", "one_of", "require_boot"},
	TypeFirewall:  {"default_policies", "families", "allowed_listeners", "allow_loopback"},
	TypeTunnels:   {"forbidden_algorithms", "forbid_aggressive", "max_key_age", "require_psk"},
	TypePackages:  {"minimum_versions"},
	TypeIntegrity: {"uid0_allowed", "authorized_keys", "files"},
}

var (
	idPattern     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	optionPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*$`)
	sysctlPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:/@-]*$`)
	pkgPattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
)

func validateCheck(c *Check, keys []keyAt) []error {
	var errs []error
	add := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: check %q: %s", c.File, line, c.ID, fmt.Sprintf(format, args...)))
	}
	if !idPattern.MatchString(c.ID) {
		add(c.Line, "id must be lower-case letters, digits and dashes")
	}
	if strings.TrimSpace(c.Title) == "" {
		add(c.Line, "title is required")
	}
	if strings.TrimSpace(c.Rationale) == "" {
		add(c.Line, "rationale is required: say why the check exists")
	}
	if c.Severity.Rank() == 0 {
		add(c.Line, "severity %q is not one of low, medium, high, critical", c.Severity)
	}
	allowed, known := typeKeys[c.Type]
	if !known {
		add(c.Line, "type %q is not one of sshd, sysctl, firewall, tunnels, packages, integrity", c.Type)
		return errs
	}
	for _, k := range keys {
		if !slices.Contains(commonKeys, k.name) && !slices.Contains(allowed, k.name) {
			add(k.line, "%q is not a parameter of type %s (it takes: %s)", k.name, c.Type, strings.Join(allowed, ", "))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	if o := c.ProfileOverride; o != nil && (strings.TrimSpace(o.Benchmark) == "" || strings.TrimSpace(o.Rationale) == "") {
		add(c.Line, "profile_override needs both benchmark and rationale")
	}
	if r := c.Remediation; r != nil {
		switch {
		case r.Safe && c.Type != TypeSysctl:
			add(c.Line, "remediation.safe: only sysctl remediations are applied automatically")
		case r.Safe && !slices.Contains(c.OneOf, r.Value):
			add(c.Line, "remediation.value %q must be one of one_of %v", r.Value, c.OneOf)
		case !r.Safe && r.Value != "":
			add(c.Line, "remediation.value is only used by a safe remediation")
		}
		if strings.TrimSpace(r.Description) == "" {
			add(c.Line, "remediation.description is required")
		}
	}
	for _, msg := range checkParams(c) {
		add(c.Line, "%s", msg)
	}
	return errs
}

// exactlyOne reports a problem unless exactly one of the named parameters is
// set.
func exactlyOne(set map[string]bool) string {
	var on, all []string
	for name, v := range set {
		all = append(all, name)
		if v {
			on = append(on, name)
		}
	}
	sort.Strings(on)
	sort.Strings(all)
	switch len(on) {
	case 1:
		return ""
	case 0:
		return "needs one of " + strings.Join(all, ", ")
	}
	return "takes only one of " + strings.Join(on, ", ")
}

func checkParams(c *Check) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	switch c.Type {
	case TypeSSHD:
		if !optionPattern.MatchString(c.Option) {
			bad("option must be an sshd_config keyword")
		}
		if m := exactlyOne(map[string]bool{"one_of": len(c.OneOf) > 0, "max/min": c.Max != nil || c.Min != nil, "allowed_algorithms": len(c.AllowedAlgorithms) > 0}); m != "" {
			bad("%s", m)
		}
		if len(c.AllowedAlgorithms) > 0 {
			if _, ok := sshAlgorithmDefaults[strings.ToLower(c.Option)]; !ok {
				bad("allowed_algorithms applies to Ciphers, MACs and KexAlgorithms, not %s", c.Option)
			}
		}
	case TypeSysctl:
		if len(c.Keys) == 0 {
			bad("keys: at least one sysctl key is required")
		}
		for _, k := range c.Keys {
			if !sysctlPattern.MatchString(k) || strings.ContainsAny(k, "*?[") {
				bad("keys: %q is not a sysctl name", k)
			}
		}
		if len(c.OneOf) == 0 {
			bad("one_of: at least one acceptable value is required")
		}
	case TypeFirewall:
		if m := exactlyOne(map[string]bool{"default_policies": len(c.DefaultPolicies) > 0, "allowed_listeners": len(c.AllowedListeners) > 0}); m != "" {
			bad("%s", m)
		}
		for hook, pol := range c.DefaultPolicies {
			if !slices.Contains([]string{"input", "forward", "output"}, hook) {
				bad("default_policies: hook %q is not input, forward or output", hook)
			}
			if pol != "drop" && pol != "accept" {
				bad("default_policies.%s: policy %q is not drop or accept", hook, pol)
			}
		}
		for _, f := range c.Families {
			if f != "ipv4" && f != "ipv6" {
				bad("families: %q is not ipv4 or ipv6", f)
			}
		}
		if len(c.Families) > 0 && len(c.DefaultPolicies) == 0 {
			bad("families only applies to default_policies")
		}
		if c.AllowLoopback && len(c.AllowedListeners) == 0 {
			bad("allow_loopback only applies to allowed_listeners")
		}
		for i, l := range c.AllowedListeners {
			if l.Proto != "tcp" && l.Proto != "udp" {
				bad("allowed_listeners[%d]: proto %q is not tcp or udp", i, l.Proto)
			}
			if len(l.Ports) == 0 {
				bad("allowed_listeners[%d]: ports are required", i)
			}
			for _, p := range l.Ports {
				if p < 1 || p > 65535 {
					bad("allowed_listeners[%d]: port %d is out of range", i, p)
				}
			}
			for _, a := range l.Addresses {
				if a == "any" || a == "management" {
					continue
				}
				if _, err := parsePrefixOrAddr(a); err != nil {
					bad("allowed_listeners[%d]: address %q is not any, management, an address or a CIDR", i, a)
				}
			}
		}
	case TypeTunnels:
		if m := exactlyOne(map[string]bool{"forbidden_algorithms": len(c.ForbiddenAlgorithms) > 0, "forbid_aggressive": c.ForbidAggressive, "max_key_age": c.MaxKeyAge > 0, "require_psk": c.RequirePSK}); m != "" {
			bad("%s", m)
		}
	case TypePackages:
		if len(c.MinimumVersions) == 0 {
			bad("minimum_versions: at least one package is required")
		}
		for name, v := range c.MinimumVersions {
			if !pkgPattern.MatchString(name) {
				bad("minimum_versions: %q is not a Debian package name", name)
			}
			if _, err := ParseDebianVersion(v); err != nil {
				bad("minimum_versions.%s: %v", name, err)
			}
		}
	case TypeIntegrity:
		if m := exactlyOne(map[string]bool{"uid0_allowed": len(c.UID0Allowed) > 0, "authorized_keys": len(c.AuthorizedKeys) > 0, "files": len(c.Files) > 0}); m != "" {
			bad("%s", m)
		}
		for _, f := range c.Files {
			if !path.IsAbs(f) || path.Clean(f) != f {
				bad("files: %q must be an absolute, clean path", f)
			}
			if _, err := path.Match(f, ""); err != nil {
				bad("files: %q: %v", f, err)
			}
		}
		for _, u := range append(slices.Clone(c.AuthorizedKeys), c.UID0Allowed...) {
			if u == "" || strings.ContainsAny(u, ":/ \t\n") {
				bad("user %q is not an account name", u)
			}
		}
	}
	return out
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
var yamlUnknown = regexp.MustCompile(`^field (\S+) not found in type \S+$`)

// yamlError rewrites yaml.v3's messages as "file:line: what".
func yamlError(file string, err error) error {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	errs := make([]error, 0, len(msgs))
	for _, msg := range msgs {
		m := yamlLine.FindStringSubmatch(msg)
		if m == nil {
			errs = append(errs, fmt.Errorf("%s: %s", file, strings.TrimPrefix(msg, "yaml: ")))
			continue
		}
		what := m[2]
		if u := yamlUnknown.FindStringSubmatch(what); u != nil {
			what = fmt.Sprintf("unknown key %q", u[1])
		}
		errs = append(errs, fmt.Errorf("%s:%s: %s", file, m[1], what))
	}
	return errors.Join(errs...)
}
