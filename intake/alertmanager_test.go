package intake

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/indicator"
)

// wantItem describes the facts a test cares about for one decoded alert.
type wantItem struct {
	matched    bool
	gateway    string
	kind       indicator.Kind
	severity   indicator.Severity
	status     string
	confidence float64
	observed   time.Time
	ips        []string
	domains    []string
	hashes     []string
	summary    string
	reason     string // substring of Reason when unmatched
	skipped    bool   // the alert could not be understood
}

func TestDecodeAlertmanagerPayloads(t *testing.T) {
	inv := testInventory(t)
	at := func(s string) time.Time { return testTime(t, s) }
	tests := map[string][]wantItem{
		"am_firing_multi.json": {
			{matched: true, gateway: "gw-hq", kind: indicator.BruteForce, severity: indicator.Critical, status: "firing",
				confidence: 0.8, observed: at("2025-03-14T03:02:11.123456789Z"), ips: []string{"198.51.100.77"},
				summary: "Burst of failed WireGuard handshakes on gw-hq wg0"},
			{matched: true, gateway: "gw-osaka-a", kind: indicator.TrafficSpike, severity: indicator.Medium, status: "firing",
				confidence: 0.65, observed: at("2025-03-14T03:01:45.5Z"), ips: []string{"192.0.2.200", "192.0.2.201"},
				summary: "Egress on gw-osaka-a ens192 is 9x its 7-day baseline"},
			{matched: true, gateway: "gw-factory", kind: indicator.C2Beacon, severity: indicator.High, status: "firing",
				confidence: 0.95, observed: at("2025-03-14T03:00:02Z"), ips: []string{"203.0.113.250"},
				domains: []string{"cdn-update.example.net"}, hashes: []string{"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
				summary: "ET MALWARE Cobalt Strike Beacon Observed periodic HTTPS to cdn-update.example.net every 60s"},
		},
		"am_resolved.json": {
			{matched: true, gateway: "gw-hq", kind: indicator.BruteForce, severity: indicator.Critical, status: "resolved",
				confidence: 0.8, observed: at("2025-03-14T03:02:11.123456789Z"), summary: "Burst of failed WireGuard handshakes on gw-hq wg0"},
		},
		"am_mixed_status.json": {
			{matched: true, gateway: "gw-factory", kind: indicator.BruteForce, severity: indicator.High, status: "resolved",
				confidence: 0.8, observed: at("2025-03-14T02:40:00Z"), summary: "SSH auth failures on gw-factory back to normal"},
			{matched: true, gateway: "gw-osaka-b", kind: indicator.BruteForce, severity: indicator.High, status: "firing",
				confidence: 0.8, observed: at("2025-03-14T03:05:00Z"), ips: []string{"198.51.100.9"}, summary: "SSH auth failures on gw-osaka-b"},
		},
		"am_minimal.json": {
			{matched: true, gateway: "gw-hq", kind: indicator.ConfigTamper, severity: indicator.Critical, status: "firing",
				confidence: 0.8, observed: testNow, summary: "GatewayConfigChanged"},
			{matched: true, gateway: "gw-osaka-b", kind: indicator.ConfigTamper, severity: indicator.Critical, status: "firing",
				confidence: 0.8, observed: at("2025-03-14T03:10:00+09:00"), summary: "GatewayConfigChanged"},
		},
		"am_non_gateway.json": {
			{reason: "no label gateway/instance/site maps to a gateway: instance=db1:9100; no usable kind: alertname \"NodeHighCPU\" is not mapped"},
			{reason: "no usable kind: alertname \"NodeFilesystemAlmostFull\" is not mapped and there is no warden_kind label"},
			{reason: "instance=gw-old.corp.example:9586, site=osaka (2 gateways, ambiguous)"},
		},
		// Real senders' bodies (testdata/README.md names each source; labels
		// were changed to name the test inventory's gateways).
		//
		// Alertmanager's documented webhook payload (docs/configuration.md,
		// <webhook_config>): version "4", string groupKey, truncatedAlerts.
		"am_doc_v4.json": {
			{matched: true, gateway: "gw-osaka-a", kind: indicator.Exfiltration, severity: indicator.Critical, status: "firing",
				confidence: 0.8, observed: at("2025-03-14T03:04:05.123Z"), ips: []string{"198.51.100.23"},
				summary: "gw-osaka-a sent 4.2 GiB to 198.51.100.23 in 10 minutes"},
		},
		// Alertmanager 0.5 (notify/impl.go: Version "3", GroupKey uint64) as
		// captured in andir/go-prom-irc main.go: a groupKey beyond int64, no
		// alert status, generatorURL or fingerprint, zero endsAt.
		"am_v3_numeric_groupkey.json": {
			{matched: true, gateway: "gw-hq", kind: indicator.C2Beacon, severity: indicator.Critical, status: "firing",
				confidence: 0.8, observed: at("2017-02-28T03:00:22.803+01:00"), summary: "Instance : C2 beacon"},
		},
		// template.Data marshalled by encoding/json, as in
		// tomtom-international/alertmanager-webhook-logger main_test.go: no
		// version, groupKey or truncatedAlerts, status "" at the top and
		// severities as alert status, zero times, empty strings.
		"am_webhook_logger.json": {
			{matched: true, gateway: "gw-factory", kind: indicator.TrafficSpike, severity: indicator.Medium, status: "firing",
				confidence: 0.8, observed: at("2000-01-01T00:00:00Z"), summary: "egress spike on gw-factory"},
			{matched: true, gateway: "gw-hq", kind: indicator.BaselineDrift, severity: indicator.Medium, status: "firing",
				confidence: 0.8, observed: testNow, summary: "GatewayBaselineDrift"},
		},
		// Alertmanager API v2 alerts as `amtool alert query -o json` prints
		// them (status is an object), in a webhook envelope.
		"am_amtool_v2.json": {
			{matched: true, gateway: "gw-factory", kind: indicator.ConfigTamper, severity: indicator.Critical, status: "firing",
				confidence: 0.8, observed: at("2025-03-14T03:09:00Z"), summary: "gw-factory config changed outside change control"},
			{reason: "suppressed in Alertmanager (silenced or inhibited)"},
		},
		// Ours: one message whose second and third alerts cannot be
		// understood; the first and last still count.
		"am_partly_bad.json": {
			{matched: true, gateway: "gw-hq", kind: indicator.C2Beacon, severity: indicator.Critical, status: "firing",
				confidence: 0.8, observed: at("2025-03-14T03:01:00Z"), summary: "GatewayC2Beacon"},
			{skipped: true, reason: `alerts[1].startsAt: expected an RFC 3339 time, got "yesterday"`},
			{skipped: true, reason: "alerts[2]: expected object, got string"},
			{matched: true, gateway: "gw-factory", kind: indicator.Exfiltration, severity: indicator.High, status: "firing",
				confidence: 0.8, observed: at("2025-03-14T03:02:00Z"), summary: "GatewayExfiltration"},
		},
		"am_ipv6.json": {
			{matched: true, gateway: "gw-hq", kind: indicator.UnknownDestination, severity: indicator.High, status: "firing",
				confidence: 0.8, observed: at("2025-03-14T03:03:03Z"), ips: []string{"2001:db8:ffff::dead"},
				summary: "gw-hq talks to a destination never seen before"},
			{matched: true, gateway: "gw-factory", kind: indicator.UnknownDestination, severity: indicator.Low, status: "firing",
				confidence: 0.8, observed: at("2025-03-14T03:03:04Z"), summary: "bare IPv6 instance written long-hand"},
		},
	}
	for file, want := range tests {
		t.Run(file, func(t *testing.T) {
			items, err := DecodeAlertmanager(readTestdata(t, file), inv, AlertmanagerMapping{}, testNow)
			if err != nil {
				t.Fatalf("DecodeAlertmanager: %v", err)
			}
			if len(items) != len(want) {
				t.Fatalf("got %d items, want %d", len(items), len(want))
			}
			for i, w := range want {
				checkItem(t, i, items[i], w)
			}
		})
	}
}

func checkItem(t *testing.T, i int, it Item, w wantItem) {
	t.Helper()
	in := it.Indicator
	if it.Index != i {
		t.Errorf("[%d] index %d", i, it.Index)
	}
	if len(in.Raw) == 0 || !json.Valid(in.Raw) || in.Source != SourceAlertmanager {
		t.Errorf("[%d] raw %q / source %q not set", i, in.Raw, in.Source)
	}
	if it.Matched != w.matched {
		t.Fatalf("[%d] matched=%v (reason %q), want %v", i, it.Matched, it.Reason, w.matched)
	}
	if it.Skipped != w.skipped {
		t.Errorf("[%d] skipped=%v (reason %q), want %v", i, it.Skipped, it.Reason, w.skipped)
	}
	if !w.matched {
		if !strings.Contains(it.Reason, w.reason) {
			t.Errorf("[%d] reason\n got  %q\n want …%q…", i, it.Reason, w.reason)
		}
		return
	}
	if it.Reason != "" {
		t.Errorf("[%d] matched item has reason %q", i, it.Reason)
	}
	if err := in.Validate(); err != nil {
		t.Errorf("[%d] invalid: %v", i, err)
	}
	if in.Gateway != w.gateway || in.Kind != w.kind || in.Severity != w.severity || in.Status != w.status {
		t.Errorf("[%d] got %s/%s/%s/%s, want %s/%s/%s/%s", i, in.Gateway, in.Kind, in.Severity, in.Status, w.gateway, w.kind, w.severity, w.status)
	}
	if in.Confidence != w.confidence {
		t.Errorf("[%d] confidence %v, want %v", i, in.Confidence, w.confidence)
	}
	if !in.ObservedAt.Equal(w.observed) {
		t.Errorf("[%d] observed %v, want %v", i, in.ObservedAt, w.observed)
	}
	if !slices.Equal(in.Observables.IPs, w.ips) || !slices.Equal(in.Observables.Domains, w.domains) || !slices.Equal(in.Observables.Hashes, w.hashes) {
		t.Errorf("[%d] observables %+v, want ips %v domains %v hashes %v", i, in.Observables, w.ips, w.domains, w.hashes)
	}
	if in.Summary != w.summary {
		t.Errorf("[%d] summary %q, want %q", i, in.Summary, w.summary)
	}
}

func TestDecodeAlertmanagerLabelsAndRaw(t *testing.T) {
	items, err := DecodeAlertmanager(readTestdata(t, "am_mixed_status.json"), testInventory(t), AlertmanagerMapping{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	labels := items[1].Indicator.Labels
	// alert labels merged over commonLabels
	for k, v := range map[string]string{"alertname": "SSHAuthFailureBurst", "job": "node", "severity": "high", "site": "osaka", "instance": "gw-osaka-b:9100"} {
		if labels[k] != v {
			t.Errorf("label %s=%q, want %q (labels %v)", k, labels[k], v, labels)
		}
	}
	var raw struct {
		Fingerprint string            `json:"fingerprint"`
		Labels      map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(items[1].Indicator.Raw, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Fingerprint != "88bb11cc22dd33ee" || raw.Labels["job"] != "" {
		t.Errorf("raw must be that alert's own object, got %s", items[1].Indicator.Raw)
	}
}

func TestDecodeAlertmanagerOverrideLabels(t *testing.T) {
	body := `{"alerts":[{"labels":{"alertname":"X","host":"gw-hq","detector_kind":"exfiltration","sev":"high"}}]}`
	m := AlertmanagerMapping{InstanceLabel: "host", KindLabel: "detector_kind", SeverityLabel: "sev"}
	items, err := DecodeAlertmanager([]byte(body), testInventory(t), m, testNow)
	if err != nil {
		t.Fatal(err)
	}
	checkItem(t, 0, items[0], wantItem{matched: true, gateway: "gw-hq", kind: indicator.Exfiltration, severity: indicator.High,
		status: "firing", confidence: 0.8, observed: testNow, summary: "X"})
}

func TestDecodeAlertmanagerFingerprint(t *testing.T) {
	inv := testInventory(t)
	items, err := DecodeAlertmanager(readTestdata(t, "am_firing_multi.json"), inv, AlertmanagerMapping{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := items[0].Indicator.Fingerprint, "gw-hq:brute_force:5f6ae8c3a1d29b04"; got != want {
		t.Errorf("fingerprint %q, want %q", got, want)
	}
	minimal, err := DecodeAlertmanager(readTestdata(t, "am_minimal.json"), inv, AlertmanagerMapping{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	in := minimal[0].Indicator
	if want := in.ComputeFingerprint(); in.Fingerprint != want {
		t.Errorf("without an alert fingerprint: %q, want computed %q", in.Fingerprint, want)
	}

	// The same Alertmanager fingerprint on two gateways stays two alerts.
	body := `{"alerts":[
		{"labels":{"alertname":"GatewayC2Beacon","gateway":"gw-hq"},"fingerprint":"feedfacecafebeef"},
		{"labels":{"alertname":"GatewayC2Beacon","gateway":"gw-factory"},"fingerprint":"feedfacecafebeef"}]}`
	two, err := DecodeAlertmanager([]byte(body), inv, AlertmanagerMapping{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if two[0].Indicator.Fingerprint == two[1].Indicator.Fingerprint {
		t.Errorf("fingerprints collide across gateways: %q", two[0].Indicator.Fingerprint)
	}
}

func TestDecodeAlertmanagerRejects(t *testing.T) {
	tests := map[string]struct {
		body string
		want string
	}{
		"empty":                  {``, "body: is empty"},
		"not JSON":               {`{"alerts": [`, "body: invalid JSON: unexpected end of JSON input"},
		"array":                  {`[]`, "body: expected object, got array"},
		"missing alerts":         {`{"version":"4","status":"firing"}`, "alerts: is required"},
		"alerts object":          {`{"alerts":{}}`, "alerts: expected array, got object"},
		"alerts null":            {`{"alerts":null}`, "alerts: expected array, got null"},
		"status number":          {`{"status":1,"alerts":[]}`, "status: expected string, got number"},
		"commonLabels string":    {`{"commonLabels":"a=b","alerts":[]}`, "commonLabels: expected object, got string"},
		"commonLabels value":     {`{"commonLabels":{"severity":3},"alerts":[]}`, "commonLabels.severity: expected string, got number"},
		"commonAnnotations list": {`{"commonAnnotations":[],"alerts":[]}`, "commonAnnotations: expected object, got array"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			items, err := DecodeAlertmanager([]byte(tc.body), testInventory(t), AlertmanagerMapping{}, testNow)
			if err == nil {
				t.Fatalf("accepted: %+v", items)
			}
			var fe *indicator.FieldError
			if !errors.As(err, &fe) || err.Error() != tc.want {
				t.Errorf("error %T %q, want FieldError %q", err, err, tc.want)
			}
		})
	}
}

func TestDecodeAlertmanagerBadAlertIsUnmatchedNotError(t *testing.T) {
	tests := map[string]struct {
		alert   string
		reason  string
		skipped bool // cannot be understood, rather than understood but unusable
	}{
		"scalar":            {`42`, "alerts[0]: expected object, got number", true},
		"labels list":       {`{"labels":["gateway=gw-hq"]}`, "alerts[0].labels: expected object, got array", true},
		"label value type":  {`{"labels":{"gateway":true}}`, "alerts[0].labels.gateway: expected string, got boolean", true},
		"bad startsAt":      {`{"labels":{"gateway":"gw-hq","alertname":"GatewayC2Beacon"},"startsAt":"now"}`, `alerts[0].startsAt: expected an RFC 3339 time, got "now"`, true},
		"status number":     {`{"labels":{"gateway":"gw-hq","alertname":"GatewayC2Beacon"},"status":1}`, "alerts[0].status: expected string, got number", true},
		"status state ufo":  {`{"labels":{"gateway":"gw-hq","alertname":"GatewayC2Beacon"},"status":{"state":"ufo"}}`, `alerts[0].status.state: expected active, suppressed or unprocessed, got "ufo"`, true},
		"fingerprint list":  {`{"labels":{"gateway":"gw-hq","alertname":"GatewayC2Beacon"},"fingerprint":[]}`, "alerts[0].fingerprint: expected string, got array", true},
		"no labels":         {`{}`, "no label gateway/instance/site maps to a gateway: none of them is set; no usable kind: no alertname", false},
		"bad kind label":    {`{"labels":{"gateway":"gw-hq","warden_kind":"evil"}}`, `no usable kind: label warden_kind="evil" is not a known kind`, false},
		"site w/o gateway":  {`{"labels":{"site":"dc","alertname":"GatewayC2Beacon"}}`, "site=dc (no gateway)", false},
		"silenced (API v2)": {`{"labels":{"gateway":"gw-hq","alertname":"GatewayC2Beacon"},"status":{"state":"suppressed","silencedBy":["s1"]}}`, "suppressed in Alertmanager", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			body := `{"status":"firing","alerts":[` + tc.alert + `]}`
			items, err := DecodeAlertmanager([]byte(body), testInventory(t), AlertmanagerMapping{}, testNow)
			if err != nil {
				t.Fatalf("error %v, want an unmatched item", err)
			}
			if len(items) != 1 || items[0].Matched {
				t.Fatalf("got %+v", items)
			}
			if !strings.Contains(items[0].Reason, tc.reason) {
				t.Errorf("reason\n got  %q\n want …%q…", items[0].Reason, tc.reason)
			}
			if items[0].Skipped != tc.skipped {
				t.Errorf("skipped=%v, want %v", items[0].Skipped, tc.skipped)
			}
			if string(items[0].Indicator.Raw) != tc.alert {
				t.Errorf("raw %s, want %s", items[0].Indicator.Raw, tc.alert)
			}
		})
	}
}

// TestDecodeAlertmanagerFieldVariants: every variant of a field that real
// senders produce is understood; fields Warden does not use never cost an
// alert, whatever their type.
func TestDecodeAlertmanagerFieldVariants(t *testing.T) {
	const alert = `{"labels":{"alertname":"GatewayC2Beacon","gateway":"gw-hq"}}`
	withAlert := func(top string) string { return `{` + top + `"alerts":[` + alert + `]}` }
	withFields := func(fields string) string {
		return `{"alerts":[{"labels":{"alertname":"GatewayC2Beacon","gateway":"gw-hq"},` + fields + `}]}`
	}
	at := time.Date(2025, 3, 14, 3, 1, 2, 0, time.UTC)
	tests := map[string]struct {
		body     string
		gateway  string // default gw-hq
		status   string // default firing
		observed time.Time
	}{
		"version 4, string groupKey":        {body: withAlert(`"version":"4","groupKey":"{}:{alertname=\"GatewayC2Beacon\"}",`)},
		"version 3, numeric groupKey":       {body: withAlert(`"version":"3","groupKey":16716837308297233527,`)},
		"version 0, groupKey 0":             {body: withAlert(`"version":0,"groupKey":0,`)},
		"version and groupKey null":         {body: withAlert(`"version":null,"groupKey":null,`)},
		"no version, no groupKey":           {body: withAlert(``)},
		"truncatedAlerts number":            {body: withAlert(`"truncatedAlerts":3,`)},
		"truncatedAlerts string":            {body: withAlert(`"truncatedAlerts":"3",`)},
		"unused fields of any type":         {body: withAlert(`"receiver":7,"externalURL":false,"groupLabels":["a"],"x-grafana":{"a":1},`)},
		"alert status missing, body none":   {body: withAlert(``)},
		"alert status missing, body res.":   {body: withAlert(`"status":"resolved",`), status: "resolved"},
		"alert status missing, body empty":  {body: withAlert(`"status":"",`)},
		"alert status beats body status":    {body: `{"status":"resolved","alerts":[{"status":"firing","labels":{"alertname":"GatewayC2Beacon","gateway":"gw-hq"}}]}`},
		"alert status, odd case and spaces": {body: withFields(`"status":" Resolved "`), status: "resolved"},
		"alert status a severity word":      {body: withFields(`"status":"critical"`)},
		"alert status API v2 active":        {body: withFields(`"status":{"state":"active","silencedBy":[],"inhibitedBy":[]}`)},
		"alert status null":                 {body: withFields(`"status":null`)},
		"empty label value is absent":       {body: `{"alerts":[{"labels":{"alertname":"GatewayC2Beacon","gateway":"","instance":"gw-factory:9100"}}]}`, gateway: "gw-factory"},
		"empty label does not hide common":  {body: `{"commonLabels":{"gateway":"gw-factory"},"alerts":[{"labels":{"alertname":"GatewayC2Beacon","gateway":""}}]}`, gateway: "gw-factory"},
		"null label value is absent":        {body: `{"alerts":[{"labels":{"alertname":"GatewayC2Beacon","gateway":null,"instance":"gw-factory:9100"}}]}`, gateway: "gw-factory"},
		"empty common annotation":           {body: withAlert(`"commonAnnotations":{"summary":""},`)},
		"generatorURL missing":              {body: withFields(`"endsAt":"0001-01-01T00:00:00Z"`)},
		"generatorURL empty":                {body: withFields(`"generatorURL":""`)},
		"generatorURL not a string":         {body: withFields(`"generatorURL":{"href":"x"}`)},
		"endsAt zero":                       {body: withFields(`"startsAt":"2025-03-14T03:01:02Z","endsAt":"0001-01-01T00:00:00Z"`), observed: at},
		"endsAt empty":                      {body: withFields(`"endsAt":""`)},
		"endsAt not a time":                 {body: withFields(`"endsAt":0`)},
		"startsAt zero":                     {body: withFields(`"startsAt":"0001-01-01T00:00:00Z"`)},
		"startsAt empty":                    {body: withFields(`"startsAt":""`)},
		"fingerprint empty":                 {body: withFields(`"fingerprint":""`)},
		"API v2 extras":                     {body: withFields(`"receivers":[{"name":"warden"}],"updatedAt":"2025-03-14T03:10:00Z"`)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			items, err := DecodeAlertmanager([]byte(tc.body), testInventory(t), AlertmanagerMapping{}, testNow)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if len(items) != 1 {
				t.Fatalf("got %d items", len(items))
			}
			it := items[0]
			want := wantItem{matched: true, gateway: "gw-hq", kind: indicator.C2Beacon, severity: indicator.Medium, status: "firing",
				confidence: 0.8, observed: testNow, summary: "GatewayC2Beacon"}
			if tc.gateway != "" {
				want.gateway = tc.gateway
			}
			if tc.status != "" {
				want.status = tc.status
			}
			if !tc.observed.IsZero() {
				want.observed = tc.observed
			}
			checkItem(t, 0, it, want)
			for k, v := range it.Indicator.Labels {
				if v == "" {
					t.Errorf("label %s kept with an empty value", k)
				}
			}
		})
	}
}

func TestDecodeAlertmanagerEmptyAlerts(t *testing.T) {
	items, err := DecodeAlertmanager([]byte(`{"version":"4","alerts":[]}`), testInventory(t), AlertmanagerMapping{}, testNow)
	if err != nil || len(items) != 0 {
		t.Fatalf("got %v, %v", items, err)
	}
}

func TestInstanceHost(t *testing.T) {
	tests := map[string]string{
		"gw-hq:9100":             "gw-hq",
		"gw-hq":                  "gw-hq",
		"10.10.0.1:9100":         "10.10.0.1",
		"[2001:db8:10::1]:9100":  "2001:db8:10::1",
		"[2001:db8:10::1]":       "2001:db8:10::1",
		"2001:db8:10::1":         "2001:db8:10::1",
		"[::1]:9100":             "::1",
		"gw-hq.corp.example:443": "gw-hq.corp.example",
	}
	checkEachInput(t, "instanceHost", instanceHost, tests)
}

func TestMapSeverity(t *testing.T) {
	tests := map[string]indicator.Severity{
		"critical": indicator.Critical, "PAGE": indicator.Critical, "high": indicator.High, "error": indicator.High,
		"warning": indicator.Medium, "medium": indicator.Medium, "": indicator.Medium, "weird": indicator.Medium,
		"info": indicator.Low, "low": indicator.Low, " Info ": indicator.Low,
	}
	checkEachInput(t, "mapSeverity", mapSeverity, tests)
}

func TestConfidence(t *testing.T) {
	tests := map[string]struct {
		labels, annotations map[string]string
		want                float64
	}{
		"absent":          {want: DefaultAlertmanagerConfidence},
		"label":           {labels: map[string]string{"confidence": "0.3"}, want: 0.3},
		"annotation":      {annotations: map[string]string{"confidence": " 1 "}, want: 1},
		"label wins":      {labels: map[string]string{"confidence": "0.2"}, annotations: map[string]string{"confidence": "0.9"}, want: 0.2},
		"not a number":    {labels: map[string]string{"confidence": "high"}, want: DefaultAlertmanagerConfidence},
		"NaN":             {labels: map[string]string{"confidence": "NaN"}, want: DefaultAlertmanagerConfidence},
		"percent":         {labels: map[string]string{"confidence": "80"}, want: DefaultAlertmanagerConfidence},
		"bad label, good": {labels: map[string]string{"confidence": "x"}, annotations: map[string]string{"confidence": "0.4"}, want: 0.4},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := confidence(tc.labels, tc.annotations, "confidence"); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestObservablesIgnoreInvalid(t *testing.T) {
	o := observables(
		map[string]string{"src_ip": "not-an-ip, 10.0.0.1, 10.0.0.1", "domain": "-bad-.example", "sha256": "abc"},
		map[string]string{"dst_ip": "[2001:db8::1]:443", "remote_ip": "::ffff:192.0.2.1", "domain": "EVIL.example.", "query": "1.2.3.4"},
	)
	if want := []string{"10.0.0.1", "192.0.2.1", "2001:db8::1"}; !slices.Equal(o.IPs, want) {
		t.Errorf("ips %v, want %v", o.IPs, want)
	}
	if want := []string{"evil.example"}; !slices.Equal(o.Domains, want) {
		t.Errorf("domains %v, want %v", o.Domains, want)
	}
	if len(o.Hashes) != 0 {
		t.Errorf("hashes %v, want none", o.Hashes)
	}
}

func TestAlertmanagerMappingDefaults(t *testing.T) {
	m := AlertmanagerMapping{
		SiteLabel:      "location",
		AlertnameKinds: map[string]string{"MyBeacon": "c2_beacon", "GatewayTrafficSpike": ""},
	}.WithDefaults()
	if m.GatewayLabel != "gateway" || m.InstanceLabel != "instance" || m.SiteLabel != "location" ||
		m.KindLabel != "warden_kind" || m.SeverityLabel != "severity" || m.ConfidenceAnnotation != "confidence" {
		t.Errorf("label defaults wrong: %+v", m)
	}
	if m.AlertnameKinds["MyBeacon"] != "c2_beacon" || m.AlertnameKinds["WireGuardHandshakeBurst"] != "brute_force" {
		t.Errorf("kinds not merged: %v", m.AlertnameKinds)
	}
	again := m.WithDefaults()
	if again.AlertnameKinds["GatewayTrafficSpike"] != "" {
		t.Errorf("WithDefaults twice re-enabled a default that was switched off")
	}
	if err := m.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}

	body := `{"alerts":[{"labels":{"alertname":"GatewayTrafficSpike","gateway":"gw-hq"}},{"labels":{"alertname":"MyBeacon","location":"factory"}}]}`
	items, err := DecodeAlertmanager([]byte(body), testInventory(t), m, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if items[0].Matched || !strings.Contains(items[0].Reason, `alertname "GatewayTrafficSpike" is not mapped`) {
		t.Errorf("switched-off default still maps: %+v", items[0])
	}
	if !items[1].Matched || items[1].Indicator.Gateway != "gw-factory" || items[1].Indicator.Kind != indicator.C2Beacon {
		t.Errorf("custom mapping not used: %+v", items[1])
	}

	bad := AlertmanagerMapping{AlertnameKinds: map[string]string{"Oops": "c2-beacon"}}
	if err := bad.Validate(); err == nil || err.Error() != `alertname_kinds.Oops: unknown kind "c2-beacon"` {
		t.Errorf("Validate bad kind: %v", err)
	}
}

// TestAlertnameKindsFromAConfigFile: viper lower-cases the keys of
// intake.alertmanager.alertname_kinds read from a file, so the README's
// {WireGuardBeacon: c2_beacon} arrives as wireguardbeacon; it must still
// map the alert, and a lower-cased entry must still switch a default off.
func TestAlertnameKindsFromAConfigFile(t *testing.T) {
	m := AlertmanagerMapping{AlertnameKinds: map[string]string{"wireguardbeacon": "c2_beacon", "gatewaytrafficspike": ""}}
	body := `{"alerts":[{"labels":{"alertname":"WireGuardBeacon","gateway":"gw-hq"}},{"labels":{"alertname":"GatewayTrafficSpike","gateway":"gw-hq"}},{"labels":{"alertname":"GatewayC2Beacon","gateway":"gw-hq"}}]}`
	items, err := DecodeAlertmanager([]byte(body), testInventory(t), m, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if !items[0].Matched || items[0].Indicator.Kind != indicator.C2Beacon {
		t.Errorf("WireGuardBeacon: matched %t kind %q (%s), want c2_beacon", items[0].Matched, items[0].Indicator.Kind, items[0].Reason)
	}
	if items[1].Matched {
		t.Errorf("GatewayTrafficSpike was switched off by a lower-cased entry but matched as %q", items[1].Indicator.Kind)
	}
	if !items[2].Matched || items[2].Indicator.Kind != indicator.C2Beacon {
		t.Errorf("the default GatewayC2Beacon: matched %t kind %q", items[2].Matched, items[2].Indicator.Kind)
	}
	if again := m.WithDefaults().WithDefaults(); again.alertnameKind("GatewayTrafficSpike") != "" {
		t.Error("WithDefaults twice re-enabled a default switched off in lower case")
	}
}
