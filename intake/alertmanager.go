package intake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
)

// SourceAlertmanager is the Source of indicators decoded from Alertmanager.
const SourceAlertmanager = "alertmanager"

// DefaultAlertmanagerConfidence is used when an alert carries no usable
// confidence label or annotation.
const DefaultAlertmanagerConfidence = 0.8

const maxSummaryLen = 300

// Item is one decoded alert: either an indicator about a known gateway, or an
// unmatched alert with the reason it could not be used.
type Item struct {
	// Index is the position of the record in the body (an Alertmanager
	// alert's in its alerts array).
	Index int
	// Indicator is filled as far as possible even when unmatched; Raw is
	// always the alert's own JSON.
	Indicator indicator.Indicator
	// Matched is true when the alert maps to a gateway and a kind and the
	// indicator is valid.
	Matched bool
	// Skipped is true when the alert itself cannot be understood (it is not
	// an object, or a field Warden uses has the wrong type or value). A
	// skipped alert is never Matched; it is kept, like an unmatched one, as
	// evidence of what was sent.
	Skipped bool
	// Reason says why an alert is unmatched or skipped; empty when Matched.
	// For a skipped alert it names the field ("alerts[2].startsAt: …").
	Reason string
}

// AlertmanagerMapping says how Alertmanager labels and annotations map onto
// indicator fields. The zero value plus WithDefaults is a sensible setup.
type AlertmanagerMapping struct {
	// GatewayLabel names the label holding a gateway id. Default "gateway".
	GatewayLabel string `mapstructure:"gateway_label" json:"gateway_label,omitempty" yaml:"gateway_label,omitempty"`
	// InstanceLabel names the label holding "host:port". Default "instance".
	InstanceLabel string `mapstructure:"instance_label" json:"instance_label,omitempty" yaml:"instance_label,omitempty"`
	// SiteLabel names the label holding a site name. Default "site".
	SiteLabel string `mapstructure:"site_label" json:"site_label,omitempty" yaml:"site_label,omitempty"`
	// KindLabel names a label that states the indicator kind directly.
	// Default "warden_kind".
	KindLabel string `mapstructure:"kind_label" json:"kind_label,omitempty" yaml:"kind_label,omitempty"`
	// AlertnameKinds maps alertname to kind. WithDefaults merges these over
	// DefaultAlertnameKinds; map an alertname to "" to switch a default off.
	AlertnameKinds map[string]string `mapstructure:"alertname_kinds" json:"alertname_kinds,omitempty" yaml:"alertname_kinds,omitempty"`
	// SeverityLabel names the severity label. Default "severity".
	SeverityLabel string `mapstructure:"severity_label" json:"severity_label,omitempty" yaml:"severity_label,omitempty"`
	// ConfidenceAnnotation names a label or annotation holding a number in
	// 0..1. Default "confidence"; absent or unusable means 0.8.
	ConfidenceAnnotation string `mapstructure:"confidence_annotation" json:"confidence_annotation,omitempty" yaml:"confidence_annotation,omitempty"`
}

// DefaultAlertnameKinds returns the alertnames Warden understands out of the
// box. A fresh map each call: callers may change it.
func DefaultAlertnameKinds() map[string]string {
	return map[string]string{
		"WireGuardHandshakeBurst":       string(indicator.BruteForce),
		"IPsecIKEAuthFailureBurst":      string(indicator.BruteForce),
		"SSHAuthFailureBurst":           string(indicator.BruteForce),
		"GatewayC2Beacon":               string(indicator.C2Beacon),
		"GatewayExfiltration":           string(indicator.Exfiltration),
		"GatewayEgressSpike":            string(indicator.TrafficSpike),
		"GatewayTrafficSpike":           string(indicator.TrafficSpike),
		"GatewayUnknownDestination":     string(indicator.UnknownDestination),
		"GatewayOffHoursAdminLogin":     string(indicator.OffHoursAdminLogin),
		"GatewayConfigChanged":          string(indicator.ConfigTamper),
		"GatewayFileIntegrityViolation": string(indicator.IntegrityViolation),
		"GatewayBaselineDrift":          string(indicator.BaselineDrift),
	}
}

// WithDefaults fills empty label names and merges AlertnameKinds over
// DefaultAlertnameKinds. Entries mapped to "" are kept (they switch a default
// off), so applying WithDefaults twice gives the same mapping. It does not
// change m.
func (m AlertmanagerMapping) WithDefaults() AlertmanagerMapping {
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&m.GatewayLabel, "gateway")
	def(&m.InstanceLabel, "instance")
	def(&m.SiteLabel, "site")
	def(&m.KindLabel, "warden_kind")
	def(&m.SeverityLabel, "severity")
	def(&m.ConfidenceAnnotation, "confidence")
	kinds := DefaultAlertnameKinds()
	for name, k := range m.AlertnameKinds {
		// An entry replaces a default of the same name in any case: the
		// configuration file's keys arrive lower-cased (viper), and
		// "gatewaytrafficspike: ''" must still switch GatewayTrafficSpike off.
		for d := range kinds {
			if d != name && strings.EqualFold(d, name) {
				delete(kinds, d)
			}
		}
		kinds[name] = k
	}
	m.AlertnameKinds = kinds
	return m
}

// alertnameKind is the kind the mapping gives an alertname: by its exact
// name, else by the name in any case (keys read from a configuration file
// are lower-cased; Alertmanager's alertnames are usually CamelCase).
func (m *AlertmanagerMapping) alertnameKind(name string) string {
	if k, ok := m.AlertnameKinds[name]; ok {
		return k
	}
	for n, k := range m.AlertnameKinds {
		if strings.EqualFold(n, name) {
			return k
		}
	}
	return ""
}

// Validate reports AlertnameKinds entries that name an unknown kind, so that
// configuration load can reject them instead of every alert going unmatched.
func (m AlertmanagerMapping) Validate() error {
	return validateMap("alertname_kinds", m.AlertnameKinds, dotted, nil, unknownKind)
}

// DecodeAlertmanager reads a Prometheus Alertmanager webhook body and returns
// one Item per alert, in order.
//
// It takes every body the Alertmanager ecosystem is known to send: the
// current message (version "4": template.Data plus a string groupKey and
// truncatedAlerts), the version "3" message of Alertmanager 0.5–0.6 (a
// numeric groupKey, no per-alert status, generatorURL or fingerprint), and
// template.Data marshalled by other tools (no version or groupKey at all,
// zero times as "0001-01-01T00:00:00Z", empty strings). Fields Warden does
// not use (version, groupKey, truncatedAlerts, receiver, externalURL,
// groupLabels, an alert's endsAt and generatorURL, and whatever other
// senders add) are ignored whatever their type.
//
// An error, meant as HTTP 400, is returned only when the body as a whole
// cannot be understood: it is not a JSON object, "alerts" is missing or not
// an array, or a field that applies to every alert (status, commonLabels,
// commonAnnotations) has the wrong type. It is an *indicator.FieldError
// naming the field. A single alert that cannot be understood is Skipped, with
// a Reason naming its field; the other alerts are decoded as usual.
//
// An alert without a status takes the body's, else it is firing; any status
// but "resolved" counts as firing (some tools put a severity there). Label
// and annotation values that are empty or null count as absent, as in
// Prometheus.
//
// Each alert maps to a gateway by the gateway label, else the instance
// label's host (port stripped, IPv6 brackets removed, looked up with
// inv.GatewayByHost), else the site label when that site has exactly one
// gateway. Its kind comes from the kind label, else from the alertname. m
// is completed with WithDefaults, so the zero mapping works.
func DecodeAlertmanager(body []byte, inv *inventory.Inventory, m AlertmanagerMapping, now time.Time) ([]Item, error) {
	m = m.WithDefaults()
	if err := checkJSON(body, "body"); err != nil {
		return nil, err
	}
	top, err := readMembers(body, "body")
	if err != nil {
		return nil, err
	}
	var g amGroup
	var alerts json.RawMessage
	for _, mem := range top {
		var err error
		switch mem.key {
		case "alerts":
			alerts = mem.val
		case "status":
			g.status, err = optString(mem.val, mem.key)
		case "commonLabels":
			g.commonLabels, err = optLabels(mem.val, mem.key)
		case "commonAnnotations":
			g.commonAnnotations, err = optLabels(mem.val, mem.key)
		}
		if err != nil {
			return nil, err
		}
	}
	if alerts == nil {
		return nil, &indicator.FieldError{Field: "alerts", Reason: "is required"}
	}
	elems, err := readArray(alerts, "alerts", 0)
	if err != nil {
		return nil, err
	}
	items := make([]Item, len(elems))
	for i, raw := range elems {
		items[i] = decodeAlert(i, raw, &g, inv, &m, now)
	}
	return items, nil
}

type amGroup struct {
	status            string
	commonLabels      map[string]string
	commonAnnotations map[string]string
}

func optString(raw json.RawMessage, path string) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	return decodeString(raw, path)
}

func optLabels(raw json.RawMessage, path string) (map[string]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	return decodeLabels(raw, path)
}

// decodeLabels reads a label or annotation set: an object of strings.
// Empty and null values are left out: Prometheus treats an empty label as
// an absent one, and an empty alert label must not hide a common one.
func decodeLabels(raw json.RawMessage, path string) (map[string]string, error) {
	ms, err := readMembers(raw, path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(ms))
	for _, m := range ms {
		if isNull(m.val) {
			continue
		}
		s, err := decodeString(m.val, join(path, m.key))
		if err != nil {
			return nil, err
		}
		if s == "" {
			delete(out, m.key) // a later empty duplicate wins, as the last value always does
			continue
		}
		out[m.key] = s
	}
	return out, nil
}

// Alert states after decoding. statusSuppressed comes from Alertmanager's
// API v2 alert objects (as amtool prints them), whose status is an object.
const (
	statusFiring     = indicator.StatusFiring
	statusResolved   = indicator.StatusResolved
	statusSuppressed = "suppressed"
)

// normalStatus maps a status string onto firing or resolved: only
// "resolved" ends an alert. Other words (tools send "critical" or
// "warning" here) mean it is active.
func normalStatus(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return ""
	case statusResolved:
		return statusResolved
	}
	return statusFiring
}

// decodeAlertStatus reads an alert's status: a string (webhook), or an
// object {"state": "active"|"suppressed"|"unprocessed", ...} (API v2).
func decodeAlertStatus(raw json.RawMessage, path string) (string, error) {
	switch jsonKind(raw) {
	case "string":
		s, err := decodeString(raw, path)
		return normalStatus(s), err
	case "object":
		ms, err := readMembers(raw, path)
		if err != nil {
			return "", err
		}
		state := ""
		for _, m := range ms {
			if m.key == "state" {
				if state, err = decodeString(m.val, join(path, "state")); err != nil {
					return "", err
				}
			}
		}
		switch strings.ToLower(state) {
		case "active", "unprocessed":
			return statusFiring, nil
		case statusSuppressed:
			return statusSuppressed, nil
		}
		return "", &indicator.FieldError{Field: join(path, "state"), Reason: fmt.Sprintf("expected active, suppressed or unprocessed, got %q", clip(state, 64))}
	}
	return "", typeError(path, "string", raw)
}

// decodeOptTime reads a time that may be "" (absent); the zero time
// "0001-01-01T00:00:00Z" that Go senders write for "unset" decodes to the
// zero time.
func decodeOptTime(raw json.RawMessage, path string) (time.Time, error) {
	if jsonKind(raw) == "string" && len(bytes.TrimSpace(raw)) == 2 {
		return time.Time{}, nil
	}
	return decodeTime(raw, path)
}

// amAlert is one alert of template.Data.
type amAlert struct {
	status      string
	labels      map[string]string
	annotations map[string]string
	startsAt    time.Time
	fingerprint string
}

func parseAlert(raw json.RawMessage, path string) (amAlert, error) {
	var a amAlert
	err := decodeObject(raw, path, false, func(key string, val json.RawMessage, field string) (err error) {
		switch key {
		case "status":
			a.status, err = decodeAlertStatus(val, field)
		case "labels":
			a.labels, err = decodeLabels(val, field)
		case "annotations":
			a.annotations, err = decodeLabels(val, field)
		case "startsAt":
			a.startsAt, err = decodeOptTime(val, field)
		case "fingerprint":
			a.fingerprint, err = decodeString(val, field)
		}
		return err
	})
	return a, err
}

// decodeAlert maps one alert. It never fails: an alert that cannot be
// understood is Skipped, one that cannot be used is unmatched, and either
// way the Reason says why.
func decodeAlert(i int, raw json.RawMessage, g *amGroup, inv *inventory.Inventory, m *AlertmanagerMapping, now time.Time) Item {
	item := newItem(i, raw, SourceAlertmanager, now)
	in := &item.Indicator

	path := fmt.Sprintf("alerts[%d]", i)
	a, err := parseAlert(raw, path)
	if err != nil {
		item.skip(err)
		return item
	}

	labels := make(map[string]string, len(g.commonLabels)+len(a.labels))
	maps.Copy(labels, g.commonLabels)
	maps.Copy(labels, a.labels)
	annotations := make(map[string]string, len(g.commonAnnotations)+len(a.annotations))
	maps.Copy(annotations, g.commonAnnotations)
	maps.Copy(annotations, a.annotations)
	if len(labels) > 0 {
		in.Labels = labels
	}

	status := a.status
	if status == "" {
		status = normalStatus(g.status)
	}
	if status == statusResolved {
		in.Status = indicator.StatusResolved
	}
	if !a.startsAt.IsZero() {
		in.ObservedAt = a.startsAt
	}
	in.Severity = mapSeverity(labels[m.SeverityLabel])
	in.Confidence = confidence(labels, annotations, m.ConfidenceAnnotation)
	in.Summary = summary(annotations, labels)
	in.Observables = observables(labels, annotations)

	var reasons []string
	if status == statusSuppressed {
		// Someone silenced or inhibited it in Alertmanager: keep it as
		// evidence, start nothing.
		reasons = append(reasons, "suppressed in Alertmanager (silenced or inhibited)")
	}
	gw, why := mapGateway(labels, inv, m)
	if why != "" {
		reasons = append(reasons, why)
	}
	in.Gateway = gw
	kind, why := mapKind(labels, m)
	if why != "" {
		reasons = append(reasons, why)
	}
	in.Kind = kind
	if fp := a.fingerprint; len(reasons) == 0 && fp != "" && len(fp) <= maxFingerprintLen {
		// Alertmanager's fingerprint identifies the label set; the prefix
		// keeps deduplication per gateway and kind.
		in.Fingerprint = in.Gateway + ":" + string(in.Kind) + ":" + fp
	}
	finishItem(&item, now, reasons...)
	return item
}

// mapGateway tries the gateway, instance and site labels in that order.
func mapGateway(labels map[string]string, inv *inventory.Inventory, m *AlertmanagerMapping) (string, string) {
	var tried []string
	if inv == nil {
		inv = &inventory.Inventory{}
	}
	if v := labels[m.GatewayLabel]; v != "" {
		if gw, ok := inv.Gateway(v); ok {
			return gw.ID, ""
		}
		if gw, ok := inv.GatewayByHost(v); ok {
			return gw.ID, ""
		}
		tried = append(tried, fmt.Sprintf("%s=%s", m.GatewayLabel, clip(v, 64)))
	}
	if v := labels[m.InstanceLabel]; v != "" {
		if gw, ok := gatewayByInstance(inv, v); ok {
			return gw.ID, ""
		}
		tried = append(tried, fmt.Sprintf("%s=%s", m.InstanceLabel, clip(v, 64)))
	}
	if v := labels[m.SiteLabel]; v != "" {
		gws := inv.GatewaysAtSite(v)
		if len(gws) == 1 {
			return gws[0].ID, ""
		}
		note := "no gateway"
		if len(gws) > 1 {
			note = fmt.Sprintf("%d gateways, ambiguous", len(gws))
		}
		tried = append(tried, fmt.Sprintf("%s=%s (%s)", m.SiteLabel, clip(v, 64), note))
	}
	head := fmt.Sprintf("no label %s/%s/%s maps to a gateway: ", m.GatewayLabel, m.InstanceLabel, m.SiteLabel)
	if len(tried) == 0 {
		return "", head + "none of them is set"
	}
	return "", head + strings.Join(tried, ", ")
}

// instanceHost strips a port and IPv6 brackets from a Prometheus instance
// label: "gw:9100", "[2001:db8::1]:9100", "2001:db8::1", "gw".
func instanceHost(instance string) string {
	if h, _, err := net.SplitHostPort(instance); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(instance, "["), "]")
}

func gatewayByInstance(inv *inventory.Inventory, instance string) (inventory.Gateway, bool) {
	host := instanceHost(instance)
	if host == "" {
		return inventory.Gateway{}, false
	}
	if gw, ok := inv.GatewayByHost(host); ok {
		return gw, true
	}
	// An address may be written differently in the inventory
	// ("2001:db8:0::1" vs "2001:db8::1"): compare parsed addresses.
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return inventory.Gateway{}, false
	}
	ip = ip.Unmap()
	for _, gw := range inv.Gateways {
		for _, a := range gw.Addresses {
			if b, err := netip.ParseAddr(a); err == nil && b.Unmap() == ip {
				return gw, true
			}
		}
	}
	return inventory.Gateway{}, false
}

func mapKind(labels map[string]string, m *AlertmanagerMapping) (indicator.Kind, string) {
	if v := labels[m.KindLabel]; v != "" {
		k := indicator.Kind(strings.ToLower(strings.TrimSpace(v)))
		if k.Valid() {
			return k, ""
		}
		return "", fmt.Sprintf("no usable kind: label %s=%q is not a known kind", m.KindLabel, clip(v, 64))
	}
	name := labels["alertname"]
	if k := m.alertnameKind(name); k != "" {
		if indicator.Kind(k).Valid() {
			return indicator.Kind(k), ""
		}
		return "", fmt.Sprintf("no usable kind: alertname %q maps to unknown kind %q", clip(name, 64), clip(k, 64))
	}
	if name == "" {
		return "", fmt.Sprintf("no usable kind: no alertname and no %s label", m.KindLabel)
	}
	return "", fmt.Sprintf("no usable kind: alertname %q is not mapped and there is no %s label", clip(name, 64), m.KindLabel)
}

// mapSeverity maps the severities people put on Prometheus alerts onto
// Warden's four; absent or unrecognised values are medium.
func mapSeverity(v string) indicator.Severity {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "critical", "page", "emergency", "alert", "fatal", "p1", "sev1":
		return indicator.Critical
	case "high", "error", "major", "p2", "sev2":
		return indicator.High
	case "low", "info", "informational", "notice", "none", "p4", "p5", "sev4", "sev5":
		return indicator.Low
	}
	return indicator.Medium // warning, medium, minor, p3, absent, unknown
}

func confidence(labels, annotations map[string]string, key string) float64 {
	for _, src := range []map[string]string{labels, annotations} {
		v, ok := src[key]
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err == nil && !math.IsNaN(f) && f >= 0 && f <= 1 {
			return f
		}
	}
	return DefaultAlertmanagerConfidence
}

func summary(annotations, labels map[string]string) string {
	s := annotations["summary"]
	if strings.TrimSpace(s) == "" {
		s = annotations["description"]
	}
	if strings.TrimSpace(s) == "" {
		s = labels["alertname"]
	}
	return oneLine(s)
}

var (
	ipKeys     = []string{"src_ip", "dst_ip", "remote_ip", "ip", "source_ip", "destination_ip", "client_ip", "peer_ip", "remote_addr"}
	domainKeys = []string{"domain", "dst_domain", "query", "sni"}
	hashKeys   = []string{"sha256", "file_sha256", "hash"}
	sha256Re   = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	domainRe   = regexp.MustCompile(`^(?i:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?)(?:\.(?i:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?))*\.?$`)
)

// observables collects addresses, domains and SHA-256 hashes from well-known
// label and annotation names. Values may be comma- or space-separated lists.
// Anything that does not parse is ignored: a sloppy detector must not make
// an alert unusable.
func observables(labels, annotations map[string]string) indicator.Observables {
	var o indicator.Observables
	values := func(keys []string, keep func(string) (string, bool)) []string {
		var out []string
		for _, src := range []map[string]string{labels, annotations} {
			for _, k := range keys {
				for f := range strings.FieldsFuncSeq(src[k], func(r rune) bool { return r == ',' || r == ' ' || r == ';' }) {
					if v, ok := keep(f); ok && !slices.Contains(out, v) {
						out = append(out, v)
					}
				}
			}
		}
		slices.Sort(out)
		return out
	}
	o.IPs = values(ipKeys, func(s string) (string, bool) {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return ap.Addr().Unmap().String(), true
		}
		if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
			return a.Unmap().String(), true
		}
		return "", false
	})
	o.Domains = values(domainKeys, observableDomain)
	o.Hashes = values(hashKeys, observableHash)
	return o
}
