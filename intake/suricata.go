package intake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
)

// SourceSuricata is the Source of indicators decoded from Suricata EVE JSON.
const SourceSuricata = "suricata"

// DefaultSuricataConfidence is an alert's confidence when the mapping sets
// none: a signature match is specific, but signatures misfire.
const DefaultSuricataConfidence = 0.8

// SuricataMapping says how Suricata alerts map onto indicators. The zero
// value plus WithDefaults is a sensible setup.
//
// An alert's kind is the first of: the alert.metadata key MetadataKindKey
// (a rule's "metadata: warden_kind c2_beacon;"), SignatureIDKinds by
// signature_id, the first SignatureRules entry whose text matches the
// signature (the caller's rules, then DefaultSuricataSignatureRules), and
// CategoryKinds by category.
type SuricataMapping struct {
	// MetadataKindKey names the alert.metadata key that states the kind
	// directly. Default "warden_kind".
	MetadataKindKey string `mapstructure:"metadata_kind_key" json:"metadata_kind_key,omitempty" yaml:"metadata_kind_key,omitempty"`
	// SignatureIDKinds maps a signature_id (decimal) to a kind. WithDefaults
	// merges these over DefaultSuricataSignatureIDKinds; map an id to "" to
	// switch it off (its alerts then map to no kind, whatever rule or
	// category would match).
	SignatureIDKinds map[string]string `mapstructure:"signature_id_kinds" json:"signature_id_kinds,omitempty" yaml:"signature_id_kinds,omitempty"`
	// SignatureRules are tried in order before DefaultSuricataSignatureRules;
	// the first that matches decides. A rule with an empty kind matches
	// and maps to nothing: it silences the signatures it matches.
	SignatureRules []SuricataSignatureRule `mapstructure:"signature_rules" json:"signature_rules,omitempty" yaml:"signature_rules,omitempty"`
	// CategoryKinds maps an alert category (classtype description, compared
	// without regard to case) to a kind. WithDefaults merges these over
	// DefaultSuricataCategoryKinds; "" switches a default off.
	CategoryKinds map[string]string `mapstructure:"category_kinds" json:"category_kinds,omitempty" yaml:"category_kinds,omitempty"`
	// Severities maps alert.severity (Suricata's priority: 1 is the most
	// severe) to a Warden severity. WithDefaults merges these over
	// DefaultSuricataSeverities. A priority not listed is low; an alert
	// without one is medium.
	Severities map[string]string `mapstructure:"severities" json:"severities,omitempty" yaml:"severities,omitempty"`
	// Confidence of every alert, in 0..1; 0 means
	// DefaultSuricataConfidence.
	Confidence float64 `mapstructure:"confidence" json:"confidence,omitempty" yaml:"confidence,omitempty"`
}

// SuricataSignatureRule maps the alerts whose signature (the rule's msg)
// contains a text, or matches a regular expression, to a kind.
type SuricataSignatureRule struct {
	// Contains is compared without regard to case.
	Contains string `mapstructure:"contains" json:"contains,omitempty" yaml:"contains,omitempty"`
	// Regex is RE2 syntax (Go's regexp), unanchored.
	Regex string `mapstructure:"regex" json:"regex,omitempty" yaml:"regex,omitempty"`
	// Kind the matching alerts map to; "" maps them to nothing.
	Kind string `mapstructure:"kind" json:"kind" yaml:"kind"`
	// Severity, when set, replaces the one from alert.severity.
	Severity string `mapstructure:"severity" json:"severity,omitempty" yaml:"severity,omitempty"`
}

// DefaultSuricataSignatureIDKinds returns the signature ids Warden maps out
// of the box: the IKE app-layer rules of Suricata's own rule set
// (rules/ipsec-events.rules) that fire when a responder chooses weak or no
// protection, sids 2224002–2224008. They map to baseline_drift: the gateway
// negotiated IPsec proposals its hardened baseline forbids, which is what
// verify_baseline checks and the baseline policy remediates. A fresh map
// each call.
func DefaultSuricataSignatureIDKinds() map[string]string {
	drift := string(indicator.BaselineDrift)
	return map[string]string{
		"2224002": drift, // SURICATA IKE weak cryptographic parameters (Encryption)
		"2224003": drift, // SURICATA IKE weak cryptographic parameters (PRF)
		"2224004": drift, // SURICATA IKE weak cryptographic parameters (Auth)
		"2224005": drift, // SURICATA IKE weak cryptographic parameters (Diffie-Hellman)
		"2224006": drift, // SURICATA IKE no Diffie-Hellman exchange parameters
		"2224007": drift, // SURICATA IKE no authentication
		"2224008": drift, // SURICATA IKE no encryption (AH)
	}
}

// DefaultSuricataSignatureRules returns the signature rules tried after the
// mapping's own: IKE weak-crypto rules copied under other sids, command and
// control ("CnC", "C2" as a word: Emerging Threats' naming) and brute force.
func DefaultSuricataSignatureRules() []SuricataSignatureRule {
	return []SuricataSignatureRule{
		{Contains: "SURICATA IKE weak cryptographic parameters", Kind: string(indicator.BaselineDrift)},
		{Regex: `(?i)\b(cnc|c2)\b`, Kind: string(indicator.C2Beacon)},
		{Regex: `(?i)\bbrute[ -]?force`, Kind: string(indicator.BruteForce)},
	}
}

// DefaultSuricataCategoryKinds returns the categories Warden maps out of
// the box: the classtypes of trojan (trojan-activity) and
// command-and-control (command-and-control) traffic. A fresh map each call.
func DefaultSuricataCategoryKinds() map[string]string {
	return map[string]string{
		"A Network Trojan was detected":                 string(indicator.C2Beacon),
		"Malware Command and Control Activity Detected": string(indicator.C2Beacon),
	}
}

// DefaultSuricataSeverities returns Suricata's priorities as Warden
// severities: 1 high, 2 medium, 3 and 4 low. A fresh map each call.
func DefaultSuricataSeverities() map[string]string {
	return map[string]string{"1": "high", "2": "medium", "3": "low", "4": "low"}
}

// WithDefaults fills MetadataKindKey and Confidence and merges the maps over
// their defaults, with category keys in lower case and signature ids and
// priorities in canonical decimal. Entries mapped to "" are kept (they
// switch a default off), so applying WithDefaults twice gives the same
// mapping. SignatureRules stay as given: the default rules are tried after
// them at decoding. It does not change m.
func (m SuricataMapping) WithDefaults() SuricataMapping {
	if m.MetadataKindKey == "" {
		m.MetadataKindKey = "warden_kind"
	}
	if m.Confidence == 0 {
		m.Confidence = DefaultSuricataConfidence
	}
	m.SignatureIDKinds = mergeKeyed(DefaultSuricataSignatureIDKinds(), m.SignatureIDKinds, canonicalUint)
	m.CategoryKinds = mergeKeyed(DefaultSuricataCategoryKinds(), m.CategoryKinds, strings.ToLower)
	m.Severities = mergeKeyed(DefaultSuricataSeverities(), m.Severities, canonicalUint)
	m.SignatureRules = slices.Clone(m.SignatureRules)
	return m
}

// canonicalUint writes a decimal key without leading zeros or spaces; a key
// that is not a number is kept as it is, for Validate to report.
func canonicalUint(s string) string {
	if n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64); err == nil {
		return strconv.FormatUint(n, 10)
	}
	return s
}

// Validate reports the first entry that names an unknown kind or severity,
// a signature id or priority that is not a number, a rule that is not
// exactly one of contains and regex or whose regex does not compile, and a
// confidence outside 0..1, as a FieldError naming the key.
func (m SuricataMapping) Validate() error {
	isNumber := func(k string) string {
		if _, err := strconv.ParseUint(strings.TrimSpace(k), 10, 64); err != nil {
			return "is not a number"
		}
		return ""
	}
	if err := validateMap("signature_id_kinds", m.SignatureIDKinds, dotted, isNumber, unknownKind); err != nil {
		return err
	}
	if err := validateMap("category_kinds", m.CategoryKinds, dotted, nil, unknownKind); err != nil {
		return err
	}
	isPriority := func(k string) string {
		if _, err := strconv.ParseUint(strings.TrimSpace(k), 10, 8); err != nil {
			return "is not a priority (a number 1..255)"
		}
		return ""
	}
	if err := validateMap("severities", m.Severities, dotted, isPriority, unknownSeverity); err != nil {
		return err
	}
	for i, r := range m.SignatureRules {
		if err := r.validate(fmt.Sprintf("signature_rules[%d]", i)); err != nil {
			return err
		}
	}
	if m.Confidence < 0 || m.Confidence > 1 {
		return &indicator.FieldError{Field: "confidence", Reason: "must be between 0 and 1"}
	}
	return nil
}

func (r SuricataSignatureRule) validate(path string) error {
	if (r.Contains == "") == (r.Regex == "") {
		return &indicator.FieldError{Field: path, Reason: "needs exactly one of contains and regex"}
	}
	if r.Regex != "" {
		if _, err := regexp.Compile(r.Regex); err != nil {
			return &indicator.FieldError{Field: path + ".regex", Reason: err.Error()}
		}
	}
	if why := unknownKind(r.Kind); why != "" {
		return &indicator.FieldError{Field: path + ".kind", Reason: why}
	}
	if r.Severity != "" {
		if why := unknownSeverity(r.Severity); why != "" {
			return &indicator.FieldError{Field: path + ".severity", Reason: why}
		}
	}
	return nil
}

// suricataRule is a SuricataSignatureRule ready to match.
type suricataRule struct {
	SuricataSignatureRule
	lower string
	re    *regexp.Regexp
}

func (r *suricataRule) matches(signature string) bool {
	if r.re != nil {
		return r.re.MatchString(signature)
	}
	return strings.Contains(strings.ToLower(signature), r.lower)
}

// compileSuricataRules prepares the mapping's rules, then the default ones.
// A rule that does not compile is left out here; Validate reports it at
// configuration load.
func compileSuricataRules(own []SuricataSignatureRule) []suricataRule {
	all := append(slices.Clone(own), DefaultSuricataSignatureRules()...)
	out := make([]suricataRule, 0, len(all))
	for _, r := range all {
		c := suricataRule{SuricataSignatureRule: r, lower: strings.ToLower(r.Contains)}
		if r.Regex != "" {
			re, err := regexp.Compile(r.Regex)
			if err != nil {
				continue
			}
			c.re = re
		} else if r.Contains == "" {
			continue
		}
		out = append(out, c)
	}
	return out
}

// DecodeSuricata reads Suricata's EVE JSON: objects one after another,
// newline-delimited as eve.json is written or concatenated and
// pretty-printed (as jq prints them), or one JSON array of them. It
// returns an Item per "alert" event, in order, and counts every other
// event type (flow, dns, tls, http, stats, anomaly, fileinfo, drop, …) in
// Ignored.
//
// An error, meant as HTTP 400, is an *indicator.FieldError on "body": the
// body is empty, no record in it is JSON, no JSON record is an object, or
// it holds more than MaxIndicatorsPerRequest alerts. A record that is not
// JSON (reading resumes at the next line starting with "{", at most
// maxResyncs times), not an object, has no event_type, or is an alert whose fields have the wrong
// type is an Item Skipped with a Reason naming the field
// ("events[3].alert.severity: expected an unsigned integer, got string");
// the other records are decoded as usual. events[i] counts every record of
// the body, alerts or not, and is the Item's Index.
//
// The gateway is the inventory's owner of dest_ip, else of src_ip (when
// both are gateways, dest_ip's); the sensor's own host and in_iface are not
// gateways. The other address is the observable, with http.hostname and
// tls.sni as domains when the alert carries them. The kind comes from the
// mapping (see SuricataMapping), the severity from alert.severity through
// m.Severities unless the matching signature rule sets one, the summary is
// the signature. Labels keep the flow (flow_id, community_id, addresses,
// ports, protocols), the rule (signature_id, gid, rev, category, action,
// severity) and the sensor (host as "sensor", in_iface). m is completed
// with WithDefaults, so the zero mapping works.
func DecodeSuricata(body []byte, inv *inventory.Inventory, m SuricataMapping, now time.Time) (Decoded, error) {
	m = m.WithDefaults()
	rules := compileSuricataRules(m.SignatureRules)
	records, err := splitJSONRecords(body, "body", "EVE JSON objects")
	if err != nil {
		return Decoded{}, err
	}
	return decodeRecords(records, MaxIndicatorsPerRequest, "alerts", func(i int, rec jsonRecord) (Item, string, bool) {
		return decodeEVERecord(i, rec, inv, &m, rules, now)
	})
}

// eveAlert is what Warden reads from an EVE alert event.
type eveAlert struct {
	timestamp                 time.Time
	flowID, communityID       string
	srcIP, destIP             netip.Addr
	srcPort, destPort         string
	proto, appProto           string
	sensor, inIface           string
	sid, gid, rev             string
	signature, category       string
	action                    string
	severity                  uint64
	metadata                  map[string][]string
	httpHostname, tlsSNI      string
	rawSrcIP, rawDestIP       string
	hasSeverity, hasSignature bool
}

// decodeEVERecord reads record i. It returns the Item and true for an
// alert or a record that cannot be understood, and any other event type
// (to count in Ignored) and false.
func decodeEVERecord(i int, rec jsonRecord, inv *inventory.Inventory, m *SuricataMapping, rules []suricataRule, now time.Time) (Item, string, bool) {
	it := recordItem(i, rec, SourceSuricata, now)
	path := fmt.Sprintf("events[%d]", i)
	skip := func(err error) (Item, string, bool) {
		it.skip(err)
		return it, "", true
	}
	if rec.raw == nil {
		return skip(syntaxError(path, rec.err))
	}
	ms, err := readMembers(rec.raw, path)
	if err != nil {
		return skip(err)
	}
	eventType, found := "", false
	for _, mem := range ms {
		if mem.key == "event_type" && !isNull(mem.val) {
			if eventType, err = decodeString(mem.val, join(path, mem.key)); err != nil {
				return skip(err)
			}
			found = true
		}
	}
	if !found {
		return skip(&indicator.FieldError{Field: join(path, "event_type"), Reason: "is required"})
	}
	if eventType != "alert" {
		return Item{}, clip(eventType, 64), false
	}
	a, err := parseEVEAlert(ms, path)
	if err != nil {
		return skip(err)
	}
	mapEVEAlert(&it, &a, inv, m, rules, now)
	return it, "", true
}

func parseEVEAlert(ms []member, path string) (eveAlert, error) {
	var a eveAlert
	seenAlert := false
	for _, mem := range ms {
		if isNull(mem.val) {
			continue
		}
		field := join(path, mem.key)
		var err error
		switch mem.key {
		case "timestamp":
			a.timestamp, err = decodeEVETime(mem.val, field)
		case "flow_id":
			a.flowID, err = decodeUintText(mem.val, field, 64)
		case "community_id":
			a.communityID, err = decodeString(mem.val, field)
		case "src_ip":
			a.rawSrcIP, a.srcIP, err = decodeAddr(mem.val, field)
		case "dest_ip":
			a.rawDestIP, a.destIP, err = decodeAddr(mem.val, field)
		case "src_port":
			a.srcPort, err = decodeUintText(mem.val, field, 16)
		case "dest_port":
			a.destPort, err = decodeUintText(mem.val, field, 16)
		case "proto":
			a.proto, err = decodeProto(mem.val, field)
		case "app_proto":
			a.appProto, err = decodeString(mem.val, field)
		case "host":
			a.sensor, err = decodeString(mem.val, field)
		case "in_iface":
			a.inIface, err = decodeString(mem.val, field)
		case "alert":
			seenAlert = true
			err = parseEVEAlertBody(mem.val, field, &a)
		case "http":
			a.httpHostname, err = optionalMember(mem.val, field, "hostname")
		case "tls":
			a.tlsSNI, err = optionalMember(mem.val, field, "sni")
		}
		if err != nil {
			return a, err
		}
	}
	if !seenAlert {
		return a, &indicator.FieldError{Field: join(path, "alert"), Reason: "is required"}
	}
	return a, nil
}

func parseEVEAlertBody(raw json.RawMessage, path string, a *eveAlert) error {
	return decodeObject(raw, path, false, func(key string, val json.RawMessage, field string) (err error) {
		switch key {
		case "signature_id":
			a.sid, err = decodeUintText(val, field, 64)
		case "gid":
			a.gid, err = decodeUintText(val, field, 64)
		case "rev":
			a.rev, err = decodeUintText(val, field, 64)
		case "signature":
			a.signature, err = decodeString(val, field)
			a.hasSignature = err == nil
		case "category":
			a.category, err = decodeString(val, field)
		case "action":
			a.action, err = decodeString(val, field)
		case "severity":
			var s string
			if s, err = decodeUintText(val, field, 8); err == nil {
				a.severity, _ = strconv.ParseUint(s, 10, 8)
				a.hasSeverity = true
			}
		case "metadata":
			a.metadata, err = decodeEVEMetadata(val, field)
		}
		return err
	})
}

// decodeEVEMetadata reads alert.metadata: each key holds the list of values
// the rule's metadata keyword gave it (a single string is taken too).
func decodeEVEMetadata(raw json.RawMessage, path string) (map[string][]string, error) {
	out := map[string][]string{}
	err := decodeObject(raw, path, false, func(key string, val json.RawMessage, field string) error {
		if jsonKind(val) == "string" {
			s, err := decodeString(val, field)
			out[key] = append(out[key], s)
			return err
		}
		list, err := decodeStringList(val, field)
		out[key] = append(out[key], list...)
		return err
	})
	return out, err
}

// optionalMember reads the string member key of an app-layer object that
// Warden only borrows observables from: a missing or mistyped value is
// left out rather than making the alert unusable.
func optionalMember(raw json.RawMessage, path, key string) (string, error) {
	if jsonKind(raw) != "object" {
		return "", nil
	}
	ms, err := readMembers(raw, path)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.key == key && jsonKind(m.val) == "string" {
			return decodeString(m.val, join(path, key))
		}
	}
	return "", nil
}

// decodeUintText reads a JSON number that must be an unsigned integer of at
// most bits bits and returns it as decimal text, so that a 64-bit flow_id
// keeps every digit.
func decodeUintText(raw json.RawMessage, path string, bits int) (string, error) {
	if jsonKind(raw) != "number" {
		return "", &indicator.FieldError{Field: path, Reason: "expected an unsigned integer, got " + jsonKind(raw)}
	}
	s := string(bytes.TrimSpace(raw))
	n, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		return "", &indicator.FieldError{Field: path, Reason: fmt.Sprintf("expected an unsigned integer of at most %d bits, got %s", bits, clip(s, 32))}
	}
	return strconv.FormatUint(n, 10), nil
}

// decodeProto reads proto: Suricata writes a name ("TCP") or, for a
// protocol it has no name for, a number.
func decodeProto(raw json.RawMessage, path string) (string, error) {
	if jsonKind(raw) == "number" {
		return decodeUintText(raw, path, 8)
	}
	return decodeString(raw, path)
}

// decodeAddr reads an IP address written as a JSON string.
func decodeAddr(raw json.RawMessage, path string) (string, netip.Addr, error) {
	s, err := decodeString(raw, path)
	if err != nil {
		return "", netip.Addr{}, err
	}
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return s, netip.Addr{}, &indicator.FieldError{Field: path, Reason: fmt.Sprintf("%q is not an IP address", clip(s, 64))}
	}
	return s, a.Unmap(), nil
}

// decodeEVETime reads an EVE timestamp: Suricata writes
// "2016-07-13T16:42:07.573103-0600" (no colon in the offset); RFC 3339 is
// taken too, and a time without an offset (old documentation examples) is
// UTC.
func decodeEVETime(raw json.RawMessage, path string) (time.Time, error) {
	s, err := decodeString(raw, path)
	if err != nil {
		return time.Time{}, err
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999-0700", time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, &indicator.FieldError{Field: path, Reason: fmt.Sprintf("expected a time like 2016-07-13T16:42:07.573103-0600, got %q", clip(s, 64))}
}

// mapEVEAlert fills the indicator from a parsed alert and decides whether
// it is matched.
func mapEVEAlert(it *Item, a *eveAlert, inv *inventory.Inventory, m *SuricataMapping, rules []suricataRule, now time.Time) {
	in := &it.Indicator
	if !a.timestamp.IsZero() {
		in.ObservedAt = a.timestamp
	}
	in.Labels = eveLabels(a)
	in.Summary = eveSummary(a)
	in.Confidence = m.Confidence

	gw, remote, noGateway := eveGateway(a, inv)
	in.Gateway = gw
	in.Observables.IPs = addressObservables(remote)
	for _, h := range []string{a.httpHostname, a.tlsSNI} {
		if d, ok := observableDomain(strings.TrimSpace(h)); ok && !slices.Contains(in.Observables.Domains, d) {
			in.Observables.Domains = append(in.Observables.Domains, d)
		}
	}
	slices.Sort(in.Observables.Domains)

	kind, severity, noKind := eveKind(a, m, rules)
	in.Kind = kind
	in.Severity = severity
	if in.Severity == "" {
		in.Severity = eveSeverity(a, m)
	}
	finishItem(it, now, noGateway, noKind)
}

// eveGateway finds the gateway among dest_ip and src_ip and returns the
// addresses that are not its own.
func eveGateway(a *eveAlert, inv *inventory.Inventory) (string, []netip.Addr, string) {
	return gatewayOfAddresses(inv, []addressCandidate{{"dest_ip", a.destIP}, {"src_ip", a.srcIP}}, nil)
}

// eveKind decides the kind (and a rule's severity, if it sets one).
func eveKind(a *eveAlert, m *SuricataMapping, rules []suricataRule) (indicator.Kind, indicator.Severity, string) {
	if vals := a.metadata[m.MetadataKindKey]; len(vals) > 0 {
		v := strings.ToLower(strings.TrimSpace(vals[0]))
		if k := indicator.Kind(v); k.Valid() {
			return k, "", ""
		}
		return "", "", fmt.Sprintf("no usable kind: alert.metadata.%s=%q is not a known kind", m.MetadataKindKey, clip(vals[0], 64))
	}
	if a.sid != "" {
		if k, ok := m.SignatureIDKinds[a.sid]; ok {
			if k == "" {
				return "", "", fmt.Sprintf("no usable kind: signature_id %s is switched off", a.sid)
			}
			return indicator.Kind(k), "", ""
		}
	}
	if a.hasSignature {
		for _, r := range rules {
			if r.matches(a.signature) {
				if r.Kind == "" {
					return "", "", fmt.Sprintf("no usable kind: signature %q matches a rule with no kind", clip(a.signature, 64))
				}
				return indicator.Kind(r.Kind), indicator.Severity(r.Severity), ""
			}
		}
	}
	if a.category != "" {
		if k := m.CategoryKinds[strings.ToLower(a.category)]; k != "" {
			return indicator.Kind(k), "", ""
		}
	}
	return "", "", fmt.Sprintf("no usable kind: signature_id %s %q (category %q) is not mapped and there is no alert.metadata.%s",
		orDash(a.sid), clip(a.signature, 64), clip(a.category, 64), m.MetadataKindKey)
}

func eveSeverity(a *eveAlert, m *SuricataMapping) indicator.Severity {
	if !a.hasSeverity {
		return indicator.Medium
	}
	if s := indicator.Severity(m.Severities[strconv.FormatUint(a.severity, 10)]); s.Rank() > 0 {
		return s
	}
	return indicator.Low
}

func eveSummary(a *eveAlert) string {
	s := oneLine(a.signature)
	if s == "" {
		s = clip("Suricata alert, signature_id "+orDash(a.sid), maxSummaryLen)
	}
	return s
}

func eveLabels(a *eveAlert) map[string]string {
	l := labelSet{}
	set := l.set
	set("flow_id", a.flowID)
	set("community_id", a.communityID)
	set("src_ip", a.rawSrcIP)
	set("src_port", a.srcPort)
	set("dest_ip", a.rawDestIP)
	set("dest_port", a.destPort)
	set("proto", a.proto)
	set("app_proto", a.appProto)
	set("sensor", a.sensor)
	set("in_iface", a.inIface)
	set("signature_id", a.sid)
	set("gid", a.gid)
	set("rev", a.rev)
	set("signature", a.signature)
	set("category", a.category)
	set("action", a.action)
	if a.hasSeverity {
		set("severity", strconv.FormatUint(a.severity, 10))
	}
	return l
}
