package intake

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/indicator"
)

// nsmItem is what a test wants of one Item of a Suricata or Zeek body: its
// index in the body and the facts wantItem describes.
type nsmItem struct {
	index int
	wantItem
}

// checkNSMItems compares a decoder's Items with want, and checks what
// every Item must have: the source, and Raw as JSON.
func checkNSMItems(t *testing.T, source string, got []Item, want []nsmItem) {
	t.Helper()
	if len(got) != len(want) {
		for _, it := range got {
			t.Logf("got [%d] matched=%t skipped=%t reason=%q", it.Index, it.Matched, it.Skipped, it.Reason)
		}
		t.Fatalf("%d items, want %d", len(got), len(want))
	}
	for i, w := range want {
		it, in := got[i], got[i].Indicator
		if it.Index != w.index {
			t.Errorf("[%d] index %d, want %d", i, it.Index, w.index)
		}
		if len(in.Raw) == 0 || !json.Valid(in.Raw) || in.Source != source {
			t.Errorf("[%d] raw %q / source %q not set", i, in.Raw, in.Source)
		}
		if it.Matched != w.matched || it.Skipped != w.skipped {
			t.Errorf("[%d] matched=%t skipped=%t (reason %q), want matched=%t skipped=%t", i, it.Matched, it.Skipped, it.Reason, w.matched, w.skipped)
			continue
		}
		if !w.matched {
			if w.reason == "" || !strings.Contains(it.Reason, w.reason) {
				t.Errorf("[%d] reason\n got  %q\n want …%q…", i, it.Reason, w.reason)
			}
			if w.gateway != "" && in.Gateway != w.gateway {
				t.Errorf("[%d] unmatched gateway %q, want %q", i, in.Gateway, w.gateway)
			}
			continue
		}
		if it.Reason != "" {
			t.Errorf("[%d] matched item has reason %q", i, it.Reason)
		}
		if err := in.Validate(); err != nil {
			t.Errorf("[%d] invalid: %v", i, err)
		}
		if in.Gateway != w.gateway || in.Kind != w.kind || in.Severity != w.severity || in.Status != indicator.StatusFiring {
			t.Errorf("[%d] got %s/%s/%s/%s, want %s/%s/%s/firing", i, in.Gateway, in.Kind, in.Severity, in.Status, w.gateway, w.kind, w.severity)
		}
		if in.Confidence != w.confidence {
			t.Errorf("[%d] confidence %v, want %v", i, in.Confidence, w.confidence)
		}
		if !in.ObservedAt.Equal(w.observed) {
			t.Errorf("[%d] observed %v, want %v", i, in.ObservedAt, w.observed)
		}
		if !slices.Equal(in.Observables.IPs, w.ips) || !slices.Equal(in.Observables.Domains, w.domains) {
			t.Errorf("[%d] observables %+v, want ips %v domains %v", i, in.Observables, w.ips, w.domains)
		}
		if in.Summary != w.summary {
			t.Errorf("[%d] summary %q, want %q", i, in.Summary, w.summary)
		}
		if in.Fingerprint == "" {
			t.Errorf("[%d] not normalised", i)
		}
	}
}

func TestDecodeSuricataFixtures(t *testing.T) {
	inv := testInventory(t)
	at := func(s string) time.Time { return testTime(t, s) }
	tests := map[string]struct {
		items   []nsmItem
		ignored map[string]int
	}{
		// Newline-delimited, as eve.json is written. Records 0, 1 and 2
		// are OISF/suricata-verify's expected output, unchanged (tests
		// single-dns-request and alert-testmyids, payload and packet
		// fields left out): the alert's addresses belong to no gateway.
		// Record 3 is the alert of Suricata 6's EVE documentation
		// (output/eve/eve-json-format.rst) with gw-factory as src_ip;
		// record 4 a flow event with that page's flow object.
		"suricata_eve_ndjson.json": {
			items: []nsmItem{
				{1, wantItem{reason: "no gateway has dest_ip 10.16.1.11 or src_ip 82.165.177.154; no usable kind: signature_id 2100498 \"GPL ATTACK_RESPONSE id check returned root\" (category \"Potentially Bad Traffic\") is not mapped"}},
				{3, wantItem{matched: true, gateway: "gw-factory", kind: indicator.C2Beacon, severity: indicator.High, confidence: 0.8,
					observed: at("2009-11-24T21:27:09.534255Z"), ips: []string{"198.51.100.50"}, summary: "ET MALWARE BTGrab.com Spyware Downloading Ads"}},
			},
			ignored: map[string]int{"dns": 2, "flow": 1},
		},
		// Concatenated and pretty-printed. Record 0 is Suricata 7's
		// documented EVE alert (gw-osaka-a as src_ip), record 1 its
		// documented applayer anomaly; record 2 the IKE alert below,
		// pretty-printed.
		"suricata_eve_pretty.json": {
			items: []nsmItem{
				{0, wantItem{gateway: "gw-osaka-a", reason: "no usable kind: signature_id 2018358"}},
				{2, wantItem{matched: true, gateway: "gw-osaka-a", kind: indicator.BaselineDrift, severity: indicator.Low, confidence: 0.8,
					observed: at("2025-03-14T03:05:42.118231Z"), ips: []string{"198.51.100.23"}, summary: "SURICATA IKE weak cryptographic parameters (Auth)"}},
			},
			ignored: map[string]int{"anomaly": 1},
		},
		// Ours: Suricata's own IKE rule (rules/ipsec-events.rules, sid
		// 2224004, classtype protocol-command-decode) firing on the
		// responder's answer, gw-osaka-a's public address as src_ip, with
		// the ike event before it and a stats event after.
		"suricata_ike_weak_crypto.json": {
			items: []nsmItem{
				{1, wantItem{matched: true, gateway: "gw-osaka-a", kind: indicator.BaselineDrift, severity: indicator.Low, confidence: 0.8,
					observed: at("2025-03-14T03:05:42.118231Z"), ips: []string{"198.51.100.23"}, summary: "SURICATA IKE weak cryptographic parameters (Auth)"}},
			},
			ignored: map[string]int{"ike": 1, "stats": 1},
		},
		// Ours: a rule's metadata names the kind, on IPv6; a metadata
		// kind that is not one.
		"suricata_metadata.json": {
			items: []nsmItem{
				{0, wantItem{matched: true, gateway: "gw-hq", kind: indicator.Exfiltration, severity: indicator.Medium, confidence: 0.8,
					observed: at("2025-03-14T03:07:00.000001+09:00"), ips: []string{"2001:db8:ffff::dead"}, domains: []string{"drop.example.net"},
					summary: "LOCAL large upload from the VPN gateway"}},
				{1, wantItem{gateway: "gw-factory", reason: `no usable kind: alert.metadata.warden_kind="not-a-kind" is not a known kind`}},
			},
		},
		// Ours: records that cannot be understood between good ones.
		"suricata_partly_bad.json": {
			items: []nsmItem{
				{0, wantItem{matched: true, gateway: "gw-hq", kind: indicator.C2Beacon, severity: indicator.High, confidence: 0.8,
					observed: at("2025-03-14T03:01:00Z"), ips: []string{"198.51.100.77"}, summary: "ET MALWARE Cobalt Strike Beacon Observed"}},
				{1, wantItem{skipped: true, reason: "events[1]: invalid JSON: invalid character '\\n' in string literal"}},
				{2, wantItem{skipped: true, reason: "events[2].alert.severity: expected an unsigned integer, got string"}},
				{4, wantItem{skipped: true, reason: "events[4]: expected object, got number"}},
				{5, wantItem{skipped: true, reason: "events[5].event_type: is required"}},
				{6, wantItem{matched: true, gateway: "gw-factory", kind: indicator.BruteForce, severity: indicator.Medium, confidence: 0.8,
					observed: at("2025-03-14T03:01:05Z"), ips: []string{"192.0.2.44"}, summary: "ET SCAN Potential SSH Brute Force"}},
			},
			ignored: map[string]int{"stats": 1},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d, err := DecodeSuricata(readTestdata(t, name), inv, SuricataMapping{}, testNow)
			if err != nil {
				t.Fatal(err)
			}
			checkNSMItems(t, SourceSuricata, d.Items, tc.items)
			if !maps.Equal(d.Ignored, tc.ignored) {
				t.Errorf("ignored %v, want %v", d.Ignored, tc.ignored)
			}
		})
	}
}

func TestDecodeSuricataLabelsAndRaw(t *testing.T) {
	body := readTestdata(t, "suricata_ike_weak_crypto.json")
	d, err := DecodeSuricata(body, testInventory(t), SuricataMapping{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	in := d.Items[0].Indicator
	want := map[string]string{
		"flow_id": "1253914276458745", "community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
		"src_ip": "203.0.113.20", "src_port": "500", "dest_ip": "198.51.100.23", "dest_port": "500",
		"proto": "UDP", "app_proto": "ike", "sensor": "ids-osaka", "in_iface": "ens224",
		"signature_id": "2224004", "gid": "1", "rev": "3", "signature": "SURICATA IKE weak cryptographic parameters (Auth)",
		"category": "Generic Protocol Command Decode", "action": "allowed", "severity": "3",
	}
	if !maps.Equal(in.Labels, want) {
		t.Errorf("labels\n got  %v\n want %v", in.Labels, want)
	}
	line := strings.Split(string(body), "\n")[1]
	if string(in.Raw) != line {
		t.Errorf("raw is not the record:\n%s", in.Raw)
	}

	// A 64-bit flow_id keeps every digit.
	d, err = DecodeSuricata(readTestdata(t, "suricata_metadata.json"), testInventory(t), SuricataMapping{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Items[0].Indicator.Labels["flow_id"]; got != "18446744073709551615" {
		t.Errorf("flow_id %q", got)
	}
}

func TestDecodeSuricataCustomMapping(t *testing.T) {
	m := SuricataMapping{
		SignatureIDKinds: map[string]string{"2224004": "", "02018358": "unknown_destination"},
		SignatureRules: []SuricataSignatureRule{
			{Contains: "cobalt strike", Kind: "c2_beacon", Severity: "critical"},
			{Regex: `^ET SCAN`, Kind: ""},
		},
		CategoryKinds: map[string]string{"a network trojan was detected": "", "potentially bad traffic": "traffic_spike"},
		Severities:    map[string]string{"2": "high"},
		Confidence:    0.55,
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	inv := testInventory(t)
	decode := func(name string) Decoded {
		d, err := DecodeSuricata(readTestdata(t, name), inv, m, testNow)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	pretty := decode("suricata_eve_pretty.json").Items
	if it := pretty[0]; !it.Matched || it.Indicator.Kind != indicator.UnknownDestination || it.Indicator.Severity != indicator.High || it.Indicator.Confidence != 0.55 {
		t.Errorf("signature id (written 02018358) not mapped: %+v", it)
	}
	// A switched-off sid maps to nothing, even though a default rule
	// matches its text.
	if it := pretty[1]; it.Matched || it.Reason != "no usable kind: signature_id 2224004 is switched off" {
		t.Errorf("switched-off sid: matched %t, reason %q", it.Matched, it.Reason)
	}
	bad := decode("suricata_partly_bad.json").Items
	if it := bad[0]; !it.Matched || it.Indicator.Kind != indicator.C2Beacon || it.Indicator.Severity != indicator.Critical {
		t.Errorf("rule severity not used: %+v", it.Indicator)
	}
	if it := bad[5]; it.Matched || !strings.Contains(it.Reason, `signature "ET SCAN Potential SSH Brute Force" matches a rule with no kind`) {
		t.Errorf("silencing rule not used: %+v", it)
	}
	nd := decode("suricata_eve_ndjson.json").Items
	if it := nd[0]; it.Matched || !strings.Contains(it.Reason, "no gateway has") {
		t.Errorf("unmatched address matched: %+v", it)
	}
	if it := nd[1]; it.Matched || !strings.Contains(it.Reason, "is not mapped") {
		t.Errorf("switched-off category still maps: %+v", it)
	}
}

func TestDecodeSuricataStreams(t *testing.T) {
	inv := testInventory(t)
	alert := func(src string) string {
		return `{"event_type":"alert","src_ip":"` + src + `","dest_ip":"198.51.100.1","alert":{"signature_id":2224002,"signature":"x","severity":1}}`
	}
	for name, body := range map[string]string{
		"array":            "[" + alert("10.10.0.1") + ",\n" + alert("10.20.0.1") + "]",
		"concatenated":     alert("10.10.0.1") + alert("10.20.0.1"),
		"crlf and blanks":  "\r\n" + alert("10.10.0.1") + "\r\n\r\n" + alert("10.20.0.1") + "\r\n",
		"no final newline": alert("10.10.0.1") + "\n" + alert("10.20.0.1"),
	} {
		t.Run(name, func(t *testing.T) {
			d, err := DecodeSuricata([]byte(body), inv, SuricataMapping{}, testNow)
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Items) != 2 || !d.Items[0].Matched || !d.Items[1].Matched ||
				d.Items[0].Indicator.Gateway != "gw-hq" || d.Items[1].Indicator.Gateway != "gw-osaka-a" || d.Items[1].Index != 1 {
				t.Errorf("items %+v", d.Items)
			}
		})
	}
}

func TestDecodeSuricataRejects(t *testing.T) {
	many := strings.Repeat(`{"event_type":"alert","alert":{}}`+"\n", MaxIndicatorsPerRequest+1)
	tests := map[string]string{
		"":                      "body: is empty",
		" \n\t":                 "body: is empty",
		"GET / HTTP/1.1":        "body: invalid JSON: invalid character 'G' looking for beginning of value",
		"<html></html>\n<p>x":   "body: invalid JSON: invalid character '<' looking for beginning of value",
		`{"event_type":"alert"`: "body: invalid JSON: unexpected end of input",
		"42":                    "body: expected EVE JSON objects, got number",
		`"alert"` + "\n" + `1`:  "body: expected EVE JSON objects, got string",
		many:                    fmt.Sprintf("body: more than %d alerts", MaxIndicatorsPerRequest),
	}
	for body, want := range tests {
		t.Run(clip(body, 20), func(t *testing.T) {
			_, err := DecodeSuricata([]byte(body), testInventory(t), SuricataMapping{}, testNow)
			var fe *indicator.FieldError
			if !errors.As(err, &fe) || fe.Field != "body" || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %v, want %q", err, want)
			}
		})
	}
	// As many non-alert events as the body holds are fine.
	d, err := DecodeSuricata([]byte(strings.Repeat(`{"event_type":"flow"}`+"\n", 3*MaxIndicatorsPerRequest)), nil, SuricataMapping{}, testNow)
	if err != nil || d.Ignored["flow"] != 3*MaxIndicatorsPerRequest || len(d.Items) != 0 {
		t.Errorf("flows: %v %v", d.Ignored, err)
	}
	// An empty array is an empty body of events, not an error.
	if d, err := DecodeSuricata([]byte(`[]`), nil, SuricataMapping{}, testNow); err != nil || len(d.Items) != 0 {
		t.Errorf("[]: %v %v", d, err)
	}
}

func TestDecodeSuricataFieldTypes(t *testing.T) {
	inv := testInventory(t)
	tests := map[string]string{
		`{"event_type":1}`:                                                       "events[0].event_type: expected string, got number",
		`{"event_type":"alert"}`:                                                 "events[0].alert: is required",
		`{"event_type":"alert","alert":"x"}`:                                     "events[0].alert: expected object, got string",
		`{"event_type":"alert","alert":{"signature_id":-1}}`:                     "events[0].alert.signature_id: expected an unsigned integer of at most 64 bits, got -1",
		`{"event_type":"alert","alert":{"severity":1.5}}`:                        "events[0].alert.severity: expected an unsigned integer of at most 8 bits, got 1.5",
		`{"event_type":"alert","alert":{"signature":["x"]}}`:                     "events[0].alert.signature: expected string, got array",
		`{"event_type":"alert","alert":{"metadata":{"warden_kind":[1]}}}`:        "events[0].alert.metadata.warden_kind[0]: expected string, got number",
		`{"event_type":"alert","src_ip":"10.0.0.300","alert":{}}`:                `events[0].src_ip: "10.0.0.300" is not an IP address`,
		`{"event_type":"alert","dest_port":70000,"alert":{}}`:                    "events[0].dest_port: expected an unsigned integer of at most 16 bits, got 70000",
		`{"event_type":"alert","timestamp":"yesterday","alert":{}}`:              `events[0].timestamp: expected a time like 2016-07-13T16:42:07.573103-0600, got "yesterday"`,
		`{"event_type":"alert","flow_id":"123","alert":{}}`:                      "events[0].flow_id: expected an unsigned integer, got string",
		`{"event_type":"alert","alert":{"metadata":{"a b":"x","c":{}}}}`:         "events[0].alert.metadata.c: expected array, got object",
		`{"event_type":"alert","community_id":false,"alert":{}}`:                 "events[0].community_id: expected string, got boolean",
		`{"event_type":"alert","proto":true,"alert":{}}`:                         "events[0].proto: expected string, got boolean",
		`{"event_type":"alert","host":1,"alert":{}}`:                             "events[0].host: expected string, got number",
		`{"event_type":"alert","alert":{"category":{}}}`:                         "events[0].alert.category: expected string, got object",
		`{"event_type":"alert","alert":{"signature_id":18446744073709551616}}`:   "events[0].alert.signature_id: expected an unsigned integer of at most 64 bits",
		`{"event_type":"alert","timestamp":"2025-03-14T03:00:00+09","alert":{}}`: "events[0].timestamp: expected a time",
	}
	for body, want := range tests {
		t.Run(body, func(t *testing.T) {
			d, err := DecodeSuricata([]byte(`{"event_type":"flow"}`+"\n"+body), inv, SuricataMapping{}, testNow)
			if err != nil {
				t.Fatal(err)
			}
			want = strings.Replace(want, "events[0]", "events[1]", 1)
			if len(d.Items) != 1 || !d.Items[0].Skipped || !strings.HasPrefix(d.Items[0].Reason, want) || d.Items[0].Index != 1 {
				t.Errorf("items %+v, want skipped %q", d.Items, want)
			}
		})
	}
	// Fields Warden does not read are ignored whatever their type;
	// app-layer hosts that are not strings are left out; nulls are absent.
	body := `{"event_type":"alert","src_ip":"10.10.0.1","dest_ip":null,"payload":1,"http":{"hostname":5},"tls":"x","proto":6,` +
		`"alert":{"signature_id":2224005,"signature":null,"severity":2,"source":{"ip":"x"},"metadata":{"x":null}}}`
	d, err := DecodeSuricata([]byte(body), inv, SuricataMapping{}, testNow)
	if err != nil || len(d.Items) != 1 || !d.Items[0].Matched || d.Items[0].Indicator.Labels["proto"] != "6" ||
		d.Items[0].Indicator.Summary != "Suricata alert, signature_id 2224005" || d.Items[0].Indicator.ObservedAt != testNow {
		t.Errorf("tolerant fields: %+v %v", d.Items, err)
	}
}

func TestSuricataMappingDefaults(t *testing.T) {
	m := SuricataMapping{
		SignatureIDKinds: map[string]string{"007": "crash", "2224002": ""},
		CategoryKinds:    map[string]string{"MY Category": "exfiltration"},
	}.WithDefaults()
	if m.MetadataKindKey != "warden_kind" || m.Confidence != DefaultSuricataConfidence {
		t.Errorf("defaults: %+v", m)
	}
	if m.SignatureIDKinds["7"] != "crash" || m.SignatureIDKinds["2224003"] != "baseline_drift" || m.CategoryKinds["my category"] != "exfiltration" ||
		m.CategoryKinds["a network trojan was detected"] != "c2_beacon" || m.Severities["1"] != "high" {
		t.Errorf("not merged: %+v", m)
	}
	again := m.WithDefaults()
	if again.SignatureIDKinds["2224002"] != "" || !maps.Equal(again.CategoryKinds, m.CategoryKinds) || !maps.Equal(again.SignatureIDKinds, m.SignatureIDKinds) {
		t.Errorf("WithDefaults twice differs: %+v", again)
	}
	if err := m.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}

	for _, tc := range []struct {
		m    SuricataMapping
		want string
	}{
		{SuricataMapping{SignatureIDKinds: map[string]string{"2224002": "weak-crypto"}}, `signature_id_kinds.2224002: unknown kind "weak-crypto"`},
		{SuricataMapping{SignatureIDKinds: map[string]string{"ike": "c2_beacon"}}, "signature_id_kinds.ike: is not a number"},
		{SuricataMapping{CategoryKinds: map[string]string{"Misc activity": "misc"}}, `category_kinds.Misc activity: unknown kind "misc"`},
		{SuricataMapping{Severities: map[string]string{"1": "urgent"}}, `severities.1: unknown severity "urgent"`},
		{SuricataMapping{Severities: map[string]string{"one": "high"}}, "severities.one: is not a priority"},
		{SuricataMapping{SignatureRules: []SuricataSignatureRule{{Kind: "c2_beacon"}}}, "signature_rules[0]: needs exactly one of contains and regex"},
		{SuricataMapping{SignatureRules: []SuricataSignatureRule{{Contains: "a", Regex: "b", Kind: "c2_beacon"}}}, "signature_rules[0]: needs exactly one"},
		{SuricataMapping{SignatureRules: []SuricataSignatureRule{{Contains: "x", Kind: "crash"}, {Regex: "(", Kind: "c2_beacon"}}}, "signature_rules[1].regex: error parsing regexp"},
		{SuricataMapping{SignatureRules: []SuricataSignatureRule{{Contains: "x", Kind: "C2"}}}, `signature_rules[0].kind: unknown kind "C2"`},
		{SuricataMapping{SignatureRules: []SuricataSignatureRule{{Contains: "x", Kind: "crash", Severity: "sev1"}}}, `signature_rules[0].severity: unknown severity "sev1"`},
		{SuricataMapping{Confidence: 1.5}, "confidence: must be between 0 and 1"},
	} {
		err := tc.m.Validate()
		var fe *indicator.FieldError
		if !errors.As(err, &fe) || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.m, err, tc.want)
		}
	}
}

func TestDefaultSuricataRulesAreValid(t *testing.T) {
	m := SuricataMapping{SignatureRules: DefaultSuricataSignatureRules()}.WithDefaults()
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := len(compileSuricataRules(nil)); got != len(DefaultSuricataSignatureRules()) {
		t.Errorf("%d default rules compiled", got)
	}
	rules := compileSuricataRules(nil)
	for sig, want := range map[string]indicator.Kind{
		"ET MALWARE Win32/RecordBreaker CnC Checkin":              indicator.C2Beacon,
		"ET CNC Feodo Tracker Reported CnC Server group 1":        indicator.C2Beacon,
		"ET MALWARE Sliver C2 Implant Activity":                   indicator.C2Beacon,
		"SURICATA IKE weak cryptographic parameters (Encryption)": indicator.BaselineDrift,
		"ET SCAN Potential SSH Brute Force Attempt":               indicator.BruteForce,
		"ET POLICY C2C chat":                                      "",
		"ET INFO Observed DNS Query to .cc TLD":                   "",
	} {
		a := eveAlert{signature: sig, hasSignature: true}
		m := SuricataMapping{}.WithDefaults()
		k, _, _ := eveKind(&a, &m, rules)
		if k != want {
			t.Errorf("%q → %q, want %q", sig, k, want)
		}
	}
}

func FuzzDecodeSuricata(f *testing.F) {
	for _, b := range testdataFiles(f, "suricata_*.json") {
		f.Add(b)
	}
	for _, s := range []string{``, `{}`, `[]`, `[[]]`, `null`, `{"event_type":"alert"}`, `{"event_type":"alert","alert":{}}{`,
		"{\"event_type\":\"alert\",\"alert\":{\"signature_id\":2224004},\"src_ip\":\"::ffff:10.10.0.1\"}\n{x\n{\"event_type\":\"dns\"}",
		`{"event_type":"alert","dest_ip":"2001:db8:10::1","src_ip":"2001:db8:10::1","alert":{"metadata":{"warden_kind":["C2_BEACON"]}}}`} {
		f.Add([]byte(s))
	}
	inv := testInventory(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := DecodeSuricata(body, inv, SuricataMapping{}, testNow)
		checkFuzzedDecode(t, inv, fuzzedBody{records: "events", limit: MaxIndicatorsPerRequest}, d, err)
	})
}

func TestDecodeSuricataBoundsResyncs(t *testing.T) {
	// Each unclosed array swallows the lines after it; reading resumes
	// at most maxResyncs times, so such a body costs a few passes, not
	// one per line. The good record after them is lost with the rest.
	good := `{"event_type":"alert","src_ip":"10.10.0.1","alert":{"signature_id":2224002}}`
	body := good + "\n" + strings.Repeat("{\"a\":[\n", 20000) + good + "\n"
	d, err := DecodeSuricata([]byte(body), testInventory(t), SuricataMapping{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Items) != 1+maxResyncs || !d.Items[0].Matched {
		t.Fatalf("%d items", len(d.Items))
	}
	last := d.Items[maxResyncs]
	if !last.Skipped || !strings.Contains(last.Reason, "the rest of the body, after 16 records that are not JSON, is not read") ||
		len(last.Indicator.Raw) > 2*maxBadRecord+2 {
		t.Errorf("last: %q, raw %d bytes", last.Reason, len(last.Indicator.Raw))
	}
}
