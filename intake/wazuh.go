package intake

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
)

// SourceWazuh is the Source of indicators decoded from Wazuh alerts.
const SourceWazuh = "wazuh"

// Wazuh rule levels run from 0 to 16 (ossec.conf <integration><level>
// accepts "any alert level from 0 to 16").
const maxWazuhLevel = 16

// Default level thresholds, as the Wazuh dashboard groups levels: 0–6 low,
// 7–11 medium, 12–14 high, 15 and up critical.
const (
	defaultWazuhMediumLevel   = 7
	defaultWazuhHighLevel     = 12
	defaultWazuhCriticalLevel = 15
)

// Ignored record types of DecodeWazuh.
const (
	ignoredWazuhARDelete  = "active_response_delete"
	ignoredWazuhARControl = "active_response_control"
)

// WazuhMapping says how Wazuh alerts map onto indicators. The zero value
// plus WithDefaults is a sensible setup.
type WazuhMapping struct {
	// RuleIDKinds maps a rule id ("5712") to a kind; it wins over groups
	// and MITRE. WithDefaults merges these over DefaultWazuhRuleIDKinds;
	// map an id to "" to switch a default off.
	RuleIDKinds map[string]string `mapstructure:"rule_id_kinds" json:"rule_id_kinds,omitempty" yaml:"rule_id_kinds,omitempty"`
	// RuleGroupKinds maps a rule group ("syscheck") or a combination of
	// two or three groups that must all be present
	// ("sshd+authentication_failed", in any order) to a kind. Combinations
	// are tried first, three groups before two. Merged over
	// DefaultWazuhRuleGroupKinds; "" switches a default off.
	RuleGroupKinds map[string]string `mapstructure:"rule_group_kinds" json:"rule_group_kinds,omitempty" yaml:"rule_group_kinds,omitempty"`
	// MitreKinds maps a MITRE ATT&CK technique ("T1110") to a kind; a
	// sub-technique ("T1110.001") falls back to its technique. Merged over
	// DefaultWazuhMitreKinds; "" switches a default off.
	MitreKinds map[string]string `mapstructure:"mitre_kinds" json:"mitre_kinds,omitempty" yaml:"mitre_kinds,omitempty"`
	// ConfigPaths are path prefixes under which a file-integrity change
	// (kind integrity_violation with a syscheck.path) is a config_tamper:
	// on a gateway, /etc holds the tunnel, firewall and sshd configuration.
	// nil means ["/etc/"]; an empty list turns the refinement off.
	ConfigPaths []string `mapstructure:"config_paths" json:"config_paths,omitempty" yaml:"config_paths,omitempty"`
	// MediumLevel, HighLevel and CriticalLevel are the lowest rule levels
	// of each severity; below MediumLevel is low. 0 means the default
	// (7, 12, 15: the Wazuh dashboard's grouping).
	MediumLevel   int `mapstructure:"medium_level" json:"medium_level,omitempty" yaml:"medium_level,omitempty"`
	HighLevel     int `mapstructure:"high_level" json:"high_level,omitempty" yaml:"high_level,omitempty"`
	CriticalLevel int `mapstructure:"critical_level" json:"critical_level,omitempty" yaml:"critical_level,omitempty"`
	// Confidence of every indicator, in (0, 1]. 0 means 0.8.
	Confidence float64 `mapstructure:"confidence" json:"confidence,omitempty" yaml:"confidence,omitempty"`
}

// DefaultWazuhRuleIDKinds returns the rules of Wazuh's default ruleset that
// Warden maps by id. A fresh map each call.
func DefaultWazuhRuleIDKinds() map[string]string {
	return map[string]string{
		"5712":  string(indicator.BruteForce),         // sshd: brute force trying to get access to the system. Non existent user.
		"5720":  string(indicator.BruteForce),         // sshd: Multiple authentication failures.
		"5763":  string(indicator.BruteForce),         // sshd: brute force trying to get access to the system. Authentication failed.
		"40112": string(indicator.BruteForce),         // Multiple authentication failures followed by a success.
		"550":   string(indicator.IntegrityViolation), // Integrity checksum changed.
		"553":   string(indicator.IntegrityViolation), // File deleted.
		"554":   string(indicator.IntegrityViolation), // File added to the system.
		"510":   string(indicator.IntegrityViolation), // Host-based anomaly detection event (rootcheck).
	}
}

// DefaultWazuhRuleGroupKinds returns the rule groups Warden maps. A fresh
// map each call.
func DefaultWazuhRuleGroupKinds() map[string]string {
	return map[string]string{
		"authentication_failures":    string(indicator.BruteForce),
		"sshd+authentication_failed": string(indicator.BruteForce),
		"syscheck":                   string(indicator.IntegrityViolation),
		"rootcheck":                  string(indicator.IntegrityViolation),
	}
}

// DefaultWazuhMitreKinds returns the ATT&CK techniques Warden maps. Shared
// by Falco, whose rules tag them. A fresh map each call.
func DefaultWazuhMitreKinds() map[string]string {
	return map[string]string{
		"T1110": string(indicator.BruteForce),         // Brute Force
		"T1071": string(indicator.C2Beacon),           // Application Layer Protocol
		"T1095": string(indicator.C2Beacon),           // Non-Application Layer Protocol
		"T1571": string(indicator.C2Beacon),           // Non-Standard Port
		"T1572": string(indicator.C2Beacon),           // Protocol Tunneling
		"T1573": string(indicator.C2Beacon),           // Encrypted Channel
		"T1041": string(indicator.Exfiltration),       // Exfiltration Over C2 Channel
		"T1048": string(indicator.Exfiltration),       // Exfiltration Over Alternative Protocol
		"T1567": string(indicator.Exfiltration),       // Exfiltration Over Web Service
		"T1562": string(indicator.ConfigTamper),       // Impair Defenses (.004: disable or modify system firewall)
		"T1070": string(indicator.ConfigTamper),       // Indicator Removal (clearing logs, history)
		"T1014": string(indicator.IntegrityViolation), // Rootkit
	}
}

// WithDefaults fills the level thresholds, the confidence and the config
// paths, and merges each kind map over its defaults. Entries mapped to ""
// are kept (they switch a default off), so applying WithDefaults twice
// gives the same mapping. It does not change m.
func (m WazuhMapping) WithDefaults() WazuhMapping {
	m.RuleIDKinds = mergeKeyed(DefaultWazuhRuleIDKinds(), m.RuleIDKinds, nil)
	m.RuleGroupKinds = mergeKeyed(DefaultWazuhRuleGroupKinds(), m.RuleGroupKinds, nil)
	m.MitreKinds = mergeKeyed(DefaultWazuhMitreKinds(), m.MitreKinds, strings.ToUpper)
	if m.ConfigPaths == nil {
		m.ConfigPaths = []string{"/etc/"}
	}
	if m.MediumLevel == 0 {
		m.MediumLevel = defaultWazuhMediumLevel
	}
	if m.HighLevel == 0 {
		m.HighLevel = defaultWazuhHighLevel
	}
	if m.CriticalLevel == 0 {
		m.CriticalLevel = defaultWazuhCriticalLevel
	}
	if m.Confidence == 0 {
		m.Confidence = DefaultDetectorConfidence
	}
	return m
}

// maxGroupCombination bounds a RuleGroupKinds combination, so that matching
// an alert's groups against them stays cheap.
const maxGroupCombination = 3

var mitreTechniqueRe = regexp.MustCompile(`^T[0-9]{4}(\.[0-9]{3})?$`)

// Validate reports what configuration load must refuse: a kind map entry
// naming an unknown kind, a group combination with an empty part, more
// than three groups or the same groups as another, a MITRE
// key that is not a technique id, level thresholds out of 0..16 or out of
// order, a confidence outside (0, 1]. It checks m as WithDefaults completes
// it, so zero fields are fine.
func (m WazuhMapping) Validate() error {
	d := m.WithDefaults()
	if err := validateMap("rule_id_kinds", d.RuleIDKinds, join, nil, unknownKind); err != nil {
		return err
	}
	if err := validateMap("rule_group_kinds", d.RuleGroupKinds, join, func(key string) string {
		parts := strings.Split(key, "+")
		if slices.Contains(parts, "") {
			return "a group combination has an empty part"
		}
		if len(parts) > maxGroupCombination {
			return fmt.Sprintf("a group combination has more than %d groups", maxGroupCombination)
		}
		return ""
	}, unknownKind); err != nil {
		return err
	}
	seen := map[string]string{}
	for _, key := range slices.Sorted(maps.Keys(d.RuleGroupKinds)) {
		parts := strings.Split(key, "+")
		if len(parts) < 2 {
			continue
		}
		slices.Sort(parts)
		norm := strings.Join(parts, "+")
		if other, dup := seen[norm]; dup {
			return &indicator.FieldError{Field: join("rule_group_kinds", key), Reason: fmt.Sprintf("the same groups as %q", clip(other, 64))}
		}
		seen[norm] = key
	}
	if err := validateMap("mitre_kinds", d.MitreKinds, join, func(key string) string {
		if !mitreTechniqueRe.MatchString(key) {
			return "not a MITRE ATT&CK technique id (T1234 or T1234.001)"
		}
		return ""
	}, unknownKind); err != nil {
		return err
	}
	for _, l := range []struct {
		name  string
		level int
	}{{"medium_level", d.MediumLevel}, {"high_level", d.HighLevel}, {"critical_level", d.CriticalLevel}} {
		if l.level < 0 || l.level > maxWazuhLevel {
			return &indicator.FieldError{Field: l.name, Reason: fmt.Sprintf("must be a Wazuh level 0..%d, got %d", maxWazuhLevel, l.level)}
		}
	}
	if d.MediumLevel > d.HighLevel || d.HighLevel > d.CriticalLevel {
		return &indicator.FieldError{Field: "high_level", Reason: fmt.Sprintf("levels must not decrease: medium %d, high %d, critical %d", d.MediumLevel, d.HighLevel, d.CriticalLevel)}
	}
	return validateConfidence(d.Confidence)
}

// DecodeWazuh reads what Wazuh sends and returns an Item per alert, in
// order, and the count of records that are not alerts.
//
// The body is what the integrator (wazuh-integratord) hands a custom
// integration, POSTed as is: one alert object (timestamp, rule{id, level,
// description, groups, mitre}, agent{id, name, ip}, manager, data{srcip,
// dstip, …}, full_log, location, decoder, syscheck, …); or a JSON array of
// alerts; or a stream of alerts, newline-delimited (alerts.json) or
// concatenated. A record may also be an active-response message (version,
// origin, command, parameters{extra_args, alert, program}): "add" is decoded
// as its parameters.alert; "delete" (the stateful timeout undoing an
// earlier add) and the control messages (check_keys, continue, abort) are
// counted in Ignored.
//
// An error, meant as HTTP 400, is returned only when the body as a whole is
// not such JSON; it is an *indicator.FieldError on "body". A record that
// cannot be understood (not an object, invalid JSON in a line of a stream,
// a field Warden uses with the wrong type or value) is Skipped with a
// Reason naming the field ("alerts[2].rule.level: expected number, got
// string"); the others are decoded as usual. Fields Warden does not use are
// ignored whatever their type.
//
// Gateway: the agent (agent.name, then agent.ip) when it is a gateway of
// inv (a Wazuh agent on the gateway); else predecoder.hostname (a gateway
// sending syslog to the manager); else data.dstip, then data.srcip, when it
// is a gateway's address. Kind: rule id, else rule groups, else MITRE
// techniques (see WazuhMapping); a file-integrity change under a
// ConfigPaths prefix is config_tamper. Severity from rule.level by the
// mapping's thresholds; summary from rule.description; observables from
// data.srcip and data.dstip (a gateway's own address is not one) and
// syscheck.sha256_after. m is completed with WithDefaults, so the zero
// mapping works.
func DecodeWazuh(body []byte, inv *inventory.Inventory, m WazuhMapping, now time.Time) (Decoded, error) {
	m = m.WithDefaults()
	if inv == nil {
		inv = &inventory.Inventory{}
	}
	return decodeDetectorBody(body, "alerts", func(i int, rec jsonRecord) (Item, string, bool) {
		return decodeWazuhRecord(i, rec, inv, &m, now)
	})
}

// wazuhAlert is what Warden reads of one Wazuh alert.
type wazuhAlert struct {
	timestamp   time.Time
	id          string
	ruleID      string
	level       int
	hasLevel    bool
	description string
	groups      []string
	mitre       []string
	agentID     string
	agentName   string
	agentIP     string
	manager     string
	hostname    string // predecoder.hostname: the host that wrote a syslog line
	decoder     string
	location    string
	srcIP       string
	dstIP       string
	fimPath     string
	sha256      string
}

// decodeWazuhRecord maps one record. It never fails: a record that cannot
// be understood is Skipped, one that cannot be used is unmatched. A
// record that is not an alert gives false and its Ignored type.
func decodeWazuhRecord(i int, rec jsonRecord, inv *inventory.Inventory, m *WazuhMapping, now time.Time) (Item, string, bool) {
	item := recordItem(i, rec, SourceWazuh, now)
	in := &item.Indicator
	skip := func(err error) (Item, string, bool) {
		item.skip(err)
		return item, "", true
	}

	path := fmt.Sprintf("alerts[%d]", i)
	raw := rec.raw
	if raw == nil {
		return skip(syntaxError(path, rec.err))
	}
	ms, err := readMembers(raw, path)
	if err != nil {
		return skip(err)
	}
	alertRaw, alertPath := json.RawMessage(raw), path
	if isWazuhARMessage(ms) {
		cmd, alert, err := readWazuhAR(ms, path)
		if err != nil {
			return skip(err)
		}
		switch cmd {
		case "delete":
			return item, ignoredWazuhARDelete, false
		case "check_keys", "continue", "abort":
			return item, ignoredWazuhARControl, false
		}
		alertRaw, alertPath = alert, path+".parameters.alert"
	}
	a, err := parseWazuhAlert(alertRaw, alertPath)
	if err != nil {
		return skip(err)
	}

	if !a.timestamp.IsZero() {
		in.ObservedAt = a.timestamp
	}
	in.Severity = m.severity(a.level)
	in.Confidence = m.Confidence
	in.Summary = wazuhSummary(&a)
	in.Labels = wazuhLabels(&a)

	gw, noGateway := wazuhGateway(&a, inv)
	in.Gateway = gw
	kind, noKind := m.kind(&a)
	in.Kind = kind
	in.Observables = detectorObservables(inv, []string{a.srcIP, a.dstIP}, nil, []string{a.sha256})
	finishItem(&item, now, noGateway, noKind)
	return item, "", true
}

// isWazuhARMessage tells an active-response message from an alert: it
// carries "parameters" and no "rule".
func isWazuhARMessage(ms []member) bool {
	hasParams, hasRule := false, false
	for _, mem := range ms {
		switch mem.key {
		case "parameters":
			hasParams = true
		case "rule":
			hasRule = true
		}
	}
	return hasParams && !hasRule
}

// readWazuhAR reads an active-response message's command and, for "add",
// its parameters.alert.
func readWazuhAR(ms []member, path string) (string, json.RawMessage, error) {
	var cmd string
	var params json.RawMessage
	for _, mem := range ms {
		var err error
		switch mem.key {
		case "command":
			cmd, err = optString(mem.val, join(path, "command"))
		case "parameters":
			params = mem.val
		}
		if err != nil {
			return "", nil, err
		}
	}
	switch cmd {
	case "":
		return "", nil, &indicator.FieldError{Field: join(path, "command"), Reason: "is required"}
	case "delete", "check_keys", "continue", "abort":
		return cmd, nil, nil
	case "add":
	default:
		return "", nil, &indicator.FieldError{Field: join(path, "command"), Reason: fmt.Sprintf("expected add or delete, got %q", clip(cmd, 64))}
	}
	var alert json.RawMessage
	err := decodeObject(params, join(path, "parameters"), false, func(key string, val json.RawMessage, _ string) error {
		if key == "alert" {
			alert = val
		}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	if alert == nil {
		return "", nil, &indicator.FieldError{Field: path + ".parameters.alert", Reason: "is required"}
	}
	return cmd, alert, nil
}

func parseWazuhAlert(raw json.RawMessage, path string) (wazuhAlert, error) {
	var a wazuhAlert
	hasRule := false
	str := func(dst *string) func(string, json.RawMessage, string) error {
		return func(_ string, val json.RawMessage, field string) (err error) {
			*dst, err = decodeString(val, field)
			return err
		}
	}
	fields := func(byKey map[string]func(string, json.RawMessage, string) error) func(string, json.RawMessage, string) error {
		return func(key string, val json.RawMessage, field string) error {
			if f := byKey[key]; f != nil {
				return f(key, val, field)
			}
			return nil
		}
	}
	object := func(byKey map[string]func(string, json.RawMessage, string) error) func(string, json.RawMessage, string) error {
		return func(_ string, val json.RawMessage, field string) error {
			return decodeObject(val, field, false, fields(byKey))
		}
	}
	err := decodeObject(raw, path, false, fields(map[string]func(string, json.RawMessage, string) error{
		"timestamp": func(_ string, val json.RawMessage, field string) (err error) {
			a.timestamp, err = decodeWazuhTime(val, field)
			return err
		},
		"id": func(_ string, val json.RawMessage, field string) (err error) {
			a.id, err = decodeWazuhID(val, field)
			return err
		},
		"rule": func(_ string, val json.RawMessage, field string) error {
			hasRule = true
			return decodeObject(val, field, false, fields(map[string]func(string, json.RawMessage, string) error{
				"id": func(_ string, val json.RawMessage, field string) (err error) {
					a.ruleID, err = decodeWazuhID(val, field)
					return err
				},
				"level": func(_ string, val json.RawMessage, field string) (err error) {
					a.level, err = decodeWazuhLevel(val, field)
					a.hasLevel = err == nil
					return err
				},
				"description": str(&a.description),
				"groups": func(_ string, val json.RawMessage, field string) (err error) {
					a.groups, err = decodeStringList(val, field)
					return err
				},
				"mitre": object(map[string]func(string, json.RawMessage, string) error{
					"id": func(_ string, val json.RawMessage, field string) (err error) {
						a.mitre, err = decodeStringList(val, field)
						return err
					},
				}),
			}))
		},
		"agent": object(map[string]func(string, json.RawMessage, string) error{
			"id": str(&a.agentID), "name": str(&a.agentName), "ip": str(&a.agentIP),
		}),
		"manager":    object(map[string]func(string, json.RawMessage, string) error{"name": str(&a.manager)}),
		"predecoder": object(map[string]func(string, json.RawMessage, string) error{"hostname": str(&a.hostname)}),
		"decoder":    object(map[string]func(string, json.RawMessage, string) error{"name": str(&a.decoder)}),
		"location":   str(&a.location),
		"data":       object(map[string]func(string, json.RawMessage, string) error{"srcip": str(&a.srcIP), "dstip": str(&a.dstIP)}),
		"syscheck":   object(map[string]func(string, json.RawMessage, string) error{"path": str(&a.fimPath), "sha256_after": str(&a.sha256)}),
	}))
	if err != nil {
		return a, err
	}
	if !hasRule {
		return a, &indicator.FieldError{Field: join(path, "rule"), Reason: "is required"}
	}
	return a, nil
}

// decodeWazuhTime reads an alert timestamp: Wazuh writes
// "2021-02-01T20:58:44.830+0000" (no colon in the offset); RFC 3339, as
// other tools re-serialise it, is taken too.
func decodeWazuhTime(raw json.RawMessage, path string) (time.Time, error) {
	s, err := decodeString(raw, path)
	if err != nil {
		return time.Time{}, err
	}
	for _, layout := range []string{"2006-01-02T15:04:05-0700", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, &indicator.FieldError{Field: path, Reason: fmt.Sprintf("expected a time like 2021-02-01T20:58:44.830+0000, got %q", clip(s, 64))}
}

// decodeWazuhID reads a rule or alert id: Wazuh writes a string, the
// dashboard's sample data a number.
func decodeWazuhID(raw json.RawMessage, path string) (string, error) {
	if jsonKind(raw) == "number" {
		f, err := decodeNumber(raw, path)
		if err != nil {
			return "", err
		}
		if f != math.Trunc(f) || math.Abs(f) > 1e15 {
			return "", &indicator.FieldError{Field: path, Reason: "expected an integer id"}
		}
		return strconv.FormatFloat(f, 'f', -1, 64), nil
	}
	return decodeString(raw, path)
}

func decodeWazuhLevel(raw json.RawMessage, path string) (int, error) {
	f, err := decodeNumber(raw, path)
	if err != nil {
		return 0, err
	}
	if f != math.Trunc(f) || f < 0 || f > maxWazuhLevel {
		return 0, &indicator.FieldError{Field: path, Reason: fmt.Sprintf("expected a level 0..%d, got %v", maxWazuhLevel, f)}
	}
	return int(f), nil
}

func (m *WazuhMapping) severity(level int) indicator.Severity {
	switch {
	case level >= m.CriticalLevel:
		return indicator.Critical
	case level >= m.HighLevel:
		return indicator.High
	case level >= m.MediumLevel:
		return indicator.Medium
	}
	return indicator.Low
}

// kind tries the rule id, the rule groups (combinations first, three
// groups before two; then each group in the alert's order) and the MITRE
// techniques (in the alert's order, a sub-technique falling back to its
// technique).
func (m *WazuhMapping) kind(a *wazuhAlert) (indicator.Kind, string) {
	k, via := m.RuleIDKinds[a.ruleID], "rule "+a.ruleID
	if k == "" {
		k, via = groupCombinationKind(m.RuleGroupKinds, a.groups)
	}
	for _, g := range a.groups {
		if k != "" {
			break
		}
		k, via = m.RuleGroupKinds[g], "rule group "+g
	}
	if k == "" {
		k, via = mitreKind(m.MitreKinds, a.mitre)
	}
	if k == "" {
		var tried []string
		if a.ruleID != "" {
			tried = append(tried, "rule "+clip(a.ruleID, 32))
		}
		if len(a.groups) > 0 {
			tried = append(tried, "groups "+clip(strings.Join(a.groups, ","), 128))
		}
		if len(a.mitre) > 0 {
			tried = append(tried, "MITRE "+clip(strings.Join(a.mitre, ","), 64))
		}
		if len(tried) == 0 {
			return "", "no usable kind: the alert has no rule id, groups or MITRE techniques"
		}
		return "", "no usable kind: " + strings.Join(tried, ", ") + " not mapped"
	}
	kind := indicator.Kind(k)
	if !kind.Valid() {
		return "", fmt.Sprintf("no usable kind: %s maps to unknown kind %q", clip(via, 64), clip(k, 64))
	}
	if kind == indicator.IntegrityViolation && a.fimPath != "" && slices.ContainsFunc(m.ConfigPaths, func(p string) bool {
		return p != "" && strings.HasPrefix(a.fimPath, p)
	}) {
		kind = indicator.ConfigTamper
	}
	return kind, ""
}

// groupCombinationKind looks the alert's combinations of two and three
// groups up in kinds, whose combination keys may list their groups in any
// order. It walks the alert's groups (sorted), not the map, so that the
// result and the work done depend on the alert alone.
func groupCombinationKind(kinds map[string]string, groups []string) (string, string) {
	combos := map[string]string{}
	for key, k := range kinds {
		if parts := strings.Split(key, "+"); len(parts) > 1 && k != "" {
			slices.Sort(parts)
			combos[strings.Join(parts, "+")] = k
		}
	}
	if len(combos) == 0 {
		return "", ""
	}
	g := slices.Compact(slices.Sorted(slices.Values(groups)))
	if len(g) > 16 {
		g = g[:16] // an alert has a handful; a hostile one must not cost more
	}
	for i := 0; i < len(g); i++ {
		for j := i + 1; j < len(g); j++ {
			for l := j + 1; l < len(g); l++ {
				if key := g[i] + "+" + g[j] + "+" + g[l]; combos[key] != "" {
					return combos[key], "rule groups " + key
				}
			}
		}
	}
	for i := 0; i < len(g); i++ {
		for j := i + 1; j < len(g); j++ {
			if key := g[i] + "+" + g[j]; combos[key] != "" {
				return combos[key], "rule groups " + key
			}
		}
	}
	return "", ""
}

// mitreKind maps the first technique that has a kind, trying a
// sub-technique ("T1110.001") and then its technique ("T1110").
func mitreKind(kinds map[string]string, techniques []string) (string, string) {
	// Wazuh's table is keyed in upper case, Falco's tag table (tags of
	// every sort) in lower case.
	lookup := func(t string) string {
		if k := kinds[t]; k != "" {
			return k
		}
		return kinds[strings.ToLower(t)]
	}
	for _, t := range techniques {
		t = strings.ToUpper(strings.TrimSpace(t))
		if k := lookup(t); k != "" {
			return k, "MITRE " + t
		}
		if parent, _, ok := strings.Cut(t, "."); ok {
			if k := lookup(parent); k != "" {
				return k, "MITRE " + t
			}
		}
	}
	return "", ""
}

// wazuhGateway tries the agent, the syslog hostname and the addresses in
// the data, in that order.
func wazuhGateway(a *wazuhAlert, inv *inventory.Inventory) (string, string) {
	return gatewayFromCandidates(inv, []gatewayCandidate{
		{"agent.name", a.agentName},
		{"agent.ip", a.agentIP},
		{"predecoder.hostname", a.hostname},
		{"data.dstip", a.dstIP},
		{"data.srcip", a.srcIP},
	})
}

func wazuhSummary(a *wazuhAlert) string {
	if s := oneLine(a.description); s != "" {
		return s
	}
	if a.ruleID != "" {
		return "Wazuh rule " + oneLine(a.ruleID)
	}
	return "Wazuh alert"
}

// wazuhLabels keeps the alert's context for policies and people.
func wazuhLabels(a *wazuhAlert) map[string]string {
	labels := labelSet{}
	set := func(k, v string) { labels.set(k, strings.TrimSpace(v)) }
	set("rule_id", a.ruleID)
	if a.hasLevel {
		set("rule_level", strconv.Itoa(a.level))
	}
	set("rule_groups", strings.Join(a.groups, ","))
	set("mitre_ids", strings.Join(a.mitre, ","))
	set("agent_id", a.agentID)
	set("agent_name", a.agentName)
	set("agent_ip", a.agentIP)
	set("manager", a.manager)
	set("decoder", a.decoder)
	set("location", a.location)
	set("alert_id", a.id)
	set("syscheck_path", a.fimPath)
	if len(labels) == 0 {
		return nil
	}
	return labels
}
