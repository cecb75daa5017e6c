package intake

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
)

// SourceFalco is the Source of indicators decoded from Falco events.
const SourceFalco = "falco"

// Ignored record types of DecodeFalco.
const (
	// ignoredFalcoInternal: Falco's own records (source "internal", rules
	// named "Falco internal: …": syscall event drops, metrics snapshots).
	ignoredFalcoInternal = "internal"
	// ignoredFalcoTest: falcosidekick's "Test rule" event (POST /test).
	ignoredFalcoTest = "test"
	// ignoredFalcoNoRule: an object with no rule is not an alert.
	ignoredFalcoNoRule = "no_rule"
)

// falcoTestRule is the rule of the event falcosidekick's /test handler sends.
const falcoTestRule = "Test rule"

// FalcoMapping says how Falco events map onto indicators. The zero value
// plus WithDefaults is a sensible setup.
type FalcoMapping struct {
	// RuleKinds maps a rule name, exactly as Falco writes it ("Write below
	// etc"), to a kind; it wins over tags. WithDefaults merges these over
	// DefaultFalcoRuleKinds; map a rule to "" to switch a default off.
	RuleKinds map[string]string `mapstructure:"rule_kinds" json:"rule_kinds,omitempty" yaml:"rule_kinds,omitempty"`
	// TagKinds maps a rule tag to a kind: MITRE technique tags ("T1048",
	// "T1110.001" falling back to "T1110") are tried first, then the other
	// tags ("mitre_exfiltration") in the event's order. Merged over
	// DefaultFalcoTagKinds; "" switches a default off.
	TagKinds map[string]string `mapstructure:"tag_kinds" json:"tag_kinds,omitempty" yaml:"tag_kinds,omitempty"`
	// Confidence of every indicator, in (0, 1]. 0 means 0.8.
	Confidence float64 `mapstructure:"confidence" json:"confidence,omitempty" yaml:"confidence,omitempty"`
}

// DefaultFalcoRuleKinds returns the rules of Falco's default rule files
// (falcosecurity/rules) that Warden maps by name. A fresh map each call.
func DefaultFalcoRuleKinds() map[string]string {
	return map[string]string{
		"Write below etc":                                          string(indicator.ConfigTamper),
		"Terminal shell in container":                              string(indicator.ConfigTamper),
		"Schedule Cron Jobs":                                       string(indicator.ConfigTamper),
		"Modify Shell Configuration File":                          string(indicator.ConfigTamper),
		"Update Package Repository":                                string(indicator.ConfigTamper),
		"Clear Log Activities":                                     string(indicator.ConfigTamper),
		"Delete or rename shell history":                           string(indicator.ConfigTamper),
		"Write below root":                                         string(indicator.IntegrityViolation),
		"Write below binary dir":                                   string(indicator.IntegrityViolation),
		"Modify binary dirs":                                       string(indicator.IntegrityViolation),
		"Mkdir binary dirs":                                        string(indicator.IntegrityViolation),
		"Create Symlink Over Sensitive Files":                      string(indicator.IntegrityViolation),
		"Create Hardlink Over Sensitive Files":                     string(indicator.IntegrityViolation),
		"Linux Kernel Module Injection Detected":                   string(indicator.IntegrityViolation),
		"Drop and execute new binary in container":                 string(indicator.IntegrityViolation),
		"Outbound Connection to C2 Servers":                        string(indicator.C2Beacon),
		"Redirect STDOUT/STDIN to Network Connection in Container": string(indicator.C2Beacon),
		"Netcat Remote Code Execution in Container":                string(indicator.C2Beacon),
		"Detect outbound connections to common miner pool ports":   string(indicator.C2Beacon),
		"Unexpected outbound connection destination":               string(indicator.UnknownDestination),
		"Disallowed SSH Connection":                                string(indicator.UnknownDestination),
		"Disallowed SSH Connection Non Standard Port":              string(indicator.UnknownDestination),
	}
}

// DefaultFalcoTagKinds returns the tags Warden maps: the MITRE techniques of
// DefaultWazuhMitreKinds and two of Falco's mitre_* tactic tags. A fresh
// map each call.
func DefaultFalcoTagKinds() map[string]string {
	kinds := DefaultWazuhMitreKinds()
	kinds["mitre_command_and_control"] = string(indicator.C2Beacon)
	kinds["mitre_exfiltration"] = string(indicator.Exfiltration)
	return kinds
}

// WithDefaults merges RuleKinds and TagKinds over their defaults and fills
// the confidence. Entries mapped to "" are kept (they switch a default
// off), so applying WithDefaults twice gives the same mapping. It does not
// change m.
func (m FalcoMapping) WithDefaults() FalcoMapping {
	m.RuleKinds = mergeKeyed(DefaultFalcoRuleKinds(), m.RuleKinds, strings.ToLower)
	m.TagKinds = mergeKeyed(DefaultFalcoTagKinds(), m.TagKinds, strings.ToLower)
	if m.Confidence == 0 {
		m.Confidence = DefaultDetectorConfidence
	}
	return m
}

// Validate reports kind map entries naming an unknown kind, an empty rule
// name or tag, and a confidence outside (0, 1], checking m as WithDefaults
// completes it.
func (m FalcoMapping) Validate() error {
	d := m.WithDefaults()
	nonEmpty := func(key string) string {
		if strings.TrimSpace(key) == "" {
			return "is empty"
		}
		return ""
	}
	if err := validateMap("rule_kinds", d.RuleKinds, join, nonEmpty, unknownKind); err != nil {
		return err
	}
	if err := validateMap("tag_kinds", d.TagKinds, join, nonEmpty, unknownKind); err != nil {
		return err
	}
	return validateConfidence(d.Confidence)
}

// DecodeFalco reads Falco events and returns an Item per alert, in order,
// and the count of records that are not alerts.
//
// The body is Falco's json_output (time, rule, priority, output,
// output_fields, hostname, source, tags), one event per line or
// concatenated, as the file, program and http outputs write it; or the
// body of falcosidekick's webhook output, which POSTs one event per
// request with a uuid added (types.FalcoPayload); or a JSON array of
// events. Falco's own records are counted in Ignored, not decoded: source
// "internal" or a rule named "Falco internal: …" (syscall event drops,
// metrics) as "internal", falcosidekick's "Test rule" as "test", an object
// without a rule as "no_rule".
//
// Errors and skipped records are as for DecodeWazuh, with paths like
// "events[2].priority".
//
// Gateway: hostname (the host Falco runs on), else output_fields
// evt.hostname, else the first of output_fields fd.lip, fd.sip, fd.cip,
// fd.rip that is a gateway's address. Kind: rule name, else tags (see
// FalcoMapping). Severity from priority: Emergency, Alert, Critical →
// critical; Error → high; Warning → medium; Notice, Informational, Debug →
// low; absent or unknown → medium. Summary: the rule name and the output
// without its leading "time: Priority"; observables from the fd.* addresses
// (a gateway's own is not one) and fd.sip.name / fd.rip.name.
func DecodeFalco(body []byte, inv *inventory.Inventory, m FalcoMapping, now time.Time) (Decoded, error) {
	m = m.WithDefaults()
	if inv == nil {
		inv = &inventory.Inventory{}
	}
	return decodeDetectorBody(body, "events", func(i int, rec jsonRecord) (Item, string, bool) {
		return decodeFalcoRecord(i, rec, inv, &m, now)
	})
}

// falcoEvent is what Warden reads of one Falco event.
type falcoEvent struct {
	time     time.Time
	rule     string
	hasRule  bool
	priority string
	output   string
	hostname string
	source   string
	tags     []string
	uuid     string
	// fields are the string values of output_fields; other types are
	// left out (output_fields holds whatever each rule's output names).
	fields map[string]string
}

// falcoAddressFields are the output_fields that hold addresses, in the
// order they are tried for the gateway: the local end first (Falco runs on
// the host), then server, client and remote.
var falcoAddressFields = []string{"fd.lip", "fd.sip", "fd.cip", "fd.rip"}

// decodeFalcoRecord maps one record, as decodeWazuhRecord does.
func decodeFalcoRecord(i int, rec jsonRecord, inv *inventory.Inventory, m *FalcoMapping, now time.Time) (Item, string, bool) {
	item := recordItem(i, rec, SourceFalco, now)
	in := &item.Indicator

	path := fmt.Sprintf("events[%d]", i)
	if rec.raw == nil {
		item.skip(syntaxError(path, rec.err))
		return item, "", true
	}
	e, err := parseFalcoEvent(rec.raw, path)
	if err != nil {
		item.skip(err)
		return item, "", true
	}
	switch {
	case strings.EqualFold(e.source, "internal") || strings.HasPrefix(e.rule, "Falco internal"):
		return item, ignoredFalcoInternal, false
	case e.rule == falcoTestRule:
		return item, ignoredFalcoTest, false
	case strings.TrimSpace(e.rule) == "":
		return item, ignoredFalcoNoRule, false
	}

	if !e.time.IsZero() {
		in.ObservedAt = e.time
	}
	in.Severity = falcoSeverity(e.priority)
	in.Confidence = m.Confidence
	in.Summary = falcoSummary(&e)
	in.Labels = falcoLabels(&e)

	cands := []gatewayCandidate{{"hostname", e.hostname}, {"output_fields.evt.hostname", e.fields["evt.hostname"]}}
	var ips []string
	for _, f := range falcoAddressFields {
		cands = append(cands, gatewayCandidate{"output_fields." + f, e.fields[f]})
		ips = append(ips, e.fields[f])
	}
	gw, noGateway := gatewayFromCandidates(inv, cands)
	in.Gateway = gw
	kind, noKind := m.kind(&e)
	in.Kind = kind
	in.Observables = detectorObservables(inv, ips, []string{e.fields["fd.sip.name"], e.fields["fd.rip.name"]}, nil)
	finishItem(&item, now, noGateway, noKind)
	return item, "", true
}

func parseFalcoEvent(raw json.RawMessage, path string) (falcoEvent, error) {
	var e falcoEvent
	err := decodeObject(raw, path, false, func(key string, val json.RawMessage, field string) (err error) {
		switch key {
		case "time":
			e.time, err = decodeTime(val, field)
		case "rule":
			e.rule, err = decodeString(val, field)
			e.hasRule = true
		case "priority":
			e.priority, err = decodeString(val, field)
		case "output":
			e.output, err = decodeString(val, field)
		case "hostname":
			e.hostname, err = decodeString(val, field)
		case "source":
			e.source, err = decodeString(val, field)
		case "tags":
			e.tags, err = decodeStringList(val, field)
		case "uuid":
			e.uuid, err = decodeString(val, field)
		case "output_fields":
			e.fields, err = falcoStringFields(val, field)
		}
		return err
	})
	return e, err
}

// falcoStringFields keeps the string values of output_fields.
func falcoStringFields(raw json.RawMessage, path string) (map[string]string, error) {
	ms, err := readMembers(raw, path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, mem := range ms {
		if jsonKind(mem.val) != "string" {
			continue
		}
		s, err := decodeString(mem.val, join(path, mem.key))
		if err != nil {
			return nil, err
		}
		out[mem.key] = s
	}
	return out, nil
}

// falcoSeverity maps Falco's priorities (syslog's levels) onto Warden's.
func falcoSeverity(p string) indicator.Severity {
	switch strings.ToLower(strings.TrimSpace(p)) {
	case "emergency", "alert", "critical":
		return indicator.Critical
	case "error":
		return indicator.High
	case "notice", "informational", "info", "debug":
		return indicator.Low
	}
	return indicator.Medium // warning, absent, unknown
}

// kind tries the rule name, then the MITRE technique tags, then the other
// tags.
func (m *FalcoMapping) kind(e *falcoEvent) (indicator.Kind, string) {
	k, via := m.RuleKinds[strings.ToLower(e.rule)], "rule "+e.rule
	if k == "" {
		var techniques []string
		for _, t := range e.tags {
			if mitreTechniqueRe.MatchString(strings.ToUpper(t)) {
				techniques = append(techniques, t)
			}
		}
		k, via = mitreKind(m.TagKinds, techniques)
	}
	for _, t := range e.tags {
		if k != "" {
			break
		}
		k, via = m.TagKinds[strings.ToLower(t)], "tag "+t
	}
	if k == "" {
		reason := fmt.Sprintf("no usable kind: rule %q", clip(e.rule, 96))
		if len(e.tags) > 0 {
			reason += " and tags " + clip(strings.Join(e.tags, ","), 128)
		}
		return "", reason + " not mapped"
	}
	if !indicator.Kind(k).Valid() {
		return "", fmt.Sprintf("no usable kind: %s maps to unknown kind %q", clip(via, 96), clip(k, 64))
	}
	return indicator.Kind(k), ""
}

// falcoOutputHead matches the "13:44:05.478445995: Critical " (or ISO 8601
// time) that Falco puts before every output.
var falcoOutputHead = regexp.MustCompile(`^\S+: (?i:emergency|alert|critical|error|warning|notice|informational|info|debug) `)

func falcoSummary(e *falcoEvent) string {
	out := falcoOutputHead.ReplaceAllString(strings.TrimSpace(e.output), "")
	switch {
	case out == "":
		return oneLine(e.rule)
	case strings.HasPrefix(out, e.rule):
		return oneLine(out)
	}
	return oneLine(e.rule + ": " + out)
}

func falcoLabels(e *falcoEvent) map[string]string {
	labels := labelSet{}
	set := func(k, v string) { labels.set(k, strings.TrimSpace(v)) }
	set("rule", e.rule)
	set("priority", e.priority)
	set("falco_source", e.source)
	set("tags", strings.Join(slices.Sorted(slices.Values(e.tags)), ","))
	set("hostname", e.hostname)
	set("uuid", e.uuid)
	for _, f := range []string{"container.id", "proc.name", "user.name", "fd.name"} {
		set(f, e.fields[f])
	}
	return labels
}
